"""Import a Binance bookTicker CSV (data.binance.vision, USD-M futures) into the canonical tick table.

The file has a header ``update_id,best_bid_price,best_bid_qty,best_ask_price,best_ask_qty,
transaction_time,event_time`` and one row per change of the best bid/ask; times are ms since the Unix
epoch (UTC). Each row becomes one tick with a 1-level book (levels 2..10 empty) and no trade print.

Choices:

* ``ts_ns`` is ``transaction_time`` (the matching engine's time of the change), not ``event_time`` (when
  the message was pushed); it must not go backwards and ``update_id`` must increase.
* One file per UTC date found in the data, ``out/<symbol>/<YYYY-MM-DD>.parquet``; every day is checked
  before any is written.
* A row with a zero best quantity (one-sided book) cannot be represented: dropped and counted in
  ``meta["dropped"]`` and the printed summary.

Malformed input raises ``TickDataError`` naming the file, the CSV line (1-based, the header is line 1)
and the column.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa

from lob.data.csvio import fail_first, print_import_summary, read_numeric_csv
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
NS_PER_MS = 1_000_000
NS_PER_DAY = 86_400 * 10**9


def import_binance_bookticker(file: Path, symbol: str, out: Path, tick_size: float) -> list[Path]:
    """Import one bookTicker CSV; returns the written day files in date order (see module docstring)."""
    file = Path(file)
    if not tick_size > 0:
        raise TickDataError(str(file), None, "tick_size", f"{tick_size} is not a positive price step")
    c = read_numeric_csv(file, COLUMNS, header=True)
    n = len(c["update_id"])
    lines = np.arange(2, n + 2)  # line 1 is the header

    for name in ("best_bid_qty", "best_ask_qty"):
        fail_first(c[name] < 0, file, lines, name, lambda i, _: f"negative quantity {c[name][i]}")
    one_sided = (c["best_bid_qty"] == 0) | (c["best_ask_qty"] == 0)  # an empty side may carry any price
    for name in ("best_bid_price", "best_ask_price"):
        p = c[name]
        fail_first(~one_sided & (p <= 0), file, lines, name, lambda i, _: f"price {p[i]} is not positive")
        fail_first(~one_sided & (np.abs(p / tick_size - np.round(p / tick_size)) > 1e-6), file, lines, name,
                   lambda i, _: f"price {p[i]} is not a multiple of tick_size {tick_size}")
    bid, ask = c["best_bid_price"], c["best_ask_price"]
    fail_first(~one_sided & (bid >= ask), file, lines, "best_bid_price",
               lambda i, _: f"{'locked' if bid[i] == ask[i] else 'crossed'} book: best bid {bid[i]} >= best ask {ask[i]}")
    tt = c["transaction_time"]
    fail_first(tt <= 0, file, lines, "transaction_time", lambda i, _: f"{tt[i]} is not a positive ms timestamp")
    fail_first(np.r_[False, np.diff(tt) < 0], file, lines, "transaction_time",
               lambda i, _: f"time goes backwards ({tt[i]} after {tt[i - 1]})")
    uid = c["update_id"]
    fail_first(np.r_[False, np.diff(uid) <= 0], file, lines, "update_id",
               lambda i, _: f"update_id {uid[i]} does not increase (after {uid[i - 1]}): rows out of order or repeated")

    ts_ns = tt * NS_PER_MS
    day_index = ts_ns // NS_PER_DAY  # non-decreasing, so each UTC day is one contiguous run of rows
    starts = np.flatnonzero(np.r_[True, np.diff(day_index) > 0])
    days: list[tuple[Path, Ticks]] = []
    for a, b in zip(starts, np.r_[starts[1:], n]):
        date = str(np.datetime64(int(ts_ns[a]), "ns").astype("datetime64[D]"))
        rows = a + np.flatnonzero(~one_sided[a:b])
        if rows.size == 0:  # a day of one-sided rows only: nothing to write
            continue
        bid_px, bid_sz, ask_px, ask_sz = Ticks.empty_book(rows.size)
        bid_px[:, 0], bid_sz[:, 0] = c["best_bid_price"][rows], c["best_bid_qty"][rows]
        ask_px[:, 0], ask_sz[:, 0] = c["best_ask_price"][rows], c["best_ask_qty"][rows]
        ticks = Ticks(
            ts_ns=ts_ns[rows], bid_px=bid_px, bid_sz=bid_sz, ask_px=ask_px, ask_sz=ask_sz,
            trade_px=np.zeros(rows.size), trade_sz=np.zeros(rows.size), trade_side=np.zeros(rows.size, np.int8),
            symbol=symbol,
            meta={"date": date, "tick_size": tick_size, "n_levels": 1, "source": "binance-bookticker",
                  "time_field": "transaction_time", "file": file.name, "rows_read": int(b - a),
                  "update_ids": [int(uid[a]), int(uid[b - 1])], "dropped": {"one_sided_book": int(b - a - rows.size)}},
        )
        try:  # every day is checked before any is written; a complaint names the CSV line
            validate(ticks, str(file))
        except TickDataError as err:
            row = None if err.row is None else int(lines[rows[err.row]])
            raise TickDataError(str(file), row, err.field, err.problem) from None
        days.append((day_path(out, symbol, date), ticks))
    if not days:
        raise TickDataError(str(file), None, "best_bid_qty", "no representable rows: every row has an empty best level")

    written = {write_ticks(path, ticks): len(ticks) for path, ticks in days}
    print_import_summary(f"Binance bookTicker {symbol} ({len(written)} day(s))", n, written,
                         {"one_sided_book": int(one_sided.sum())})
    return list(written)
