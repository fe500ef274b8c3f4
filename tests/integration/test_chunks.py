"""The time axis on a real tritonserver: a request carries T consecutive ticks of one symbol (docs/serving.md).

Chunks equal single ticks on both paths (ensemble, direct), through stock tritonclient and through lobclient; a
chunk crossing START; a chunk with END; a bad tick inside a chunk refuses the whole chunk (the state does not
move) naming its first bad tick, and lobclient then sends those ticks one by one; chunked and single-tick
streams of many symbols at once, each in order and equal to its reference; a stalled feed's backlog.
"""
from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

import lobclient
from lob.contract import CHUNK_TICK, TICK_INPUTS
from lob.data.schema import load_dataset
from lob.serving.replay import interleave

pytestmark = pytest.mark.server

N_TICKS = 96
EXACT = 1e-5  # FP32: a chunk runs the same graph nodes as T single ticks


@pytest.fixture(scope="module")
def dataset(dataset_dir):
    return {s: t.slice(0, N_TICKS) for s, t in load_dataset(dataset_dir).items()}


def chunk_inputs(t, lo: int, hi: int) -> list[grpcclient.InferInput]:
    """The lob_stream inputs of ticks lo..hi of ``t`` as one request: every tensor (1, T, ...)."""
    arrays = [t.ts_ns, t.bid_px, t.bid_sz, t.ask_px, t.ask_sz, t.trade_px, t.trade_sz, t.trade_side.astype(np.int8)]
    out = []
    for name, a in zip(TICK_INPUTS, arrays):
        x = np.ascontiguousarray(a[lo:hi][None])
        dtype = {np.dtype(np.int64): "INT64", np.dtype(np.float64): "FP64", np.dtype(np.int8): "INT8"}[x.dtype]
        out.append(grpcclient.InferInput(name, list(x.shape), dtype))
        out[-1].set_data_from_numpy(x)
    return out


def probs(client, t, cuts, seq_id, end_at=None):
    """DIR_PROBS (n, 3, 3) of the ticks of ``t`` sent in chunks ending at ``cuts`` (START on the first)."""
    got, lo = [], 0
    for hi in cuts:
        r = client.infer("lob_stream", chunk_inputs(t, lo, hi), sequence_id=seq_id, sequence_start=lo == 0,
                         sequence_end=hi == end_at)
        d = r.as_numpy("DIR_PROBS")
        assert d.shape == (1, hi - lo, 3, 3) and r.as_numpy("MODEL_VERSION").shape == (1, hi - lo)
        got.append(d[0])
        lo = hi
    return np.concatenate(got)


def test_stock_tritonclient_chunks_equal_single_ticks_across_start_and_end(server, dataset):
    t = dataset[sorted(dataset)[0]]
    client = grpcclient.InferenceServerClient(server.url)
    single = probs(client, t, range(1, 41), seq_id=9101)
    assert single.std(axis=0).max() > 1e-3  # predictions move: the comparison is not vacuous
    chunked = probs(client, t, [17, 18, 40], seq_id=9102)  # START inside the first chunk of 17
    np.testing.assert_allclose(chunked, single, atol=EXACT, rtol=0)
    # a chunk carrying END ends the sequence after its last tick: the next tick without START has no state
    probs(client, t, [40, 41], seq_id=9103, end_at=41)
    with pytest.raises(InferenceServerException, match="LOB_NO_STATE|START"):
        client.infer("lob_stream", chunk_inputs(t, 41, 42), sequence_id=9103)


def test_a_bad_tick_refuses_its_whole_chunk_and_the_state_does_not_move(server, dataset):
    t = dataset[sorted(dataset)[1]]
    bad = t.slice(0, N_TICKS)
    bad.bid_px = bad.bid_px.copy()
    bad.bid_px[25, 0] = np.nan
    bad.bid_px[27, 0] = -1.0
    client = grpcclient.InferenceServerClient(server.url)
    reference = probs(client, t, [20, 40], seq_id=9201)
    probs(client, t, [20], seq_id=9202)
    with pytest.raises(InferenceServerException) as refused:
        client.infer("lob_stream", chunk_inputs(bad, 20, 30), sequence_id=9202)
    message = str(refused.value)
    assert "LOB_BAD_TICK" in message and "bid_px_1" in message
    assert CHUNK_TICK.search(message).groups() == ("5", "10")  # tick 25 is the chunk's 6th: the first bad one
    r = client.infer("lob_stream", chunk_inputs(t, 20, 40), sequence_id=9202)  # as if the chunk never came
    np.testing.assert_allclose(r.as_numpy("DIR_PROBS")[0], reference[20:], atol=EXACT, rtol=0)


@pytest.mark.parametrize("path", ["ensemble", "direct"])
def test_lobclient_chunks_equal_single_ticks_and_a_refused_chunk_falls_back_tick_by_tick(server, dataset, repo, path):
    direct = {} if path == "ensemble" else {"tokenizer": repo / "lob_tokenizer" / "1" / "tokenizer.json"}
    ticks = list(interleave(dataset))
    k = next(i for i, x in enumerate(ticks) if x.symbol == sorted(dataset)[2] and i > 150)
    broken = lobclient.Tick(ticks[k].symbol, ticks[k].ts_ns, np.full(10, np.nan), ticks[k].bid_sz, ticks[k].ask_px,
                            ticks[k].ask_sz)
    with_bad = ticks[:k] + [broken] + ticks[k:]
    single = list(lobclient.stream(ticks, url=server.url, **direct))
    chunked = list(lobclient.stream(with_bad, url=server.url, chunk=32, transport=lobclient.Transport(window=512),
                                    **direct))
    assert [(p.symbol, p.ts_ns) for p in chunked] == [(x.symbol, x.ts_ns) for x in with_bad]
    assert [p.ok for p in chunked] == [i != k for i in range(len(with_bad))]
    assert "bid_px_1" in chunked[k].error
    del chunked[k]
    np.testing.assert_allclose(np.stack([p.dir_probs for p in chunked]), np.stack([p.dir_probs for p in single]),
                               atol=EXACT, rtol=0)
    assert [p.seq for p in chunked if p.symbol == ticks[0].symbol] == list(range(N_TICKS))


def test_chunked_and_single_tick_streams_of_many_symbols_at_once_stay_in_order(server, dataset):
    """16 symbols chunked (a backfill) and 16 live, one tick per request, on the server at the same time."""
    base = dataset[sorted(dataset)[0]]
    ticks = {f"{kind}{i}": [lobclient.Tick(f"{kind}{i}", int(base.ts_ns[j]), base.bid_px[j], base.bid_sz[j],
                                           base.ask_px[j], base.ask_sz[j], float(base.trade_px[j]),
                                           float(base.trade_sz[j]), int(base.trade_side[j])) for j in range(N_TICKS)]
             for kind in ("C", "L") for i in range(16)}
    reference = [p.dir_probs for p in lobclient.stream(ticks["L0"], url=server.url)]
    results = {}

    def run(kind, chunk):
        feed = [x for j in range(N_TICKS) for s, xs in ticks.items() if s.startswith(kind) for x in xs[j:j + 1]]
        results[kind] = list(lobclient.stream(feed, url=server.url, chunk=chunk,
                                              transport=lobclient.Transport(window=2048)))

    threads = [threading.Thread(target=run, args=("C", 64)), threading.Thread(target=run, args=("L", 1))]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=300)
    for kind in ("C", "L"):
        preds = results[kind]
        assert len(preds) == 16 * N_TICKS and all(p.ok for p in preds)
        for s in {p.symbol for p in preds}:
            mine = [p for p in preds if p.symbol == s]
            assert [p.seq for p in mine] == list(range(N_TICKS))
            np.testing.assert_allclose(np.stack([p.dir_probs for p in mine]), np.stack(reference), atol=EXACT, rtol=0)


@pytest.mark.parametrize("chunk", [1, 64])
def test_a_stalled_feed_catches_up_with_one_prediction_per_tick_in_order(server, dataset, chunk):
    """The feed pauses, then its backlog arrives at once (bench/burst.py's stall): every tick gets exactly one
    prediction, in input order, equal to the uninterrupted stream's, one tick per request (the live default)
    or with the backlog sent as chunks."""
    ticks = list(interleave(dataset))
    reference = list(lobclient.stream(ticks, url=server.url))
    stall_at = len(ticks) // 3

    def feed():
        for i, tick in enumerate(ticks):
            if i < stall_at:
                time.sleep(0.002)  # live pace: nothing queues
            elif i == stall_at:
                time.sleep(0.5)  # the stall; then the rest at once
            yield tick

    got = list(lobclient.stream(feed(), url=server.url, chunk=chunk, transport=lobclient.Transport(window=4096)))
    assert [(p.symbol, p.ts_ns) for p in got] == [(x.symbol, x.ts_ns) for x in ticks] and all(p.ok for p in got)
    for s in dataset:
        assert [p.seq for p in got if p.symbol == s] == list(range(N_TICKS))
    np.testing.assert_allclose(np.stack([p.dir_probs for p in got]), np.stack([p.dir_probs for p in reference]),
                               atol=EXACT, rtol=0)
