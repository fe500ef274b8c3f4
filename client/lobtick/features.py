"""Per-tick event description of a limit order book: the ONE formula both tokenizer paths run.

The formula (``_formula``) is written once over an arithmetic namespace: ``ONE`` (one tick as Python floats;
a dozen scalars cost a few µs where tiny numpy calls would cost tens) or ``MANY`` (a sequence's ticks as numpy
arrays, every tick's previous tick known up front, so only the EMAs run tick by tick). ``advance_one(state,
tick, alphas)`` is the streaming path (``Tokenizer.step``/``step_batch``, a live tick); ``advance(state, ticks,
alphas)`` the batch path (``Tokenizer.transform``/``step_chunk``/``fit``). Both do the same float64 operations
in the same order (sums level by level, libm logs), hence identical tokens and features bit for bit.
``run`` is ``advance`` with one ``Event`` per tick (for callers that walk the events, e.g. lob.realism).

Raw features (before the tokenizer's standardisation), in ``FEATURE_NAMES`` order:

======================  ==============================  =================================================
name                    unit                            definition
======================  ==============================  =================================================
imbalance_l1            [-1, 1]                         (qb1 - qa1) / (qb1 + qa1), best-level sizes
imbalance_depth5        [-1, 1]                         same over the sizes of the first 5 levels
                                                        (fewer if the book has fewer non-empty levels)
ofi                     best-queue sizes                Cont-Kukanov-Stoikov order-flow imbalance of this
                                                        event, e = 1[b>=b']qb - 1[b<=b']qb' - 1[a<=a']qa
                                                        + 1[a>=a']qa' (primes: previous tick), / q_ref
ofi_ema                 best-queue sizes                per-event EMA of ``ofi`` (span ``ofi_span``)
spread_bps              bps of mid                      1e4 (a1 - b1) / mid
microprice_dev_bps      bps of mid                      1e4 (micro - mid) / mid,
                                                        micro = (b1 qa1 + a1 qb1) / (qb1 + qa1)
realized_vol_bps        bps                             sqrt of a per-event EMA (span ``rv_span``) of
                                                        squared mid log-returns in bps
trade_sign              -1, 0, +1                       aggressor of this event's trade print (0: none)
log_trade_size          ln(1 + best-queue sizes)        ln(1 + trade_sz / q_ref); 0 without a trade
vwap_dev_bps            bps                             1e4 ln(mid / vwap), vwap = EMA(px*sz) / EMA(sz)
                                                        over trade prints (span ``vwap_span`` trades);
                                                        0 before the first trade
log_dt_us               ln(1 + µs)                      ln(1 + time since the previous tick in µs)
mid_ret_bps             bps                             1e4 ln(mid / previous mid)
======================  ==============================  =================================================

``q_ref`` = mean of the best bid and best ask sizes *before* the event (of the event's own book on a
sequence's first tick): sizes are expressed in queue units so that instruments of very different
lot sizes (shares, BTC) share one scale. A first tick has no previous book: its ``ofi``,
``mid_ret_bps`` and ``log_dt_us`` are 0.

Event class of a tick (``EVENT_CLASSES``), inferred from the trade print and the book change:
a trade print makes it a trade, on the side it consumed (a buyer-initiated trade takes the ask);
otherwise the side whose visible size changed most (``visible_change``) decides add (> 0) or
cancel (< 0); no visible size change is "other" (e.g. a timestamp-only update).
"""
from __future__ import annotations

import math
import operator
from bisect import bisect_left
from functools import reduce
from types import SimpleNamespace
from typing import NamedTuple

import numpy as np

FEATURE_NAMES = ("imbalance_l1", "imbalance_depth5", "ofi", "ofi_ema", "spread_bps", "microprice_dev_bps",
                 "realized_vol_bps", "trade_sign", "log_trade_size", "vwap_dev_bps", "log_dt_us", "mid_ret_bps")

# (kind, side) of each event class; side None where it has no meaning
EVENT_CLASSES = (("first", None), ("add", "bid"), ("add", "ask"), ("cancel", "bid"), ("cancel", "ask"),
                 ("trade", "bid"), ("trade", "ask"), ("other", None))
FIRST, ADD_BID, ADD_ASK, CANCEL_BID, CANCEL_ASK, TRADE_BID, TRADE_ASK, OTHER = range(len(EVENT_CLASSES))

class TokenizerState(NamedTuple):
    """What one sequence carries from tick to tick. Immutable (tuples, floats): copying is free and a
    failed step leaves the caller's state as it was."""

    book: tuple | None = None  # previous (bid_px, bid_sz, ask_px, ask_sz), tuples of L floats; None: no tick yet
    ts_ns: int | None = None  # previous event time, ns
    mid: float = 0.0  # previous mid, price units
    ofi_ema: float = 0.0  # best-queue sizes
    rv_ema: float = 0.0  # EMA of squared mid log-returns, bps^2
    vwap_num: float = 0.0  # EMA of trade px * size over trades
    vwap_den: float = 0.0  # EMA of trade size over trades


class Event(NamedTuple):
    """The token-relevant description of ticks (bucketed by the tokenizer): floats of one tick, or (N,) arrays."""

    cls: int | np.ndarray  # index into EVENT_CLASSES ((N,) int64)
    mid_bps: float | np.ndarray  # 1e4 ln(mid / previous mid)
    spread_bps: float | np.ndarray  # 1e4 (ask1 - bid1) / mid
    size: float | np.ndarray  # trade size or |visible size change|, best-queue sizes; 0 for first/other
    dt_us: float | np.ndarray  # time since the previous tick, µs; 0 on the first tick


def ema_alpha(span: float) -> float:
    """Per-event EMA weight of the newest value for a span of ``span`` events (pandas' convention)."""
    return 2.0 / (span + 1.0)


# The arithmetic the formula runs on: ONE tick as Python floats (a book side: L floats, ``side[0]`` level 1; a
# dozen scalars cost a few µs where tiny numpy calls would cost tens), or MANY ticks as numpy arrays (a side:
# (L, N), so ``side[0]`` is level 1 of every tick and ``_total(side)`` adds (N,) rows). Both do the same IEEE
# float64 operations in the same order: sums are a plain left fold level by level from level 1 (``_total``: not
# numpy's pairwise sum, nor the compensated ``sum`` of floats of Python >= 3.12), logs are libm's (``math``) in
# both, so ONE and MANY agree bit for bit.
def _total(levels):
    """0.0 + level 1 + level 2 + ..., left to right (floats or (N,) rows)."""
    return reduce(operator.add, levels, 0.0)


ONE = SimpleNamespace(
    where=lambda c, a, b: a if c else b, choose=lambda c, a, b, *args: a(*args) if c else b(*args), log=math.log, log1p=math.log1p,
    sqrt=math.sqrt, abs=abs, maximum=max, float=float, same=operator.eq, bucket=bisect_left,
    deepest=lambda px, sz: px[len(sz) - sz.count(0.0) - 1],  # non-empty levels come first
    in_range_total=lambda px, sz, sign, edge: _total(q for p, q in zip(px, sz) if sign * p >= edge),
    rows=lambda x: [x], unrows=lambda rows: rows[0])


def _libm(fn):
    return lambda x: np.fromiter(map(fn, x.tolist()), np.float64, len(x))


MANY = SimpleNamespace(
    where=np.where, choose=lambda c, a, b, *args: np.where(c, a(*args), b(*args)), log=_libm(math.log), log1p=_libm(math.log1p),
    sqrt=np.sqrt, abs=np.abs, maximum=np.maximum, float=lambda x: x.astype(np.float64),
    same=lambda a, b: (a == b).all(axis=0), bucket=lambda edges, x: np.searchsorted(edges, x, side="left"),
    deepest=lambda px, sz: px[np.count_nonzero(sz, axis=0) - 1, np.arange(px.shape[1])],
    in_range_total=lambda px, sz, sign, edge: _total(np.where(sign * p >= edge, q, 0.0) for p, q in zip(px, sz)),
    rows=lambda x: x.tolist(), unrows=np.array)


def visible_change(o, px, sz, prev_px, prev_sz, sign: float):
    """Size change of one book side within the price range both snapshots show (``o``: ONE or MANY).

    ``sign`` is +1 for bids, -1 for asks (so that ``sign * price`` grows towards the best level).
    Levels beyond the shallower of the two snapshots' deepest prices are ignored: a level that only
    scrolled into or out of view is not an order. At the best level alone this is the CKS OFI's
    per-side term, so a one-level (bookTicker) feed gets the same definition.
    """
    # most events touch one side: the other did not change (0 either way; ONE skips the sums)
    return o.choose(o.same(sz, prev_sz) & o.same(px, prev_px), _unchanged, _changed, o, px, sz, prev_px, prev_sz, sign)


def _unchanged(o, px, sz, prev_px, prev_sz, sign):
    return 0.0


def _changed(o, px, sz, prev_px, prev_sz, sign):
    # same price levels (the usual add or cancel): every level is in range
    return o.choose(o.same(px, prev_px), _all_levels, _in_range, o, px, sz, prev_px, prev_sz, sign)


def _all_levels(o, px, sz, prev_px, prev_sz, sign):
    return _total(sz) - _total(prev_sz)


def _in_range(o, px, sz, prev_px, prev_sz, sign):
    edge = o.maximum(sign * o.deepest(px, sz), sign * o.deepest(prev_px, prev_sz))
    return o.in_range_total(px, sz, sign, edge) - o.in_range_total(prev_px, prev_sz, sign, edge)


def _formula(o, state, alphas, ts, bpx, bsz, apx, asz, trade_px, trade_sz, side, p_ts, p_bpx, p_bsz,
             p_apx, p_asz, first):
    """The formula on consecutive ticks of one sequence after ``state``, given each tick's previous tick (a first
    tick's previous is itself: every difference is 0)."""
    a_ofi, a_rv, a_vwap = alphas
    b1, a1, qb1, qa1 = bpx[0], apx[0], bsz[0], asz[0]
    pb1, pa1, pqb1, pqa1 = p_bpx[0], p_apx[0], p_bsz[0], p_asz[0]
    mid = 0.5 * (b1 + a1)
    spread_bps = 1e4 * (a1 - b1) / mid
    micro_bps = 1e4 * ((b1 * qa1 + a1 * qb1) / (qb1 + qa1) - mid) / mid
    depth_b, depth_a = _total(bsz[:5]), _total(asz[:5])
    q_ref = 0.5 * (pqb1 + pqa1)
    mid_bps = 1e4 * o.log(mid / (0.5 * (pb1 + pa1)))
    dt_us = o.float(ts - p_ts) * 1e-3
    # CKS: bid-side inflow minus ask-side inflow at the best level (a condition times a size: the size or 0)
    flow = (b1 >= pb1) * qb1 - (b1 <= pb1) * pqb1 - (a1 <= pa1) * qa1 + (a1 >= pa1) * pqa1
    ofi = flow / q_ref
    d_bid = visible_change(o, bpx, bsz, p_bpx, p_bsz, 1.0)
    d_ask = visible_change(o, apx, asz, p_apx, p_asz, -1.0)
    bid_side = o.abs(d_bid) >= o.abs(d_ask)  # the side whose visible size changed most
    d = o.where(bid_side, d_bid, d_ask)
    grew = d > 0.0
    cls = o.where(bid_side, o.where(grew, ADD_BID, CANCEL_BID), o.where(grew, ADD_ASK, CANCEL_ASK))
    cls = o.where((d_bid == 0.0) & (d_ask == 0.0), OTHER, cls)
    traded = side != 0
    cls = o.where(first, FIRST, o.where(traded, o.where(side > 0, TRADE_ASK, TRADE_BID), cls))
    size = o.where(first, 0.0, (trade_sz + (side == 0) * o.abs(d)) / q_ref)  # trade_sz is 0 without a trade

    # the recurrences, tick by tick in Python floats
    ofi_ema, rv_ema, vwap_num, vwap_den = [], [], [], []
    e_ofi, e_rv, v_num, v_den = state.ofi_ema, state.rv_ema, state.vwap_num, state.vwap_den
    for x_ofi, x_rv, tr, x_num, x_den in zip(o.rows(ofi), o.rows(mid_bps * mid_bps), o.rows(traded),
                                             o.rows(trade_px * trade_sz), o.rows(trade_sz)):
        e_ofi += a_ofi * (x_ofi - e_ofi)
        e_rv += a_rv * (x_rv - e_rv)
        if tr:
            v_num += a_vwap * (x_num - v_num)
            v_den += a_vwap * (x_den - v_den)
        ofi_ema.append(e_ofi)
        rv_ema.append(e_rv)
        vwap_num.append(v_num)
        vwap_den.append(v_den)
    ofi_ema, rv_ema, vwap_num, vwap_den = o.unrows(ofi_ema), o.unrows(rv_ema), o.unrows(vwap_num), o.unrows(vwap_den)

    has_vwap = vwap_den > 0.0
    vwap_ratio = o.where(has_vwap, mid * vwap_den / o.where(has_vwap, vwap_num, 1.0), 1.0)
    raw = (
        (qb1 - qa1) / (qb1 + qa1),
        (depth_b - depth_a) / (depth_b + depth_a),
        ofi,
        ofi_ema,
        spread_bps,
        micro_bps,
        o.sqrt(rv_ema),
        o.float(side),
        o.log1p(trade_sz / q_ref),  # 0 without a trade
        1e4 * o.log(vwap_ratio),  # 0 before the first trade
        o.log1p(dt_us),
        mid_bps,
    )
    return Event(cls, mid_bps, spread_bps, size, dt_us), raw, (mid, ofi_ema, rv_ema, vwap_num, vwap_den)


def advance_one(state: TokenizerState, tick: tuple, alphas: tuple[float, float, float]
                ) -> tuple[Event, tuple, TokenizerState]:
    """ONE canonical tick ``(ts_ns, bid_px, bid_sz, ask_px, ask_sz, trade_px, trade_sz, trade_side)`` (book sides:
    lists of L floats) after ``state`` -> (event, raw features (F floats, FEATURE_NAMES order), next state)."""
    ts, book = tick[0], tuple(map(tuple, tick[1:5]))
    prev = (ts, *book, True) if state.book is None else (state.ts_ns, *state.book, False)
    event, raw, (mid, *emas) = _formula(ONE, state, alphas, ts, *book, *tick[5:], *prev)
    return event, raw, TokenizerState(book, ts, mid, *emas)


def advance(state: TokenizerState, ticks, alphas: tuple[float, float, float]
            ) -> tuple[Event, np.ndarray, TokenizerState]:
    """MANY canonical consecutive ticks of one sequence (a ``lobtick.ticks.Ticks`` of N >= 1) after ``state`` ->
    (events, raw features (N, F) float64, state after the last tick); tick i equals ``advance_one`` after the
    ticks before it, bit for bit. ``alphas`` = EMA weights (ofi, realized vol, vwap)."""
    books = (ticks.bid_px, ticks.bid_sz, ticks.ask_px, ticks.ask_sz)  # (N, L) each
    if state.book is None:  # a first tick's previous is itself
        head_ts, head_books = ticks.ts_ns[:1], [b[:1] for b in books]
    else:
        head_ts, head_books = np.array([state.ts_ns], np.int64), [np.array([b], np.float64) for b in state.book]
    first = np.zeros(len(ticks), bool)
    first[0] = state.book is None
    p_ts = np.r_[head_ts, ticks.ts_ns[:-1]]
    p_books = [np.concatenate([h, b[:-1]]) for h, b in zip(head_books, books)]
    side = ticks.trade_side.astype(np.int64)
    events, raw, (mid, *emas) = _formula(MANY, state, alphas, ticks.ts_ns, *(b.T for b in books), ticks.trade_px,
                                         ticks.trade_sz, side, p_ts, *(b.T for b in p_books), first)
    last = TokenizerState(tuple(tuple(b[-1].tolist()) for b in books), int(ticks.ts_ns[-1]), float(mid[-1]),
                          *(float(e[-1]) for e in emas))
    return events._replace(cls=events.cls.astype(np.int64)), np.stack(raw, axis=1), last


def run(state: TokenizerState, ticks, alphas: tuple[float, float, float]) -> tuple[list[Event], np.ndarray, TokenizerState]:
    """``advance`` over the consecutive (valid) ticks of one sequence continuing ``state``, its events as one
    ``Event`` of floats per tick (for callers that walk the events, e.g. lob.realism)."""
    if not len(ticks):
        return [], np.zeros((0, len(FEATURE_NAMES))), state
    events, raw, state = advance(state, ticks, alphas)
    return [Event(*row) for row in zip(*(e.tolist() for e in events))], raw, state


def _side_ok(px, sz, better) -> bool:
    n = len(sz) - sz.count(0.0)
    if n == 0 or len(px) - px.count(0.0) != n:
        return False
    p, q = px[:n], sz[:n]
    # NaN fails isfinite; min > 0 then holds for every level; n non-zeros among the first n levels
    # means the deeper levels are all exactly 0
    return (all(map(math.isfinite, p)) and all(map(math.isfinite, q)) and min(p) > 0.0 and min(q) > 0.0
            and all(map(better, p, p[1:])))  # strictly worse level by level


def is_canonical(bid_px, bid_sz, ask_px, ask_sz, trade_px: float, trade_sz: float, trade_side: int) -> bool:
    """Fast scalar test of ``lobtick.ticks.validate``'s per-row rules for one tick (lists of L floats).

    False means "reject": the caller runs ``validate`` on the tick to name the field. Kept rule for rule
    in step with ``validate`` (a test checks both agree on random corruptions).
    """
    if not (_side_ok(bid_px, bid_sz, operator.gt) and _side_ok(ask_px, ask_sz, operator.lt) and bid_px[0] < ask_px[0]):
        return False
    if trade_side == 0:
        return trade_px == 0.0 and trade_sz == 0.0
    return (trade_side == 1 or trade_side == -1) and 0.0 < trade_px < math.inf and 0.0 < trade_sz < math.inf
