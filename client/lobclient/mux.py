"""Many symbols over one gRPC stream, as a state machine without I/O (the sync and asyncio drivers share it).

Ordering: each symbol is its own Triton sequence and has at most ONE request in flight. Triton runs a
sequence's requests in arrival order inside one model, but an ensemble hands a step's requests to the
next model as each completes, so two in-flight ticks of one symbol are not guaranteed to reach the
stateful steps in order. One in flight per symbol also tells the client whether a sequence's first tick
was accepted before it sends the next: a refused START tick is followed by another START.
Concurrency comes from many symbols; predictions are released in input order.
"""
from __future__ import annotations

import itertools
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Optional

from tritonclient.grpc import service_pb2

from .protocol import fill_prediction, infer_request, sequence_id
from .records import Prediction, Tick


@dataclass
class _Entry:
    tick: Tick
    prediction: Prediction
    done: bool = False
    sent_at: float = 0.0


@dataclass
class _Symbol:
    seq_id: int
    waiting: deque = field(default_factory=deque)  # _Entry not yet sent
    in_flight: Optional[str] = None  # request id
    started: bool = False  # the server holds state for this sequence
    n_ticks: int = 0
    last_accepted: Optional[Tick] = None  # repeated with END to close the sequence


class Mux:
    """Feed it ticks (`add`), responses (`on_response`), the clock (`expire`); send what they return.

    ``ready()`` pops finished predictions in input order; ``pending`` counts ticks not yet popped.
    """

    def __init__(self, model: str, timeout_s: float, namespace: str = ""):
        self.model, self.timeout_s, self.namespace = model, timeout_s, namespace
        self.order: deque[_Entry] = deque()
        self.symbols: dict[str, _Symbol] = {}
        self.in_flight: dict[str, tuple[_Entry, _Symbol]] = {}
        self.closing: dict[str, float] = {}  # END request id -> deadline
        self.broken: Optional[str] = None
        self._ids = itertools.count()

    @property
    def pending(self) -> int:
        return len(self.order)

    def add(self, tick: Tick) -> list[service_pb2.ModelInferRequest]:
        sym = self.symbols.get(tick.symbol)
        if sym is None:
            sym = self.symbols[tick.symbol] = _Symbol(sequence_id(tick.symbol, self.namespace))
        entry = _Entry(tick, Prediction(tick.symbol, tick.ts_ns, sym.n_ticks))
        sym.n_ticks += 1
        self.order.append(entry)
        if self.broken is not None:
            self._finish(entry, self.broken)
            return []
        sym.waiting.append(entry)
        return self._send_next(sym)

    def on_response(self, response: service_pb2.ModelStreamInferResponse) -> list[service_pb2.ModelInferRequest]:
        rid = response.infer_response.id
        self.closing.pop(rid, None)
        if rid not in self.in_flight:  # an END, or an answer that came after its timeout
            return []
        entry, sym = self.in_flight.pop(rid)
        sym.in_flight = None
        if response.error_message:
            self._finish(entry, response.error_message)
        else:
            try:
                fill_prediction(entry.prediction, response.infer_response)
            except Exception as err:  # a server answering another contract: the tick fails, loudly
                self._finish(entry, f"unexpected response from {self.model}: {err}")
            else:
                sym.started, sym.last_accepted = True, entry.tick
                self._finish(entry, None)
        return self._send_next(sym)

    def expire(self, now: float) -> list[service_pb2.ModelInferRequest]:
        """Fail requests older than ``timeout_s``. The server's state for such a symbol is unknown, so
        its next tick restarts the sequence (START)."""
        out = []
        # both dicts are in send order and share one timeout: the expired ones are a prefix
        while self.in_flight:
            rid, (entry, sym) = next(iter(self.in_flight.items()))
            if now - entry.sent_at <= self.timeout_s:
                break
            del self.in_flight[rid]
            sym.in_flight, sym.started = None, False
            self._finish(entry, f"no answer within {self.timeout_s:g} s")
            out += self._send_next(sym)
        while self.closing and next(iter(self.closing.values())) < now:
            del self.closing[next(iter(self.closing))]
        return out

    def fail_all(self, reason: str) -> None:
        """The stream is gone: every tick not yet answered, and every later one, fails with ``reason``."""
        self.broken = reason
        for entry, sym in self.in_flight.values():
            self._finish(entry, reason)
        self.in_flight.clear()
        self.closing.clear()
        for sym in self.symbols.values():
            while sym.waiting:
                self._finish(sym.waiting.popleft(), reason)
            sym.in_flight, sym.started = None, False

    def ready(self) -> list[Prediction]:
        out = []
        while self.order and self.order[0].done:
            out.append(self.order.popleft().prediction)
        return out

    def close(self) -> list[service_pb2.ModelInferRequest]:
        """END every open sequence by repeating its last accepted tick (a valid tick: same book, same
        time) with the END flag; the answer is not a prediction and is dropped."""
        out, now = [], time.monotonic()
        for sym in self.symbols.values():
            if sym.started and sym.in_flight is None and self.broken is None:
                rid = str(next(self._ids))
                out.append(infer_request(self.model, rid, sym.last_accepted, sym.seq_id, start=False, end=True))
                self.closing[rid] = now + self.timeout_s
                sym.started = False
        return out

    def next_deadline(self) -> Optional[float]:
        deadlines = [next(iter(self.closing.values()))] if self.closing else []
        if self.in_flight:
            deadlines.append(next(iter(self.in_flight.values()))[0].sent_at + self.timeout_s)
        return min(deadlines, default=None)

    def _send_next(self, sym: _Symbol) -> list[service_pb2.ModelInferRequest]:
        if sym.in_flight is not None or not sym.waiting:
            return []
        entry = sym.waiting.popleft()
        rid = str(next(self._ids))
        entry.sent_at = time.monotonic()
        sym.in_flight = rid
        self.in_flight[rid] = (entry, sym)
        # START until the server has accepted a tick of this sequence (a refused START tick leaves no state)
        return [infer_request(self.model, rid, entry.tick, sym.seq_id, start=not sym.started, end=False)]

    def _finish(self, entry: _Entry, error: Optional[str]) -> None:
        entry.prediction.error = error
        entry.prediction.latency_s = time.monotonic() - entry.sent_at if entry.sent_at else float("nan")
        entry.done = True
