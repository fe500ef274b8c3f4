"""The exported ONNX step model, run tick by tick in onnxruntime, reproduces the PyTorch sequence forward."""
import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from lob.export.onnx_chunk import loop_only, one_tick_step
from lob.export.onnx_step import export_step_onnx
from lob.models.mamba import MambaLOB
from lob.models.registry import config_from_preset

from test_onnx_chunk import assert_chunks_equal_single_ticks

VOCAB, N_FEATURES = 1000, 12


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    torch.manual_seed(0)
    # the default recipe's head: the feature skip, given weights (it starts at zero) so the export must carry it
    model = MambaLOB(config_from_preset("mamba", "tiny", VOCAB, N_FEATURES, feature_skip=1)).eval()
    with torch.no_grad():  # sharpen the untrained heads so top-k and probabilities are far from uniform
        model.embedding.weight *= 30.0
        model.dir_head.weight *= 10.0
        model.dir_skip.weight.normal_(0.0, 0.5)
    path = tmp_path_factory.mktemp("onnx") / "model.onnx"
    export_step_onnx(model, path)
    return model, path


def _session(path) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def test_graph_names_dtypes_and_dynamic_batch_and_time(exported):
    model, path = exported
    cfg = model.config
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto, full_check=True)
    f32, i64 = onnx.TensorProto.FLOAT, onnx.TensorProto.INT64
    conv = [cfg.n_layer, cfg.d_inner, cfg.d_conv - 1]
    ssm = [cfg.n_layer, cfg.d_inner, cfg.d_state]
    expected_inputs = {"TOKEN": (i64, ["time"]), "FEATURES": (f32, ["time", N_FEATURES]),
                       "STATE_CONV_IN": (f32, conv), "STATE_SSM_IN": (f32, ssm)}
    expected_outputs = {"DIR_PROBS": (f32, ["time", 3, 3]), "TOPK_IDS": (i64, ["time", 5]),
                        "TOPK_PROBS": (f32, ["time", 5]),
                        "STATE_CONV_OUT": (f32, conv), "STATE_SSM_OUT": (f32, ssm)}
    for values, expected in ((proto.graph.input, expected_inputs), (proto.graph.output, expected_outputs)):
        got = {}
        for v in values:
            dims = v.type.tensor_type.shape.dim
            assert dims[0].dim_param and not dims[0].HasField("dim_value"), f"{v.name}: batch axis is not symbolic"
            got[v.name] = (v.type.tensor_type.elem_type, [d.dim_param or d.dim_value for d in dims[1:]])
        assert got == expected
    # Triton implicit state pairs inputs and outputs by sort order (server issue #8586)
    states_in = sorted(n for n in expected_inputs if n.startswith("STATE_"))
    states_out = sorted(n for n in expected_outputs if n.startswith("STATE_"))
    assert [n.removesuffix("_IN") for n in states_in] == [n.removesuffix("_OUT") for n in states_out]
    # If(T == 1): the one-tick step as it is (loop-free, layers unrolled), else Mamba's sequence graph: one Scan
    # over the chunk's ticks per layer, no Loop around the whole step
    branch = [node for node in proto.graph.node if node.op_type == "If"]
    assert len(branch) == 1
    step_ops = [n.op_type for n in one_tick_step(proto).graph.node]
    assert not {"Loop", "Scan", "If"} & set(step_ops) and len(step_ops) > 50
    chunk = next(a.g for a in branch[0].attribute if a.name == "else_branch")
    chunk_ops = [n.op_type for n in chunk.node]
    assert chunk_ops.count("Scan") == cfg.n_layer and "Loop" not in chunk_ops


@pytest.mark.parametrize("batch", [1, 7])
def test_runs_at_any_batch(exported, batch):
    model, path = exported
    conv, ssm = model.allocate_inference_cache(batch)
    rng = np.random.default_rng(batch)
    outs = _session(path).run(None, {"TOKEN": rng.integers(0, VOCAB, (batch, 1)),
                                     "FEATURES": rng.standard_normal((batch, 1, N_FEATURES), dtype=np.float32),
                                     "STATE_CONV_IN": conv.numpy(), "STATE_SSM_IN": ssm.numpy()})
    assert [o.shape for o in outs] == [(batch, 1, 3, 3), (batch, 1, 5), (batch, 1, 5), tuple(conv.shape),
                                       tuple(ssm.shape)]
    np.testing.assert_allclose(outs[0].sum(-1), 1.0, atol=1e-5)


def test_one_chunk_onnx_matches_pytorch_sequence_forward(exported):
    torch.set_num_threads(1)
    model, path = exported
    batch, length = 4, 2_000
    g = torch.Generator().manual_seed(7)
    tokens = torch.randint(0, VOCAB, (batch, length), generator=g)
    features = torch.randn(batch, length, N_FEATURES, generator=g)
    with torch.no_grad():
        next_logits, dir_logits, conv_ref, ssm_ref = model(tokens, features)
    dir_ref = dir_logits.softmax(-1).numpy()  # (B, L, 3, 3)
    topk_ref_probs, topk_ref_ids = next_logits.softmax(-1).topk(5, dim=-1)  # (B, L, 5)

    session = _session(path)
    conv, ssm = (s.numpy() for s in model.allocate_inference_cache(batch))
    dir_probs, topk_ids, topk_probs, conv, ssm = session.run(None, {
        "TOKEN": tokens.numpy(), "FEATURES": features.numpy(), "STATE_CONV_IN": conv, "STATE_SSM_IN": ssm})

    assert topk_probs[..., 0].mean() > 0.05  # the check below is about peaked distributions, not ~1/V each
    np.testing.assert_allclose(dir_probs, dir_ref, atol=1e-4, rtol=0)
    np.testing.assert_allclose(topk_probs, topk_ref_probs.numpy(), atol=1e-4, rtol=0)
    np.testing.assert_array_equal(topk_ids, topk_ref_ids.numpy())
    np.testing.assert_allclose(conv, conv_ref.numpy(), atol=1e-4, rtol=0)
    np.testing.assert_allclose(ssm, ssm_ref.numpy(), atol=1e-4, rtol=0)


def test_opset_below_18_is_refused(exported, tmp_path):
    model, _ = exported
    with pytest.raises(ValueError, match="opset 17"):
        export_step_onnx(model, tmp_path / "model.onnx", opset=17)
    assert not (tmp_path / "model.onnx").exists()


def test_chunks_equal_single_ticks(exported):
    model, path = exported
    assert_chunks_equal_single_ticks(model, path, window=16)


def test_the_loop_only_graph_tensorrt_builds_equals_the_served_graph(exported, tmp_path):
    """`lob build-trt` parses ``loop_only`` of the served graph (the Loop for every T, the one-tick branch
    dropped): in onnxruntime it gives the served graph's outputs, for a live tick and for a chunk."""
    model, path = exported
    loop = tmp_path / "loop.onnx"
    onnx.save(loop_only(onnx.load(str(path))), loop)
    assert "If" not in {n.op_type for n in onnx.load(str(loop)).graph.node}
    served, loop_session = _session(path), _session(loop)
    rng = np.random.default_rng(3)
    conv, ssm = (s.numpy() for s in model.allocate_inference_cache(3))
    for t in (1, 4):
        feed = {"TOKEN": rng.integers(0, VOCAB, (3, t)),
                "FEATURES": rng.standard_normal((3, t, N_FEATURES), dtype=np.float32),
                "STATE_CONV_IN": conv, "STATE_SSM_IN": ssm}
        want, got = served.run(None, feed), loop_session.run(None, feed)
        assert want[0].shape == (3, t, 3, 3)
        for a, b in zip(want, got):
            np.testing.assert_allclose(b, a, atol=1e-6, rtol=0)
        conv, ssm = want[3:]
