"""`stream` (blocking generator) and `astream` (asyncio): ticks of many symbols in, one prediction per tick out.

Both drive one bidirectional `ModelStreamInfer` gRPC stream with the shared `Mux`. The input is read
on its own thread (task) so predictions are released as soon as they are ready, even while the next
tick has not arrived (live feeds); at most ``window`` ticks are read ahead of the consumer (backpressure).
"""
from __future__ import annotations

import asyncio
import queue
import threading
import time
from typing import AsyncIterable, AsyncIterator, Iterable, Iterator, Literal, Sequence, Union

import grpc
from tritonclient.grpc import service_pb2_grpc

from .mux import Mux
from .records import Prediction, Tick, TickFailed

_MAX_MESSAGE = 64 * 2**20
_TICK, _RESPONSE, _INPUT_DONE, _INPUT_FAILED, _STREAM_FAILED = range(5)


def stream(ticks: Iterable[Tick], url: str = "localhost:8001", model: str = "lob_stream", window: int = 1024,
           timeout_s: float = 10.0, errors: Literal["record", "raise"] = "record", namespace: str = "",
           metadata: Sequence[tuple[str, str]] = ()) -> Iterator[Prediction]:
    """Yield one `Prediction` per tick of ``ticks``, in input order.

    Each symbol is its own Triton sequence (id `sequence_id(symbol, namespace)`, START on its first
    accepted tick, END when the stream closes); all symbols share one gRPC stream to ``url``. A tick the
    server refuses, or that gets no answer within ``timeout_s``, yields a `Prediction` whose ``error``
    says why (``errors="record"``) or raises `TickFailed` (``errors="raise"``); it is never skipped.
    ``metadata``: gRPC call metadata, e.g. the routing header ``(("x-lob-shard", "3"),)`` of `lobclient.shard`.
    """
    mux = Mux(model, timeout_s, namespace)
    events: queue.Queue = queue.Queue()
    credits = threading.Semaphore(window)  # ticks the reader may take ahead of the consumer
    stop = threading.Event()
    outbox: queue.Queue = queue.Queue()
    channel = grpc.insecure_channel(url, options=[("grpc.max_receive_message_length", _MAX_MESSAGE)])
    call = service_pb2_grpc.GRPCInferenceServiceStub(channel).ModelStreamInfer(iter(outbox.get, None),
                                                                               metadata=tuple(metadata))

    def read_ticks():
        try:
            for tick in ticks:
                while not credits.acquire(timeout=0.1):
                    if stop.is_set():
                        return
                if stop.is_set():
                    return
                events.put((_TICK, tick))
            events.put((_INPUT_DONE, None))
        except BaseException as err:  # handed to the consumer's thread, raised there
            events.put((_INPUT_FAILED, err))

    def read_responses():
        try:
            for response in call:
                events.put((_RESPONSE, response))
        except grpc.RpcError as err:
            if not stop.is_set():
                events.put((_STREAM_FAILED, f"gRPC stream to {url} failed: {err.code().name}: {err.details()}"))

    threads = [threading.Thread(target=read_ticks, daemon=True), threading.Thread(target=read_responses, daemon=True)]
    for t in threads:
        t.start()
    input_done = False
    try:
        while True:
            for prediction in mux.ready():
                credits.release()
                if prediction.error is not None and errors == "raise":
                    raise TickFailed(prediction)
                yield prediction
            if input_done and mux.pending == 0:
                break
            deadline = mux.next_deadline()
            try:
                kind, item = events.get(timeout=None if deadline is None else max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                kind = None
            if kind == _INPUT_FAILED:
                raise item
            input_done |= kind == _INPUT_DONE
            for request in _handle(mux, kind, item):
                outbox.put(request)
    finally:
        stop.set()
        _close(mux, events, outbox)
        outbox.put(None)
        call.cancel()
        channel.close()


def _handle(mux: Mux, kind, item) -> list:
    """Apply one event (or a wait that timed out: kind None) to ``mux``; the requests to send."""
    out = []
    if kind == _TICK:
        out = mux.add(item)
    elif kind == _RESPONSE:
        out = mux.on_response(item)
    elif kind == _STREAM_FAILED:
        mux.fail_all(item)
    return out + mux.expire(time.monotonic())


def _close(mux: Mux, events: queue.Queue, outbox: queue.Queue) -> None:
    """Send END for every open sequence; wait (at most timeout_s) for the server to take them."""
    deadline = time.monotonic() + mux.timeout_s
    while mux.in_flight and time.monotonic() < deadline:  # a consumer that left early: let answers land
        _drain_one(mux, events, deadline)
    for request in mux.close():
        outbox.put(request)
    while mux.closing and time.monotonic() < deadline:
        _drain_one(mux, events, deadline)


def _drain_one(mux: Mux, events: queue.Queue, deadline: float) -> None:
    try:
        kind, item = events.get(timeout=max(0.0, deadline - time.monotonic()))
    except queue.Empty:
        return
    if kind in (_RESPONSE, _STREAM_FAILED):
        _handle(mux, kind, item)  # ticks arriving now are not sent: the consumer has left


async def astream(ticks: Union[AsyncIterable[Tick], Iterable[Tick]], url: str = "localhost:8001",
                  model: str = "lob_stream", window: int = 1024, timeout_s: float = 10.0,
                  errors: Literal["record", "raise"] = "record", namespace: str = "") -> AsyncIterator[Prediction]:
    """asyncio twin of `stream` (same arguments and guarantees). ``ticks`` may be an async iterable or a
    sync one that never blocks (a list); a live feed should be async, since a sync one is read on the loop."""
    mux = Mux(model, timeout_s, namespace)
    events: asyncio.Queue = asyncio.Queue()
    credits = asyncio.Semaphore(window)
    outbox: asyncio.Queue = asyncio.Queue()

    async def requests():
        while (request := await outbox.get()) is not None:
            yield request

    async def read_ticks():
        try:
            if hasattr(ticks, "__aiter__"):
                async for tick in ticks:
                    await credits.acquire()
                    events.put_nowait((_TICK, tick))
            else:
                for tick in ticks:
                    await credits.acquire()
                    events.put_nowait((_TICK, tick))
            events.put_nowait((_INPUT_DONE, None))
        except asyncio.CancelledError:
            raise
        except BaseException as err:
            events.put_nowait((_INPUT_FAILED, err))

    async def read_responses(call):
        try:
            async for response in call:
                events.put_nowait((_RESPONSE, response))
        except grpc.aio.AioRpcError as err:
            events.put_nowait((_STREAM_FAILED, f"gRPC stream to {url} failed: {err.code().name}: {err.details()}"))

    async def next_event(deadline):
        timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
        try:
            return await asyncio.wait_for(events.get(), timeout)
        except asyncio.TimeoutError:
            return None, None

    async with grpc.aio.insecure_channel(url, options=[("grpc.max_receive_message_length", _MAX_MESSAGE)]) as channel:
        call = service_pb2_grpc.GRPCInferenceServiceStub(channel).ModelStreamInfer(requests())
        tasks = [asyncio.create_task(read_ticks()), asyncio.create_task(read_responses(call))]
        input_done = False
        try:
            while True:
                for prediction in mux.ready():
                    credits.release()
                    if prediction.error is not None and errors == "raise":
                        raise TickFailed(prediction)
                    yield prediction
                if input_done and mux.pending == 0:
                    break
                kind, item = await next_event(mux.next_deadline())
                if kind == _INPUT_FAILED:
                    raise item
                input_done |= kind == _INPUT_DONE
                for request in _handle(mux, kind, item):
                    outbox.put_nowait(request)
        finally:
            tasks[0].cancel()
            deadline = time.monotonic() + timeout_s
            while mux.in_flight and time.monotonic() < deadline:
                kind, item = await next_event(deadline)
                if kind in (_RESPONSE, _STREAM_FAILED):
                    _handle(mux, kind, item)
            for request in mux.close():
                outbox.put_nowait(request)
            while mux.closing and time.monotonic() < deadline:
                kind, item = await next_event(deadline)
                if kind in (_RESPONSE, _STREAM_FAILED):
                    _handle(mux, kind, item)
            outbox.put_nowait(None)
            call.cancel()
            tasks[1].cancel()
