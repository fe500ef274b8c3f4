"""Binance websocket sessions: one L2 book builder (`BookBuilder`) fed one message at a time, and the importer
of recorded sessions (`import_binance_ws`) into the canonical tick table. `lob live binance` feeds the same
builder from the live streams (`lob.serving.live`).

**Book rules** (binance-docs, "How to manage a local order book correctly"). Depth diffs (``depthUpdate``:
first/last update id ``U``/``u``, futures also ``pu`` = the previous diff's ``u``) that arrive before the
REST snapshot (``lastUpdateId``, ``bids``, ``asks``) are buffered (with the trades and bookTickers between them,
so these meet the book they arrived with). USD-M and COIN-M futures: diffs with
``u < lastUpdateId`` are dropped, the first applied one has ``U <= lastUpdateId <= u`` and each later one
``pu`` equal to the previous ``u``. Spot: diffs with ``u <= lastUpdateId`` are dropped, the first applied one
has ``U <= lastUpdateId + 1 <= u`` and each later one ``U`` equal to the previous ``u + 1``. A size of 0
removes a level. A broken chain, or a snapshot older than the first buffered diff, is a **gap**: the book is
out of sync (no ticks; trades then are dropped and counted) until a newer snapshot; the first tick after it
starts a new session (``session_start``), so no label crosses the gap (`lob.training.labels.session_ids`).

**Ticks.** One per applied diff that changes the top ``N_LEVELS`` levels (a diff that changes only deeper
levels is invisible in the canonical table: it would be a repeated row that moves the tick clock without
an event the model can see; counted as ``diffs_below_top``), the first after each (re)sync always, and one
per ``trade`` (carrying the book as it stands; aggressor from ``m``: the buyer is the maker, so ``m`` true
is seller-initiated, -1). With ``ticks_from="touch"`` a ``bookTicker`` newer than the last applied diff
(by update id) also makes a tick: the rebuilt book with its best level replaced by the bookTicker's (levels
it has overtaken dropped), until the next diff; the default ``"diffs"`` uses bookTicker only for checking.

**Touch check.** A ``bookTicker`` whose ``u`` is the ``u`` of an applied diff (before or after that diff
arrives) must show the rebuilt best bid/ask price and size: ``touch_checked`` / ``touch_mismatches`` count
it, the first few mismatches are kept in ``mismatch_examples``; nothing is corrected.

**Recordings.** Lines ``<local receive time, ns> <raw JSON>`` (gzip or plain): combined-stream messages
``{"stream": ..., "data": {...}}`` or bare ones, and REST snapshots. Several files of one session (one
after another, the later ones without a snapshot) are one builder run. ``time="local"`` (default) stamps
a tick with the receive time: one clock over all streams, ns resolution, in the order the builder saw
the messages; ``"exchange"`` with the message's ``T`` (else ``E``; spot bookTicker carries neither: the
last exchange time seen), which interleaves across streams (7,264 backwards steps in the 93,954 BTCUSDT
lines), so it is made non-decreasing (``clock_clamped`` counts the raised stamps).

Numpy only (no torch, no lobclient).
"""
from __future__ import annotations

import gzip
from bisect import bisect_left, insort
import json
import math
import zlib
from collections import deque
from pathlib import Path
from typing import Iterator, NamedTuple

import numpy as np

from lob.contract import N_LEVELS
from lob.data.schema import TickDataError, Ticks, day_path, validate, write_ticks

MARKETS = ("usdm", "coinm", "spot")
TICKS_FROM = ("diffs", "touch")
CLOCKS = ("local", "exchange")
MAX_BUFFER = 100_000  # messages kept while waiting for a snapshot (minutes of a busy symbol)
_RECENT = 4096  # applied diffs' touches / early bookTickers kept for the touch check
_EXAMPLES = 5
NS_PER_MS = 1_000_000
NS_PER_DAY = 86_400 * 10**9


class BookError(ValueError):
    """A message the builder cannot use (malformed, or a rebuilt book that crosses); the caller names where."""


class BookTick(NamedTuple):
    """One tick: the book after the event (``(N_LEVELS,)`` float64 arrays, best first, 0-padded) and the trade."""

    ts_ns: int
    bid_px: np.ndarray
    bid_sz: np.ndarray
    ask_px: np.ndarray
    ask_sz: np.ndarray
    trade_px: float
    trade_sz: float
    trade_side: int
    session_start: bool  # first tick after a (re)sync


def _pad(values) -> np.ndarray:
    """(N_LEVELS,) float64: the first N_LEVELS values, 0-padded."""
    out = np.zeros(N_LEVELS)
    values = np.asarray(values, np.float64)[:N_LEVELS]
    out[:values.size] = values
    return out


def _levels(rows, name: str) -> list[tuple[float, float]]:
    try:
        out = [(float(p), float(q)) for p, q in rows]
    except (TypeError, ValueError) as err:
        raise BookError(f"field {name!r}: levels must be [price, size] pairs ({err})") from None
    for p, q in out:
        if not (math.isfinite(p) and math.isfinite(q) and p > 0 and q >= 0):
            raise BookError(f"field {name!r}: bad level [{p}, {q}]")
    return out


def _field(msg: dict, name: str, kind=int):
    try:
        return kind(msg[name])
    except KeyError:
        raise BookError(f"field {name!r} missing") from None
    except (TypeError, ValueError):
        raise BookError(f"field {name!r}: {msg[name]!r} is not {kind.__name__}") from None


def _parse_diff(msg: dict, market: str) -> tuple:
    """(U, u, pu or None for spot, bid levels, ask levels) of a depthUpdate."""
    prev = _field(msg, "pu") if market != "spot" else None
    return (_field(msg, "U"), _field(msg, "u"), prev, _levels(msg.get("b", ()), "b"), _levels(msg.get("a", ()), "a"))


def _parse_ticker(msg: dict, market: str) -> tuple:
    """(u, (best bid, its size, best ask, its size)) of a bookTicker."""
    return _field(msg, "u"), tuple(_field(msg, k, float) for k in ("b", "B", "a", "A"))


def _parse_trade(msg: dict, market: str) -> tuple:
    """(price, quantity, aggressor side) of a trade: ``m`` (the buyer is the maker) true is a sell, -1."""
    px, qty, maker = _field(msg, "p", float), _field(msg, "q", float), msg.get("m")
    if not isinstance(maker, bool):
        raise BookError(f"field 'm': {maker!r} is not true/false")
    if not (px > 0 and qty > 0):
        raise BookError(f"trade price {px} / quantity {qty} not positive")
    return px, qty, -1 if maker else 1


class BookBuilder:
    """The L2 book of one symbol from a REST snapshot and depth diffs, under ``market``'s rules (module docstring).

    Feed every message (snapshot, depthUpdate, bookTicker, trade; combined-stream wrappers are unwrapped) in
    arrival order to `on_message` with its timestamp; it returns the ticks it makes. ``needs_snapshot`` is
    true while out of sync (a live feed then fetches one); ``counts`` holds what happened.
    """

    def __init__(self, market: str = "usdm", ticks_from: str = "diffs"):
        if market not in MARKETS:
            raise ValueError(f"market must be one of {MARKETS}, got {market!r}")
        if ticks_from not in TICKS_FROM:
            raise ValueError(f"ticks_from must be one of {TICKS_FROM}, got {ticks_from!r}")
        self.market, self.ticks_from = market, ticks_from
        self.bids: dict[float, float] = {}  # price -> size
        self.asks: dict[float, float] = {}
        self._prices = {"bid": [], "ask": []}  # each side's prices, ascending
        self.synced = False
        self.last_u: int | None = None  # the last applied diff's u (or the snapshot's id before the first)
        self._snapshot_id: int | None = None  # set between a snapshot and its first applied diff
        self._buffer: deque = deque(maxlen=MAX_BUFFER)  # (kind, fields, ts_ns) waiting for a snapshot
        self._new_session = False
        self._top: tuple | None = None  # the rebuilt top levels (bid_px, bid_sz, ask_px, ask_sz)
        self._view: tuple | None = None  # what the last tick showed (touch mode: maybe a bookTicker overlay)
        self._touch_at: dict[int, tuple] = {}  # applied diff u -> rebuilt (bid, bid size, ask, ask size)
        self._early: dict[int, tuple] = {}  # bookTicker u ahead of the book -> its touch
        self.counts = {k: 0 for k in ("snapshots", "snapshots_ignored", "diffs_applied", "diffs_stale",
                                      "diffs_below_top", "gaps", "snapshots_too_old", "resyncs", "touch_checked", "touch_mismatches",
                                      "bookticker_ticks", "trades", "trades_unsynced", "one_sided", "buffer_overflow")}
        self.mismatch_examples: list[str] = []

    @property
    def needs_snapshot(self) -> bool:
        return not self.synced and self._snapshot_id is None

    # ------------------------------------------------------------------------------------------------ input

    def on_message(self, msg: dict, ts_ns: int) -> list[BookTick]:
        """Apply one parsed message received at ``ts_ns``; returns the ticks it makes (often none)."""
        if not isinstance(msg, dict):
            raise BookError(f"expected a JSON object, got {type(msg).__name__}")
        if "data" in msg and isinstance(msg["data"], dict):
            msg = msg["data"]
        if "lastUpdateId" in msg:
            return self.on_snapshot(msg, ts_ns)
        kind = msg.get("e") or ("bookTicker" if {"u", "b", "a", "B", "A"} <= set(msg) else None)
        parse = {"depthUpdate": _parse_diff, "bookTicker": _parse_ticker, "trade": _parse_trade}.get(kind)
        if parse is None:
            raise BookError(f"unknown message (event {kind!r}): not a snapshot, depthUpdate, bookTicker or trade")
        return self._apply((kind, parse(msg, self.market), ts_ns))  # checked now, applied now or after a snapshot

    def _apply(self, item: tuple) -> list[BookTick]:
        """One parsed message (kind, fields, ts_ns); while waiting for a snapshot every kind is buffered, so that
        the trades and bookTickers between the diffs meet the book they arrived with once it is rebuilt."""
        if self.needs_snapshot:
            if len(self._buffer) == self._buffer.maxlen:
                self.counts["buffer_overflow"] += 1
            self._buffer.append(item)
            return []
        kind, fields, ts_ns = item
        handle = {"depthUpdate": self._on_diff, "bookTicker": self._on_bookticker, "trade": self._on_trade}[kind]
        return handle(*fields, ts_ns)

    def on_snapshot(self, snap: dict, ts_ns: int) -> list[BookTick]:
        """A REST depth snapshot: starts a sync when out of sync (ignored and counted while in sync)."""
        last_id = _field(snap, "lastUpdateId")
        bids, asks = _levels(snap.get("bids", ()), "bids"), _levels(snap.get("asks", ()), "asks")
        if self.synced or self._snapshot_id is not None:
            self.counts["snapshots_ignored"] += 1
            return []
        self.counts["snapshots"] += 1
        self.bids = {p: q for p, q in bids if q > 0}
        self.asks = {p: q for p, q in asks if q > 0}
        self._prices = {"bid": sorted(self.bids), "ask": sorted(self.asks)}
        self._snapshot_id = self.last_u = last_id
        buffered, out = list(self._buffer), []
        self._buffer.clear()
        for item in buffered:
            out += self._apply(item)
        return out

    def reset(self) -> None:
        """Out of sync (a disconnect, a broken chain, a refused book; counted as a gap when it was in sync): the
        next snapshot resyncs."""
        if self.synced:
            self.counts["gaps"] += 1
        self.synced, self._snapshot_id = False, None
        self._buffer.clear()
        self._early.clear()

    # ------------------------------------------------------------------------------------------------ diffs

    def _on_diff(self, first: int, last: int, prev: int | None, bids: list, asks: list, ts_ns: int) -> list[BookTick]:
        item = ("depthUpdate", (first, last, prev, bids, asks), ts_ns)
        spot = self.market == "spot"
        if not self.synced:  # between a snapshot and its first diff
            sid = self._snapshot_id
            if last < sid or (spot and last == sid):
                self.counts["diffs_stale"] += 1
                return []
            if not (first <= sid + spot <= last):  # the snapshot is older than the stream: fetch a newer one
                self.counts["snapshots_too_old"] += 1
                self._gap(item)
                return []
        elif (prev != self.last_u) if not spot else (first != self.last_u + 1):
            self._gap(item)
            return []
        for book, prices, levels in ((self.bids, self._prices["bid"], bids), (self.asks, self._prices["ask"], asks)):
            for p, q in levels:
                if q > 0:
                    if p not in book:
                        insort(prices, p)
                    book[p] = q
                elif book.pop(p, None) is not None:  # removing an absent level is normal
                    del prices[bisect_left(prices, p)]
        self.last_u = last
        self.counts["diffs_applied"] += 1
        if not self.synced:
            self.synced, self._snapshot_id, self._new_session = True, None, True
            self.counts["resyncs"] += 1
        top = self._rebuild_top()
        if top is not None:
            self._check(last, top)
        if top is None or (not self._new_session and self._same(top, self._view)):
            if top is not None:
                self.counts["diffs_below_top"] += 1
            return []
        return [self._tick(top, ts_ns)]

    def _gap(self, item: tuple) -> None:
        """Out of sync; the diff that broke the chain waits for the next snapshot."""
        self.reset()
        self._buffer.append(item)

    def _rebuild_top(self) -> tuple | None:
        bid_p, ask_p = self._prices["bid"][:-N_LEVELS - 1:-1], self._prices["ask"][:N_LEVELS]
        if not bid_p or not ask_p:
            self.counts["one_sided"] += 1
            self._top = None
            return None
        if bid_p[0] >= ask_p[0]:
            self.reset()
            raise BookError(f"rebuilt book crosses: best bid {bid_p[0]} >= best ask {ask_p[0]} (update id {self.last_u})")
        self._top = (_pad(bid_p), _pad([self.bids[p] for p in bid_p]), _pad(ask_p), _pad([self.asks[p] for p in ask_p]))
        return self._top

    @staticmethod
    def _same(a: tuple | None, b: tuple | None) -> bool:
        return a is not None and b is not None and all(np.array_equal(x, y) for x, y in zip(a, b))

    def _tick(self, view: tuple, ts_ns: int, trade: tuple[float, float, int] = (0.0, 0.0, 0)) -> BookTick:
        self._view = view
        start, self._new_session = self._new_session, False
        return BookTick(int(ts_ns), *view, *trade, start)

    # ----------------------------------------------------------------------------------- bookTicker, trades

    def _check(self, u: int, top: tuple) -> None:
        touch = (top[0][0], top[1][0], top[2][0], top[3][0])
        self._touch_at[u] = touch
        if len(self._touch_at) > _RECENT:
            del self._touch_at[next(iter(self._touch_at))]
        if u in self._early:
            self._compare(u, self._early.pop(u), touch)

    def _compare(self, u: int, shown: tuple, rebuilt: tuple) -> None:
        self.counts["touch_checked"] += 1
        if shown != rebuilt:
            self.counts["touch_mismatches"] += 1
            if len(self.mismatch_examples) < _EXAMPLES:
                self.mismatch_examples.append(f"update id {u}: bookTicker bid {shown[0]} x {shown[1]} ask {shown[2]} x "
                                              f"{shown[3]}, rebuilt bid {rebuilt[0]} x {rebuilt[1]} ask {rebuilt[2]} x {rebuilt[3]}")

    def _on_bookticker(self, u: int, shown: tuple, ts_ns: int) -> list[BookTick]:
        if not self.synced:
            return []
        if u in self._touch_at:
            self._compare(u, shown, self._touch_at[u])
        elif u > self.last_u:
            self._early[u] = shown
            if len(self._early) > _RECENT:
                del self._early[next(iter(self._early))]
        if self.ticks_from != "touch" or u <= self.last_u or self._top is None:
            return []
        view = self._overlay(shown)
        if view is None or self._same(view, self._view):
            return []
        self.counts["bookticker_ticks"] += 1
        return [self._tick(view, ts_ns)]

    def _overlay(self, shown: tuple) -> tuple | None:
        """The rebuilt top levels with the bookTicker's best level on each side (levels it overtook dropped)."""
        bid, bid_sz, ask, ask_sz = shown
        if not (bid_sz > 0 and ask_sz > 0 and 0 < bid < ask):
            return None
        bp, bs, ap, az = self._top
        keep_b, keep_a = (bp < bid) & (bp > 0), ap > ask
        return (_pad(np.r_[bid, bp[keep_b]]), _pad(np.r_[bid_sz, bs[keep_b]]),
                _pad(np.r_[ask, ap[keep_a]]), _pad(np.r_[ask_sz, az[keep_a]]))

    def _on_trade(self, px: float, qty: float, side: int, ts_ns: int) -> list[BookTick]:
        if not self.synced or self._view is None:
            self.counts["trades_unsynced"] += 1
            return []
        self.counts["trades"] += 1
        return [self._tick(self._view, ts_ns, (px, qty, side))]

    # --------------------------------------------------------------------------------------------- snapshot

    def snapshot(self) -> dict:
        """The whole rebuilt book as a REST depth snapshot (``lastUpdateId`` = the last applied ``u``)."""
        if not self.synced:
            raise BookError("no book: out of sync")
        return {"lastUpdateId": self.last_u,
                "bids": [[repr(p), repr(self.bids[p])] for p in reversed(self._prices["bid"])],
                "asks": [[repr(p), repr(self.asks[p])] for p in self._prices["ask"]]}


# --------------------------------------------------------------------------------------------------- recordings

def exchange_ns(msg: dict) -> int | None:
    """A message's exchange time in ns: ``T`` (transaction time), else ``E`` (event time); None when neither
    and for a snapshot (it arrives when the REST call returns, so it does not move the clock)."""
    data = msg.get("data", msg) if isinstance(msg, dict) else {}
    if not isinstance(data, dict) or "lastUpdateId" in data:
        return None
    ms = data.get("T", data.get("E"))
    return int(ms) * NS_PER_MS if isinstance(ms, int) and not isinstance(ms, bool) else None


def recorded_lines(files: list[Path]) -> Iterator[tuple[Path, int, int, dict]]:
    """(file, 1-based line, local receive ns, message) of each recording line; `TickDataError` names a bad one."""
    for file in files:
        file = Path(file)
        with open(file, "rb") as f:
            opener = gzip.open if f.read(2) == b"\x1f\x8b" else open
        row = 0
        try:
            with opener(file, "rt", encoding="utf-8") as f:
                for row, line in enumerate(f, 1):
                    if not line.strip():
                        continue
                    stamp, _, text = line.partition(" ")
                    try:
                        local = int(stamp)
                    except ValueError:
                        raise TickDataError(str(file), row, "receive time", f"{stamp[:40]!r} is not an integer ns stamp") from None
                    try:
                        msg = json.loads(text)
                    except json.JSONDecodeError as err:
                        raise TickDataError(str(file), row, None, f"not JSON: {err}") from None
                    yield file, row, local, msg
        except (EOFError, zlib.error, gzip.BadGzipFile, UnicodeDecodeError) as err:
            raise TickDataError(str(file), row + 1, None, f"unreadable (truncated or corrupt file?): {err}") from None


def tick_size_of(snap: dict) -> float:
    """The price grid seen in a snapshot: the smallest gap between adjacent levels (1,000 levels a side hold it)."""
    gaps = [np.diff(sorted(float(p) for p, _ in snap.get(side, ()))) for side in ("bids", "asks")]
    gaps = np.concatenate(gaps) if gaps else np.zeros(0)
    gaps = gaps[gaps > 0]
    if gaps.size == 0:
        raise BookError("cannot infer the tick size from the snapshot (fewer than 2 levels); give --tick-size")
    return float(np.round(gaps.min(), 10))


def import_binance_ws(files: list[Path], out: Path, symbol: str | None = None, market: str = "usdm",
                      time: str = "local", ticks_from: str = "diffs", tick_size: float | None = None) -> list[Path]:
    """Import recorded websocket files of one session (in the order given) into ``out``; returns the day files.

    ``symbol`` None: the messages' ``s``; given, every message must be of it. ``tick_size`` None: inferred from
    the first snapshot (`tick_size_of`). Every day is checked before any is written.
    """
    if time not in CLOCKS:
        raise ValueError(f"time must be one of {CLOCKS}, got {time!r}")
    files = [Path(f) for f in files]
    builder = BookBuilder(market, ticks_from)
    ticks: list[BookTick] = []
    where: list[tuple[int, int]] = []  # (file index, line) of each tick
    last_ex, clamped, n_lines, last_local, local_at = 0, 0, 0, None, None
    for file, row, local, msg in recorded_lines(files):
        n_lines += 1
        if last_local is not None and local < last_local:
            raise TickDataError(str(file), row, "receive time", f"goes backwards ({local} after {last_local} at "
                                f"{local_at}): files out of order?")
        last_local, local_at = local, f"{file.name}:{row}"
        data = msg.get("data", msg) if isinstance(msg, dict) else msg
        if isinstance(data, dict) and "s" in data:
            if symbol is None:
                symbol = str(data["s"])
            elif data["s"] != symbol:
                raise TickDataError(str(file), row, "s", f"message of {data['s']!r} in a session of {symbol!r}")
        if isinstance(data, dict) and "lastUpdateId" in data and tick_size is None:
            try:
                tick_size = tick_size_of(data)
            except BookError as err:
                raise TickDataError(str(file), row, None, str(err)) from None
        ex = exchange_ns(msg)
        if time == "exchange":
            ts = max(ex if ex is not None else last_ex, last_ex)
            clamped += ex is not None and ex < last_ex
            last_ex = ts
        else:
            ts = local
        try:
            made = builder.on_message(msg, ts)
        except BookError as err:
            raise TickDataError(str(file), row, None, str(err)) from None
        ticks += made
        if made:
            where += [(files.index(file), row)] * len(made)
    names = ", ".join(f.name for f in files)
    if builder.counts["snapshots"] == 0:
        raise TickDataError(names, None, "lastUpdateId", "no depth snapshot in the session: the book cannot be rebuilt "
                            "(give the session's earlier file, the one that starts with a snapshot, first)")
    if not ticks:
        raise TickDataError(names, None, None, "no tick: the book never synchronised with the snapshot")
    if not tick_size or tick_size <= 0:
        raise TickDataError(names, None, "tick_size", f"{tick_size} is not a positive price step")

    n = len(ticks)
    ts_ns = np.array([t.ts_ns for t in ticks], np.int64)
    book = [np.stack([getattr(t, k) for t in ticks]) for k in ("bid_px", "bid_sz", "ask_px", "ask_sz")]
    trade = [np.array([getattr(t, k) for t in ticks], dt) for k, dt in
             (("trade_px", np.float64), ("trade_sz", np.float64), ("trade_side", np.int8))]
    starts = np.array([t.session_start for t in ticks])
    starts[0] = False  # the first tick starts the import anyway
    day_index = ts_ns // NS_PER_DAY
    bounds = np.flatnonzero(np.r_[True, np.diff(day_index) > 0])
    counts = {**builder.counts, "lines": n_lines, "clock_clamped": int(clamped)}
    days = []
    for a, b in zip(bounds, np.r_[bounds[1:], n]):
        date = str(np.datetime64(int(ts_ns[a]), "ns").astype("datetime64[D]"))
        part = Ticks(ts_ns[a:b], *(x[a:b] for x in book), *(x[a:b] for x in trade), symbol=symbol,
                     meta={"date": date, "tick_size": tick_size, "n_levels": N_LEVELS, "source": "binance-ws",
                           "market": market, "time_field": time, "ticks_from": ticks_from,
                           "files": [f.name for f in files], "session_starts_ns": ts_ns[a:b][starts[a:b]].tolist(),
                           "counts": counts, "mismatch_examples": builder.mismatch_examples})
        try:
            validate(part, names)
        except TickDataError as err:
            if err.row is None:
                raise
            f, line = where[a + err.row]
            raise TickDataError(str(files[f]), line, err.field, err.problem) from None
        days.append((day_path(out, symbol, date), part))
    written = [write_ticks(path, part) for path, part in days]
    print(f"Binance websocket {symbol} ({market}, {len(files)} file(s), {n_lines:,} lines): {n:,} ticks "
          f"({builder.counts['trades']:,} trades) in {len(written)} day(s); gaps {builder.counts['gaps']}, touch "
          f"checks {builder.counts['touch_checked']:,} ({builder.counts['touch_mismatches']} mismatched); "
          f"dropped: {builder.counts['diffs_stale']} stale diffs, {builder.counts['trades_unsynced']} unsynced trades")
    return written
