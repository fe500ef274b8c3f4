"""Symbol-sharded streaming: S inner streams, each pinned by a consistent-hash proxy to one Triton replica.

Triton keeps a sequence's state in the replica that started it, so every tick of a symbol must reach the
same replica. The client does not know the replicas: it sends symbol ``s`` on stream ``shard(s, S)``
and labels each stream with the gRPC metadata header ``x-lob-shard: <shard>``; a proxy hashing that
header consistently (nginx ``hash $http_x_lob_shard consistent``, Envoy ``RING_HASH`` on the header,
Istio ``consistentHash.httpHeaderName``) sends all of a shard, hence all of a symbol, to one replica.
When a replica goes away the proxy moves only its shards; the inner streams' reconnect/re-warm rebuilds
the moved symbols' state on the survivors.
"""
from __future__ import annotations

import hashlib
import queue
import threading
import time
from collections import deque
from typing import Iterable, Iterator, Literal, Optional

from .records import Prediction, Tick, TickFailed
from .stream import stream as _single_stream

SHARD_HEADER = "x-lob-shard"  # gRPC metadata key (lower case: HTTP/2 header names are)
_END = object()


def shard(symbol: str, shards: int) -> int:
    """Stable shard of ``symbol`` in ``range(shards)``: blake2b-64 of the UTF-8 symbol, modulo ``shards``.

    The same in every process, Python version and machine (no ``hash()`` salt), so every client of a
    deployment sends a symbol on the same shard for the same ``shards``.
    """
    if not isinstance(shards, int) or shards < 1:
        raise ValueError(f"shards must be a positive int, got {shards!r}")
    digest = hashlib.blake2b(symbol.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % shards


def stream(ticks: Iterable[Tick], url: str = "localhost:8001", *, shards: Optional[int] = None,
           **kwargs) -> Iterator[Prediction]:
    """`lobclient.stream`: with ``shards=S``, `sharded_stream` over S inner streams; without, one stream
    (`lobclient.stream.stream`, whose keyword arguments both accept: model, window, timeout_s, errors, ...)."""
    if shards is None:
        return _single_stream(ticks, url=url, **kwargs)
    return sharded_stream(ticks, shards, url=url, **kwargs)


def sharded_stream(ticks: Iterable[Tick], shards: int, url: str = "localhost:8001", window: int = 1024,
                   errors: Literal["record", "raise"] = "record", **kwargs) -> Iterator[Prediction]:
    """Yield one `Prediction` per tick of ``ticks``, in input order, over ``shards`` inner streams.

    Symbol ``s`` goes on stream ``shard(s, shards)``, which carries the metadata ``x-lob-shard: <shard>``.
    Each stream is an inner `lobclient.stream.stream` (its ``kwargs``: model, timeout_s, namespace, ...)
    with its own sequences; a symbol's ``seq`` counts its ticks as in one stream. At most ``window`` ticks
    are read ahead of the consumer in total. ``errors="raise"`` raises `TickFailed` at the first failed
    tick in input order (the inner streams record, the merge raises).
    """
    shard(" ", shards)  # validates shards before any thread starts
    feeds = [queue.Queue() for _ in range(shards)]  # ticks (or _END) for each inner stream
    events: queue.Queue = queue.Queue()  # (shard, Prediction) | (shard, _END) | (None|shard, exception)
    credits = threading.Semaphore(window)
    stop = threading.Event()

    def feed(i: int) -> Iterator[Tick]:
        while (tick := feeds[i].get()) is not _END:
            yield tick

    def run_shard(i: int) -> None:
        inner = _single_stream(feed(i), url=url, window=window, errors="record",
                               metadata=((SHARD_HEADER, str(i)),), **kwargs)
        try:
            for prediction in inner:
                events.put((i, prediction))
            events.put((i, _END))
        except BaseException as err:
            events.put((i, err))
        finally:
            inner.close()

    def read_ticks() -> None:
        try:
            for tick in ticks:
                while not credits.acquire(timeout=0.1):
                    if stop.is_set():
                        return
                if stop.is_set():
                    return
                i = shard(tick.symbol, shards)
                events.put((None, (i, tick)))
            events.put((None, _END))
        except BaseException as err:  # raised in the consumer's thread
            events.put((None, err))

    workers = [threading.Thread(target=run_shard, args=(i,), daemon=True, name=f"lob-shard-{i}")
               for i in range(shards)]
    for t in [*workers, threading.Thread(target=read_ticks, daemon=True, name="lob-shard-reader")]:
        t.start()
    order: deque[int] = deque()  # shard of each tick not yet yielded, input order
    done: list[deque[Prediction]] = [deque() for _ in range(shards)]  # answers not yet yielded, per shard
    sent, answered = [0] * shards, [0] * shards
    input_done = False
    try:
        while True:
            while order and done[order[0]]:
                prediction = done[order.popleft()].popleft()
                credits.release()
                if prediction.error is not None and errors == "raise":
                    raise TickFailed(prediction)
                yield prediction
            if input_done and not order:
                break
            source, item = events.get()
            if source is None:  # from the tick reader
                if item is _END:
                    input_done = True
                    for f in feeds:
                        f.put(_END)
                elif isinstance(item, BaseException):
                    raise item
                else:
                    i, tick = item
                    order.append(i)
                    sent[i] += 1
                    feeds[i].put(tick)
            elif item is _END:
                if answered[source] < sent[source]:  # an inner stream must answer every tick it took
                    raise RuntimeError(f"stream of shard {source} ended with {sent[source] - answered[source]} "
                                       f"tick(s) unanswered")
            elif isinstance(item, BaseException):
                raise item
            else:
                answered[source] += 1
                done[source].append(item)
    finally:
        stop.set()
        for f in feeds:  # ticks not yet taken are not sent (a consumer that left); the inner streams END
            while True:  # their sequences and return
                try:
                    f.get_nowait()
                except queue.Empty:
                    break
            f.put(_END)
        deadline = time.monotonic() + 2 * kwargs.get("timeout_s", 10.0) + 1.0  # an inner close waits <= 2 timeouts
        for t in workers:
            t.join(timeout=max(0.0, deadline - time.monotonic()))
