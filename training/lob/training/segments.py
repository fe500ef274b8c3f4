"""A segment: one symbol's train, validation or test part, tokenized from a fresh tokenizer state and
labelled within itself (no label looks past the segment's end). Training and evaluation build them alike."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lob.data.schema import Ticks
from lob.training.labels import LabelSpec
from lob.training.split import SymbolSplit


@dataclass
class Segment:
    """One symbol's part of the split, tokenized from a fresh state and labelled within itself."""

    symbol: str
    ticks: Ticks
    tokens: np.ndarray  # (N,) int64
    features: np.ndarray  # (N, F) float32
    labels: np.ndarray  # (N, H) int64, IGNORE past the segment end and across sessions
    weights: np.ndarray  # (N, H) float32


def segments(dataset: dict[str, Ticks], splits: dict[str, SymbolSplit], part: str, tokenizer,
             spec: LabelSpec, tokenized: dict | None = None) -> list[Segment]:
    """``part`` in {"train", "val", "test"}; one segment per symbol, in sorted order. ``tokenized``: {symbol:
    (tokens, features)} of this part already through ``tokenizer`` (e.g. by ``Tokenizer.fit_transform``)."""
    out = []
    for sym in sorted(splits):
        sl = getattr(splits[sym], part)
        ticks = dataset[sym].slice(sl.start, sl.stop)
        tokens, features = tokenized[sym] if tokenized else tokenizer.transform(ticks)[:2]
        labels, weights = spec.targets(ticks)
        out.append(Segment(sym, ticks, tokens.astype(np.int64), features.astype(np.float32), labels, weights))
    return out
