"""A hybrid run (Mamba layers + sliding-window attention held in a ring of W ticks) and a Transformer run
(attention only) served on the real CPU
server through the same `lob_stream` ensemble and implicit state: served == `lob predict` per tick past
the ring's wrap, interleaved symbols == each alone, and the state entries `lob export` wrote."""
from __future__ import annotations

import json

import numpy as np
import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

import lobclient
from lob.contract import CLASSES
from lob.data.schema import load_dataset
from lob.serving.replay import interleave

from .conftest import free_port

pytestmark = pytest.mark.server

WINDOW = 16  # ticks in the attention ring: the streams below are several rings long
N_TICKS = 3 * WINDOW + 7


@pytest.fixture(scope="module", params=["hybrid", "transformer"])
def hybrid_run(request, tmp_path_factory, dataset_dir):
    """A complete run folder holding a random-initialised tiny hybrid (or Transformer) with a W-tick window."""
    from lob.training.run import untrained_run

    return untrained_run(tmp_path_factory.mktemp("hybrid-run") / "run", dataset_dir, arch=request.param, seed=3,
                         window=WINDOW)


@pytest.fixture(scope="module")
def hybrid_server(hybrid_run, tmp_path_factory):
    from lob.export.repository import export_repository
    from lob.serving.launcher import TritonServer

    repo = tmp_path_factory.mktemp("hybrid-build") / "model_repository"
    export_repository(hybrid_run, repo)
    log = tmp_path_factory.mktemp("hybrid-server") / "tritonserver.log"
    with TritonServer(repo, "cpu", grpc_port=free_port(), http_port=free_port(), metrics_port=free_port(),
                      log_file=log) as srv:
        srv.repo_path = repo
        yield srv


@pytest.fixture(scope="module")
def offline(hybrid_run, dataset_dir, tmp_path_factory):
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from lob.evaluation.predict import predict

    table = pq.read_table(predict(hybrid_run, dataset_dir, tmp_path_factory.mktemp("hybrid-offline") / "p.parquet"))
    return {s: table.filter(pc.equal(table["symbol"], s)) for s in sorted(set(table["symbol"].to_pylist()))}


def _probs(preds) -> np.ndarray:
    return np.stack([p.dir_probs for p in preds])  # (n, 3, 3)


def test_export_wrote_the_attention_states_into_the_served_step_config(hybrid_run, hybrid_server):
    cfg = text_format.Parse((hybrid_server.repo_path / "mamba_lob_onnx" / "config.pbtxt").read_text(),
                            model_config_pb2.ModelConfig())
    states = {s.input_name: (s.output_name, list(s.dims)) for s in cfg.sequence_batching.state}
    mamba = {"STATE_CONV_IN", "STATE_SSM_IN"} if json.loads((hybrid_run / "config.json").read_text())["arch"] == \
        "hybrid" else set()
    assert set(states) == {"STATE_K_IN", "STATE_POS_IN", "STATE_V_IN"} | mamba
    assert states["STATE_K_IN"][1][2] == WINDOW and states["STATE_POS_IN"][1] == [1]


def test_served_attention_run_equals_lob_predict_past_the_ring_wrap_and_interleaved_equals_alone(
        hybrid_server, dataset_dir, offline):
    data = {s: t.slice(0, N_TICKS) for s, t in load_dataset(dataset_dir).items()}
    ticks = list(interleave(data))
    preds = list(lobclient.stream(ticks, url=hybrid_server.url))
    assert len(preds) == len(ticks) and all(p.ok for p in preds), [p.error for p in preds if not p.ok][:3]
    for symbol in data:
        mine = [p for p in preds if p.symbol == symbol]
        assert [p.seq for p in mine] == list(range(N_TICKS))
        t = offline[symbol].slice(0, N_TICKS)
        want = np.stack([np.stack([t[f"p_{c}_h{h}"].to_numpy() for c in CLASSES], -1) for h in lobclient.HORIZONS], 1)
        assert np.abs(_probs(mine) - want).max() <= 1e-4, symbol
        late = _probs(mine[WINDOW:]) - _probs(mine[:N_TICKS - WINDOW])
        assert np.abs(late).max() > 1e-3  # not vacuous: the predictions move as the ring fills and wraps
    symbol = sorted(data)[0]
    alone = list(lobclient.stream(list(interleave({symbol: data[symbol]})), url=hybrid_server.url))
    together = [p for p in preds if p.symbol == symbol]
    assert np.array_equal(_probs(alone), _probs(together))
