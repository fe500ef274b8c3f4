"""``lob export``: build a Triton model repository for a trained run from the project's tracked one.

The tracked ``model_repository/`` (configs and python models, part of the project) is never written: the
export copies it to ``REPO`` (default ``build/model_repository``) and adds, in the copy::

    REPO/mamba_lob_onnx/1/model.onnx       the one-tick step model (``lob.export.onnx_step``) with MODEL_VERSION as a
                                           constant output (``lob.export.onnx_version``): every ONNX profile serves it
    REPO/mamba_lob_onnx/1/model_fp16.onnx  its FP16 variant (``lob.export.onnx_fp16``)
    REPO/mamba_lob_onnx/1/export.json      model_version, checkpoint sha256, tokenizer hash, model config
    REPO/lob_tokenizer/1/tokenizer.json    the run's tokenizer, unchanged
    REPO/lob_model_version/1/model.onnx    MODEL_VERSION alone, for the TensorRT ensembles

The implicit-state entries of every step config in the copy (``config.pbtxt`` and ``configs/*.pbtxt``)
are set to the exported model's states (``STATE_<NAME>_IN/OUT`` per entry of the architecture's
``state_names``: Mamba CONV, SSM; Transformer K, V, POS; hybrid all five), and ``FEATURES`` to its
feature count; the tracked configs hold the ``tiny`` Mamba's.
The repository is built in a temp folder beside ``REPO`` and renamed into place: never half-written.
``REPO`` may be replaced only if it is a previous export (it holds the ``.lob_export`` marker) or empty.

``model_version`` is ``<run folder name>-<first 12 hex of the checkpoint's sha256>``.
"""
from __future__ import annotations

import shutil
from dataclasses import asdict
from pathlib import Path

from lob.contract import FEATURES, STEP_MODEL, STEP_MODELS, TOKENIZER_MODEL, VERSION_MODEL, state_names
from lob.io import building, sha256_file, write_json
from lob.training.run import load_run

PROJECT_REPO = Path(__file__).resolve().parents[3] / "model_repository"
BUILD_REPO = Path("build/model_repository")
MARKER = ".lob_export"  # in a repository `lob export` built (and may replace)
_BUILD_PRODUCTS = ("model.onnx", "model_fp16.onnx", "model.plan", "tokenizer.json", "export.json", "__pycache__",
                   MARKER)


def step_configs(repo: Path, names=STEP_MODELS) -> list[Path]:
    """Every config of the implicit-state step models in ``repo``: config.pbtxt and configs/*.pbtxt."""
    repo = Path(repo)
    return [p for name in names for p in [repo / name / "config.pbtxt", *sorted((repo / name / "configs").glob("*.pbtxt"))]
            if p.is_file()]


def state_entries(model) -> list[dict]:
    """One implicit-state entry per state tensor of ``model`` (``state_names``), sorted by name as Triton pairs
    them (server issue #8586): {input_name, output_name, data_type (TYPE_*), dims (per sequence, no batch)}."""
    import torch
    from tritonclient.grpc import model_config_pb2

    types = {torch.float32: model_config_pb2.TYPE_FP32, torch.int64: model_config_pb2.TYPE_INT64}
    entries = []
    for name, state in zip(model.state_names, model.allocate_inference_cache(1)):
        input_name, output_name = state_names(name)
        entries.append({"input_name": input_name, "output_name": output_name, "data_type": types[state.dtype],
                        "dims": list(state.shape[1:])})
    return sorted(entries, key=lambda e: e["input_name"])


def fit_states(repo: Path, model) -> list[Path]:
    """Make the implicit-state entries of the step configs in ``repo`` ``model``'s states (names, types, dims,
    zero initial state) and FEATURES its feature count; the rest of each config is kept. Returns the configs
    rewritten."""
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    want = state_entries(model)
    rewritten = []
    for path in step_configs(repo):
        cfg = text_format.Parse(path.read_text(), model_config_pb2.ModelConfig())
        have = [{"input_name": s.input_name, "output_name": s.output_name, "data_type": s.data_type,
                 "dims": list(s.dims)} for s in cfg.sequence_batching.state]
        inits = [[list(i.dims) for i in s.initial_state] for s in cfg.sequence_batching.state]
        features = [t for t in cfg.input if t.name == FEATURES]
        if have == want and inits == [[e["dims"]] for e in want] and all(
                list(t.dims) == [-1, model.config.n_features] for t in features):
            continue
        del cfg.sequence_batching.state[:]
        for e in want:
            state = cfg.sequence_batching.state.add(**e)
            state.initial_state.add(name="zeros", data_type=e["data_type"], dims=e["dims"], zero_data=True)
        for tensor in features:
            tensor.dims[:] = [-1, model.config.n_features]
        path.write_text(f"# states set by `lob export` for the exported model\n{text_format.MessageToString(cfg)}")
        rewritten.append(path)
    return rewritten


def export_repository(run: Path, repo: Path = BUILD_REPO, source: Path = PROJECT_REPO) -> str:
    """Build ``repo`` from the tracked repository ``source`` and ``run``; returns the model_version written."""
    import onnx

    from lob.models.registry import arch_of

    from lob.export.onnx_fp16 import convert_fp16
    from lob.export.onnx_step import export_step_onnx
    from lob.export.onnx_version import version_graph

    run, repo, source = Path(run), Path(repo), Path(source)
    if not (source / STEP_MODEL / "config.pbtxt").is_file():
        raise FileNotFoundError(f"{source} is not a Mamba-LOB model repository: {source / STEP_MODEL / 'config.pbtxt'} "
                                f"is missing (the source is the project's model_repository/)")
    if repo.resolve() == source.resolve():
        raise ValueError(f"{repo} is the tracked repository, whose configs `lob export` never rewrites: export into "
                         f"a build repository (--repo {BUILD_REPO})")
    if repo.exists() and not (repo / MARKER).is_file() and any(repo.iterdir()):
        raise FileExistsError(f"{repo} exists and is not a repository `lob export` built (no {MARKER}); "
                              "pass an empty or new folder")
    model, tokenizer, manifest = load_run(run)
    ckpt_sha = sha256_file(run / "checkpoint.pt")
    version = f"{run.resolve().name}-{ckpt_sha[:12]}"
    with building(repo, force=True) as tmp:
        shutil.copytree(source, tmp, dirs_exist_ok=True, ignore=shutil.ignore_patterns(*_BUILD_PRODUCTS))
        step_dir = tmp / STEP_MODEL / "1"
        export_step_onnx(model, step_dir / "model.onnx", model_version=version)
        convert_fp16(step_dir / "model.onnx", step_dir / "model_fp16.onnx")
        onnx.save(version_graph(version), str(tmp / VERSION_MODEL / "1" / "model.onnx"))
        shutil.copyfile(run / "tokenizer.json", tmp / TOKENIZER_MODEL / "1" / "tokenizer.json")
        write_json(step_dir / "export.json", {
            "model_version": version, "run": str(run.resolve()), "checkpoint_sha256": ckpt_sha,
            "tokenizer_hash": tokenizer.content_hash, "arch": arch_of(model), "config": asdict(model.config),
            "n_parameters": manifest["n_parameters"], "fee_bps": manifest["fee_bps"]})
        fit_states(tmp, model)
        (tmp / MARKER).write_text(f"{version}\n")
    return version
