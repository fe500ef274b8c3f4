"""`lob export-lobster`: order-id synthesis on hand-made books, and import -> export -> import of the real LOBSTER days."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from lob.cli import app
from lob.data.lobster import import_lobster_zips, read_lobster
from lob.data.lobster_export import synthesize_messages
from lob.data.schema import Ticks, day_path, read_ticks, write_ticks

DATA = Path(__file__).parents[2].parent / "shared" / "data" / "lobster"
ZIPS = [DATA / "LOBSTER_SampleFile_GOOG_2012-06-21_10.zip", DATA / "LOBSTER_SampleFile_AAPL_2012-06-21_1.zip"]
needs_days = pytest.mark.skipif(not all(z.exists() for z in ZIPS), reason=f"LOBSTER sample day zips not found under {DATA}")
T0 = 1_704_205_800 * 10**9  # 2024-01-02 14:30 UTC = 09:30 New York (EST, UTC-5)


def ticks(rows: list[tuple], levels: int = 2) -> Ticks:
    """Rows (bid sizes, ask sizes, trade_side, trade_sz); bids at 10.00, 9.99, ..., asks at 10.01, 10.02, ...
    (a size 0 leaves that level and the ones below it empty; ``bids`` may also be (price, size) pairs)."""
    n = len(rows)
    bid_px, bid_sz, ask_px, ask_sz = Ticks.empty_book(n)
    tpx, tsz, side = np.zeros(n), np.zeros(n), np.zeros(n, np.int8)
    for i, (bids, asks, s, z) in enumerate(rows):
        for k, b in enumerate(bids):
            bid_px[i, k], bid_sz[i, k] = b if isinstance(b, tuple) else (10.00 - 0.01 * k, b)
        for k, a in enumerate(asks):
            ask_px[i, k], ask_sz[i, k] = 10.01 + 0.01 * k, a
        side[i], tsz[i] = s, z
        tpx[i] = ask_px[i, 0] if s > 0 else (bid_px[i - 1, 0] if s < 0 else 0.0)
    bid_px[bid_sz == 0] = 0
    ask_px[ask_sz == 0] = 0
    ts = T0 + np.arange(n, dtype=np.int64) * 1_000_000
    return Ticks(ts, bid_px, bid_sz, ask_px, ask_sz, tpx, tsz, side, "X",
                 {"date": "2024-01-02", "tick_size": 0.01, "n_levels": levels, "source": "test"})


def test_order_ids_adds_cancels_and_executions_take_the_oldest_volume():
    t = ticks([
        ([100, 50], [80, 60], 0, 0),   # 0: first book: its levels become orders 1 (bid 100) .. 4
        ([150, 50], [80, 60], 0, 0),   # 1: +50 at the best bid: new order 5
        ([170, 50], [80, 60], 0, 0),   # 2: +20: order 6
        ([150, 50], [80, 60], 0, 0),   # 3: -20: part of the oldest order there (1)
        ([70, 50], [80, 60], 0, 0),    # 4: -80: the rest of order 1: deleted whole
        ([10, 50], [80, 60], -1, 60),  # 5: a sell of 60 hits the bid: order 5 (50) then 10 of order 6
        ([10, 50], [80, 60], 1, 7),    # 6: a print that leaves the visible book: hidden execution
        ([10, 50], [80, 60], 0, 0),    # 7: nothing visible changed: the size-0 placeholder
        ([10, 40], [80, 60], 0, 0),    # 8: -10 at the second bid level (10 of the first book's order 2)
    ])
    m = synthesize_messages(t, 2, 100)
    assert m.type.tolist() == [1, 1, 1, 2, 3, 4, 5, 2, 2]
    assert m.size.tolist() == [100, 50, 20, 20, 80, 60, 7, 0, 10]
    assert len(set(m.order_id[:3].tolist())) == 3 and m.order_id[3] == m.order_id[4] == m.order_id[0]
    assert m.order_id[5] == m.order_id[1]  # order 1 is gone: the oldest left at the touch is executed
    assert m.order_id[7] == 0 and m.price[7] == 99_800  # one step beyond the deepest visible bid (9.99)
    assert m.price.tolist()[:6] == [100_000] * 6 and m.price[6] == 100_100 and m.price[8] == 99_900
    assert m.direction.tolist() == [1, 1, 1, 1, 1, 1, -1, 1, 1]  # side of the resting order: a buy trade hits asks
    assert m.time_ns[0] == (9 * 3600 + 30 * 60) * 10**9 and np.all(np.diff(m.time_ns) == 1_000_000)


def test_levels_entering_or_leaving_the_window_are_not_events():
    t = ticks([
        ([100, 50], [80, 60], 0, 0),
        ([(9.99, 50), (9.98, 40)], [80, 60], 0, 0),  # best bid (100) cancelled whole: 9.99 is the best, 9.98 comes into view
        ([(10.00, 30), (9.99, 50)], [80, 60], 0, 0),  # an order of 30 at 10.00 again: 9.98 leaves the view
    ])
    m = synthesize_messages(t, 2, 100)
    assert m.type.tolist()[1:] == [3, 1] and m.size.tolist()[1:] == [100, 30]
    assert m.price.tolist()[1:] == [100_000, 100_000] and m.order_id[1] == m.order_id[0]


def test_cli_export_lobster_writes_pairs_that_import_back(tmp_path):
    t = ticks([([100, 50], [80, 60], 0, 0), ([150, 50], [80, 60], 0, 0), ([150, 50], [70, 60], 1, 10)])
    write_ticks(day_path(tmp_path / "data", "X", "2024-01-02"), t)
    res = CliRunner().invoke(app, ["export-lobster", str(tmp_path / "data"), "--out", str(tmp_path / "out")])
    assert res.exit_code == 0, res.output
    message = tmp_path / "out" / "X_2024-01-02_34200000_34200003_message_2.csv"
    orderbook = tmp_path / "out" / "X_2024-01-02_34200000_34200003_orderbook_2.csv"
    assert message.read_text().splitlines()[2] == "34200.002000000,4,3,10,100100,-1"
    assert orderbook.read_text().splitlines()[0] == "100100,80,100000,100,100200,60,99900,50"
    back = read_lobster(message, orderbook, "X", "2024-01-02", 0.01)
    assert np.array_equal(back.bid_sz, t.bid_sz) and np.array_equal(back.ts_ns, t.ts_ns)
    res = CliRunner().invoke(app, ["export-lobster", str(tmp_path / "data"), "--out", str(tmp_path / "o2"),
                                   "--symbols", "NOPE"])
    assert res.exit_code == 2 and "NOPE" in res.output and not (tmp_path / "o2").exists()


@needs_days
def test_real_days_round_trip_import_export_import(tmp_path):
    days = import_lobster_zips(ZIPS, tmp_path / "real", tick_size=0.01)
    res = CliRunner().invoke(app, ["export-lobster", str(tmp_path / "real"), "--out", str(tmp_path / "out")])
    assert res.exit_code == 0, res.output
    for path in days:
        first = read_ticks(path)
        level = first.meta["n_levels"]
        (message,) = (tmp_path / "out").glob(f"{first.symbol}_2012-06-21_*_message_{level}.csv")
        again = read_lobster(message, Path(str(message).replace("_message_", "_orderbook_")), first.symbol,
                             "2012-06-21", 0.01)
        assert len(again) == len(first) > 100_000
        for field in ("ts_ns", "bid_px", "bid_sz", "ask_px", "ask_sz", "trade_px", "trade_sz", "trade_side"):
            assert np.array_equal(getattr(again, field), getattr(first, field)), (first.symbol, field)
