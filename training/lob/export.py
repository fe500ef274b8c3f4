"""``lob export``: put a trained run into a Triton model repository.

Writes, each file atomically (temp file + rename)::

    REPO/mamba_lob_cpu/1/model.onnx      the one-tick step model (``lob.onnx_step.export_step_onnx``)
    REPO/mamba_lob_cpu/1/export.json     model_version, checkpoint sha256, tokenizer hash, model config
    REPO/lob_tokenizer/1/tokenizer.json  the run's tokenizer, unchanged

``model_version`` is ``<run folder name>-<first 12 hex of the checkpoint's sha256>``. The repository
must already exist (its ``config.pbtxt`` files are part of the project, not of a run).
"""
from __future__ import annotations

import shutil
from dataclasses import asdict
from pathlib import Path

from lob.run import load_run, sha256_file, write_json
from lob.schema import atomic_write

STEP_MODEL = "mamba_lob_cpu"
TOKENIZER_MODEL = "lob_tokenizer"


def export_repository(run: Path, repo: Path) -> str:
    """Export ``run`` into ``repo``; returns the model_version written."""
    from lob.onnx_step import export_step_onnx

    run, repo = Path(run), Path(repo)
    if not (repo / STEP_MODEL / "config.pbtxt").is_file():
        raise FileNotFoundError(f"{repo} is not a Mamba-LOB model repository: {repo / STEP_MODEL / 'config.pbtxt'} "
                                f"is missing (export into the project's model_repository/)")
    model, tokenizer, manifest = load_run(run)
    ckpt_sha = sha256_file(run / "checkpoint.pt")
    version = f"{run.resolve().name}-{ckpt_sha[:12]}"
    step_dir = repo / STEP_MODEL / "1"
    export_step_onnx(model, step_dir / "model.onnx")  # written atomically by the exporter itself
    atomic_write(repo / TOKENIZER_MODEL / "1" / "tokenizer.json",
                 lambda tmp: shutil.copyfile(run / "tokenizer.json", tmp))
    write_json(step_dir / "export.json", {
        "model_version": version, "run": str(run.resolve()), "checkpoint_sha256": ckpt_sha,
        "tokenizer_hash": tokenizer.content_hash, "config": asdict(model.config),
        "n_parameters": manifest["n_parameters"], "fee_bps": manifest["fee_bps"]})
    return version
