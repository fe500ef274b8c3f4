"""lobclient: stream ticks of many symbols to Mamba-LOB on Triton; one prediction per tick, in input order.

    import lobclient
    for p in lobclient.stream(ticks, url="localhost:8001"):
        print(p.symbol, p.seq, p.error or p.dir_probs[0])   # P(down, flat, up) 10 ticks ahead

``lobclient.stream(ticks, url=..., shards=S)`` spreads the symbols over S gRPC streams for a
consistent-hash proxy in front of several Triton replicas (`lobclient.shard`). `RedisSink` /
`run_sidecar` keep the latest signal per symbol in Redis; `SignalReader` reads it (`lobclient.signals`).
"""
from .errors import BAD_TICK_PREFIX, NO_STATE_PREFIX, classify_error
from .protocol import random_namespace, sequence_id
from .records import HORIZONS, N_LEVELS, Prediction, Tick, TickFailed
from .stream import DEFAULT_REWARM_TICKS, astream
from .shard import SHARD_HEADER, shard, sharded_stream, stream  # noqa: I001 (stream: the sharding-aware entry)
from .signals import RedisSink, Signal, SignalReader, run_sidecar

__all__ = ["Tick", "Prediction", "TickFailed", "stream", "astream", "sharded_stream", "shard", "SHARD_HEADER",
           "RedisSink", "SignalReader", "Signal", "run_sidecar", "sequence_id", "random_namespace",
           "classify_error", "NO_STATE_PREFIX", "BAD_TICK_PREFIX", "DEFAULT_REWARM_TICKS", "HORIZONS", "N_LEVELS"]
