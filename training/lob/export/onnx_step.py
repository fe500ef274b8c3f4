"""Export a model's ``step`` as the ONNX model served by Triton: a chunk of T >= 1 consecutive ticks of each
sequence per call (tensor names: docs/architecture.md, the time axis: docs/serving.md).

Inputs ``TOKEN`` int64 (B, T), ``FEATURES`` float32 (B, T, F) and one ``STATE_<NAME>_IN`` per state tensor of the
architecture (``model.state_names``: Mamba CONV, SSM; Transformer K, V, POS; hybrid all five); outputs, per
tick: ``DIR_PROBS`` float32 (B, T, H, 3) (softmax over down/flat/up), ``TOPK_IDS`` int64 (B, T, K) and
``TOPK_PROBS`` float32 (B, T, K) (top-k of the next-token softmax), and ``STATE_<NAME>_OUT`` for each state
after the chunk's last tick (and ``MODEL_VERSION`` string (B, T) when exported with a ``model_version``:
``lob.export.onnx_version``). Input and output state names sort in the same order, as Triton's implicit state
pairs them (server issue #8586). Batch and time axes are dynamic (and, for an attention model exported with
``cache="full"``, the K/V length axis).

The one-tick step (layers unrolled, no loops) is exported with the dynamo exporter (torch.export +
onnxscript), the default of ``torch.onnx.export``, at opset 18 (the TorchScript exporter cannot export
``rms_norm``); ``lob.export.onnx_chunk.chunk_graph`` then serves it, unchanged, over T: a chunk of one tick (a
live tick) runs it as it is (``If(T == 1)`` chooses). A longer chunk runs the model's ``forward`` where the
architecture ``serves_forward`` (Mamba: exported over a dynamic T >= 2, its scan one ONNX ``Scan`` of the
one-tick state update, everything else batched over the chunk's ticks: 1.8-3.7x cheaper per tick than a loop
over the whole step at 1-8 sequences, bench/loop_cost.md), else the step's nodes as the body of an ONNX ``Loop`` over
T (Transformer ring and hybrid: tick t of a chunk runs exactly the nodes one single-tick call runs, a chunk
longer than the ring included).

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

from lob.contract import DIR_PROBS, FEATURES, TOKEN, TOPK_IDS, TOPK_PROBS, state_names
from lob.export.onnx_chunk import chunk_graph
from lob.export.onnx_version import with_version_output
from lob.io import atomic_write
from lob.models.base import TickModel
from lob.models.ops import kernel_backend



def io_names(model: TickModel) -> tuple[list[str], list[str]]:
    """(graph input names, graph output names) of ``model``'s step graph; the states in the model's order."""
    states = [state_names(name) for name in model.state_names]  # (STATE_<NAME>_IN, STATE_<NAME>_OUT) each
    return [TOKEN, FEATURES, *(i for i, _ in states)], [DIR_PROBS, TOPK_IDS, TOPK_PROBS, *(o for _, o in states)]


class StepGraph(nn.Module):
    """``model.step`` (one tick: TOKEN (B, 1), FEATURES (B, F)) or, with ``chunk``, ``model.forward`` (TOKEN
    (B, T), FEATURES (B, T, F)) with the served inputs and outputs (probabilities, not logits)."""

    def __init__(self, model: TickModel, cache: str | None = None, chunk: bool = False):
        super().__init__()
        self.model, self.chunk = model, chunk
        self.kwargs = {} if cache is None else {"cache": cache}

    def forward(self, TOKEN: Tensor, FEATURES: Tensor, STATES: tuple[Tensor, ...]):  # noqa: N803 (graph names)
        if self.chunk:
            next_logits, dir_logits, *states = self.model(TOKEN, FEATURES, *STATES)
        else:
            next_logits, dir_logits, *states = self.model.step(TOKEN[:, 0], FEATURES, *STATES, **self.kwargs)
        topk_probs, topk_ids = next_logits.softmax(-1).topk(self.model.config.topk, dim=-1)  # (..., K) each
        return dir_logits.softmax(-1), topk_ids, topk_probs, *states


def export_step_onnx(model: TickModel, path: Path, opset: int = 18, model_version: str | None = None,
                     cache: str | None = None) -> None:
    """Write the step model to ``path`` (one self-contained .onnx file, checked by ``onnx.checker``), with the
    constant output MODEL_VERSION = ``model_version`` when given (the served graph).

    ``cache``: for an attention model, "ring" (default: the served fixed-size state) or "full" (K/V grow;
    their length axis is dynamic). ``opset`` >= 18: the dynamo exporter has no lower-opset implementations
    (asked for 17 it emits 18 and fails to convert down), and the TorchScript exporter cannot export
    ``rms_norm`` at all.
    """
    if opset < 18:
        raise ValueError(f"opset {opset} is not supported: the step model exports at opset 18 or later")
    cfg = model.config
    graph = StepGraph(model, cache).eval()
    batch = 2  # an example batch > 1, so the exporter keeps the axis symbolic rather than specialising to 1
    states = model.allocate_inference_cache(batch, **graph.kwargs)
    batch_dim = torch.export.Dim("batch", min=1)
    state_shapes = []
    for name, s in zip(model.state_names, states):
        shape = {0: batch_dim}
        if cache == "full" and name in ("K", "V"):  # example length 3 (not 0/1, which the exporter specialises)
            shape[3] = torch.export.Dim("past", min=0)
        state_shapes.append(shape)
    if cache == "full":
        states = tuple(s.new_zeros(*s.shape[:3], 3, s.shape[4]) if n in ("K", "V") else s + 3
                       for n, s in zip(model.state_names, states))
    args = (torch.zeros(batch, 1, dtype=torch.int64), torch.zeros(batch, cfg.n_features), tuple(states))
    dynamic_shapes = ({0: batch_dim}, {0: batch_dim}, tuple(state_shapes))
    input_names, output_names = io_names(model)

    def export(module: nn.Module, example: tuple, shapes: tuple, tmp: str) -> onnx.ModelProto:
        # the exporter logs torch-internal notices (torchvision absent, deprecations) that say nothing
        # about this model; real failures still raise
        with torch.no_grad(), warnings.catch_warnings(), _quiet("torch.onnx"), kernel_backend("stepwise"):
            warnings.simplefilter("ignore", (FutureWarning, UserWarning, DeprecationWarning))
            torch.onnx.export(module, example, tmp, input_names=input_names, output_names=output_names,
                              opset_version=opset, dynamo=True, verbose=False, dynamic_shapes=shapes,
                              external_data=False)
        return onnx.load(tmp)

    def write(tmp: str) -> None:
        sequence = None
        if model.serves_forward and cache is None:  # an example chunk of 3 ticks; T >= 2 (T = 1 is the step's)
            time_dim = torch.export.Dim("time", min=2)
            example = (torch.zeros(batch, 3, dtype=torch.int64), torch.zeros(batch, 3, cfg.n_features), tuple(states))
            sequence = export(StepGraph(model, chunk=True).eval(), example,
                              ({0: batch_dim, 1: time_dim}, {0: batch_dim, 1: time_dim}, tuple(state_shapes)), tmp)
        chunked = chunk_graph(lean_step_graph(export(graph, args, dynamic_shapes, tmp)), sequence)
        onnx.save(chunked if model_version is None else with_version_output(chunked, model_version), tmp)
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
