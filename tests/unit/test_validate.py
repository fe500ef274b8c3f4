"""`lob validate`: the project's repository passes; each single fault in a copy is caught, naming file and field."""
from __future__ import annotations

import shutil
from pathlib import Path

import onnx
import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc
from typer.testing import CliRunner

from lob.cli import app
from lob.export.validate import validate_repository

REPO = Path(__file__).resolve().parents[2] / "model_repository"
# Build products of `lob export` / `lob build-trt`, absent from the committed tree.
ARTIFACTS = shutil.ignore_patterns("model.onnx", "model_fp16.onnx", "model.plan", "tokenizer.json", "export.json")


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A copy of the project's repository as committed (no build products)."""
    return Path(shutil.copytree(REPO, tmp_path / "model_repository", ignore=ARTIFACTS))


@pytest.fixture
def exported(repo: Path, step_onnx: Path) -> Path:
    """The repository copy after `lob export`: the step model where the ONNX models read it."""
    shutil.copyfile(step_onnx, repo / "mamba_lob_onnx" / "1" / "model.onnx")
    return repo


def edit_config(path: Path, change) -> None:
    config = text_format.Parse(path.read_text(), mc.ModelConfig())
    change(config)
    path.write_text(text_format.MessageToString(config))


def edit_onnx(path: Path, change) -> None:
    model = onnx.load(str(path))
    change({v.name: v for v in [*model.graph.input, *model.graph.output]})
    onnx.save(model, str(path))


def assert_caught(repo: Path, file: Path, field: str) -> None:
    problems = validate_repository(repo)
    assert problems, "the fault was not caught"
    assert all(str(file) in p for p in problems), problems  # one fault: every problem points at its file
    assert any(field in p for p in problems), problems


def test_committed_repository_passes(repo):
    assert validate_repository(repo) == []


def test_exported_repository_passes(exported):
    assert validate_repository(exported) == []


def test_cli_exit_status(repo):
    assert CliRunner().invoke(app, ["validate", str(repo)]).exit_code == 0
    (repo / "lob_tokenizer" / "1" / "model.py").unlink()
    result = CliRunner().invoke(app, ["validate", str(repo)])
    assert result.exit_code == 1
    assert "model.py" in result.output


# ----------------------------------------------------------------------------------------- config faults

def test_unknown_field(repo):
    path = repo / "mamba_lob_onnx" / "config.pbtxt"
    path.write_text(path.read_text() + "\nmax_batch_sizes: 8\n")
    assert_caught(repo, path, "max_batch_sizes")


def test_name_differs_from_folder(repo):
    path = repo / "mamba_lob_trt_fp16" / "config.pbtxt"
    edit_config(path, lambda c: setattr(c, "name", "mamba_lob_trt"))
    assert_caught(repo, path, "name")


def test_non_numeric_version_folder(repo):
    folder = repo / "mamba_lob_onnx" / "v2"
    folder.mkdir()
    assert_caught(repo, folder, "version folder")


def test_missing_model_py(repo):
    path = repo / "lob_tokenizer" / "1" / "model.py"
    path.unlink()
    assert_caught(repo, path, "missing")


def test_model_py_without_execute(repo):
    path = repo / "lob_tokenizer" / "1" / "model.py"
    path.write_text(path.read_text().replace("def execute(", "def run("))
    assert_caught(repo, path, "TritonPythonModel.execute")


def test_state_names_sorting_differently(repo):
    path = repo / "mamba_lob_trt_bf16" / "config.pbtxt"
    # inputs now sort SSM before CONV, outputs still CONV before SSM: Triton would swap the states
    edit_config(path, lambda c: setattr(c.sequence_batching.state[1], "input_name", "STATE_A_SSM_IN"))
    assert_caught(repo, path, "sequence_batching.state")


def test_python_model_without_sequence_controls(repo):
    path = repo / "lob_tokenizer" / "config.pbtxt"

    def drop_corrid(c):
        controls = c.sequence_batching.control_input
        del controls[[k.kind for x in controls for k in x.control].index(
            mc.ModelSequenceBatching.Control.CONTROL_SEQUENCE_CORRID)]

    edit_config(path, drop_corrid)
    assert_caught(repo, path, "sequence_batching.control_input")


# --------------------------------------------------------------------------------------- ensemble faults

def _step(config, model_name):
    return next(s for s in config.ensemble_scheduling.step if s.model_name == model_name)


def test_ensemble_tensor_produced_twice(repo):
    path = repo / "lob_stream_onnx" / "config.pbtxt"
    edit_config(path, lambda c: _step(c, "mamba_lob_onnx").output_map.__setitem__("TOPK_IDS", "token"))
    assert_caught(repo, path, "produced twice")


def test_ensemble_consumer_dtype_mismatch(repo):
    path = repo / "lob_stream_trt_fp16" / "config.pbtxt"
    edit_config(path, lambda c: setattr(next(o for o in c.output if o.name == "TOPK_PROBS"), "data_type",
                                        mc.TYPE_FP64))
    assert_caught(repo, path, "output[2]")


def test_ensemble_input_consumed_by_no_step(repo):
    path = repo / "lob_stream_trt_bf16" / "config.pbtxt"
    edit_config(path, lambda c: c.input.add(name="VENUE", data_type=mc.TYPE_INT32, dims=[1]))
    assert_caught(repo, path, "input[8] (VENUE)")


def test_ensemble_missing_composing_model(repo):
    path = repo / "lob_stream_onnx" / "config.pbtxt"
    edit_config(path, lambda c: setattr(_step(c, "mamba_lob_onnx"), "model_name", "mamba_lob_gpu"))
    assert_caught(repo, path, "model_name")


@pytest.mark.parametrize("tensor, together", [("TS_NS", "step[0] (lob_tokenizer), step[2] (lob_model_version)"),
                                               ("token", "step[1] (mamba_lob_trt_fp16), step[2] (lob_model_version)")],
                         ids=["first-steps", "after-the-tokenizer"])
def test_ensemble_steps_that_start_together_are_refused_naming_the_hazard(repo, tensor, together):
    path = repo / "lob_stream_trt_fp16" / "config.pbtxt"
    assert not [p for p in validate_repository(repo) if "start together" in p]  # the committed chain is serial
    edit_config(path, lambda c: _step(c, "lob_model_version").input_map.__setitem__("TOPK_IDS", tensor))
    assert_caught(repo, path, f"ensemble_scheduling: {together} start together")
    assert any("EnsembleContext::ScheduleSteps" in p and "r24.10" in p for p in validate_repository(repo))


# ------------------------------------------------------------------------------------- ONNX vs config faults

def test_onnx_input_name_mismatch(exported):
    edit_onnx(exported / "mamba_lob_onnx" / "1" / "model.onnx", lambda io: setattr(io["FEATURES"], "name", "FEATS"))
    assert_caught(exported, exported / "mamba_lob_onnx", "input[1] (FEATURES)")  # both of its configs read this file


def test_onnx_input_dtype_mismatch(exported):
    edit_onnx(exported / "mamba_lob_onnx" / "1" / "model.onnx",
              lambda io: setattr(io["TOKEN"].type.tensor_type, "elem_type", onnx.TensorProto.INT32))
    assert_caught(exported, exported / "mamba_lob_onnx", "input[0] (TOKEN)")  # both of its configs read this file


def test_onnx_input_dims_mismatch(exported):
    # a model exported with 13 features against a config (and tokenizer) of 12
    edit_onnx(exported / "mamba_lob_onnx" / "1" / "model.onnx",
              lambda io: setattr(io["FEATURES"].type.tensor_type.shape.dim[2], "dim_value", 13))
    assert_caught(exported, exported / "mamba_lob_onnx", "input[1] (FEATURES)")  # both of its configs read this file


def test_onnx_state_pair_dtype_mismatch(exported):
    edit_onnx(exported / "mamba_lob_onnx" / "1" / "model.onnx",
              lambda io: setattr(io["STATE_SSM_OUT"].type.tensor_type, "elem_type", onnx.TensorProto.FLOAT16))
    assert_caught(exported, exported / "mamba_lob_onnx", "sequence_batching.state[1]")  # both of its configs read this file


def test_onnx_stateful_model_without_sequence_batching(exported):
    path = exported / "mamba_lob_onnx" / "config.pbtxt"
    edit_config(path, lambda c: c.ClearField("sequence_batching"))
    assert_caught(exported, path, "STATE_CONV_IN")


# ------------------------------------------------------------------------------------- implicit state entries

def test_state_with_a_string_dtype(repo):
    def string_state(c):
        c.sequence_batching.state[0].data_type = mc.TYPE_STRING
        c.sequence_batching.state[0].initial_state[0].data_type = mc.TYPE_STRING
    path = repo / "mamba_lob_trt_fp16" / "config.pbtxt"
    edit_config(path, string_state)
    assert_caught(repo, path, "TYPE_STRING is not a state")


@pytest.mark.parametrize("field, change", [
    ("data_type", lambda init: setattr(init, "data_type", mc.TYPE_FP16)),
    ("dims", lambda init: init.dims.__setitem__(0, 3)),
])
def test_initial_state_that_does_not_fit_its_state(repo, field, change):
    path = repo / "mamba_lob_trt_bf16" / "config.pbtxt"
    edit_config(path, lambda c: change(c.sequence_batching.state[1].initial_state[0]))
    assert_caught(repo, path, f"sequence_batching.state[1] (STATE_SSM_IN).initial_state[0].{field}")


def test_gpu_config_whose_state_drifted_from_the_cpu_one(repo):
    path = repo / "mamba_lob_onnx" / "configs" / "gpu.pbtxt"
    def drift(c):
        for d in (c.sequence_batching.state[0], c.sequence_batching.state[0].initial_state[0]):
            d.dims[1] = 128
    edit_config(path, drift)
    assert_caught(repo, path, "declared differently")


def test_named_configs_get_the_same_checks(repo):
    path = repo / "lob_tokenizer" / "configs" / "gpu.pbtxt"
    path.write_text(path.read_text() + "\nmax_batch_sizes: 8\n")
    assert_caught(repo, path, "max_batch_sizes")


@pytest.mark.parametrize("model,tensor,dims", [("lob_stream", "TS_NS", [1]), ("lob_tokenizer", "BID_PX", [10]),
                                                ("mamba_lob_onnx", "FEATURES", [12]),
                                                ("mamba_lob_trt_fp16", "TOPK_IDS", [5])])
def test_every_tensor_has_the_time_axis(repo, model, tensor, dims):
    """A config from before the time axis (one tick per request, no -1 first) is refused, naming the tensor."""
    path = repo / model / "config.pbtxt"
    edit_config(path, lambda c: next(t for t in [*c.input, *c.output] if t.name == tensor).dims.__setitem__(
        slice(None), dims))
    problems = [p for p in validate_repository(repo) if p.startswith(str(path))]
    assert any(f"({tensor}).dims: {dims}" in p and "time axis" in p for p in problems), problems


def test_direction_dims_follow_the_contract(repo, monkeypatch):
    path = repo / "lob_stream" / "config.pbtxt"
    edit_config(path, lambda c: next(o for o in c.output if o.name == "DIR_PROBS").dims.__setitem__(1, 4))
    assert_caught(repo, path, "lob.contract")
    # a contract with other horizons than the committed configs' rows: every config declaring DIR_PROBS is named
    import lob.contract

    monkeypatch.setattr(lob.contract, "HORIZONS", (10, 50))
    problems = validate_repository(REPO)
    flagged = {p.split(":")[0] for p in problems if "lob.contract" in p}
    configs = [*REPO.glob("*/config.pbtxt"), *REPO.glob("*/configs/*.pbtxt")]  # named configs are checked too
    declaring = {str(p) for p in configs if "DIR_PROBS" in p.read_text()}
    assert declaring and flagged == declaring
