"""The canonical tick table: what every importer, the tokenizer and the server rely on."""
import numpy as np
import pytest

from lob.data.schema import (
    N_LEVELS,
    TickDataError,
    Ticks,
    dataset_files,
    load_dataset,
    read_ticks,
    validate,
    write_ticks,
)


def book(n: int, levels: int = N_LEVELS, bid: float = 100.0, tick: float = 0.01) -> Ticks:
    """n ticks of a valid `levels`-deep book around `bid`, timestamps 1 us apart."""
    bid_px, bid_sz, ask_px, ask_sz = Ticks.empty_book(n)
    k = np.arange(levels)
    bid_px[:, :levels] = bid - k * tick
    ask_px[:, :levels] = bid + tick + k * tick
    bid_sz[:, :levels] = 100.0
    ask_sz[:, :levels] = 200.0
    return Ticks(ts_ns=np.arange(n, dtype=np.int64) * 1000 + 1_700_000_000_000_000_000,
                 bid_px=bid_px, bid_sz=bid_sz, ask_px=ask_px, ask_sz=ask_sz,
                 trade_px=np.zeros(n), trade_sz=np.zeros(n), trade_side=np.zeros(n, np.int8),
                 symbol="TEST", meta={"date": "2023-11-14", "tick_size": tick, "n_levels": levels, "source": "test"})


def test_valid_books_pass_including_one_level():
    validate(book(5), "x")
    validate(book(5, levels=1), "x")


@pytest.mark.parametrize("mutate, row, field, words", [
    (lambda t: t.bid_px.__setitem__((3, 0), np.nan), 3, "bid_px_1", "finite"),
    (lambda t: t.ask_sz.__setitem__((2, 4), -1.0), 2, "ask_sz_5", "negative"),
    (lambda t: t.ask_px.__setitem__((1, 0), t.bid_px[1, 0]), 1, "bid_px_1", "crossed or locked"),
    (lambda t: t.ts_ns.__setitem__(4, t.ts_ns[2]), 4, "ts_ns", "backwards"),
    (lambda t: (t.bid_px.__setitem__((2, 3), 0.0), t.bid_sz.__setitem__((2, 3), 0.0)), 2, "bid_px", "below an empty"),
    (lambda t: t.ask_px.__setitem__((0, 2), t.ask_px[0, 1]), 0, "ask_px", "increasing"),
    (lambda t: (t.trade_side.__setitem__(1, 1)), 1, "trade_px", "trade with non-positive"),
    (lambda t: (t.trade_px.__setitem__(3, 100.0), t.trade_sz.__setitem__(3, 5.0)), 3, "trade_side", "without a side"),
])
def test_each_fault_names_row_and_field(mutate, row, field, words):
    t = book(6)
    mutate(t)
    with pytest.raises(TickDataError) as err:
        validate(t, "file.parquet", row_offset=0)
    assert err.value.row == row and err.value.field == field
    assert words in str(err.value) and "file.parquet" in str(err.value)


def test_roundtrip_and_dataset_layout(tmp_path):
    t = book(50)
    t.trade_side[7], t.trade_px[7], t.trade_sz[7] = -1, 100.0, 30.0
    write_ticks(tmp_path / "TEST" / "2023-11-14.parquet", t)
    later = book(10)
    later.ts_ns += 10**12
    write_ticks(tmp_path / "TEST" / "2023-11-15.parquet", later)
    back = read_ticks(tmp_path / "TEST" / "2023-11-14.parquet")
    for name in ("ts_ns", "bid_px", "bid_sz", "ask_px", "ask_sz", "trade_px", "trade_sz", "trade_side"):
        np.testing.assert_array_equal(getattr(back, name), getattr(t, name))
    assert back.symbol == "TEST" and back.meta["tick_size"] == 0.01
    data = load_dataset(tmp_path)
    assert list(data) == ["TEST"] and len(data["TEST"]) == 60
    assert [p.name for p in dataset_files(tmp_path)] == ["2023-11-14.parquet", "2023-11-15.parquet"]


def test_invalid_ticks_leave_no_file(tmp_path):
    t = book(5)
    t.bid_sz[2, 0] = np.inf
    with pytest.raises(TickDataError):
        write_ticks(tmp_path / "TEST" / "2023-11-14.parquet", t)
    assert not any(p.is_file() for p in tmp_path.rglob("*"))


def test_days_out_of_order_across_files_are_rejected(tmp_path):
    write_ticks(tmp_path / "TEST" / "2023-11-14.parquet", book(5))
    earlier = book(5)
    earlier.ts_ns -= 10**12
    write_ticks(tmp_path / "TEST" / "2023-11-15.parquet", earlier)
    with pytest.raises(TickDataError, match="backwards"):
        load_dataset(tmp_path)


def test_unknown_symbol_is_named(tmp_path):
    write_ticks(tmp_path / "TEST" / "2023-11-14.parquet", book(5))
    with pytest.raises(KeyError, match="NOPE"):
        load_dataset(tmp_path, symbols=["NOPE"])


def test_empty_table_is_valid():
    validate(book(0), "empty.parquet")
