"""Mid-price direction labels and the transaction-cost-aware direction loss.

Labels (default, ``"cost"``). For tick ``t`` and horizon ``h`` (ticks), with mid ``m``, half-spread
``s = (ask_1 - bid_1) / 2`` and the fee per side ``f = fee_bps * 1e-4``::

    Δ = m[t+h] - m[t]                      band = s[t] + s[t+h] + 2 f m[t]
    label = 1 (flat)  if |Δ| <= band       (the move does not pay for a taker round trip)
            2 (up)    if Δ >  band
            0 (down)  if Δ < -band

The band is what a taker round trip costs: buying at the ask at ``t`` (``m[t] + s[t]``) and selling
at the bid at ``t+h`` (``m[t+h] - s[t+h]``) gains ``Δ - s[t] - s[t+h]``, and the fee is paid on both
legs; the short mirrors it. So "up" means "a long round trip at the touch would have made money".

Labels (``"smoothed"``, the literature's protocol, as DeepLOB / FI-2010 / TLOB label)::

    ℓ = (mean(m[t+1 .. t+h]) - m[t]) / m[t]      label = 2 if ℓ > α, 0 if ℓ < -α, else 1

with ``α = smooth_bps * 1e-4`` (relative threshold, no spread or fee): for comparing with published
numbers, not for trading.

Sessions. A label whose horizon crosses a session boundary is ``IGNORE`` (-1), as are the last ``h``
ticks of a sequence (no future): they are masked out of losses and metrics. A new session starts
at the first tick of a new UTC calendar day (a symbol's days are one sequence, and the overnight
gap is not a move one can trade through), after a gap of more than ``HALT_GAP_S`` seconds
without a tick (a halt or a feed outage), and at each time an importer recorded in the file metadata
``session_starts_ns`` (a book rebuilt after a feed gap: `lob.data.binance_ws`; `tick_sessions`).

Direction loss. Cross-entropy weighted by how much the move would have paid after costs, so the
model is pushed hardest on the moves worth trading::

    w = min(1 + max(|Δ| - band, 0) / band, w_max)          (smoothed labels: w = 1)
    L_dir = Σ_{t,h valid} w · CE(dir_logits[t, h], label[t, h]) / Σ_{t,h valid} w

A flat tick weighs 1 (its move does not clear the band); an up or down tick weighs 1 plus its
profit after costs in units of the band, capped at ``w_max``. Predicting a direction on a flat tick
is penalised by the same cross-entropy (the flat class must win there); a move that only just
clears costs weighs about as much as a flat tick. The cap is also the most the weights can tilt
the predicted probabilities towards up/down: measured on the simulated market (with the earlier
half-round-trip band), caps of 2 to 4 raised macro-F1 but cost accuracy against the majority and
logistic-regression baselines, so the default is a mild 1.25.
Normalising by Σw keeps the loss scale independent of volatility. The total loss adds next-event
cross-entropy: ``L = L_dir + λ · L_next``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lob.contract import HORIZONS

IGNORE = -1
W_MAX = 1.25
HALT_GAP_S = 300.0  # no tick for this long starts a new session
LABEL_MODES = ("cost", "smoothed")
SMOOTH_BPS = 0.5  # default α of the smoothed labels, in bps of mid
_NS_PER_DAY = 86_400 * 10**9


def session_ids(ts_ns: np.ndarray, halt_gap_s: float = HALT_GAP_S, starts_ns=()) -> np.ndarray:
    """(N,) int64 session number of each tick: +1 at each new UTC day, after each gap > ``halt_gap_s`` and at
    the first tick at or after each time in ``starts_ns`` (ns)."""
    ts = np.asarray(ts_ns, dtype=np.int64)
    new_day = (ts[1:] // _NS_PER_DAY) != (ts[:-1] // _NS_PER_DAY)
    halt = np.diff(ts) > halt_gap_s * 1e9
    marked = np.zeros(ts.size + 1, bool)  # the last slot takes starts after the last tick
    marked[np.searchsorted(ts, np.asarray(starts_ns, np.int64).reshape(-1), side="left")] = True
    return np.concatenate([[0], np.cumsum(new_day | halt | marked[1:ts.size])]).astype(np.int64)


def tick_sessions(ticks) -> np.ndarray:
    """`session_ids` of one symbol's ``lob.data.schema.Ticks``, with the starts its metadata records."""
    return session_ids(ticks.ts_ns, starts_ns=ticks.meta.get("session_starts_ns", ()))


def cost_band(half_spread_now: np.ndarray, half_spread_then: np.ndarray, mid: np.ndarray,
              fee_bps: float) -> np.ndarray:
    """Price units: the move a taker round trip must beat, both half-spreads plus the fee on both legs."""
    return half_spread_now + half_spread_then + 2.0 * fee_bps * 1e-4 * mid


def direction_labels(mid: np.ndarray, half_spread: np.ndarray, fee_bps: float,
                     horizons: tuple[int, ...] = HORIZONS, w_max: float = W_MAX, session: np.ndarray | None = None,
                     mode: str = "cost", smooth_bps: float = SMOOTH_BPS) -> tuple[np.ndarray, np.ndarray]:
    """Labels (N, H) int64 in {0, 1, 2, IGNORE} and loss weights (N, H) float32 (0 where ignored).

    ``mid`` and ``half_spread`` are (N,) float64 price units; ``fee_bps`` is the fee per side in basis
    points of mid; ``session`` (N,) int64 non-decreasing session ids (None: one session).
    """
    if w_max < 1.0:
        raise ValueError(f"w_max must be >= 1, got {w_max}")
    if mode not in LABEL_MODES:
        raise ValueError(f"label mode must be one of {LABEL_MODES}, got {mode!r}")
    n = mid.shape[0]
    if mode == "cost" and np.any(half_spread <= 0):
        raise ValueError("cost band must be positive (half-spread > 0 on every tick)")
    labels = np.full((n, len(horizons)), IGNORE, dtype=np.int64)
    weights = np.zeros((n, len(horizons)), dtype=np.float32)
    csum = np.concatenate([[0.0], np.cumsum(mid)])  # for the smoothed labels' future means
    for j, h in enumerate(horizons):
        if n <= h:
            continue
        same = np.ones(n - h, bool) if session is None else session[h:] == session[:-h]  # (N-h,)
        if mode == "cost":
            move = mid[h:] - mid[:-h]  # (N-h,)
            band = cost_band(half_spread[:-h], half_spread[h:], mid[:-h], fee_bps)
            lab = np.where(move > band, 2, np.where(move < -band, 0, 1))
            w = np.minimum(1.0 + np.maximum(np.abs(move) - band, 0.0) / band, w_max)
        else:
            future_mean = (csum[1 + h:] - csum[1:n - h + 1]) / h  # mean of mid[t+1 .. t+h]
            rel = future_mean / mid[:-h] - 1.0
            a = smooth_bps * 1e-4
            lab = np.where(rel > a, 2, np.where(rel < -a, 0, 1))
            w = np.ones(n - h)
        labels[: n - h, j] = np.where(same, lab, IGNORE)
        weights[: n - h, j] = np.where(same, w, 0.0)
    return labels, weights


def direction_loss(dir_logits, labels, weights):
    """Weighted cross-entropy (torch scalar). dir_logits (B, L, H, 3), labels (B, L, H) int64, weights (B, L, H)."""
    import torch.nn.functional as F

    ce = F.cross_entropy(dir_logits.reshape(-1, 3), labels.reshape(-1).clamp_min(0), reduction="none")  # (B*L*H,)
    w = weights.reshape(-1) * (labels.reshape(-1) != IGNORE)
    return (w * ce).sum() / w.sum().clamp_min(1e-12)


def tick_targets(ticks, fee_bps: float, w_max: float = W_MAX, mode: str = "cost",
                 smooth_bps: float = SMOOTH_BPS) -> tuple[np.ndarray, np.ndarray]:
    """``direction_labels`` of one symbol's ``lob.data.schema.Ticks`` (mid and half-spread from level 1,
    sessions from `tick_sessions`)."""
    half_spread = 0.5 * (ticks.ask_px[:, 0] - ticks.bid_px[:, 0])
    return direction_labels(ticks.mid(), half_spread, fee_bps, HORIZONS, w_max, tick_sessions(ticks), mode,
                            smooth_bps)


@dataclass(frozen=True)
class LabelSpec:
    """How a run labels its ticks (recorded in RUN/config.json ``training``; evaluation relabels alike)."""

    fee_bps: float
    w_max: float
    mode: str
    smooth_bps: float

    def targets(self, ticks) -> tuple[np.ndarray, np.ndarray]:
        return tick_targets(ticks, self.fee_bps, self.w_max, self.mode, self.smooth_bps)

    @staticmethod
    def of_training(cfg: dict) -> "LabelSpec":
        """From a run's ``config.json["training"]``."""
        return LabelSpec(cfg["fee_bps"], cfg["w_max"], cfg.get("labels", "cost"), cfg.get("smooth_bps", SMOOTH_BPS))
