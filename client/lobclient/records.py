"""What goes in (`Tick`) and what comes out (`Prediction`) of a stream."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np

from .contract import N_LEVELS


@dataclass(frozen=True)
class Tick:
    """One L2 book event of one symbol: the book after the event, and the trade print if it was a trade.

    Books are given best level first with up to 10 levels per side; shorter books are padded with empty
    levels (price 0, size 0), as in the canonical tick table (`lob.data.schema`). Prices in price units,
    sizes in shares/contracts/coins, ``ts_ns`` in ns since the Unix epoch (UTC), non-decreasing per
    symbol. ``trade_side``: +1 buyer-initiated, -1 seller-initiated, 0 no trade (then trade_px =
    trade_sz = 0). Validation (finite, non-negative, uncrossed, time order) is the tokenizer's (the
    server's, or the client's on the direct path): a bad tick comes back as a `Prediction` with ``error`` set.
    """

    symbol: str
    ts_ns: int
    bid_px: Sequence[float]
    bid_sz: Sequence[float]
    ask_px: Sequence[float]
    ask_sz: Sequence[float]
    trade_px: float = 0.0
    trade_sz: float = 0.0
    trade_side: int = 0

    def __post_init__(self) -> None:
        for name in ("bid_px", "bid_sz", "ask_px", "ask_sz"):
            levels = np.array(getattr(self, name), dtype=np.float64).reshape(-1)  # a copy: the ring keeps it
            if levels.size > N_LEVELS:
                raise ValueError(f"Tick {self.symbol} ts_ns={self.ts_ns}: {name} has {levels.size} levels, "
                                 f"at most {N_LEVELS}")
            if levels.size < N_LEVELS:  # (np.pad costs ~15 µs a call: most of a tick's client-side cost)
                levels = np.concatenate([levels, np.zeros(N_LEVELS - levels.size)])
            object.__setattr__(self, name, levels)  # (10,) float64


@dataclass
class Prediction:
    """The server's answer to one `Tick`, or the reason there is none (``error``).

    ``seq`` is the tick's index within its symbol in this stream. ``dir_probs`` is (3, 3) float32:
    rows horizons 10, 50, 100 ticks (`lobclient.contract.HORIZONS`), columns P(down), P(flat), P(up).
    ``topk_ids``/``topk_probs`` (5,) are the most likely next event tokens. ``model_version`` is None when
    the model does not report one (a TensorRT step model on the direct path). ``latency_s`` is send-to-answer
    time at the client. ``warm``: the server state behind this prediction has taken at least ``rewarm_ticks``
    ticks since its START (False for a symbol's first ``rewarm_ticks`` ticks after a START with no or a
    partial replay; True after a re-warm that replayed a full ring, whose predictions then differ from an
    uninterrupted stream's by at most the measured bound in docs/serving.md). None when ``error`` is set.
    """

    symbol: str
    ts_ns: int
    seq: int
    dir_probs: Optional[np.ndarray] = None
    topk_ids: Optional[np.ndarray] = None
    topk_probs: Optional[np.ndarray] = None
    model_version: Optional[str] = None
    error: Optional[str] = None
    latency_s: float = float("nan")
    warm: Optional[bool] = None

    @property
    def ok(self) -> bool:
        return self.error is None


class TickFailed(RuntimeError):
    """Raised by ``stream(..., errors="raise")`` at the first tick the server refused."""

    def __init__(self, prediction: Prediction):
        self.prediction = prediction
        super().__init__(f"{prediction.symbol} tick {prediction.seq} (ts_ns={prediction.ts_ns}): {prediction.error}")
