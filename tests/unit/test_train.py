import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from lob.data.schema import load_dataset, write_ticks
from lob.data.simulator import simulate_dataset
from lob.io import building
from lob.training.config import TrainConfig
from lob.training.labels import W_MAX
from lob.training.run import RunError, load_run, read_manifest, untrained_run
from lob.training.split import split_symbol
from lob.training.train import train

# a few seconds per run: small windows and batches, a handful of steps
FAST = dict(window=64, batch_size=4, eval_every=2, max_val_windows=8)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    out = tmp_path_factory.mktemp("sim")
    simulate_dataset(out, n_symbols=2, n_days=1, seed=3, events_per_day=2000, start_date="2024-01-02")
    return out


def _tensors(run):
    return torch.load(run / "checkpoint.pt", weights_only=True)["model"]


def test_same_seed_same_checkpoint_other_seed_differs(data, tmp_path):
    torch.set_num_threads(1)
    a = train(data, tmp_path / "a", TrainConfig(max_steps=4, seed=7, **FAST))
    b = train(data, tmp_path / "b", TrainConfig(max_steps=4, seed=7, **FAST))
    c = train(data, tmp_path / "c", TrainConfig(max_steps=4, seed=8, **FAST))
    ta, tb, tc = _tensors(a), _tensors(b), _tensors(c)
    assert ta.keys() == tb.keys()
    assert all(torch.equal(ta[k], tb[k]) for k in ta)
    assert (a / "checkpoint.pt").read_bytes() == (b / "checkpoint.pt").read_bytes()
    assert not all(torch.equal(ta[k], tc[k]) for k in ta)


def test_run_folder_is_complete_and_records_the_split(data, tmp_path):
    run = train(data, tmp_path / "run", TrainConfig(max_steps=2, **FAST))
    model, tokenizer, manifest = load_run(run)
    assert manifest["complete"] is True and manifest["n_parameters"] == sum(p.numel() for p in model.parameters())
    dataset = load_dataset(data)
    for sym, t in dataset.items():
        rec = manifest["split"]["symbols"][sym]
        # boundaries are tick timestamps: everything before val_start_ts is train, ordered train < val < test
        assert rec["first_ts"] < rec["val_start_ts"] < rec["test_start_ts"] <= rec["last_ts"]
        assert rec["n_train"] == int(np.sum(t.ts_ns < rec["val_start_ts"]))
        assert rec["n_train"] + rec["n_val"] + rec["n_test"] == len(t)
    assert {f["path"] for f in manifest["data"]["files"]} == {f"{s}/2024-01-02.parquet" for s in dataset}
    assert all(len(f["sha256"]) == 64 for f in manifest["data"]["files"])
    assert tokenizer.content_hash == manifest["tokenizer_hash"]


def test_validation_part_shorter_than_the_window_trains(tmp_path):
    # 4 symbols x 2 days x 500 events: each symbol's validation part (~100 ticks) is shorter than the
    # default 256-tick window, so validation windows must use the shorter length
    small = tmp_path / "small"
    simulate_dataset(small, n_symbols=4, n_days=2, seed=0, events_per_day=500, start_date="2024-01-02")
    run = train(small, tmp_path / "run", TrainConfig(max_steps=2, eval_every=1))
    curves = json.loads((run / "train_metrics.json").read_text())
    assert curves["steps_run"] == 2 and len(curves["val_loss"]) == 2
    assert all(np.isfinite(curves["val_loss"]))


def test_tokenizer_sees_only_the_train_split(data, tmp_path):
    # same train ticks, very different validation/test ticks: the fitted tokenizer must not change
    changed = tmp_path / "changed"
    for sym, t in load_dataset(data).items():
        cut = split_symbol(t).val_start
        t.bid_sz[cut:] *= 7.0
        t.ask_sz[cut:] *= 3.0
        t.trade_sz[cut:] *= 5.0
        write_ticks(changed / sym / "2024-01-02.parquet", t)
    a = load_run(train(data, tmp_path / "a", TrainConfig(max_steps=1, **FAST)))
    b = load_run(train(changed, tmp_path / "b", TrainConfig(max_steps=1, **FAST)))
    assert a[1].content_hash == b[1].content_hash
    assert a[2]["split"] == b[2]["split"]


def test_existing_run_is_refused_without_force(data, tmp_path):
    run = train(data, tmp_path / "run", TrainConfig(max_steps=1, **FAST))
    before = (run / "checkpoint.pt").read_bytes()
    with pytest.raises(FileExistsError, match="--force"):
        train(data, run, TrainConfig(max_steps=1, seed=1, **FAST))
    assert (run / "checkpoint.pt").read_bytes() == before
    train(data, run, TrainConfig(max_steps=1, seed=1, **FAST), force=True)
    assert (run / "checkpoint.pt").read_bytes() != before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]  # no temp folders left behind


def test_failure_while_writing_leaves_no_run(tmp_path):
    with pytest.raises(OSError):
        with building(tmp_path / "run", force=False) as tmp:
            (tmp / "checkpoint.pt").write_bytes(b"partial")
            raise OSError("disk full")
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(RunError, match="no such run"):
        load_run(tmp_path / "run")


def test_unfinished_manifest_is_not_loadable(data, tmp_path):
    run = train(data, tmp_path / "run", TrainConfig(max_steps=1, **FAST))
    text = (run / "manifest.json").read_text().replace('"complete": true', '"complete": false')
    (run / "manifest.json").write_text(text)
    with pytest.raises(RunError, match="not complete"):
        load_run(run)
    (run / "manifest.json").unlink()
    with pytest.raises(RunError, match="no manifest"):
        read_manifest(run)


def test_killed_training_is_not_loadable(data, tmp_path):
    run = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "lob.cli", "train", "--data", str(data), "--out", str(run),
                             "--max-steps", "100000"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        # wait until it is optimising (it prints the parameter count first), then kill it hard
        for line in proc.stderr:
            if "parameters" in line:
                break
        time.sleep(1.0)
        assert proc.poll() is None, "training ended before it could be killed"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    with pytest.raises(RunError):
        load_run(run)
    assert not run.exists()


def test_weight_decay_spares_ssm_parameters_biases_norms_and_embeddings():
    from torch import nn

    from lob.models.mamba import MambaLOB
    from lob.models.registry import config_from_preset
    from lob.training.optim import param_groups

    model = MambaLOB(config_from_preset("mamba", "tiny", vocab_size=50, n_features=4))
    decay, exempt = (set(g["names"]) for g in param_groups(model, 0.1))
    names = {n for n, _ in model.named_parameters()}
    assert decay | exempt == names and not decay & exempt  # every parameter once (the tied head is the embedding)
    assert {"embedding.weight", "norm_f.weight", "dir_head.bias", "layers.0.mixer.A_log", "layers.0.mixer.D",
            "layers.0.mixer.dt_proj.bias", "layers.0.norm.weight", "layers.1.mixer.conv1d.bias"} <= exempt
    assert {"layers.0.mixer.in_proj.weight", "layers.0.mixer.x_proj.weight", "layers.0.mixer.out_proj.weight",
            "dir_head.weight", "feature_proj.weight"} <= decay

    # any architecture: a transformer-like block with a learned position embedding and LayerNorm
    class Other(nn.Module):
        def __init__(self):
            super().__init__()
            self.tok = nn.Embedding(10, 8)
            self.pos_emb = nn.Parameter(torch.zeros(16, 8))
            self.ln = nn.LayerNorm(8)
            self.attn = nn.Linear(8, 24)

    decay, exempt = (set(g["names"]) for g in param_groups(Other(), 0.1))
    assert decay == {"attn.weight"} and exempt == {"tok.weight", "pos_emb", "ln.weight", "ln.bias", "attn.bias"}

    # behaviour: with zero gradients an AdamW step only decays the decayed group
    groups = param_groups(model, 0.5)
    opt = torch.optim.AdamW(groups, lr=0.1)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    opt.step()
    after = dict(model.named_parameters())
    assert all(torch.equal(before[n], after[n]) for n in groups[1]["names"])
    assert all(torch.allclose(after[n], before[n] * (1 - 0.1 * 0.5)) for n in groups[0]["names"])


@pytest.mark.slow
def test_resumed_run_ends_as_the_uninterrupted_one(data, tmp_path):
    from lob.training.train import resume_path

    torch.set_num_threads(1)
    args = dict(max_steps=12, seed=5, window=64, batch_size=4, eval_every=2, max_val_windows=4, patience=100)
    whole = train(data, tmp_path / "whole", TrainConfig(**args))
    run = tmp_path / "run"
    code = ("from lob.training.config import TrainConfig; from lob.training.train import train; "
            f"train({str(data)!r}, {str(run)!r}, TrainConfig(**{args!r}))")
    proc = subprocess.Popen([sys.executable, "-c", code], env={**os.environ, "OMP_NUM_THREADS": "1"},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 300
        while not resume_path(run).exists() and time.time() < deadline and proc.poll() is None:
            time.sleep(0.02)
        assert proc.poll() is None, "training ended before it could be interrupted"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    assert not run.exists() and resume_path(run).exists()
    with pytest.raises(ValueError, match="other arguments"):
        train(data, run, TrainConfig(**{**args, "lr": 1e-3}), resume=True)
    train(data, run, TrainConfig(**args), resume=True)
    assert not resume_path(run).exists()
    a, b = _tensors(whole), _tensors(run)
    assert all(torch.equal(a[k], b[k]) for k in a)
    curves = [json.loads((r / "train_metrics.json").read_text()) for r in (whole, run)]
    assert curves[0]["train_loss"] == curves[1]["train_loss"] and curves[1]["steps_run"] == 12
    with pytest.raises(FileNotFoundError, match="no interrupted run"):
        train(data, tmp_path / "never", TrainConfig(**args), resume=True)



def _selection_keys(m: dict, select_on: str) -> list[tuple]:
    """The selection rule's key per evaluation, as TrainConfig.select_on documents it (lower is better)."""
    return [(0, d) if select_on == "dir" and n < m["val_next_markov1"] else (1, t)
            for t, d, n in zip(m["val_loss"], m["val_dir"], m["val_next"])]


def _evals_without_improvement(values: list) -> list[int]:
    """After each evaluation, how many in a row (ending there) were not strictly below everything before."""
    out, best, n = [], None, 0
    for v in values:
        n = 0 if best is None or v < best else n + 1
        best = v if best is None or v < best else best
        out.append(n)
    return out


def test_patience_counts_the_total_loss_while_the_kept_weights_stay_the_rules(data, tmp_path, monkeypatch):
    """A run whose direction key stalls while L_dir + λ·L_next still falls trains on; it stops once the total
    loss has not fallen in ``patience`` evaluations, keeps the weights ``select_on`` names, and a run resumed
    from a state written after the direction key had stalled (also in the format that counted the key) ends
    the same."""
    import lob.training.train as tr

    torch.set_num_threads(1)
    cfg = TrainConfig(max_steps=160, patience=6, select_on="dir", lr=1e-2, labels="smoothed", smooth_bps=0.25,
                      lambda_next=1.0, **{**FAST, "eval_every": 4})
    states = []  # every resume state the run wrote, in order
    write = tr.atomic_write
    monkeypatch.setattr(tr, "atomic_write", lambda path, fn: (write(path, fn), states.append(torch.load(
        path, map_location="cpu", weights_only=False))))
    run = train(data, tmp_path / "run", cfg)
    monkeypatch.undo()
    m = json.loads((run / "train_metrics.json").read_text())
    steps, keys = m["val_step"], _selection_keys(m, "dir")
    dir_stall, total_stall = _evals_without_improvement(keys), _evals_without_improvement(m["val_loss"])
    # not vacuous: the direction key went `patience` evaluations without improving (where a patience on it
    # stops the run), and the total loss fell within that stretch
    old_stop = next(i for i, n in enumerate(dir_stall) if n >= cfg.patience)
    assert any(total_stall[i] == 0 for i in range(old_stop - cfg.patience + 1, old_stop + 1)), (keys, m["val_loss"])
    # the run went past it and stopped at the first evaluation `patience` after the lowest total loss
    last = len(steps) - 1
    assert last > old_stop and total_stall[last] == cfg.patience and max(total_stall[:last]) < cfg.patience
    assert m["stopped_by"] == "patience" and m["steps_run"] == steps[last] < cfg.max_steps
    # the weights kept are the selection rule's over every evaluation run
    want = steps[min(range(len(keys)), key=keys.__getitem__)]
    assert m["best_step"] == want and keys[steps.index(want)][0] == 0
    # resumed from the state written at the evaluation where the direction key had stalled: the same end,
    # with that state as today's code writes it and as the earlier code did (its count of the stalled key)
    st = states[old_stop]
    assert st["step"] == steps[old_stop]
    for old_format in (False, True):
        out = tmp_path / f"resumed{int(old_format)}"
        torch.save({**st, "bad_evals": cfg.patience} if old_format else st, tr.resume_path(out))
        train(data, out, cfg, resume=True)
        r = json.loads((out / "train_metrics.json").read_text())
        assert (r["steps_run"], r["best_step"], r["stopped_by"], r["val_loss"]) == (
            m["steps_run"], m["best_step"], "patience", m["val_loss"]), old_format
        assert all(torch.equal(v, _tensors(run)[k]) for k, v in _tensors(out).items())

def test_label_mode_is_recorded_and_reused_by_evaluation(data, tmp_path):
    from lob.training.labels import LabelSpec

    run = train(data, tmp_path / "run", TrainConfig(max_steps=1, labels="smoothed", smooth_bps=2.0, **FAST))
    spec = LabelSpec.of_training(json.loads((run / "config.json").read_text())["training"])
    assert spec == LabelSpec(fee_bps=0.5, w_max=W_MAX, mode="smoothed", smooth_bps=2.0)
    assert json.loads((run / "manifest.json").read_text())["labels"] == "smoothed"
    with pytest.raises(ValueError, match="label mode"):
        train(data, tmp_path / "bad", TrainConfig(max_steps=1, labels="fancy", **FAST))
    assert not (tmp_path / "bad").exists()


def test_untrained_run_is_accepted_by_export_predict_and_evaluate(data, tmp_path):
    """The run tests, benches and scripts serve instead of a trained one is a valid run: `lob export`,
    `lob predict` and `lob evaluate` accept it, and the same seed gives the same weights."""
    import pyarrow.parquet as pq
    from typer.testing import CliRunner

    from lob.cli import app

    run = untrained_run(tmp_path / "run", data, seed=2)
    for args in (["export", "--run", run, "--repo", tmp_path / "repo"],
                 ["predict", "--run", run, "--data", data, "--out", tmp_path / "p.parquet"],
                 ["evaluate", "--run", run, "--data", data, "--n-boot", "100", "--deeplob-steps", "0"]):
        res = CliRunner().invoke(app, [str(a) for a in args])
        assert res.exit_code == 0, res.output
    assert pq.read_metadata(tmp_path / "p.parquet").num_rows == sum(len(t) for t in load_dataset(data).values())
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["direction"]  # scored on the held-out split
    # --deeplob-steps 0: no DeepLOB baseline, and metrics.json says so
    assert metrics["deeplob"] == {"steps": 0} and "deeplob" not in metrics["direction"]["h50"]["baselines"]
    again = untrained_run(tmp_path / "again", data, seed=2)
    a, b = _tensors(run), _tensors(again)
    assert all(torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(FileExistsError):
        untrained_run(run, data)


@pytest.mark.parametrize("smooth_bps", [0.25, 2.0])  # every class at every horizon; a class absent from some
def test_logreg_init_starts_the_direction_heads_at_the_evaluations_logistic_regression(data, smooth_bps):
    from lob.evaluation.baselines import DirectionBaselines
    from lob.training.readout import init_from_logreg
    from lob.training.train import build_model, fit_tokenizer, label_segments, split_data

    cfg = TrainConfig(labels="smoothed", smooth_bps=smooth_bps, dir_init="logreg", **FAST)
    dataset, splits, _ = split_data(data, cfg)
    tokenizer, train_tokens = fit_tokenizer(dataset, splits)
    train_segs, val_segs = label_segments(dataset, splits, tokenizer, cfg, train_tokens)
    model = build_model(cfg, tokenizer)
    init_from_logreg(model, train_segs)
    seg = val_segs[0]
    with torch.no_grad():
        logits = model(torch.as_tensor(seg.tokens)[None], torch.as_tensor(seg.features)[None])[1][0]  # (N, H, 3)
    got = torch.softmax(logits.double(), -1).numpy()
    feats = np.concatenate([s.features for s in train_segs])
    labels = np.concatenate([s.labels for s in train_segs])
    present = np.stack([np.bincount(labels[:, j][labels[:, j] >= 0], minlength=3) > 0 for j in range(labels.shape[1])])
    assert present.all() == (smooth_bps == 0.25)  # (H, 3): the absent-class case is exercised only at 2 bps
    want = DirectionBaselines.fit(feats, labels, names=("logreg",)).predict_proba(seg.features)["logreg"]
    assert want.std(axis=0).max() > 1e-2  # the regression's probabilities move with the features
    np.testing.assert_allclose(got, want, atol=1e-5 if present.all() else 1e-3)
    assert (got[:, ~present] < 1e-3).all()


def test_logreg_init_needs_the_feature_skip():
    with pytest.raises(ValueError, match="feature_skip=1"):
        TrainConfig(dir_init="logreg", model_options={"feature_skip": 0})
    with pytest.raises(ValueError, match="dir_init"):
        TrainConfig(dir_init="ridge")


def test_probe_readout_is_what_the_run_predicts_and_never_worse_on_validation(data):
    from lob.training.labels import direction_loss
    from lob.training.readout import refit_readout
    from lob.training.train import build_model, fit_tokenizer, label_segments, split_data

    cfg = TrainConfig(labels="smoothed", smooth_bps=0.25, **FAST)
    dataset, splits, _ = split_data(data, cfg)
    tokenizer, train_tokens = fit_tokenizer(dataset, splits)
    train_segs, val_segs = label_segments(dataset, splits, tokenizer, cfg, train_tokens)
    model = build_model(cfg, tokenizer)  # untrained: its readout is random

    def loss(m, segs):  # the training's weighted direction loss per horizon, each segment streamed from fresh
        with torch.no_grad():
            out = [m(torch.as_tensor(s.tokens)[None], torch.as_tensor(s.features)[None])[1][0] for s in segs]
        cat = lambda k: torch.cat([torch.as_tensor(getattr(s, k)) for s in segs])  # noqa: E731
        return [float(direction_loss(torch.cat(out)[:, j], cat("labels")[:, j], cat("weights")[:, j])) for j in range(3)]

    trunk = {k: v.clone() for k, v in model.state_dict().items() if not k.startswith("dir_")}
    before = loss(model, train_segs)
    assert refit_readout(model, train_segs, train_segs) == ["l2=0.0001"] * 3  # in sample: the weakest L2 wins
    after = loss(model, train_segs)
    assert all(a < b - 0.05 for a, b in zip(after, before)), (before, after)  # and it is what the model predicts
    before = loss(model, val_segs)
    choices = refit_readout(model, train_segs, val_segs)
    after = loss(model, val_segs)
    assert all(a <= b + 1e-6 for a, b in zip(after, before)), (choices, before, after)  # never worse on validation
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in trunk.items())  # the trunk never moves


@pytest.mark.parametrize("select_on", ["dir", "loss"])
def test_kept_weights_are_the_evaluation_the_selection_rule_names(data, tmp_path, select_on):
    from lob.training.train import Loop, _val_loss, fit_tokenizer, label_segments, split_data

    torch.set_num_threads(1)
    cfg = TrainConfig(max_steps=240, patience=100, select_on=select_on, lr=1e-2, labels="smoothed", smooth_bps=0.25,
                      **{**FAST, "eval_every": 8})
    run = train(data, tmp_path / "run", cfg)
    m = json.loads((run / "train_metrics.json").read_text())
    steps, v_dir, v_next, v_loss = (np.array(m[k]) for k in ("val_step", "val_dir", "val_next", "val_loss"))
    beats = v_next < m["val_next_markov1"]
    # not vacuous: the next-event head starts behind Markov-1 and passes it within the run
    assert not beats[0] and beats.any(), (v_next, m["val_next_markov1"])
    assert np.ptp(v_dir) > 0.05 and np.ptp(v_loss) > 0.05  # and the curves to choose from are not flat
    want = steps[np.flatnonzero(beats)[np.argmin(v_dir[beats])]] if select_on == "dir" else steps[np.argmin(v_loss)]
    assert m["best_step"] == want
    # the checkpoint holds the weights evaluated at that step: its validation losses are the curve's there
    model, _, _ = load_run(run)
    dataset, splits, _ = split_data(data, cfg)
    tokenizer, train_tokens = fit_tokenizer(dataset, splits)
    train_segs, val_segs = label_segments(dataset, splits, tokenizer, cfg, train_tokens)
    loop = Loop(model, cfg, train_segs, val_segs)
    i = int(np.flatnonzero(steps == want)[0])
    got = _val_loss(model, val_segs, loop.val_picks, loop.val_window, cfg)
    assert np.allclose(got, (v_loss[i], v_dir[i], v_next[i]), rtol=0, atol=1e-5), (got, i)
