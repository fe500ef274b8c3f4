"""The served step graph over a chunk of T ticks, built from the exported one-tick step graph (onnx only, no torch:
`lob build-trt` runs ``loop_only`` in the GPU container).

``chunk_graph``: ``If(T == 1)``, the one-tick step as it is for a live tick, else the chunk: the model's sequence
graph when the export gives one (Mamba: its ``forward`` with the scan as an ONNX ``Scan`` over T, the projections
and heads batched over the chunk's ticks), otherwise an ONNX ``Loop`` over T around the one-tick step's nodes.
``one_tick_step``: the one-tick step back out of a served graph (what the FP16 converter converts);
``loop_only``: the Loop around it for every T (what TensorRT builds). Shapes and names: ``lob.export.onnx_step``.
"""
from __future__ import annotations

import onnx
from onnx import TensorProto, helper

from lob.contract import FEATURES, TOKEN, parse_state_name

BOOL, FLOAT, INT64 = TensorProto.BOOL, TensorProto.FLOAT, TensorProto.INT64
SINGLE, TICK, CHUNK = "single/", "tick/", "chunk/"  # name scopes of chunk_graph's branches


def chunk_graph(step: onnx.ModelProto, sequence: onnx.ModelProto | None = None) -> onnx.ModelProto:
    """The one-tick step graph ``step`` (``TOKEN`` (B, 1), ``FEATURES`` (B, F), states) as a graph over a
    chunk (``TOKEN`` (B, T), ``FEATURES`` (B, T, F), the same states): ``If(T == 1)`` whose then-branch is
    ``step``'s nodes on the chunk's one tick (a live tick: no loop, whose subgraph run costs a B = 1 call
    ~1.2x, bench/loop_cost.md) and whose else-branch runs T >= 2 ticks: ``sequence``'s nodes when given (the
    model's graph over a chunk, with the served graph's inputs and outputs; its names and weights prefixed
    ``CHUNK``; its weights are its own: the exporter lays them out for MatMul, transposed from the step's Gemm
    weights), else an ONNX ``Loop`` of T iterations over ``step``'s nodes, the states loop-carried and the
    per-tick outputs stacked and transposed to (B, T, ...). ``step``'s nodes are renamed into each branch's
    scope (``SINGLE``, ``TICK``); its initializers stay in the outer graph."""
    g = step.graph
    if any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS) for n in g.node for a in n.attribute):
        raise ValueError("chunk_graph: the step graph already has subgraphs")
    state_in = [v for v in g.input if v.name not in (TOKEN, FEATURES)]
    state_out = [v for v in g.output if parse_state_name(v.name)]
    per_tick = [v for v in g.output if not parse_state_name(v.name)]
    order = [v.name for v in g.output]
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

    # else: T >= 2 ticks, the sequence graph or the Loop over the step
    weights, opsets = list(g.initializer), {o.domain: o for o in step.opset_import}
    if sequence is None:
        many, else_out = _loop_branch(g, state_in, state_out, per_tick)
    else:
        seq = onnx.ModelProto()
        seq.CopyFrom(sequence)
        _rename(seq.graph, lambda x: CHUNK + x if x else x)  # an empty name: an omitted optional input
        missing = set(order) - {v.name.removeprefix(CHUNK) for v in seq.graph.output}
        if missing or {v.name for v in g.input} != {v.name.removeprefix(CHUNK) for v in seq.graph.input}:
            raise ValueError(f"chunk_graph: the sequence graph's inputs or outputs differ from the step's ({missing})")
        many = [*(helper.make_node("Identity", [v.name.removeprefix(CHUNK)], [v.name]) for v in seq.graph.input),
                *seq.graph.node]
        else_out = {v.name.removeprefix(CHUNK): v for v in seq.graph.output}
        read = _reads(seq.graph)  # (the exporter leaves an unused constant or two behind)
        weights += [t for t in seq.graph.initializer if t.name in read]
        for o in sequence.opset_import:
            if o.domain in opsets and opsets[o.domain].version != o.version:
                raise ValueError(f"chunk_graph: opset {o.domain or 'ai.onnx'} {o.version} in the sequence graph, "
                                 f"{opsets[o.domain].version} in the step")
            opsets.setdefault(o.domain, o)

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
    graph = helper.make_graph(nodes, g.name, inputs, [by_name[n] for n in order], weights)
    out = helper.make_model(graph, opset_imports=list(opsets.values()),
                            ir_version=max(step.ir_version, sequence.ir_version if sequence else 0))
    out.producer_name, out.producer_version = step.producer_name, step.producer_version
    return out


def _loop_branch(g: onnx.GraphProto, state_in, state_out, per_tick) -> tuple[list[onnx.NodeProto], dict]:
    """The else-branch's nodes and outputs (by output name) without a sequence graph: an ONNX ``Loop`` of T
    iterations over the step graph ``g``'s nodes; tick t's token and features gathered from the outer scope."""
    axis1 = helper.make_node("Constant", [], [f"{TICK}axis1"], value=helper.make_tensor("", INT64, [1], [1]))
    body_nodes = [helper.make_node("Gather", [TOKEN, "t"], [f"{TICK}token_t"], axis=1),  # (B,)
                  axis1, helper.make_node("Unsqueeze", [f"{TICK}token_t", f"{TICK}axis1"], [f"{TICK}{TOKEN}"]),
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
    outputs = {v.name: _renamed(v, f"{CHUNK}{v.name}") for v in state_out}
    outputs.update({v.name: helper.make_tensor_value_info(f"{CHUNK}{v.name}", v.type.tensor_type.elem_type,
                                                          ["batch", "time", *_dims(v)[1:]]) for v in per_tick})
    return many, outputs


def one_tick_step(chunk: onnx.ModelProto) -> onnx.ModelProto:
    """The one-tick step graph a ``chunk_graph`` output was built from: its ``If``'s T == 1 branch without the
    time axis's Squeeze and Unsqueezes, names unscoped, with the weights it reads (no MODEL_VERSION)."""
    branch = next(n for n in chunk.graph.node if n.op_type == "If")
    then = next(a.g for a in branch.attribute if a.name == "then_branch")
    wrapper = {f"{SINGLE}axis1", f"{SINGLE}{FEATURES}"}
    nodes = []
    for node in then.node:
        if set(node.output) & wrapper or (node.op_type == "Unsqueeze" and node.output[0].endswith("/t")):
            continue
        copy = onnx.NodeProto()
        copy.CopyFrom(node)
        copy.name = node.name.removeprefix(SINGLE)
        copy.input[:] = [x.removeprefix(SINGLE) for x in node.input]
        copy.output[:] = [x.removeprefix(SINGLE) for x in node.output]
        nodes.append(copy)
    served = {v.name: v for v in chunk.graph.output}
    outputs = []
    for v in then.output:
        name = v.name.removeprefix(SINGLE).removesuffix("/t")
        dims = _dims(served[name])
        outputs.append(_renamed(served[name], name) if parse_state_name(name) else helper.make_tensor_value_info(
            name, served[name].type.tensor_type.elem_type, [dims[0], *dims[2:]]))
    features = _dims(_value(chunk.graph.input, FEATURES))
    inputs = [helper.make_tensor_value_info(TOKEN, INT64, ["batch", 1]),
              helper.make_tensor_value_info(FEATURES, FLOAT, ["batch", features[2]]),
              *(v for v in chunk.graph.input if v.name not in (TOKEN, FEATURES))]
    read = {x for n in nodes for x in n.input}
    graph = helper.make_graph(nodes, chunk.graph.name, inputs, outputs,
                              [t for t in chunk.graph.initializer if t.name in read])
    out = helper.make_model(graph, opset_imports=list(chunk.opset_import), ir_version=chunk.ir_version)
    out.producer_name, out.producer_version = chunk.producer_name, chunk.producer_version
    return out


def loop_only(chunk: onnx.ModelProto) -> onnx.ModelProto:
    """The Loop over ``chunk``'s one-tick step for every T (no ``If``, no sequence graph, no MODEL_VERSION):
    the graph TensorRT builds."""
    out = chunk_graph(one_tick_step(chunk))
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


def _rename(g: onnx.GraphProto, new_name) -> None:
    """Rename every value, node and weight of ``g`` to ``new_name(name)``, in its subgraphs too, in place.
    (onnx.compose's add_prefix leaves a subgraph's reads of the outer graph's weights as they were.)"""
    for v in (*g.input, *g.output, *g.value_info, *g.initializer):
        v.name = new_name(v.name)
    for node in g.node:
        node.name = new_name(node.name)
        node.input[:] = [new_name(x) for x in node.input]
        node.output[:] = [new_name(x) for x in node.output]
        for a in node.attribute:
            for sub in ([a.g] if a.HasField("g") else []) + list(a.graphs):
                _rename(sub, new_name)


def _reads(g: onnx.GraphProto) -> set[str]:
    """Every value name a node of ``g`` or of its subgraphs reads."""
    names = set()
    for node in g.node:
        names.update(node.input)
        for a in node.attribute:
            for sub in ([a.g] if a.HasField("g") else []) + list(a.graphs):
                names |= _reads(sub)
    return names


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
