"""Import LOBSTER (lobsterdata.com) days into the canonical tick table: a message + orderbook CSV pair, or zips.

LOBSTER gives one trading day of one symbol as two header-less CSVs with one row per event, downloaded as a
zip whose members are named ``{SYMBOL}_{YYYY-MM-DD}_{start}_{end}_{message|orderbook}_{L}.csv`` (start/end:
ms after midnight; L: levels), beside a ReadMe. ``import_lobster_zips`` reads the members in memory (nothing
extracted), takes symbol, date and L from the names, and imports every pair exactly as ``import_lobster``
imports the extracted CSVs; a zip that is corrupt, lacks a member, has a name that does not parse, pairs
names that disagree or an orderbook not 4L columns wide is refused by zip and member. The CSVs:

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
Everything (every day of every zip) is checked before the first atomic write, so a failed import leaves no
file behind.
"""
from __future__ import annotations

import re
import zipfile
import zlib
from dataclasses import dataclass
from datetime import datetime, timedelta
from datetime import time as clock
from pathlib import Path, PurePosixPath
from zoneinfo import ZoneInfo

import numpy as np
import pyarrow as pa

from lob.data.csvio import CsvBytes, csv_header, fail_first, print_import_summary, read_numeric_csv
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


def read_lobster(message: Path | CsvBytes, orderbook: Path | CsvBytes, symbol: str, date: str, tick_size: float,
                 named_levels: int | None = None) -> Ticks:
    """Parse and check one LOBSTER day (files or zip members) into canonical ticks; nothing is written.

    ``named_levels``: the level count the orderbook's name gives (its columns must be 4x that); None: its
    column count decides.
    """
    try:
        day = datetime.strptime(date, "%Y-%m-%d").date()
    except ValueError:
        raise TickDataError(str(message), None, "date", f"{date!r} is not a YYYY-MM-DD date") from None
    if not tick_size > 0:
        raise TickDataError(str(message), None, "tick_size", f"{tick_size} is not a positive price step")

    n_cols = len(csv_header(orderbook, header=False))
    if named_levels is not None and n_cols != 4 * named_levels:
        raise TickDataError(str(orderbook), 1, None, f"{n_cols} columns; its name says {named_levels} levels, "
                                                     f"i.e. {4 * named_levels} columns")
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
    return ticks


def _write_day(ticks: Ticks, out: Path) -> Path:
    """Write one imported day to ``out/<symbol>/<date>.parquet`` and print its summary; returns the path."""
    meta = ticks.meta
    path = write_ticks(day_path(out, ticks.symbol, meta["date"]), ticks)
    print_import_summary(f"LOBSTER {ticks.symbol} {meta['date']} ({meta['n_levels']} levels)", meta["rows_read"],
                         {path: len(ticks)}, meta["dropped"])
    return path


def import_lobster(message: Path, orderbook: Path, symbol: str, date: str, out: Path, tick_size: float) -> Path:
    """Import one LOBSTER day from its two CSVs into ``out/<symbol>/<date>.parquet``; returns that path."""
    return _write_day(read_lobster(Path(message), Path(orderbook), symbol, date, tick_size), out)


# ------------------------------------------------------------------------------------------ LOBSTER zips

MEMBER_NAME = re.compile(r"(?P<symbol>[^_/]+)_(?P<date>\d{4}-\d{2}-\d{2})_(?P<start>\d+)_(?P<end>\d+)"
                         r"_(?P<kind>message|orderbook)_(?P<levels>\d+)\.csv")
MEMBER_PATTERN = "{SYMBOL}_{YYYY-MM-DD}_{start}_{end}_{message|orderbook}_{L}.csv"


@dataclass(frozen=True)
class ZipDay:
    """One symbol-day inside a LOBSTER zip: its two member names and what those names say."""
    zip_path: Path
    message: str
    orderbook: str
    symbol: str
    date: str
    n_levels: int


def _member_source(zip_path: Path, member: str) -> str:
    return f"{zip_path} member {member}"


def _zip_members(zip_path: Path) -> list[str]:
    try:
        with zipfile.ZipFile(zip_path) as zf:
            return zf.namelist()
    except (zipfile.BadZipFile, OSError) as err:
        raise TickDataError(str(zip_path), None, None, f"not a readable zip file ({err})") from None


def _read_member(zip_path: Path, member: str) -> CsvBytes:
    """One member's bytes, decompressed in memory (nothing extracted to disk)."""
    source = _member_source(zip_path, member)
    try:
        with zipfile.ZipFile(zip_path) as zf:
            data = zf.read(member)
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as err:
        raise TickDataError(source, None, None, f"corrupt zip member ({err})") from None
    return CsvBytes(source, PurePosixPath(member).name, data)


def _zip_days(zip_path: Path) -> list[ZipDay]:
    """The symbol-days of one LOBSTER zip, paired by member name (other than *.csv members, e.g. the ReadMe, ignored).

    Refused, naming zip and member: a CSV member whose name is not ``MEMBER_PATTERN`` (L in 1..50), a message
    without its orderbook or the reverse, a pair whose symbol, date or level count disagree.
    """
    named: dict[str, list[tuple[tuple, str]]] = {"message": [], "orderbook": []}  # kind -> [(name key, member)]
    for member in _zip_members(zip_path):
        if not member.lower().endswith(".csv"):
            continue
        match = MEMBER_NAME.fullmatch(PurePosixPath(member).name)
        if match is None or not 1 <= int(match["levels"]) <= MAX_LEVELS:
            raise TickDataError(_member_source(zip_path, member), None, None,
                                f"the name is not {MEMBER_PATTERN} with L in 1..{MAX_LEVELS}")
        key = (match["symbol"], match["date"], match["start"], match["end"], int(match["levels"]))
        named[match["kind"]].append((key, member))
    books = dict(named["orderbook"])
    messages = dict(named["message"])
    unpaired_messages = [(k, m) for k, m in named["message"] if k not in books]
    unpaired_books = [(k, m) for k, m in named["orderbook"] if k not in messages]
    if len(unpaired_messages) == 1 and len(unpaired_books) == 1:  # one pair whose names disagree
        (mk, message), (bk, book) = unpaired_messages[0], unpaired_books[0]
        differ = [f"{what} {a!r} vs {b!r}" for what, a, b in zip(("symbol", "date", "start", "end", "levels"), mk, bk)
                  if a != b]
        raise TickDataError(_member_source(zip_path, message), None, None,
                            f"does not match the orderbook member {book}: {', '.join(differ)}")
    unpaired = [(m, "orderbook", "message") for _, m in unpaired_messages] + \
               [(m, "message", "orderbook") for _, m in unpaired_books]
    if unpaired:
        member, kind, other = unpaired[0]
        missing = PurePosixPath(member).name.replace(f"_{other}_", f"_{kind}_")
        raise TickDataError(_member_source(zip_path, member), None, None, f"no {kind} member {missing} beside it")
    if not messages:
        raise TickDataError(str(zip_path), None, None, f"no LOBSTER message/orderbook members ({MEMBER_PATTERN})")
    return [ZipDay(zip_path, message, books[key], key[0], key[1], key[4]) for key, message in messages.items()]


def _zip_paths(zips: list[Path]) -> list[Path]:
    """The zips named, a folder standing for every ``*.zip`` in it."""
    paths = []
    for path in map(Path, zips):
        if path.is_dir():
            found = sorted(path.glob("*.zip"))
            if not found:
                raise TickDataError(str(path), None, None, "folder holds no *.zip file")
            paths += found
        elif not path.exists():
            raise TickDataError(str(path), None, None, "no such file")
        else:
            paths.append(path)
    return paths


def import_lobster_zips(zips: list[Path], out: Path, tick_size: float, symbol: str | None = None,
                        date: str | None = None) -> list[Path]:
    """Import every symbol-day of LOBSTER zips as downloaded (``zips``: files or folders of them); returns the paths.

    Symbol, date and level count come from the member names (``symbol``/``date``, when given, must agree).
    Every zip is read and checked before the first file is written: a refusal leaves ``out`` untouched.
    Output is identical to ``import_lobster`` on the extracted CSVs.
    """
    days = [day for path in _zip_paths(zips) for day in _zip_days(path)]
    seen: dict[tuple[str, str], ZipDay] = {}
    for day in days:
        source = _member_source(day.zip_path, day.message)
        for field, asked, named in (("symbol", symbol, day.symbol), ("date", date, day.date)):
            if asked is not None and asked != named:
                raise TickDataError(source, None, field, f"{asked!r} was asked for; the member name says {named!r}")
        first = seen.setdefault((day.symbol, day.date), day)
        if first is not day:
            raise TickDataError(source, None, None, f"{day.symbol} {day.date} is also in "
                                                    f"{_member_source(first.zip_path, first.message)}")
    ticks = [read_lobster(_read_member(day.zip_path, day.message), _read_member(day.zip_path, day.orderbook),
                          day.symbol, day.date, tick_size, named_levels=day.n_levels) for day in days]
    return [_write_day(t, out) for t in ticks]
