"""Many symbols over one connection, as a state machine without I/O (the sync and asyncio drivers share it).

Ordering: each symbol is its own Triton sequence and has at most ONE request in flight. Triton runs a
sequence's requests in arrival order inside one model, but an ensemble hands a step's requests to the
next model as each completes, so two in-flight ticks of one symbol are not guaranteed to reach the
stateful steps in order. One in flight per symbol also tells the client whether a sequence's first tick
was accepted before it sends the next: a refused START tick is followed by another START.
Concurrency comes from many symbols; predictions are released in input order.

Recovery: each symbol keeps a ring of its last ``rewarm_ticks`` accepted ticks. When its server state is
gone (a no-state error, a broken connection, a timeout), the next request is a START of the ring's oldest
tick, the rest of the ring is replayed (answers dropped), then the pending tick is sent again. A broken
connection puts every in-flight tick back at the head of its symbol's queue and schedules a reconnect
with bounded exponential backoff; after ``reconnect_deadline_s`` without a connection every tick not yet
answered, and every later one, fails with the reason.
"""
from __future__ import annotations

import itertools
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Optional

import numpy as np
from tritonclient.grpc import service_pb2

from .errors import classify_error
from .protocol import fill_prediction, infer_request, sequence_id
from .records import Prediction, Tick

MAX_REWARMS_PER_TICK = 3  # no-state answers to one tick before it fails (a server that keeps forgetting)


@dataclass
class _Entry:
    tick: Tick
    prediction: Prediction
    done: bool = False
    sent_at: float = 0.0
    rewarms: int = 0  # re-warms this tick has triggered
    interrupted: Optional[str] = None  # why it was taken back after being sent (a broken connection)


class _Ring:
    """A symbol's last ``size`` accepted ticks, oldest first, packed (~0.5 KB a tick instead of ~1 KB)."""

    def __init__(self, symbol: str, size: int):
        self.symbol, self.items = symbol, deque(maxlen=size)  # (ts_ns, (42,) float64 book + trade, side)

    def append(self, t: Tick) -> None:
        self.items.append((t.ts_ns, np.concatenate([t.bid_px, t.bid_sz, t.ask_px, t.ask_sz, (t.trade_px, t.trade_sz)]),
                           t.trade_side))

    def tick(self, i: int) -> Tick:
        ts_ns, x, side = self.items[i]
        return Tick(self.symbol, ts_ns, x[0:10], x[10:20], x[20:30], x[30:40], float(x[40]), float(x[41]), side)

    def __len__(self) -> int:
        return len(self.items)


@dataclass
class _Symbol:
    name: str
    seq_id: int
    ring: _Ring  # the last rewarm_ticks accepted ticks
    waiting: deque = field(default_factory=deque)  # _Entry not yet sent
    replay: deque = field(default_factory=deque)  # indices of ring ticks still to re-send before waiting[0]
    in_flight: Optional[str] = None  # request id
    started: bool = False  # the server holds state for this sequence (a START of it was accepted)
    depth: int = 0  # ticks the server state has taken since its START (replayed ones included)
    n_ticks: int = 0


@dataclass
class _Request:
    sym: _Symbol
    entry: Optional[_Entry]  # None: a replayed ring tick, whose answer is dropped
    sent_at: float


class Mux:
    """Feed it ticks (`add`), answers (`on_response`), connection events (`on_connected`, `on_break`) and
    the clock (`expire`); send what they return. ``ready()`` pops finished predictions in input order;
    ``pending`` counts ticks not yet popped; ``connect_due(now)`` says when to open a connection.
    """

    def __init__(self, model: str, timeout_s: float, namespace: str = "", rewarm_ticks: int = 4096,
                 rewarm: bool = True, reconnect: bool = True, reconnect_deadline_s: float = 30.0,
                 backoff_s: tuple[float, float] = (0.05, 2.0), url: str = ""):
        self.model, self.timeout_s, self.namespace, self.url = model, timeout_s, namespace, url
        self.rewarm_ticks, self.rewarm, self.reconnect = rewarm_ticks, rewarm, reconnect
        self.reconnect_deadline_s, self.backoff_s = reconnect_deadline_s, backoff_s
        self.order: deque[_Entry] = deque()
        self.symbols: dict[str, _Symbol] = {}
        self.in_flight: dict[str, _Request] = {}
        self.closing: dict[str, float] = {}  # END request id -> deadline
        self.broken: Optional[str] = None  # the stream is over: every tick fails with this
        self.connected = False
        self.down_since: Optional[float] = None  # since when no connection has answered
        self.next_attempt = 0.0
        self.attempts = 0  # connection attempts since the last answer
        self.last_failure = "not connected yet"
        self.stats = {"rewarms": 0, "replayed": 0, "resent": 0, "outages": 0}
        self._ids = itertools.count()

    @property
    def pending(self) -> int:
        return len(self.order)

    # -- input ------------------------------------------------------------------------------------------
    def add(self, tick: Tick) -> list[service_pb2.ModelInferRequest]:
        sym = self.symbols.get(tick.symbol)
        if sym is None:
            sym = self.symbols[tick.symbol] = _Symbol(tick.symbol, sequence_id(tick.symbol, self.namespace),
                                                      _Ring(tick.symbol, max(self.rewarm_ticks, 1)))
        entry = _Entry(tick, Prediction(tick.symbol, tick.ts_ns, sym.n_ticks))
        sym.n_ticks += 1
        self.order.append(entry)
        if self.broken is not None:
            self._finish(entry, self.broken)
            return []
        sym.waiting.append(entry)
        return self._send_next(sym)

    # -- answers ----------------------------------------------------------------------------------------
    def on_response(self, rid: str, response: Optional[service_pb2.ModelInferResponse], error: Optional[str]
                    ) -> list[service_pb2.ModelInferRequest]:
        """The answer to request ``rid``: ``response`` when it succeeded, else the server's ``error``."""
        self.closing.pop(rid, None)
        request = self.in_flight.pop(rid, None)
        if request is None:  # an END, or an answer after its timeout or its connection's break
            return []
        self.down_since, self.attempts = None, 0  # the server answers: the connection works
        sym, entry = request.sym, request.entry
        sym.in_flight = None
        if entry is None:
            self._on_replayed(sym, error)
        elif error is not None:
            self._on_refused(sym, entry, error)
        else:
            try:
                fill_prediction(entry.prediction, response)
            except Exception as err:  # a server answering another contract: the tick fails, loudly
                self._finish(entry, f"unexpected response from {self.model}: {err}")
            else:
                entry.prediction.warm = sym.depth >= self.rewarm_ticks
                sym.started, sym.depth = True, sym.depth + 1
                sym.ring.append(entry.tick)
                self._finish(entry, None)
        return self._send_next(sym)

    def _on_replayed(self, sym: _Symbol, error: Optional[str]) -> None:
        if error is None:
            sym.started, sym.depth = True, sym.depth + 1
            return
        sym.started, sym.replay = False, deque()
        entry = sym.waiting[0]
        entry.rewarms += 1
        if classify_error(error) != "no_state" or entry.rewarms > MAX_REWARMS_PER_TICK:
            sym.waiting.popleft()
            self._finish(entry, f"re-warm of {sym.name} failed: {error}")
        # else: the state went away during the replay; the next send starts the re-warm over

    def _on_refused(self, sym: _Symbol, entry: _Entry, error: str) -> None:
        kind = classify_error(error)
        if kind == "no_state" and self.rewarm and sym.ring and entry.rewarms < MAX_REWARMS_PER_TICK:
            entry.rewarms += 1
            sym.started = False
            sym.waiting.appendleft(entry)  # sent again once the ring has rebuilt the state
            return
        if kind != "bad_tick":  # the server's state for this sequence is gone or unknown: START next time
            sym.started = False
        self._finish(entry, error)

    # -- connection -------------------------------------------------------------------------------------
    def connect_due(self, now: float) -> bool:
        return not self.connected and self.broken is None and now >= self.next_attempt

    def on_connected(self) -> list[service_pb2.ModelInferRequest]:
        """A connection was opened (not yet proven: the first answer proves it): send what waits."""
        self.connected = True
        self.attempts += 1
        out = []
        for sym in self.symbols.values():
            out += self._send_next(sym)
        return out

    def on_break(self, reason: str, now: float) -> None:
        """The connection is gone: in-flight ticks go back to their queues, every symbol's server state is
        presumed lost, and a reconnect is scheduled (or, with ``reconnect`` off, everything fails)."""
        self.connected = False
        self.last_failure = reason
        for request in self.in_flight.values():
            if request.entry is not None:
                request.entry.interrupted = reason
                request.entry.sent_at = 0.0
                request.sym.waiting.appendleft(request.entry)  # at most one in flight per symbol: order kept
                self.stats["resent"] += 1
        self.in_flight.clear()
        self.closing.clear()
        for sym in self.symbols.values():
            sym.in_flight, sym.started, sym.replay = None, False, deque()
        if not self.reconnect:
            self.fail_all(reason)
            return
        if self.down_since is None:
            self.down_since = now
            self.stats["outages"] += 1
        base, cap = self.backoff_s
        self.next_attempt = now + min(cap, base * 2 ** max(self.attempts - 1, 0))

    def fail_all(self, reason: str) -> None:
        """The stream is over: every tick not yet answered, and every later one, fails with ``reason``."""
        self.broken = reason
        for request in self.in_flight.values():
            if request.entry is not None:
                self._finish(request.entry, reason)
        self.in_flight.clear()
        self.closing.clear()
        for sym in self.symbols.values():
            while sym.waiting:
                entry = sym.waiting.popleft()
                self._finish(entry, reason if entry.interrupted is None else
                             f"in flight when the connection broke ({entry.interrupted}), not re-sent: {reason}")
            sym.in_flight, sym.started, sym.replay = None, False, deque()

    # -- clock ------------------------------------------------------------------------------------------
    def expire(self, now: float) -> list[service_pb2.ModelInferRequest]:
        """Fail requests older than ``timeout_s`` (the symbol's server state is then unknown: its next tick
        re-warms), and everything once the connection has been down for ``reconnect_deadline_s``."""
        if not self.connected and self.broken is None and self.down_since is not None \
                and now - self.down_since > self.reconnect_deadline_s:
            self.fail_all(f"no connection to {self.url} for {self.reconnect_deadline_s:g} s ({self.attempts} "
                          f"attempts); last error: {self.last_failure}")
            return []
        out = []
        # in send order, one timeout for all: the expired ones are a prefix
        while self.in_flight:
            rid, request = next(iter(self.in_flight.items()))
            if now - request.sent_at <= self.timeout_s:
                break
            del self.in_flight[rid]
            sym = request.sym
            sym.in_flight, sym.started, sym.replay = None, False, deque()
            entry = request.entry if request.entry is not None else sym.waiting.popleft()
            what = "" if request.entry is not None else " (while re-warming)"
            self._finish(entry, f"no answer within {self.timeout_s:g} s{what}")
            out += self._send_next(sym)
        while self.closing and next(iter(self.closing.values())) < now:
            del self.closing[next(iter(self.closing))]
        return out

    def next_deadline(self) -> Optional[float]:
        deadlines = [next(iter(self.closing.values()))] if self.closing else []
        if self.in_flight:
            deadlines.append(next(iter(self.in_flight.values())).sent_at + self.timeout_s)
        if not self.connected and self.broken is None:
            deadlines.append(self.next_attempt)
            if self.down_since is not None:
                deadlines.append(self.down_since + self.reconnect_deadline_s + 1e-3)
        return min(deadlines, default=None)

    # -- output -----------------------------------------------------------------------------------------
    def ready(self) -> list[Prediction]:
        out = []
        while self.order and self.order[0].done:
            out.append(self.order.popleft().prediction)
        return out

    def close(self) -> list[service_pb2.ModelInferRequest]:
        """END every open sequence by repeating its last accepted tick (a valid tick: same book, same
        time) with the END flag; the answer is not a prediction and is dropped."""
        out, now = [], time.monotonic()
        if not self.connected or self.broken is not None:
            return out
        for sym in self.symbols.values():
            if sym.started and sym.in_flight is None and sym.ring:
                rid = str(next(self._ids))
                out.append(self._request(rid, sym.ring.tick(-1), sym.seq_id, start=False, end=True))
                self.closing[rid] = now + self.timeout_s
                sym.started = False
        return out

    # -- internals --------------------------------------------------------------------------------------
    def _send_next(self, sym: _Symbol) -> list[service_pb2.ModelInferRequest]:
        if sym.in_flight is not None or not self.connected or not (sym.waiting or sym.replay):
            return []
        rid, now = str(next(self._ids)), time.monotonic()
        if not sym.started and not sym.replay and self.rewarm and sym.ring:  # state gone: rebuild it first
            sym.replay, sym.depth = deque(range(len(sym.ring))), 0  # the ring does not change while it replays
            self.stats["rewarms"] += 1
        if sym.replay:
            tick, entry = sym.ring.tick(sym.replay.popleft()), None
            self.stats["replayed"] += 1
        else:
            entry = sym.waiting.popleft()
            tick, entry.sent_at = entry.tick, now
        start = not sym.started
        if start:
            sym.depth = 0
        sym.in_flight = rid
        self.in_flight[rid] = _Request(sym, entry, now)
        return [self._request(rid, tick, sym.seq_id, start=start, end=False)]

    def _request(self, rid: str, tick: Tick, seq_id: int, start: bool, end: bool) -> service_pb2.ModelInferRequest:
        # the server rejects a tick queued behind exhausted candidate sequences before the client gives up
        return infer_request(self.model, rid, tick, seq_id, start=start, end=end,
                             timeout_us=int(self.timeout_s * 0.8e6))

    def _finish(self, entry: _Entry, error: Optional[str]) -> None:
        entry.prediction.error = error
        entry.prediction.latency_s = time.monotonic() - entry.sent_at if entry.sent_at else float("nan")
        entry.done = True
