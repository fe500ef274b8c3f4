"""``lob export``: build a Triton model repository for a trained run from the project's tracked one.

The tracked ``model_repository/`` (configs and python models, part of the project) is never written: the
export copies it to ``REPO`` (default ``build/model_repository``) and adds, in the copy::

    REPO/mamba_lob_onnx/1/model.onnx       the one-tick step model (``lob.export.onnx_step``) with MODEL_VERSION as a
                                           constant output (``lob.export.onnx_version``): every ONNX profile serves it
    REPO/mamba_lob_onnx/1/model_fp16.onnx  its FP16 variant (``lob.export.onnx_fp16``)
    REPO/mamba_lob_onnx/1/export.json      model_version, checkpoint sha256, tokenizer hash, model config
    REPO/lob_tokenizer/1/tokenizer.json    the run's tokenizer, unchanged
    REPO/lob_model_version/1/model.onnx    MODEL_VERSION alone, for the TensorRT ensembles

The implicit-state dims (and ``FEATURES``) of every step config in the copy (``config.pbtxt`` and
``configs/*.pbtxt``) are set to the exported model's; the tracked configs are sized for the ``tiny`` preset.
The repository is built in a temp folder beside ``REPO`` and renamed into place: never half-written.
``REPO`` may be replaced only if it is a previous export (it holds the ``.lob_export`` marker) or empty.

``model_version`` is ``<run folder name>-<first 12 hex of the checkpoint's sha256>``.
"""
from __future__ import annotations

import shutil
import tempfile
from dataclasses import asdict
from pathlib import Path

from lob.training.run import load_run, sha256_file, write_json

PROJECT_REPO = Path(__file__).resolve().parents[2] / "model_repository"
BUILD_REPO = Path("build/model_repository")
STEP_MODEL = "mamba_lob_onnx"
TOKENIZER_MODEL = "lob_tokenizer"
VERSION_MODEL = "lob_model_version"
IMPLICIT_STATE_MODELS = ("mamba_lob_onnx", "mamba_lob_trt_fp16", "mamba_lob_trt_bf16")
MARKER = ".lob_export"  # in a repository `lob export` built (and may replace)
_BUILD_PRODUCTS = ("model.onnx", "model_fp16.onnx", "model.plan", "tokenizer.json", "export.json", "__pycache__",
                   MARKER)


def step_configs(repo: Path, names=IMPLICIT_STATE_MODELS) -> list[Path]:
    """Every config of the implicit-state step models in ``repo``: config.pbtxt and configs/*.pbtxt."""
    repo = Path(repo)
    return [p for name in names for p in [repo / name / "config.pbtxt", *sorted((repo / name / "configs").glob("*.pbtxt"))]
            if p.is_file()]


def fit_state_dims(repo: Path, config) -> list[Path]:
    """Set the implicit-state dims and FEATURES dims of the step configs in ``repo`` to ``config``'s (a
    MambaConfig); returns the configs rewritten."""
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    dims = {"STATE_CONV_IN": [config.n_layer, config.d_inner, config.d_conv - 1],  # (n_layer, d_inner, d_conv-1)
            "STATE_SSM_IN": [config.n_layer, config.d_inner, config.d_state]}  # (n_layer, d_inner, d_state)
    rewritten = []
    for path in step_configs(repo):
        cfg = text_format.Parse(path.read_text(), model_config_pb2.ModelConfig())
        before = cfg.SerializeToString()
        for state in cfg.sequence_batching.state:
            want = dims.get(state.input_name)
            if want is not None:
                state.dims[:] = want
                for init in state.initial_state:
                    init.dims[:] = want
        for tensor in cfg.input:
            if tensor.name == "FEATURES":
                tensor.dims[:] = [config.n_features]
        if cfg.SerializeToString() != before:
            path.write_text(f"# dims set by `lob export` for the exported model\n{text_format.MessageToString(cfg)}")
            rewritten.append(path)
    return rewritten


def export_repository(run: Path, repo: Path = BUILD_REPO, source: Path = PROJECT_REPO) -> str:
    """Build ``repo`` from the tracked repository ``source`` and ``run``; returns the model_version written."""
    import onnx

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
    repo.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{repo.name}.", suffix=".tmp", dir=repo.parent))
    try:
        shutil.copytree(source, tmp, dirs_exist_ok=True, ignore=shutil.ignore_patterns(*_BUILD_PRODUCTS))
        step_dir = tmp / STEP_MODEL / "1"
        export_step_onnx(model, step_dir / "model.onnx", model_version=version)
        convert_fp16(step_dir / "model.onnx", step_dir / "model_fp16.onnx")
        onnx.save(version_graph(version), str(tmp / VERSION_MODEL / "1" / "model.onnx"))
        shutil.copyfile(run / "tokenizer.json", tmp / TOKENIZER_MODEL / "1" / "tokenizer.json")
        write_json(step_dir / "export.json", {
            "model_version": version, "run": str(run.resolve()), "checkpoint_sha256": ckpt_sha,
            "tokenizer_hash": tokenizer.content_hash, "config": asdict(model.config),
            "n_parameters": manifest["n_parameters"], "fee_bps": manifest["fee_bps"]})
        fit_state_dims(tmp, model.config)
        (tmp / MARKER).write_text(f"{version}\n")
        _replace(tmp, repo)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return version


def _replace(new: Path, dst: Path) -> None:
    """Rename folder ``new`` to ``dst``, moving a previous ``dst`` out of the way first (then deleting it)."""
    old = None
    if dst.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{dst.name}.", suffix=".old", dir=dst.parent))
        dst.rename(old / dst.name)
    new.rename(dst)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
