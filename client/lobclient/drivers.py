"""`stream` (blocking generator) and `astream` (asyncio): ticks of many symbols in, one prediction per tick out.

One skeleton: the sans-IO `Mux` decides what to send; `_Session` applies events to it, opens a connection
per link (one, or one per shard) and sends what it returns; its `steps()` generator is the whole driver
loop, and the two drivers only supply the I/O around it: a thread or a task reading the input (so
predictions are released as soon as they are ready, even while a live feed waits for its next tick; at
most ``window`` ticks are read ahead of the consumer) and a blocking or awaited wait for the next event.
"""
from __future__ import annotations

import asyncio
import queue
import threading
import time
from typing import AsyncIterable, AsyncIterator, Callable, Generator, Iterable, Iterator, Literal, Optional, Union

from . import transport as tp
from .mux import Mux
from .options import TLS, Recovery, Transport
from .protocol import SHARD_HEADER, DirectRequests, EnsembleRequests, random_namespace
from .records import Prediction, Tick, TickFailed

Event = tuple  # (kind, tag, payload); kind None: only the clock moved
Steps = Generator[Union[Prediction, Optional[float]], Event, None]  # yields a prediction, or how long to wait


class _Session:
    """A `Mux` and its connections: applies events, (re)opens connections, sends what the mux says."""

    def __init__(self, mux: Mux, open_transport: Callable[[int, tuple[int, int]], object], errors: str):
        if errors not in ("record", "raise"):
            raise ValueError(f"errors must be 'record' or 'raise', got {errors!r}")
        self.mux, self.open_transport, self.errors = mux, open_transport, errors
        self.gens = [0] * len(mux.links)
        self.transports: list = [None] * len(mux.links)

    def handle(self, kind, tag, payload, connect: bool = True) -> None:
        """Apply one event."""
        mux, now, out = self.mux, time.monotonic(), []
        if kind == tp.TICK:
            out = mux.add(payload)
        elif kind == tp.RESPONSE and tag[1] == self.gens[tag[0]]:
            out = mux.on_response(*payload)
        elif kind == tp.BROKEN and tag[1] == self.gens[tag[0]] and self.transports[tag[0]] is not None:
            self.transports[tag[0]].close()
            self.transports[tag[0]] = None
            mux.on_break(tag[0], payload, now)
        out += mux.expire(now)
        if connect:
            for link in mux.connect_due(now):
                self.gens[link] += 1
                self.transports[link] = self.open_transport(link, (link, self.gens[link]))
                out += mux.on_connected(link)
        self.send(out)

    def send(self, out) -> None:
        for link, request in out:
            self.transports[link].send(request)

    def timeout(self) -> Optional[float]:
        deadline = self.mux.next_deadline()
        return None if deadline is None else max(0.0, deadline - time.monotonic())

    def steps(self) -> Steps:
        """The driver loop: yields each prediction in input order (the driver hands it to the consumer), or
        the seconds to wait for the next event (the driver sends it in; (None, None, None) when none came)."""
        mux, input_done = self.mux, False
        self.handle(None, None, None)  # connect
        while True:
            for prediction in mux.ready():
                if prediction.error is not None and self.errors == "raise":
                    raise TickFailed(prediction)
                yield prediction
            if input_done and mux.pending == 0:
                return
            kind, tag, item = yield self.timeout()
            if kind == tp.INPUT_FAILED:
                raise item
            input_done |= kind == tp.INPUT_DONE
            self.handle(kind, tag, item)

    def close_steps(self) -> Steps:
        """Let answers in flight land, send END for every open sequence and wait (in all at most
        ``timeout_s``) for the server to take them. Ticks arriving now are not sent: the consumer has left."""
        deadline = time.monotonic() + self.mux.timeout_s
        yield from self._answers_while(lambda: self.mux.in_flight, deadline)
        self.send(self.mux.close())
        yield from self._answers_while(lambda: self.mux.closing, deadline)

    def _answers_while(self, waiting: Callable[[], object], deadline: float) -> Steps:
        while waiting() and time.monotonic() < deadline:
            kind, tag, item = yield max(0.0, deadline - time.monotonic())
            if kind in (tp.RESPONSE, tp.BROKEN):
                self.handle(kind, tag, item, connect=False)

    def drop(self) -> list:
        """Close every connection; returns the closing tasks of async ones."""
        closing = [t.close() for t in self.transports if t is not None]
        self.transports = [None] * len(self.transports)
        return [c for c in closing if c is not None]


def _session(url: str, model: Optional[str], tokenizer, namespace: Optional[str], errors: str, transport: Transport,
             recovery: Recovery, tls: Optional[TLS], events, aio: bool, chunk: int) -> _Session:
    builder = EnsembleRequests(model) if tokenizer is None else DirectRequests(tokenizer, model)
    mux = Mux(builder, transport.timeout_s, random_namespace() if namespace is None else namespace, recovery,
              transport.shards, url, chunk)
    creds = tp.credentials(tls)
    kind = {("stream", False): tp.SyncStream, ("unary", False): tp.SyncUnary,
            ("stream", True): tp.AsyncStream, ("unary", True): tp.AsyncUnary}[transport.kind, aio]
    timeout = () if transport.kind == "stream" else (transport.timeout_s + 1.0,)

    def open_transport(link: int, tag: tuple[int, int]):
        metadata = transport.metadata + (() if transport.shards is None else ((SHARD_HEADER, str(link)),))
        return kind(url, creds, events, tag, *timeout, metadata=metadata)

    return _Session(mux, open_transport, errors)


def _run_sync(steps: Steps, events: queue.Queue, on_prediction: Callable[[], None]) -> Iterator[Prediction]:
    try:
        step = next(steps)
        while True:
            if isinstance(step, Prediction):
                on_prediction()
                yield step
                step = next(steps)
            else:
                try:
                    event = events.get(timeout=step)
                except queue.Empty:
                    event = (None, None, None)
                step = steps.send(event)
    except StopIteration:
        return


def stream(ticks: Iterable[Tick], url: str = "localhost:8001", *, model: Optional[str] = None, tokenizer=None,
           namespace: Optional[str] = None, errors: Literal["record", "raise"] = "record",
           transport: Transport = Transport(), recovery: Recovery = Recovery(), tls: Optional[TLS] = None,
           chunk: int = 1) -> Iterator[Prediction]:
    """Yield one `Prediction` per tick of ``ticks``, in input order.

    ``tokenizer`` None: the ensemble path, raw ticks to ``model`` (default ``lob_stream``). ``tokenizer`` a
    ``lobtick.tokenizer.Tokenizer`` or the path of its ``tokenizer.json``: the direct path, ticks tokenized here
    and ``TOKEN`` + ``FEATURES`` sent to the step ``model`` (default ``mamba_lob_onnx``); a tick the
    tokenizer refuses never leaves the client. Both paths have the same guarantees, recovery, TLS and shards.

    Each symbol is its own Triton sequence (id `sequence_id(symbol, namespace)`; ``namespace`` None draws
    a random one for this call, so streams never share server state unless they pin the same namespace);
    START on its first tick, END when the stream closes. A tick refused, or without an answer within
    ``transport.timeout_s``, yields a `Prediction` whose ``error`` says why (``errors="record"``) or raises
    `TickFailed` (``errors="raise"``); it is never skipped, never duplicated. ``transport`` (`Transport`):
    unary or stream, window, timeout, shards, metadata; ``recovery`` (`Recovery`): re-warm and reconnect
    (docs/serving.md); ``tls`` (`TLS`): None for plaintext. ``chunk`` N > 1: ticks of a symbol that wait while
    its previous request is in flight go as one request of up to N ticks (backfills; 1, one tick per request,
    is the live default); same predictions either way.
    """
    events: queue.Queue = queue.Queue()
    session = _session(url, model, tokenizer, namespace, errors, transport, recovery, tls, events, aio=False,
                       chunk=chunk)
    credits = threading.Semaphore(transport.window)  # ticks the reader may take ahead of the consumer
    stop = threading.Event()

    def read_ticks():
        try:
            for tick in ticks:
                while not credits.acquire(timeout=0.1):
                    if stop.is_set():
                        return
                if stop.is_set():
                    return
                events.put((tp.TICK, None, tick))
            events.put((tp.INPUT_DONE, None, None))
        except BaseException as err:  # handed to the consumer's thread, raised there
            events.put((tp.INPUT_FAILED, None, err))

    threading.Thread(target=read_ticks, daemon=True, name="lob-tick-reader").start()
    try:
        yield from _run_sync(session.steps(), events, credits.release)
    finally:
        stop.set()
        for _ in _run_sync(session.close_steps(), events, credits.release):
            pass
        session.drop()


async def astream(ticks: Union[AsyncIterable[Tick], Iterable[Tick]], url: str = "localhost:8001", *,
                  model: Optional[str] = None, tokenizer=None, namespace: Optional[str] = None,
                  errors: Literal["record", "raise"] = "record", transport: Transport = Transport(),
                  recovery: Recovery = Recovery(), tls: Optional[TLS] = None, chunk: int = 1
                  ) -> AsyncIterator[Prediction]:
    """asyncio twin of `stream` (same arguments and guarantees). ``ticks`` may be an async iterable or a
    sync one that never blocks (a list); a live feed should be async, since a sync one is read on the loop."""
    events: asyncio.Queue = asyncio.Queue()
    session = _session(url, model, tokenizer, namespace, errors, transport, recovery, tls, events, aio=True,
                       chunk=chunk)
    credits = asyncio.Semaphore(transport.window)

    async def read_ticks():
        try:
            if hasattr(ticks, "__aiter__"):
                async for tick in ticks:
                    await credits.acquire()
                    events.put_nowait((tp.TICK, None, tick))
            else:
                for tick in ticks:
                    await credits.acquire()
                    events.put_nowait((tp.TICK, None, tick))
            events.put_nowait((tp.INPUT_DONE, None, None))
        except asyncio.CancelledError:
            raise
        except BaseException as err:
            events.put_nowait((tp.INPUT_FAILED, None, err))

    async def next_event(timeout: Optional[float]) -> Event:
        try:
            return await asyncio.wait_for(events.get(), timeout)
        except asyncio.TimeoutError:
            return None, None, None

    reader = asyncio.create_task(read_ticks())
    steps = session.steps()
    try:
        step = next(steps)
        while True:
            if isinstance(step, Prediction):
                credits.release()
                yield step
                step = next(steps)
            else:
                step = steps.send(await next_event(step))
    except StopIteration:
        pass
    finally:
        reader.cancel()
        closing = session.close_steps()
        try:
            step = next(closing)
            while True:
                step = closing.send(await next_event(step))
        except StopIteration:
            pass
        for task in session.drop():
            await task
