"""From a run to a Triton model repository: the ONNX step model (`onnx_step`), served over a chunk of T
ticks (`onnx_chunk`), with MODEL_VERSION as a graph constant (`onnx_version`), its FP16 variant (`onnx_fp16`),
TensorRT engines (`trt`), writing the repository (`repository`) and its static checks (`validate`).

May import every package before it; never serving. `validate`, `trt`, `onnx_fp16` and `onnx_chunk` import no torch
(the GPU container runs them without it); `onnx_step` and `repository` need the training extra.
"""
