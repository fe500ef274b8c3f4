"""MODEL_VERSION as a constant of an ONNX graph: served with no extra model and no Python per tick.

``with_version_output`` adds the output ``MODEL_VERSION`` string (B, T), one per tick, to the step graph
(``Expand`` of a string constant to the (B, T) of ``TOKEN``), so Triton's onnxruntime backend returns it beside
the predictions; ``version_graph`` is a graph with nothing else in it (``TOPK_IDS`` int64 (B, T, K) in, the
engine's output, so the TensorRT ensembles run it after the engine: one step at a time; ``MODEL_VERSION`` out),
served as ``lob_model_version`` beside TensorRT engines, which cannot emit strings;
``without_version_output`` takes the output out again for those engines' build; ``version_of`` reads it.
"""
from __future__ import annotations

import onnx
from onnx import TensorProto, helper

from lob.contract import MODEL_VERSION, TOKEN, TOPK_IDS, VERSION_MODEL


def _version_nodes(version: str, like: str) -> list[onnx.NodeProto]:
    """Nodes computing MODEL_VERSION = ``version`` broadcast to (B, T), the first two dims of tensor ``like``."""
    constant = helper.make_tensor("model_version_value", TensorProto.STRING, [1, 1], [version.encode()])
    return [helper.make_node("Constant", [], ["model_version_value"], name="model_version_value", value=constant),
            helper.make_node("Shape", [like], ["model_version_shape"], name="model_version_shape", start=0, end=2),
            helper.make_node("Expand", ["model_version_value", "model_version_shape"], [MODEL_VERSION],
                             name="model_version")]


def with_version_output(model: onnx.ModelProto, version: str, like: str = TOKEN) -> onnx.ModelProto:
    """``model`` plus output MODEL_VERSION string (B, T) = ``version`` in every tick (``like`` is (B, T, ...))."""
    out = onnx.ModelProto()
    out.CopyFrom(without_version_output(model))
    out.graph.node.extend(_version_nodes(version, like))
    out.graph.output.append(helper.make_tensor_value_info(MODEL_VERSION, TensorProto.STRING, ["batch", "time"]))
    return out


def without_version_output(model: onnx.ModelProto) -> onnx.ModelProto:
    """``model`` without the MODEL_VERSION output and its nodes (unchanged if it has none)."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    keep = [o for o in out.graph.output if o.name != MODEL_VERSION]
    del out.graph.output[:]
    out.graph.output.extend(keep)
    nodes = [n for n in out.graph.node if not n.name.startswith("model_version")]
    del out.graph.node[:]
    out.graph.node.extend(nodes)
    return out


def version_of(model: onnx.ModelProto) -> str | None:
    """The MODEL_VERSION constant ``with_version_output`` put in ``model``, or None if it has none."""
    for node in model.graph.node:
        if node.name == "model_version_value":
            return node.attribute[0].t.string_data[0].decode()
    return None


def version_graph(version: str, opset: int = 18) -> onnx.ModelProto:
    """A model whose only output is MODEL_VERSION string (B, T) = ``version``, sized by input TOPK_IDS int64 (B, T, K)."""
    graph = helper.make_graph(_version_nodes(version, TOPK_IDS), VERSION_MODEL,
                              [helper.make_tensor_value_info(TOPK_IDS, TensorProto.INT64, ["batch", "time", "k"])],
                              [helper.make_tensor_value_info(MODEL_VERSION, TensorProto.STRING, ["batch", "time"])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    onnx.checker.check_model(model, full_check=True)
    return model
