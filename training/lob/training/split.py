"""Chronological train / validation / test split of each symbol by fractions of its trading time.

Each symbol is one sequence (all its days concatenated). Its *trading clock* is the elapsed time
between consecutive ticks of the same UTC calendar day; the gap from one day's last tick to the
next day's first tick counts zero, so overnight and weekend gaps do not swallow a fraction of the
span. The split points are the first ticks whose trading clock reaches ``f_train`` and
``f_train + f_val`` of the symbol's total trading time::

    train = ticks before val_start_ts      val = [val_start_ts, test_start_ts)      test = from test_start_ts

A single day of one symbol splits like any other span. Boundaries are recorded as tick timestamps
(ns) in the run manifest, so evaluation reproduces the exact split from the timestamps alone.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from lob.data.schema import Ticks

DEFAULT_FRACTIONS = (0.70, 0.15, 0.15)
_NS_PER_DAY = 86_400 * 10**9


@dataclass(frozen=True)
class SymbolSplit:
    """Where one symbol's ticks split; indices are into its concatenated ticks (half-open ranges)."""

    symbol: str
    n_ticks: int
    val_start: int  # first validation tick index (= number of training ticks)
    test_start: int  # first test tick index
    first_ts: int  # ns, first tick
    val_start_ts: int  # ns, timestamp of the first validation tick (train: ts < this)
    test_start_ts: int  # ns, timestamp of the first test tick
    last_ts: int  # ns, last tick

    @property
    def train(self) -> slice:
        return slice(0, self.val_start)

    @property
    def val(self) -> slice:
        return slice(self.val_start, self.test_start)

    @property
    def test(self) -> slice:
        return slice(self.test_start, self.n_ticks)

    def to_json(self) -> dict:
        return {**asdict(self), "n_train": self.val_start, "n_val": self.test_start - self.val_start,
                "n_test": self.n_ticks - self.test_start}

    @staticmethod
    def from_json(d: dict) -> "SymbolSplit":
        return SymbolSplit(**{k: d[k] for k in SymbolSplit.__dataclass_fields__})


def trading_clock(ts_ns: np.ndarray) -> np.ndarray:
    """(N,) int64 ns of trading time elapsed since the first tick; gaps that change UTC day count zero."""
    gaps = np.diff(ts_ns)
    same_day = (ts_ns[1:] // _NS_PER_DAY) == (ts_ns[:-1] // _NS_PER_DAY)
    return np.concatenate([[0], np.cumsum(np.where(same_day, gaps, 0))]).astype(np.int64)


def split_symbol(ticks: Ticks, fractions: tuple[float, float, float] = DEFAULT_FRACTIONS) -> SymbolSplit:
    """Split one symbol's ticks by fractions of its trading time; every part gets at least one tick."""
    if len(fractions) != 3 or min(fractions) <= 0 or abs(sum(fractions) - 1.0) > 1e-9:
        raise ValueError(f"split fractions must be three positive numbers summing to 1, got {fractions}")
    n = len(ticks)
    if n < 3:
        raise ValueError(f"symbol {ticks.symbol!r}: {n} ticks, need at least 3 to split train/val/test")
    clock = trading_clock(ticks.ts_ns)
    total = float(clock[-1])
    # searchsorted 'left': the first tick at or after each boundary; clamp so no part is empty
    val_start = int(np.searchsorted(clock, fractions[0] * total, side="left"))
    test_start = int(np.searchsorted(clock, (fractions[0] + fractions[1]) * total, side="left"))
    val_start = min(max(val_start, 1), n - 2)
    test_start = min(max(test_start, val_start + 1), n - 1)
    ts = ticks.ts_ns
    return SymbolSplit(ticks.symbol, n, val_start, test_start, int(ts[0]), int(ts[val_start]), int(ts[test_start]),
                       int(ts[-1]))


def split_from_boundaries(ticks: Ticks, recorded: dict) -> SymbolSplit:
    """Rebuild a symbol's split from the timestamps recorded in a manifest (checks the data still matches)."""
    ts = ticks.ts_ns
    val_start = int(np.searchsorted(ts, recorded["val_start_ts"], side="left"))
    test_start = int(np.searchsorted(ts, recorded["test_start_ts"], side="left"))
    got = SymbolSplit(ticks.symbol, len(ticks), val_start, test_start, int(ts[0]), recorded["val_start_ts"],
                      recorded["test_start_ts"], int(ts[-1]))
    want = SymbolSplit.from_json(recorded)
    if got != want:
        raise ValueError(f"symbol {ticks.symbol!r}: the data no longer matches the recorded split "
                         f"(recorded {want}, data gives {got})")
    return got
