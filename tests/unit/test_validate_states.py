"""`lob validate` checks implicit-state entries for any architecture's states (a Transformer's K, V, POS)."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

from lob.export.onnx_step import export_step_onnx
from lob.export.repository import fit_states
from lob.export.validate import validate_repository
from lob.models.registry import arch, config_from_preset

REPO = Path(__file__).resolve().parents[2] / "model_repository"
ARTIFACTS = shutil.ignore_patterns("model.onnx", "model_fp16.onnx", "model.plan", "tokenizer.json", "export.json")


@pytest.fixture(scope="module")
def transformer_onnx(tmp_path_factory) -> tuple[object, Path]:
    torch.manual_seed(0)
    model = arch("transformer").model(config_from_preset("transformer", "tiny", 64, 12, window=32)).eval()
    path = tmp_path_factory.mktemp("tx") / "model.onnx"
    export_step_onnx(model, path, model_version="transformer-test")  # the served graph outputs MODEL_VERSION
    return model, path


@pytest.fixture
def repo(tmp_path, transformer_onnx) -> Path:
    """The project's repository with a Transformer step model in mamba_lob_onnx and its states fitted."""
    model, onnx_path = transformer_onnx
    repo = Path(shutil.copytree(REPO, tmp_path / "model_repository", ignore=ARTIFACTS))
    shutil.copyfile(onnx_path, repo / "mamba_lob_onnx" / "1" / "model.onnx")
    assert fit_states(repo, model)  # the committed configs hold Mamba's states: rewritten
    return repo


def _edit(path: Path, change) -> None:
    config = text_format.Parse(path.read_text(), mc.ModelConfig())
    change(config)
    path.write_text(text_format.MessageToString(config))


def _only(repo: Path, field: str) -> None:
    problems = validate_repository(repo)
    assert problems and all("mamba_lob_onnx" in p for p in problems), problems
    assert any(field in p for p in problems), problems


def test_fitted_transformer_states_pass(repo):
    assert validate_repository(repo) == []
    config = text_format.Parse((repo / "mamba_lob_onnx/config.pbtxt").read_text(), mc.ModelConfig())
    assert [s.input_name for s in config.sequence_batching.state] == ["STATE_K_IN", "STATE_POS_IN", "STATE_V_IN"]


def test_committed_mamba_states_do_not_fit_a_transformer_graph(repo, transformer_onnx):
    """Without the refit, the K/V/POS graph behind the CONV/SSM config is caught."""
    shutil.copyfile(REPO / "mamba_lob_onnx" / "config.pbtxt", repo / "mamba_lob_onnx" / "config.pbtxt")
    _only(repo, "STATE_CONV_IN")
    assert any("STATE_K_OUT' is a state that no entry feeds back" in p for p in validate_repository(repo))


def test_a_state_dropped_from_the_config_is_caught(repo):
    path = repo / "mamba_lob_onnx" / "config.pbtxt"
    _edit(path, lambda c: c.sequence_batching.state.pop(1))  # POS
    _only(repo, "STATE_POS_OUT' is a state that no entry feeds back")


def test_mismatched_state_names_are_caught(repo):
    path = repo / "mamba_lob_onnx" / "config.pbtxt"
    _edit(path, lambda c: setattr(c.sequence_batching.state[0], "output_name", "STATE_KEYS_OUT"))
    _only(repo, "names must be STATE_<NAME>_IN / STATE_<NAME>_OUT")


def test_initial_state_of_another_type_is_caught(repo):
    path = repo / "mamba_lob_onnx" / "config.pbtxt"
    _edit(path, lambda c: setattr(c.sequence_batching.state[1].initial_state[0], "data_type", mc.TYPE_FP32))
    _only(repo, "sequence_batching.state[1] (STATE_POS_IN).initial_state[0]")


def test_wrong_ring_size_is_caught(repo):
    path = repo / "mamba_lob_onnx" / "config.pbtxt"

    def shrink(c):
        c.sequence_batching.state[0].dims[2] = 16  # (n_layer, n_kv_head, W, head_dim): W 32 -> 16
        c.sequence_batching.state[0].initial_state[0].dims[2] = 16
    _edit(path, shrink)
    _only(repo, "sequence_batching.state[0].input_name (STATE_K_IN)")
