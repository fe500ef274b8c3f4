"""The package layout's import rules (lob/__init__.py): what each subpackage may import, and that the
parts a serving host runs import without torch; every package's docstring lists its modules; every relative
link of the Markdown docs resolves."""
import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

LOB = Path(__file__).parents[2] / "training" / "lob"
ROOT = Path(__file__).parents[2]
REPO = ROOT / "model_repository"
LOBTICK = ROOT / "client" / "lobtick"
PACKAGES = (LOB, ROOT / "client" / "lobclient", LOBTICK, ROOT / "kernels" / "lobkernels")

# subpackage -> the lob subpackages it may import (besides itself); the lifecycle order of lob/__init__.py
ALLOWED = {
    "contract": set(),
    "io": {"contract"},
    "data": {"contract", "io"},
    "tokenizer": {"contract", "io", "data"},
    "realism": {"contract", "io", "data", "tokenizer"},
    "models": {"contract"},
    "training": {"contract", "io", "data", "tokenizer", "models"},
    "evaluation": {"contract", "io", "data", "tokenizer", "realism", "models", "training"},
    "export": {"contract", "io", "data", "tokenizer", "models", "training"},
    "serving": {"contract", "io", "data", "tokenizer"},
}
NO_TORCH = {"contract", "io", "data", "tokenizer", "realism", "serving"}
# single modules a subpackage may import outside its row: lob.training.split is numpy only and the one
# definition of the chronological split, which `lob realism` / `lob calibrate` read parts of a dataset by
EXTRA = {"realism": {"lob.training.split"}}


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
            if (parts[0] == "lob" and len(parts) > 1 and parts[1] != sub and parts[1] not in ALLOWED[sub]
                    and name not in EXTRA.get(sub, ())):
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


def test_lobtick_imports_only_numpy_and_the_standard_library():
    """lobtick is what both sides depend on (the server through lob.tokenizer, the client's direct path): it
    imports nothing of lob, lobclient, torch or tritonclient, at any depth."""
    files = sorted(LOBTICK.glob("*.py"))
    assert len(files) >= 4
    allowed = {"numpy", "lobtick", "__future__"} | set(sys.stdlib_module_names)
    bad = sorted(f"{p.name}: {n}" for p in files for n in _imports(p) if n.split(".")[0] not in allowed)
    assert not bad, bad


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


def _packages() -> dict[str, Path]:
    """Dotted name -> folder of every package under PACKAGES."""
    return {".".join(init.parent.relative_to(top.parent).parts): init.parent
            for top in PACKAGES for init in sorted(top.rglob("__init__.py"))}


def _listed(name: str, doc: str) -> bool:
    """``name`` in backticks (also as ``pkg.name`` or ``name.py``), or first on an indented line (a table)."""
    return bool(re.search(rf"`(?:[\w.]+\.)?{name}(?:\.py)?`", doc) or re.search(rf"^\s+{name}\s", doc, re.M))


@pytest.mark.parametrize("name", sorted(_packages()))
def test_package_docstring_lists_its_modules(name):
    """A reader opening a package's __init__ finds every module and subpackage in it named in its docstring."""
    package = _packages()[name]
    doc = ast.get_docstring(ast.parse((package / "__init__.py").read_text())) or ""
    parts = [p.stem for p in package.glob("*.py") if p.name != "__init__.py"]
    parts += [d.name for d in package.iterdir() if (d / "__init__.py").is_file()]
    missing = sorted(name for name in parts if not _listed(name, doc))
    assert not missing, f"{package / '__init__.py'}: its docstring does not name {missing}"


def _slug(heading: str) -> str:
    """GitHub's anchor of a Markdown heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


DOCS = sorted([ROOT / "README.md", *ROOT.glob("docs/*.md"), *ROOT.glob("bench/*.md"), ROOT / "kernels" / "README.md"])


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(doc):
    """Every relative link [text](path#anchor) of a doc names a file or folder that exists and a heading in it."""
    text = re.sub(r"```.*?```", "", doc.read_text(), flags=re.S)  # links inside code blocks are code
    bad = []
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+:", target):
            continue  # http(s), mailto: not checked here
        path, _, anchor = target.partition("#")
        dest = (doc.parent / path).resolve() if path else doc
        if not dest.exists():
            bad.append(f"{target}: no {dest.relative_to(ROOT) if dest.is_relative_to(ROOT) else dest}")
        elif anchor and dest.is_file():
            headings = re.findall(r"^#+ (.+)$", re.sub(r"```.*?```", "", dest.read_text(), flags=re.S), re.M)
            if anchor not in {_slug(h) for h in headings}:
                bad.append(f"{target}: no heading #{anchor} in {dest.relative_to(ROOT)}")
    assert not bad, f"{doc.relative_to(ROOT)}: " + "; ".join(bad)
