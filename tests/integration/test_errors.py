"""Refused input and state limits on a real tritonserver: clear per-tick errors, no state damage."""
from __future__ import annotations

import dataclasses
import time

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

import lobclient
from lob.schema import load_dataset
from lob.serving.replay import interleave

from .conftest import POOL_IDLE_S, POOL_SLOTS
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
    """One tick as a plain unary request; ``override`` replaces input arrays by name (shape/dtype tests)."""
    arrays = {"TS_NS": np.array([[tick.ts_ns]], np.int64), "BID_PX": tick.bid_px[None], "BID_SZ": tick.bid_sz[None],
              "ASK_PX": tick.ask_px[None], "ASK_SZ": tick.ask_sz[None],
              "TRADE_PX": np.array([[tick.trade_px]]), "TRADE_SZ": np.array([[tick.trade_sz]]),
              "TRADE_SIDE": np.array([[tick.trade_side]], np.int8), **override}
    inputs = []
    for name, array in arrays.items():
        inputs.append(grpcclient.InferInput(name, list(array.shape), grpcclient.np_to_triton_dtype(array.dtype)))
        inputs[-1].set_data_from_numpy(array)
    return client.infer(model, inputs, sequence_id=seq_id, sequence_start=start, sequence_end=end).as_numpy("DIR_PROBS")[0]


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

    preds = list(lobclient.stream(feed, url=server.url, window=32))

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
    clean = list(lobclient.stream([t for t in feed if id(t) not in bad], url=server.url, window=32))
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
        infer(client, "lob_stream", tick, 901, start=True, BID_PX=tick.bid_px[None, :9])
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


def test_state_pool_full_is_an_error_until_end_or_idle_timeout_frees_a_slot(client, dataset):
    model = "lob_stream_pool2"
    ticks = ticks_of(dataset, sorted(dataset)[0])
    ids = range(1001, 1001 + POOL_SLOTS)
    for seq_id in ids:
        infer(client, model, ticks[0], seq_id, start=True)
    with pytest.raises(InferenceServerException, match="pool full"):
        infer(client, model, ticks[0], 2001, start=True)

    infer(client, model, ticks[1], ids[0], end=True)  # END frees its slot
    infer(client, model, ticks[0], 2001, start=True)

    time.sleep(POOL_IDLE_S + 1.2)  # every slot idle past the timeout: reclaimed at the next execute
    infer(client, model, ticks[0], 2002, start=True)
    infer(client, model, ticks[0], 2003, start=True)
    with pytest.raises(InferenceServerException, match="START"):
        infer(client, model, ticks[1], 2001)  # its slot was reclaimed: a non-START tick is refused


def test_a_refused_start_opens_no_sequence(client, dataset):
    ticks = ticks_of(dataset, sorted(dataset)[2])[:3]
    with pytest.raises(InferenceServerException, match="bid_px_1"):
        infer(client, "lob_stream", with_level(ticks[0], "bid_px", 0, np.nan), 903, start=True)
    with pytest.raises(InferenceServerException, match="START"):
        infer(client, "lob_stream", ticks[0], 903)
    fresh = infer(client, "lob_stream", ticks[0], 903, start=True, end=True)
    reference = infer(client, "lob_stream", ticks[0], 904, start=True, end=True)
    np.testing.assert_array_equal(fresh, reference)
