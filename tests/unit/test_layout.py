"""The package layout's import rules (lob/__init__.py): what each subpackage may import, and that the
parts a serving host runs import without torch."""
import ast
import subprocess
import sys
from pathlib import Path

import pytest

LOB = Path(__file__).parents[2] / "training" / "lob"
REPO = Path(__file__).parents[2] / "model_repository"

# subpackage -> the lob subpackages it may import (besides itself); the lifecycle order of lob/__init__.py
ALLOWED = {
    "contract": set(),
    "io": {"contract"},
    "data": {"contract", "io"},
    "tokenizer": {"contract", "io", "data"},
    "realism": {"contract", "io", "data", "tokenizer"},
    "models": {"contract"},
    "training": {"contract", "io", "data", "tokenizer", "models"},
    "evaluation": {"contract", "io", "data", "tokenizer", "models", "training"},
    "export": {"contract", "io", "data", "tokenizer", "models", "training"},
    "serving": {"contract", "io", "data", "tokenizer"},
}
NO_TORCH = {"contract", "io", "data", "tokenizer", "realism", "serving"}


def _imports(path: Path) -> set[str]:
    """Every module a file imports, at any depth (lazy imports inside functions count too)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


def _subpackage(path: Path) -> str:
    rel = path.relative_to(LOB)
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


def test_every_module_belongs_to_a_known_subpackage():
    tops = {_subpackage(p) for p in LOB.rglob("*.py")}
    assert tops - {"__init__", "cli"} == set(ALLOWED), "a new subpackage needs its row in ALLOWED and lob/__init__.py"


@pytest.mark.parametrize("sub", sorted(ALLOWED))
def test_subpackage_imports_only_what_it_may(sub):
    files = [LOB / f"{sub}.py"] if (LOB / f"{sub}.py").exists() else sorted((LOB / sub).rglob("*.py"))
    assert files, sub
    bad = []
    for path in files:
        for name in _imports(path):
            parts = name.split(".")
            if parts[0] == "lob" and len(parts) > 1 and parts[1] != sub and parts[1] not in ALLOWED[sub]:
                bad.append(f"{path.relative_to(LOB)} imports {name}")
            if sub in NO_TORCH and parts[0] in ("torch", "triton", "lobkernels"):
                bad.append(f"{path.relative_to(LOB)} imports {name}")
    assert not bad, f"lob.{sub} may import only {sorted(ALLOWED[sub])}: " + "; ".join(bad)


def test_no_module_imports_another_modules_private_names():
    bad = []
    for path in sorted(LOB.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("lob."):
                bad += [f"{path.relative_to(LOB)}: {node.module}.{a.name}" for a in node.names if a.name.startswith("_")]
    assert not bad, "give the imported module a public name for it: " + "; ".join(bad)


def test_triton_python_models_import_no_torch_and_only_the_tokenizer_and_contract():
    models = sorted(REPO.glob("*/1/model.py"))
    assert models
    for path in models:
        for name in _imports(path):
            assert name.split(".")[0] not in ("torch", "triton", "lobkernels"), f"{path} imports {name}"
            assert not name.startswith("lob.") or name in ("lob.tokenizer", "lob.contract"), f"{path} imports {name}"


_BLOCK_TORCH = """
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("torch", "triton"):
            raise ImportError(f"blocked by the test: {name}")
sys.meta_path.insert(0, Block())
"""


def test_serving_side_imports_and_runs_without_torch(tmp_path):
    """What a serving host or the GPU container runs, in a fresh interpreter where torch cannot import."""
    script = _BLOCK_TORCH + """
import lob, lob.contract, lob.io, lob.data.schema, lob.data.simulator, lob.data.lobster, lob.data.binance
import lob.tokenizer, lob.serving.launcher, lob.serving.replay, lob.export.validate, lob.export.trt
import lob.export.onnx_fp16, lob.cli
from lob.tokenizer import Tokenizer, TickInput, TickError
from lob.data.simulator import simulate_dataset
from lob.data.schema import load_dataset
simulate_dataset(sys.argv[1], n_symbols=1, n_days=1, seed=0, events_per_day=300, start_date="2024-01-02")
ticks = load_dataset(sys.argv[1])
tok = Tokenizer.fit(list(ticks.values()))
tokens, features, _ = tok.transform(next(iter(ticks.values())))
assert len(tokens) == 300 and features.shape == (300, len(tok.feature_names))
assert not any(m.split(".")[0] == "torch" for m in sys.modules), sorted(m for m in sys.modules if "torch" in m)
print("ok")
"""
    out = subprocess.run([sys.executable, "-c", script, str(tmp_path / "data")], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0 and out.stdout.strip().endswith("ok"), out.stderr[-3000:]


def test_the_block_is_real():
    """The torch block above does stop torch (else the test before it proves nothing)."""
    out = subprocess.run([sys.executable, "-c", _BLOCK_TORCH + "import lob.models.mamba"], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode != 0 and "blocked by the test: torch" in out.stderr
