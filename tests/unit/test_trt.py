"""`lob build-trt`: clear refusals off-GPU; on a GPU, engines that serve the step model's contract."""
from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from lob.cli import app
from lob.export.trt import TrtBuildError, build_engines, engine_path

REPO = Path(__file__).resolve().parents[2] / "model_repository"
HAS_TENSORRT = importlib.util.find_spec("tensorrt") is not None


@pytest.fixture
def repo(tmp_path: Path, step_onnx: Path) -> Path:
    """The committed repository after `lob export`."""
    repo = Path(shutil.copytree(REPO, tmp_path / "model_repository",
                                ignore=shutil.ignore_patterns("*.onnx", "*.plan", "*.json")))
    shutil.copyfile(step_onnx, repo / "mamba_lob_onnx" / "1" / "model.onnx")
    return repo


def test_refuses_unknown_precision_and_missing_export(tmp_path):
    with pytest.raises(ValueError, match="int8"):
        build_engines(tmp_path, ["fp16", "int8"])
    with pytest.raises(FileNotFoundError, match="lob export"):
        build_engines(tmp_path, ["fp16"])


def test_refuses_a_profile_smaller_than_the_config(repo):
    with pytest.raises(ValueError, match="max_batch_size 1024"):
        build_engines(repo, ["bf16"], max_batch=512)


@pytest.mark.skipif(HAS_TENSORRT, reason="tensorrt is installed here; this checks the message without it")
def test_without_tensorrt_says_what_to_do(repo):
    with pytest.raises(TrtBuildError, match="TensorRT is not installed.*GPU"):
        build_engines(repo, ["fp16"])
    assert not engine_path(repo, "fp16").exists()
    result = CliRunner().invoke(app, ["build-trt", "--repo", str(repo), "--precision", "fp16"])
    assert result.exit_code == 2
    assert "TensorRT is not installed" in result.output


def _cuda_gpu() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


@pytest.mark.gpu
@pytest.mark.skipif(not (HAS_TENSORRT and _cuda_gpu()), reason="needs TensorRT and a CUDA GPU")
@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_engine_matches_the_step_contract(repo, precision):
    import tensorrt as trt

    (path,) = build_engines(repo, [precision], max_batch=1024)
    engine = trt.Runtime(trt.Logger(trt.Logger.WARNING)).deserialize_cuda_engine(path.read_bytes())
    io = {engine.get_tensor_name(i): engine.get_tensor_dtype(engine.get_tensor_name(i))
          for i in range(engine.num_io_tensors)}
    assert io == {"TOKEN": trt.int64, "FEATURES": trt.float32, "STATE_CONV_IN": trt.float32,
                  "STATE_SSM_IN": trt.float32, "DIR_PROBS": trt.float32, "TOPK_IDS": trt.int64,
                  "TOPK_PROBS": trt.float32, "STATE_CONV_OUT": trt.float32, "STATE_SSM_OUT": trt.float32}
    assert engine.get_tensor_profile_shape("FEATURES", 0)[2] == (1024, 12)
