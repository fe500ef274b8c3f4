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
``rms_norm``); ``chunk_graph`` then serves it, unchanged, over T: a chunk of one tick (a live tick) runs it as it
is, a longer one runs it as the body of an ONNX ``Loop`` over T (``If(T == 1)`` chooses), so tick t of a chunk
runs exactly the nodes one single-tick call runs, for every architecture and any T (a chunk longer than an
attention model's ring included).

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
from onnx import TensorProto, helper
from onnxscript import ir
from onnxscript.rewriter import pattern, rewrite
from torch import Tensor, nn

from lob.contract import DIR_PROBS, FEATURES, TOKEN, TOPK_IDS, TOPK_PROBS, parse_state_name, state_names
from lob.export.onnx_version import with_version_output
from lob.io import atomic_write
from lob.models.base import TickModel

BOOL, FLOAT, INT64 = TensorProto.BOOL, TensorProto.FLOAT, TensorProto.INT64
SINGLE, TICK, CHUNK = "single/", "tick/", "chunk/"  # name scopes of chunk_graph's branches


def io_names(model: TickModel) -> tuple[list[str], list[str]]:
    """(graph input names, graph output names) of ``model``'s step graph; the states in the model's order."""
    states = [state_names(name) for name in model.state_names]  # (STATE_<NAME>_IN, STATE_<NAME>_OUT) each
    return [TOKEN, FEATURES, *(i for i, _ in states)], [DIR_PROBS, TOPK_IDS, TOPK_PROBS, *(o for _, o in states)]


class StepGraph(nn.Module):
    """``model.step`` with the served inputs and outputs (probabilities, not logits)."""

    def __init__(self, model: TickModel, cache: str | None = None):
        super().__init__()
        self.model = model
        self.kwargs = {} if cache is None else {"cache": cache}

    def forward(self, TOKEN: Tensor, FEATURES: Tensor, STATES: tuple[Tensor, ...]):  # noqa: N803 (graph names)
        next_logits, dir_logits, *states = self.model.step(TOKEN[:, 0], FEATURES, *STATES, **self.kwargs)
        topk_probs, topk_ids = next_logits.softmax(-1).topk(self.model.config.topk, dim=-1)  # (B, K) each
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

    def write(tmp: str) -> None:
        # the exporter logs torch-internal notices (torchvision absent, deprecations) that say nothing
        # about this model; real failures still raise
        with torch.no_grad(), warnings.catch_warnings(), _quiet("torch.onnx"):
            warnings.simplefilter("ignore", (FutureWarning, UserWarning, DeprecationWarning))
            torch.onnx.export(graph, args, tmp, input_names=input_names, output_names=output_names,
                              opset_version=opset, dynamo=True, verbose=False, dynamic_shapes=dynamic_shapes,
                              external_data=False)
        chunked = chunk_graph(lean_step_graph(onnx.load(tmp)))
        onnx.save(chunked if model_version is None else with_version_output(chunked, model_version), tmp)
        onnx.checker.check_model(tmp, full_check=True)

    atomic_write(Path(path), write)


def chunk_graph(step: onnx.ModelProto) -> onnx.ModelProto:
    """The one-tick step graph ``step`` (``TOKEN`` (B, 1), ``FEATURES`` (B, F), states) as a graph over a
    chunk (``TOKEN`` (B, T), ``FEATURES`` (B, T, F), the same states): ``If(T == 1)`` whose then-branch is
    ``step``'s nodes on the chunk's one tick (a live tick: no loop, whose subgraph run costs a B = 1 call
    ~1.2x, bench/loop_cost.md) and whose else-branch is an ONNX ``Loop`` of T iterations over the same nodes,
    the states loop-carried and the per-tick outputs stacked and transposed to (B, T, ...). Each branch's
    nodes are renamed into its scope (``SINGLE``, ``TICK``); ``step``'s initializers stay in the outer graph."""
    g = step.graph
    if any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS) for n in g.node for a in n.attribute):
        raise ValueError("chunk_graph: the step graph already has subgraphs")
    state_in = [v for v in g.input if v.name not in (TOKEN, FEATURES)]
    state_out = [v for v in g.output if parse_state_name(v.name)]
    per_tick = [v for v in g.output if not parse_state_name(v.name)]
    axis1 = lambda scope: helper.make_node("Constant", [], [f"{scope}axis1"],  # noqa: E731
                                           value=helper.make_tensor("", INT64, [1], [1]))
    chunked = lambda v, name: helper.make_tensor_value_info(  # noqa: E731 (B, T, ...) of a per-tick output
        name, v.type.tensor_type.elem_type, ["batch", "time", *_dims(v)[1:]])

    # then: T == 1, the step on (B, 1) tokens and (B, F) features read from the outer scope
    single = _scoped(g, SINGLE, {TOKEN: TOKEN, FEATURES: f"{SINGLE}{FEATURES}", **{v.name: v.name for v in state_in}})
    single = [axis1(SINGLE), helper.make_node("Squeeze", [FEATURES, f"{SINGLE}axis1"], [f"{SINGLE}{FEATURES}"]),
              *single, *(helper.make_node("Unsqueeze", [f"{SINGLE}{v.name}", f"{SINGLE}axis1"], [f"{SINGLE}{v.name}/t"])
                         for v in per_tick)]
    then_out = {v.name: _renamed(v, f"{SINGLE}{v.name}") for v in state_out}
    then_out.update({v.name: chunked(v, f"{SINGLE}{v.name}/t") for v in per_tick})

    # else: T ticks, one Loop iteration each; tick t's token and features gathered from the outer scope
    body_nodes = [helper.make_node("Gather", [TOKEN, "t"], [f"{TICK}token_t"], axis=1),  # (B,)
                  axis1(TICK), helper.make_node("Unsqueeze", [f"{TICK}token_t", f"{TICK}axis1"], [f"{TICK}{TOKEN}"]),
                  helper.make_node("Gather", [FEATURES, "t"], [f"{TICK}{FEATURES}"], axis=1),  # (B, F)
                  *_scoped(g, TICK, {}), helper.make_node("Identity", ["cond"], [f"{TICK}cond_out"])]
    body = helper.make_graph(
        body_nodes, "tick",
        [helper.make_tensor_value_info("t", INT64, []), helper.make_tensor_value_info("cond", BOOL, []),
         *(_renamed(v, f"{TICK}{v.name}") for v in state_in)],
        [helper.make_tensor_value_info(f"{TICK}cond_out", BOOL, []),
         *(_renamed(v, f"{TICK}{v.name}") for v in state_out), *(_renamed(v, f"{TICK}{v.name}") for v in per_tick)])
    stacked = [f"{CHUNK}{v.name}_by_tick" for v in per_tick]  # (T, B, ...)
    many = [helper.make_node("Constant", [], [f"{CHUNK}scalar"], value=helper.make_tensor("", INT64, [0], [])),
            helper.make_node("Reshape", ["chunk_len_1", f"{CHUNK}scalar"], [f"{CHUNK}len"]),
            helper.make_node("Constant", [], [f"{CHUNK}true"], value=helper.make_tensor("", BOOL, [], [True])),
            helper.make_node("Loop", [f"{CHUNK}len", f"{CHUNK}true", *(v.name for v in state_in)],
                             [*(f"{CHUNK}{v.name}" for v in state_out), *stacked], name="ticks", body=body)]
    for v, s in zip(per_tick, stacked):
        rank = len(v.type.tensor_type.shape.dim) + 1
        many.append(helper.make_node("Transpose", [s], [f"{CHUNK}{v.name}"], perm=[1, 0, *range(2, rank)]))
    else_out = {v.name: _renamed(v, f"{CHUNK}{v.name}") for v in state_out}
    else_out.update({v.name: chunked(v, f"{CHUNK}{v.name}") for v in per_tick})

    order = [v.name for v in g.output]
    nodes = [helper.make_node("Shape", [TOKEN], ["chunk_len_1"], start=1, end=2),  # (1,): T
             helper.make_node("Constant", [], ["one_tick"], value=helper.make_tensor("", INT64, [1], [1])),
             helper.make_node("Equal", ["chunk_len_1", "one_tick"], ["is_one_tick"]),
             helper.make_node("If", ["is_one_tick"], order, name="one_tick_or_chunk",
                              then_branch=helper.make_graph(single, "single", [], [then_out[n] for n in order]),
                              else_branch=helper.make_graph(many, "chunk", [], [else_out[n] for n in order]))]
    inputs = [helper.make_tensor_value_info(TOKEN, INT64, ["batch", "time"]),
              helper.make_tensor_value_info(FEATURES, FLOAT, ["batch", "time", _dims(_value(g.input, FEATURES))[1]]),
              *state_in]
    by_name = {v.name: v for v in [*(chunked(v, v.name) for v in per_tick), *state_out]}
    graph = helper.make_graph(nodes, g.name, inputs, [by_name[n] for n in order], list(g.initializer))
    out = helper.make_model(graph, opset_imports=list(step.opset_import), ir_version=step.ir_version)
    out.producer_name, out.producer_version = step.producer_name, step.producer_version
    return out



def step_subgraphs(chunk: onnx.ModelProto) -> list[onnx.GraphProto]:
    """The two copies of the one-tick step in ``chunk_graph``'s output: the T == 1 branch and the Loop's body."""
    branch = next(n for n in chunk.graph.node if n.op_type == "If")
    then, other = (next(a.g for a in branch.attribute if a.name == k) for k in ("then_branch", "else_branch"))
    return [then, next(a.g for n in other.node if n.op_type == "Loop" for a in n.attribute if a.name == "body")]


def loop_only(chunk: onnx.ModelProto) -> onnx.ModelProto:
    """``chunk`` with the ``If`` replaced by its else-branch (the Loop for every T): the graph TensorRT builds."""
    out = onnx.ModelProto()
    out.CopyFrom(chunk)
    nodes = []
    for node in out.graph.node:
        if node.op_type != "If":
            nodes.append(node)
            continue
        other = next(a.g for a in node.attribute if a.name == "else_branch")
        rename = {v.name: outer for v, outer in zip(other.output, node.output)}
        for inner in other.node:
            inner.output[:] = [rename.get(x, x) for x in inner.output]
            nodes.append(inner)
    del out.graph.node[:]
    out.graph.node.extend(nodes)
    return out


def _scoped(g: onnx.GraphProto, scope: str, names: dict[str, str]) -> list[onnx.NodeProto]:
    """Copies of ``g``'s nodes with every value renamed ``scope`` + name, except the weights (outer scope) and
    ``names`` (mapped as given)."""
    weights = {t.name for t in g.initializer}
    rename = lambda x: names.get(x, x if not x or x in weights else f"{scope}{x}")  # noqa: E731
    nodes = []
    for i, node in enumerate(g.node):
        copy = onnx.NodeProto()
        copy.CopyFrom(node)
        copy.name = f"{scope}{node.name or f'{node.op_type}_{i}'}"
        copy.input[:] = [rename(x) for x in node.input]
        copy.output[:] = [rename(x) for x in node.output]
        nodes.append(copy)
    return nodes


def _renamed(v: onnx.ValueInfoProto, name: str) -> onnx.ValueInfoProto:
    out = onnx.ValueInfoProto()
    out.CopyFrom(v)
    out.name = name
    return out


def _value(values, name: str) -> onnx.ValueInfoProto:
    return next(v for v in values if v.name == name)


def _dims(v: onnx.ValueInfoProto) -> list:
    """Dims of a value: ints where fixed, names (str) where symbolic."""
    return [d.dim_value if d.HasField("dim_value") else d.dim_param for d in v.type.tensor_type.shape.dim]


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
