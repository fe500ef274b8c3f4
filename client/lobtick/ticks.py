"""The canonical tick in memory: ``Ticks`` (columnar, one symbol), ``validate`` (naming the bad row and field),
``TickDataError``. Numpy only. Meaning of the columns, and the parquet files they come from: ``lob.data.schema``
(the server package), which builds on this module.

``N_LEVELS`` = 10 book levels per side (level 1 is the best; price 0, size 0 = empty level, always the deepest);
the book is the book *after* the event; level 1 is never empty and the book never crossed or locked.
``lobclient.contract`` takes it from here; ``tests/unit/test_contract.py`` fails when it differs from
``lob.contract.N_LEVELS``.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

N_LEVELS = 10  # book levels per side a tick carries


class TickDataError(ValueError):
    """Malformed tick data. The message names the source (file or stream), the row and the field.

    ``row`` is what a user would look up: importers give the 1-based line of the CSV they read,
    ``validate`` gives the array index plus its ``row_offset``.
    """

    def __init__(self, source: str, row: int | None, field: str | None, problem: str):
        self.source, self.row, self.field, self.problem = source, row, field, problem
        where = source
        if row is not None:
            where += f", row {row}"
        if field is not None:
            where += f", field {field!r}"
        super().__init__(f"{where}: {problem}")


@dataclass
class Ticks:
    """Columnar ticks of one symbol, in time order. Shapes: N ticks, L = N_LEVELS."""

    ts_ns: np.ndarray  # (N,) int64
    bid_px: np.ndarray  # (N, L) float64
    bid_sz: np.ndarray  # (N, L) float64
    ask_px: np.ndarray  # (N, L) float64
    ask_sz: np.ndarray  # (N, L) float64
    trade_px: np.ndarray  # (N,) float64
    trade_sz: np.ndarray  # (N,) float64
    trade_side: np.ndarray  # (N,) int8
    symbol: str = ""
    meta: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.ts_ns.shape[0])

    def slice(self, start: int, stop: int) -> "Ticks":
        s = slice(start, stop)
        return Ticks(self.ts_ns[s], self.bid_px[s], self.bid_sz[s], self.ask_px[s], self.ask_sz[s],
                     self.trade_px[s], self.trade_sz[s], self.trade_side[s], self.symbol, dict(self.meta))

    @staticmethod
    def concat(parts: list["Ticks"]) -> "Ticks":
        if not parts:
            raise ValueError("Ticks.concat needs at least one part")
        cat = lambda name: np.concatenate([getattr(p, name) for p in parts])  # noqa: E731
        meta = dict(parts[0].meta)
        starts = [s for p in parts for s in p.meta.get("session_starts_ns", ())]
        if starts:
            meta["session_starts_ns"] = starts
        return Ticks(cat("ts_ns"), cat("bid_px"), cat("bid_sz"), cat("ask_px"), cat("ask_sz"),
                     cat("trade_px"), cat("trade_sz"), cat("trade_side"), parts[0].symbol, meta)

    def mid(self) -> np.ndarray:
        """(N,) float64 mid price."""
        return 0.5 * (self.bid_px[:, 0] + self.ask_px[:, 0])

    @staticmethod
    def empty_book(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        z = lambda: np.zeros((n, N_LEVELS), dtype=np.float64)  # noqa: E731
        return z(), z(), z(), z()


def validate(t: Ticks, source: str, row_offset: int = 0) -> None:
    """Raise TickDataError naming the first bad row and field; return None when ``t`` is canonical.

    ``row_offset`` maps array index i to the row number reported (i + row_offset).
    """
    n = len(t)
    shapes = {"ts_ns": (n,), "trade_px": (n,), "trade_sz": (n,), "trade_side": (n,),
              "bid_px": (n, N_LEVELS), "bid_sz": (n, N_LEVELS), "ask_px": (n, N_LEVELS), "ask_sz": (n, N_LEVELS)}
    for name, shape in shapes.items():
        if getattr(t, name).shape != shape:
            raise TickDataError(source, None, name, f"shape {getattr(t, name).shape}, expected {shape}")

    if _canonical(t):  # one pass over whole arrays; the checks below only name what is wrong
        return

    def fail(mask: np.ndarray, field_name: str, problem: str, col: int | None = None) -> None:
        bad = np.flatnonzero(mask)
        if bad.size:
            i = int(bad[0])
            fname = field_name if col is None else f"{field_name}_{col + 1}"
            raise TickDataError(source, i + row_offset, fname, problem)

    for name in ("bid_px", "bid_sz", "ask_px", "ask_sz"):
        arr = getattr(t, name)
        for k in range(N_LEVELS):
            fail(~np.isfinite(arr[:, k]), f"{name}", "not a finite number", k)
            fail(arr[:, k] < 0, f"{name}", "negative value", k)
    for name in ("trade_px", "trade_sz"):
        arr = getattr(t, name)
        fail(~np.isfinite(arr), name, "not a finite number")
        fail(arr < 0, name, "negative value")
    fail(~np.isin(t.trade_side, (-1, 0, 1)), "trade_side", "must be -1, 0 or +1")
    is_trade = t.trade_side != 0
    fail(is_trade & ((t.trade_px <= 0) | (t.trade_sz <= 0)), "trade_px", "trade with non-positive price or size")
    fail(~is_trade & ((t.trade_px != 0) | (t.trade_sz != 0)), "trade_side", "trade price/size given without a side")
    if n > 1:
        # report the later row of a backwards pair
        back = np.flatnonzero(np.diff(t.ts_ns) < 0)
        if back.size:
            raise TickDataError(source, int(back[0]) + 1 + row_offset, "ts_ns", "timestamp goes backwards")
    for side, px, sz, sign in (("bid", t.bid_px, t.bid_sz, -1.0), ("ask", t.ask_px, t.ask_sz, 1.0)):
        fail((px[:, 0] <= 0) | (sz[:, 0] <= 0), f"{side}_px", "best level is empty", 0)
        present = (px > 0) & (sz > 0)
        fail(((px > 0) != (sz > 0)).any(axis=1), f"{side}_sz", "a level has a price but no size (or a size but no price)")
        # empty levels must be the deepest ones
        fail((~present[:, :-1] & present[:, 1:]).any(axis=1), f"{side}_px", "a non-empty level below an empty one")
        both = present[:, :-1] & present[:, 1:]
        worse = sign * (px[:, 1:] - px[:, :-1]) > 0
        fail((both & ~worse).any(axis=1), f"{side}_px", f"{side} prices not strictly {'de' if sign < 0 else 'in'}creasing by level")
    fail(t.bid_px[:, 0] >= t.ask_px[:, 0], "bid_px_1", "crossed or locked book (best bid >= best ask)")


def _canonical(t: Ticks) -> bool:
    """``validate``'s rules at once (whole-array reductions, no per-level pass): True iff it would pass."""
    books = (t.bid_px, t.bid_sz, t.ask_px, t.ask_sz)
    with np.errstate(invalid="ignore"):
        if not all(np.isfinite(a).all() and (a >= 0).all() for a in (*books, t.trade_px, t.trade_sz)):
            return False
    traded = t.trade_side != 0
    if not (np.isin(t.trade_side, (-1, 0, 1)).all() and ((t.trade_px > 0) & (t.trade_sz > 0))[traded].all()
            and not (t.trade_px[~traded].any() or t.trade_sz[~traded].any()) and (np.diff(t.ts_ns) >= 0).all()):
        return False
    for px, sz, sign in ((t.bid_px, t.bid_sz, -1.0), (t.ask_px, t.ask_sz, 1.0)):
        present = px > 0
        if not ((sz[:, 0] > 0).all() and present[:, 0].all() and (present == (sz > 0)).all()
                and not (~present[:, :-1] & present[:, 1:]).any()
                and (sign * (px[:, 1:] - px[:, :-1]) > 0)[present[:, 1:]].all()):
            return False
    return bool((t.bid_px[:, 0] < t.ask_px[:, 0]).all())
