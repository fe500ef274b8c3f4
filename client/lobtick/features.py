"""Per-tick event description of a limit order book: the ONE formula both tokenizer paths run.

``advance(state, tick...) -> (event, raw_features, new_state)`` works on plain Python floats and
lists: the streaming path (``Tokenizer.step``) calls it once per tick, the batch path
(``Tokenizer.transform``) calls it in a loop over ``ndarray.tolist()`` rows. Same code, same float64
operations in the same order, hence identical tokens and features. Plain float math on a dozen
scalars costs a few µs; the same formulas as tiny numpy calls would cost tens.

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
from typing import NamedTuple

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
    """The token-relevant description of one tick (bucketed by the tokenizer)."""

    cls: int  # index into EVENT_CLASSES
    mid_bps: float  # 1e4 ln(mid / previous mid)
    spread_bps: float  # 1e4 (ask1 - bid1) / mid
    size: float  # trade size or |visible size change|, best-queue sizes; 0 for first/other
    dt_us: float  # time since the previous tick, µs; 0 on the first tick


def ema_alpha(span: float) -> float:
    """Per-event EMA weight of the newest value for a span of ``span`` events (pandas' convention)."""
    return 2.0 / (span + 1.0)


def visible_change(px, sz, prev_px, prev_sz, sign: float) -> float:
    """Size change of one book side within the price range both snapshots show.

    ``sign`` is +1 for bids, -1 for asks (so that ``sign * price`` grows towards the best level).
    Levels beyond the shallower of the two snapshots' deepest prices are ignored: a level that only
    scrolled into or out of view is not an order. At the best level alone this is the CKS OFI's
    per-side term, so a one-level (bookTicker) feed gets the same definition.
    """
    if px == prev_px:  # same price levels (the usual add or cancel): every level is in range
        return sum(sz) - sum(prev_sz)
    n = len(sz) - sz.count(0.0)  # non-empty levels come first
    prev_n = len(prev_sz) - prev_sz.count(0.0)
    edge = max(sign * px[n - 1], sign * prev_px[prev_n - 1])
    now = sum(q for p, q in zip(px, sz) if sign * p >= edge)  # empty levels add 0
    before = sum(q for p, q in zip(prev_px, prev_sz) if sign * p >= edge)
    return now - before


def advance(state: TokenizerState, ts_ns: int, bid_px, bid_sz, ask_px, ask_sz, trade_px: float, trade_sz: float,
            trade_side: int, alphas: tuple[float, float, float]) -> tuple[Event, tuple, TokenizerState]:
    """One canonical tick -> (event, raw features in FEATURE_NAMES order, next state).

    Book arguments are sequences of L floats (level 1 first, empty levels 0); the tick must already
    be valid (``lobtick.ticks.validate`` rules). ``alphas`` = EMA weights (ofi, realized vol, vwap).
    """
    a_ofi, a_rv, a_vwap = alphas
    b1, a1, qb1, qa1 = bid_px[0], ask_px[0], bid_sz[0], ask_sz[0]
    mid = 0.5 * (b1 + a1)
    spread_bps = 1e4 * (a1 - b1) / mid
    micro_bps = 1e4 * ((b1 * qa1 + a1 * qb1) / (qb1 + qa1) - mid) / mid
    depth_b, depth_a = sum(bid_sz[:5]), sum(ask_sz[:5])
    book = (tuple(bid_px), tuple(bid_sz), tuple(ask_px), tuple(ask_sz))

    prev = state.book
    if prev is None:
        cls, size, q_ref, mid_bps, dt_us, ofi = FIRST, 0.0, 0.5 * (qb1 + qa1), 0.0, 0.0, 0.0
    else:
        p_bpx, p_bsz, p_apx, p_asz = prev
        pb1, pa1, pqb1, pqa1 = p_bpx[0], p_apx[0], p_bsz[0], p_asz[0]
        q_ref = 0.5 * (pqb1 + pqa1)
        mid_bps = 1e4 * math.log(mid / state.mid)
        dt_us = (ts_ns - state.ts_ns) * 1e-3
        flow = 0.0  # CKS: bid-side inflow minus ask-side inflow at the best level
        if b1 >= pb1:
            flow += qb1
        if b1 <= pb1:
            flow -= pqb1
        if a1 <= pa1:
            flow -= qa1
        if a1 >= pa1:
            flow += pqa1
        ofi = flow / q_ref
        if trade_side:
            cls, size = (TRADE_ASK if trade_side > 0 else TRADE_BID), trade_sz / q_ref
        else:
            # most events touch one side: comparing the tuples is far cheaper than visible_change
            same_bid = book[0] == p_bpx and book[1] == p_bsz
            same_ask = book[2] == p_apx and book[3] == p_asz
            d_bid = 0.0 if same_bid else visible_change(book[0], book[1], p_bpx, p_bsz, 1.0)
            d_ask = 0.0 if same_ask else visible_change(book[2], book[3], p_apx, p_asz, -1.0)
            if d_bid == 0.0 and d_ask == 0.0:
                cls, size = OTHER, 0.0
            elif abs(d_bid) >= abs(d_ask):
                cls, size = (ADD_BID if d_bid > 0.0 else CANCEL_BID), abs(d_bid) / q_ref
            else:
                cls, size = (ADD_ASK if d_ask > 0.0 else CANCEL_ASK), abs(d_ask) / q_ref

    ofi_ema = state.ofi_ema + a_ofi * (ofi - state.ofi_ema)
    rv_ema = state.rv_ema + a_rv * (mid_bps * mid_bps - state.rv_ema)
    vwap_num, vwap_den = state.vwap_num, state.vwap_den
    if trade_side:
        vwap_num += a_vwap * (trade_px * trade_sz - vwap_num)
        vwap_den += a_vwap * (trade_sz - vwap_den)
    raw = (
        (qb1 - qa1) / (qb1 + qa1),
        (depth_b - depth_a) / (depth_b + depth_a),
        ofi,
        ofi_ema,
        spread_bps,
        micro_bps,
        math.sqrt(rv_ema),
        float(trade_side),
        math.log1p(trade_sz / q_ref) if trade_side else 0.0,
        1e4 * math.log(mid * vwap_den / vwap_num) if vwap_den > 0.0 else 0.0,
        math.log1p(dt_us),
        mid_bps,
    )
    new_state = TokenizerState(book, ts_ns, mid, ofi_ema, rv_ema, vwap_num, vwap_den)
    return Event(cls, mid_bps, spread_bps, size, dt_us), raw, new_state


def run(state: TokenizerState, ticks, alphas: tuple[float, float, float]
        ) -> tuple[list[Event], list[tuple], TokenizerState]:
    """``advance`` over every row of a (valid) ``lobtick.ticks.Ticks``, carrying ``state``."""
    events, raws = [], []
    rows = zip(ticks.ts_ns.tolist(), ticks.bid_px.tolist(), ticks.bid_sz.tolist(), ticks.ask_px.tolist(),
               ticks.ask_sz.tolist(), ticks.trade_px.tolist(), ticks.trade_sz.tolist(), ticks.trade_side.tolist())
    for ts, bpx, bsz, apx, asz, tpx, tsz, side in rows:
        event, raw, state = advance(state, ts, bpx, bsz, apx, asz, tpx, tsz, side, alphas)
        events.append(event)
        raws.append(raw)
    return events, raws, state


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
