"""No-op ONNX step model for the floors of the onnxruntime topologies: the step model's inputs, outputs and
implicit states, and nothing else (zeros out, each state passed through unchanged, MODEL_VERSION "noop")."""
from __future__ import annotations

import onnx
from onnx import TensorProto, helper

from lob.contract import MODEL_VERSION, TOKEN, parse_state_name, state_names
from lob.export.onnx_version import with_version_output


def noop_step_graph(step: onnx.ModelProto, version: str = "noop") -> onnx.ModelProto:
    """A graph with ``step``'s I/O (MODEL_VERSION included) doing no work: (B, ...) zeros, states identity."""
    inputs = [i for i in step.graph.input if i.name not in {t.name for t in step.graph.initializer}]
    outputs = [o for o in step.graph.output if o.name != MODEL_VERSION]
    nodes = [helper.make_node("Shape", [TOKEN], ["batch"], start=0, end=1)]  # (1,) = [B]
    for out in outputs:
        state = parse_state_name(out.name)  # (NAME, "OUT") for a state output
        if state is not None:
            nodes.append(helper.make_node("Identity", [state_names(state[0])[0]], [out.name]))
            continue
        rest = [d.dim_value for d in out.type.tensor_type.shape.dim[1:]]
        elem = out.type.tensor_type.elem_type
        nodes += [helper.make_node("Constant", [], [f"{out.name}_rest"],
                                   value=helper.make_tensor(f"{out.name}_rest", TensorProto.INT64, [len(rest)], rest)),
                  helper.make_node("Concat", ["batch", f"{out.name}_rest"], [f"{out.name}_shape"], axis=0),
                  helper.make_node("ConstantOfShape", [f"{out.name}_shape"], [out.name],
                                   value=helper.make_tensor("zero", elem, [1], [0]))]
    graph = helper.make_graph(nodes, "noop_step", inputs, outputs)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model = with_version_output(model, version)
    onnx.checker.check_model(model, full_check=True)
    return model
