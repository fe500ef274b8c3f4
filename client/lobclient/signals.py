"""The signal sidecar: latest prediction per symbol in Redis, a heartbeat with a TTL, and the reader the
execution side uses (Redis only: it never talks to Triton, and never waits on the Python inference path).

Keys (``prefix`` default ``lob``)::

    {prefix}:signal:{symbol}  hash  p_down_h10 p_flat_h10 p_up_h10 ... p_up_h100  (float, repr)
                                    model_version, ts_ns (tick time, ns UTC), seq, written_at_ns (wall clock),
                                    warm ("1"/"0": `Prediction.warm`; "" when unknown)
    {prefix}:symbols          set   every symbol that has a signal
    {prefix}:heartbeat        string JSON {pid, host, url, model, written_at_ns, ttl_s}, expires after ttl_s

Each write is one MULTI/EXEC transaction (the batch's latest signal per symbol + the heartbeat), so a reader
never sees half a signal. The writer refreshes the heartbeat every ``ttl_s / 3`` while it runs, with or
without ticks; killed, its heartbeat expires within ``ttl_s`` and every reader falls back to neutral.
Needs redis-py: ``pip install 'lobclient[redis]'``.
"""
from __future__ import annotations

import json
import os
import queue
import socket
import threading
import time
from dataclasses import dataclass
from typing import Callable, Iterable, Optional

import numpy as np

from .contract import CLASSES, HORIZONS, PROB_COLUMNS
from .drivers import stream
from .records import Prediction, Tick

NEUTRAL = np.tile(np.array([0.0, 1.0, 0.0], np.float32), (len(HORIZONS), 1))  # flat for sure: do not trade


def _redis(url: str):
    try:
        import redis
    except ImportError as err:  # the optional extra
        raise ImportError("the signal sidecar needs redis-py: pip install 'lobclient[redis]'") from err
    return redis.Redis.from_url(url, socket_timeout=2.0, socket_connect_timeout=2.0)


class RedisSink:
    """Writes predictions as the latest signal of their symbol, and the heartbeat, to the Redis at ``url``."""

    def __init__(self, url: str, prefix: str = "lob", ttl_s: float = 2.0, source: str = "", model: str = ""):
        if ttl_s <= 0:
            raise ValueError(f"ttl_s must be > 0, got {ttl_s}")
        self.redis, self.prefix, self.ttl_s = _redis(url), prefix, ttl_s
        self.last_beat_s: float | None = None  # wall clock (s) of the last heartbeat Redis accepted
        self._beat = {"pid": os.getpid(), "host": socket.gethostname(), "url": source, "model": model, "ttl_s": ttl_s}

    def write(self, predictions: Iterable[Prediction]) -> int:
        """One transaction: the last ok prediction of each symbol in ``predictions`` + the heartbeat.
        Predictions with ``error`` set are not signals and are skipped. Returns the symbols written."""
        latest: dict[str, Prediction] = {}
        for p in predictions:
            if p.error is None:
                latest[p.symbol] = p
        now = time.time_ns()
        pipe = self.redis.pipeline(transaction=True)
        for symbol, p in latest.items():
            mapping = dict(zip(PROB_COLUMNS, (repr(float(x)) for x in np.asarray(p.dir_probs).reshape(-1))))
            mapping.update(model_version=p.model_version or "", ts_ns=p.ts_ns, seq=p.seq, written_at_ns=now,
                           warm="" if p.warm is None else str(int(p.warm)))
            pipe.hset(f"{self.prefix}:signal:{symbol}", mapping=mapping)
        if latest:
            pipe.sadd(f"{self.prefix}:symbols", *latest)
        self._add_beat(pipe, now)
        pipe.execute()
        self.last_beat_s = now / 1e9
        return len(latest)

    def beat(self) -> None:
        """Refresh the heartbeat alone (no new ticks)."""
        now = time.time_ns()
        pipe = self.redis.pipeline(transaction=True)
        self._add_beat(pipe, now)
        pipe.execute()
        self.last_beat_s = now / 1e9

    def stop(self) -> None:
        """A clean exit: delete the heartbeat now (readers go neutral at once, saying why)."""
        self.redis.delete(f"{self.prefix}:heartbeat")

    def _add_beat(self, pipe, now: int) -> None:
        pipe.set(f"{self.prefix}:heartbeat", json.dumps({**self._beat, "written_at_ns": now}),
                 px=max(1, int(self.ttl_s * 1000)))


def run_sidecar(ticks: Iterable[Tick], url: str, sink: RedisSink, *,
                on_error: Callable[[Prediction], None] = lambda p: None, max_batch: int = 512,
                **stream_options) -> dict:
    """Stream ``ticks`` through the server at ``url`` (`lobclient.stream` with ``stream_options``: model,
    transport (shards), recovery, tls, tokenizer) and write every prediction to
    ``sink`` as it comes: whatever is ready at once goes in one transaction (at most ``max_batch``); the
    heartbeat is refreshed every ``sink.ttl_s / 3`` even while no tick comes. Refused ticks go to
    ``on_error``. Returns counts {ticks, errors, writes} when the input ends; the heartbeat is deleted when
    the input ends or fails.
    """
    answers: queue.Queue = queue.Queue(maxsize=4 * max_batch)
    end = object()

    def pump():
        try:
            for p in stream(ticks, url=url, **stream_options):
                answers.put(p)
            answers.put(end)
        except BaseException as err:  # raised in the caller's thread
            answers.put(err)

    threading.Thread(target=pump, daemon=True, name="lob-signal-stream").start()
    counts = {"ticks": 0, "errors": 0, "writes": 0}
    done = False
    try:
        while not done:
            try:
                batch = [answers.get(timeout=sink.ttl_s / 3)]
            except queue.Empty:
                sink.beat()
                continue
            while len(batch) < max_batch and isinstance(batch[-1], Prediction):
                try:
                    batch.append(answers.get_nowait())
                except queue.Empty:
                    break
            if isinstance(batch[-1], BaseException):
                raise batch[-1]
            if batch[-1] is end:
                batch.pop()
                done = True
            for p in batch:
                if p.error is not None:
                    counts["errors"] += 1
                    on_error(p)
            counts["ticks"] += len(batch)
            sink.write(batch)
            counts["writes"] += 1
    finally:  # input ended or failed: readers go neutral now, not a TTL later
        try:
            sink.stop()
        except Exception:  # Redis is gone too: the heartbeat expires by itself
            pass
    return counts


@dataclass(frozen=True)
class Signal:
    """The latest prediction of ``symbol`` as the execution side sees it, or the neutral default.

    ``dir_probs`` (3, 3) float32: horizons 10/50/100 ticks x P(down, flat, up); neutral = P(flat) 1 everywhere.
    ``neutral`` says whether this is the default, and ``reason`` why (None for a live signal). ``ts_ns`` is
    the tick's time, ``written_at_ns`` the sidecar's wall clock when it wrote it (None when unknown).
    """

    symbol: str
    dir_probs: np.ndarray
    neutral: bool
    reason: Optional[str] = None
    model_version: Optional[str] = None
    ts_ns: Optional[int] = None
    seq: Optional[int] = None
    written_at_ns: Optional[int] = None
    warm: Optional[bool] = None


class SignalReader:
    """The execution side: ``latest(symbol)`` is the symbol's last signal, or `Signal` neutral with the reason
    when the heartbeat is missing (sidecar down), the signal is older than ``max_age_s``, there is none yet,
    or Redis cannot be reached. Never raises for those; one round trip per call."""

    def __init__(self, url: str, prefix: str = "lob", max_age_s: float = 1.0):
        if max_age_s <= 0:
            raise ValueError(f"max_age_s must be > 0, got {max_age_s}")
        self.redis, self.prefix, self.max_age_s = _redis(url), prefix, max_age_s

    def latest(self, symbol: str) -> Signal:
        import redis

        pipe = self.redis.pipeline(transaction=True)
        pipe.get(f"{self.prefix}:heartbeat")
        pipe.hgetall(f"{self.prefix}:signal:{symbol}")
        try:
            beat, fields = pipe.execute()
        except redis.RedisError as err:
            return self._neutral(symbol, f"redis unreachable: {err}")
        now = time.time_ns()
        fields = {k.decode(): v.decode() for k, v in fields.items()}
        known = dict(model_version=fields.get("model_version") or None,
                     ts_ns=int(fields["ts_ns"]) if "ts_ns" in fields else None,
                     seq=int(fields["seq"]) if "seq" in fields else None,
                     written_at_ns=int(fields["written_at_ns"]) if "written_at_ns" in fields else None,
                     warm=bool(int(fields["warm"])) if fields.get("warm") else None)
        if beat is None:
            return self._neutral(symbol, f"no heartbeat at {self.prefix}:heartbeat: the signal process is down "
                                         f"or has not started", **known)
        if not fields:
            return self._neutral(symbol, f"no signal for {symbol} at {self.prefix}:signal:{symbol}")
        age = (now - known["written_at_ns"]) / 1e9
        if age > self.max_age_s:
            return self._neutral(symbol, f"signal for {symbol} is stale: written {age:.3f} s ago "
                                         f"(max_age_s {self.max_age_s:g})", **known)
        probs = np.array([float(fields[f]) for f in PROB_COLUMNS], np.float32).reshape(len(HORIZONS), len(CLASSES))
        return Signal(symbol, probs, neutral=False, **known)

    def _neutral(self, symbol: str, reason: str, **known) -> Signal:
        return Signal(symbol, NEUTRAL.copy(), neutral=True, reason=reason, **known)
