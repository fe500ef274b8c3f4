"""The served step graph over a chunk of T ticks (Mamba's sequence graph with its Scan; an ONNX Loop around the
one-tick step for the attention models) equals T single-tick calls of the same graph, predictions and the state
it leaves. ``assert_chunks_equal_single_ticks`` is run on
each architecture's exported graph by test_onnx_step (Mamba) and test_onnx_step_attention (Transformer ring,
hybrid: chunks longer than the ring); here on a graph exported with MODEL_VERSION, which comes back per tick."""
import numpy as np
import onnxruntime as ort
import torch

from lob.export.onnx_step import export_step_onnx, io_names
from lob.models.registry import arch, config_from_preset


def _run(session, names, tokens, features, states):
    """(dir, ids, probs, version or None, states after) of one call over tokens (B, T), features (B, T, F)."""
    d, ids, probs, *rest = session.run(None, {"TOKEN": tokens, "FEATURES": features, **dict(zip(names, states))})
    return (d, ids, probs, rest[-1], rest[:-1]) if len(rest) > len(names) else (d, ids, probs, None, rest)


def assert_chunks_equal_single_ticks(model, path, window: int, version: str | None = None) -> None:
    """Chunks of the graph at ``path`` (cut at 1, 5, ``window`` + 3, ...; one of them longer than 2 x ``window``)
    give the predictions and end state of single-tick calls (1e-5; top-k ids exactly)."""
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    names = io_names(model)[0][2:]
    batch, length = 2, 3 * window + 5
    rng = np.random.default_rng(1)
    tokens = rng.integers(0, model.config.vocab_size, (batch, length))
    features = rng.standard_normal((batch, length, model.config.n_features)).astype(np.float32)
    fresh = [s.numpy() for s in model.allocate_inference_cache(batch)]

    state, singles = fresh, []
    for t in range(length):
        d, ids, probs, _, state = _run(session, names, tokens[:, t:t + 1], features[:, t:t + 1], state)
        assert d.shape == (batch, 1, 3, 3)
        singles.append((d, ids, probs))
    ref = [np.concatenate([s[k] for s in singles], axis=1) for k in range(3)]  # (B, T, ...)
    assert ref[0].std(axis=1).mean() > 0.01  # predictions move from tick to tick: the comparison is not vacuous

    for cuts in ([length], [1, window + 3, length], [5, 6, 2 * window + 1, length]):  # one chunk; chunks > ring
        chunk_state, got, lo = fresh, [[], [], []], 0
        for hi in cuts:
            d, ids, probs, versions, chunk_state = _run(session, names, tokens[:, lo:hi], features[:, lo:hi],
                                                        chunk_state)
            assert d.shape == (batch, hi - lo, 3, 3) and ids.shape == probs.shape == (batch, hi - lo, 5)
            assert (versions is None) == (version is None)
            if version is not None:  # one MODEL_VERSION per tick
                assert versions.shape == (batch, hi - lo) and set(versions.ravel()) == {version}
            for k, x in enumerate((d, ids, probs)):
                got[k].append(x)
            lo = hi
        np.testing.assert_allclose(np.concatenate(got[0], axis=1), ref[0], atol=1e-5, rtol=0)
        np.testing.assert_array_equal(np.concatenate(got[1], axis=1), ref[1])
        np.testing.assert_allclose(np.concatenate(got[2], axis=1), ref[2], atol=1e-5, rtol=0)
        for a, b in zip(chunk_state, state):
            np.testing.assert_allclose(a, b, atol=1e-5, rtol=0)


def test_hybrid_chunk_with_version_output(tmp_path):
    torch.manual_seed(0)
    model = arch("hybrid").model(config_from_preset("hybrid", "tiny", 300, 12, window=4)).eval()
    with torch.no_grad():
        model.embedding.weight *= 30.0
        model.dir_head.weight *= 10.0
    export_step_onnx(model, tmp_path / "model.onnx", model_version="run-abc")
    assert_chunks_equal_single_ticks(model, tmp_path / "model.onnx", window=4, version="run-abc")
