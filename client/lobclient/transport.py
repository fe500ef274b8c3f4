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


class SyncStream:
    """One ``ModelStreamInfer`` call; its answers read on a thread."""

    def __init__(self, url: str, creds, events: queue.Queue, tag, metadata: Metadata = ()):
        self.url, self.tls, self.events, self.tag = url, creds is not None, events, tag
        self.closed = False
        self.outbox: queue.Queue = queue.Queue()
        self.channel = _channel(url, creds, aio=False)
        self.call = service_pb2_grpc.GRPCInferenceServiceStub(self.channel).ModelStreamInfer(
            iter(self.outbox.get, None), metadata=tuple(metadata))
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        try:
            for r in self.call:
                self.events.put((RESPONSE, self.tag, (r.infer_response.id, r.infer_response, r.error_message or None)))
            reason = f"gRPC stream to {self.url} closed by the server"
        except grpc.RpcError as err:
            reason = describe(err, "stream", self.url, self.tls)
        if not self.closed:
            self.events.put((BROKEN, self.tag, reason))

    def send(self, request) -> None:
        self.outbox.put(request)

    def close(self) -> None:
        self.closed = True
        self.outbox.put(None)
        self.call.cancel()
        self.channel.close()


class SyncUnary:
    """Unary ``ModelInfer`` calls, each answered on a gRPC thread; as many in flight as the mux sends."""

    def __init__(self, url: str, creds, events: queue.Queue, tag, call_timeout_s: float, metadata: Metadata = ()):
        self.url, self.tls, self.events, self.tag, self.call_timeout_s = url, creds is not None, events, tag, call_timeout_s
        self.closed, self.metadata = False, tuple(metadata)
        self.channel = _channel(url, creds, aio=False)
        self.infer = service_pb2_grpc.GRPCInferenceServiceStub(self.channel).ModelInfer

    def send(self, request) -> None:
        future = self.infer.future(request, timeout=self.call_timeout_s, metadata=self.metadata)
        future.add_done_callback(lambda f, rid=request.id: self._done(rid, f))

    def _done(self, rid: str, future) -> None:
        if self.closed:
            return
        try:
            self.events.put((RESPONSE, self.tag, (rid, future.result(), None)))
        except grpc.RpcError as err:
            if _is_break(err):
                self.events.put((BROKEN, self.tag, describe(err, "call", self.url, self.tls)))
            else:
                self.events.put((RESPONSE, self.tag, (rid, None, err.details() or err.code().name)))

    def close(self) -> None:
        self.closed = True
        self.channel.close()


class AsyncStream:
    """asyncio twin of `SyncStream`."""

    def __init__(self, url: str, creds, events: asyncio.Queue, tag, metadata: Metadata = ()):
        self.url, self.tls, self.events, self.tag = url, creds is not None, events, tag
        self.closed = False
        self.outbox: asyncio.Queue = asyncio.Queue()
        self.channel = _channel(url, creds, aio=True)
        self.call = service_pb2_grpc.GRPCInferenceServiceStub(self.channel).ModelStreamInfer(
            self._requests(), metadata=tuple(metadata))
        self.reader = asyncio.ensure_future(self._read())

    async def _requests(self):
        while (request := await self.outbox.get()) is not None:
            yield request

    async def _read(self) -> None:
        try:
            async for r in self.call:
                self.events.put_nowait((RESPONSE, self.tag, (r.infer_response.id, r.infer_response, r.error_message or None)))
            reason = f"gRPC stream to {self.url} closed by the server"
        except grpc.aio.AioRpcError as err:
            reason = describe(err, "stream", self.url, self.tls)
        except asyncio.CancelledError:
            return
        if not self.closed:
            self.events.put_nowait((BROKEN, self.tag, reason))

    def send(self, request) -> None:
        self.outbox.put_nowait(request)

    def close(self) -> None:
        self.closed = True
        self.outbox.put_nowait(None)
        self.call.cancel()
        self.reader.cancel()
        return asyncio.ensure_future(self.channel.close())  # awaited by a caller that ends


class AsyncUnary:
    """asyncio twin of `SyncUnary`: one task per call."""

    def __init__(self, url: str, creds, events: asyncio.Queue, tag, call_timeout_s: float,
                 metadata: Metadata = ()):
        self.url, self.tls, self.events, self.tag, self.call_timeout_s = url, creds is not None, events, tag, call_timeout_s
        self.closed, self.metadata = False, tuple(metadata)
        self.channel = _channel(url, creds, aio=True)
        self.infer = service_pb2_grpc.GRPCInferenceServiceStub(self.channel).ModelInfer
        self.tasks: set[asyncio.Task] = set()

    def send(self, request) -> None:
        task = asyncio.ensure_future(self._call(request))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _call(self, request) -> None:
        try:
            response = await self.infer(request, timeout=self.call_timeout_s, metadata=self.metadata)
        except grpc.aio.AioRpcError as err:
            if self.closed:
                return
            if _is_break(err):
                self.events.put_nowait((BROKEN, self.tag, describe(err, "call", self.url, self.tls)))
            else:
                self.events.put_nowait((RESPONSE, self.tag, (request.id, None, err.details() or err.code().name)))
            return
        if not self.closed:
            self.events.put_nowait((RESPONSE, self.tag, (request.id, response, None)))

    def close(self) -> None:
        self.closed = True
        for task in self.tasks:
            task.cancel()
        return asyncio.ensure_future(self.channel.close())  # awaited by a caller that ends
