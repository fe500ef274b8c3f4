"""LOB-Bench's score set (Nagy et al., "LOB-Bench: Benchmarking Generative AI for Finance", ICML 2025,
arXiv 2502.09172; reference code github.com/peernagy/lob_bench, MIT), implemented here on numpy/scipy.

Both datasets are seen as LOBSTER messages + books (``lob.data.lobster_export.synthesize_messages``, through
the levels both show, events that change nothing there dropped as in ``lob.realism.report``), cut into
sequences of ``SEQ_LEN`` = 500 messages. Each score maps a sequence to values; a dataset's values are
pooled over its sequences. The 21 unconditional scores of the paper (units: prices and depths in ticks):

* ``spread`` (discrete), ``orderbook_imbalance`` (level 1: (bid - ask) / (bid + ask) volume);
* ``log_inter_arrival_time``: ln of the gap in ms (a zero gap counts as 1e-9 ms);
* ``log_time_to_cancel``: ln s from an order's type 1 to its first type 2/3 in the same sequence (0 as 1e-9);
* ``ask|bid_volume_touch`` (level-1 volume), ``ask|bid_volume`` (summed over the levels);
* ``limit_ask|bid_order_depth``, ``ask|bid_cancellation_depth``: |price - mid| of type 1 (type 2/3)
  messages above (below) the mid of the book after the message;
* ``limit_ask|bid_order_levels``, ``ask|bid_cancellation_levels`` (discrete): the level of the new order in
  the book after it, of the cancelled volume in the book before it;
* ``vol_per_min``: executed (type 4) volume per whole second x 60 (the first and last, partial, seconds of a
  sequence dropped);
* ``ofi``: level-1 order-flow imbalance of each book change, averaged over the last ``OFI_WINDOW`` = 100;
  ``ofi_up|stay|down``: that average just before a mid move up / no move / down.

The paper's 3 conditional scores ``X | C`` (``COND_SCORES``) pair each message's value of X with its value of
C: ``ask_volume | spread`` (level-1 ask volume given the spread), ``spread | time`` (given the time of day,
s after midnight), ``spread | volatility`` (given the sequence's volatility: the standard deviation of the
log returns of the mid sampled (last value) on a 0.1 s grid aligned to midnight, between adjacent grid
points that both hold a message; 0 when undefined).

Distances, both 0 for identical samples: **L1** is the total variation (half the L1 norm) between the two
histograms (bins: every distinct value of a discrete score; Freedman-Diaconis edges of the pooled values
otherwise; 1 when one side has no value), in [0, 1]; **W1** is the Wasserstein-1 distance after z-scoring
both samples with the pooled mean and standard deviation. A conditional score groups the pooled messages by
C (spread: its distinct values; time: 24 edges evenly from 0 to 86,400 s; volatility: the pooled deciles),
takes X's L1 and W1 inside each group (X binned by its distinct values for ``spread | volatility``, by the
group's pooled deciles otherwise; a group one side lacks counts L1 1, W1 0) and sums them weighted by the
group's share of all messages. Summaries: mean, median and interquartile mean (IQM: the mean of the middle
50%) over the scores defined on both sides: ``summary`` over all 24 (as LOB-Bench's summary includes the
conditional scores), ``summary_unconditional`` over the 21.

**Floor**: one real dataset against itself, its even-numbered sequences against its odd-numbered ones:
the distance two samples of the same market keep (``floor``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from lob.data.lobster_export import ADD, DELETE, EXECUTE, PARTIAL_CANCEL, Messages, synthesize_messages
from lob.data.lobster import PRICE_SCALE
from lob.data.schema import Ticks
from lob.realism.report import truncate

SEQ_LEN = 500
OFI_WINDOW = 100
DISCRETE = {"spread", "limit_ask_order_levels", "limit_bid_order_levels", "ask_cancellation_levels",
            "bid_cancellation_levels"}


@dataclass
class Sequence:
    """One sequence of N messages and the books after them (L levels): prices in ticks, sizes in shares."""

    msg: Messages
    bid_px: np.ndarray  # (N, L)
    bid_sz: np.ndarray
    ask_px: np.ndarray
    ask_sz: np.ndarray
    tick: float  # price x 10,000 per tick


def sequences(days: list[Ticks], levels: int) -> list[Sequence]:
    """Every day's messages through ``levels`` levels, cut into sequences of SEQ_LEN (a shorter tail kept)."""
    out = []
    for raw in days:
        t = truncate(raw, levels)
        tick = float(raw.meta["tick_size"]) * PRICE_SCALE
        step = int(round(tick))
        m = synthesize_messages(t, levels, step)
        for a in range(0, len(t), SEQ_LEN):
            s = slice(a, a + SEQ_LEN)
            out.append(Sequence(Messages(*(getattr(m, f)[s] for f in m.__dataclass_fields__)),
                                *(x[s, :levels] * (PRICE_SCALE / tick if "px" in n else 1.0)
                                  for n, x in (("px", t.bid_px), ("sz", t.bid_sz), ("px", t.ask_px), ("sz", t.ask_sz))),
                                tick))
    return out


def _spread(q: Sequence) -> np.ndarray:
    return np.round(q.ask_px[:, 0] - q.bid_px[:, 0])


def _mid(q: Sequence) -> np.ndarray:
    return 0.5 * (q.bid_px[:, 0] + q.ask_px[:, 0])


def _depth(q: Sequence, types: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """(ask depths, bid depths) in ticks of messages of ``types`` against the mid after them."""
    sel = np.isin(q.msg.type, types) & (q.msg.size > 0)
    d = q.msg.price[sel] / q.tick - _mid(q)[sel]
    return d[d > 0], -d[d < 0]


def _levels_of(q: Sequence, types: tuple[int, ...], before: bool) -> tuple[np.ndarray, np.ndarray]:
    """(ask levels, bid levels), 1-based, of messages of ``types`` in the book after (or ``before``) them."""
    sel = np.isin(q.msg.type, types) & (q.msg.size > 0)
    if before:
        sel[0] = False
    rows = np.flatnonzero(sel) - (1 if before else 0)
    p = q.msg.price[sel][:, None] / q.tick
    out = []
    for px in (q.ask_px, q.bid_px):
        hit = np.isclose(px[rows], p) & (px[rows] > 0)
        out.append(np.argmax(hit, axis=1)[hit.any(axis=1)] + 1.0)
    return out[0], out[1]


def _time_to_cancel(q: Sequence) -> np.ndarray:
    m = q.msg
    born: dict[int, int] = {}
    out = []
    for ty, oid, t, z in zip(m.type.tolist(), m.order_id.tolist(), m.time_ns.tolist(), m.size.tolist()):
        if ty == ADD:
            born[oid] = t
        elif ty in (PARTIAL_CANCEL, DELETE) and z > 0 and oid in born:
            out.append((t - born.pop(oid)) * 1e-9)
    return np.log(np.maximum(np.array(out), 1e-9)) if out else np.zeros(0)


def _vol_per_min(q: Sequence) -> np.ndarray:
    ex = q.msg.type == EXECUTE
    sec = q.msg.time_ns[ex] // 10**9
    if sec.size == 0:
        return np.zeros(0)
    inner = (sec > sec[0]) & (sec < sec[-1])  # whole seconds only
    if not inner.any():
        return np.zeros(0)
    uniq, idx = np.unique(sec[inner], return_inverse=True)
    return 60.0 * np.bincount(idx, weights=q.msg.size[ex][inner])


def _ofi(q: Sequence) -> tuple[np.ndarray, np.ndarray]:
    """(rolling mean OFI over the last OFI_WINDOW changes ending at event j, the mid's next move sign)."""
    b, a, bq, aq = q.bid_px[:, 0], q.ask_px[:, 0], q.bid_sz[:, 0], q.ask_sz[:, 0]
    db, da = np.diff(b), np.diff(a)
    e = (db >= 0) * bq[1:] - (db <= 0) * bq[:-1] - (da <= 0) * aq[1:] + (da >= 0) * aq[:-1]
    if e.size < OFI_WINDOW:
        return np.zeros(0), np.zeros(0)
    roll = np.convolve(e, np.ones(OFI_WINDOW) / OFI_WINDOW, mode="valid")  # roll[k]: changes k..k+99, at event k+100
    move = np.sign(np.diff(_mid(q)))[OFI_WINDOW:]  # move[k]: event k+100 -> k+101
    return roll, np.r_[move, np.nan][: roll.size]


SCORES = {
    "spread": _spread,
    "orderbook_imbalance": lambda q: (q.bid_sz[:, 0] - q.ask_sz[:, 0]) / (q.bid_sz[:, 0] + q.ask_sz[:, 0]),
    "log_inter_arrival_time": lambda q: np.log(np.maximum(np.diff(q.msg.time_ns) * 1e-6, 1e-9)),
    "log_time_to_cancel": _time_to_cancel,
    "ask_volume_touch": lambda q: q.ask_sz[:, 0],
    "bid_volume_touch": lambda q: q.bid_sz[:, 0],
    "ask_volume": lambda q: q.ask_sz.sum(axis=1),
    "bid_volume": lambda q: q.bid_sz.sum(axis=1),
    "limit_ask_order_depth": lambda q: _depth(q, (ADD,))[0],
    "limit_bid_order_depth": lambda q: _depth(q, (ADD,))[1],
    "ask_cancellation_depth": lambda q: _depth(q, (PARTIAL_CANCEL, DELETE))[0],
    "bid_cancellation_depth": lambda q: _depth(q, (PARTIAL_CANCEL, DELETE))[1],
    "limit_ask_order_levels": lambda q: _levels_of(q, (ADD,), before=False)[0],
    "limit_bid_order_levels": lambda q: _levels_of(q, (ADD,), before=False)[1],
    "ask_cancellation_levels": lambda q: _levels_of(q, (PARTIAL_CANCEL, DELETE), before=True)[0],
    "bid_cancellation_levels": lambda q: _levels_of(q, (PARTIAL_CANCEL, DELETE), before=True)[1],
    "vol_per_min": _vol_per_min,
    "ofi": lambda q: _ofi(q)[0],
    "ofi_up": lambda q: (lambda r, m: r[m == 1])(*_ofi(q)),
    "ofi_stay": lambda q: (lambda r, m: r[m == 0])(*_ofi(q)),
    "ofi_down": lambda q: (lambda r, m: r[m == -1])(*_ofi(q)),
}


def _volatility(q: Sequence) -> float:
    """Std (ddof 1) of the mid's log returns on a 0.1 s grid (last mid in each step) between adjacent
    steps that both hold a message; 0 with fewer than 2 returns."""
    step = q.msg.time_ns // 10**8
    last = np.r_[step[1:] != step[:-1], True]
    s, mid = step[last], np.log(_mid(q)[last])
    r = np.diff(mid)[np.diff(s) == 1]
    return float(r.std(ddof=1)) if r.size > 1 else 0.0


TIME_EDGES = np.linspace(0, 86_400, 24)
COND_SCORES = {  # name: (X, C, bins of C, X discrete)
    "ask_volume | spread": (lambda q: q.ask_sz[:, 0], _spread, "discrete", False),
    "spread | time": (_spread, lambda q: q.msg.time_ns * 1e-9, TIME_EDGES, False),
    "spread | volatility": (_spread, lambda q: np.full(len(q.msg.time_ns), _volatility(q)), "deciles", True),
}


def score_values(seqs: list[Sequence]) -> dict[str, np.ndarray]:
    """{score: its values pooled over ``seqs``}: (n,) for SCORES, (2, n) rows X and C for COND_SCORES."""
    out = {name: np.concatenate([np.asarray(fn(q), float) for q in seqs] or [np.zeros(0)]) for name, fn in SCORES.items()}
    for name, (x, c, _, _) in COND_SCORES.items():
        out[name] = np.concatenate([np.stack([x(q), c(q)]).astype(float) for q in seqs] or [np.zeros((2, 0))], axis=1)
    return out


def _edges(pooled: np.ndarray, bins) -> np.ndarray:
    """Bin edges of ``pooled``: its distinct values ("discrete"), Freedman-Diaconis ("fd"), its distinct
    deciles ("deciles"), or the given array."""
    if isinstance(bins, np.ndarray):
        return bins
    if bins == "discrete":
        return np.unique(pooled)
    return np.histogram_bin_edges(pooled, bins="fd") if bins == "fd" else np.unique(np.quantile(pooled, np.arange(1, 10) / 10))


def l1(a: np.ndarray, b: np.ndarray, discrete: bool = False, bins=None) -> float:
    """Total variation between the histograms of samples ``a`` and ``b``: 0 identical, 1 disjoint (and when
    one is empty; NaN when both are). Bins (``_edges`` of the pooled sample): the distinct values if
    ``discrete``, else ``bins`` ("deciles", edges) or Freedman-Diaconis edges; values outside the edges
    fall in the two open end bins."""
    if a.size == 0 or b.size == 0:
        return math.nan if a.size == b.size else 1.0
    edges = _edges(np.concatenate([a, b]), "discrete" if discrete else bins or "fd")
    pa, pb = (np.bincount(np.searchsorted(edges, x, side="right"), minlength=edges.size + 1) / x.size for x in (a, b))
    return float(0.5 * np.abs(pa - pb).sum())


def conditional(a: np.ndarray, b: np.ndarray, cond_bins, discrete: bool) -> dict[str, float]:
    """{"l1", "w1"} of X | C between (2, n) samples ``a`` and ``b`` (rows X, C): each group of C (``_edges``
    of the pooled C by ``cond_bins``) scored on X (distinct values if ``discrete``, else deciles), weighted by
    its share of the pooled messages; a group one side lacks scores L1 1, W1 0. NaN when either is empty."""
    if a.shape[1] == 0 or b.shape[1] == 0:
        return {"l1": math.nan, "w1": math.nan}
    edges = _edges(np.concatenate([a[1], b[1]]), cond_bins)
    ga, gb = (np.searchsorted(edges, x[1], side="right") for x in (a, b))
    n = a.shape[1] + b.shape[1]
    out = {"l1": 0.0, "w1": 0.0}
    for g in np.union1d(ga, gb):
        xa, xb = a[0, ga == g], b[0, gb == g]
        share = (xa.size + xb.size) / n
        out["l1"] += share * l1(xa, xb, discrete, "deciles")
        out["w1"] += share * (w1(xa, xb) if xa.size and xb.size else 0.0)
    return out


def w1(a: np.ndarray, b: np.ndarray) -> float:
    """Wasserstein-1 between ``a`` and ``b`` z-scored by the pooled mean and standard deviation (NaN if empty)."""
    from scipy.stats import wasserstein_distance

    if a.size == 0 or b.size == 0:
        return math.nan
    pooled = np.concatenate([a, b])
    sd = pooled.std(ddof=1) if pooled.size > 1 else 0.0
    if not sd > 0:
        return 0.0
    return float(wasserstein_distance((a - pooled.mean()) / sd, (b - pooled.mean()) / sd))


def summary(values: list[float]) -> dict[str, float]:
    """Mean, median and IQM (mean of the middle 50%, ``scipy.stats.trim_mean(x, 0.25)``) of the finite values."""
    from scipy.stats import trim_mean

    v = np.array([x for x in values if math.isfinite(x)])
    if v.size == 0:
        return {"mean": math.nan, "median": math.nan, "iqm": math.nan, "n": 0}
    return {"mean": float(v.mean()), "median": float(np.median(v)), "iqm": float(trim_mean(v, 0.25)), "n": int(v.size)}


def distances(va: dict[str, np.ndarray], vb: dict[str, np.ndarray]) -> dict[str, dict[str, float]]:
    """{score: {"l1", "w1"}} between two pooled score sets (SCORES, then COND_SCORES)."""
    return ({k: {"l1": l1(va[k], vb[k], k in DISCRETE), "w1": w1(va[k], vb[k])} for k in SCORES}
            | {k: conditional(va[k], vb[k], cb, disc) for k, (_, _, cb, disc) in COND_SCORES.items()})


def floor(seqs: list[Sequence]) -> dict[str, dict[str, float]]:
    """Real vs real: the even-numbered sequences of one dataset against its odd-numbered ones."""
    return distances(score_values(seqs[0::2]), score_values(seqs[1::2]))


def compare(seqs_a: list[Sequence], seqs_b: list[Sequence]) -> dict:
    """LOB-Bench distances of ``seqs_a`` to the reference ``seqs_b`` beside ``seqs_b``'s floor:
    {"scores": {score: {"l1", "w1", "floor_l1", "floor_w1"}}, "summary": {"l1"|"w1"|"floor_l1"|"floor_w1": ...}
    over all 24 scores,
    "summary_unconditional": the same over SCORES alone, "sequences": [n_a, n_b]}."""
    d, f = distances(score_values(seqs_a), score_values(seqs_b)), floor(seqs_b)
    scores = {k: {"l1": d[k]["l1"], "w1": d[k]["w1"], "floor_l1": f[k]["l1"], "floor_w1": f[k]["w1"]} for k in d}
    metrics = ("l1", "w1", "floor_l1", "floor_w1")
    return {"scores": scores, "summary": {m: summary([s[m] for s in scores.values()]) for m in metrics},
            "summary_unconditional": {m: summary([scores[k][m] for k in SCORES]) for m in metrics},
            "sequences": [len(seqs_a), len(seqs_b)]}
