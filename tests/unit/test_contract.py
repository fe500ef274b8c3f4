"""The served contract is defined once, in lob.contract: the horizons everything reads, the client's copy of
every value, and the repository's configs (through `lob validate`) are checked against it."""
import inspect
import json
import shutil
import types
from pathlib import Path

import lobclient
import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc
from typer.testing import CliRunner

from lob.cli import app
from lob.contract import CLASSES, HORIZONS
from lob.export.validate import validate_repository
from lob.models.registry import config_from_preset
from lob.training.labels import tick_targets
from lob.training.config import TrainConfig


def test_client_and_model_use_the_contract_horizons():
    # the client must not import lob (no torch on its side): its copy is checked here
    assert lobclient.HORIZONS == HORIZONS
    assert config_from_preset("mamba", "tiny", vocab_size=10, n_features=2).horizons == HORIZONS
    assert "horizons" not in TrainConfig.__dataclass_fields__  # one definition, not a training option
    assert len(CLASSES) == 3


def test_labels_and_manifest_use_the_contract_horizons(tmp_path):
    from lob.data.schema import load_dataset
    from lob.data.simulator import simulate_dataset
    from lob.training.train import train

    simulate_dataset(tmp_path / "d", n_symbols=1, n_days=1, seed=0, events_per_day=1500, start_date="2024-01-02")
    t = next(iter(load_dataset(tmp_path / "d").values()))
    labels, _ = tick_targets(t, 0.5)
    assert labels.shape == (len(t), len(HORIZONS))
    run = train(tmp_path / "d", tmp_path / "r", TrainConfig(max_steps=1, window=64, batch_size=2, eval_every=1,
                                                            max_val_windows=2))
    assert json.loads((run / "manifest.json").read_text())["horizons"] == list(HORIZONS)


# ------------------------------------------------------------------------- the client's copy of the contract

PROBES = {"prob_column": [(c, h) for c in CLASSES for h in HORIZONS]}  # contract function -> argument tuples compared


def _defined_in(module) -> dict:
    """The public values a module defines itself (not the modules, functions or features it imports)."""
    return {name: value for name, value in vars(module).items()
            if not name.startswith("_") and not isinstance(value, types.ModuleType)
            and getattr(value, "__module__", module.__name__) == module.__name__}


def test_every_value_the_client_copies_equals_the_contracts():
    import lob.contract
    import lobclient.contract

    copied = _defined_in(lobclient.contract)
    assert {"HORIZONS", "TICK_INPUTS", "OUTPUTS", "NO_STATE_PREFIX", "prob_column"} <= copied.keys()
    for name, value in copied.items():
        assert name in _defined_in(lob.contract), f"lobclient.contract.{name} is not in lob.contract"
        served = getattr(lob.contract, name)
        if callable(value):  # a function is equal where it gives the same answer on every contract input
            assert inspect.signature(value).parameters.keys() == inspect.signature(served).parameters.keys(), name
            assert name in PROBES, f"lobclient.contract.{name}: add its inputs to PROBES"
            assert [value(*a) for a in PROBES[name]] == [served(*a) for a in PROBES[name]], name
        else:
            assert value == served, f"lobclient.contract.{name} = {value!r}, lob.contract has {served!r}"


def test_a_drifted_client_copy_is_caught(monkeypatch):
    import lobclient.contract

    monkeypatch.setattr(lobclient.contract, "BAD_TICK_PREFIX", "BAD_TICK: ")
    with pytest.raises(AssertionError, match="BAD_TICK_PREFIX"):
        test_every_value_the_client_copies_equals_the_contracts()


# -------------------------------------------------------------------- the repository's configs (lob validate)

REPO = Path(__file__).resolve().parents[2] / "model_repository"


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A copy of the project's repository as committed (no build products)."""
    return Path(shutil.copytree(REPO, tmp_path / "model_repository",
                                ignore=shutil.ignore_patterns("model.onnx", "model_fp16.onnx", "model.plan",
                                                              "tokenizer.json", "export.json")))


def _edit(path: Path, change) -> None:
    config = text_format.Parse(path.read_text(), mc.ModelConfig())
    change(config)
    path.write_text(text_format.MessageToString(config))


def _refused(repo: Path, file: Path, *words: str) -> list[str]:
    """The problems `lob validate` reports; asserts one of them names ``file``, lob.contract and ``words``."""
    problems = validate_repository(repo)
    assert any(str(file) in p and "lob.contract" in p and all(w in p for w in words) for p in problems), problems
    return problems


def test_the_committed_configs_agree_with_the_contract():
    assert validate_repository(REPO) == []
    result = CliRunner().invoke(app, ["validate", str(REPO)])
    assert result.exit_code == 0, result.output


def test_a_renamed_ensemble_output_is_refused(repo):
    path = repo / "lob_stream" / "config.pbtxt"

    def rename(c):
        next(o for o in c.output if o.name == "DIR_PROBS").name = "DIR_PROB"
        next(s for s in c.ensemble_scheduling.step if "DIR_PROBS" in s.output_map).output_map["DIR_PROBS"] = "DIR_PROB"
    _edit(path, rename)  # consistent for Triton (the ensemble maps the step's DIR_PROBS to it)
    problems = _refused(repo, path, "output[0] (DIR_PROB).name")
    assert all("lob.contract" in p for p in problems), problems  # Triton would load it: only the contract refuses it
    result = CliRunner().invoke(app, ["validate", str(repo)])
    assert result.exit_code == 1 and "DIR_PROB" in result.output


def test_a_renamed_step_model_is_refused(repo):
    """Folder, config and ensemble step renamed together load in Triton, but the launcher and clients name the
    contract's model."""
    (repo / "mamba_lob_trt_fp16").rename(repo / "mamba_lob_trt_f16")
    _edit(repo / "mamba_lob_trt_f16" / "config.pbtxt", lambda c: setattr(c, "name", "mamba_lob_trt_f16"))
    ensemble = repo / "lob_stream_trt_fp16" / "config.pbtxt"
    _edit(ensemble, lambda c: setattr(c.ensemble_scheduling.step[1], "model_name", "mamba_lob_trt_f16"))
    _refused(repo, repo / "mamba_lob_trt_f16" / "config.pbtxt", "mamba_lob_trt_f16", "name")
    _refused(repo, ensemble, "ensemble_scheduling.step[1].model_name", "mamba_lob_trt_f16")


def test_an_end_step_model_outside_the_contract_is_refused(repo):
    path = repo / "lob_tokenizer" / "config.pbtxt"
    _edit(path, lambda c: setattr(c.parameters["end_step_models"], "string_value", "mamba_lob_onnx,mamba_lob_cpu"))
    problems = _refused(repo, path, "end_step_models", "'mamba_lob_cpu'")
    assert len(problems) == 1, problems


def test_book_inputs_of_another_depth_are_refused(repo):
    path = repo / "lob_tokenizer" / "config.pbtxt"
    _edit(path, lambda c: next(t for t in c.input if t.name == "BID_SZ").dims.__setitem__(1, 5))
    _refused(repo, path, "input[2] (BID_SZ).dims", "[-1, 5]")


def test_every_config_is_checked_against_the_contract_as_it_is_now(monkeypatch):
    """A contract of 5 book levels: every committed config that declares a book input is named, none else."""
    import lob.contract

    monkeypatch.setattr(lob.contract, "N_LEVELS", 5)
    flagged = {p.split(":")[0] for p in validate_repository(REPO) if "lob.contract" in p}
    configs = [*REPO.glob("*/config.pbtxt"), *REPO.glob("*/configs/*.pbtxt")]
    with_book = {str(p) for p in configs if '"ASK_PX"' in p.read_text()}
    assert with_book and flagged == with_book
