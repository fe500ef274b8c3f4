"""How requests reach the server: one bidirectional ``ModelStreamInfer`` stream, or unary ``ModelInfer`` calls.

Both carry the same `ModelInferRequest`s and report to one event queue, tagged with the connection's
``tag`` (the driver's (link, generation): answers and breaks of a connection already replaced are ignored):
``(RESPONSE, tag, (request id, ModelInferResponse | None, error message | None))`` and
``(BROKEN, tag, reason)``. A transport never blocks its caller; sync transports post from gRPC threads,
async ones from tasks on the loop. Unary calls have no stream to break: a call failing with UNAVAILABLE
(no server, connection reset) stands for a broken connection.
"""
from __future__ import annotations

import asyncio
import queue
import threading
from typing import Optional, Sequence

import grpc
from tritonclient.grpc import service_pb2_grpc

from .options import TLS, Pem

TICK, RESPONSE, BROKEN, INPUT_DONE, INPUT_FAILED = range(5)
_MAX_MESSAGE = 64 * 2**20
_OPTIONS = [("grpc.max_receive_message_length", _MAX_MESSAGE),
            # a fresh channel per connection; keep its own reconnect attempts short so a restarted server is seen fast
            ("grpc.initial_reconnect_backoff_ms", 50), ("grpc.min_reconnect_backoff_ms", 50),
            ("grpc.max_reconnect_backoff_ms", 1000)]
# Triton's own UNAVAILABLE answers to one request (not a lost connection)
_SERVER_UNAVAILABLE = ("timeout of the corresponding sequence has been expired",)

Metadata = Sequence[tuple[str, str]]  # gRPC call metadata, e.g. the routing header x-lob-shard


def _pem(value: Pem) -> Optional[bytes]:
    """PEM bytes as given, or read from a file path."""
    if value is None or isinstance(value, bytes):
        return value
    with open(value, "rb") as f:
        return f.read()


def credentials(tls: Optional[TLS]) -> Optional[grpc.ChannelCredentials]:
    """gRPC channel credentials of ``tls``, or None for plaintext."""
    if tls is None:
        return None
    return grpc.ssl_channel_credentials(_pem(tls.root_certificates), _pem(tls.private_key),
                                        _pem(tls.certificate_chain))


def describe(err: grpc.RpcError, what: str, url: str, tls: bool) -> str:
    code = err.code()
    text = f"gRPC {what} to {url} failed: {code.name if code else 'UNKNOWN'}: {err.details()}"
    if code == grpc.StatusCode.UNAVAILABLE and not tls:
        text += " (if the server speaks TLS, pass tls=lobclient.TLS(...))"
    return text


def _is_break(err: grpc.RpcError) -> bool:
    return err.code() == grpc.StatusCode.UNAVAILABLE and not any(m in (err.details() or "") for m in _SERVER_UNAVAILABLE)


def _channel(url: str, creds, aio: bool):
    make = grpc.aio if aio else grpc
    return (make.secure_channel(url, creds, options=_OPTIONS) if creds is not None
            else make.insecure_channel(url, options=_OPTIONS))


class _Link:
    """What every transport holds: its channel and stub, and the event queue it posts to (``put_nowait``:
    ``queue.Queue`` and ``asyncio.Queue`` both have it, and both are unbounded here)."""

    aio = False

    def __init__(self, url: str, creds, events, tag, metadata: Metadata = ()):
        self.url, self.tls, self.events, self.tag = url, creds is not None, events, tag
        self.closed, self.metadata = False, tuple(metadata)
        self.channel = _channel(url, creds, aio=self.aio)
        self.stub = service_pb2_grpc.GRPCInferenceServiceStub(self.channel)

    def _streamed(self, r) -> None:
        """Post one ``ModelStreamInferResponse``: a prediction or the server's refusal of that request."""
        self.events.put_nowait((RESPONSE, self.tag, (r.infer_response.id, r.infer_response, r.error_message or None)))

    def _stream_ended(self, reason: str) -> None:
        if not self.closed:
            self.events.put_nowait((BROKEN, self.tag, reason))

    def _answered(self, rid: str, response) -> None:
        if not self.closed:
            self.events.put_nowait((RESPONSE, self.tag, (rid, response, None)))

    def _call_failed(self, rid: str, err: grpc.RpcError) -> None:
        """A failed unary call: a broken connection, or the server's refusal of that one request."""
        if self.closed:
            return
        if _is_break(err):
            self.events.put_nowait((BROKEN, self.tag, describe(err, "call", self.url, self.tls)))
        else:
            self.events.put_nowait((RESPONSE, self.tag, (rid, None, err.details() or err.code().name)))


class _Stream(_Link):
    """One ``ModelStreamInfer`` call fed from ``outbox`` (None ends it)."""

    outbox: queue.Queue | asyncio.Queue

    def send(self, request) -> None:
        self.outbox.put_nowait(request)

    def _end(self) -> None:
        self.closed = True
        self.outbox.put_nowait(None)
        self.call.cancel()


class SyncStream(_Stream):
    """One ``ModelStreamInfer`` call; its answers read on a thread."""

    def __init__(self, url: str, creds, events: queue.Queue, tag, metadata: Metadata = ()):
        super().__init__(url, creds, events, tag, metadata)
        self.outbox: queue.Queue = queue.Queue()
        self.call = self.stub.ModelStreamInfer(iter(self.outbox.get, None), metadata=self.metadata)
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        try:
            for r in self.call:
                self._streamed(r)
            reason = f"gRPC stream to {self.url} closed by the server"
        except grpc.RpcError as err:
            reason = describe(err, "stream", self.url, self.tls)
        self._stream_ended(reason)

    def close(self) -> None:
        self._end()
        self.channel.close()


class SyncUnary(_Link):
    """Unary ``ModelInfer`` calls, each answered on a gRPC thread; as many in flight as the mux sends."""

    def __init__(self, url: str, creds, events: queue.Queue, tag, call_timeout_s: float, metadata: Metadata = ()):
        super().__init__(url, creds, events, tag, metadata)
        self.call_timeout_s = call_timeout_s

    def send(self, request) -> None:
        future = self.stub.ModelInfer.future(request, timeout=self.call_timeout_s, metadata=self.metadata)
        future.add_done_callback(lambda f, rid=request.id: self._done(rid, f))

    def _done(self, rid: str, future) -> None:
        try:
            response = future.result()
        except grpc.RpcError as err:
            self._call_failed(rid, err)
        else:
            self._answered(rid, response)

    def close(self) -> None:
        self.closed = True
        self.channel.close()


class AsyncStream(_Stream):
    """asyncio twin of `SyncStream`."""

    aio = True

    def __init__(self, url: str, creds, events: asyncio.Queue, tag, metadata: Metadata = ()):
        super().__init__(url, creds, events, tag, metadata)
        self.outbox: asyncio.Queue = asyncio.Queue()
        self.call = self.stub.ModelStreamInfer(self._requests(), metadata=self.metadata)
        self.reader = asyncio.ensure_future(self._read())

    async def _requests(self):
        while (request := await self.outbox.get()) is not None:
            yield request

    async def _read(self) -> None:
        try:
            async for r in self.call:
                self._streamed(r)
            reason = f"gRPC stream to {self.url} closed by the server"
        except grpc.aio.AioRpcError as err:
            reason = describe(err, "stream", self.url, self.tls)
        except asyncio.CancelledError:
            return
        self._stream_ended(reason)

    def close(self) -> None:
        self._end()
        self.reader.cancel()
        return asyncio.ensure_future(self.channel.close())  # awaited by a caller that ends


class AsyncUnary(_Link):
    """asyncio twin of `SyncUnary`: one task per call."""

    aio = True

    def __init__(self, url: str, creds, events: asyncio.Queue, tag, call_timeout_s: float,
                 metadata: Metadata = ()):
        super().__init__(url, creds, events, tag, metadata)
        self.call_timeout_s = call_timeout_s
        self.tasks: set[asyncio.Task] = set()

    def send(self, request) -> None:
        task = asyncio.ensure_future(self._call(request))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _call(self, request) -> None:
        try:
            response = await self.stub.ModelInfer(request, timeout=self.call_timeout_s, metadata=self.metadata)
        except grpc.aio.AioRpcError as err:
            self._call_failed(request.id, err)
        else:
            self._answered(request.id, response)

    def close(self) -> None:
        self.closed = True
        for task in self.tasks:
            task.cancel()
        return asyncio.ensure_future(self.channel.close())  # awaited by a caller that ends
