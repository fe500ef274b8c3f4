"""Validation sweep of training recipes on one dataset: the table `docs/tuning.md` is built from.

Each trial is a name and the `lob.training.config.TrainConfig` fields it replaces; it is trained into
OUT/<name> and scored on the **validation** split only (`lob evaluate --on val`, no DeepLOB), so the test
split is never read while choosing. One row per trial goes to OUT/tuning.csv (added; a trial whose
row exists is skipped, and a trained trial is only rescored, so an interrupted sweep resumes)::

    python bench/tune.py --data REAL/GOOG --out tune/GOOG --trial base \\
        --trial 'small:{"preset": "small"}' --trial 'ls:{"labels": "smoothed", "lambda_next": 0.1}'

Columns: per horizon the model's validation log-loss, the best feature baseline's (majority, logistic
regression, trees) and model - best (negative: the model is better); macro-F1 of the model; next-event
perplexity and top-1 against Markov-1's; steps run, best step and wall seconds of training.
"""
from __future__ import annotations

import argparse
import csv
import json
from dataclasses import asdict
from pathlib import Path

from lob.contract import HORIZONS
from lob.evaluation.evaluate import evaluate
from lob.io import atomic_write
from lob.training.config import TrainConfig
from lob.training.train import train

COLUMNS = ("data", "trial", "options", "labels",
           *(f"h{h}_{k}" for h in HORIZONS for k in ("model", "best", "best_name", "diff", "ci_lo", "ci_hi", "f1")),
           "perplexity", "markov1_perplexity", "top1", "markov1_top1", "steps_run", "best_step", "train_s")


def parse_trial(text: str) -> tuple[str, dict]:
    """'NAME' or 'NAME:{json of TrainConfig fields}'."""
    name, _, options = text.partition(":")
    return name, json.loads(options) if options else {}


def run_trial(data: Path, out: Path, name: str, options: dict) -> dict:
    """Train (unless OUT/<name> is already trained) and score on validation; the row of tuning.csv."""
    cfg = TrainConfig(**options)
    run = out / name
    if not (run / "checkpoint.pt").exists():
        train(data, run, cfg, force=True)
    m = evaluate(run, data, n_boot=200, quiet=True, deeplob_steps=0, part="val")
    tm = json.loads((run / "train_metrics.json").read_text())
    row = {"data": str(data), "trial": name, "options": json.dumps(options, sort_keys=True),
           "labels": asdict(cfg)["labels"], "perplexity": round(m["next_event"]["perplexity"], 3),
           "markov1_perplexity": round(m["next_event"]["baselines"]["markov1"]["perplexity"], 3),
           "top1": round(m["next_event"]["top1"], 4),
           "markov1_top1": round(m["next_event"]["baselines"]["markov1"]["top1"], 4),
           "steps_run": tm["steps_run"], "best_step": tm["best_step"], "train_s": round(tm["wall_s"])}
    for h in HORIZONS:
        d = m["direction"][f"h{h}"]
        best = d["best_baseline"]["log_loss"]
        lo, hi = d["ci95"]["log_loss"] or (float("nan"), float("nan"))
        row.update({f"h{h}_model": round(d["log_loss"], 4), f"h{h}_best": round(d["baselines"][best]["log_loss"], 4),
                    f"h{h}_best_name": best, f"h{h}_diff": round(d["log_loss"] - d["baselines"][best]["log_loss"], 4),
                    f"h{h}_ci_lo": round(lo, 4), f"h{h}_ci_hi": round(hi, 4), f"h{h}_f1": round(d["macro_f1"], 4)})
    return row


def markdown(rows: list[dict]) -> str:
    """The sweep as a markdown table: per horizon model log-loss - best baseline's [95% CI] and macro-F1."""
    head = ["trial", "options", *(f"h{h} log-loss: model − best [95% CI]; F1" for h in HORIZONS),
            "perplexity (Markov-1)", "steps (best)", "train s"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r["trial"], f"`{r['options']}`"]
        for h in HORIZONS:
            cells.append(f"{float(r[f'h{h}_diff']):+.4f} [{float(r[f'h{h}_ci_lo']):+.4f}, {float(r[f'h{h}_ci_hi']):+.4f}]"
                         f" vs {r[f'h{h}_best_name']}; {float(r[f'h{h}_f1']):.3f}")
        cells += [f"{r['perplexity']} ({r.get('markov1_perplexity') or '-'})", f"{r['steps_run']} ({r['best_step']})",
                  r["train_s"]]
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--trial", action="append", required=True, help="NAME or NAME:{TrainConfig fields as JSON}")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    table = args.out / "tuning.csv"
    for name, options in map(parse_trial, args.trial):
        rows = list(csv.DictReader(table.open())) if table.exists() else []
        if name in {r["trial"] for r in rows}:
            continue
        rows.append(run_trial(args.data, args.out, name, options))

        def write(tmp: Path, rows=rows) -> None:
            with Path(tmp).open("w", newline="") as f:
                w = csv.DictWriter(f, COLUMNS, restval="")
                w.writeheader()
                w.writerows(rows)

        atomic_write(table, write)
        atomic_write(args.out / "tuning.md", lambda tmp, rows=rows: Path(tmp).write_text(markdown(rows)))
        print(json.dumps(rows[-1]))


if __name__ == "__main__":
    main()
