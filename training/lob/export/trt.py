"""`lob build-trt`: TensorRT engines of the step model for the `mamba_lob_trt_*` models.

One engine per precision, built with the TensorRT Python API from the FP32 ONNX that `lob export` writes
(`mamba_lob_onnx/1/model.onnx`, its string output MODEL_VERSION left out: engines emit none; its ``Loop`` over the
chunk serves every T, ``lob.export.onnx_chunk.loop_only``, as onnxruntime's one-tick branch has not been built by
TensorRT here), with one optimisation profile over batch 1..max_batch and, for ``TOKEN`` / ``FEATURES``, the
time axis 1..``MAX_CHUNK`` ticks (tuned at 1: live ticks; the ``Loop`` becomes a TensorRT loop), and the FP16
or BF16 builder flag. The layers whose rounding the model cannot absorb run in FP32
(``OBEY_PRECISION_CONSTRAINTS``): exp(dt * A) with its product, softplus, the softmaxes and the RMSNorm
reductions, as in `lob.export.onnx_fp16`. Engine I/O stays FP32/INT64, so the configs equal mamba_lob_onnx's.

An engine is specific to the GPU model and TensorRT version that built it: build it where it will be
served (docker/entrypoint.sh does, with the container's TensorRT). Engines are written atomically as
``REPO/mamba_lob_trt_<precision>/1/model.plan``. The equivalent `trtexec` lines are in docs/gpu.md.
"""
from __future__ import annotations

from pathlib import Path

import onnx
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

from lob.contract import FEATURES, MAX_CHUNK, TOKEN, TRT_STEP_MODELS
from lob.export.onnx_fp16 import SOURCE
from lob.export.onnx_chunk import loop_only
from lob.export.onnx_version import without_version_output
from lob.io import atomic_write

PRECISIONS = {"fp16": "FP16", "bf16": "BF16"}  # precision -> TensorRT BuilderFlag


class TrtBuildError(RuntimeError):
    """An engine cannot be built here (no TensorRT, no GPU, a parser or builder failure)."""


def engine_path(repo: Path, precision: str) -> Path:
    return Path(repo) / TRT_STEP_MODELS[precision] / "1" / "model.plan"


def build_engines(repo: Path, precisions: list[str], max_batch: int = 4096, opt_batch: int = 256) -> list[Path]:
    """Build one engine per precision ('fp16', 'bf16') for batch 1..max_batch (tuned at `opt_batch`)."""
    repo = Path(repo)
    unknown = sorted(set(precisions) - PRECISIONS.keys())
    if unknown or not precisions:
        raise ValueError(f"precision(s) {unknown or precisions}: choose from {sorted(PRECISIONS)}")
    src = repo / SOURCE
    if not src.is_file():
        raise FileNotFoundError(f"{src} is missing: run `lob export` first")
    for precision in precisions:
        config_path = engine_path(repo, precision).parents[1] / "config.pbtxt"
        config = text_format.Parse(config_path.read_text(), mc.ModelConfig())
        if config.max_batch_size > max_batch:
            raise ValueError(f"{config_path}: max_batch_size {config.max_batch_size} exceeds the engine's "
                             f"max batch {max_batch}: raise --max-batch or lower max_batch_size")
    trt = _tensorrt()
    built = []
    for precision in precisions:
        plan = _build(trt, src, PRECISIONS[precision], max_batch, min(opt_batch, max_batch))
        path = engine_path(repo, precision)
        atomic_write(path, lambda tmp: Path(tmp).write_bytes(plan))
        built.append(path)
    return built


def _tensorrt():
    try:
        import tensorrt
    except ImportError as err:
        raise TrtBuildError(
            "TensorRT is not installed: `lob build-trt` builds engines on the CUDA GPU that will serve them. "
            "Run it in the project's container (docker/entrypoint.sh builds missing engines at start), or on a "
            "GPU machine after `pip install tensorrt-cu12==10.5.0` (the TensorRT of tritonserver 24.10); "
            "docs/gpu.md has the equivalent trtexec commands") from err
    return tensorrt


def _build(trt, onnx_path: Path, flag: str, max_batch: int, opt_batch: int) -> bytes:
    logger = trt.Logger(trt.Logger.WARNING)
    try:
        builder = trt.Builder(logger)
    except Exception as err:  # TypeError/RuntimeError when CUDA cannot be initialised
        raise TrtBuildError(f"TensorRT cannot start a builder (no CUDA GPU visible?): {err}") from err
    network = builder.create_network(0)  # TensorRT 10: explicit batch is the only mode
    parser = trt.OnnxParser(network, logger)
    graph = loop_only(without_version_output(onnx.load(str(onnx_path))))  # TensorRT has no string tensors
    if not parser.parse(graph.SerializeToString(), str(onnx_path.parent)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise TrtBuildError(f"{onnx_path}: TensorRT's ONNX parser failed: {errors}")
    config = builder.create_builder_config()
    config.set_flag(getattr(trt.BuilderFlag, flag))
    config.set_flag(trt.BuilderFlag.OBEY_PRECISION_CONSTRAINTS)
    _pin_fp32(trt, network)
    profile = builder.create_optimization_profile()
    for i in range(network.num_inputs):
        tensor = network.get_input(i)
        timed = tensor.name in (TOKEN, FEATURES)  # (batch, time, *rest); the states (batch, *rest)
        rest = tuple(tensor.shape)[2 if timed else 1:]  # only the batch and time dims may be dynamic
        if any(d < 0 for d in rest):
            raise TrtBuildError(f"{onnx_path}: input {tensor.name} has dynamic dims {tuple(tensor.shape)} besides "
                                "batch and time")
        time = ((1,), (1,), (MAX_CHUNK,)) if timed else ((), (), ())
        profile.set_shape(tensor.name, (1, *time[0], *rest), (opt_batch, *time[1], *rest),
                          (max_batch, *time[2], *rest))
    config.add_optimization_profile(profile)
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise TrtBuildError(f"{onnx_path}: TensorRT could not build the {flag} engine (see its log above)")
    return bytes(plan)


def _pin_fp32(trt, network) -> None:
    """Run exp(dt * A), softplus, softmax and the RMSNorm reductions in FP32 (see the module docstring)."""
    layers = [network.get_layer(i) for i in range(network.num_layers)]
    producer = {layer.get_output(j).name: layer for layer in layers for j in range(layer.num_outputs)}
    pinned = []
    for layer in layers:
        kind = layer.type
        if kind in (trt.LayerType.SOFTMAX, trt.LayerType.REDUCE):
            pinned.append(layer)
        elif kind == trt.LayerType.ACTIVATION:
            layer.__class__ = trt.IActivationLayer  # the Python API's documented downcast
            if layer.type == trt.ActivationType.SOFTPLUS:
                pinned.append(layer)
        elif kind == trt.LayerType.UNARY:
            layer.__class__ = trt.IUnaryLayer
            if layer.op in (trt.UnaryOperation.SQRT, trt.UnaryOperation.RECIP):
                pinned.append(layer)
            elif layer.op == trt.UnaryOperation.EXP:
                pinned.append(layer)
                argument = producer.get(layer.get_input(0).name)  # dt * A
                if argument is not None:
                    pinned.append(argument)
        elif kind == trt.LayerType.ELEMENTWISE:
            layer.__class__ = trt.IElementWiseLayer
            if layer.op == trt.ElementWiseOperation.POW:
                pinned.append(layer)
    floats = (trt.float32, trt.float16, trt.bfloat16)
    for layer in pinned:
        layer.precision = trt.float32
        for j in range(layer.num_outputs):
            if layer.get_output(j).dtype in floats:
                layer.set_output_type(j, trt.float32)
