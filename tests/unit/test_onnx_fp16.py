"""FP16 step model: runs in onnxruntime (CPU), tracks the FP32 model over a stream of ticks, same I/O contract."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import numpy_helper

from lob.export.onnx_chunk import one_tick_step
from lob.export.onnx_fp16 import convert_fp16

N_FEATURES, VOCAB = 12, 64


@pytest.fixture(scope="module")
def fp16_onnx(step_onnx: Path) -> Path:
    return convert_fp16(step_onnx, step_onnx.with_name("model_fp16.onnx"))


def _session(path: Path) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


@pytest.mark.parametrize("chunk", [1, 30])  # live ticks (the graph's T == 1 branch) and chunks (its Loop)
def test_fp16_tracks_fp32_over_a_stream(step_onnx, fp16_onnx, chunk):
    fp32, fp16 = _session(step_onnx), _session(fp16_onnx)
    shapes = {i.name: i.shape for i in fp32.get_inputs()}
    batch, rng = 8, np.random.default_rng(0)
    states = [{name: np.zeros((batch, *shapes[name][1:]), np.float32) for name in ("STATE_CONV_IN", "STATE_SSM_IN")}
              for _ in range(2)]
    for tick in range(0, 300, chunk):
        feed = {"TOKEN": rng.integers(0, VOCAB, (batch, chunk)),  # (B, T)
                "FEATURES": rng.standard_normal((batch, chunk, N_FEATURES)).astype(np.float32)}  # (B, T, F)
        (ref, got) = [dict(zip([o.name for o in s.get_outputs()], s.run(None, {**feed, **st})))
                      for s, st in ((fp32, states[0]), (fp16, states[1]))]
        for out in ("DIR_PROBS", "TOPK_PROBS"):
            np.testing.assert_allclose(got[out], ref[out], rtol=5e-3, atol=1e-2, err_msg=f"{out} in ticks {tick}..")
        for st, res in zip(states, (ref, got)):  # each model carries its own state, as Triton would
            st.update(STATE_CONV_IN=res["STATE_CONV_OUT"], STATE_SSM_IN=res["STATE_SSM_OUT"])


def test_fp16_keeps_the_fp32_interface_and_halves_the_weights(step_onnx, fp16_onnx):
    def io(path):
        graph = onnx.load(str(path)).graph
        return [(v.name, v.type.tensor_type.elem_type) for v in [*graph.input, *graph.output]]

    def weight_bytes(path):
        return sum(numpy_helper.to_array(t).nbytes for t in onnx.load(str(path)).graph.initializer)

    assert io(fp16_onnx) == io(step_onnx)  # so mamba_lob_onnx's config serves either file
    fp32_step = step_onnx.with_name("one_tick_step.onnx")  # the weights the FP16 graph converts (no sequence graph)
    onnx.save(one_tick_step(onnx.load(str(step_onnx))), fp32_step)
    assert weight_bytes(fp16_onnx) <= 0.55 * weight_bytes(fp32_step)
