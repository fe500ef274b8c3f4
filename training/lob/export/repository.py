"""``lob export``: put a trained run into a Triton model repository.

Writes, each file atomically (temp file + rename)::

    REPO/mamba_lob_cpu/1/model.onnx      the one-tick step model (``lob.export.onnx_step.export_step_onnx``)
    REPO/mamba_lob_cpu/1/export.json     model_version, checkpoint sha256, tokenizer hash, model config
    REPO/lob_tokenizer/1/tokenizer.json  the run's tokenizer, unchanged
    REPO/mamba_lob_onnx/1/model.onnx     the same step model for the GPU onnxruntime backend,
    REPO/mamba_lob_onnx/1/model_fp16.onnx  and its FP16 variant (``lob.export.onnx_fp16``; input of ``lob build-trt``)

The GPU models keep the conv/ssm states as Triton implicit state, whose dims live in their
``config.pbtxt``; the committed configs are sized for the ``tiny`` preset, so exporting another
preset rewrites those ``dims`` to the model's (the only config fields an export changes).

``model_version`` is ``<run folder name>-<first 12 hex of the checkpoint's sha256>``. The repository
must already exist (its ``config.pbtxt`` files are part of the project, not of a run).
"""
from __future__ import annotations

import shutil
from dataclasses import asdict
from pathlib import Path

from lob.data.schema import atomic_write
from lob.training.run import load_run, sha256_file, write_json

STEP_MODEL = "mamba_lob_cpu"
TOKENIZER_MODEL = "lob_tokenizer"
IMPLICIT_STATE_MODELS = ("mamba_lob_onnx", "mamba_lob_trt_fp16", "mamba_lob_trt_bf16")


def fit_state_dims(repo: Path, config) -> list[Path]:
    """Set the implicit-state dims of the GPU models' configs to ``config``'s; returns the configs rewritten."""
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    dims = {"STATE_CONV_IN": [config.n_layer, config.d_inner, config.d_conv - 1],  # (n_layer, d_inner, d_conv-1)
            "STATE_SSM_IN": [config.n_layer, config.d_inner, config.d_state]}  # (n_layer, d_inner, d_state)
    rewritten = []
    for name in IMPLICIT_STATE_MODELS:
        path = repo / name / "config.pbtxt"
        if not path.is_file():
            continue
        cfg = text_format.Parse(path.read_text(), model_config_pb2.ModelConfig())
        changed = False
        for state in cfg.sequence_batching.state:
            want = dims.get(state.input_name)
            if want is None or list(state.dims) == want:
                continue
            state.dims[:] = want
            for init in state.initial_state:
                init.dims[:] = want
            changed = True
        if changed:
            text = f"# dims set by `lob export` for the exported model\n{text_format.MessageToString(cfg)}"
            atomic_write(path, lambda tmp, text=text: Path(tmp).write_text(text))
            rewritten.append(path)
    return rewritten


def export_repository(run: Path, repo: Path) -> str:
    """Export ``run`` into ``repo``; returns the model_version written."""
    from lob.export.onnx_fp16 import write_gpu_variants
    from lob.export.onnx_step import export_step_onnx

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
    write_gpu_variants(repo)
    fit_state_dims(repo, model.config)
    return version
