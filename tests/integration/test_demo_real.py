"""`make demo-real` (scripts/demo_real.py) end to end on a real day: the first events of LOBSTER's GOOG sample
day, kept as a zip with the downloaded member names, through import, train, evaluate (DeepLOB included),
export, a real tritonserver and `lob stream` of the run's held-out test split."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from lob.contract import HORIZONS, PROB_COLUMNS

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "demo_real.py"
GOOG = ROOT.parent / "shared" / "data" / "lobster" / "LOBSTER_SampleFile_GOOG_2012-06-21_10.zip"
EVENTS = 8_000  # ~3 minutes of the morning session: enough for every split, the training window and the intervals


def head_zip(src: Path, dst: Path, n: int) -> Path:
    """``src``'s members under their own names, each CSV cut to its first ``n`` rows (message and orderbook
    rows are paired line by line)."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_DEFLATED) as zout:
        for name in zin.namelist():
            data = zin.read(name)
            if name.endswith(".csv"):
                data = b"".join(data.splitlines(keepends=True)[:n])
            zout.writestr(name, data)
    return dst


def run_demo(*args: str, timeout: float) -> subprocess.CompletedProcess:
    # one OpenMP thread: the trees' fit in `lob evaluate` ran 2-5x slower with a thread per core on 2 busy cores
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=timeout,
                          env=env)


def test_a_missing_zip_says_where_to_download_one(tmp_path):
    r = run_demo("--zip", str(tmp_path / "absent.zip"), "--out", str(tmp_path / "out"), timeout=60)
    assert r.returncode != 0
    assert "absent.zip" in r.stderr and "https://lobsterdata.com/info/DataSamples.php" in r.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.server
@pytest.mark.slow
@pytest.mark.skipif(not GOOG.exists(), reason=f"LOBSTER sample day not found: {GOOG}")
def test_demo_real_serves_the_evaluated_test_split_as_scored_offline(tmp_path):
    out = tmp_path / "demo"
    r = run_demo("--zip", str(head_zip(GOOG, tmp_path / GOOG.name, EVENTS)), "--out", str(out),
                 "--steps", "2", "--deeplob-steps", "1", timeout=900)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-4000:]

    split = json.loads((out / "run" / "manifest.json").read_text())["split"]["symbols"]["GOOG"]
    metrics = json.loads((out / "run" / "metrics.json").read_text())
    served = pq.read_table(out / "served.parquet").to_pydict()
    offline = pq.read_table(out / "offline.parquet").to_pydict()
    # the served ticks are exactly the test split lob evaluate scored: from its first tick to the day's last
    assert 0 < split["n_test"] < EVENTS / 4
    assert len(served["ts_ns"]) == split["n_test"] == metrics["test_ticks"]
    assert (served["ts_ns"][0], served["ts_ns"][-1]) == (split["test_start_ts"], split["last_ts"])
    assert served["seq"] == list(range(split["n_test"]))  # one fresh sequence, one prediction per tick
    assert offline["ts_ns"] == served["ts_ns"]
    assert max(float(np.max(np.abs(np.asarray(offline[c]) - np.asarray(served[c])))) for c in PROB_COLUMNS) <= 1e-4
    assert offline["next_token_top1"] == served["next_token_top1"]
    # the evaluation it prints has DeepLOB beside the other baselines, at every horizon
    assert all("deeplob" in metrics["direction"][f"h{h}"]["baselines"] for h in HORIZONS)
    assert metrics["deeplob"]["steps"] == 1
    assert "deeplob" in r.stdout and f"served vs offline over {split['n_test']} ticks" in r.stdout
