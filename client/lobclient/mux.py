"""Many symbols over one or several connections, as a state machine without I/O (the sync and the asyncio
driver of `lobclient.drivers` share it).

Requests are built by a pluggable builder (`lobclient.protocol`): `EnsembleRequests` (raw tick -> the
``lob_stream`` ensemble) or `DirectRequests` (tokenized here -> the step model). Everything below holds for both.

Ordering: each symbol is its own Triton sequence and has at most ONE request in flight. Triton runs a
sequence's requests in arrival order inside one model, but an ensemble hands a step's requests to the
next model as each completes, so two in-flight ticks of one symbol are not guaranteed to reach the
stateful steps in order. One in flight per symbol also tells the client whether a sequence's first tick
was accepted before it sends the next: a refused START tick is followed by another START.
Concurrency comes from many symbols; predictions are released in input order.

Tokenizer state (direct path): a tick is encoded when it is sent, from the symbol's state after its last
ACCEPTED tick; the new state is committed when the server accepts the tick. A tick the builder refuses
(`BadTick`) is answered at once with that error and never sent; the state does not move.

Links: with ``shards`` S, symbol ``s`` always goes on link ``shard(s, S)`` (its own connection, labelled by
the driver with the ``x-lob-shard`` header); each link connects, breaks and reconnects on its own.

Chunks: a request carries T >= 1 consecutive ticks of its symbol. With ``chunk`` N > 1 the ticks of a symbol
that wait while its previous request is in flight go as one request of up to N (a backfill; live streams
keep N = 1). A chunk the server refuses for a bad tick (atomic: its state did not move) is sent again one
tick per request, so every tick gets its own prediction or error, in order.

Recovery: each symbol keeps a ring of the payloads of its last ``rewarm_ticks`` accepted ticks. When its
server state is gone (a no-state error, a broken connection, a timeout), the next request is a START of the
ring's oldest payloads, the ring is replayed in chunks of ``Recovery.rewarm_chunk`` (answers dropped), then
the pending tick is sent again. A broken connection puts every in-flight tick of its link back at the head of its symbol's queue and
schedules a reconnect with bounded exponential backoff; after ``reconnect_deadline_s`` without a connection
every tick of that link not yet answered, and every later one, fails with the reason.
"""
from __future__ import annotations

import itertools
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Optional

from tritonclient.grpc import service_pb2

from .errors import classify_error
from .options import Recovery
from . import contract as c
from .protocol import fill_predictions, sequence_id, shard
from .records import Prediction, Tick

MAX_REWARMS_PER_TICK = 3  # no-state answers to one tick before it fails (a server that keeps forgetting)

Send = tuple[int, service_pb2.ModelInferRequest]  # (link, request)


@dataclass
class _Entry:
    tick: Tick
    prediction: Prediction
    done: bool = False
    sent_at: float = 0.0
    rewarms: int = 0  # re-warms this tick has triggered
    interrupted: Optional[str] = None  # why it was taken back after being sent (a broken connection)


@dataclass
class _Symbol:
    name: str
    seq_id: int
    link: int
    ring: deque  # payloads of the last rewarm_ticks accepted ticks, oldest first
    state: Any = None  # the builder's state after the last accepted tick (direct path: TokenizerState)
    waiting: deque = field(default_factory=deque)  # _Entry not yet sent
    replay: deque = field(default_factory=deque)  # ring payloads still to re-send before waiting[0]
    in_flight: Optional[str] = None  # request id
    started: bool = False  # the server holds state for this sequence (a START of it was accepted)
    depth: int = 0  # ticks the server state has taken since its START (replayed ones included)
    n_ticks: int = 0
    singles: int = 0  # ticks at the head of waiting to send one per request (a refused chunk's)


@dataclass
class _Request:
    sym: _Symbol
    entries: list[_Entry]  # the ticks it carries, in order; empty: replayed ring payloads, answers dropped
    sent_at: float
    payloads: list  # kept in the ring when accepted
    new_state: Any = None  # the symbol's state once accepted


@dataclass
class _Link:
    """One connection (one per shard)."""

    label: str  # for messages: the url, and the shard
    connected: bool = False
    down_since: Optional[float] = None  # since when no connection has answered
    next_attempt: float = 0.0
    attempts: int = 0  # connection attempts since the last answer
    last_failure: str = "not connected yet"
    broken: Optional[str] = None  # the link is over: every tick on it fails with this


class Mux:
    """Feed it ticks (`add`), answers (`on_response`), connection events (`on_connected`, `on_break`) and
    the clock (`expire`); send the ``(link, request)`` pairs they return. ``ready()`` pops finished
    predictions in input order; ``pending`` counts ticks not yet popped; ``connect_due(now)`` lists the
    links to open a connection for.
    """

    def __init__(self, builder, timeout_s: float, namespace: str = "", recovery: Recovery = Recovery(),
                 shards: Optional[int] = None, url: str = "", chunk: int = 1):
        if not isinstance(chunk, int) or not 1 <= chunk <= c.MAX_CHUNK:
            raise ValueError(f"chunk must be an int in [1, {c.MAX_CHUNK}], got {chunk!r}")
        self.builder, self.timeout_s, self.namespace, self.recovery = builder, timeout_s, namespace, recovery
        self.chunk = chunk
        self.links = [_Link(url if shards is None else f"{url} (shard {i})") for i in range(shards or 1)]
        self.order: deque[_Entry] = deque()
        self.symbols: dict[str, _Symbol] = {}
        self.in_flight: dict[str, _Request] = {}
        self.closing: dict[str, tuple[int, float]] = {}  # END request id -> (link, deadline)
        self._ids = itertools.count()

    @property
    def pending(self) -> int:
        return len(self.order)

    # -- input ------------------------------------------------------------------------------------------
    def add(self, tick: Tick) -> list[Send]:
        sym = self.symbols.get(tick.symbol)
        if sym is None:
            sym = self.symbols[tick.symbol] = _Symbol(tick.symbol, sequence_id(tick.symbol, self.namespace),
                                                      shard(tick.symbol, len(self.links)),
                                                      deque(maxlen=self.recovery.rewarm_ticks))
        entry = _Entry(tick, Prediction(tick.symbol, tick.ts_ns, sym.n_ticks))
        sym.n_ticks += 1
        self.order.append(entry)
        if self.links[sym.link].broken is not None:
            self._finish(entry, self.links[sym.link].broken)
            return []
        sym.waiting.append(entry)
        return self._send_next(sym)

    # -- answers ----------------------------------------------------------------------------------------
    def on_response(self, rid: str, response: Optional[service_pb2.ModelInferResponse], error: Optional[str]
                    ) -> list[Send]:
        """The answer to request ``rid``: ``response`` when it succeeded, else the server's ``error``."""
        self.closing.pop(rid, None)
        request = self.in_flight.pop(rid, None)
        if request is None:  # an END, or an answer after its timeout or its connection's break
            return []
        sym, entries = request.sym, request.entries
        link = self.links[sym.link]
        link.down_since, link.attempts = None, 0  # the server answers: the connection works
        sym.in_flight = None
        if not entries:
            self._on_replayed(sym, len(request.payloads), error)
        elif error is not None:
            self._on_refused(sym, entries, error)
        else:
            try:
                fill_predictions([e.prediction for e in entries], response)
            except Exception as err:  # a server answering another contract: the ticks fail, loudly
                for entry in entries:
                    self._finish(entry, f"unexpected response from {self.builder.model}: {err}")
            else:
                for t, entry in enumerate(entries):
                    entry.prediction.warm = sym.depth + t >= self.recovery.rewarm_ticks
                    self._finish(entry, None)
                sym.started, sym.depth = True, sym.depth + len(entries)
                sym.ring.extend(request.payloads)
                sym.state = request.new_state
        return self._send_next(sym)

    def _on_replayed(self, sym: _Symbol, n: int, error: Optional[str]) -> None:
        if error is None:
            sym.started, sym.depth = True, sym.depth + n
            return
        sym.started, sym.replay = False, deque()
        entry = sym.waiting[0]
        entry.rewarms += 1
        if classify_error(error) != "no_state" or entry.rewarms > MAX_REWARMS_PER_TICK:
            sym.waiting.popleft()
            self._finish(entry, f"re-warm of {sym.name} failed: {error}")
        # else: the state went away during the replay; the next send starts the re-warm over

    def _on_refused(self, sym: _Symbol, entries: list[_Entry], error: str) -> None:
        kind, first = classify_error(error), entries[0]
        if kind == "no_state" and self.recovery.rewarm and sym.ring and first.rewarms < MAX_REWARMS_PER_TICK:
            first.rewarms += 1
            sym.started = False
            sym.waiting.extendleft(reversed(entries))  # sent again once the ring has rebuilt the state
            return
        if kind == "bad_tick" and len(entries) > 1:  # the chunk was refused whole: send its ticks one by one
            sym.waiting.extendleft(reversed(entries))
            sym.singles = len(entries)
            return
        if kind != "bad_tick":  # the server's state for this sequence is gone or unknown: START next time
            sym.started = False
        for entry in entries:
            self._finish(entry, error)

    # -- connections ------------------------------------------------------------------------------------
    def connect_due(self, now: float) -> list[int]:
        return [i for i, link in enumerate(self.links)
                if not link.connected and link.broken is None and now >= link.next_attempt]

    def on_connected(self, i: int) -> list[Send]:
        """Link ``i`` was opened (not yet proven: the first answer proves it): send what waits on it."""
        link = self.links[i]
        link.connected = True
        link.attempts += 1
        out = []
        for sym in self.symbols.values():
            if sym.link == i:
                out += self._send_next(sym)
        return out

    def on_break(self, i: int, reason: str, now: float) -> None:
        """Link ``i`` is gone: its in-flight ticks go back to their queues, its symbols' server state is
        presumed lost, and a reconnect is scheduled (or, with ``reconnect`` off, its ticks fail)."""
        link = self.links[i]
        link.connected, link.last_failure = False, reason
        for rid, request in list(self.in_flight.items()):
            if request.sym.link == i:
                del self.in_flight[rid]
                for entry in request.entries:
                    entry.interrupted = reason
                    entry.sent_at = 0.0
                request.sym.waiting.extendleft(reversed(request.entries))  # one in flight per symbol: order kept
        self._forget(i)
        if not self.recovery.reconnect:
            self._fail_link(i, reason)
            return
        if link.down_since is None:
            link.down_since = now
        base, cap = self.recovery.backoff_s
        link.next_attempt = now + min(cap, base * 2 ** max(link.attempts - 1, 0))

    def _forget(self, i: int) -> None:
        """Link ``i``'s server state is unknown: drop its ENDs; its symbols START (re-warm) next time."""
        for rid in [rid for rid, (link, _) in self.closing.items() if link == i]:
            del self.closing[rid]
        for sym in self.symbols.values():
            if sym.link == i:
                sym.in_flight, sym.started, sym.replay = None, False, deque()

    def _fail_link(self, i: int, reason: str) -> None:
        """Link ``i`` is over: every tick of it not yet answered, and every later one, fails with ``reason``."""
        self.links[i].broken = reason
        for rid, request in list(self.in_flight.items()):
            if request.sym.link == i:
                del self.in_flight[rid]
                for entry in request.entries:
                    self._finish(entry, reason)
        for sym in self.symbols.values():
            while sym.link == i and sym.waiting:
                entry = sym.waiting.popleft()
                self._finish(entry, reason if entry.interrupted is None else
                             f"in flight when the connection broke ({entry.interrupted}), not re-sent: {reason}")
        self._forget(i)

    # -- clock ------------------------------------------------------------------------------------------
    def expire(self, now: float) -> list[Send]:
        """Fail requests older than ``timeout_s`` (the symbol's server state is then unknown: its next tick
        re-warms), and a link's ticks once it has been down for ``reconnect_deadline_s``."""
        deadline_s = self.recovery.reconnect_deadline_s
        for i, link in enumerate(self.links):
            if not link.connected and link.broken is None and link.down_since is not None \
                    and now - link.down_since > deadline_s:
                self._fail_link(i, f"no connection to {link.label} for {deadline_s:g} s ({link.attempts} "
                                   f"attempts); last error: {link.last_failure}")
        out = []
        # in send order, one timeout for all: the expired ones are a prefix
        while self.in_flight:
            rid, request = next(iter(self.in_flight.items()))
            if now - request.sent_at <= self.timeout_s:
                break
            del self.in_flight[rid]
            sym = request.sym
            sym.in_flight, sym.started, sym.replay = None, False, deque()
            what = "" if request.entries else " (while re-warming)"
            for entry in request.entries or [sym.waiting.popleft()]:
                self._finish(entry, f"no answer within {self.timeout_s:g} s{what}")
            out += self._send_next(sym)
        while self.closing and next(iter(self.closing.values()))[1] < now:
            del self.closing[next(iter(self.closing))]
        return out

    def next_deadline(self) -> Optional[float]:
        deadlines = [next(iter(self.closing.values()))[1]] if self.closing else []
        if self.in_flight:
            deadlines.append(next(iter(self.in_flight.values())).sent_at + self.timeout_s)
        for link in self.links:
            if not link.connected and link.broken is None:
                deadlines.append(link.next_attempt)
                if link.down_since is not None:
                    deadlines.append(link.down_since + self.recovery.reconnect_deadline_s + 1e-3)
        return min(deadlines, default=None)

    # -- output -----------------------------------------------------------------------------------------
    def ready(self) -> list[Prediction]:
        out = []
        while self.order and self.order[0].done:
            out.append(self.order.popleft().prediction)
        return out

    def close(self) -> list[Send]:
        """END every open sequence by repeating its last accepted payload (a valid tick: same book, same
        time) with the END flag; the answer is not a prediction and is dropped."""
        out, now = [], time.monotonic()
        for sym in self.symbols.values():
            link = self.links[sym.link]
            if sym.started and sym.in_flight is None and sym.ring and link.connected and link.broken is None:
                rid = str(next(self._ids))
                out.append((sym.link, self.builder.request(rid, [sym.ring[-1]], sym.seq_id, start=False, end=True,
                                                           timeout_us=self._timeout_us)))
                self.closing[rid] = (sym.link, now + self.timeout_s)
                sym.started = False
        return out

    # -- internals --------------------------------------------------------------------------------------
    @property
    def _timeout_us(self) -> int:
        # the server rejects a tick queued behind exhausted candidate sequences before the client gives up
        return int(self.timeout_s * 0.8e6)

    def _send_next(self, sym: _Symbol) -> list[Send]:
        out = []
        while sym.in_flight is None and self.links[sym.link].connected and (sym.waiting or sym.replay):
            if not sym.started and not sym.replay and self.recovery.rewarm and sym.ring:  # state gone: rebuild it
                sym.replay, sym.depth = deque(sym.ring), 0
            now = time.monotonic()
            entries, payloads, new_state = [], [], sym.state
            if sym.replay:
                payloads = [sym.replay.popleft() for _ in range(min(self.recovery.rewarm_chunk, len(sym.replay)))]
            else:
                limit = 1 if sym.singles else self.chunk
                while sym.waiting and len(entries) < limit:
                    ticks = [sym.waiting[i].tick for i in range(min(limit - len(entries), len(sym.waiting)))]
                    encoded, new_state, refused = self.builder.encode_many(ticks, new_state)
                    for payload in encoded:
                        entry = sym.waiting.popleft()
                        sym.singles = max(0, sym.singles - 1)
                        entry.sent_at = now
                        entries.append(entry)
                        payloads.append(payload)
                    if refused is not None:  # never sent; the state does not move
                        if entries:  # encoded again once the ticks before it are accepted
                            break
                        self._finish(sym.waiting.popleft(), str(refused))
                        sym.singles = max(0, sym.singles - 1)
                if not entries:
                    continue
            start = not sym.started
            if start:
                sym.depth = 0
            rid = str(next(self._ids))
            sym.in_flight = rid
            self.in_flight[rid] = _Request(sym, entries, now, payloads, new_state)
            out.append((sym.link, self.builder.request(rid, payloads, sym.seq_id, start=start, end=False,
                                                       timeout_us=self._timeout_us)))
        return out

    def _finish(self, entry: _Entry, error: Optional[str]) -> None:
        entry.prediction.error = error
        entry.prediction.latency_s = time.monotonic() - entry.sent_at if entry.sent_at else float("nan")
        entry.done = True
