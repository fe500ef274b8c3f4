"""Fixtures shared by unit tests."""
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def step_onnx(tmp_path_factory) -> Path:
    """A tiny random Mamba-LOB step model (vocab 64, 12 features) exported as `lob export` does (MODEL_VERSION
    "test-version" included), once per session."""
    import torch

    from lob.export.onnx_step import export_step_onnx
    from lob.models.mamba import MambaLOB
    from lob.models.registry import config_from_preset

    torch.manual_seed(0)
    model = MambaLOB(config_from_preset("mamba", "tiny", vocab_size=64, n_features=12)).eval()
    path = tmp_path_factory.mktemp("export") / "model.onnx"
    export_step_onnx(model, path, model_version="test-version")
    return path


# ------------------------------------------------------------------ Triton kernels on CPU (the interpreter)
# With no GPU, lobkernels' kernels run on CPU tensors through Triton's interpreter. Triton reads
# TRITON_INTERPRET when a kernel is defined (the import of lobkernels' kernel modules, done here: conftest loads before any test
# module imports triton) and again at launch (the `triton_interpreter` fixture, which kernel test modules
# use). It is unset in between so that it does not leak into other tests' subprocesses.
import os  # noqa: E402

import torch  # noqa: E402

INTERPRET = not torch.cuda.is_available() and "TRITON_INTERPRET" not in os.environ
if INTERPRET:
    os.environ["TRITON_INTERPRET"] = "1"
import triton.language as tl  # noqa: E402
from triton.runtime.jit import JITFunction  # noqa: E402

import lobkernels.causal_conv  # noqa: E402,F401  (the kernels are defined here, under the interpreter)
import lobkernels.selective_scan  # noqa: E402,F401
import lobkernels.state_update  # noqa: E402,F401

if INTERPRET:
    del os.environ["TRITON_INTERPRET"]
    if isinstance(tl.sum, JITFunction):  # triton's own helpers were defined before: the interpreter cannot run them
        raise RuntimeError("triton was imported before the unit tests could select its interpreter: "
                           "run them with TRITON_INTERPRET=1 in the environment")


@pytest.fixture(scope="module")
def triton_interpreter():
    """Kernel launches in this module run through the interpreter when there is no GPU."""
    with pytest.MonkeyPatch.context() as env:
        if INTERPRET:
            env.setenv("TRITON_INTERPRET", "1")
        yield
