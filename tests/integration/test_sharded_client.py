"""`lobclient.stream(..., transport=Transport(shards=S))` against one real tritonserver (no proxy): S
connections, one prediction per tick in input order."""
from __future__ import annotations

import asyncio
import threading
import time

import numpy as np
import pytest

import lobclient
from lob.data.schema import load_dataset
from lob.serving.replay import interleave

from .test_errors import with_level

pytestmark = pytest.mark.server


@pytest.fixture(scope="module")
def ticks(dataset_dir):
    return list(interleave({s: t.slice(0, 40) for s, t in load_dataset(dataset_dir).items()}))


@pytest.mark.parametrize("shards", [3, 7])  # 7 > symbols: empty shards too
def test_sharded_stream_equals_one_stream(server, ticks, shards):
    assert len({lobclient.shard(t.symbol, shards) for t in ticks}) > 1  # really more than one stream
    one = list(lobclient.stream(ticks, url=server.url))
    many = list(lobclient.stream(ticks, url=server.url, transport=lobclient.Transport(shards=shards, window=16)))
    assert [(p.symbol, p.ts_ns, p.seq) for p in many] == [(t.symbol, t.ts_ns, p.seq) for t, p in zip(ticks, one)]
    assert all(p.ok for p in many)
    np.testing.assert_array_equal(np.stack([p.dir_probs for p in many]), np.stack([p.dir_probs for p in one]))


def test_sharded_errors_raise_at_the_first_failed_tick_in_input_order(server, ticks):
    symbols = sorted({t.symbol for t in ticks})
    assert lobclient.shard(symbols[0], 4) != lobclient.shard(symbols[1], 4)
    feed = list(ticks)
    first = next(i for i, t in enumerate(feed) if t.symbol == symbols[1] and i > 20)
    later = next(i for i, t in enumerate(feed) if t.symbol == symbols[0] and i > first)
    feed[first] = with_level(feed[first], "ask_px", 0, -1.0)
    feed[later] = with_level(feed[later], "bid_px", 0, np.nan)
    seen = []
    with pytest.raises(lobclient.TickFailed, match="ask_px_1") as info:
        for p in lobclient.stream(feed, url=server.url, transport=lobclient.Transport(shards=4), errors="raise"):
            seen.append(p)
    assert len(seen) == first and info.value.prediction.symbol == symbols[1]
    recorded = list(lobclient.stream(feed, url=server.url, transport=lobclient.Transport(shards=4)))
    assert [i for i, p in enumerate(recorded) if p.error] == [first, later]


def test_sharded_consumer_leaving_early_stops_every_stream(server, ticks):
    baseline = threading.active_count()
    gen = lobclient.stream(ticks, url=server.url, transport=lobclient.Transport(shards=4, window=8))
    got = [next(gen) for _ in range(10)]
    assert threading.active_count() > baseline  # the shard streams were running
    gen.close()
    deadline = time.monotonic() + 15
    while threading.active_count() > baseline and time.monotonic() < deadline:
        time.sleep(0.1)
    assert threading.active_count() == baseline
    assert [(p.symbol, p.seq) for p in got] == [(p.symbol, p.seq) for p in list(lobclient.stream(ticks[:10], url=server.url))]


def test_sharded_input_error_reaches_the_caller(server, ticks):
    def feed():
        yield from ticks[:5]
        raise OSError("feed lost")

    with pytest.raises(OSError, match="feed lost"):
        list(lobclient.stream(feed(), url=server.url, transport=lobclient.Transport(shards=2)))


def test_sharded_astream_equals_sharded_stream(server, ticks):
    transport = lobclient.Transport(shards=3, window=16)

    async def collect():
        return [p async for p in lobclient.astream(ticks, url=server.url, transport=transport)]

    many = asyncio.run(collect())
    one = list(lobclient.stream(ticks, url=server.url, transport=transport))
    assert [(p.symbol, p.seq) for p in many] == [(t.symbol, p.seq) for t, p in zip(ticks, one)]
    np.testing.assert_array_equal(np.stack([p.dir_probs for p in many]), np.stack([p.dir_probs for p in one]))


def test_sharded_direct_path_equals_the_ensemble(server, repo, ticks):
    direct = list(lobclient.stream(ticks, url=server.url, transport=lobclient.Transport(shards=3),
                                   tokenizer=repo / "lob_tokenizer" / "1" / "tokenizer.json"))
    ensemble = list(lobclient.stream(ticks, url=server.url))
    assert [(p.symbol, p.seq) for p in direct] == [(p.symbol, p.seq) for p in ensemble]
    assert all(p.ok for p in direct), [p.error for p in direct if not p.ok][:2]
    np.testing.assert_array_equal(np.stack([p.dir_probs for p in direct]), np.stack([p.dir_probs for p in ensemble]))
