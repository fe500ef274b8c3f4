"""The served step graph over a chunk of T ticks, built from the exported one-tick step graph (onnx only, no torch:
`lob build-trt` runs ``loop_only`` in the GPU container).

``chunk_graph``: ``If(T == 1)``, the one-tick step as it is for a live tick, else an ONNX ``Loop`` over T around the
same nodes; ``step_subgraphs``: its two copies of the step (what the FP16 converter converts); ``loop_only``: the
Loop for every T (what TensorRT builds). Shapes and names: ``lob.export.onnx_step``.
"""
from __future__ import annotations

import onnx
from onnx import TensorProto, helper

from lob.contract import FEATURES, TOKEN, parse_state_name

BOOL, FLOAT, INT64 = TensorProto.BOOL, TensorProto.FLOAT, TensorProto.INT64
SINGLE, TICK, CHUNK = "single/", "tick/", "chunk/"  # name scopes of chunk_graph's branches


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
