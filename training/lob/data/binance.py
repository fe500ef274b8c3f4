"""Import Binance public data (data.binance.vision, USD-M futures) into the canonical tick table.

**bookTicker** CSV: header ``update_id,best_bid_price,best_bid_qty,best_ask_price,best_ask_qty,
transaction_time,event_time``, one row per change of the best bid/ask; times are ms since the Unix epoch
(UTC). Each row becomes one tick with a 1-level book (levels 2..10 empty) and no trade print.

**aggTrades** CSV: ``agg_trade_id,price,quantity,first_trade_id,last_trade_id,transact_time,
is_buyer_maker`` (with or without that header line; ``is_buyer_maker`` true/false), one row per
aggregated trade. ``import_binance`` merges it with a bookTicker file in time order: each trade becomes
one tick carrying the latest book (the last bookTicker row at or before it) and the print; the
aggressor is the taker, so ``is_buyer_maker`` true (the buyer rested) is a seller-initiated trade (-1),
false a buyer-initiated one (+1).

Choices:

* ``ts_ns`` is ``transaction_time`` / ``transact_time`` (the matching engine's time), not ``event_time``
  (when the message was pushed); neither file may go backwards, ``update_id`` and ``agg_trade_id`` must
  increase.
* Ties (a trade and a book change in the same ms): the trade comes first and carries the book before
  that ms's changes, because the book change a trade causes is published with the trade's time or later.
  Trades of the same ms keep their ``agg_trade_id`` order, book rows their ``update_id`` order.
* Trades before the first representable book row have no book to carry: dropped and counted
  (``trade_before_first_book``). Gaps are counted, not filled: missing ``agg_trade_id`` s
  (``meta["trade_id_gaps"]``) and trades whose book is more than 1 s old (``meta["stale_book_trades"]``).
* One file per UTC date found in the data, ``out/<symbol>/<YYYY-MM-DD>.parquet``; every day is checked
  before any is written.
* A bookTicker row with a zero best quantity (one-sided book) cannot be represented: dropped and counted in
  ``meta["dropped"]`` and the printed summary; trades after it carry the last two-sided book.
* A trades file alone is refused (``TickDataError``): the canonical table needs a book on every row.

Malformed input raises ``TickDataError`` naming the file, the CSV line (1-based; a header is line 1)
and the column.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa

from lob.data.csvio import csv_header, fail_first, print_import_summary, read_numeric_csv
from lob.data.schema import TickDataError, Ticks, day_path, validate, write_ticks

COLUMNS = {
    "update_id": pa.int64(),
    "best_bid_price": pa.float64(),
    "best_bid_qty": pa.float64(),
    "best_ask_price": pa.float64(),
    "best_ask_qty": pa.float64(),
    "transaction_time": pa.int64(),
    "event_time": pa.int64(),
}
TRADE_COLUMNS = {
    "agg_trade_id": pa.int64(),
    "price": pa.float64(),
    "quantity": pa.float64(),
    "first_trade_id": pa.int64(),
    "last_trade_id": pa.int64(),
    "transact_time": pa.int64(),
    "is_buyer_maker": pa.bool_(),
}
NS_PER_MS = 1_000_000
NS_PER_DAY = 86_400 * 10**9
STALE_BOOK_NS = 10**9


def _on_grid(p: np.ndarray, tick_size: float) -> np.ndarray:
    return np.abs(p / tick_size - np.round(p / tick_size)) <= 1e-6


def _check_time(t: np.ndarray, file: Path, lines: np.ndarray, name: str) -> None:
    fail_first(t <= 0, file, lines, name, lambda i, _: f"{t[i]} is not a positive ms timestamp")
    fail_first(np.r_[False, np.diff(t) < 0], file, lines, name, lambda i, _: f"time goes backwards ({t[i]} after {t[i - 1]})")


def _read_bookticker(file: Path, tick_size: float) -> dict:
    """Parse and check a bookTicker CSV: its columns plus ``lines`` (CSV line of each row) and ``one_sided``."""
    c = read_numeric_csv(file, COLUMNS, header=True)
    n = len(c["update_id"])
    lines = np.arange(2, n + 2)  # line 1 is the header
    for name in ("best_bid_qty", "best_ask_qty"):
        fail_first(c[name] < 0, file, lines, name, lambda i, _: f"negative quantity {c[name][i]}")
    one_sided = (c["best_bid_qty"] == 0) | (c["best_ask_qty"] == 0)  # an empty side may carry any price
    for name in ("best_bid_price", "best_ask_price"):
        p = c[name]
        fail_first(~one_sided & (p <= 0), file, lines, name, lambda i, _: f"price {p[i]} is not positive")
        fail_first(~one_sided & ~_on_grid(p, tick_size), file, lines, name,
                   lambda i, _: f"price {p[i]} is not a multiple of tick_size {tick_size}")
    bid, ask = c["best_bid_price"], c["best_ask_price"]
    fail_first(~one_sided & (bid >= ask), file, lines, "best_bid_price",
               lambda i, _: f"{'locked' if bid[i] == ask[i] else 'crossed'} book: best bid {bid[i]} >= best ask {ask[i]}")
    _check_time(c["transaction_time"], file, lines, "transaction_time")
    uid = c["update_id"]
    fail_first(np.r_[False, np.diff(uid) <= 0], file, lines, "update_id",
               lambda i, _: f"update_id {uid[i]} does not increase (after {uid[i - 1]}): rows out of order or repeated")
    return {**c, "lines": lines, "one_sided": one_sided}


def _read_trades(file: Path, tick_size: float) -> dict:
    """Parse and check an aggTrades CSV (header line optional): its columns plus ``lines``."""
    header = csv_header(file, header=True)[0] == "agg_trade_id"
    c = read_numeric_csv(file, TRADE_COLUMNS, header=header)
    n = len(c["agg_trade_id"])
    lines = np.arange(n) + (2 if header else 1)
    p, q = c["price"], c["quantity"]
    fail_first(p <= 0, file, lines, "price", lambda i, _: f"price {p[i]} is not positive")
    fail_first(~_on_grid(p, tick_size), file, lines, "price", lambda i, _: f"price {p[i]} is not a multiple of tick_size {tick_size}")
    fail_first(q <= 0, file, lines, "quantity", lambda i, _: f"quantity {q[i]} is not positive")
    first, last = c["first_trade_id"], c["last_trade_id"]
    fail_first(last < first, file, lines, "last_trade_id", lambda i, _: f"last_trade_id {last[i]} < first_trade_id {first[i]}")
    _check_time(c["transact_time"], file, lines, "transact_time")
    aid = c["agg_trade_id"]
    fail_first(np.r_[False, np.diff(aid) <= 0], file, lines, "agg_trade_id",
               lambda i, _: f"agg_trade_id {aid[i]} does not increase (after {aid[i - 1]}): rows out of order or repeated")
    return {**c, "lines": lines}


def import_binance_bookticker(file: Path, symbol: str, out: Path, tick_size: float) -> list[Path]:
    """Import one bookTicker CSV; returns the written day files in date order (see module docstring)."""
    return import_binance(file, None, symbol, out, tick_size)


def import_binance(bookticker: Path | None, trades: Path | None, symbol: str, out: Path, tick_size: float) -> list[Path]:
    """Import a bookTicker CSV, merged in time order with an aggTrades CSV when given (see module docstring).

    Returns the written day files in date order.
    """
    if bookticker is None:
        where = str(trades) if trades is not None else "binance import"
        raise TickDataError(where, None, None, "a trades file alone cannot be imported: every canonical tick carries "
                            "the book, so give the bookTicker file of the same period too (--bookticker)")
    file = Path(bookticker)
    if not tick_size > 0:
        raise TickDataError(str(file), None, "tick_size", f"{tick_size} is not a positive price step")
    c = _read_bookticker(file, tick_size)
    n_book = len(c["update_id"])
    keep = np.flatnonzero(~c["one_sided"])
    if keep.size == 0:
        raise TickDataError(str(file), None, "best_bid_qty", "no representable rows: every row has an empty best level")
    book_ts = c["transaction_time"][keep] * NS_PER_MS
    dropped = {"one_sided_book": int(c["one_sided"].sum())}
    n_read = n_book
    # per merged row: the book row it carries (index into keep), the trade (index into t or -1), where it came from
    if trades is None:
        ts_ns, book_of, trade_of = book_ts, np.arange(keep.size), np.full(keep.size, -1)
        files, lines = np.zeros(keep.size, np.int64), c["lines"][keep]
        sources, source = [file], "binance-bookticker"
        extra_meta = {}
    else:
        tfile = Path(trades)
        t = _read_trades(tfile, tick_size)
        n_tr = len(t["agg_trade_id"])
        n_read += n_tr
        tr_ts = t["transact_time"] * NS_PER_MS
        # the latest book at or before each trade, changes of the trade's own ms excluded (ties: trade first)
        latest = np.searchsorted(book_ts, tr_ts, side="left") - 1
        has_book = latest >= 0
        dropped["trade_before_first_book"] = int((~has_book).sum())
        tr = np.flatnonzero(has_book)
        # merge: book rows keyed (ms, 1, position), trades (ms, 0, position): a stable lexsort keeps file order
        key_ts = np.r_[book_ts, tr_ts[tr]]
        key_kind = np.r_[np.ones(keep.size, np.int8), np.zeros(tr.size, np.int8)]
        order = np.lexsort((np.r_[np.arange(keep.size), tr], key_kind, key_ts))
        is_trade = key_kind[order] == 0
        pos = np.r_[np.arange(keep.size), tr][order]
        ts_ns = key_ts[order]
        trade_of = np.where(is_trade, pos, -1)
        book_of = np.where(is_trade, latest[np.where(is_trade, pos, 0)], pos)
        files = is_trade.astype(np.int64)
        lines = np.where(is_trade, t["lines"][np.where(is_trade, pos, 0)], c["lines"][keep][np.where(is_trade, 0, pos)])
        sources, source = [file, tfile], "binance-bookticker+aggtrades"
        aid, first, last = t["agg_trade_id"], t["first_trade_id"], t["last_trade_id"]
        age = tr_ts[tr] - book_ts[latest[tr]]
        extra_meta = {"trades_file": tfile.name, "trade_rows_read": n_tr,
                      "trade_id_gaps": {"agg_trade_id": int(np.sum(np.diff(aid) - 1)),
                                        "trade_id": int(np.sum(np.maximum(first[1:] - last[:-1] - 1, 0)))},
                      "stale_book_trades": int(np.sum(age > STALE_BOOK_NS)),
                      "max_book_age_ms": float(age.max() / NS_PER_MS) if age.size else 0.0}

    n = ts_ns.size
    rows = keep[book_of]
    bid_px, bid_sz, ask_px, ask_sz = Ticks.empty_book(n)
    bid_px[:, 0], bid_sz[:, 0] = c["best_bid_price"][rows], c["best_bid_qty"][rows]
    ask_px[:, 0], ask_sz[:, 0] = c["best_ask_price"][rows], c["best_ask_qty"][rows]
    trade_px, trade_sz, trade_side = np.zeros(n), np.zeros(n), np.zeros(n, np.int8)
    if trades is not None:
        tt = trade_of >= 0
        trade_px[tt], trade_sz[tt] = t["price"][trade_of[tt]], t["quantity"][trade_of[tt]]
        trade_side[tt] = np.where(t["is_buyer_maker"][trade_of[tt]], -1, 1)

    day_index = ts_ns // NS_PER_DAY  # non-decreasing, so each UTC day is one contiguous run of rows
    starts = np.flatnonzero(np.r_[True, np.diff(day_index) > 0])
    days: list[tuple[Path, Ticks]] = []
    uid = c["update_id"]
    book_day = c["transaction_time"] * NS_PER_MS // NS_PER_DAY  # per row read, for the per-day counts
    for a, b in zip(starts, np.r_[starts[1:], n]):
        date = str(np.datetime64(int(ts_ns[a]), "ns").astype("datetime64[D]"))
        s = slice(a, b)
        this_day = book_day == day_index[a]
        day_dropped = {"one_sided_book": int(np.sum(c["one_sided"] & this_day))}
        if trades is not None:
            day_dropped["trade_before_first_book"] = int(np.sum(~has_book & (tr_ts // NS_PER_DAY == day_index[a])))
        day_books = rows[s][trade_of[s] < 0]
        ticks = Ticks(
            ts_ns=ts_ns[s], bid_px=bid_px[s], bid_sz=bid_sz[s], ask_px=ask_px[s], ask_sz=ask_sz[s],
            trade_px=trade_px[s], trade_sz=trade_sz[s], trade_side=trade_side[s], symbol=symbol,
            meta={"date": date, "tick_size": tick_size, "n_levels": 1, "source": source,
                  "time_field": "transaction_time", "file": file.name, "rows_read": int(this_day.sum()),
                  "update_ids": [int(uid[day_books[0]]), int(uid[day_books[-1]])] if day_books.size else [],
                  "dropped": day_dropped, **extra_meta},
        )
        try:  # every day is checked before any is written; a complaint names the file and CSV line
            validate(ticks, str(file))
        except TickDataError as err:
            if err.row is None:
                raise
            i = a + err.row
            raise TickDataError(str(sources[files[i]]), int(lines[i]), err.field, err.problem) from None
        days.append((day_path(out, symbol, date), ticks))

    written = {write_ticks(path, ticks): len(ticks) for path, ticks in days}
    title = "Binance bookTicker" + (" + aggTrades" if trades is not None else "")
    print_import_summary(f"{title} {symbol} ({len(written)} day(s))", n_read, written, dropped)
    return list(written)
