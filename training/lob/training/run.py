"""The run folder written by ``lob train`` and read by ``evaluate``, ``predict`` and ``export``.

::

    RUN/checkpoint.pt        {"arch": "mamba"|"transformer"|"hybrid", "config": config dict, "model": state_dict}
                             (`lob.models.registry.checkpoint`; no "arch": a Mamba-LOB run)
    RUN/config.json          {"model": ..., "training": ...}
    RUN/tokenizer.json       the tokenizer fitted on the train split
    RUN/train_metrics.json   loss curves
    RUN/manifest.json        data files + sha256, split boundaries, counts, versions, "complete": true

A run is built in a hidden sibling folder and renamed into place only once every file is written,
so a run killed half-way never sits at RUN; ``load_run`` still checks ``"complete": true`` and
every file, and says what is missing.
"""
from __future__ import annotations

import json
from pathlib import Path

RUN_FILES = ("checkpoint.pt", "config.json", "tokenizer.json", "train_metrics.json", "manifest.json")


class RunError(RuntimeError):
    """A run folder that is missing, unfinished or inconsistent."""


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
