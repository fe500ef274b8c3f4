"""Cost-aware backtest of a direction forecaster, per horizon ``h``.

Policy, per symbol segment in time order, one unit, at most one position open: at tick ``t`` with
signal ``s = P(up) - P(down)``, buy one unit at the ask if ``s > θ`` (sell at the bid if
``s < -θ``), hold ``h`` ticks, exit at the touch at ``t + h`` (sell at the bid / buy back at the ask);
the next entry can be at ``t + h`` at the earliest. Entries whose exit would cross a session
boundary or the segment end (the label is ``IGNORE``) are not taken. The fee is ``fee_bps`` of each
leg's price, paid twice::

    long PnL  = bid[t+h] - ask[t] - f · (ask[t] + bid[t+h])        (price units, one unit)
    short PnL = bid[t] - ask[t+h] - f · (bid[t] + ask[t+h])        f = fee_bps · 1e-4

reported in bps of ``mid[t]``. The threshold ``θ`` is chosen on the validation split: the candidate
among the ``THRESHOLD_QUANTILES`` of ``|s|`` there with the largest total PnL over at least
``MIN_TRADES`` trades; if no candidate makes money on validation, the policy does not trade
(``threshold`` null, no trades on test).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

THRESHOLD_QUANTILES = (0.0, 0.5, 0.8, 0.9, 0.95, 0.98, 0.99, 0.995, 0.999)
MIN_TRADES = 20


@dataclass
class Touch:
    """One segment's touch: bid, ask (N,) float64 price units and the UTC date of each tick (N,) str."""

    symbol: str
    bid: np.ndarray
    ask: np.ndarray
    day: np.ndarray

    @staticmethod
    def of_ticks(ticks) -> "Touch":
        day = np.datetime_as_string(ticks.ts_ns.astype("datetime64[ns]"), unit="D")
        return Touch(ticks.symbol, ticks.bid_px[:, 0].astype(np.float64), ticks.ask_px[:, 0].astype(np.float64), day)


def round_trip_pnl(touch: Touch, h: int, fee_bps: float) -> tuple[np.ndarray, np.ndarray]:
    """(long, short) PnL in bps of mid[t] of a round trip entered at each t (N,), NaN for the last h ticks."""
    n, f = len(touch.bid), fee_bps * 1e-4
    long_, short = np.full(n, np.nan), np.full(n, np.nan)
    if n > h:
        bid0, ask0, bid1, ask1 = touch.bid[:-h], touch.ask[:-h], touch.bid[h:], touch.ask[h:]
        mid0 = 0.5 * (bid0 + ask0)
        long_[:-h] = (bid1 - ask0 - f * (ask0 + bid1)) / mid0 * 1e4
        short[:-h] = (bid0 - ask1 - f * (bid0 + ask1)) / mid0 * 1e4
    return long_, short


def trades(signal: np.ndarray, tradable: np.ndarray, h: int, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """Entry ticks (K,) int64 and sides (K,) +1 long / -1 short of the policy on one segment."""
    cand = np.flatnonzero(tradable & (np.abs(signal) > threshold))
    entries, free = [], 0
    for t in cand:  # at most one position: skip candidates while one is open
        if t >= free:
            entries.append(t)
            free = t + h
    entries = np.asarray(entries, dtype=np.int64)
    return entries, np.sign(signal[entries]).astype(np.int64)


@dataclass
class SegmentRun:
    """What the policy needs of one segment for one horizon: signal, tradable mask, round-trip PnLs."""

    touch: Touch
    signal: np.ndarray  # (N,) P(up) - P(down)
    tradable: np.ndarray  # (N,) bool: label not IGNORE
    long_pnl: np.ndarray  # (N,) bps
    short_pnl: np.ndarray  # (N,) bps


def segment_run(touch: Touch, proba: np.ndarray, labels: np.ndarray, h: int, fee_bps: float,
                ignore: int = -1) -> SegmentRun:
    """proba (N, 3) of one horizon, labels (N,) of that horizon."""
    long_, short = round_trip_pnl(touch, h, fee_bps)
    return SegmentRun(touch, proba[:, 2] - proba[:, 0], labels != ignore, long_, short)


def _pnl(runs: list[SegmentRun], h: int, threshold: float):
    """Per trade: PnL bps (K,), price-unit PnL (K,), segment-day key (K,) in time order per segment."""
    bps, px, key = [], [], []
    for r in runs:
        t, side = trades(r.signal, r.tradable, h, threshold)
        p = np.where(side > 0, r.long_pnl[t], r.short_pnl[t])
        mid = 0.5 * (r.touch.bid[t] + r.touch.ask[t])
        bps.append(p)
        px.append(p * mid * 1e-4)
        key.append(np.char.add(f"{r.touch.symbol} ", r.touch.day[t].astype(str)))
    return np.concatenate(bps), np.concatenate(px), np.concatenate(key)


def choose_threshold(val_runs: list[SegmentRun], h: int, min_trades: int = MIN_TRADES) -> tuple[float | None, float]:
    """(θ, its total validation PnL in bps) or (None, 0.0) when no candidate makes money on validation."""
    scores = np.concatenate([np.abs(r.signal[r.tradable]) for r in val_runs])
    if scores.size == 0:
        return None, 0.0
    best: tuple[float | None, float] = (None, 0.0)
    for q in THRESHOLD_QUANTILES:
        theta = float(np.quantile(scores, q))
        bps, _, _ = _pnl(val_runs, h, theta)
        if len(bps) >= min_trades and bps.sum() > best[1]:
            best = (theta, float(bps.sum()))
    return best


def backtest(val_runs: list[SegmentRun], test_runs: list[SegmentRun], h: int,
             min_trades: int = MIN_TRADES) -> tuple[dict, np.ndarray]:
    """metrics.json ``backtest.hH.<system>`` entry and the cumulative test PnL curve (K,) in bps."""
    theta, val_pnl = choose_threshold(val_runs, h, min_trades)
    if theta is None:
        bps, px, key = np.zeros(0), np.zeros(0), np.zeros(0, dtype=str)
    else:
        bps, px, key = _pnl(test_runs, h, theta)
    per_day = {k: {"trades": int((key == k).sum()), "total_pnl_bps": float(bps[key == k].sum())}
               for k in sorted(set(key.tolist()))}
    out = {"threshold": theta, "val_total_pnl_bps": val_pnl, "trades": int(len(bps)),
           "hit_rate": float((bps > 0).mean()) if len(bps) else None,
           "mean_pnl_bps": float(bps.mean()) if len(bps) else None,
           "total_pnl_bps": float(bps.sum()), "total_pnl": float(px.sum()), "per_day": per_day}
    return out, np.cumsum(bps)
