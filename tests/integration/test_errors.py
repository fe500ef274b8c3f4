"""Refused input and state limits on a real tritonserver: clear per-tick errors, no state damage."""
from __future__ import annotations

import dataclasses
import time

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

import lobclient
from lob.data.schema import load_dataset
from lob.serving.replay import interleave

from .conftest import SMALL_CANDIDATES, SMALL_IDLE_S
from .test_stream import assert_matches_offline

pytestmark = pytest.mark.server

N_TICKS = 60


@pytest.fixture(scope="module")
def dataset(dataset_dir):
    return {s: t.slice(0, N_TICKS) for s, t in load_dataset(dataset_dir).items()}


@pytest.fixture(scope="module")
def client(server):
    return grpcclient.InferenceServerClient(server.url)


def ticks_of(dataset, symbol):
    return list(interleave({symbol: dataset[symbol]}))


def with_level(tick, field, level, value):
    levels = getattr(tick, field).copy()
    levels[level] = value
    return dataclasses.replace(tick, **{field: levels})


def infer(client, model, tick, seq_id, start=False, end=False, **override):
    """One tick as a plain unary request (every input (1, T=1, ...)); ``override`` replaces input arrays by name
    (shape/dtype tests). Returns DIR_PROBS (3, 3)."""
    arrays = {"TS_NS": np.array([[tick.ts_ns]], np.int64), "BID_PX": tick.bid_px[None, None],
              "BID_SZ": tick.bid_sz[None, None], "ASK_PX": tick.ask_px[None, None], "ASK_SZ": tick.ask_sz[None, None],
              "TRADE_PX": np.array([[tick.trade_px]]), "TRADE_SZ": np.array([[tick.trade_sz]]),
              "TRADE_SIDE": np.array([[tick.trade_side]], np.int8), **override}
    inputs = []
    for name, array in arrays.items():
        inputs.append(grpcclient.InferInput(name, list(array.shape), grpcclient.np_to_triton_dtype(array.dtype)))
        inputs[-1].set_data_from_numpy(array)
    return client.infer(model, inputs, sequence_id=seq_id, sequence_start=start, sequence_end=end).as_numpy("DIR_PROBS")[0, 0]


def test_bad_ticks_get_errors_and_leave_every_sequence_as_if_they_never_came(server, dataset, offline):
    symbols = sorted(dataset)
    a, b = ticks_of(dataset, symbols[0]), ticks_of(dataset, symbols[1])
    bad_a = [  # (tick, a word the error must contain)
        (with_level(a[20], "bid_px", 0, np.nan), "bid_px_1"),
        (with_level(a[20], "ask_sz", 1, -3.0), "ask_sz_2"),
        (with_level(a[20], "bid_px", 0, a[20].ask_px[0] + 0.5), "crossed"),
        (dataclasses.replace(a[20], ts_ns=a[19].ts_ns - 1_000_000), "ts_ns"),
        (with_level(a[20], "bid_px", 0, a[20].ask_px[0]), "locked"),
        (with_level(a[20], "ask_px", 0, np.inf), "ask_px_1"),
        (dataclasses.replace(a[20], bid_sz=a[20].bid_sz[:int((a[20].bid_sz > 0).sum()) - 1]), "bid_sz"),  # one size short
    ]
    bad_b = (with_level(b[0], "bid_sz", 0, np.inf), "bid_sz_1")  # the sequence's first (START) tick
    feed = [bad_b[0], *b, *a[:20], *(t for t, _ in bad_a), *a[20:]]
    others = [t for s in symbols[2:] for t in ticks_of(dataset, s)]
    feed = [t for pair in zip(feed, others) for t in pair] + feed[len(others):] + others[len(feed):]

    preds = list(lobclient.stream(feed, url=server.url, transport=lobclient.Transport(window=32)))

    assert [(p.symbol, p.ts_ns) for p in preds] == [(t.symbol, t.ts_ns) for t in feed]
    by_symbol = {s: [p for p in preds if p.symbol == s] for s in symbols}
    assert by_symbol[symbols[1]][0].error is not None and bad_b[1] in by_symbol[symbols[1]][0].error
    for p, (_, word) in zip(by_symbol[symbols[0]][20:24], bad_a):
        assert p.error is not None and word in p.error, p.error
    good = {s: [p for p in ps if p.error is None] for s, ps in by_symbol.items()}
    assert sum(len(ps) for ps in good.values()) == len(preds) - 1 - len(bad_a)
    assert all(lobclient.classify_error(p.error) == "bad_tick" for p in preds if p.error is not None)
    for s in symbols:
        assert len(good[s]) == N_TICKS
        assert_matches_offline(good[s], offline, s)
    # bit for bit what a stream without the bad ticks gives, for every symbol (the refused ones' too)
    bad = {id(t) for t, _ in [bad_b, *bad_a]}
    clean = list(lobclient.stream([t for t in feed if id(t) not in bad], url=server.url,
                                  transport=lobclient.Transport(window=32)))
    kept = [p for p in preds if p.error is None]
    assert [(p.symbol, p.ts_ns) for p in kept] == [(p.symbol, p.ts_ns) for p in clean]
    np.testing.assert_array_equal(np.stack([p.dir_probs for p in kept]), np.stack([p.dir_probs for p in clean]))


def test_errors_policy_raise_names_the_tick(server, dataset):
    symbol = sorted(dataset)[0]
    ticks = ticks_of(dataset, symbol)[:5]
    ticks[3] = with_level(ticks[3], "ask_px", 0, -1.0)
    seen = []
    with pytest.raises(lobclient.TickFailed, match="ask_px_1") as info:
        for p in lobclient.stream(ticks, url=server.url, errors="raise"):
            seen.append(p)
    assert len(seen) == 3 and info.value.prediction.seq == 3


def test_wrong_shape_or_dtype_is_refused_and_the_server_stays_up(server, client, dataset):
    tick = ticks_of(dataset, sorted(dataset)[2])[0]
    with pytest.raises(InferenceServerException, match="BID_PX"):
        infer(client, "lob_stream", tick, 901, start=True, BID_PX=tick.bid_px[None, None, :9])
    with pytest.raises(InferenceServerException, match="TRADE_SIDE"):
        infer(client, "lob_stream", tick, 901, start=True, TRADE_SIDE=np.array([[0]], np.int32))
    assert client.is_server_live() and client.is_model_ready("lob_stream")
    assert np.isclose(infer(client, "lob_stream", tick, 901, start=True, end=True).sum(-1), 1.0).all()


def test_start_resets_a_sequence_that_has_state(client, dataset):
    ticks = ticks_of(dataset, sorted(dataset)[3])[:10]
    first = [infer(client, "lob_stream", t, 902, start=(i == 0)) for i, t in enumerate(ticks)]
    again = [infer(client, "lob_stream", t, 902, start=(i == 0), end=(i == 9)) for i, t in enumerate(ticks)]
    np.testing.assert_array_equal(np.stack(first), np.stack(again))
    assert not np.allclose(first[0], first[-1])  # the state did move in between


def step(client, model, seq_id, start=False, end=False, token=3, **kwargs):
    """One direct step-model request (TOKEN + FEATURES); returns DIR_PROBS (3, 3)."""
    inputs = [grpcclient.InferInput("TOKEN", [1, 1], "INT64"), grpcclient.InferInput("FEATURES", [1, 1, 12], "FP32")]
    inputs[0].set_data_from_numpy(np.array([[token]], np.int64))
    inputs[1].set_data_from_numpy(np.linspace(-1, 1, 12, dtype=np.float32)[None, None])
    return client.infer(model, inputs, sequence_id=seq_id, sequence_start=start, sequence_end=end,
                        **kwargs).as_numpy("DIR_PROBS")[0, 0]


NO_SEQUENCE = "must specify the START flag"  # Triton core's refusal of a non-START tick of an unknown sequence


def test_end_frees_the_sequence_and_start_resets_its_implicit_state(client):
    model = "mamba_lob_onnx_small"
    first = [step(client, model, 3001, start=(i == 0), token=i) for i in range(5)]
    step(client, model, 3001, end=True)
    with pytest.raises(InferenceServerException, match=NO_SEQUENCE):
        step(client, model, 3001)  # END freed it: the server no longer knows the sequence
    again = [step(client, model, 3001, start=(i == 0), token=i, end=(i == 4)) for i in range(5)]
    np.testing.assert_array_equal(np.stack(first), np.stack(again))  # zero state at START, as the first time
    assert not np.array_equal(first[0], first[-1])  # the state did move in between


def test_an_idle_sequence_is_ended_by_the_server(client):
    model = "mamba_lob_onnx_small"
    step(client, model, 3101, start=True)
    step(client, model, 3101)
    time.sleep(SMALL_IDLE_S + 1.0)  # max_sequence_idle_microseconds passes without a tick
    with pytest.raises(InferenceServerException, match=NO_SEQUENCE):
        step(client, model, 3101)
    step(client, model, 3101, start=True, end=True)


def test_a_start_beyond_the_candidate_sequences_waits_until_one_ends(client):
    """max_candidate_sequences exhausted: Triton queues the new sequence (no error) until a slot frees."""
    import queue

    model = "mamba_lob_onnx_small"
    ids = range(3201, 3201 + SMALL_CANDIDATES)
    for seq_id in ids:
        step(client, model, seq_id, start=True)
    answered: queue.Queue = queue.Queue()
    inputs = [grpcclient.InferInput("TOKEN", [1, 1], "INT64"), grpcclient.InferInput("FEATURES", [1, 1, 12], "FP32")]
    inputs[0].set_data_from_numpy(np.array([[3]], np.int64))
    inputs[1].set_data_from_numpy(np.zeros((1, 1, 12), np.float32))
    client.async_infer(model, inputs, lambda result, error: answered.put((time.monotonic(), error)),
                       sequence_id=3299, sequence_start=True, sequence_end=True)
    time.sleep(0.5)  # well under the 1.5 s idle timeout of the open sequences
    assert answered.empty()  # queued behind the open sequences, not refused
    ended = time.monotonic()
    step(client, model, ids[0], end=True)  # frees a candidate slot
    when, error = answered.get(timeout=SMALL_IDLE_S)
    assert error is None and when - ended < SMALL_IDLE_S / 2  # served once a slot freed, before any idle timeout
    step(client, model, ids[1], end=True)


def test_a_refused_start_opens_no_sequence(client, dataset):
    ticks = ticks_of(dataset, sorted(dataset)[2])[:3]
    with pytest.raises(InferenceServerException, match="LOB_BAD_TICK: .*bid_px_1"):
        infer(client, "lob_stream", with_level(ticks[0], "bid_px", 0, np.nan), 903, start=True)
    with pytest.raises(InferenceServerException, match="LOB_NO_STATE: "):
        infer(client, "lob_stream", ticks[0], 903)
    fresh = infer(client, "lob_stream", ticks[0], 903, start=True, end=True)
    reference = infer(client, "lob_stream", ticks[0], 904, start=True, end=True)
    np.testing.assert_array_equal(fresh, reference)
