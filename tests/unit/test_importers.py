"""LOBSTER (CSVs and zips) and Binance bookTicker importers: real samples, hand-written files, every malformed case, CLI."""
from __future__ import annotations

import csv
import re
import zipfile
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from lob.cli import app
from lob.data.binance import import_binance_bookticker
from lob.data.lobster import import_lobster, import_lobster_zips
from lob.data.schema import TickDataError, read_ticks

DATA = Path(__file__).parents[2].parent / "shared" / "data"
LOBSTER_MESSAGE = DATA / "lobster" / "AAPL_2012-06-21_34200000_57600000_message_10.csv"
LOBSTER_BOOK = DATA / "lobster" / "AAPL_2012-06-21_34200000_57600000_orderbook_10.csv"
BINANCE = DATA / "binance" / "BTCUSDT-bookTicker-2023-10-02-short.csv"
needs_samples = pytest.mark.skipif(not (LOBSTER_MESSAGE.exists() and BINANCE.exists()),
                                   reason=f"real market data samples not found under {DATA}")
# LOBSTER's free sample days as downloaded: symbol -> (zip, level count, events per the ReadMe / the issue)
LOBSTER_DAYS = {"GOOG": (DATA / "lobster" / "LOBSTER_SampleFile_GOOG_2012-06-21_10.zip", 10, 147_916),
                "AAPL": (DATA / "lobster" / "LOBSTER_SampleFile_AAPL_2012-06-21_1.zip", 1, 118_497)}
needs_days = pytest.mark.skipif(not all(z.exists() for z, _, _ in LOBSTER_DAYS.values()),
                                reason=f"LOBSTER sample day zips not found under {DATA / 'lobster'}")

ASK_DUMMY, BID_DUMMY = 9999999999, -9999999999
BINANCE_HEADER = "update_id,best_bid_price,best_bid_qty,best_ask_price,best_ask_qty,transaction_time,event_time"
T0_MS = 1_700_006_400_000  # 2023-11-15T00:00:00Z


def read_rows(path: Path, skip_header: bool = False) -> list[list[str]]:
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    return rows[1:] if skip_header else rows


def write_rows(path: Path, rows) -> Path:
    path.write_text("".join(",".join(str(v) for v in row) + "\n" for row in rows))
    return path


def book(n_levels: int, depth: int | None = None, bid: int = 1_000_000, ask: int = 1_000_100) -> list[int]:
    """One LOBSTER orderbook row: level k at bid - 100k / ask + 100k (x 10,000, i.e. 1 cent apart);
    levels from ``depth`` on are empty (dummy prices, size 0). Sizes: ask 100 + k, bid 200 + k."""
    depth = n_levels if depth is None else depth
    row = []
    for k in range(n_levels):
        present = k < depth
        row += [ask + 100 * k if present else ASK_DUMMY, 100 + k if present else 0,
                bid - 100 * k if present else BID_DUMMY, 200 + k if present else 0]
    return row


def lobster_files(tmp_path: Path, messages, books) -> tuple[Path, Path]:
    tmp_path.mkdir(parents=True, exist_ok=True)
    return (write_rows(tmp_path / "X_message.csv", messages), write_rows(tmp_path / "X_orderbook.csv", books))


# three events: a new bid, a visible execution of a sell limit order (buyer-initiated), a cancel
MESSAGES = [(34200.0, 1, 11, 100, 999_900, 1), (34200.5, 4, 7, 30, 1_000_100, -1), (34201.25, 3, 11, 100, 999_900, 1)]


def run_lobster(tmp_path: Path, messages=MESSAGES, books=None, date: str = "2024-06-03"):
    msg, ob = lobster_files(tmp_path, messages, books if books is not None else [book(10)] * len(messages))
    path = import_lobster(msg, ob, symbol="X", date=date, out=tmp_path / "out", tick_size=0.01)
    return read_ticks(path)


def assert_rejected(call, file: Path, row: int | None, field: str | None, out: Path) -> str:
    """``call`` raises TickDataError naming file, row and field, and leaves no file under ``out``."""
    with pytest.raises(TickDataError) as info:
        call()
    text = str(info.value)
    assert file.name in text
    if row is not None:
        assert re.search(rf"\brow {row}\b", text), text
    if field is not None:
        assert f"field {field!r}" in text, text
    assert not out.exists() or not [p for p in out.rglob("*") if p.is_file()]
    return text


# ------------------------------------------------------------------------------------------ real samples

@needs_samples
def test_lobster_sample_round_trips_book_trades_and_time(tmp_path):
    ticks = read_ticks(import_lobster(LOBSTER_MESSAGE, LOBSTER_BOOK, "AAPL", "2012-06-21", tmp_path, 0.01))
    messages, books = read_rows(LOBSTER_MESSAGE), read_rows(LOBSTER_BOOK)
    assert len(ticks) == len(messages) == len(books)
    assert ticks.meta["source"] == "lobster" and ticks.meta["n_levels"] == 10 and ticks.meta["date"] == "2012-06-21"

    first = [int(v) for v in books[0]]  # ask px, ask sz, bid px, bid sz per level, prices in 1/10,000 USD
    np.testing.assert_allclose(ticks.ask_px[0], np.array(first[0::4]) / 10_000)
    np.testing.assert_allclose(ticks.bid_px[0], np.array(first[2::4]) / 10_000)
    np.testing.assert_array_equal(ticks.ask_sz[0], first[1::4])
    np.testing.assert_array_equal(ticks.bid_sz[0], first[3::4])
    assert (ticks.bid_px[0, 0], ticks.ask_px[0, 0]) == (585.33, 585.94)

    # 34200.004241176 s after midnight in New York on 2012-06-21 (EDT, UTC-4)
    assert ticks.ts_ns[0] == np.datetime64("2012-06-21T13:30:00.004241176", "ns").astype(np.int64)

    types = np.array([int(m[1]) for m in messages])
    assert int((ticks.trade_side != 0).sum()) == int(np.isin(types, (4, 5)).sum()) == 159
    sell_limit_hit = next(i for i, m in enumerate(messages) if m[1] == "4" and m[5] == "-1")
    buy_limit_hit = next(i for i, m in enumerate(messages) if m[1] == "4" and m[5] == "1")
    hidden = next(i for i, m in enumerate(messages) if m[1] == "5")
    assert ticks.trade_side[sell_limit_hit] == 1  # a resting sell order executed: a buyer took it
    assert ticks.trade_side[buy_limit_hit] == -1
    assert ticks.trade_side[hidden] == -int(messages[hidden][5])
    for i in (sell_limit_hit, buy_limit_hit, hidden):
        assert ticks.trade_px[i] == int(messages[i][4]) / 10_000 and ticks.trade_sz[i] == int(messages[i][3])
    assert ticks.trade_side[types == 1].tolist() == [0] * int((types == 1).sum())


@needs_samples
def test_binance_sample_round_trips_best_levels_and_time(tmp_path):
    paths = import_binance_bookticker(BINANCE, "BTCUSDT", tmp_path, 0.1)
    assert paths == [tmp_path / "BTCUSDT" / "2023-10-02.parquet"]
    ticks = read_ticks(paths[0])
    rows = read_rows(BINANCE, skip_header=True)
    assert len(ticks) == len(rows) == 9_999
    assert ticks.meta["source"] == "binance-bookticker" and ticks.meta["n_levels"] == 1
    for i in (0, len(rows) - 1):
        _, bid, bid_qty, ask, ask_qty, transaction_ms, _ = rows[i]
        assert (ticks.bid_px[i, 0], ticks.bid_sz[i, 0]) == (float(bid), float(bid_qty))
        assert (ticks.ask_px[i, 0], ticks.ask_sz[i, 0]) == (float(ask), float(ask_qty))
        assert ticks.ts_ns[i] == int(transaction_ms) * 1_000_000
    assert (ticks.bid_px[0, 0], ticks.ask_px[0, 0]) == (27981.3, 27981.4)
    assert not ticks.bid_px[:, 1:].any() and not ticks.ask_sz[:, 1:].any() and not ticks.trade_side.any()


@pytest.fixture(scope="module")
def lobster_days(tmp_path_factory) -> dict[str, Path]:
    """Both sample day zips imported once (the folder that holds them given as --zip): symbol -> parquet path."""
    out = tmp_path_factory.mktemp("lobster_days")
    paths = import_lobster_zips([DATA / "lobster"], out, tick_size=0.01)
    return {p.parent.name: p for p in paths}


@needs_days
@pytest.mark.parametrize("symbol", ["GOOG", "AAPL"])
def test_lobster_zip_day_takes_symbol_date_and_levels_from_member_names(lobster_days, symbol):
    _, n_levels, events = LOBSTER_DAYS[symbol]
    assert lobster_days[symbol] == lobster_days[symbol].parents[1] / symbol / "2012-06-21.parquet"
    ticks = read_ticks(lobster_days[symbol])
    assert ticks.symbol == symbol and ticks.meta["date"] == "2012-06-21" and ticks.meta["n_levels"] == n_levels
    assert ticks.meta["rows_read"] == events and len(ticks) + sum(ticks.meta["dropped"].values()) == events
    # 09:30 to 16:00 New York (EDT, UTC-4)
    assert np.datetime64("2012-06-21T13:30", "ns").astype(np.int64) <= ticks.ts_ns[0]
    assert ticks.ts_ns[-1] <= np.datetime64("2012-06-21T20:00", "ns").astype(np.int64)
    priced = (ticks.bid_px > 0) & (ticks.ask_px > 0)  # (N, 10)
    assert priced[:, 0].all()
    assert priced[:, n_levels - 1].mean() > 0.9  # the file's deepest level is in use
    assert not priced[:, n_levels:].any() and not ticks.bid_sz[:, n_levels:].any()  # AAPL: levels 2-10 empty


@needs_days
@pytest.mark.parametrize("symbol", ["GOOG", "AAPL"])
def test_lobster_zip_imports_as_its_extracted_csvs_do(lobster_days, symbol, tmp_path):
    import pyarrow.parquet as pq

    zip_path = LOBSTER_DAYS[symbol][0]
    with zipfile.ZipFile(zip_path) as zf:
        zf.extractall(tmp_path / "csv")
    message, orderbook = (next((tmp_path / "csv").glob(f"*_{kind}_*.csv")) for kind in ("message", "orderbook"))
    from_csv = pq.read_table(import_lobster(message, orderbook, symbol, "2012-06-21", tmp_path / "out", 0.01))
    from_zip = pq.read_table(lobster_days[symbol])
    assert from_zip.equals(from_csv) and from_zip.schema.metadata == from_csv.schema.metadata


# --------------------------------------------------------------------------------- hand-written LOBSTER

@pytest.mark.parametrize("n_levels, depth", [(1, 1), (5, 4), (10, 10), (50, 50)])
def test_lobster_any_level_count_keeps_first_ten_and_pads(tmp_path, n_levels, depth):
    ticks = run_lobster(tmp_path, books=[book(n_levels, depth)] * 3)
    kept = min(depth, 10)
    expected_bid = np.zeros(10)
    expected_bid[:kept] = [100.00 - 0.01 * k for k in range(kept)]
    expected_ask_sz = np.zeros(10)
    expected_ask_sz[:kept] = [100 + k for k in range(kept)]
    np.testing.assert_allclose(ticks.bid_px, np.tile(expected_bid, (3, 1)))
    np.testing.assert_array_equal(ticks.ask_sz, np.tile(expected_ask_sz, (3, 1)))
    assert ticks.meta["n_levels"] == n_levels
    assert ticks.trade_side.tolist() == [0, 1, 0] and ticks.trade_px[1] == 100.01 and ticks.trade_sz[1] == 30


def test_lobster_time_is_new_york_local_converted_to_utc(tmp_path):
    summer = run_lobster(tmp_path / "s", date="2024-06-03")  # EDT, UTC-4
    winter = run_lobster(tmp_path / "w", date="2024-01-10")  # EST, UTC-5
    assert summer.ts_ns.tolist() == [np.datetime64(f"2024-06-03T13:30:{s}", "ns").astype(np.int64).item()
                                     for s in ("00", "00.5", "01.25")]
    assert winter.ts_ns[0] == np.datetime64("2024-01-10T14:30:00", "ns").astype(np.int64)


def test_lobster_halts_are_dropped_and_counted(tmp_path):
    messages = [MESSAGES[0], (34200.2, 7, 0, 0, -1, -1), (34200.3, 7, 0, 0, 0, -1), (34200.4, 7, 0, 0, 1, -1),
                *MESSAGES[1:]]
    ticks = run_lobster(tmp_path, messages)
    assert len(ticks) == 3 and ticks.meta["dropped"]["halt"] == 3
    assert ticks.trade_side.tolist() == [0, 1, 0]


def test_lobster_hidden_execution_is_a_print_that_leaves_the_book(tmp_path):
    # a hidden buy limit order executed inside the spread: seller-initiated, visible book unchanged
    messages = [MESSAGES[0], (34200.7, 5, 99, 40, 1_000_050, 1)]
    ticks = run_lobster(tmp_path, messages)
    assert ticks.trade_side.tolist() == [0, -1]
    assert (ticks.trade_px[1], ticks.trade_sz[1]) == (100.005, 40)
    np.testing.assert_array_equal(ticks.bid_px[1], ticks.bid_px[0])
    np.testing.assert_array_equal(ticks.ask_sz[1], ticks.ask_sz[0])


def test_lobster_cross_trades_get_lee_ready_side_or_are_dropped(tmp_path):
    mid = 1_000_050  # bid 100.00, ask 100.01
    messages = [(34200.0, 6, 0, 500, mid, -1),             # at the mid, no earlier print: side unknown
                (34200.1, 6, 0, 500, 1_000_100, -1),       # above the mid: buyer-initiated
                (34200.2, 4, 7, 10, 1_000_000, 1),         # a print at 100.00
                (34200.3, 6, 0, 700, mid, 1),              # at the mid, up from the last print: +1
                (34200.4, 6, 0, 300, mid, -1)]             # zero tick: up from the last different price
    ticks = run_lobster(tmp_path, messages)
    assert ticks.meta["dropped"]["cross_side_unknown"] == 1
    assert ticks.trade_side.tolist() == [1, -1, 1, 1]
    assert ticks.trade_sz.tolist() == [500, 10, 700, 300]


def test_lobster_one_sided_book_rows_are_dropped_and_counted(tmp_path):
    no_bid = book(10)
    no_bid[2::4], no_bid[3::4] = [BID_DUMMY] * 10, [0] * 10
    ticks = run_lobster(tmp_path, books=[book(10), no_bid, book(10)])
    assert len(ticks) == 2 and ticks.meta["dropped"]["one_sided_book"] == 1
    assert ticks.ts_ns[1] - ticks.ts_ns[0] == 1_250_000_000  # rows 1 and 3 kept


# ------------------------------------------------------------------------------- malformed LOBSTER input

def _reject_lobster(tmp_path, messages, books, file: str, row, field):
    msg, ob = lobster_files(tmp_path, messages, books)
    out = tmp_path / "out"
    return assert_rejected(lambda: import_lobster(msg, ob, "X", "2024-06-03", out, 0.01),
                           msg if file == "message" else ob, row, field, out)


def test_lobster_rejects_missing_field(tmp_path):
    messages = [MESSAGES[0], MESSAGES[1], MESSAGES[2][:5]]
    _reject_lobster(tmp_path, messages, [book(10)] * 3, "message", 3, "direction")


def test_lobster_rejects_extra_field(tmp_path):
    messages = [MESSAGES[0], (*MESSAGES[1], 0), MESSAGES[2]]
    _reject_lobster(tmp_path, messages, [book(10)] * 3, "message", 2, "column 7")


@pytest.mark.parametrize("value", ["NaN", "", "inf"])
def test_lobster_rejects_missing_nan_or_infinite_value(tmp_path, value):
    messages = [MESSAGES[0], (34200.5, 4, 7, 30, value, -1), MESSAGES[2]]
    _reject_lobster(tmp_path, messages, [book(10)] * 3, "message", 2, "price")


def test_lobster_rejects_non_numeric_book_value(tmp_path):
    bad = book(10)
    bad[7] = "abc"  # bid size of level 2
    _reject_lobster(tmp_path, MESSAGES, [book(10), book(10), bad], "orderbook", 3, "bid_size_2")


def test_lobster_rejects_time_going_backwards(tmp_path):
    messages = [MESSAGES[0], MESSAGES[1], (34200.4, 3, 11, 100, 999_900, 1)]
    _reject_lobster(tmp_path, messages, [book(10)] * 3, "message", 3, "time")


@pytest.mark.parametrize("bid, word", [(1_000_100, "locked"), (1_000_200, "crossed")])
def test_lobster_rejects_crossed_or_locked_book(tmp_path, bid, word):
    books = [book(10), book(10, bid=bid), book(10)]
    text = _reject_lobster(tmp_path, MESSAGES, books, "orderbook", 2, "bid_price_1")
    assert word in text


def test_lobster_rejects_columns_not_a_multiple_of_four(tmp_path):
    _reject_lobster(tmp_path, MESSAGES, [book(10) + [5]] * 3, "orderbook", 1, "ask_price_11")


def test_lobster_rejects_more_than_fifty_levels(tmp_path):
    _reject_lobster(tmp_path, MESSAGES, [book(51)] * 3, "orderbook", 1, "ask_price_51")


def test_lobster_rejects_a_book_row_with_fewer_levels(tmp_path):
    _reject_lobster(tmp_path, MESSAGES, [book(10), book(10), book(9)], "orderbook", 3, "ask_price_10")


def test_lobster_rejects_row_count_mismatch(tmp_path):
    _reject_lobster(tmp_path, MESSAGES, [book(10)] * 2, "orderbook", 3, None)


def test_lobster_rejects_unknown_event_type(tmp_path):
    messages = [MESSAGES[0], (34200.5, 8, 7, 30, 1_000_100, -1), MESSAGES[2]]
    _reject_lobster(tmp_path, messages, [book(10)] * 3, "message", 2, "type")


def test_lobster_rejects_levels_out_of_price_order(tmp_path):
    bad = book(10)
    bad[4 * 3 + 2] = bad[4 * 2 + 2]  # bid level 4 repeats level 3's price
    _reject_lobster(tmp_path, MESSAGES, [book(10), bad, book(10)], "orderbook", 2, "bid_price_4")


# ------------------------------------------------------------------------------------ hand-written Binance

def binance_file(tmp_path: Path, rows, header: str = BINANCE_HEADER) -> Path:
    path = tmp_path / "bt.csv"
    path.write_text(header + "\n" + "".join(",".join(str(v) for v in r) + "\n" for r in rows))
    return path


def bt_row(i: int, ms: int, bid: str = "100.1", bid_qty: str = "2.5", ask: str = "100.2", ask_qty: str = "1.5"):
    return (1000 + i, bid, bid_qty, ask, ask_qty, ms, ms + 3)


def test_binance_splits_utc_days_and_drops_one_sided_rows(tmp_path):
    day = 86_400_000
    rows = [bt_row(0, T0_MS - 5), bt_row(1, T0_MS - 1, ask_qty="0"), bt_row(2, T0_MS), bt_row(3, T0_MS + 7, bid="100.0"),
            bt_row(4, T0_MS + day)]
    paths = import_binance_bookticker(binance_file(tmp_path, rows), "BTCUSDT", tmp_path / "out", 0.1)
    assert [p.name for p in paths] == ["2023-11-14.parquet", "2023-11-15.parquet", "2023-11-16.parquet"]
    first, second, third = (read_ticks(p) for p in paths)
    assert len(first) == 1 and first.meta["dropped"] == {"one_sided_book": 1}
    assert second.ts_ns.tolist() == [T0_MS * 1_000_000, (T0_MS + 7) * 1_000_000]
    assert second.bid_px[:, 0].tolist() == [100.1, 100.0] and second.meta["date"] == "2023-11-15"
    assert len(third) == 1


def _reject_binance(tmp_path, rows, row, field, header=BINANCE_HEADER):
    file, out = binance_file(tmp_path, rows, header), tmp_path / "out"
    return assert_rejected(lambda: import_binance_bookticker(file, "BTCUSDT", out, 0.1), file, row, field, out)


GOOD = [bt_row(i, T0_MS + i) for i in range(4)]


def test_binance_rejects_missing_header_column(tmp_path):
    rows = [r[:6] for r in GOOD]
    _reject_binance(tmp_path, rows, 1, "event_time", header=BINANCE_HEADER.rsplit(",", 1)[0])


def test_binance_rejects_extra_field_in_a_row(tmp_path):
    _reject_binance(tmp_path, [GOOD[0], (*GOOD[1], 7), *GOOD[2:]], 3, "column 8")  # line 1 is the header


@pytest.mark.parametrize("value", ["NaN", "abc"])
def test_binance_rejects_nan_or_non_numeric(tmp_path, value):
    _reject_binance(tmp_path, [*GOOD[:2], bt_row(2, T0_MS + 2, ask_qty=value), GOOD[3]], 4, "best_ask_qty")


def test_binance_blank_line_inside_is_rejected_at_its_line_but_trailing_ones_are_ignored(tmp_path):
    file = binance_file(tmp_path, GOOD)
    file.write_text(file.read_text() + "\n\n")
    assert len(read_ticks(import_binance_bookticker(file, "BTCUSDT", tmp_path / "ok", 0.1)[0])) == 4
    _reject_binance(tmp_path, [GOOD[0], (), *GOOD[1:]], 3, "update_id")


def test_binance_rejects_time_going_backwards(tmp_path):
    _reject_binance(tmp_path, [GOOD[0], GOOD[1], bt_row(2, T0_MS), GOOD[3]], 4, "transaction_time")


def test_binance_rejects_crossed_book(tmp_path):
    _reject_binance(tmp_path, [GOOD[0], bt_row(1, T0_MS + 1, bid="100.3"), *GOOD[2:]], 3, "best_bid_price")


def test_binance_writes_no_day_when_a_later_day_is_bad(tmp_path):
    rows = [bt_row(0, T0_MS - 5), bt_row(1, T0_MS - 1), bt_row(2, T0_MS, bid="100.2")]  # day 2 locked
    _reject_binance(tmp_path, rows, 4, "best_bid_price")


# ------------------------------------------------------------------------------------------------- CLI

def test_cli_import_lobster_writes_and_reports_errors(tmp_path):
    runner = CliRunner()
    msg, ob = lobster_files(tmp_path, MESSAGES, [book(5)] * 3)
    args = ["import", "lobster", "--message", str(msg), "--orderbook", str(ob), "--symbol", "X", "--date", "2024-06-03"]
    ok = runner.invoke(app, [*args, "--out", str(tmp_path / "out")], env={"COLUMNS": "200"})
    assert ok.exit_code == 0, ok.output
    assert "rows read" in ok.output and len(read_ticks(tmp_path / "out" / "X" / "2024-06-03.parquet")) == 3

    write_rows(msg, [MESSAGES[0], (34200.5, 9, 7, 30, 1_000_100, -1), MESSAGES[2]])
    bad = runner.invoke(app, [*args, "--out", str(tmp_path / "bad")], env={"COLUMNS": "200"})
    assert bad.exit_code != 0
    assert msg.name in bad.output and "row 2" in bad.output and "'type'" in bad.output
    assert not (tmp_path / "bad").exists()


def test_cli_import_binance_writes_and_reports_errors(tmp_path):
    runner = CliRunner()
    file = binance_file(tmp_path, GOOD)
    args = ["import", "binance-bookticker", "--file", str(file), "--symbol", "BTCUSDT"]
    ok = runner.invoke(app, [*args, "--out", str(tmp_path / "out")], env={"COLUMNS": "200"})
    assert ok.exit_code == 0, ok.output
    assert len(read_ticks(tmp_path / "out" / "BTCUSDT" / "2023-11-15.parquet")) == 4

    file = binance_file(tmp_path, [*GOOD[:3], bt_row(3, T0_MS - 1)])
    bad = runner.invoke(app, [*args, "--out", str(tmp_path / "bad")], env={"COLUMNS": "200"})
    assert bad.exit_code != 0
    assert file.name in bad.output and "row 5" in bad.output and "'transaction_time'" in bad.output
    assert not (tmp_path / "bad").exists()


# ------------------------------------------------------------------------------------ hand-made LOBSTER zips

def day_members(symbol="X", date="2024-06-03", levels=10, book_levels=None, messages=MESSAGES, n_books=None,
                message_name=None) -> dict[str, str]:
    """One symbol-day's two members as LOBSTER names them: {member name: CSV text}."""
    n_books = len(messages) if n_books is None else n_books
    stem = f"{symbol}_{date}_34200000_57600000"
    rows = lambda rs: "".join(",".join(str(v) for v in r) + "\n" for r in rs)
    return {message_name or f"{stem}_message_{levels}.csv": rows(messages),
            f"{stem}_orderbook_{levels}.csv": rows([book(book_levels or levels)] * n_books)}


def write_zip(path: Path, members: dict[str, str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("LOBSTER_SampleFiles_ReadMe.txt", "a ReadMe")
        for name, text in members.items():
            zf.writestr(name, text)
    return path


def reject_zips(tmp_path: Path, zips: list[Path], zip_path: Path, member: str | None, *words: str, **kwargs) -> str:
    """import_lobster_zips(zips) is refused naming ``zip_path``, ``member`` and ``words``, and writes nothing."""
    out = tmp_path / "out"
    text = assert_rejected(lambda: import_lobster_zips(zips, out, tick_size=0.01, **kwargs), zip_path, None, None, out)
    assert not out.exists()
    for word in (member or "", *words):
        assert word in text, text
    return text


def test_lobster_zip_imports_every_symbol_day_and_level_count(tmp_path):
    members = {**day_members("AAA", levels=1), **day_members("BBB", levels=50), **day_members("AAA", "2024-06-04", levels=1)}
    paths = import_lobster_zips([write_zip(tmp_path / "z" / "days.zip", members)], tmp_path / "out", 0.01)
    assert sorted(p.relative_to(tmp_path / "out").as_posix() for p in paths) == \
        ["AAA/2024-06-03.parquet", "AAA/2024-06-04.parquet", "BBB/2024-06-03.parquet"]
    levels = {(t.symbol, t.meta["date"]): t.meta["n_levels"] for t in map(read_ticks, paths)}
    assert levels == {("AAA", "2024-06-03"): 1, ("AAA", "2024-06-04"): 1, ("BBB", "2024-06-03"): 50}


@pytest.mark.parametrize("kind", ["message", "orderbook"])
def test_lobster_zip_missing_member_is_refused(tmp_path, kind):
    members = day_members()
    present = next(name for name in members if kind not in name)
    zip_path = write_zip(tmp_path / "day.zip", {present: members[present]})
    reject_zips(tmp_path, [zip_path], zip_path, present, f"no {kind} member", present.replace(
        "orderbook" if kind == "message" else "message", kind))


def test_lobster_zip_member_name_that_does_not_parse_is_refused(tmp_path):
    zip_path = write_zip(tmp_path / "day.zip", {**day_members(), "X_20240603_message_10.csv": "1\n"})
    reject_zips(tmp_path, [zip_path], zip_path, "X_20240603_message_10.csv", "{SYMBOL}_{YYYY-MM-DD}")


@pytest.mark.parametrize("orderbook_of, words", [({"symbol": "Y"}, ("symbol", "'X' vs 'Y'")),
                                                  ({"date": "2024-06-04"}, ("date",)),
                                                  ({"levels": 5}, ("levels", "10 vs 5"))])
def test_lobster_zip_pair_that_disagrees_is_refused(tmp_path, orderbook_of, words):
    message = next(iter(day_members().items()))
    orderbook = list(day_members(**orderbook_of).items())[1]
    zip_path = write_zip(tmp_path / "day.zip", dict([message, orderbook]))
    reject_zips(tmp_path, [zip_path], zip_path, message[0], orderbook[0], *words)


def test_lobster_zip_orderbook_columns_not_four_times_its_levels_is_refused(tmp_path):
    members = day_members(levels=5, book_levels=10)
    orderbook = list(members)[1]
    reject_zips(tmp_path, [write_zip(tmp_path / "day.zip", members)], tmp_path / "day.zip", orderbook,
                "40 columns", "5 levels")


def test_lobster_zip_row_counts_that_disagree_are_refused_with_both(tmp_path):
    members = day_members(n_books=2)
    orderbook = list(members)[1]
    reject_zips(tmp_path, [write_zip(tmp_path / "day.zip", members)], tmp_path / "day.zip", orderbook,
                "message file has 3 rows, orderbook file 2")


@pytest.mark.parametrize("damage", ["not a zip", "truncated", "bad member data"])
def test_lobster_corrupt_zip_is_refused(tmp_path, damage):
    zip_path = write_zip(tmp_path / "day.zip", day_members())
    data = zip_path.read_bytes()
    member = None
    if damage == "not a zip":
        data = b"PK this is not a zip file"
    elif damage == "truncated":
        data = data[: len(data) // 2]
    else:  # flip bytes inside the message member's compressed data: the central directory still reads
        member = next(iter(day_members()))
        with zipfile.ZipFile(zip_path) as zf:
            info = zf.getinfo(member)
        start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
        data = data[:start] + bytes(b ^ 0xFF for b in data[start:start + 8]) + data[start + 8:]
    zip_path.write_bytes(data)
    reject_zips(tmp_path, [zip_path], zip_path, member)


def test_lobster_zip_one_bad_zip_writes_no_day_of_the_good_ones(tmp_path):
    good = write_zip(tmp_path / "zips" / "a_good.zip", day_members("AAA"))
    members = day_members("BBB", n_books=2)
    bad = write_zip(tmp_path / "zips" / "b_bad.zip", members)
    reject_zips(tmp_path, [good, bad], bad, list(members)[1])
    reject_zips(tmp_path, [tmp_path / "zips"], bad, list(members)[1])  # the folder: every *.zip in it


def test_lobster_zip_same_symbol_day_twice_is_refused(tmp_path):
    first = write_zip(tmp_path / "a.zip", day_members(levels=10))
    second = write_zip(tmp_path / "b.zip", day_members(levels=1))
    reject_zips(tmp_path, [first, second], second, "X 2024-06-03 is also in", first.name)


@pytest.mark.parametrize("asked", [{"symbol": "Y"}, {"date": "2024-06-04"}])
def test_lobster_zip_symbol_or_date_that_disagrees_with_the_names_is_refused(tmp_path, asked):
    members = day_members()
    zip_path = write_zip(tmp_path / "day.zip", members)
    reject_zips(tmp_path, [zip_path], zip_path, next(iter(members)), f"{next(iter(asked.values()))!r} was asked for",
                **asked)
    import_lobster_zips([zip_path], tmp_path / "ok", 0.01, symbol="X", date="2024-06-03")  # agreeing: imported
    assert (tmp_path / "ok" / "X" / "2024-06-03.parquet").exists()


def test_cli_import_lobster_zip_writes_and_refuses(tmp_path):
    runner = CliRunner()
    members = day_members()
    zip_path = write_zip(tmp_path / "day.zip", members)
    ok = runner.invoke(app, ["import", "lobster", "--zip", str(zip_path), "--out", str(tmp_path / "out")],
                       env={"COLUMNS": "200"})
    assert ok.exit_code == 0, ok.output
    assert "rows read" in ok.output and len(read_ticks(tmp_path / "out" / "X" / "2024-06-03.parquet")) == 3

    msg, ob = lobster_files(tmp_path / "csv", MESSAGES, [book(10)] * 3)
    both = runner.invoke(app, ["import", "lobster", "--zip", str(zip_path), "--message", str(msg), "--orderbook",
                               str(ob), "--out", str(tmp_path / "both")], env={"COLUMNS": "200"})
    assert both.exit_code == 2 and "--zip" in both.output and "--message" in both.output
    neither = runner.invoke(app, ["import", "lobster", "--message", str(msg), "--out", str(tmp_path / "neither")],
                            env={"COLUMNS": "200"})
    assert neither.exit_code == 2 and "--orderbook" in neither.output and "--date" in neither.output
    write_zip(zip_path, day_members(n_books=2))
    bad = runner.invoke(app, ["import", "lobster", "--zip", str(zip_path), "--out", str(tmp_path / "bad")],
                        env={"COLUMNS": "200"})
    assert bad.exit_code == 2 and zip_path.name in bad.output and list(members)[1] in bad.output
    assert not any(p.exists() for p in (tmp_path / "both", tmp_path / "neither", tmp_path / "bad"))
