"""The tokenizer's custom metrics on the server's /metrics endpoint (beside Triton's own), and a refused END.

The tokenizer flushes its metrics from a thread (no round trip per execute): they must be exact within
``SETTLE_S`` of the last request, checked against Triton's own per-model counters."""
from __future__ import annotations

import re
import time
import urllib.request

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from lob.data.schema import load_dataset
from lob.serving.replay import interleave

from .conftest import SMALL_IDLE_S, read_config
from .test_errors import NO_SEQUENCE, infer, step, with_level

pytestmark = pytest.mark.server
SETTLE_S = 3.0  # the stated bound: one 0.5 s flush period, plus scheduling on a loaded 2-core host


@pytest.fixture(scope="module")
def client(server):
    return grpcclient.InferenceServerClient(server.url)


@pytest.fixture(scope="module")
def ticks(dataset_dir):
    data = load_dataset(dataset_dir)
    return list(interleave({s: data[s].slice(0, 20) for s in sorted(data)[:1]}))


def scrape(server) -> str:
    with urllib.request.urlopen(f"http://localhost:{server.ports['metrics']}/metrics", timeout=10) as r:
        return r.read().decode()


def total(text: str, name: str, **labels) -> float:
    """The sum of every ``name{labels...}`` sample (over the tokenizer's instances, or failure reasons)."""
    found = [float(m.group(2)) for m in (re.match(rf"^{re.escape(name)}\{{(.*)\}} (\S+)$", line) for line in text.splitlines())
             if m and all(f'{k}="{v}"' in m.group(1) for k, v in labels.items())]
    assert found, f"{name}{labels} not on /metrics"
    return sum(found)


def settled(server, expected: dict) -> str:
    """A /metrics page where every ``(name, labels...)`` key has its expected value, polled for ``SETTLE_S``."""
    deadline = time.monotonic() + SETTLE_S
    while True:
        page = scrape(server)
        got = {key: total(page, key[0], **dict(key[1:])) for key in expected}
        if got == expected:
            return page
        if time.monotonic() > deadline:
            raise AssertionError(f"/metrics not settled within {SETTLE_S} s: {got} != {expected}")
        time.sleep(0.05)


def test_open_refused_and_batch_metrics(server, client, ticks):
    before = scrape(server)
    assert "nv_inference_request_success" in before  # Triton's own metrics on the same page
    refused0 = total(before, "lob_tokenizer_refused_ticks_total", model="lob_tokenizer", reason="bad_tick")
    no_state0 = total(before, "lob_tokenizer_refused_ticks_total", model="lob_tokenizer", reason="no_state")
    batches0 = total(before, "lob_tokenizer_batch_size_count", model="lob_tokenizer")
    for seq_id in (4001, 4002, 4003):
        infer(client, "lob_stream", ticks[0], seq_id, start=True)
    with pytest.raises(InferenceServerException, match="LOB_BAD_TICK: "):
        infer(client, "lob_stream", with_level(ticks[1], "bid_px", 0, np.nan), 4001)
    with pytest.raises(InferenceServerException, match="LOB_BAD_TICK: "):  # a refused START opens no sequence
        infer(client, "lob_stream", with_level(ticks[0], "bid_px", 0, np.nan), 4999, start=True)
    with pytest.raises(InferenceServerException, match="LOB_NO_STATE: "):
        infer(client, "lob_stream", ticks[1], 4999)
    tok = (("model", "lob_tokenizer"),)
    page = scrape(server)  # Triton's own per-model counters, updated before each response is sent
    executes = total(page, "nv_inference_exec_count", model="lob_tokenizer")
    requests = sum(total(page, f"nv_inference_request_{r}", model="lob_tokenizer") for r in ("success", "failure"))
    assert executes >= batches0 + 5 and requests >= executes  # not vacuous: this test's executes are counted
    during = settled(server, {("lob_tokenizer_refused_ticks_total", *tok, ("reason", "bad_tick")): refused0 + 2,
                              ("lob_tokenizer_refused_ticks_total", *tok, ("reason", "no_state")): no_state0 + 1,
                              ("lob_tokenizer_batch_size_count", *tok): executes,
                              ("lob_tokenizer_batch_size_sum", *tok): requests,
                              ("lob_tokenizer_batch_size_bucket", *tok, ("le", "+Inf")): executes})
    assert total(during, "lob_tokenizer_open_sequences", model="lob_tokenizer") >= 3
    assert total(during, "lob_tokenizer_batch_size_bucket", model="lob_tokenizer", le="1") <= executes
    config = read_config(server.repo / "lob_tokenizer" / "config.pbtxt")
    capacity = config.sequence_batching.oldest.max_candidate_sequences  # per instance: one batcher each
    assert capacity > 0 and [total(during, "lob_tokenizer_max_candidate_sequences", model="lob_tokenizer",
                                   instance=f"lob_tokenizer_0_{i}") for i in range(config.instance_group[0].count)] \
        == [capacity] * config.instance_group[0].count
    open_now = total(during, "lob_tokenizer_open_sequences", model="lob_tokenizer")
    for seq_id in (4001, 4002, 4003):
        infer(client, "lob_stream", ticks[1], seq_id, end=True)
    settled(server, {("lob_tokenizer_open_sequences", *tok): open_now - 3})


def test_idle_reclaimed_sequences_are_counted(server, client, ticks):
    model = "lob_tokenizer_small"
    before = total(scrape(server), "lob_tokenizer_idle_reclaimed_total", model=model)
    for seq_id in (4101, 4102):
        infer_tokens(client, model, ticks[0], seq_id, start=True)
    time.sleep(SMALL_IDLE_S + 1.2)  # idle past the timeout and past the model's 1 s sweep period
    infer_tokens(client, model, ticks[0], 4103, start=True, end=True)  # an execute runs the sweep
    settled(server, {("lob_tokenizer_idle_reclaimed_total", ("model", model)): before + 2})


def infer_tokens(client, model, tick, seq_id, start=False, end=False):
    """One tick straight to a tokenizer model; returns its TOKEN."""
    arrays = {"TS_NS": np.array([[tick.ts_ns]], np.int64), "BID_PX": tick.bid_px[None, None],
              "BID_SZ": tick.bid_sz[None, None], "ASK_PX": tick.ask_px[None, None], "ASK_SZ": tick.ask_sz[None, None],
              "TRADE_PX": np.array([[tick.trade_px]]),
              "TRADE_SZ": np.array([[tick.trade_sz]]), "TRADE_SIDE": np.array([[tick.trade_side]], np.int8)}
    inputs = []
    for name, array in arrays.items():
        inputs.append(grpcclient.InferInput(name, list(array.shape), grpcclient.np_to_triton_dtype(array.dtype)))
        inputs[-1].set_data_from_numpy(array)
    return client.infer(model, inputs, sequence_id=seq_id, sequence_start=start, sequence_end=end).as_numpy("TOKEN")


def test_a_tick_refused_at_end_still_ends_the_step_models_sequence(client, ticks):
    seq_id = 4201
    for i in range(3):
        infer(client, "lob_stream", ticks[i], seq_id, start=(i == 0))
    step(client, "mamba_lob_onnx", seq_id)  # the step model holds the sequence (direct call, no END)
    with pytest.raises(InferenceServerException, match="LOB_BAD_TICK: .*bid_px_1"):
        infer(client, "lob_stream", with_level(ticks[3], "bid_px", 0, np.nan), seq_id, end=True)
    with pytest.raises(InferenceServerException, match=NO_SEQUENCE):
        step(client, "mamba_lob_onnx", seq_id)  # ended there too, not left to the idle timeout
