"""Mid-price direction labels and the transaction-cost-aware direction loss.

Labels. For tick ``t`` and horizon ``h`` (ticks), with mid ``m`` and half-spread ``s = (ask_1 - bid_1) / 2``::

    Δ = m[t+h] - m[t]                      band = s[t] + fee_bps * 1e-4 * m[t]
    label = 1 (flat)  if |Δ| <= band       (the move does not pay for crossing the spread plus the fee)
            2 (up)    if Δ >  band
            0 (down)  if Δ < -band

The last ``h`` ticks of a sequence have no future and get ``IGNORE`` (-1): they are masked out of
losses and metrics.

Direction loss. Cross-entropy weighted by how much the move would have paid after costs, so the
model is pushed hardest on the moves worth trading::

    w = min(1 + max(|Δ| - band, 0) / band, w_max)
    L_dir = Σ_{t,h valid} w · CE(dir_logits[t, h], label[t, h]) / Σ_{t,h valid} w

A flat tick weighs 1 (its move does not clear the band); an up or down tick weighs 1 plus its
profit after costs in units of the band, capped at ``w_max``. Predicting a direction on a flat tick
is penalised by the same cross-entropy (the flat class must win there); a move that only just
clears costs weighs about as much as a flat tick. The cap is also the most the weights can tilt
the predicted probabilities towards up/down: measured on the simulated market, caps of 2 to 4
raise macro-F1 but cost accuracy against the majority and logistic-regression baselines, so the
default is a mild 1.25.
Normalising by Σw keeps the loss scale independent of volatility. The total loss adds next-event
cross-entropy: ``L = L_dir + λ · L_next``.
"""
from __future__ import annotations

import numpy as np

from lob.contract import HORIZONS

IGNORE = -1
W_MAX = 1.25


def cost_band(mid: np.ndarray, half_spread: np.ndarray, fee_bps: float) -> np.ndarray:
    """(N,) price units: the move a round trip must beat, half-spread plus the fee on the mid."""
    return half_spread + fee_bps * 1e-4 * mid


def direction_labels(mid: np.ndarray, half_spread: np.ndarray, fee_bps: float,
                     horizons: tuple[int, ...] = HORIZONS, w_max: float = W_MAX) -> tuple[np.ndarray, np.ndarray]:
    """Labels (N, H) int64 in {0, 1, 2, IGNORE} and move-size weights (N, H) float32 (0 where ignored).

    ``mid`` and ``half_spread`` are (N,) float64 price units; ``fee_bps`` is the fee in basis points of mid.
    """
    if w_max < 1.0:
        raise ValueError(f"w_max must be >= 1, got {w_max}")
    n = mid.shape[0]
    band = cost_band(mid, half_spread, fee_bps)
    if np.any(band <= 0):
        raise ValueError("cost band must be positive (half-spread > 0 on every tick)")
    labels = np.full((n, len(horizons)), IGNORE, dtype=np.int64)
    weights = np.zeros((n, len(horizons)), dtype=np.float32)
    for j, h in enumerate(horizons):
        if n <= h:
            continue
        move = mid[h:] - mid[:-h]  # (N-h,)
        b = band[:-h]
        labels[: n - h, j] = np.where(move > b, 2, np.where(move < -b, 0, 1))
        weights[: n - h, j] = np.minimum(1.0 + np.maximum(np.abs(move) - b, 0.0) / b, w_max)
    return labels, weights


def direction_loss(dir_logits, labels, weights):
    """Weighted cross-entropy (torch scalar). dir_logits (B, L, H, 3), labels (B, L, H) int64, weights (B, L, H)."""
    import torch.nn.functional as F

    ce = F.cross_entropy(dir_logits.reshape(-1, 3), labels.reshape(-1).clamp_min(0), reduction="none")  # (B*L*H,)
    w = weights.reshape(-1) * (labels.reshape(-1) != IGNORE)
    return (w * ce).sum() / w.sum().clamp_min(1e-12)


def tick_targets(ticks, fee_bps: float, w_max: float = W_MAX) -> tuple[np.ndarray, np.ndarray]:
    """``direction_labels`` of one symbol's ``lob.data.schema.Ticks`` (mid and half-spread from level 1)."""
    half_spread = 0.5 * (ticks.ask_px[:, 0] - ticks.bid_px[:, 0])
    return direction_labels(ticks.mid(), half_spread, fee_bps, HORIZONS, w_max)
