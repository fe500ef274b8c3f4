"""``lob export``: put a trained run into a Triton model repository.

Writes, each file atomically (temp file + rename)::

    REPO/mamba_lob_cpu/1/model.onnx      the one-tick step model (``lob.export.onnx_step.export_step_onnx``)
    REPO/mamba_lob_cpu/1/export.json     model_version, checkpoint sha256, tokenizer hash, model config
    REPO/lob_tokenizer/1/tokenizer.json  the run's tokenizer, unchanged
    REPO/mamba_lob_onnx/1/model.onnx     the same step model for the GPU onnxruntime backend,
    REPO/mamba_lob_onnx/1/model_fp16.onnx  and its FP16 variant (``lob.export.onnx_fp16``; input of ``lob build-trt``)

The GPU models keep the step model's states (``STATE_<NAME>_IN/OUT`` per entry of the architecture's
``state_names``: Mamba CONV, SSM; Transformer K, V, POS; hybrid all five) as Triton implicit state, whose
entries live in their ``config.pbtxt``; the committed configs hold the ``tiny`` Mamba's, so exporting
another preset or architecture rewrites ``sequence_batching.state`` to the model's (the only config
field an export changes). The CPU profile's ``mamba_lob_cpu`` is a python slot pool that holds CONV and SSM
only: a Transformer or hybrid step model is served through an implicit-state model.

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


def state_entries(model) -> list[dict]:
    """One implicit-state entry per state tensor of ``model`` (``state_names``), sorted by name as Triton pairs
    them (server issue #8586): {input_name, output_name, data_type (TYPE_*), dims (per sequence, no batch)}."""
    import torch
    from tritonclient.grpc import model_config_pb2

    types = {torch.float32: model_config_pb2.TYPE_FP32, torch.int64: model_config_pb2.TYPE_INT64}
    entries = [{"input_name": f"STATE_{n}_IN", "output_name": f"STATE_{n}_OUT", "data_type": types[s.dtype],
                "dims": list(s.shape[1:])} for n, s in zip(model.state_names, model.allocate_inference_cache(1))]
    return sorted(entries, key=lambda e: e["input_name"])


def fit_states(repo: Path, model) -> list[Path]:
    """Make the implicit-state entries of the GPU models' configs ``model``'s states (names, types, dims,
    zero initial state); the rest of each config is kept. Returns the configs rewritten."""
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    want = state_entries(model)
    rewritten = []
    for name in IMPLICIT_STATE_MODELS:
        path = repo / name / "config.pbtxt"
        if not path.is_file():
            continue
        cfg = text_format.Parse(path.read_text(), model_config_pb2.ModelConfig())
        have = [{"input_name": s.input_name, "output_name": s.output_name, "data_type": s.data_type,
                 "dims": list(s.dims)} for s in cfg.sequence_batching.state]
        inits = [[list(i.dims) for i in s.initial_state] for s in cfg.sequence_batching.state]
        if have == want and inits == [[e["dims"]] for e in want]:
            continue
        del cfg.sequence_batching.state[:]
        for e in want:
            state = cfg.sequence_batching.state.add(**e)
            state.initial_state.add(name="zeros", data_type=e["data_type"], dims=e["dims"], zero_data=True)
        text = f"# states set by `lob export` for the exported model\n{text_format.MessageToString(cfg)}"
        atomic_write(path, lambda tmp, text=text: Path(tmp).write_text(text))
        rewritten.append(path)
    return rewritten


def export_repository(run: Path, repo: Path) -> str:
    """Export ``run`` into ``repo``; returns the model_version written."""
    from lob.export.onnx_fp16 import write_gpu_variants
    from lob.export.onnx_step import export_step_onnx
    from lob.models.registry import arch_of

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
        "tokenizer_hash": tokenizer.content_hash, "arch": arch_of(model), "config": asdict(model.config),
        "n_parameters": manifest["n_parameters"], "fee_bps": manifest["fee_bps"]})
    write_gpu_variants(repo)
    fit_states(repo, model)
    return version
