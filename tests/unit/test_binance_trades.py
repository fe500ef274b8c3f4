"""Binance bookTicker + aggTrades merge on files the tests write: order, ties, aggressor, gaps, bad rows."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from lob.cli import app
from lob.data.binance import import_binance
from lob.data.schema import TickDataError, read_ticks

BT_HEADER = "update_id,best_bid_price,best_bid_qty,best_ask_price,best_ask_qty,transaction_time,event_time"
TR_HEADER = "agg_trade_id,price,quantity,first_trade_id,last_trade_id,transact_time,is_buyer_maker"
T0 = 1_700_006_400_000  # 2023-11-15T00:00:00Z, ms
NS = 1_000_000


def _csv(path: Path, header: str | None, rows) -> Path:
    path.write_text((header + "\n" if header else "") + "".join(",".join(str(v) for v in r) + "\n" for r in rows))
    return path


def book(uid, ms, bid="100.1", bid_qty="2.5", ask="100.2", ask_qty="1.5"):
    return (uid, bid, bid_qty, ask, ask_qty, ms, ms + 3)


def trade(aid, ms, price="100.2", qty="0.3", buyer_maker="false", first=None, last=None):
    first = aid * 10 if first is None else first
    return (aid, price, qty, first, first if last is None else last, T0 + ms, buyer_maker)


def run(tmp_path, books, trades, header=True, out="out"):
    bt = _csv(tmp_path / "bt.csv", BT_HEADER, [book(u, T0 + ms, **kw) for u, ms, kw in books])
    tr = _csv(tmp_path / "tr.csv", TR_HEADER if header else None, trades)
    return import_binance(bt, tr, "BTCUSDT", tmp_path / out, 0.1), bt, tr


def test_trades_merge_in_time_order_with_the_latest_book_and_the_aggressor(tmp_path):
    books = [(1, 0, {}), (2, 5, dict(ask="100.3", ask_qty="0.7")), (3, 5, dict(bid="100.2", bid_qty="1.0", ask="100.3", ask_qty="0.7")), (4, 9, {})]
    trades = [trade(10, 3, buyer_maker="false"),   # between books: carries book 1
              trade(11, 5, price="100.1", buyer_maker="true"),   # same ms as books 2 and 3: before them
              trade(12, 5, price="100.1", qty="0.2", buyer_maker="true"),  # same ms, after trade 11
              trade(13, 9, buyer_maker="False")]   # tie with book 4 again; capitalised booleans read too
    (path,), _, _ = run(tmp_path, books, trades)
    t = read_ticks(path)
    assert t.meta["source"] == "binance-bookticker+aggtrades" and t.meta["n_levels"] == 1
    assert (t.ts_ns // NS - T0).tolist() == [0, 3, 5, 5, 5, 5, 9, 9]
    assert t.trade_side.tolist() == [0, 1, -1, -1, 0, 0, 1, 0]  # is_buyer_maker true: the seller took
    assert t.trade_sz.tolist() == [0, 0.3, 0.3, 0.2, 0, 0, 0.3, 0]
    assert t.trade_px.tolist() == [0, 100.2, 100.1, 100.1, 0, 0, 100.2, 0]
    # the book each row carries: trades the latest one strictly before their ms, book rows their own
    assert t.ask_px[:, 0].tolist() == [100.2, 100.2, 100.2, 100.2, 100.3, 100.3, 100.3, 100.2]
    assert t.bid_px[:, 0].tolist() == [100.1, 100.1, 100.1, 100.1, 100.1, 100.2, 100.2, 100.1]
    assert t.ask_sz[:, 0].tolist() == [1.5, 1.5, 1.5, 1.5, 0.7, 0.7, 0.7, 1.5]
    assert t.meta["trade_id_gaps"] == {"agg_trade_id": 0, "trade_id": 27}  # ids 100, 110, 120, 130: 9 missing each time
    assert t.meta["stale_book_trades"] == 0 and t.meta["dropped"]["trade_before_first_book"] == 0


def test_gaps_stale_books_early_trades_and_days_are_counted(tmp_path):
    day = 86_400_000
    books = [(1, 10, {}), (2, 20, dict(ask_qty="0")), (3, day + 50, {})]  # book 2 is one-sided: dropped
    trades = [trade(1, 4, first=1), trade(2, 25, first=2),          # the first precedes every book: dropped
              trade(5, 3_000, first=7, last=8),                     # 2 agg ids and 4 trade ids missing; book 2.99 s old
              trade(6, day + 1, first=9)]                           # next UTC day, carries the last two-sided book
    paths, _, _ = run(tmp_path, books, trades, header=False)
    first, second = (read_ticks(p) for p in paths)
    assert [p.name for p in paths] == ["2023-11-15.parquet", "2023-11-16.parquet"]
    assert (first.ts_ns // NS - T0).tolist() == [10, 25, 3_000]
    assert first.trade_side.tolist() == [0, 1, 1]
    assert first.meta["dropped"] == {"one_sided_book": 1, "trade_before_first_book": 1}
    assert first.meta["trade_id_gaps"] == {"agg_trade_id": 2, "trade_id": 4}
    assert first.meta["stale_book_trades"] == 2 and first.meta["max_book_age_ms"] == day + 1 - 10
    assert (second.ts_ns // NS - T0).tolist() == [day + 1, day + 50]
    assert second.ask_sz[0, 0] == 1.5 and second.trade_side.tolist() == [1, 0]  # the trade carries the day-1 book
    assert second.meta["dropped"] == {"one_sided_book": 0, "trade_before_first_book": 0}


def test_trades_alone_are_refused_clearly(tmp_path):
    tr = _csv(tmp_path / "tr.csv", TR_HEADER, [trade(1, 0)])
    with pytest.raises(TickDataError, match="tr.csv.*trades file alone.*--bookticker"):
        import_binance(None, tr, "BTCUSDT", tmp_path / "out", 0.1)
    assert not (tmp_path / "out").exists()
    res = CliRunner().invoke(app, ["import", "binance", "--trades", str(tr), "--symbol", "BTCUSDT",
                                   "--out", str(tmp_path / "out")], env={"COLUMNS": "200"})
    assert res.exit_code == 2 and "--bookticker" in res.output and not (tmp_path / "out").exists()


GOOD_BOOKS = [(1, 0, {}), (2, 10, {})]


@pytest.mark.parametrize("bad, row, field", [
    (trade(2, 5, buyer_maker="maybe"), 3, "is_buyer_maker"),
    (trade(2, 5, price="-100.1"), 3, "price"),
    (trade(2, 5, price="100.15"), 3, "price"),
    (trade(2, 5, qty="0"), 3, "quantity"),
    (trade(2, 5, first=30, last=29), 3, "last_trade_id"),
    (trade(1, 5), 3, "agg_trade_id"),
    (trade(2, -1), 3, "transact_time"),
    (trade(2, 5)[:6], 3, "is_buyer_maker"),
    ((*trade(2, 5), 1), 3, "column 8"),
    (trade(2, 5, qty="nan"), 3, "quantity"),
])
def test_malformed_trade_rows_are_named_by_file_row_and_field(tmp_path, bad, row, field):
    rows = [trade(1, 0), bad, trade(3, 8)]
    with pytest.raises(TickDataError) as info:
        run(tmp_path, GOOD_BOOKS, rows)
    text = str(info.value)
    assert "tr.csv" in text and re.search(rf"\brow {row}\b", text) and f"field {field!r}" in text, text
    assert not (tmp_path / "out").exists()


def test_header_less_trades_report_their_own_lines(tmp_path):
    with pytest.raises(TickDataError, match=r"tr.csv, row 2, field 'price'"):
        run(tmp_path, GOOD_BOOKS, [trade(1, 0), trade(2, 5, price="x")], header=False)


def test_cli_merges_and_realism_reads_the_result(tmp_path):
    bt = _csv(tmp_path / "bt.csv", BT_HEADER, [book(i, T0 + 2 * i, bid_qty=f"{1 + i % 3}") for i in range(200)])
    tr = _csv(tmp_path / "tr.csv", TR_HEADER, [trade(i, 2 * i + 1, buyer_maker=["true", "false"][i % 2]) for i in range(100)])
    res = CliRunner().invoke(app, ["import", "binance", "--bookticker", str(bt), "--trades", str(tr), "--symbol", "BTCUSDT",
                                   "--out", str(tmp_path / "out")], env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    t = read_ticks(tmp_path / "out" / "BTCUSDT" / "2023-11-15.parquet")
    assert len(t) == 300 and np.sum(t.trade_side == 1) == 50 and np.sum(t.trade_side == -1) == 50
    res = CliRunner().invoke(app, ["realism", str(tmp_path / "out"), str(tmp_path / "out")], env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
