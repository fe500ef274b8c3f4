"""``lob predict``: offline per-tick scoring with the schema ``lob stream`` writes.

Each symbol runs from a fresh tokenizer state and a fresh model state over its ticks in time order,
in chunks with the recurrent state carried between them (`TickModel.forward_chunked`): the same
numbers as a fresh Triton sequence streaming those ticks one at a time.

Output: the predictions table of `lob.io.write_predictions`, which ``lob stream`` writes too (one row per
tick; symbols sorted, each symbol's ticks in time order)::

    symbol, ts_ns, seq (index within the symbol), p_down_h10, p_flat_h10, p_up_h10, ... (h50, h100),
    next_token_top1, next_token_top1_p
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from lob.data.schema import load_dataset
from lob.io import write_predictions
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
    """Write the predictions parquet ``out`` atomically (`lob.io.write_predictions`); returns ``out``."""
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be >= 1, got {limit}")
    model, tokenizer, _ = load_run(run)
    dataset = load_dataset(data, symbols)
    if not dataset:
        raise ValueError(f"{data}: no tick files (expected DIR/<SYMBOL>/<YYYY-MM-DD>.parquet)")
    parts = []  # per symbol: symbol (n,), ts_ns (n,), seq (n,), dir_probs (n, H, 3), top1 (n,), top1_p (n,)
    for sym in sorted(dataset):
        ticks = dataset[sym] if limit is None else dataset[sym].slice(0, limit)
        tokens, features, _ = tokenizer.transform(ticks)
        n = len(ticks)
        parts.append((np.full(n, sym, object), ticks.ts_ns, np.arange(n, dtype=np.int64),
                      *score_sequence(model, tokens, features)))
    return write_predictions(out, *(np.concatenate(column) for column in zip(*parts)))
