"""``lob signal``: the signal sidecar. Ticks (a recorded dataset, a live feed as JSON lines on stdin, or
`lob live`'s feed through `sidecar`) go through the server; each symbol's latest prediction goes to Redis with a heartbeat (`lobclient.signals`).

A stdin line is one tick: ``{"symbol": "AAPL", "ts_ns": 1704205800000000000, "bid_px": [...],
"bid_sz": [...], "ask_px": [...], "ask_sz": [...], "trade_px": 0, "trade_sz": 0, "trade_side": 0}``
(books best level first, up to 10 levels; trade fields optional). A malformed line stops the sidecar
with an error naming the line and field. Whenever it stops (input ended, bad line, SIGTERM, Ctrl-C) it
deletes its heartbeat, and readers fall back to neutral at once; killed, its heartbeat expires in the TTL.

With ``metrics_port`` it serves Prometheus metrics on ``http://<metrics_addr>:<port>/metrics``:
``lob_signal_heartbeat_timestamp_seconds`` (gauge, Unix time of the last heartbeat Redis accepted; the
``LobSignalHeartbeatStale`` alert of deploy/prometheus/lob.rules.yml watches ``time()`` minus it).
"""
from __future__ import annotations

import json
import signal
import sys
from pathlib import Path
from typing import IO, Iterable, Iterator, Optional

import lobclient
from lob.contract import STREAM_MODEL
from lob.data.schema import TickDataError, load_dataset
from lob.serving.replay import interleave

_REQUIRED = ("symbol", "ts_ns", "bid_px", "bid_sz", "ask_px", "ask_sz")


def ticks_from_lines(lines: IO[str], source: str = "stdin") -> Iterator[lobclient.Tick]:
    """Parse JSON-lines ticks; raises `TickDataError` naming the 1-based line and the field."""
    for row, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as err:
            raise TickDataError(source, row, None, f"not JSON: {err}") from None
        if not isinstance(obj, dict):
            raise TickDataError(source, row, None, f"expected a JSON object, got {type(obj).__name__}")
        missing = [k for k in _REQUIRED if k not in obj]
        if missing:
            raise TickDataError(source, row, missing[0], "missing")
        unknown = sorted(set(obj) - {*_REQUIRED, "trade_px", "trade_sz", "trade_side"})
        if unknown:
            raise TickDataError(source, row, unknown[0], "unknown field")
        for name, kind in (("symbol", str), ("ts_ns", int), ("trade_side", int)):
            if name in obj and (not isinstance(obj[name], kind) or isinstance(obj[name], bool)):
                raise TickDataError(source, row, name, f"expected {kind.__name__}, got {obj[name]!r}")
        for name in ("bid_px", "bid_sz", "ask_px", "ask_sz"):
            levels = obj[name]
            if not isinstance(levels, list) or not all(isinstance(x, (int, float)) and not isinstance(x, bool)
                                                       for x in levels):
                raise TickDataError(source, row, name, f"expected a list of numbers, got {levels!r}")
        try:
            yield lobclient.Tick(**obj)
        except (TypeError, ValueError) as err:
            raise TickDataError(source, row, None, str(err)) from None


def run_signal(url: str, redis_url: str, data: Optional[Path] = None, stdin: bool = False,
               symbols: list[str] | None = None, limit: int | None = None, prefix: str = "lob",
               ttl_s: float = 2.0, model: str = STREAM_MODEL, shards: int | None = None,
               metrics_port: int | None = None, metrics_addr: str = "0.0.0.0") -> dict:
    """Run the sidecar until the input ends; returns the counts of `lobclient.run_sidecar`."""
    if (data is None) == (not stdin):
        raise ValueError("give exactly one of --data DIR or --stdin")
    if data is not None:
        dataset = load_dataset(data, symbols)
        if limit is not None:
            dataset = {s: t.slice(0, limit) for s, t in dataset.items()}
        ticks = interleave(dataset)
    else:
        ticks = ticks_from_lines(sys.stdin)
    return sidecar(ticks, url, redis_url, prefix=prefix, ttl_s=ttl_s, model=model, shards=shards,
                   metrics_port=metrics_port, metrics_addr=metrics_addr)


def sidecar(ticks: Iterable[lobclient.Tick], url: str, redis_url: str, prefix: str = "lob", ttl_s: float = 2.0,
            model: str = STREAM_MODEL, shards: int | None = None, metrics_port: int | None = None,
            metrics_addr: str = "0.0.0.0") -> dict:
    """Stream ``ticks`` (any source: a dataset, stdin, `lob live`) until they end; returns the counts of
    `lobclient.run_sidecar`."""
    from rich.console import Console

    err = Console(stderr=True)
    # SIGTERM (kubectl delete, docker stop) unwinds like Ctrl-C: the heartbeat is deleted on the way out
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    sink = lobclient.RedisSink(redis_url, prefix=prefix, ttl_s=ttl_s, source=url, model=model)
    sink.beat()  # fails fast, before any tick, when Redis is unreachable
    if metrics_port is not None:
        from prometheus_client import CollectorRegistry, Gauge, start_http_server

        registry = CollectorRegistry()  # ours alone: no process/platform collectors
        Gauge("lob_signal_heartbeat_timestamp_seconds", "Unix time of the last heartbeat Redis accepted",
              registry=registry).set_function(lambda: sink.last_beat_s)
        start_http_server(metrics_port, metrics_addr, registry=registry)
    err.print(f"lob signal: {url} ({model}) -> {redis_url} keys {prefix}:signal:<symbol>, "
              f"heartbeat {prefix}:heartbeat (TTL {ttl_s:g} s)"
              + (f", metrics http://{metrics_addr}:{metrics_port}/metrics" if metrics_port is not None else ""))
    counts = lobclient.run_sidecar(
        ticks, url, sink, model=model, transport=lobclient.Transport(shards=shards),
        on_error=lambda p: err.print(f"[yellow]refused:[/] {p.symbol} tick {p.seq} (ts_ns={p.ts_ns}): {p.error}"))
    err.print(f"lob signal: input ended; {counts['ticks']:,} ticks, {counts['errors']:,} refused, "
              f"{counts['writes']:,} transactions")
    return counts
