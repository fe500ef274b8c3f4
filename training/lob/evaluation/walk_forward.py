"""``lob evaluate --walk-forward K``: retrain and evaluate on K time folds, training on the past only.

Each symbol's trading time (``lob.training.split.trading_clock``) is cut into K + 1 equal chunks.
Fold ``i`` (0 .. K-1) keeps the ticks of chunks 0 .. i+1 and splits them as a run does, with the
last chunk as its test part and the earlier ones as train (85%) and validation (15%): an expanding
window, so every fold trains on everything before its test chunk and nothing after it, and the K
test chunks are disjoint and consecutive. Each fold is trained with the run's own training
arguments (``RUN/config.json``) and evaluated like the run itself::

    RUN/walk_forward/fold<i>/data/   the fold's ticks (DIR/<SYMBOL>/<YYYY-MM-DD>.parquet)
    RUN/walk_forward/fold<i>/run/    its run folder, with metrics.json and report.png
    RUN/walk_forward.json            per metric: mean, std (ddof 1) and the K values; per fold: its test span

Every numeric leaf of the folds' ``metrics.json`` is aggregated (lists such as confusion matrices and
intervals are not; the per-fold intervals stay in each fold's metrics).
"""
from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np

from lob.data.schema import Ticks, day_path, load_dataset, write_ticks
from lob.evaluation.evaluate import evaluate
from lob.io import write_json
from lob.training.config import TrainConfig
from lob.training.run import read_manifest
from lob.training.split import trading_clock
from lob.training.train import train

VAL_SHARE = 0.15  # of each fold's pre-test ticks


def _flatten(d: dict, prefix: str = "") -> dict[str, float]:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key + "."))
        elif isinstance(v, (int, float)) and not isinstance(v, bool):
            out[key] = float(v)
    return out


def _write_days(root: Path, t: Ticks) -> None:
    """One parquet per UTC day of ``t``."""
    day = np.datetime_as_string(t.ts_ns.astype("datetime64[ns]"), unit="D")
    for d in np.unique(day):
        rows = np.flatnonzero(day == d)
        write_ticks(day_path(root, t.symbol, str(d)), t.slice(int(rows[0]), int(rows[-1]) + 1))


def fold_fractions(i: int, k: int) -> tuple[float, tuple[float, float, float]]:
    """(share of the trading time fold i keeps, its train/val/test fractions)."""
    keep = (i + 2) / (k + 1)
    test = 1.0 / (i + 2)
    return keep, ((1 - test) * (1 - VAL_SHARE), (1 - test) * VAL_SHARE, test)


def walk_forward(run: Path, data: Path, k: int, n_boot: int = 1000, deeplob_steps: int | None = None) -> dict:
    """Train and evaluate K folds under RUN/walk_forward/; write and return RUN/walk_forward.json's content."""
    if k < 2:
        raise ValueError(f"--walk-forward needs at least 2 folds, got {k}")
    run = Path(run)
    read_manifest(run)
    training = json.loads((run / "config.json").read_text())["training"]
    dataset = load_dataset(data)
    root = run / "walk_forward"
    folds, flat = [], []
    for i in range(k):
        keep, fractions = fold_fractions(i, k)
        fold = root / f"fold{i}"
        shutil.rmtree(fold / "data", ignore_errors=True)
        for sym, t in sorted(dataset.items()):
            clock = trading_clock(t.ts_ns)
            stop = int(np.searchsorted(clock, keep * clock[-1], side="right"))
            _write_days(fold / "data", t.slice(0, stop))
        cfg = replace(TrainConfig.from_recorded(training), split=tuple(fractions))
        fold_run = train(fold / "data", fold / "run", cfg, force=True)
        m = evaluate(fold_run, fold / "data", n_boot=n_boot, quiet=True, deeplob_steps=deeplob_steps)
        spans = read_manifest(fold_run)["split"]["symbols"]
        folds.append({"fold": i, "test_ticks": m["test_ticks"],
                      "test_start_ts": {s: v["test_start_ts"] for s, v in spans.items()},
                      "last_ts": {s: v["last_ts"] for s, v in spans.items()}})
        flat.append(_flatten(m))
    keys = sorted(set.intersection(*(set(f) for f in flat)))
    metrics = {key: {"mean": float(np.mean(v := [f[key] for f in flat])), "std": float(np.std(v, ddof=1)),
                     "values": v} for key in keys}
    out = {"k": k, "folds": folds, "metrics": metrics}
    write_json(run / "walk_forward.json", out)
    _print_summary(out)
    return out


def _print_summary(out: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    m = out["metrics"]
    table = Table(title=f"walk-forward, {out['k']} folds (mean ± std across folds)")
    for col in ("metric", "model", "best baseline margin (> 0: model better)"):
        table.add_column(col, justify="left" if col == "metric" else "right")
    for key in sorted(k for k in m if k.startswith("margins.")):
        name = key.removeprefix("margins.")
        value = m.get(name)
        table.add_row(name, "" if value is None else f"{value['mean']:.4f} ± {value['std']:.4f}",
                      f"{m[key]['mean']:+.4f} ± {m[key]['std']:.4f}")
    for key in sorted(k for k in m if k.startswith("backtest.") and k.endswith(".model.total_pnl_bps")):
        table.add_row(key, f"{m[key]['mean']:+.1f} ± {m[key]['std']:.1f}", "")
    Console(stderr=True).print(table)
