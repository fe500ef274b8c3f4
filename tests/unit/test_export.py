import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pyarrow.parquet as pq
import pytest
import torch
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from lob.data.schema import load_dataset
from lob.data.simulator import simulate_dataset
from lob.evaluation.predict import predict
from lob.export.repository import export_repository
from lob.export.validate import validate_repository
from lob.io import sha256_file
from lob.tokenizer import TickInput, Tokenizer
from lob.training.config import TrainConfig
from lob.training.train import train

PROJECT_REPO = Path(__file__).resolve().parents[2] / "model_repository"
N_TICKS = 2000


@pytest.fixture(scope="module")
def data_and_run(tmp_path_factory):
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("export")
    simulate_dataset(root / "data", n_symbols=3, n_days=1, seed=2, events_per_day=3000, start_date="2024-01-02")
    run = train(root / "data", root / "run", TrainConfig(max_steps=20, window=64, batch_size=4, eval_every=10,
                                                         max_val_windows=4))
    return root / "data", run


def _tracked_snapshot() -> dict[str, bytes]:
    return {str(p.relative_to(PROJECT_REPO)): p.read_bytes() for p in sorted(PROJECT_REPO.rglob("*"))
            if p.is_file() and "__pycache__" not in p.parts}


@pytest.fixture(scope="module")
def exported(data_and_run, tmp_path_factory):
    """`lob export` of the module's run into a fresh build folder, once: (repo, the version it returned, the tracked
    repository's files before and after)."""
    _, run = data_and_run
    repo = tmp_path_factory.mktemp("build") / "model_repository"
    tracked = _tracked_snapshot()
    version = export_repository(run, repo)
    return repo, version, tracked, _tracked_snapshot()


def test_repository_files_and_version(data_and_run, exported):
    _, run = data_and_run
    repo, version, tracked_before, tracked_after = exported
    assert tracked_after == tracked_before  # the tracked repository is never written
    info = json.loads((repo / "mamba_lob_onnx/1/export.json").read_text())
    assert info["model_version"] == version == f"run-{sha256_file(run / 'checkpoint.pt')[:12]}"
    tok = Tokenizer.load(repo / "lob_tokenizer/1/tokenizer.json")
    assert info["tokenizer_hash"] == tok.content_hash
    assert (repo / "lob_tokenizer/1/tokenizer.json").read_bytes() == (run / "tokenizer.json").read_bytes()
    assert info["config"]["vocab_size"] == tok.vocab_size and info["config"]["n_features"] == tok.n_features
    # no temp files left next to the artifacts or the repository
    assert sorted(p.name for p in (repo / "mamba_lob_onnx/1").iterdir()) == [".gitkeep", "export.json", "model.onnx", "model_fp16.onnx"]
    assert sorted(p.name for p in repo.parent.iterdir()) == ["model_repository"]
    # MODEL_VERSION is a constant output of the step graph and of lob_model_version's graph
    step = ort.InferenceSession(str(repo / "mamba_lob_onnx/1/model.onnx"), providers=["CPUExecutionProvider"])
    assert "MODEL_VERSION" in [o.name for o in step.get_outputs()]
    only = ort.InferenceSession(str(repo / "lob_model_version/1/model.onnx"), providers=["CPUExecutionProvider"])
    # (B=3, T=2, K=5) in: one version per tick
    assert only.run(None, {"TOPK_IDS": np.zeros((3, 2, 5), np.int64)})[0].tolist() == [[version] * 2] * 3
    assert validate_repository(repo) == []
    export_repository(run, repo)  # a previous export is replaced
    assert sorted(p.name for p in repo.parent.iterdir()) == ["model_repository"]


def test_refuses_the_tracked_repository_and_folders_it_did_not_build(data_and_run, tmp_path):
    _, run = data_and_run
    with pytest.raises(FileNotFoundError, match="config.pbtxt"):
        export_repository(run, tmp_path / "out", source=tmp_path)
    with pytest.raises(ValueError, match="tracked repository"):
        export_repository(run, PROJECT_REPO)
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="lob_export"):
        export_repository(run, tmp_path / "mine")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine"]  # nothing half-written beside it
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"


def test_onnx_over_chunks_of_the_token_stream_matches_lob_predict(data_and_run, exported, tmp_path):
    data, run = data_and_run
    repo = exported[0]
    offline = pq.read_table(predict(run, data, tmp_path / "p.parquet", limit=N_TICKS)).to_pydict()
    symbols = sorted(load_dataset(data))
    ticks = load_dataset(data)
    tokenizer = Tokenizer.load(repo / "lob_tokenizer/1/tokenizer.json")
    sess = ort.InferenceSession(str(repo / "mamba_lob_onnx/1/model.onnx"), providers=["CPUExecutionProvider"])
    shapes = {i.name: i.shape for i in sess.get_inputs()}
    conv = np.zeros([len(symbols), *shapes["STATE_CONV_IN"][1:]], np.float32)
    ssm = np.zeros([len(symbols), *shapes["STATE_SSM_IN"][1:]], np.float32)
    # every symbol's ticks as one chunk (the server's chunk path: Tokenizer.step_chunk, the Loop over T)
    chunks = [tokenizer.step_chunk(ticks[s].slice(0, N_TICKS), None) for s in symbols]
    out = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, {
        "TOKEN": np.stack([c[0] for c in chunks]), "FEATURES": np.stack([c[1] for c in chunks]),  # (S, N), (S, N, F)
        "STATE_CONV_IN": conv, "STATE_SSM_IN": ssm})))
    version = json.loads((repo / "mamba_lob_onnx/1/export.json").read_text())["model_version"]
    assert out["MODEL_VERSION"].tolist() == [[version] * N_TICKS] * len(symbols)
    dir_probs, top_ids, top_p = out["DIR_PROBS"], out["TOPK_IDS"], out["TOPK_PROBS"]
    dir_probs = dir_probs.reshape(-1, 3, 3)  # (S*N, H, 3), rows symbol-major like predict
    top_ids, top_p = top_ids.reshape(-1, 5), top_p.reshape(-1, 5)
    cols = [f"p_{c}_h{h}" for h in (10, 50, 100) for c in ("down", "flat", "up")]
    want = np.stack([np.asarray(offline[c]) for c in cols], axis=1).reshape(-1, 3, 3)
    assert offline["symbol"] == [s for s in symbols for _ in range(N_TICKS)]
    assert np.abs(dir_probs - want).max() <= 1e-4
    assert np.abs(top_p[:, 0] - np.asarray(offline["next_token_top1_p"])).max() <= 1e-4
    # the top-1 id agrees wherever it is not a near tie
    clear = top_p[:, 0] - top_p[:, 1] > 1e-4
    assert clear.sum() >= 100  # not a vacuous check (an undertrained model has many near ties)
    assert np.array_equal(top_ids[clear, 0], np.asarray(offline["next_token_top1"])[clear])


def test_export_of_another_preset_fits_the_gpu_state_dims(data_and_run, tmp_path):
    """The committed GPU configs are sized for `tiny`; exporting `small` must still give a valid repository."""
    data, _ = data_and_run
    run = train(data, tmp_path / "small", TrainConfig(preset="small", max_steps=2, window=16, batch_size=2,
                                                      eval_every=1, max_val_windows=1))
    repo = tmp_path / "model_repository"
    export_repository(run, repo)
    assert validate_repository(repo) == []  # checks the ONNX I/O against the rewritten state dims
    cfg = json.loads((repo / "mamba_lob_onnx/1/export.json").read_text())["config"]
    d_inner = cfg["expand"] * cfg["d_model"]
    want = {"STATE_CONV_IN": [cfg["n_layer"], d_inner, cfg["d_conv"] - 1],
            "STATE_SSM_IN": [cfg["n_layer"], d_inner, cfg["d_state"]]}
    for name in ("mamba_lob_onnx", "mamba_lob_onnx/configs/gpu", "mamba_lob_trt_fp16", "mamba_lob_trt_bf16"):
        path = repo / f"{name}.pbtxt" if name.endswith("gpu") else repo / name / "config.pbtxt"
        config = text_format.Parse(path.read_text(), model_config_pb2.ModelConfig())
        got = {st.input_name: list(st.dims) for st in config.sequence_batching.state}
        assert got == want, name
        assert all(list(st.initial_state[0].dims) == want[st.input_name] for st in config.sequence_batching.state)
    assert (repo / "mamba_lob_onnx/1/model_fp16.onnx").is_file()


@pytest.mark.slow  # trains a run, exports it, steps 1,124 ticks in onnxruntime
@pytest.mark.parametrize("arch", ["transformer", "hybrid"])
def test_attention_run_exports_its_ring_state_and_steps_as_lob_predict(arch, data_and_run, tmp_path):
    """A Transformer / hybrid run: the implicit-state configs get its states (K, V, POS int64, + CONV, SSM),
    the repository validates, and the exported step model run tick by tick over > 2W ticks equals `lob predict`."""
    data, _ = data_and_run
    run = train(data, tmp_path / arch, TrainConfig(arch=arch, max_steps=3, window=64, batch_size=2, eval_every=3,
                                                   max_val_windows=2))
    repo = tmp_path / "build" / "model_repository"
    export_repository(run, repo)
    assert validate_repository(repo) == []
    info = json.loads((repo / "mamba_lob_onnx/1/export.json").read_text())
    assert info["arch"] == arch
    window = info["config"]["window"]
    config = text_format.Parse((repo / "mamba_lob_onnx/config.pbtxt").read_text(), model_config_pb2.ModelConfig())
    states = {s.input_name: (s.output_name, s.data_type, list(s.dims)) for s in config.sequence_batching.state}
    want = {"STATE_K_IN", "STATE_POS_IN", "STATE_V_IN"} | ({"STATE_CONV_IN", "STATE_SSM_IN"} if arch == "hybrid" else set())
    assert set(states) == want
    assert states["STATE_POS_IN"] == ("STATE_POS_OUT", model_config_pb2.TYPE_INT64, [1])
    assert states["STATE_K_IN"][2][2] == window  # (n_attn, n_kv_head, W, head_dim): the ring

    n = 2 * window + 100
    sym = sorted(load_dataset(data))[0]
    ticks = load_dataset(data)[sym]
    offline = pq.read_table(predict(run, data, tmp_path / "p.parquet", symbols=[sym], limit=n)).to_pydict()
    tokenizer = Tokenizer.load(repo / "lob_tokenizer/1/tokenizer.json")
    sess = ort.InferenceSession(str(repo / "mamba_lob_onnx/1/model.onnx"), providers=["CPUExecutionProvider"])
    state = {name: np.zeros([1, *dims], np.int64 if dtype == model_config_pb2.TYPE_INT64 else np.float32)
             for name, (_, dtype, dims) in states.items()}
    out_names = [o.name for o in sess.get_outputs()]
    tok_state, dirs = None, []
    for i in range(n):
        tok, f, tok_state = tokenizer.step(TickInput.of(ticks, i), tok_state)
        out = dict(zip(out_names, sess.run(None, {"TOKEN": np.array([[tok]], np.int64), "FEATURES": f[None, None],
                                                  **state})))
        state = {name: out[states[name][0]] for name in state}
        dirs.append(out["DIR_PROBS"][0, 0])
    cols = [f"p_{c}_h{h}" for h in (10, 50, 100) for c in ("down", "flat", "up")]
    want_dirs = np.stack([np.asarray(offline[c]) for c in cols], axis=1).reshape(-1, 3, 3)
    assert int(state["STATE_POS_IN"][0, 0]) == n
    assert np.abs(np.stack(dirs) - want_dirs).max() <= 1e-4
