"""lobclient: stream ticks of many symbols to Mamba-LOB on Triton; one prediction per tick, in input order.

    import lobclient
    for p in lobclient.stream(ticks, url="localhost:8001"):
        print(p.symbol, p.seq, p.error or p.dir_probs[0])   # P(down, flat, up) 10 ticks ahead

Options come in three small groups: ``transport=lobclient.Transport(kind, window, timeout_s, shards,
metadata)``, ``recovery=lobclient.Recovery(rewarm, rewarm_ticks, reconnect, ...)``, ``tls=lobclient.TLS(...)``.
``tokenizer=`` (a ``lobtick.tokenizer.Tokenizer`` or its tokenizer.json) takes the direct path: tokenized here
(by `lobtick`, the server's tokenizer, shipped beside lobclient),
``TOKEN`` + ``FEATURES`` to the step model. ``Transport(shards=S)`` spreads the symbols over S connections
for a consistent-hash proxy in front of several replicas. `RedisSink` / `run_sidecar` keep the latest signal
per symbol in Redis; `SignalReader` reads it (`lobclient.signals`).

Modules:
- `drivers`: ``stream`` (blocking generator) and ``astream`` (asyncio), the two drivers of one `Mux`
- `mux`: the sans-IO core: ordering, one request in flight per symbol, re-warm, reconnect, shard links
- `protocol`: the request builders (`EnsembleRequests`: raw ticks; `DirectRequests`: tokens), sequence ids, shards
- `transport`: unary ``ModelInfer`` calls or one ``ModelStreamInfer`` stream, sync and asyncio
- `options`: `Transport`, `Recovery`, `TLS`
- `records`: `Tick`, `Prediction`, `TickFailed`
- `errors`: what a refused tick's message means (`classify_error`)
- `contract`: the client's copy of ``lob.contract`` (tensor and model names, error prefixes, horizons)
- `signals`: `RedisSink`, `SignalReader`, `run_sidecar` (extra ``lobclient[redis]``)
- `synthetic`: valid synthetic books for load and soak tests (locust, `make soak`)
"""
__version__ = "0.1.0"

from .contract import HORIZONS, N_LEVELS
from .drivers import astream, stream
from .errors import classify_error
from .options import DEFAULT_REWARM_TICKS, TLS, Recovery, Transport
from .protocol import SHARD_HEADER, random_namespace, sequence_id, shard
from .records import Prediction, Tick, TickFailed
from .signals import RedisSink, Signal, SignalReader, run_sidecar

__all__ = ["Tick", "Prediction", "TickFailed", "stream", "astream", "Transport", "Recovery", "TLS", "shard",
           "SHARD_HEADER", "RedisSink", "SignalReader", "Signal", "run_sidecar", "sequence_id", "random_namespace",
           "classify_error", "DEFAULT_REWARM_TICKS", "HORIZONS", "N_LEVELS"]
