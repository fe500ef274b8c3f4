"""Import a LOBSTER (lobsterdata.com) message + orderbook pair into the canonical tick table.

LOBSTER gives one trading day of one symbol as two header-less CSVs with one row per event:

* message: ``time`` (s after midnight, New York local time, up to ns precision), ``type`` (1 new limit
  order, 2 partial cancel, 3 full delete, 4 visible execution, 5 hidden execution, 6 cross trade,
  7 trading halt notice), ``order_id``, ``size`` (shares), ``price`` (USD x 10,000), ``direction`` (side
  of the *resting* order: 1 buy limit, -1 sell limit);
* orderbook: the book after that event, ``ask_price_k, ask_size_k, bid_price_k, bid_size_k`` for levels
  k = 1..L, L in 1..50, prices x 10,000; empty levels carry dummy prices (ask 9999999999,
  bid -9999999999) and size 0.

Mapping choices (counts of every dropped row go into ``meta["dropped"]`` and the printed summary):

* Book: the first 10 levels are kept; fewer are padded with empty levels (price 0, size 0).
* Types 4 and 5 are trade prints at the message price and size. The aggressor is opposite the resting
  order: direction -1 (a sell limit order executed) is a buyer-initiated trade (+1) and vice versa.
  Type 5 leaves the visible book as it was but is still a print.
* Type 6 (cross trade, e.g. the opening or closing auction) is a print whose aggressor the data does not
  give. Its side is inferred the Lee-Ready way: above the mid +1, below -1, at the mid by the tick rule
  (sign of the change from the last print at a different price). A cross whose side stays undecided is
  dropped (``cross_side_unknown``): the canonical table needs a side for every print.
* Type 7 (halt / quote resume / trade resume notice) changes neither book nor trades: dropped (``halt``).
* A row whose book has an empty best level on either side (one-sided book) cannot be represented (the
  canonical table needs both best levels): dropped (``one_sided_book``), whatever its event type.

Timestamps are the date plus seconds after midnight in America/New_York, converted to UTC ns with the
zone's offset (zoneinfo); a day whose events span a daylight-saving change is rejected (US exchanges are
closed then).

Malformed input raises ``TickDataError`` naming the file, the CSV line (1-based) and the field (message:
``time``, ``type``, ``order_id``, ``size``, ``price``, ``direction``; orderbook: ``ask_price_k`` ...).
Everything is checked before the one atomic write, so a failed import leaves no file behind.
"""
from __future__ import annotations

from datetime import datetime, timedelta
from datetime import time as clock
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pyarrow as pa

from lob.data.csvio import csv_header, fail_first, print_import_summary, read_numeric_csv
from lob.data.schema import N_LEVELS, TickDataError, Ticks, day_path, validate, write_ticks

MESSAGE_COLUMNS = ["time", "type", "order_id", "size", "price", "direction"]
BOOK_FIELDS = ("ask_price", "ask_size", "bid_price", "bid_size")  # per level, in file order
MAX_LEVELS = 50
PRICE_SCALE = 10_000.0  # LOBSTER prices are USD x 10,000
ASK_DUMMY, BID_DUMMY = 9_999_999_999.0, -9_999_999_999.0
EXCHANGE_TZ = ZoneInfo("America/New_York")
EVENT_TYPES = np.arange(1, 8)
HALT, CROSS = 7, 6
PRINT_TYPES = (4, 5, 6)


# ---------------------------------------------------------------------------------------------- LOBSTER

def book_field(j: int) -> str:
    """Name of orderbook column j (0-based): ask_price_1, ask_size_1, bid_price_1, bid_size_1, ask_price_2, ..."""
    return f"{BOOK_FIELDS[j % 4]}_{j // 4 + 1}"


def _canonical_to_lobster(field: str | None) -> str | None:
    """``bid_px_3`` -> ``bid_price_3``: name a canonical book field the way the orderbook columns are named."""
    return field and field.replace("_px", "_price").replace("_sz", "_size")


def _utc_offset_ns(day, seconds: float) -> int:
    wall = datetime.combine(day, clock(), tzinfo=EXCHANGE_TZ) + timedelta(seconds=seconds)
    return int(wall.utcoffset() / timedelta(microseconds=1)) * 1000


def _cross_sides(price: np.ndarray, typ: np.ndarray, mid: np.ndarray, crosses: np.ndarray) -> np.ndarray:
    """(len(crosses),) int8 Lee-Ready side of each cross print: quote rule, then tick rule, else 0."""
    sides = np.sign(price[crosses] - mid[crosses])
    if crosses.size == 0:
        return sides.astype(np.int8)
    prints = np.flatnonzero(np.isin(typ, PRINT_TYPES))  # (P,) rows of all prints, in time order
    change = np.sign(np.diff(price[prints], prepend=price[prints[0]]))  # (P,) vs the previous print
    last_change = np.maximum.accumulate(np.where(change != 0, np.arange(prints.size), 0))  # (P,)
    tick = change[last_change]  # (P,) sign vs the last print at a different price; 0 when there is none
    at_mid = sides == 0
    sides[at_mid] = tick[np.searchsorted(prints, crosses[at_mid])]
    return sides.astype(np.int8)


def _check_messages(msg: dict[str, np.ndarray], message: Path, lines: np.ndarray) -> None:
    t, typ, size, price, direction = (msg[c] for c in ("time", "type", "size", "price", "direction"))
    fail_first(~np.isin(typ, EVENT_TYPES), message, lines, "type",
               lambda i, _: f"unknown event type {typ[i]:g} (LOBSTER types are 1-7)")
    fail_first((typ != HALT) & ~np.isin(direction, (-1.0, 1.0)), message, lines, "direction",
               lambda i, _: f"{direction[i]:g} is not 1 (buy) or -1 (sell)")
    fail_first((t < 0) | (t >= 86_400), message, lines, "time", lambda i, _: f"{t[i]} s is not within a day")
    fail_first(np.r_[False, np.diff(t) < 0], message, lines, "time",
               lambda i, _: f"time goes backwards ({t[i]} after {t[i - 1]})")
    is_print = np.isin(typ, PRINT_TYPES)
    fail_first(is_print & (size <= 0), message, lines, "size", lambda i, _: f"trade size {size[i]:g} is not positive")
    fail_first(is_print & (price <= 0), message, lines, "price", lambda i, _: f"trade price {price[i]:g} is not positive")


def _check_book(raw: dict[str, np.ndarray], n_levels: int, orderbook: Path, lines: np.ndarray, tick_size: float):
    """Check all L levels of every row; returns ``px``, ``sz``, ``empty``: ``{"ask"|"bid": (N, L)}``, prices x 10,000."""
    book = np.stack([raw[book_field(j)] for j in range(4 * n_levels)], axis=1)  # (N, 4L)
    px = {"ask": book[:, 0::4], "bid": book[:, 2::4]}  # (N, L)
    sz = {"ask": book[:, 1::4], "bid": book[:, 3::4]}  # (N, L)
    empty = {"ask": px["ask"] == ASK_DUMMY, "bid": px["bid"] == BID_DUMMY}  # (N, L)
    step = tick_size * PRICE_SCALE
    for side in ("ask", "bid"):
        p, s, e = px[side], sz[side], empty[side]
        fail_first(e & (s != 0), orderbook, lines, lambda i, j: f"{side}_size_{j + 1}",
                   lambda i, j: f"size {s[i, j]:g} at an empty level (dummy price)")
        fail_first(~e & (p <= 0), orderbook, lines, lambda i, j: f"{side}_price_{j + 1}",
                   lambda i, j: f"price {p[i, j]:g} is not positive (nor the empty-level dummy)")
        fail_first(~e & (s <= 0), orderbook, lines, lambda i, j: f"{side}_size_{j + 1}",
                   lambda i, j: f"size {s[i, j]:g} is not positive at a priced level")
        off_grid = np.abs(p / step - np.round(p / step)) > 1e-6
        fail_first(~e & off_grid, orderbook, lines, lambda i, j: f"{side}_price_{j + 1}",
                   lambda i, j: f"price {p[i, j] / PRICE_SCALE} is not a multiple of tick_size {tick_size}")
        fail_first(e[:, :-1] & ~e[:, 1:], orderbook, lines, lambda i, j: f"{side}_price_{j + 2}",
                   lambda i, j: f"level {j + 2} is priced but level {j + 1} is empty")
        worse = (p[:, 1:] < p[:, :-1]) if side == "bid" else (p[:, 1:] > p[:, :-1])
        fail_first(~e[:, :-1] & ~e[:, 1:] & ~worse, orderbook, lines, lambda i, j: f"{side}_price_{j + 2}",
                   lambda i, j: f"price {p[i, j + 1] / PRICE_SCALE} is not {'below' if side == 'bid' else 'above'} "
                                f"level {j + 1}'s {p[i, j] / PRICE_SCALE}")
    two_sided = ~(empty["ask"][:, 0] | empty["bid"][:, 0])
    bid, ask = px["bid"][:, 0], px["ask"][:, 0]
    fail_first(two_sided & (bid >= ask), orderbook, lines, "bid_price_1",
               lambda i, _: f"{'locked' if bid[i] == ask[i] else 'crossed'} book: best bid {bid[i] / PRICE_SCALE} "
                            f">= best ask {ask[i] / PRICE_SCALE}")
    return px, sz, empty


def import_lobster(message: Path, orderbook: Path, symbol: str, date: str, out: Path, tick_size: float) -> Path:
    """Import one LOBSTER day into ``out/<symbol>/<date>.parquet``; returns that path (see module docstring)."""
    message, orderbook = Path(message), Path(orderbook)
    try:
        day = datetime.strptime(date, "%Y-%m-%d").date()
    except ValueError:
        raise TickDataError(str(message), None, "date", f"{date!r} is not a YYYY-MM-DD date") from None
    if not tick_size > 0:
        raise TickDataError(str(message), None, "tick_size", f"{tick_size} is not a positive price step")

    n_cols = len(csv_header(orderbook, header=False))
    if n_cols % 4:
        raise TickDataError(str(orderbook), 1, book_field(n_cols - 1),
                            f"{n_cols} columns is not a multiple of 4 (ask price, ask size, bid price, bid size per level)")
    n_levels = n_cols // 4
    if n_levels > MAX_LEVELS:
        raise TickDataError(str(orderbook), 1, book_field(4 * MAX_LEVELS),
                            f"{n_levels} levels; LOBSTER files have at most {MAX_LEVELS}")
    msg = read_numeric_csv(message, {c: pa.float64() for c in MESSAGE_COLUMNS}, header=False)
    raw = read_numeric_csv(orderbook, {book_field(j): pa.float64() for j in range(n_cols)}, header=False,
                           field_name=book_field)
    n = len(msg["time"])
    n_book = len(raw["ask_price_1"])
    if n != n_book:
        short = message if n < n_book else orderbook
        raise TickDataError(str(short), min(n, n_book) + 1, None,
                            f"message file has {n} rows, orderbook file {n_book}: one book row per message expected")
    lines = np.arange(1, n + 1)

    t, typ, size, price, direction = (msg[c] for c in ("time", "type", "size", "price", "direction"))
    _check_messages(msg, message, lines)
    offset_ns = _utc_offset_ns(day, float(t[0]))
    if offset_ns != _utc_offset_ns(day, float(t[-1])):
        raise TickDataError(str(message), n, "time", f"events span a daylight-saving change on {date}")
    px, sz, empty = _check_book(raw, n_levels, orderbook, lines, tick_size)

    halt = typ == HALT
    two_sided = ~(empty["ask"][:, 0] | empty["bid"][:, 0])
    one_sided = ~halt & ~two_sided
    aggressor = np.where(np.isin(typ, (4, 5)), -direction, 0).astype(np.int8)  # opposite the resting order
    crosses = np.flatnonzero((typ == CROSS) & two_sided)
    mid = 0.5 * (px["bid"][:, 0] + px["ask"][:, 0])  # a cross leaves the visible book as it was
    aggressor[crosses] = _cross_sides(price, typ, mid, crosses)
    cross_unknown = (typ == CROSS) & two_sided & (aggressor == 0)
    keep = ~(halt | one_sided | cross_unknown)
    dropped = {"halt": int(halt.sum()), "one_sided_book": int(one_sided.sum()),
               "cross_side_unknown": int(cross_unknown.sum())}
    if not keep.any():
        raise TickDataError(str(orderbook), None, None, f"no representable rows (dropped: {dropped})")

    # ---- canonical ticks
    k = min(n_levels, N_LEVELS)
    bid_px, bid_sz, ask_px, ask_sz = Ticks.empty_book(int(keep.sum()))
    for dst_px, dst_sz, s in ((bid_px, bid_sz, "bid"), (ask_px, ask_sz, "ask")):
        dst_px[:, :k] = np.where(empty[s], 0.0, px[s] / PRICE_SCALE)[keep, :k]
        dst_sz[:, :k] = np.where(empty[s], 0.0, sz[s])[keep, :k]
    is_print = aggressor != 0
    wall_ns = np.round(t * 1e9).astype(np.int64)  # float64 s < 86,400 resolves 1e-11 s: exact to the ns
    midnight_ns = np.datetime64(day, "ns").astype(np.int64)
    ticks = Ticks(
        ts_ns=(midnight_ns + wall_ns - offset_ns)[keep],
        bid_px=bid_px, bid_sz=bid_sz, ask_px=ask_px, ask_sz=ask_sz,
        trade_px=np.where(is_print, price / PRICE_SCALE, 0.0)[keep],
        trade_sz=np.where(is_print, size, 0.0)[keep],
        trade_side=aggressor[keep],
        symbol=symbol,
        meta={"date": date, "tick_size": tick_size, "n_levels": n_levels, "source": "lobster",
              "rows_read": n, "dropped": dropped, "files": [message.name, orderbook.name]},
    )
    try:  # the checks above should leave nothing; name a canonical complaint the orderbook's way
        validate(ticks, str(orderbook))
    except TickDataError as err:
        row = None if err.row is None else int(lines[keep][err.row])
        raise TickDataError(str(orderbook), row, _canonical_to_lobster(err.field), err.problem) from None

    path = write_ticks(day_path(out, symbol, date), ticks)
    print_import_summary(f"LOBSTER {symbol} {date} ({n_levels} levels)", n, {path: len(ticks)}, dropped)
    return path
