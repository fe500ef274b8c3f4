"""The tokenizer's custom metrics on the server's /metrics endpoint (beside Triton's own), and a refused END."""
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


def value(text: str, name: str, **labels) -> float:
    """The sample ``name{labels...}`` of a Prometheus text page (labels matched as a subset)."""
    for line in text.splitlines():
        m = re.match(rf"^{re.escape(name)}\{{(.*)\}} (\S+)$", line)
        if m and all(f'{k}="{v}"' in m.group(1) for k, v in labels.items()):
            return float(m.group(2))
    raise AssertionError(f"{name}{labels} not on /metrics")


def test_open_refused_and_batch_metrics(server, client, ticks):
    before = scrape(server)
    assert "nv_inference_request_success" in before  # Triton's own metrics on the same page
    refused0 = value(before, "lob_tokenizer_refused_ticks_total", model="lob_tokenizer", reason="bad_tick")
    no_state0 = value(before, "lob_tokenizer_refused_ticks_total", model="lob_tokenizer", reason="no_state")
    batches0 = value(before, "lob_tokenizer_batch_size_count", model="lob_tokenizer")
    for seq_id in (4001, 4002, 4003):
        infer(client, "lob_stream", ticks[0], seq_id, start=True)
    with pytest.raises(InferenceServerException, match="LOB_BAD_TICK: "):
        infer(client, "lob_stream", with_level(ticks[1], "bid_px", 0, np.nan), 4001)
    with pytest.raises(InferenceServerException, match="LOB_BAD_TICK: "):  # a refused START opens no sequence
        infer(client, "lob_stream", with_level(ticks[0], "bid_px", 0, np.nan), 4999, start=True)
    with pytest.raises(InferenceServerException, match="LOB_NO_STATE: "):
        infer(client, "lob_stream", ticks[1], 4999)
    during = scrape(server)
    assert value(during, "lob_tokenizer_open_sequences", model="lob_tokenizer") >= 3
    config = read_config(server.repo / "lob_tokenizer" / "config.pbtxt")
    capacity = config.sequence_batching.oldest.max_candidate_sequences  # per instance: one batcher each
    assert capacity > 0 and [value(during, "lob_tokenizer_max_candidate_sequences", model="lob_tokenizer",
                                   instance=f"lob_tokenizer_0_{i}") for i in range(config.instance_group[0].count)] \
        == [capacity] * config.instance_group[0].count
    assert value(during, "lob_tokenizer_refused_ticks_total", model="lob_tokenizer", reason="bad_tick") == refused0 + 2
    assert value(during, "lob_tokenizer_refused_ticks_total", model="lob_tokenizer", reason="no_state") == no_state0 + 1
    assert value(during, "lob_tokenizer_batch_size_count", model="lob_tokenizer") >= batches0 + 5
    open_now = value(during, "lob_tokenizer_open_sequences", model="lob_tokenizer")
    for seq_id in (4001, 4002, 4003):
        infer(client, "lob_stream", ticks[1], seq_id, end=True)
    assert value(scrape(server), "lob_tokenizer_open_sequences", model="lob_tokenizer") == open_now - 3


def test_idle_reclaimed_sequences_are_counted(server, client, ticks):
    model = "lob_tokenizer_small"
    before = value(scrape(server), "lob_tokenizer_idle_reclaimed_total", model=model)
    for seq_id in (4101, 4102):
        infer_tokens(client, model, ticks[0], seq_id, start=True)
    time.sleep(SMALL_IDLE_S + 1.2)  # idle past the timeout and past the model's 1 s sweep period
    infer_tokens(client, model, ticks[0], 4103, start=True, end=True)  # an execute runs the sweep
    assert value(scrape(server), "lob_tokenizer_idle_reclaimed_total", model=model) == before + 2


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
