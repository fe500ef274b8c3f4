"""Artifact I/O: every file and folder ``lob`` writes is whole or absent, never half-written.

``atomic_write`` (`lobtick.io`'s, re-exported) writes a file through a temp sibling and a rename; ``write_json`` is the one JSON layout of
run, export and report files; ``building`` builds a folder (a run, a model repository) in a temp sibling and
renames it into place; ``sha256_file`` is the checksum manifests record; ``write_predictions`` is the one
predictions table, written by ``lob predict`` (offline) and ``lob stream`` (served).

Stdlib, `lobtick.io` and `lob.contract` only (numpy and pyarrow imported when a table is written): a serving host
imports it.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

from lobtick.io import atomic_write

from lob.contract import CLASSES, HORIZONS, PROB_COLUMNS


def write_json(path: Path, obj) -> None:
    """``obj`` as indented, key-sorted JSON, atomically."""
    text = json.dumps(obj, indent=2, sort_keys=True) + "\n"
    atomic_write(Path(path), lambda tmp: Path(tmp).write_text(text))


def sha256_file(path: Path) -> str:
    """Hex sha256 of the file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@contextlib.contextmanager
def building(out: Path, force: bool):
    """Yield a temp folder beside ``out``; on success it becomes ``out`` (replacing it only with ``force``),
    on an exception it is deleted and ``out`` is left as it was."""
    out = Path(out)
    if out.exists() and not force:
        raise FileExistsError(f"{out} already exists; pass --force to replace it")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.building-", dir=out.parent))
    umask = os.umask(0)
    os.umask(umask)
    tmp.chmod(0o777 & ~umask)  # mkdtemp makes it private; the result is an ordinary folder
    try:
        yield tmp
        if out.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
            os.replace(out, old / out.name)
            os.replace(tmp, out)
            shutil.rmtree(old)
        else:
            os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


PREDICTION_COLUMNS = ("symbol", "ts_ns", "seq", *PROB_COLUMNS, "next_token_top1", "next_token_top1_p")


def write_predictions(path: Path, symbol, ts_ns, seq, dir_probs, top1, top1_p) -> Path:
    """Write the predictions parquet ``path`` atomically (columns ``PREDICTION_COLUMNS``), one row per tick.

    ``symbol`` (N,) str; ``ts_ns`` (N,) int64 tick time; ``seq`` (N,) int64 index within the symbol;
    ``dir_probs`` (N, H, C) float32 over ``HORIZONS`` x ``CLASSES``; ``top1`` (N,) int64 most likely next
    token, ``top1_p`` (N,) float32 its probability. Rows are written in the order given.
    """
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    dir_probs = np.asarray(dir_probs, np.float32)
    n = len(symbol)
    if dir_probs.shape != (n, len(HORIZONS), len(CLASSES)):
        raise ValueError(f"{path}: dir_probs has shape {dir_probs.shape}, expected {(n, len(HORIZONS), len(CLASSES))} "
                         f"(ticks x horizons {HORIZONS} x classes {CLASSES})")
    probs = dir_probs.reshape(n, len(PROB_COLUMNS))  # (N, H * C), row-major as PROB_COLUMNS
    columns = [pa.array(symbol, pa.string()), pa.array(ts_ns, pa.int64()), pa.array(seq, pa.int64()),
               *(pa.array(probs[:, k]) for k in range(probs.shape[1])),
               pa.array(top1, pa.int64()), pa.array(top1_p, pa.float32())]
    table = pa.table(columns, names=list(PREDICTION_COLUMNS))
    atomic_write(Path(path), lambda tmp: pq.write_table(table, tmp))
    return Path(path)
