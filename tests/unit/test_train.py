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
from lob.training.run import RunError, building, load_run, read_manifest
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
    a = train(data, tmp_path / "a", max_steps=4, seed=7, **FAST)
    b = train(data, tmp_path / "b", max_steps=4, seed=7, **FAST)
    c = train(data, tmp_path / "c", max_steps=4, seed=8, **FAST)
    ta, tb, tc = _tensors(a), _tensors(b), _tensors(c)
    assert ta.keys() == tb.keys()
    assert all(torch.equal(ta[k], tb[k]) for k in ta)
    assert (a / "checkpoint.pt").read_bytes() == (b / "checkpoint.pt").read_bytes()
    assert not all(torch.equal(ta[k], tc[k]) for k in ta)


def test_run_folder_is_complete_and_records_the_split(data, tmp_path):
    run = train(data, tmp_path / "run", max_steps=2, **FAST)
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
    run = train(small, tmp_path / "run", max_steps=2, eval_every=1)
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
    a = load_run(train(data, tmp_path / "a", max_steps=1, **FAST))
    b = load_run(train(changed, tmp_path / "b", max_steps=1, **FAST))
    assert a[1].content_hash == b[1].content_hash
    assert a[2]["split"] == b[2]["split"]


def test_existing_run_is_refused_without_force(data, tmp_path):
    run = train(data, tmp_path / "run", max_steps=1, **FAST)
    before = (run / "checkpoint.pt").read_bytes()
    with pytest.raises(FileExistsError, match="--force"):
        train(data, run, max_steps=1, seed=1, **FAST)
    assert (run / "checkpoint.pt").read_bytes() == before
    train(data, run, max_steps=1, seed=1, force=True, **FAST)
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
    run = train(data, tmp_path / "run", max_steps=1, **FAST)
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
