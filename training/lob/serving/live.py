"""``lob live binance``: Binance's public websocket streams -> one `lob.data.binance_ws.BookBuilder` per
symbol -> ticks -> `lobclient.stream` (predictions printed or written) or the signal sidecar (Redis).

One combined-stream connection ``WS_URL/stream?streams=<s>@depth@100ms/<s>@bookTicker/<s>@trade/...`` for
all symbols; each builder buffers diffs until its REST snapshot (``REST_URL?symbol=S&limit=1000``, stdlib
urllib in a worker thread) arrives. A gap (broken update-id chain), a snapshot older than the stream, or a
message the builder refuses (logged with the symbol and update id) takes that symbol out of sync and fetches
a fresh snapshot; a disconnect takes every symbol out of sync and reconnects with exponential backoff
(``BACKOFF_S``). Ticks made after a resync start a new session (`BookTick.session_start`, logged), and no
tick is sent twice: while out of sync a symbol makes none. ``time``: a tick's ``ts_ns`` is the local
receive time (``local``) or the message's exchange time made non-decreasing per symbol (``exchange``, as
`lob.data.binance_ws.import_binance_ws` stamps it).
"""
from __future__ import annotations

import asyncio
import json
import queue
import threading
import time as clock
import urllib.parse
import urllib.request
from typing import Callable, Iterator, Optional

import numpy as np

import lobclient
from lob.contract import PROB_COLUMNS, STREAM_MODEL
from lob.data.binance_ws import CLOCKS, MARKETS, BookBuilder, BookError, BookTick, exchange_ns

ENDPOINTS = {  # market -> (websocket base URL, REST depth endpoint)
    "usdm": ("wss://fstream.binance.com", "https://fapi.binance.com/fapi/v1/depth"),
    "coinm": ("wss://dstream.binance.com", "https://dapi.binance.com/dapi/v1/depth"),
    "spot": ("wss://stream.binance.com:9443", "https://api.binance.com/api/v3/depth"),
}
STREAMS = ("depth@100ms", "bookTicker", "trade")
SNAPSHOT_LIMIT = 1000
BACKOFF_S = (0.25, 30.0)  # first and largest wait before a reconnect or a snapshot retry; doubles in between
HTTP_TIMEOUT_S = 10.0


def stream_url(ws_url: str, symbols: list[str]) -> str:
    """The combined-stream URL of ``symbols`` (lower-cased stream names, as Binance names them)."""
    names = "/".join(f"{s.lower()}@{kind}" for s in symbols for kind in STREAMS)
    return f"{ws_url.rstrip('/')}/stream?streams={names}"


def fetch_snapshot(rest_url: str, symbol: str) -> dict:
    """GET the depth snapshot of ``symbol`` (JSON object with ``lastUpdateId``, ``bids``, ``asks``)."""
    query = urllib.parse.urlencode({"symbol": symbol, "limit": SNAPSHOT_LIMIT})
    with urllib.request.urlopen(f"{rest_url}?{query}", timeout=HTTP_TIMEOUT_S) as reply:
        return json.loads(reply.read())


class BinanceFeed:
    """Ticks of ``symbols`` from Binance (or any server speaking its protocol at ``ws_url`` / ``rest_url``)."""

    def __init__(self, symbols: list[str], market: str = "usdm", ws_url: Optional[str] = None,
                 rest_url: Optional[str] = None, time: str = "local", ticks_from: str = "diffs",
                 log: Callable[[str], None] = print):
        if market not in MARKETS:
            raise ValueError(f"market must be one of {MARKETS}, got {market!r}")
        if time not in CLOCKS:
            raise ValueError(f"time must be one of {CLOCKS}, got {time!r}")
        if not symbols:
            raise ValueError("give at least one symbol")
        self.symbols = [s.upper() for s in symbols]
        self.ws_url = ws_url or ENDPOINTS[market][0]
        self.rest_url = rest_url or ENDPOINTS[market][1]
        self.time, self.log = time, log
        self.builders = {s: BookBuilder(market, ticks_from) for s in self.symbols}
        self.last_ts = {s: 0 for s in self.symbols}
        self.counts = {"connects": 0, "disconnects": 0, "refused": 0, "snapshot_errors": 0}
        self.session_starts: dict[str, list[int]] = {s: [] for s in self.symbols}  # ts_ns of each (re)sync's first tick
        self._fetching: dict[str, asyncio.Task] = {}

    # ---------------------------------------------------------------------------------------------- asyncio

    async def run(self, emit: Callable[[str, BookTick], None], stop: asyncio.Event) -> None:
        """Connect, feed the builders, ``emit(symbol, tick)`` each tick, reconnect after a drop; until ``stop``."""
        import websockets

        wait = BACKOFF_S[0]
        url = stream_url(self.ws_url, self.symbols)
        while not stop.is_set():
            try:
                async with websockets.connect(url, max_size=None, open_timeout=HTTP_TIMEOUT_S) as ws:
                    self.counts["connects"] += 1
                    self.log(f"connected to {url}")
                    wait = BACKOFF_S[0]
                    reader = asyncio.ensure_future(self._read(ws, emit, stop))
                    stopper = asyncio.ensure_future(stop.wait())
                    await asyncio.wait({reader, stopper}, return_when=asyncio.FIRST_COMPLETED)
                    stopper.cancel()
                    if reader.done():
                        reader.result()  # raises the connection's end; a clean close ends it quietly
                    else:
                        reader.cancel()
                ended = "closed by the server"
            except (OSError, asyncio.TimeoutError, websockets.ConnectionClosed, websockets.InvalidHandshake) as err:
                ended = f"{type(err).__name__}: {err}"
            for task in self._fetching.values():
                task.cancel()
            self._fetching.clear()
            if stop.is_set():
                return
            self.counts["disconnects"] += 1
            self.log(f"disconnected ({ended}); reconnecting in {wait:.2f} s")
            for builder in self.builders.values():
                builder.reset()  # a disconnect loses diffs: every book resyncs from a fresh snapshot
            try:
                await asyncio.wait_for(stop.wait(), wait)
            except asyncio.TimeoutError:
                pass
            wait = min(2 * wait, BACKOFF_S[1])

    async def _read(self, ws, emit, stop: asyncio.Event) -> None:
        async for raw in ws:
            received = clock.time_ns()
            try:
                msg = json.loads(raw)
                data = msg["data"] if isinstance(msg, dict) and isinstance(msg.get("data"), dict) else msg
                symbol = str(data.get("s", "")).upper()
            except (ValueError, AttributeError) as err:
                self.counts["refused"] += 1
                self.log(f"refused message {str(raw)[:80]!r}: {err}")
                continue
            if symbol in self.builders:  # a symbol's snapshot is fetched once its stream is buffering
                self._feed(symbol, msg, received, emit)
                self._want_snapshot(symbol, emit, stop)

    def _feed(self, symbol: str, msg: dict, received: int, emit) -> None:
        builder = self.builders[symbol]
        ts = received
        if self.time == "exchange":
            ts = max(exchange_ns(msg) or self.last_ts[symbol], self.last_ts[symbol])
        self.last_ts[symbol] = max(ts, self.last_ts[symbol])
        gaps = builder.counts["gaps"]
        try:
            ticks = builder.on_message(msg, ts)
        except BookError as err:  # the book is out of sync now: resync, keep running
            self.counts["refused"] += 1
            self.log(f"{symbol}: refused message ({err}); resyncing")
            builder.reset()
            return
        if builder.counts["gaps"] > gaps:
            self.log(f"{symbol}: gap in the diff chain (after update id {builder.last_u}); resyncing")
        for tick in ticks:
            if tick.session_start:
                self.session_starts[symbol].append(tick.ts_ns)
                self.log(f"{symbol}: in sync at update id {builder.last_u}; a new session starts")
            emit(symbol, tick)

    def _want_snapshot(self, symbol: str, emit, stop: asyncio.Event) -> None:
        if self.builders[symbol].needs_snapshot and symbol not in self._fetching:
            self._fetching[symbol] = asyncio.ensure_future(self._snapshot(symbol, emit, stop))

    async def _snapshot(self, symbol: str, emit, stop: asyncio.Event) -> None:
        wait = BACKOFF_S[0]
        try:
            while not stop.is_set():
                try:
                    snap = await asyncio.to_thread(fetch_snapshot, self.rest_url, symbol)
                    if not isinstance(snap, dict) or "lastUpdateId" not in snap:
                        raise ValueError(f"not a depth snapshot: {str(snap)[:80]}")
                except (OSError, ValueError) as err:
                    self.counts["snapshot_errors"] += 1
                    self.log(f"{symbol}: snapshot failed ({err}); retrying in {wait:.2f} s")
                else:
                    too_old = self.builders[symbol].counts["snapshots_too_old"]
                    self._feed(symbol, snap, clock.time_ns(), emit)
                    if not self.builders[symbol].needs_snapshot:
                        return
                    if self.builders[symbol].counts["snapshots_too_old"] > too_old:
                        self.log(f"{symbol}: snapshot {snap['lastUpdateId']} older than the stream; retrying in {wait:.2f} s")
                await asyncio.sleep(wait)
                wait = min(2 * wait, BACKOFF_S[1])
        finally:
            self._fetching.pop(symbol, None)

    # ------------------------------------------------------------------------------------------------- sync

    def ticks(self, max_ticks: Optional[int] = None, max_seconds: Optional[float] = None) -> Iterator[lobclient.Tick]:
        """The feed as a blocking iterator of `lobclient.Tick` (the feed runs in its own thread) until
        ``max_ticks`` ticks or ``max_seconds`` (None: forever), or the consumer stops iterating."""
        out: queue.Queue = queue.Queue()
        done = object()
        loop = asyncio.new_event_loop()
        stop = asyncio.Event()

        def emit(symbol: str, t: BookTick) -> None:
            out.put(lobclient.Tick(symbol, t.ts_ns, t.bid_px, t.bid_sz, t.ask_px, t.ask_sz, t.trade_px, t.trade_sz,
                                   t.trade_side))

        def main():
            try:
                loop.run_until_complete(self.run(emit, stop))
            except BaseException as err:  # handed to the consumer
                out.put(err)
            finally:
                loop.close()
                out.put(done)

        thread = threading.Thread(target=main, daemon=True, name="lob-live-binance")
        thread.start()
        deadline = None if max_seconds is None else clock.monotonic() + max_seconds
        sent = 0
        try:
            while max_ticks is None or sent < max_ticks:
                try:
                    item = out.get(timeout=None if deadline is None else max(0.0, deadline - clock.monotonic()))
                except queue.Empty:
                    return
                if item is done:
                    return
                if isinstance(item, BaseException):
                    raise item
                sent += 1
                yield item
        finally:
            if not loop.is_closed():
                loop.call_soon_threadsafe(stop.set)
            thread.join(timeout=HTTP_TIMEOUT_S + 5)


def run_live(symbols: list[str], market: str = "usdm", url: str = "localhost:8001", redis_url: Optional[str] = None,
             out=None, ws_url: Optional[str] = None, rest_url: Optional[str] = None, time: str = "local",
             ticks_from: str = "diffs", max_ticks: Optional[int] = None, max_seconds: Optional[float] = None,
             model: str = STREAM_MODEL, prefix: str = "lob", ttl_s: float = 2.0) -> dict:
    """Run the live feed through the server at ``url`` until a limit, Ctrl-C or SIGTERM. With ``redis_url``: the
    signal sidecar (`lob.serving.signal.sidecar`); else one JSON line per prediction on stdout (symbol, seq,
    ts_ns, the ``PROB_COLUMNS``, or the error), and with ``out`` the predictions parquet written at the end.
    Returns the feed's and builders' counts."""
    import signal
    import sys

    from rich.console import Console

    err = Console(stderr=True)
    feed = BinanceFeed(symbols, market, ws_url, rest_url, time, ticks_from, log=lambda line: err.print(f"lob live: {line}"))
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    ticks = feed.ticks(max_ticks, max_seconds)
    try:
        if redis_url is not None:
            from lob.serving.signal import sidecar

            sidecar(ticks, url, redis_url, prefix=prefix, ttl_s=ttl_s, model=model)
        else:
            preds = []
            for p in lobclient.stream(ticks, url=url, model=model):
                row = {"symbol": p.symbol, "seq": p.seq, "ts_ns": p.ts_ns}
                if p.error is None:
                    row.update(zip(PROB_COLUMNS, np.asarray(p.dir_probs, float).ravel().tolist()))
                    preds.append(p)
                else:
                    row["error"] = p.error
                print(json.dumps(row), flush=True)
            if out is not None:
                from lob.serving.replay import save_predictions

                save_predictions(out, preds)
                err.print(f"lob live: wrote {len(preds):,} predictions to {out}")
    except KeyboardInterrupt:
        pass
    finally:
        ticks.close()
    counts = {**feed.counts, **{s: b.counts for s, b in feed.builders.items()}}
    err.print(f"lob live: stopped; {json.dumps(counts)}")
    return counts
