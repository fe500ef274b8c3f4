"""How many replayed ticks does a re-warm need? max |dp| of re-warmed vs uninterrupted predictions.

A re-warm (lobclient) STARTs a fresh sequence at the symbol's last R accepted ticks and replays them,
so the state behind the next prediction has seen R ticks instead of the whole day. This runs exactly
that offline, with the same tokenizer and model the server runs (served == offline to 1e-4, tested):
for cut points c in each symbol's day, the day scored uninterrupted from its first tick vs a fresh
tokenizer + model state started at tick c-R; report max |dp| (any horizon, any class) over the K
predictions from c on, per R.

    python bench/rewarm.py --run RUN --data DATA [--rewarm 16,32,64,128,256,512 --cuts 24 --after 100]
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np


def measure(run: Path, data: Path, rewarms: list[int], cuts: int, after: int) -> dict[int, np.ndarray]:
    """{R: |dp| max per (symbol-day, cut), flattened} over every day file of ``data``."""
    from lob.evaluation.predict import score_sequence
    from lob.training.run import load_run
    from lob.data.schema import read_ticks

    model, tokenizer, _ = load_run(run)
    out: dict[int, list[float]] = {r: [] for r in rewarms}
    for path in sorted(Path(data).glob("*/*.parquet")):
        ticks = read_ticks(path)
        tokens, features, _ = tokenizer.transform(ticks)
        reference, _, _ = score_sequence(model, tokens, features)  # (N, H, 3)
        n = len(tokens)
        for c in np.linspace(max(rewarms), n - after, cuts).astype(int):
            for r in rewarms:
                t2, f2, _ = tokenizer.transform(ticks.slice(c - r, c + after))
                rewarmed, _, _ = score_sequence(model, t2, f2)
                out[r].append(float(np.abs(rewarmed[r:] - reference[c:c + after]).max()))
    return {r: np.array(v) for r, v in out.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", type=Path, required=True)
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--rewarm", default="16,32,64,128,256,512")
    ap.add_argument("--cuts", type=int, default=24, help="cut points per symbol-day")
    ap.add_argument("--after", type=int, default=100, help="predictions compared after each cut")
    args = ap.parse_args()
    rewarms = [int(x) for x in args.rewarm.split(",")]
    result = measure(args.run, args.data, rewarms, args.cuts, args.after)
    print("| rewarm_ticks | max |dp| | p99 |dp| (over cuts) | median | cuts |")
    print("|---|---|---|---|---|")
    for r, v in result.items():
        print(f"| {r} | {v.max():.2e} | {np.percentile(v, 99):.2e} | {np.median(v):.2e} | {len(v)} |")


if __name__ == "__main__":
    main()
