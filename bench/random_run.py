"""A run folder in the `lob train` layout holding a random-initialised model, for benchmarks and crash
trials (what they measure does not depend on the weights; 2 shared cores cannot afford training first).
Usage: python bench/random_run.py --data out/bench/data --out out/bench/run [--preset tiny]
"""
from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from pathlib import Path

import torch

from lob.models.mamba import MambaLOB, config_from_preset
from lob.data.schema import load_dataset
from lob.tokenizer import Tokenizer


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--preset", default="tiny")
    args = ap.parse_args()
    run = args.out
    run.mkdir(parents=True, exist_ok=True)
    tokenizer = Tokenizer.fit(list(load_dataset(args.data).values()))
    torch.manual_seed(0)
    model = MambaLOB(config_from_preset(args.preset, tokenizer.vocab_size, tokenizer.n_features))
    torch.save({"model": model.state_dict(), "config": asdict(model.config)}, run / "checkpoint.pt")
    tokenizer.save(run / "tokenizer.json")
    (run / "config.json").write_text(json.dumps(asdict(model.config)))
    (run / "train_metrics.json").write_text("[]")
    (run / "manifest.json").write_text(json.dumps({
        "complete": True, "tokenizer_hash": tokenizer.content_hash, "fee_bps": 0.5,
        "n_parameters": sum(p.numel() for p in model.parameters())}))
    print(run)


if __name__ == "__main__":
    main()
