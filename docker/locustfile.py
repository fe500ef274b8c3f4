"""Streaming load on a Mamba-LOB ensemble: each locust user streams synthetic books of its own symbols.

One task = one `lobclient.stream` call: SYMBOLS symbols x TICKS ticks over one gRPC stream (one Triton
sequence per symbol, START on its first tick, END when the stream closes). Every prediction is reported
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

MODEL = os.environ.get("LOB_MODEL", "lob_stream_trt_fp16")
SYMBOLS = int(os.environ.get("LOB_SYMBOLS", "32"))
TICKS = int(os.environ.get("LOB_TICKS", "200"))
TICK_SIZE = 0.01
_user_ids = itertools.count()


def synthetic_ticks(symbols: list[str], n: int, rng: np.random.Generator):
    """n ticks per symbol, interleaved: a random-walk best bid on the tick grid, a 1-3 tick spread, 10 levels
    a side one tick apart, 1 in 10 a trade at the touch. Prices are integer ticks times TICK_SIZE, so the
    book is never crossed or locked (bid < ask always)."""
    best_bid = {s: 10_000 + int(rng.integers(0, 1000)) for s in symbols}  # in ticks
    ts_ns = 1_700_000_000 * 10**9
    levels = np.arange(10)  # (10,) ticks from the touch
    for _ in range(n):
        for symbol in symbols:
            ts_ns += int(rng.integers(1_000, 1_000_000))
            best_bid[symbol] = max(best_bid[symbol] + int(rng.integers(-1, 2)), 100)
            bid = best_bid[symbol]
            ask = bid + int(rng.integers(1, 4))
            side = int(rng.choice([-1, 0, 0, 0, 0, 0, 0, 0, 0, 1]))
            yield lobclient.Tick(
                symbol=symbol, ts_ns=ts_ns, bid_px=np.round((bid - levels) * TICK_SIZE, 2),
                ask_px=np.round((ask + levels) * TICK_SIZE, 2),
                bid_sz=rng.integers(1, 500, 10).astype(float), ask_sz=rng.integers(1, 500, 10).astype(float),
                trade_px=round((ask if side > 0 else bid) * TICK_SIZE, 2) if side else 0.0,  # a buyer lifts the ask
                trade_sz=float(rng.integers(1, 100)) if side else 0.0, trade_side=side)


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
