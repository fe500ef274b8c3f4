"""The README's lobclient example runs as written against a real server (only the URL differs)."""
import contextlib
import io
import json
import re
from pathlib import Path

import pytest

pytestmark = pytest.mark.server

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_lobclient_example_runs(server, repo):
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    example = next(b for b in blocks if "lobclient.stream(" in b)
    assert 'url="localhost:8001"' in example
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(example.replace('url="localhost:8001"', f'url="{server.url}"'), {})  # noqa: S102
    lines = out.getvalue().splitlines()
    version = json.loads((repo / "mamba_lob_onnx" / "1" / "export.json").read_text())["model_version"]
    assert [line.split()[0] for line in lines] == ["AAPL", "MSFT"]  # one prediction per tick, in order
    assert all("refused" not in line and line.endswith(version) for line in lines)
