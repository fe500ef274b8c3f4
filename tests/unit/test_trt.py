"""`lob build-trt`: clear refusals off-GPU; on a GPU, engines that serve the step model's contract."""
from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from lob.cli import app
from lob.contract import MAX_CHUNK
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
    assert engine.get_tensor_profile_shape("FEATURES", 0)[2] == (1024, MAX_CHUNK, 12)


@pytest.mark.gpu
@pytest.mark.skipif(not (HAS_TENSORRT and _cuda_gpu()), reason="needs TensorRT and a CUDA GPU")
@pytest.mark.parametrize("name", ["transformer", "hybrid"])
def test_attention_engine_tracks_onnxruntime_past_the_wrap(repo, name):
    """A Transformer / hybrid run's ring graph (float32 only) builds as an FP16 engine, and the engine stepped
    tick by tick, its state fed back as Triton would, follows onnxruntime's FP32 graph for 3 rings."""
    import numpy as np
    import onnxruntime as ort
    import tensorrt as trt
    import torch

    from lob.export.onnx_step import export_step_onnx, io_names
    from lob.models.registry import arch, config_from_preset

    torch.manual_seed(0)
    window, vocab, n_features = 24, 1000, 12
    model = arch(name).model(config_from_preset(name, "tiny", vocab, n_features, window=window)).eval()
    onnx_path = repo / "mamba_lob_onnx" / "1" / "model.onnx"
    export_step_onnx(model, onnx_path, model_version="test-version")
    (plan,) = build_engines(repo, ["fp16"], max_batch=1024)
    engine = trt.Runtime(trt.Logger(trt.Logger.WARNING)).deserialize_cuda_engine(plan.read_bytes())
    context = engine.create_execution_context()
    dtypes = {trt.float32: torch.float32, trt.int64: torch.int64}
    ref = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    names_in, names_out = io_names(model)
    batch, g = 4, np.random.default_rng(5)
    state = {n: s.numpy() for n, s in zip(names_in[2:], model.allocate_inference_cache(batch))}
    state_trt = {n: torch.from_numpy(s).cuda() for n, s in state.items()}
    worst = 0.0
    for _ in range(3 * window):
        feed = {"TOKEN": g.integers(0, vocab, (batch, 1)), "FEATURES": g.standard_normal((batch, 1, n_features),
                                                                                          dtype=np.float32)}
        want = dict(zip([o.name for o in ref.get_outputs()], ref.run(None, {**feed, **state})))
        inputs = {**{k: torch.from_numpy(v).cuda() for k, v in feed.items()}, **state_trt}
        for n, t in inputs.items():
            context.set_input_shape(n, tuple(t.shape))
            context.set_tensor_address(n, t.data_ptr())
        outputs = {n: torch.empty(tuple(context.get_tensor_shape(n)), dtype=dtypes[engine.get_tensor_dtype(n)],
                                  device="cuda") for n in names_out}
        for n, t in outputs.items():
            context.set_tensor_address(n, t.data_ptr())
        assert context.execute_async_v3(torch.cuda.current_stream().cuda_stream)
        torch.cuda.synchronize()
        worst = max(worst, float(np.abs(outputs["DIR_PROBS"].cpu().numpy() - want["DIR_PROBS"]).max()))
        state = {n.replace("_OUT", "_IN"): want[n] for n in names_out if n.startswith("STATE_")}
        state_trt = {n.replace("_OUT", "_IN"): outputs[n] for n in names_out if n.startswith("STATE_")}
    assert worst < 3e-3
    np.testing.assert_array_equal(state_trt["STATE_POS_IN"].cpu().numpy(), 3 * window)
