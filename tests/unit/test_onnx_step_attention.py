"""The exported Transformer / hybrid step model (ring state) run tick by tick in onnxruntime over > 2W ticks
reproduces the PyTorch sliding-window forward; the full-KV-cache export runs at a growing length."""
import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from lob.export.onnx_chunk import one_tick_step
from lob.export.onnx_step import export_step_onnx, io_names
from lob.models.registry import arch, config_from_preset

from test_onnx_chunk import assert_chunks_equal_single_ticks

VOCAB, N_FEATURES, WINDOW = 1000, 12, 24


@pytest.fixture(scope="module", params=["transformer", "hybrid"])
def exported(request, tmp_path_factory):
    torch.manual_seed(0)
    name = request.param
    model = arch(name).model(config_from_preset(name, "tiny", VOCAB, N_FEATURES, window=WINDOW)).eval()
    with torch.no_grad():  # sharpen the untrained heads and attention, far from uniform
        model.embedding.weight *= 30.0
        model.dir_head.weight *= 10.0
        for layer in model.layers:
            if hasattr(layer, "attn"):
                layer.attn.qkv_proj.weight *= 8.0
    path = tmp_path_factory.mktemp("onnx") / "model.onnx"
    export_step_onnx(model, path)
    return model, path


def _session(path) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def test_state_entries_named_and_paired(exported):
    model, path = exported
    proto = onnx.load(str(path))
    inputs = {v.name: v for v in proto.graph.input}
    outputs = {v.name: v for v in proto.graph.output}
    want_in, want_out = io_names(model)
    assert list(inputs) == want_in and list(outputs) == want_out
    states_in = sorted(n for n in inputs if n.startswith("STATE_"))
    states_out = sorted(n for n in outputs if n.startswith("STATE_"))
    assert [n.removesuffix("_IN") for n in states_in] == [n.removesuffix("_OUT") for n in states_out]
    assert {"STATE_K_IN", "STATE_V_IN", "STATE_POS_IN"} <= set(states_in)
    for n_in, n_out in zip(states_in, states_out):  # fixed shape (Triton implicit state), only batch symbolic
        t_in, t_out = inputs[n_in].type.tensor_type, outputs[n_out].type.tensor_type
        assert t_in.elem_type == t_out.elem_type
        dims = [d.dim_value for d in t_in.shape.dim[1:]]
        assert dims == [d.dim_value for d in t_out.shape.dim[1:]] and all(d > 0 for d in dims)
        assert t_in.shape.dim[0].dim_param
    k = inputs["STATE_K_IN"].type.tensor_type.shape.dim
    assert k[3].dim_value == WINDOW
    assert inputs["STATE_POS_IN"].type.tensor_type.elem_type == onnx.TensorProto.INT64


def test_one_chunk_onnx_matches_pytorch_sliding_window_forward(exported):
    torch.set_num_threads(1)
    model, path = exported
    batch, length = 3, 3 * WINDOW
    g = torch.Generator().manual_seed(7)
    tokens = torch.randint(0, VOCAB, (batch, length), generator=g)
    features = torch.randn(batch, length, N_FEATURES, generator=g)
    with torch.no_grad():
        next_logits, dir_logits, *state_ref = model(tokens, features)
    dir_ref = dir_logits.softmax(-1).numpy()
    topk_ref_probs, topk_ref_ids = next_logits.softmax(-1).topk(5, dim=-1)

    session = _session(path)
    state_in, _ = io_names(model)
    state_in = state_in[2:]
    state = [s.numpy() for s in model.allocate_inference_cache(batch)]
    dir_probs, topk_ids, topk_probs, *state = session.run(None, {"TOKEN": tokens.numpy(), "FEATURES": features.numpy(),
                                                                 **dict(zip(state_in, state))})  # one chunk
    assert topk_probs[..., 0].mean() > 0.05  # peaked distributions, not ~1/V each
    np.testing.assert_allclose(dir_probs, dir_ref, atol=1e-4, rtol=0)
    np.testing.assert_allclose(topk_probs, topk_ref_probs.numpy(), atol=1e-4, rtol=0)
    np.testing.assert_array_equal(topk_ids, topk_ref_ids.numpy())
    for s, ref in zip(state, state_ref):
        np.testing.assert_allclose(s, ref.numpy(), atol=1e-4, rtol=0)


def test_full_cache_export_runs_at_a_growing_length(exported, tmp_path):
    model, _ = exported
    path = tmp_path / "full.onnx"
    export_step_onnx(model, path, cache="full")
    session = _session(path)
    names = io_names(model)[0][2:]
    state = [s.numpy() for s in model.allocate_inference_cache(2, cache="full")]
    g = torch.Generator().manual_seed(3)
    tokens = torch.randint(0, VOCAB, (2, 6), generator=g)
    features = torch.randn(2, 6, N_FEATURES, generator=g)
    ref_state = model.allocate_inference_cache(2, cache="full")
    for t in range(6):
        d, _, _, *state = session.run(None, {"TOKEN": tokens[:, t:t + 1].numpy(), "FEATURES": features[:, t:t + 1].numpy(),
                                             **dict(zip(names, state))})
        with torch.no_grad():
            _, d_ref, *ref_state = model.step(tokens[:, t], features[:, t], *ref_state, cache="full")
        np.testing.assert_allclose(d[:, 0], d_ref.softmax(-1).numpy(), atol=1e-5, rtol=0)
    k = state[names.index("STATE_K_IN")]
    assert k.shape[3] == 6  # grew one tick per step from empty


def test_the_served_ring_graph_is_float32_only(exported):
    """TensorRT has no FP64: no DOUBLE initializer, cast or intermediate anywhere in the ring step graph (RoPE
    reads a float32 table of offsets < W), so the graph TensorRT parses is the one onnxruntime runs."""
    _, path = exported
    proto = onnx.shape_inference.infer_shapes(onnx.load(str(path)), strict_mode=True)
    g = proto.graph
    step = onnx.shape_inference.infer_shapes(one_tick_step(proto), strict_mode=True).graph  # the T == 1 branch's
    g.node.extend(step.node)  # and the chunk Loop's nodes (the same step), typed
    g.value_info.extend(step.value_info)
    double = onnx.TensorProto.DOUBLE
    assert not [t.name for t in g.initializer if t.data_type == double]
    assert not [v.name for v in [*g.value_info, *g.input, *g.output] if v.type.tensor_type.elem_type == double]
    casts = [a.i for n in g.node if n.op_type == "Cast" for a in n.attribute if a.name == "to"]
    assert double not in casts
    assert not [n.op_type for n in g.node if n.op_type in ("Cos", "Sin")]  # angles are table lookups
    assert len(g.value_info) > 50  # inference typed the intermediates: the DOUBLE check saw them


def test_fp16_ring_graph_tracks_fp32_past_the_wrap(exported, tmp_path):
    """`lob export` writes model_fp16.onnx for every arch: the attention graph's FP16 variant loads in
    onnxruntime, keeps the FP32 interface, and follows the FP32 graph for 3 rings of ticks, each carrying
    its own state as Triton would."""
    from lob.export.onnx_fp16 import convert_fp16

    model, path = exported
    fp16_path = convert_fp16(path, tmp_path / "model_fp16.onnx")
    fp32, fp16 = _session(path), _session(fp16_path)
    assert [(i.name, i.type) for i in fp16.get_inputs()] == [(i.name, i.type) for i in fp32.get_inputs()]
    names = io_names(model)[0][2:]
    batch, length = 4, 3 * WINDOW
    g = torch.Generator().manual_seed(11)
    tokens = torch.randint(0, VOCAB, (batch, length), generator=g).numpy()
    features = torch.randn(batch, length, N_FEATURES, generator=g).numpy()
    states = [[s.numpy() for s in model.allocate_inference_cache(batch)] for _ in range(2)]
    dirs = [[], []]
    same_top1 = 0
    for t in range(length):
        feed = {"TOKEN": tokens[:, t:t + 1], "FEATURES": features[:, t:t + 1]}
        outs = []
        for i, session in enumerate((fp32, fp16)):
            d, ids, probs, *states[i] = session.run(None, {**feed, **dict(zip(names, states[i]))})
            dirs[i].append(d)
            outs.append(ids[:, 0, 0])
        same_top1 += int((outs[0] == outs[1]).sum())
    ref, got = np.stack(dirs[0]), np.stack(dirs[1])  # (T, B, 1, H, 3)
    assert ref.std(axis=0).mean() > 0.02  # the probabilities move from tick to tick: the comparison is not vacuous
    np.testing.assert_allclose(got, ref, atol=3e-3, rtol=0)  # measured max 1.8e-3 (FP16 has 11 significant bits)
    assert same_top1 >= 0.97 * batch * length
    np.testing.assert_array_equal(states[1][names.index("STATE_POS_IN")], length)


def test_chunks_longer_than_the_ring_equal_single_ticks(exported):
    model, path = exported
    assert_chunks_equal_single_ticks(model, path, window=WINDOW)
