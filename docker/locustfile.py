"""Streaming load on a Mamba-LOB ensemble: each locust user streams synthetic books of its own symbols.

One task = one `lobclient.stream` call: SYMBOLS symbols x TICKS ticks over unary gRPC calls (the client's
default transport; one Triton sequence per symbol, START on its first tick, END when the stream closes). Every prediction is reported
to locust as one request named after the model, with the client-side latency of that tick; a tick the
server refused is a failure carrying the server's message. Settings (environment): LOB_MODEL (ensemble,
default lob_stream_trt_fp16), LOB_SYMBOLS (per user, 32), LOB_TICKS (per symbol per task, 200).
"""
from __future__ import annotations

import itertools
import os

from grpc.experimental import gevent as grpc_gevent

grpc_gevent.init_gevent()  # grpc's core must yield to gevent, or one stream blocks every locust user

import numpy as np  # noqa: E402
from locust import User, events, task  # noqa: E402

import lobclient  # noqa: E402
from lobclient.synthetic import synthetic_ticks  # noqa: E402  (valid books: on the tick grid, bid < ask)

MODEL = os.environ.get("LOB_MODEL", "lob_stream_trt_fp16")
SYMBOLS = int(os.environ.get("LOB_SYMBOLS", "32"))
TICKS = int(os.environ.get("LOB_TICKS", "200"))
_user_ids = itertools.count()


class TickStreamer(User):
    """Streams ticks of LOB_SYMBOLS symbols of its own to the server's gRPC endpoint (--host host:8001)."""

    def on_start(self) -> None:
        self.user_id = next(_user_ids)
        self.rng = np.random.default_rng(self.user_id)
        self.round = 0

    @task
    def stream_symbols(self) -> None:
        # fresh symbol names per task: each task's sequences START and END within its own stream
        symbols = [f"U{self.user_id}R{self.round}S{i}" for i in range(SYMBOLS)]
        self.round += 1
        for p in lobclient.stream(synthetic_ticks(symbols, TICKS, self.rng), url=self.host, model=MODEL):
            events.request.fire(request_type="grpc-stream", name=MODEL, response_time=p.latency_s * 1e3,
                                response_length=0, exception=None if p.ok else RuntimeError(p.error), context={})
