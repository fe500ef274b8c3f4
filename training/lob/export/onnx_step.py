"""Export ``MambaLOB.step`` as the one-tick ONNX model served by Triton (tensor names: docs/architecture.md).

Inputs ``TOKEN`` int64 (B, 1), ``FEATURES`` float32 (B, F), ``STATE_CONV_IN`` float32 (B, n_layer, D, d_conv-1),
``STATE_SSM_IN`` float32 (B, n_layer, D, d_state); outputs ``DIR_PROBS`` float32 (B, H, 3) (softmax over
down/flat/up), ``TOPK_IDS`` int64 (B, K) and ``TOPK_PROBS`` float32 (B, K) (top-k of the next-token softmax),
``STATE_CONV_OUT``, ``STATE_SSM_OUT`` (and ``MODEL_VERSION`` string (B, 1) when exported with a
``model_version``: ``lob.export.onnx_version``). Only the batch axis is dynamic; the graph has no loops (layers are
unrolled), so TensorRT can build it. Uses the dynamo exporter (torch.export + onnxscript), the default of
``torch.onnx.export``, at opset 18 (the TorchScript exporter cannot export ``rms_norm``).

The exported graph then gets two folds that keep its results to float rounding (``lean_step_graph``):
onnxruntime's CPU run of this small graph costs ~1.3 µs per node whatever the node does, so every
node taken out is served latency.
"""
from __future__ import annotations

import logging
import warnings
from contextlib import contextmanager
from pathlib import Path

import onnx
import torch
from onnxscript import ir
from onnxscript.rewriter import pattern, rewrite
from torch import Tensor, nn

from lob.models.mamba import MambaLOB
from lob.export.onnx_version import with_version_output
from lob.data.schema import atomic_write

INPUT_NAMES = ["TOKEN", "FEATURES", "STATE_CONV_IN", "STATE_SSM_IN"]
OUTPUT_NAMES = ["DIR_PROBS", "TOPK_IDS", "TOPK_PROBS", "STATE_CONV_OUT", "STATE_SSM_OUT"]


class StepGraph(nn.Module):
    """``MambaLOB.step`` with the served inputs and outputs (probabilities, not logits)."""

    def __init__(self, model: MambaLOB):
        super().__init__()
        self.model = model

    def forward(self, TOKEN: Tensor, FEATURES: Tensor, STATE_CONV_IN: Tensor,  # noqa: N803 (graph names)
                STATE_SSM_IN: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        next_logits, dir_logits, conv, ssm = self.model.step(TOKEN[:, 0], FEATURES, STATE_CONV_IN, STATE_SSM_IN)
        topk_probs, topk_ids = next_logits.softmax(-1).topk(self.model.config.topk, dim=-1)  # (B, K) each
        return dir_logits.softmax(-1), topk_ids, topk_probs, conv, ssm


def export_step_onnx(model: MambaLOB, path: Path, opset: int = 18, model_version: str | None = None) -> None:
    """Write the step model to ``path`` (one self-contained .onnx file, checked by ``onnx.checker``), with the
    constant output MODEL_VERSION = ``model_version`` when given (the served graph).

    ``opset`` >= 18: the dynamo exporter has no lower-opset implementations (asked for 17 it emits 18
    and fails to convert down), and the TorchScript exporter cannot export ``rms_norm`` at all.
    """
    if opset < 18:
        raise ValueError(f"opset {opset} is not supported: the step model exports at opset 18 or later")
    cfg = model.config
    graph = StepGraph(model).eval()
    batch = 2  # an example batch > 1, so the exporter keeps the axis symbolic rather than specialising to 1
    conv, ssm = model.allocate_inference_cache(batch)
    args = (torch.zeros(batch, 1, dtype=torch.int64), torch.zeros(batch, cfg.n_features), conv, ssm)
    batch_dim = torch.export.Dim("batch", min=1)
    dynamic_shapes = {name: {0: batch_dim} for name in INPUT_NAMES}

    def write(tmp: str) -> None:
        # the exporter logs torch-internal notices (torchvision absent, deprecations) that say nothing
        # about this model; real failures still raise
        with torch.no_grad(), warnings.catch_warnings(), _quiet("torch.onnx"):
            warnings.simplefilter("ignore", (FutureWarning, UserWarning, DeprecationWarning))
            torch.onnx.export(graph, args, tmp, input_names=INPUT_NAMES, output_names=OUTPUT_NAMES,
                              opset_version=opset, dynamo=True, verbose=False, dynamic_shapes=dynamic_shapes,
                              external_data=False)
        lean = lean_step_graph(onnx.load(tmp))
        onnx.save(lean if model_version is None else with_version_output(lean, model_version), tmp)
        onnx.checker.check_model(tmp, full_check=True)

    atomic_write(Path(path), write)


@contextmanager
def _quiet(logger_name: str):
    """Raise ``logger_name``'s level to ERROR for the duration."""
    logger = logging.getLogger(logger_name)
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def lean_step_graph(model: onnx.ModelProto) -> onnx.ModelProto:
    """``model`` with fewer nodes and the same results, standard ONNX ops only (TensorRT and the FP16
    converter see the same op types):

    - ``Add(Gemm(x, W), b)`` with a constant vector ``b`` -> ``Gemm(x, W, b)`` (``dt_proj``'s bias,
      which the model adds separately as the scan's ``delta_bias``);
    - ``Gemm(Mul(x, g), W)`` with an RMSNorm weight ``g`` and ``W`` constant -> ``Gemm(x, W * g)``
      (the norm's scale folded into the projection it feeds; one rounding moves, ~1e-7 relative).
    """
    return rewrite(model, pattern_rewrite_rules=_LEAN_RULES)


def _gemm_then_add(op, x, w, b):
    return op.Add(op.Gemm(x, w, _outputs=["y"]), b)


def _bias_is_constant_vector(context, x, w, b, y, **_) -> bool:
    gemm = y.producer()
    return b.const_value is not None and len(b.shape) == 1 and gemm.attributes.get_float("beta", 1.0) == 1.0


def _gemm_with_bias(op, x, w, b, y, **_):
    return op.Gemm(x, w, b, **dict(y.producer().attributes.items()))


def _scaled_then_gemm(op, x, g, w):
    return op.Gemm(op.Mul(x, g), w, _outputs=["y"])


def _scale_is_foldable(context, x, g, w, y, **_) -> bool:
    attrs = y.producer().attributes
    return (g.const_value is not None and w.const_value is not None and len(g.shape) == 1
            and len(y.producer().inputs) == 2 and attrs.get_int("transA", 0) == 0 and attrs.get_int("transB", 0) == 1
            and attrs.get_float("alpha", 1.0) == 1.0)


def _gemm_with_scaled_weight(op, x, g, w, y, **_):
    folded = w.const_value.numpy() * g.const_value.numpy()[None, :]  # (N, K) * (K,): column k scaled by g[k]
    return op.Gemm(x, op.initializer(ir.tensor(folded, name=f"{w.name}.scaled")), transB=1)


_LEAN_RULES = [pattern.RewriteRule(_gemm_then_add, _gemm_with_bias, _bias_is_constant_vector),
               pattern.RewriteRule(_scaled_then_gemm, _gemm_with_scaled_weight, _scale_is_foldable)]
