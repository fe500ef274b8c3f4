"""``lob predict``: offline per-tick scoring with the schema ``lob stream`` writes.

Each symbol runs from a fresh tokenizer state and a fresh model state over its ticks in time order,
in chunks with the recurrent state carried between them (`TickModel.forward_chunked`): the same
numbers as a fresh Triton sequence streaming those ticks one at a time.

Output (one row per tick; symbols sorted, each symbol's ticks in time order)::

    symbol, ts_ns, seq (index within the symbol), p_down_h10, p_flat_h10, p_up_h10, ... (h50, h100),
    next_token_top1, next_token_top1_p
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from lob.contract import CLASSES
from lob.data.schema import atomic_write, load_dataset
from lob.training.run import load_run


def score_sequence(model, tokens: np.ndarray, features: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """dir_probs (N, H, 3) float32, next_token_top1 (N,) int64, its probability (N,) float32."""
    n, n_h = tokens.shape[0], len(model.config.horizons)
    dir_probs = np.empty((n, n_h, 3), np.float32)
    top1 = np.empty(n, np.int64)
    top1_p = np.empty(n, np.float32)
    for start, next_logits, dir_logits, _ in model.forward_chunked(tokens[None], features[None]):
        stop = start + next_logits.shape[1]
        dir_probs[start:stop] = dir_logits[0].softmax(-1).numpy()
        p, i = next_logits[0].softmax(-1).max(-1)
        top1[start:stop], top1_p[start:stop] = i.numpy(), p.numpy()
    return dir_probs, top1, top1_p


def predict(run: Path, data: Path, out: Path, symbols: list[str] | None = None, limit: int | None = None) -> Path:
    """Write the predictions parquet ``out`` atomically; returns ``out``."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    if limit is not None and limit < 1:
        raise ValueError(f"limit must be >= 1, got {limit}")
    model, tokenizer, _ = load_run(run)
    dataset = load_dataset(data, symbols)
    if not dataset:
        raise ValueError(f"{data}: no tick files (expected DIR/<SYMBOL>/<YYYY-MM-DD>.parquet)")
    horizons = model.config.horizons
    parts = []
    for sym in sorted(dataset):
        ticks = dataset[sym] if limit is None else dataset[sym].slice(0, limit)
        tokens, features, _ = tokenizer.transform(ticks)
        dir_probs, top1, top1_p = score_sequence(model, tokens, features)
        cols = {"symbol": pa.array([sym] * len(ticks), pa.string()), "ts_ns": pa.array(ticks.ts_ns, pa.int64()),
                "seq": pa.array(np.arange(len(ticks), dtype=np.int64))}
        for j, h in enumerate(horizons):
            for c, name in enumerate(CLASSES):
                cols[f"p_{name}_h{h}"] = pa.array(dir_probs[:, j, c], pa.float32())
        cols["next_token_top1"] = pa.array(top1, pa.int64())
        cols["next_token_top1_p"] = pa.array(top1_p, pa.float32())
        parts.append(pa.table(cols))
    table = pa.concat_tables(parts)
    atomic_write(Path(out), lambda tmp: pq.write_table(table, tmp))
    return Path(out)
