"""What the attention window W and the hybrid's attention period k buy and cost: trained runs side by side.

    python bench/attention_sweep.py --runs RUN... --reference RUN --out bench/attention_sweep

Per run (``lob train`` folders, e.g. ``--model-opt window=128``): the best validation loss early stopping
kept and its two terms (direction, next-event cross-entropy) at that step, the served state per sequence
(bytes of the exported step graph's state inputs), and the served step's cost: each run's ring step graph
(``lob export``'s, FP32) in onnxruntime, 1 thread, at batch 1 and 64, from its trained weights and a zero
state, timed in the stepping thread's CPU time in blocks paired back to back with the ``--reference`` run's
(median of the paired ratios; bench/step_cost.py's method). Writes ``OUT.csv`` and ``OUT.md``.

Cost does not depend on the state's values or the tick index (bench/step_cost.py), so a zero state is
enough here; the validation loss is the selection criterion (never the test split).
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

from step_cost import measure  # bench/step_cost.py: the paired-block timing

from lob.contract import FEATURES, TOKEN
from lob.export.onnx_step import export_step_onnx, io_names
from lob.training.run import load_run

COLUMNS = ("run", "arch", "window", "attn_every", "n_layer", "seed", "best_val_loss", "val_dir", "val_next",
           "best_step", "state_bytes", "ort_b1_us", "ratio_b1", "ort_b64_us", "ratio_b64")


class Step:
    """A run's exported ring step in onnxruntime: ``runner(batch)`` steps from a zero state."""

    def __init__(self, run: Path, folder: Path):
        import onnxruntime as ort

        model, _, _ = load_run(run)
        self.model = model.eval()
        path = folder / f"{run.name}.onnx"
        export_step_onnx(self.model, path)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = opts.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        self.states = [i for i in self.session.get_inputs() if i.name in io_names(self.model)[0][2:]]

    def state_bytes(self) -> int:
        return sum(int(np.prod(i.shape[1:])) * (8 if "int64" in i.type else 4) for i in self.states)

    def runner(self, batch: int):
        n_features = self.model.config.n_features
        feed = {TOKEN: np.zeros((batch, 1), np.int64), FEATURES: np.zeros((batch, n_features), np.float32),
                **{i.name: np.zeros((batch, *i.shape[1:]), np.int64 if "int64" in i.type else np.float32)
                   for i in self.states}}
        return lambda: self.session.run(None, feed)


def validation(run: Path) -> dict:
    m = json.loads((run / "train_metrics.json").read_text())
    i = m["val_step"].index(m["best_step"])
    return {"best_val_loss": m["best_val_loss"], "val_dir": m["val_dir"][i], "val_next": m["val_next"][i],
            "best_step": m["best_step"]}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=Path, nargs="+", required=True)
    ap.add_argument("--reference", type=Path, required=True, help="run whose step the others are timed against")
    ap.add_argument("--out", type=Path, default=Path("bench/attention_sweep"))
    ap.add_argument("--pairs", type=int, default=7)
    ap.add_argument("--block-s", type=float, default=0.05)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        ref = Step(args.reference, Path(tmp))
        for run in args.runs:
            step = Step(run, Path(tmp))
            cfg = step.model.config
            training = json.loads((run / "config.json").read_text())["training"]
            row = {"run": run.name, "arch": training["arch"], "window": getattr(cfg, "window", ""),
                   "attn_every": getattr(cfg, "attn_every", ""), "n_layer": cfg.n_layer, "seed": training["seed"],
                   **validation(run), "state_bytes": step.state_bytes()}
            for batch in (1, 64):
                t, ratio, _ = measure(ref.runner(batch), step.runner(batch), args.pairs, args.block_s)
                row[f"ort_b{batch}_us"], row[f"ratio_b{batch}"] = t * 1e6, ratio
            rows.append(row)
            print(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()),
                  file=sys.stderr)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with open(args.out.with_suffix(".csv"), "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    lines = [f"Reference for the step-cost ratios: `{args.reference.name}`. Command: `python bench/attention_sweep.py "
             f"--runs {' '.join(r.name for r in args.runs)} --reference {args.reference.name}`", "",
             "| run | arch | W | k | layers | seed | best val loss (step) | val dir | val next | state / seq | "
             "ORT µs b1 (× ref) | ORT µs b64 (× ref) |", "|" + "---|" * 12]
    for r in rows:
        lines.append(f"| {r['run']} | {r['arch']} | {r['window']} | {r['attn_every']} | {r['n_layer']} | {r['seed']} | "
                     f"{r['best_val_loss']:.4f} ({r['best_step']}) | {r['val_dir']:.4f} | {r['val_next']:.4f} | "
                     f"{r['state_bytes'] / 1000:.1f} kB | {r['ort_b1_us']:.0f} (×{r['ratio_b1']:.2f}) | "
                     f"{r['ort_b64_us']:.0f} (×{r['ratio_b64']:.2f}) |")
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
