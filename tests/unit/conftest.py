"""Fixtures shared by unit tests."""
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def step_onnx(tmp_path_factory) -> Path:
    """A tiny random Mamba-LOB step model (vocab 64, 12 features) exported as `lob export` does, once per session."""
    import torch

    from lob.model import MambaLOB, config_from_preset
    from lob.onnx_step import export_step_onnx

    torch.manual_seed(0)
    model = MambaLOB(config_from_preset("tiny", vocab_size=64, n_features=12)).eval()
    path = tmp_path_factory.mktemp("export") / "model.onnx"
    export_step_onnx(model, path)
    return path
