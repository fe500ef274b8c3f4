"""The run folder written by ``lob train`` and read by ``evaluate``, ``predict`` and ``export``.

::

    RUN/checkpoint.pt        {"arch": "mamba"|"transformer"|"hybrid", "config": config dict, "model": state_dict}
                             (`lob.models.registry.checkpoint`; no "arch": a Mamba-LOB run)
    RUN/config.json          {"arch": ..., "model": config dict, "training": TrainConfig fields}
    RUN/tokenizer.json       the tokenizer fitted on the train split
    RUN/train_metrics.json   loss curves, best_step, best_val_loss (null for an untrained run), val_next_markov1
                         (Markov-1's next-event loss on the validation windows), steps_run, stopped_by
                         ("patience": no lower validation loss in ``patience`` evaluations; "max_steps"), wall_s
    RUN/manifest.json        data files + sha256, split boundaries, counts, versions, "complete": true

``write_run`` is the one writer of these files (``lob train``; ``untrained_run`` for tests, benches and
scripts that need a valid run of a random-initialised model). A run is built in a hidden sibling folder
and renamed into place only once every file is written, so a run killed half-way never sits at RUN;
``load_run`` still checks ``"complete": true`` and every file, and says what is missing.
"""
from __future__ import annotations

import json
import platform
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

from lob.io import building, sha256_file, write_json

if TYPE_CHECKING:
    from lob.training.config import TrainConfig
    from lob.training.split import SymbolSplit

RUN_FILES = ("checkpoint.pt", "config.json", "tokenizer.json", "train_metrics.json", "manifest.json")


class RunError(RuntimeError):
    """A run folder that is missing, unfinished or inconsistent."""


def data_files(data: Path) -> list[dict]:
    """The dataset's tick files, as the manifest records them: [{"path": relative to ``data``, "sha256"}]."""
    from lob.data.schema import dataset_files

    root = Path(data)
    return [{"path": str(f.relative_to(root)), "sha256": sha256_file(f)} for f in dataset_files(root)]


def write_run(out: Path, model, tokenizer, cfg: TrainConfig, data: Path, files: list[dict],
              splits: dict[str, SymbolSplit], metrics: dict, force: bool = False) -> Path:
    """Write the run folder ``out`` (all five files, atomically; replacing ``out`` only with ``force``):
    ``model`` trained with ``cfg`` on the ticks ``files`` (``data_files(data)``) split as ``splits``;
    ``metrics`` is train_metrics.json's content. Returns ``out``."""
    import lob
    import numpy as np
    import torch

    from lob.models.registry import checkpoint, count_parameters

    manifest = {
        "data": {"root": str(Path(data).resolve()), "files": files},
        "split": {"fractions": list(cfg.split), "symbols": {s: sp.to_json() for s, sp in splits.items()}},
        "counts": {"symbols": len(splits), "train_ticks": sum(sp.val_start for sp in splits.values()),
                   "val_ticks": sum(sp.test_start - sp.val_start for sp in splits.values()),
                   "test_ticks": sum(sp.n_ticks - sp.test_start for sp in splits.values())},
        "tokenizer_hash": tokenizer.content_hash,
        "n_parameters": count_parameters(model),
        "fee_bps": cfg.fee_bps,
        "labels": cfg.labels,
        "horizons": list(model.config.horizons),
        "versions": {"lob": getattr(lob, "__version__", "unknown"), "torch": torch.__version__,
                     "numpy": np.__version__, "python": platform.python_version()},
        "complete": True,
    }
    with building(out, force) as tmp:
        torch.save(checkpoint(model), tmp / "checkpoint.pt")
        tokenizer.save(tmp / "tokenizer.json")
        write_json(tmp / "config.json", {"arch": cfg.arch, "model": model.config.to_dict(), "training": asdict(cfg)})
        write_json(tmp / "train_metrics.json", metrics)
        write_json(tmp / "manifest.json", manifest)
    return Path(out)


def untrained_run(out: Path, data: Path, arch: str = "mamba", preset: str = "tiny", seed: int = 0,
                  force: bool = False, **model_options) -> Path:
    """A valid run of a random-initialised model (what tests, benches and scripts serve when training is
    not what they measure): the tokenizer fitted on ``data``'s train split as ``lob train`` fits it, the
    model drawn from ``seed`` as ``lob train`` draws it (direction heads not started as a regression), no
    optimiser step. ``lob evaluate``, ``lob export``
    and ``lob predict`` accept it. ``model_options`` replace preset fields (e.g. window=32). Returns ``out``."""
    from lob.training.config import TrainConfig
    from lob.training.train import CURVES, build_model, fit_tokenizer, split_data

    cfg = TrainConfig(arch=arch, preset=preset, seed=seed, model_options=model_options, max_steps=0, dir_init="zero")
    dataset, splits, files = split_data(data, cfg)
    tokenizer = fit_tokenizer(dataset, splits)[0]
    metrics = {**{k: [] for k in CURVES}, "best_step": 0, "best_val_loss": None, "steps_run": 0, "wall_s": 0.0}
    return write_run(out, build_model(cfg, tokenizer), tokenizer, cfg, data, files, splits, metrics, force)


def read_manifest(run: Path) -> dict:
    """The manifest of a complete run; RunError naming what is wrong otherwise."""
    run = Path(run)
    if not run.is_dir():
        raise RunError(f"{run}: no such run folder")
    mpath = run / "manifest.json"
    if not mpath.exists():
        raise RunError(f"{run}: not a finished run (no manifest.json); train it again with `lob train --force`")
    try:
        manifest = json.loads(mpath.read_text())
    except json.JSONDecodeError as err:
        raise RunError(f"{mpath}: unreadable manifest ({err})") from err
    if manifest.get("complete") is not True:
        raise RunError(f"{mpath}: run is not complete (\"complete\" is not true)")
    missing = [f for f in RUN_FILES if not (run / f).exists()]
    if missing:
        raise RunError(f"{run}: run is missing {missing}")
    return manifest


def load_run(run: Path):
    """(model in eval mode, tokenizer, manifest) of a complete run folder."""
    import torch

    from lob.models.registry import from_checkpoint
    from lob.tokenizer import Tokenizer

    run = Path(run)
    manifest = read_manifest(run)
    ckpt = torch.load(run / "checkpoint.pt", map_location="cpu", weights_only=True)
    try:
        model = from_checkpoint(ckpt)
    except ValueError as err:  # unknown arch or config field
        raise RunError(f"{run}/checkpoint.pt: {err}") from err
    model.eval()
    tokenizer = Tokenizer.load(run / "tokenizer.json")
    if tokenizer.content_hash != manifest["tokenizer_hash"]:
        raise RunError(f"{run}/tokenizer.json: content hash {tokenizer.content_hash} differs from the manifest's "
                       f"{manifest['tokenizer_hash']}")
    return model, tokenizer, manifest
