"""`stream` (blocking generator) and `astream` (asyncio): ticks of many symbols in, one prediction per tick out.

Both drive the shared `Mux` over a transport (`transport.py`): one bidirectional ``ModelStreamInfer``
stream (``transport="stream"``) or unary ``ModelInfer`` calls (``"unary"``), reopened after a break.
The input is read on its own thread (task) so predictions are released as soon as they are ready, even
while the next tick has not arrived (live feeds); at most ``window`` ticks are read ahead of the
consumer (backpressure).
"""
from __future__ import annotations

import asyncio
import queue
import threading
import time
from typing import AsyncIterable, AsyncIterator, Callable, Iterable, Iterator, Literal, Optional, Sequence, Union

from . import transport as tp
from .mux import Mux
from .protocol import random_namespace
from .records import Prediction, Tick, TickFailed

DEFAULT_REWARM_TICKS = 4096  # smallest with max |dp| <= 0.01 vs uninterrupted (bench/rewarm.md)


class _Session:
    """A `Mux` and its current transport: applies events, (re)opens connections, sends what the mux says."""

    def __init__(self, mux: Mux, open_transport: Callable[[int], object]):
        self.mux, self.open_transport = mux, open_transport
        self.gen, self.transport = 0, None

    def handle(self, kind, gen, payload, connect: bool = True) -> None:
        """Apply one event (kind None: only the clock moved)."""
        mux, now, out = self.mux, time.monotonic(), []
        if kind == tp.TICK:
            out = mux.add(payload)
        elif kind == tp.RESPONSE and gen == self.gen:
            out = mux.on_response(*payload)
        elif kind == tp.BROKEN and gen == self.gen and self.transport is not None:
            self.drop()
            mux.on_break(payload, now)
        out += mux.expire(now)
        if connect and mux.connect_due(now):
            self.gen += 1
            self.transport = self.open_transport(self.gen)
            out += mux.on_connected()
        self.send(out)

    def send(self, requests) -> None:
        for request in requests:
            self.transport.send(request)

    def timeout(self) -> Optional[float]:
        deadline = self.mux.next_deadline()
        return None if deadline is None else max(0.0, deadline - time.monotonic())

    def drop(self):
        """Close the transport; an async one returns its channel's closing task."""
        transport, self.transport = self.transport, None
        return None if transport is None else transport.close()


def _mux(model, timeout_s, namespace, rewarm_ticks, rewarm, reconnect, reconnect_deadline_s, backoff_s, url) -> Mux:
    if rewarm_ticks < 1:
        raise ValueError(f"rewarm_ticks must be >= 1, got {rewarm_ticks}")
    return Mux(model, timeout_s, random_namespace() if namespace is None else namespace, rewarm_ticks, rewarm,
               reconnect, reconnect_deadline_s, backoff_s, url)


def stream(ticks: Iterable[Tick], url: str = "localhost:8001", model: str = "lob_stream", window: int = 1024,
           timeout_s: float = 10.0, errors: Literal["record", "raise"] = "record", namespace: Optional[str] = None,
           *, transport: Literal["stream", "unary"] = "unary", rewarm_ticks: int = DEFAULT_REWARM_TICKS,
           rewarm: bool = True, reconnect: bool = True, reconnect_deadline_s: float = 30.0,
           backoff_s: tuple[float, float] = (0.05, 2.0), ssl: bool = False, root_certificates: tp.Pem = None,
           private_key: tp.Pem = None, certificate_chain: tp.Pem = None,
           metadata: Sequence[tuple[str, str]] = (), tokenize: Literal["server", "client"] = "server",
           tokenizer=None) -> Iterator[Prediction]:
    """Yield one `Prediction` per tick of ``ticks``, in input order.

    Each symbol is its own Triton sequence (id `sequence_id(symbol, namespace)`; ``namespace`` None draws
    a random one for this call, so streams never share server state unless they pin the same namespace);
    START on its first tick, END when the stream closes. A tick the server refuses, or that gets no
    answer within ``timeout_s``, yields a `Prediction` whose ``error`` says why (``errors="record"``) or
    raises `TickFailed` (``errors="raise"``); it is never skipped, never duplicated.

    Recovery (docs/serving.md): when the server has lost a symbol's state (restart, idle reclaim), it is
    rebuilt by replaying the symbol's last ``rewarm_ticks`` accepted ticks (``rewarm``); when the
    connection breaks it is reopened with exponential backoff between ``backoff_s`` = (first, max)
    seconds (``reconnect``), ticks in flight are re-sent after their symbol's re-warm, and after
    ``reconnect_deadline_s`` without a connection every unanswered and later tick fails with the reason.
    ``transport``: unary calls (one in flight per symbol; the default, because this server build crashes
    under ``ModelStreamInfer`` with many sequences: docs/serving.md) or one gRPC stream for all symbols.
    TLS: ``ssl=True``, ``root_certificates`` (CA, PEM bytes or a path; default the system's), and
    ``private_key`` + ``certificate_chain`` for mutual TLS. ``metadata``: gRPC call metadata, e.g. the
    routing header ``(("x-lob-shard", "3"),)`` of `lobclient.shard`.
    ``tokenize="client"``: the direct path (`lobclient.direct`): ``tokenizer`` (a ``lob.tokenizer.Tokenizer``
    or its tokenizer.json) runs here and the step model (``model``; ``mamba_lob_onnx`` for the default) is
    called with TOKEN + FEATURES over unary gRPC (no re-warm, reconnect or TLS on this path yet).
    """
    if tokenize == "client":
        from .direct import stream_direct

        yield from stream_direct(ticks, tokenizer, url, "mamba_lob_onnx" if model == "lob_stream" else model,
                                 min(window, 256), timeout_s, errors,
                                 random_namespace() if namespace is None else namespace)
        return
    mux = _mux(model, timeout_s, namespace, rewarm_ticks, rewarm, reconnect, reconnect_deadline_s, backoff_s, url)
    creds = tp.credentials(ssl, root_certificates, private_key, certificate_chain)
    events: queue.Queue = queue.Queue()
    if transport == "stream":
        session = _Session(mux, lambda gen: tp.SyncStream(url, creds, events, gen, metadata))
    elif transport == "unary":
        session = _Session(mux, lambda gen: tp.SyncUnary(url, creds, events, gen, timeout_s + 1.0, metadata))
    else:
        raise ValueError(f"transport must be 'stream' or 'unary', got {transport!r}")
    credits = threading.Semaphore(window)  # ticks the reader may take ahead of the consumer
    stop = threading.Event()

    def read_ticks():
        try:
            for tick in ticks:
                while not credits.acquire(timeout=0.1):
                    if stop.is_set():
                        return
                if stop.is_set():
                    return
                events.put((tp.TICK, 0, tick))
            events.put((tp.INPUT_DONE, 0, None))
        except BaseException as err:  # handed to the consumer's thread, raised there
            events.put((tp.INPUT_FAILED, 0, err))

    threading.Thread(target=read_ticks, daemon=True).start()
    input_done = False
    try:
        session.handle(None, 0, None)  # connect
        while True:
            for prediction in mux.ready():
                credits.release()
                if prediction.error is not None and errors == "raise":
                    raise TickFailed(prediction)
                yield prediction
            if input_done and mux.pending == 0:
                break
            try:
                kind, gen, item = events.get(timeout=session.timeout())
            except queue.Empty:
                kind, gen, item = None, 0, None
            if kind == tp.INPUT_FAILED:
                raise item
            input_done |= kind == tp.INPUT_DONE
            session.handle(kind, gen, item)
    finally:
        stop.set()
        _close_sync(session, events)


def _close_sync(session: _Session, events: queue.Queue) -> None:
    """Send END for every open sequence; wait (at most timeout_s) for the server to take them."""
    mux = session.mux
    deadline = time.monotonic() + mux.timeout_s

    def drain_one():
        try:
            kind, gen, item = events.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            return
        if kind in (tp.RESPONSE, tp.BROKEN):  # ticks arriving now are not sent: the consumer has left
            session.handle(kind, gen, item, connect=False)

    while mux.in_flight and time.monotonic() < deadline:  # a consumer that left early: let answers land
        drain_one()
    session.send(mux.close())
    while mux.closing and time.monotonic() < deadline:
        drain_one()
    session.drop()


async def astream(ticks: Union[AsyncIterable[Tick], Iterable[Tick]], url: str = "localhost:8001",
                  model: str = "lob_stream", window: int = 1024, timeout_s: float = 10.0,
                  errors: Literal["record", "raise"] = "record", namespace: Optional[str] = None,
                  *, transport: Literal["stream", "unary"] = "unary", rewarm_ticks: int = DEFAULT_REWARM_TICKS,
                  rewarm: bool = True, reconnect: bool = True, reconnect_deadline_s: float = 30.0,
                  backoff_s: tuple[float, float] = (0.05, 2.0), ssl: bool = False, root_certificates: tp.Pem = None,
                  private_key: tp.Pem = None, certificate_chain: tp.Pem = None,
                  metadata: Sequence[tuple[str, str]] = ()) -> AsyncIterator[Prediction]:
    """asyncio twin of `stream` (same arguments and guarantees). ``ticks`` may be an async iterable or a
    sync one that never blocks (a list); a live feed should be async, since a sync one is read on the loop."""
    mux = _mux(model, timeout_s, namespace, rewarm_ticks, rewarm, reconnect, reconnect_deadline_s, backoff_s, url)
    creds = tp.credentials(ssl, root_certificates, private_key, certificate_chain)
    events: asyncio.Queue = asyncio.Queue()
    if transport == "stream":
        session = _Session(mux, lambda gen: tp.AsyncStream(url, creds, events, gen, metadata))
    elif transport == "unary":
        session = _Session(mux, lambda gen: tp.AsyncUnary(url, creds, events, gen, timeout_s + 1.0, metadata))
    else:
        raise ValueError(f"transport must be 'stream' or 'unary', got {transport!r}")
    credits = asyncio.Semaphore(window)

    async def read_ticks():
        try:
            if hasattr(ticks, "__aiter__"):
                async for tick in ticks:
                    await credits.acquire()
                    events.put_nowait((tp.TICK, 0, tick))
            else:
                for tick in ticks:
                    await credits.acquire()
                    events.put_nowait((tp.TICK, 0, tick))
            events.put_nowait((tp.INPUT_DONE, 0, None))
        except asyncio.CancelledError:
            raise
        except BaseException as err:
            events.put_nowait((tp.INPUT_FAILED, 0, err))

    async def next_event(timeout):
        try:
            return await asyncio.wait_for(events.get(), timeout)
        except asyncio.TimeoutError:
            return None, 0, None

    reader = asyncio.create_task(read_ticks())
    input_done = False
    try:
        session.handle(None, 0, None)
        while True:
            for prediction in mux.ready():
                credits.release()
                if prediction.error is not None and errors == "raise":
                    raise TickFailed(prediction)
                yield prediction
            if input_done and mux.pending == 0:
                break
            kind, gen, item = await next_event(session.timeout())
            if kind == tp.INPUT_FAILED:
                raise item
            input_done |= kind == tp.INPUT_DONE
            session.handle(kind, gen, item)
    finally:
        reader.cancel()
        deadline = time.monotonic() + timeout_s

        async def drain_one():
            kind, gen, item = await next_event(max(0.0, deadline - time.monotonic()))
            if kind in (tp.RESPONSE, tp.BROKEN):
                session.handle(kind, gen, item, connect=False)

        while mux.in_flight and time.monotonic() < deadline:
            await drain_one()
        session.send(mux.close())
        while mux.closing and time.monotonic() < deadline:
            await drain_one()
        closing = session.drop()
        if closing is not None:
            await closing
