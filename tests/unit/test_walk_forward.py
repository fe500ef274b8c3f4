import json

import numpy as np
import pytest
import torch

from lob.data.schema import load_dataset
from lob.data.simulator import simulate_dataset
from lob.evaluation.walk_forward import fold_fractions, walk_forward
from lob.training.config import TrainConfig
from lob.training.train import train


def test_folds_are_expanding_windows_with_consecutive_test_chunks():
    k = 4
    spans = []
    for i in range(k):
        keep, (tr, va, te) = fold_fractions(i, k)
        assert tr + va + te == pytest.approx(1.0)
        spans.append((keep * (1 - te), keep))  # the fold's test chunk, as shares of the whole trading time
    # test chunks are [1/5, 2/5), [2/5, 3/5), ...: disjoint, consecutive, the last ends at the end
    assert np.allclose(spans, [((i + 1) / 5, (i + 2) / 5) for i in range(k)])


@pytest.mark.slow
def test_walk_forward_trains_on_the_past_only(tmp_path):
    torch.set_num_threads(1)
    simulate_dataset(tmp_path / "data", n_symbols=2, n_days=2, seed=4, events_per_day=2500, start_date="2024-01-02")
    run = train(tmp_path / "data", tmp_path / "run", TrainConfig(max_steps=2, window=64, batch_size=4, eval_every=2,
                                                                 max_val_windows=4))
    # no DeepLOB: nothing here reads it (its fit and scores are test_evaluate's); the folds record that it was off
    out = walk_forward(run, tmp_path / "data", 2, n_boot=100, deeplob_steps=0)
    assert json.loads((run / "walk_forward.json").read_text()) == out
    full = load_dataset(tmp_path / "data")
    f0, f1 = out["folds"]
    for sym in full:
        # fold 0 ends before fold 1's test chunk begins; fold 1 trains on fold 0's test chunk
        assert f0["test_start_ts"][sym] <= f0["last_ts"][sym] < f1["test_start_ts"][sym] <= f1["last_ts"][sym]
        assert f1["last_ts"][sym] == int(full[sym].ts_ns[-1])
        manifest = json.loads((run / "walk_forward" / "fold1" / "run" / "manifest.json").read_text())
        assert manifest["split"]["symbols"][sym]["val_start_ts"] > f0["test_start_ts"][sym]
    m = out["metrics"]
    for key in ("direction.h50.macro_f1", "direction.h50.log_loss", "backtest.h50.model.total_pnl_bps"):
        vals = m[key]["values"]
        assert len(vals) == 2 and m[key]["mean"] == pytest.approx(np.mean(vals))
        assert m[key]["std"] == pytest.approx(np.std(vals, ddof=1))
    assert not (run / "walk_forward" / "fold0" / "run" / ".run.resume.pt").exists()
    for i in (0, 1):  # each fold is evaluated with the budget asked for
        assert json.loads((run / "walk_forward" / f"fold{i}" / "run" / "metrics.json").read_text())["deeplob"] == {"steps": 0}
