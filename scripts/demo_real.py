"""`make demo-real`: a real trading day end to end, with the same `lob` commands a user types.

`lob import lobster --zip` a LOBSTER day as downloaded -> `lob train` and `lob evaluate` with their defaults
(the recommended real-day recipe; DeepLOB among the baselines) -> write the run's held-out test split as its
own dataset -> `lob export`, offline `lob predict` of it -> `lob serve` (real tritonserver) -> `lob stream` it
over gRPC -> check served == offline per tick, print the evaluation and the served scores -> stop the server.
The second half is `scripts/demo.py`'s (`serve_heldout`, `report`).

The held-out dataset holds each symbol's ticks from its recorded ``test_start_ts`` on (RUN/manifest.json), one
file per symbol-day as in the source: `lob predict` and `lob stream` start it from a fresh state, as
`lob evaluate` scores its test split.
"""
from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

from demo import ROOT, console, report, serve_heldout, sh

DEFAULT_ZIP = ROOT.parent / "shared" / "data" / "lobster" / "LOBSTER_SampleFile_GOOG_2012-06-21_10.zip"
SAMPLES_URL = "https://lobsterdata.com/info/DataSamples.php"


def write_test_split(run: Path, data: Path, out: Path) -> int:
    """Write each symbol's test split of ``data`` (boundaries from RUN/manifest.json, checked against the data
    by `split_from_boundaries`) into the dataset folder ``out``, built in a temp folder and renamed into place;
    returns the number of ticks written."""
    from lob.data.schema import dataset_files, load_dataset, read_ticks, write_ticks
    from lob.io import building
    from lob.training.split import split_from_boundaries

    recorded = json.loads((run / "manifest.json").read_text())["split"]["symbols"]
    splits = {sym: split_from_boundaries(t, recorded[sym]) for sym, t in load_dataset(data).items()}
    n_test = {sym: sp.n_ticks - sp.test_start for sym, sp in splits.items()}
    written = dict.fromkeys(n_test, 0)
    with building(out, force=True) as tmp:
        for f in dataset_files(data):
            t = read_ticks(f)
            first = int((t.ts_ns < recorded[t.symbol]["test_start_ts"]).sum())  # ticks are in time order
            if first < len(t):
                write_ticks(tmp / f.relative_to(data), t.slice(first, len(t)))
                written[t.symbol] += len(t) - first
        if written != n_test:
            raise RuntimeError(f"{data}: wrote {written} test ticks per symbol, the split has {n_test}")
    return sum(written.values())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--zip", type=Path, default=DEFAULT_ZIP, help="LOBSTER sample zip as downloaded")
    ap.add_argument("--out", type=Path, default=ROOT / "out" / "demo-real")
    ap.add_argument("--steps", type=int, help="`lob train --max-steps` (quick checks; default: the recipe's)")
    ap.add_argument("--deeplob-steps", type=int, help="`lob evaluate --deeplob-steps` (default: evaluate's)")
    args = ap.parse_args()
    if not args.zip.is_file():
        raise SystemExit(f"{args.zip}: no such LOBSTER zip. Download a sample day (e.g. "
                         f"LOBSTER_SampleFile_GOOG_2012-06-21_10.zip) from {SAMPLES_URL} and pass it: "
                         "make demo-real ZIP=path/to/LOBSTER_SampleFile_....zip")
    out: Path = args.out
    if out.exists():
        shutil.rmtree(out)
    data, heldout, run = out / "data", out / "heldout", out / "run"
    t0 = time.time()

    sh("import", "lobster", "--zip", str(args.zip), "--out", str(data))
    sh("train", "--data", str(data), "--out", str(run), *(["--max-steps", str(args.steps)] if args.steps else []))
    sh("evaluate", "--run", str(run), "--data", str(data),
       *([] if args.deeplob_steps is None else ["--deeplob-steps", str(args.deeplob_steps)]))
    n = write_test_split(run, data, heldout)
    console.print(f"held-out test split: {n:,} ticks written to {heldout}")
    offline, served = serve_heldout(run, heldout, out)
    report(run, heldout, offline, served, "held-out test split", evaluated=True)
    console.print(f"demo-real finished in {time.time() - t0:.0f} s; artifacts in {out}")


if __name__ == "__main__":
    main()
