"""Write canonical tick tables as LOBSTER message + orderbook CSVs (`lob export-lobster`), the format LOB-Bench
(Nagy et al., ICML 2025, arXiv 2502.09172) and most of the field read.

One canonical row becomes one message row and one orderbook row (the book after it), so importing the files
again (``lob.data.lobster.read_lobster``) gives back the same books, prints and times. Files, per symbol-day:
``OUT/{SYMBOL}_{date}_{start}_{end}_{message|orderbook}_{L}.csv`` (start/end: ms after midnight of the
first and last event + 1; L: the data's level count, ``meta["n_levels"]``, at most 10). Time: seconds after
midnight New York local time, to the ns; prices: USD x 10,000 (integers); empty levels: LOBSTER's dummies.

**Messages from L2 rows** (``synthesize_messages``). The canonical table has no order ids; each row's
message is read off the change between consecutive books, compared only over the prices both books show
(a level that enters or leaves at the deep end of the window is not an event):

* a print (``trade_side`` != 0): type 4 (execution) at the print's price and size, direction the resting
  side (``-trade_side``); type 5 (hidden) when the visible volume at that price did not fall;
* otherwise the change nearest the touch: a volume increase is type 1 (new order of that size), a decrease
  type 3 (the order it names is removed whole) or 2 (partly);
* a row with no visible change (an event deeper than the data's levels) is type 2 of size 0 with order id 0
  at the price one grid step beyond the deepest visible bid: a placeholder the scores skip.

Order ids (``OrderBookIds``): every visible volume is held as orders on a FIFO queue per price. An add
creates an order with the next id; an execution takes the oldest volume first (price-time priority, as the
exchange does); a cancel takes the **oldest** volume first too, and its message names the first order it
touches. Oldest-first is chosen against a real day (``bench/cancel_rule.py``): on LOBSTER GOOG 2012-06-21,
log time-to-cancel within 500-message sequences from the synthetic ids against the same from the real ids
is L1 0.024 / W1 0.022 with oldest-first, L1 0.063 / W1 0.114 with newest-first (medians 1.34 s and 0.85 s
against the real 1.23 s). Volume that appears without a message of its own (the first book's other levels,
a second change in one row, a level entering the window) becomes orders without one. Scores that follow an
order id (time-to-cancel) therefore measure the synthetic ids: they hold on data whose rows are single
events (LOBSTER, the simulator) and are rough on snapshot feeds. The split of cancels into types 2 and 3
follows the synthetic orders, not the real ones (GOOG: 7,567 partial cancels against the real 19).
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from lob.data.lobster import ASK_DUMMY, BID_DUMMY, EXCHANGE_TZ, PRICE_SCALE
from lob.data.schema import N_LEVELS, Ticks, dataset_files, read_ticks
from lob.io import atomic_write

ADD, PARTIAL_CANCEL, DELETE, EXECUTE, HIDDEN = 1, 2, 3, 4, 5
BUY, SELL = 1, -1  # LOBSTER direction: side of the resting order
CANCEL_OLDEST_FIRST = True  # the cancel rule (module docstring); False: newest first


@dataclass
class Messages:
    """LOBSTER messages of N rows: ``time_ns`` (ns after midnight, exchange local time), ``type`` (1-5),
    ``order_id``, ``size``, ``price`` (USD x 10,000), ``direction`` (resting side: 1 buy, -1 sell); all (N,)."""

    time_ns: np.ndarray  # int64
    type: np.ndarray  # int8
    order_id: np.ndarray  # int64
    size: np.ndarray  # float64
    price: np.ndarray  # int64
    direction: np.ndarray  # int8


class OrderBookIds:
    """Synthetic orders behind a visible L2 book: ``queues[side][price]`` is a deque of [id, size], oldest first;
    ``held[side][price]`` its total."""

    def __init__(self):
        self.queues: dict[int, dict[int, deque]] = {BUY: {}, SELL: {}}
        self.held: dict[int, dict[int, float]] = {BUY: {}, SELL: {}}
        self.next_id = 1

    def add(self, side: int, price: int, size: float) -> int:
        oid = self.next_id
        self.next_id += 1
        self.queues[side].setdefault(price, deque()).append([oid, size])
        self.held[side][price] = self.held[side].get(price, 0.0) + size
        return oid

    def take(self, side: int, price: int, size: float, oldest: bool) -> tuple[int, bool]:
        """Remove ``size`` at ``price``, oldest (executions) or newest (cancels) orders first; returns the first
        order touched and whether it went whole (id 0, False when nothing rests there)."""
        q = self.queues[side].get(price)
        if not q:
            return 0, False
        first, whole = (q[0] if oldest else q[-1])[0], False
        self.held[side][price] -= size
        while size > 1e-12 and q:
            order = q[0] if oldest else q[-1]
            used = min(size, order[1])
            order[1] -= used
            size -= used
            if order[1] <= 1e-12:
                whole = whole or order[0] == first
                q.popleft() if oldest else q.pop()
        if not q:
            del self.queues[side][price], self.held[side][price]
        return first, whole

    def sync(self, side: int, visible: dict[int, float]) -> None:
        """Make the orders hold exactly the ``visible`` {price: size} of ``side`` (unmessaged volume: new orders
        for rises, falls removed by the cancel rule, prices out of view forgotten)."""
        held = self.held[side]
        for price in [p for p in held if p not in visible]:
            del self.queues[side][price], held[price]
        for price, size in visible.items():
            have = held.get(price, 0.0)
            if size > have + 1e-9:
                self.add(side, price, size - have)
            elif size < have - 1e-9:
                self.take(side, price, have - size, oldest=CANCEL_OLDEST_FIRST)


def _levels(px: list[int], sz: list[float]) -> dict[int, float]:
    """One side's visible book (L,) -> {price x 10,000: size}."""
    return {p: s for p, s in zip(px, sz) if s > 0}


def _comparable(prev: dict[int, float], cur: dict[int, float], side: int, full: bool) -> list[int]:
    """Prices both books show on one side: with a full window, those no deeper than the shallower deepest level."""
    prices = set(prev) | set(cur)
    if full and prev and cur:
        edge = max(min(prev), min(cur)) if side == BUY else min(max(prev), max(cur))
        prices = {p for p in prices if (p >= edge if side == BUY else p <= edge)}
    return sorted(prices, key=lambda p: -p if side == BUY else p)  # touch first


def synthesize_messages(t: Ticks, n_levels: int, step: int) -> Messages:
    """One LOBSTER message per row of ``t`` (rules in the module docstring); ``step``: grid step x 10,000.

    Row 0 (no previous book) is a type 1 of its best bid's whole volume."""
    n = len(t)
    typ = np.zeros(n, np.int8)
    oid = np.zeros(n, np.int64)
    size = np.zeros(n)
    price = np.zeros(n, np.int64)
    direction = np.zeros(n, np.int8)
    ids = OrderBookIds()
    books = {s: (np.round(px[:, :n_levels] * PRICE_SCALE).astype(np.int64).tolist(), sz[:, :n_levels].tolist())
             for s, px, sz in ((BUY, t.bid_px, t.bid_sz), (SELL, t.ask_px, t.ask_sz))}
    trade_side, trade_px, trade_sz = t.trade_side.tolist(), t.trade_px.tolist(), t.trade_sz.tolist()
    prev = {s: {} for s in books}
    for i in range(n):
        cur = {s: _levels(px[i], sz[i]) for s, (px, sz) in books.items()}
        full = {s: sz[i][-1] > 0 and (i == 0 or sz[i - 1][-1] > 0) for s, (px, sz) in books.items()}
        changes = []  # (rank from the touch, side, price, delta)
        for s in books:
            for rank, p in enumerate(_comparable(prev[s], cur[s], s, full[s])):
                d = cur[s].get(p, 0.0) - prev[s].get(p, 0.0)
                if abs(d) > 1e-9:
                    changes.append((rank, s, p, d))
        if trade_side[i] != 0:
            s = -trade_side[i]
            p = int(round(trade_px[i] * PRICE_SCALE))
            fell = cur[s].get(p, 0.0) < prev[s].get(p, 0.0)
            typ[i], size[i], price[i], direction[i] = EXECUTE if fell else HIDDEN, trade_sz[i], p, s
            if fell:
                oid[i], _ = ids.take(s, p, prev[s][p] - cur[s].get(p, 0.0), oldest=True)
            else:
                oid[i] = ids.next_id
                ids.next_id += 1
        elif changes:
            _, s, p, d = min(changes, key=lambda c: c[0])
            size[i], price[i], direction[i] = abs(d), p, s
            if d > 0:
                typ[i], oid[i] = ADD, ids.add(s, p, d)
            else:
                oid[i], whole = ids.take(s, p, -d, oldest=CANCEL_OLDEST_FIRST)
                typ[i] = DELETE if whole else PARTIAL_CANCEL
        else:
            deepest = min(cur[BUY]) if cur[BUY] else 0
            typ[i], price[i], direction[i] = PARTIAL_CANCEL, deepest - step, BUY
        for s in books:
            ids.sync(s, cur[s])
        prev = cur
    return Messages(_local_ns(t), typ, oid, size, price, direction)


def _local_ns(t: Ticks) -> np.ndarray:
    """(N,) ns after midnight, exchange local time, of each row (the importer's conversion reversed)."""
    first = datetime.fromtimestamp(int(t.ts_ns[0]) // 10**9, tz=timezone.utc).astimezone(EXCHANGE_TZ)
    offset_ns = int(first.utcoffset().total_seconds()) * 10**9
    midnight = datetime(first.year, first.month, first.day, tzinfo=timezone.utc)
    return t.ts_ns + offset_ns - int(midnight.timestamp()) * 10**9


def _level_count(t: Ticks) -> int:
    used = np.flatnonzero((t.bid_sz > 0).any(axis=0) | (t.ask_sz > 0).any(axis=0))
    return int(min(max(int(t.meta.get("n_levels", N_LEVELS)), int(used.max()) + 1), N_LEVELS))


def _number(x: np.ndarray) -> list[str]:
    """Sizes as LOBSTER writes them: integers where whole."""
    return [str(int(v)) if v == int(v) else repr(float(v)) for v in x]


def lobster_csvs(t: Ticks, n_levels: int | None = None) -> tuple[str, str, int]:
    """The message and orderbook CSV texts of one symbol-day, and its level count."""
    n_levels = n_levels or _level_count(t)
    step = int(round(float(t.meta.get("tick_size", 0.01)) * PRICE_SCALE))
    m = synthesize_messages(t, n_levels, step)
    secs = [f"{v // 10**9}.{v % 10**9:09d}" for v in m.time_ns.tolist()]
    msg = "\n".join(f"{s},{ty},{o},{z},{p},{d}" for s, ty, o, z, p, d in
                    zip(secs, m.type.tolist(), m.order_id.tolist(), _number(m.size),
                        m.price.tolist(), m.direction.tolist())) + "\n"
    cols = []
    for k in range(n_levels):
        for px, sz, dummy in ((t.ask_px, t.ask_sz, ASK_DUMMY), (t.bid_px, t.bid_sz, BID_DUMMY)):
            empty = sz[:, k] <= 0
            cols.append([str(int(dummy)) if e else str(int(round(p * PRICE_SCALE))) for e, p in zip(empty, px[:, k])])
            cols.append(["0" if e else s for e, s in zip(empty, _number(sz[:, k]))])
    book = "\n".join(",".join(row) for row in zip(*cols)) + "\n"
    return msg, book, n_levels


def export_lobster(data: Path, out: Path, symbols: list[str] | None = None) -> list[Path]:
    """Write every symbol-day of dataset ``data`` (or of ``symbols``) as a LOBSTER CSV pair into ``out``;
    returns the message files. Each file is written atomically."""
    out = Path(out)
    written = []
    for f in dataset_files(data):
        if symbols is not None and f.parent.name not in symbols:
            continue
        t = read_ticks(f)
        msg, book, n_levels = lobster_csvs(t)
        local = _local_ns(t)
        date = t.meta.get("date") or f.stem
        tag = f.stem[len(date):] if f.stem.startswith(date) else ""  # e.g. a `lob generate` rollout's "_r03"
        stem = f"{t.symbol}_{date}{tag}_{int(local[0]) // 10**6}_{int(local[-1]) // 10**6 + 1}"
        for kind, text in (("orderbook", book), ("message", msg)):
            path = out / f"{stem}_{kind}_{n_levels}.csv"
            atomic_write(path, lambda tmp, text=text: Path(tmp).write_text(text))
        written.append(out / f"{stem}_message_{n_levels}.csv")
        print(f"{t.symbol} {date}: {len(t):,} messages, {n_levels} level(s) -> {written[-1]}")
    if not written:
        raise KeyError(f"{data}: no data for symbol(s) {symbols}")
    return written
