"""FP16 variant of the exported step model (``mamba_lob_onnx/1/model_fp16.onnx``, written by `lob export`).

`convert_fp16` stores weights and runs matmuls and elementwise work in FP16 (onnxconverter-common's
converter), and keeps in FP32 the parts whose rounding the model cannot absorb:

- ``Exp`` and the ``Mul`` feeding it: the discretisation exp(dt * A); an FP16 product dt * A of a few
  units is off by ~1e-3 relative, which exp turns into the same relative error of the state decay,
  compounded over every tick of a sequence;
- ``Softplus`` (dt = softplus(dt_proj(x) + bias)): the exporter's threshold branch (``Greater``,
  ``Where``) follows it into FP32 through the converter's casts;
- ``Softmax``: the direction and next-token probabilities the service returns;
- the RMSNorm reductions ``Pow``, ``ReduceMean``, ``Sqrt``, ``Reciprocal``: a mean of squares over
  d_model values overflows or loses digits in FP16;
- onnxconverter-common's own block list (``TopK`` among it).

The same converter serves the attention graphs (Transformer, hybrid): their masked scores are -inf (the
ring's unwritten slots) or ``score + finfo(float32).min``, which FP16 stores as -10000 (the converter's
clamp, warned about at export); exp(-10000 - max) is 0 in the FP32 softmax, so masked slots stay out while
real scores stay far above -10000. Their RoPE table (cos/sin of angles < 2W) is stored in FP16.

Graph inputs and outputs stay FP32 (``keep_io_types``), so the Triton config of the FP32 model serves the
FP16 one unchanged: the conv and ssm states cross the model boundary in FP32 and are rounded to FP16
inside each step.
"""
from __future__ import annotations

from pathlib import Path

from lob.contract import STEP_MODEL
from lob.io import atomic_write

FP32_OPS = ("Exp", "Softplus", "Softmax", "Pow", "ReduceMean", "Sqrt", "Reciprocal")
SOURCE = Path(STEP_MODEL) / "1" / "model.onnx"  # written by `lob export`


def convert_fp16(src_onnx: Path, dst_onnx: Path) -> Path:
    """Write the FP16 variant of ONNX model `src_onnx` to `dst_onnx` (atomically); returns `dst_onnx`.

    `src_onnx` is a served graph (``lob.export.onnx_chunk.chunk_graph``): its one-tick step is converted as a graph
    of its own (FP32 interface) and served over T again by ``chunk_graph``, with the ``Loop`` for a chunk (the
    GPU's graph; a sequence graph's ``Scan`` is not converted), and `src_onnx`'s MODEL_VERSION."""
    import onnx

    from lob.export.onnx_chunk import chunk_graph, one_tick_step
    from lob.export.onnx_version import version_of, with_version_output

    src = onnx.load(str(src_onnx))
    model, version = chunk_graph(_convert(one_tick_step(src))), version_of(src)
    model = model if version is None else with_version_output(model, version)
    onnx.checker.check_model(model)
    atomic_write(Path(dst_onnx), lambda tmp: onnx.save(model, tmp))
    return Path(dst_onnx)


def _convert(step):
    """The one-tick step model ``step`` in FP16 (the module docstring's FP32 parts kept), FP32 interface."""
    import onnx
    from onnxconverter_common import float16

    for i, node in enumerate(step.graph.node):  # the node block list matches by name: name every node
        node.name = node.name or f"{node.op_type}_{i}"
    producer = {out: node for node in step.graph.node for out in node.output}
    exp_args = [producer[n.input[0]].name for n in step.graph.node
                if n.op_type == "Exp" and n.input[0] in producer and producer[n.input[0]].op_type == "Mul"]
    fp32_outputs = [o.name for o in step.graph.output if o.type.tensor_type.elem_type == onnx.TensorProto.FLOAT]
    fp16 = float16.convert_float_to_float16(step, keep_io_types=True, node_block_list=exp_args,
                                            op_block_list=[*float16.DEFAULT_OP_BLOCK_LIST, *FP32_OPS])
    _restore_fp32_outputs(fp16, fp32_outputs)
    return fp16


def _restore_fp32_outputs(model, names: list[str]) -> None:
    """Make graph outputs `names` FP32 again where the converter left them FP16.

    onnxconverter-common 1.16 ignores ``keep_io_types`` for an output whose producer is blocked (the
    softmax of DIR_PROBS and TOPK_PROBS): it casts that FP32 result to FP16 and declares the output FP16.
    That Cast is turned into a cast to FP32, so the softmax's FP32 values pass unrounded.
    """
    import onnx

    producer = {out: node for node in model.graph.node for out in node.output}
    for output in model.graph.output:
        if output.name not in names or output.type.tensor_type.elem_type != onnx.TensorProto.FLOAT16:
            continue
        node = producer[output.name]
        if node.op_type != "Cast":
            raise ValueError(f"FP16 conversion left output {output.name} FP16 behind a {node.op_type} node")
        next(a for a in node.attribute if a.name == "to").i = onnx.TensorProto.FLOAT
        output.type.tensor_type.elem_type = onnx.TensorProto.FLOAT
