"""A valid run folder holding a random-initialised model (`lob.training.run.untrained_run`), for benchmarks
and crash trials (what they measure does not depend on the weights; 2 shared cores cannot afford training first).
Usage: python bench/random_run.py --data out/bench/data --out out/bench/run [--arch mamba] [--preset tiny]
"""
from __future__ import annotations

import argparse
from pathlib import Path

from lob.training.run import untrained_run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--arch", default="mamba")
    ap.add_argument("--preset", default="tiny")
    args = ap.parse_args()
    print(untrained_run(args.out, args.data, arch=args.arch, preset=args.preset, force=True))


if __name__ == "__main__":
    main()
