"""``atomic_write``: a file whole or absent, never half-written (stdlib only). ``lob.io`` re-exports it for every
artifact the server package writes; here it writes ``Tokenizer.save``'s JSON.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path


def atomic_write(path: Path, write_fn) -> None:
    """Write ``path`` with ``write_fn(tmp_path: str)`` through a temp file in the same folder, then rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write_fn(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
