"""`lob realism` on hand-made datasets whose facts and distances are known by construction."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy import stats
from typer.testing import CliRunner

from lob.cli import app
from lob.realism.report import realism_report
from lob.realism.stats import acf, pearson_kurtosis, total_variation
from lob.data.schema import N_LEVELS, Ticks, day_path, write_ticks

TICK = 0.01
T0 = 1_704_205_800 * 10**9 + 7  # 2024-01-02 14:30 UTC and 7 ns: stamped in ns


def _write(root, bid, ask, gaps_ns, bid_sz=None, ask_sz=None, trade_side=None, trade_sz=None, deep=None,
           symbol="X", date="2024-01-02", t0=T0):
    """One symbol-day of a 1-level book (bid/ask in ticks), or 10 levels when ``deep`` sizes (N,) are given."""
    n = len(bid)
    bid, ask = np.asarray(bid, float), np.asarray(ask, float)
    bid_px, bid_s, ask_px, ask_s = Ticks.empty_book(n)
    bid_px[:, 0], ask_px[:, 0] = bid * TICK, ask * TICK
    bid_s[:, 0] = 100.0 if bid_sz is None else bid_sz
    ask_s[:, 0] = 100.0 if ask_sz is None else ask_sz
    if deep is not None:
        for k in range(1, N_LEVELS):
            bid_px[:, k], ask_px[:, k] = (bid - k) * TICK, (ask + k) * TICK
            bid_s[:, k] = ask_s[:, k] = 100.0
        bid_s[:, 4] = deep
    side = np.zeros(n, np.int8) if trade_side is None else np.asarray(trade_side, np.int8)
    tsz = np.zeros(n) if trade_sz is None else np.asarray(trade_sz, float)
    tpx = np.where(side > 0, ask_px[:, 0], np.where(side < 0, bid_px[:, 0], 0.0))
    ts = t0 + np.concatenate([[0], np.cumsum(gaps_ns)]).astype(np.int64)
    write_ticks(day_path(root, symbol, date), Ticks(ts, bid_px, bid_s, ask_px, ask_s, tpx, tsz, side, symbol,
                                                    {"date": date, "tick_size": TICK, "n_levels": 1, "source": "test"}))
    return root


def _alternating_bid_size(n):
    """Bid queue 100, 101, 100, 101, ...: every event adds or cancels one share at the best bid."""
    return 100.0 + (np.arange(n) % 2)


def test_clock_distances_are_in_decades_and_respect_the_coarser_resolution(tmp_path):
    n = 1001
    bid, ask = np.full(n, 1000), np.full(n, 1001)
    a = _write(tmp_path / "a", bid, ask, np.full(n - 1, 500_000), bid_sz=_alternating_bid_size(n))  # 0.5 ms gaps
    b = _write(tmp_path / "b", bid, ask, np.full(n - 1, 5_000_000), bid_sz=_alternating_bid_size(n))  # 5 ms gaps
    r = realism_report(str(a), str(b))
    d = r["distances"]
    assert d["log10_dt"]["distance"] == pytest.approx(1.0, abs=1e-9)  # a factor 10 is one decade
    assert d["log10_dt"]["a"] == pytest.approx(5e-4) and d["log10_dt"]["b"] == pytest.approx(5e-3)
    assert d["burst_share_under_1ms"]["a"] == 1.0 and d["burst_share_under_1ms"]["distance"] == 1.0
    # the same book flow: nothing else differs
    assert d["spread_ticks"]["distance"] == 0.0 and d["event_kinds"]["distance"] == 0.0
    assert r["a"]["event_kinds"]["add_bid"] == pytest.approx(0.5) and r["a"]["event_kinds"]["cancel_bid"] == pytest.approx(0.5)
    assert d["imbalance_l1"]["distance"] == pytest.approx(0.0, abs=1e-12)

    # 0.1 ms gaps stamped in ns against 1 ms gaps stamped in ms: below the ms resolution both are unresolved
    c = _write(tmp_path / "c", bid, ask, np.full(n - 1, 100_000), bid_sz=_alternating_bid_size(n))
    m = _write(tmp_path / "m", bid, ask, np.full(n - 1, 1_000_000), bid_sz=_alternating_bid_size(n), t0=T0 - 7)
    r = realism_report(str(c), str(m))
    assert r["window"]["time_resolution_ns"] == 1_000_000
    assert r["distances"]["log10_dt"]["distance"] == pytest.approx(0.0, abs=1e-12)


def test_spread_mid_moves_and_kinds(tmp_path):
    n = 2001
    bid = np.full(n, 1000)
    one = _write(tmp_path / "one", bid, bid + 1, np.full(n - 1, 10**6), bid_sz=_alternating_bid_size(n))
    # the ask steps 1 <-> 3 ticks above the bid: spread shares {1: 1/2, 3: 1/2}, every event moves the mid 1 tick
    wide = _write(tmp_path / "wide", bid, bid + 1 + 2 * (np.arange(n) % 2), np.full(n - 1, 10**6))
    r = realism_report(str(wide), str(one))
    d = r["distances"]
    assert r["a"]["spread_ticks"]["1"] == pytest.approx(1001 / 2001) and r["a"]["spread_ticks"]["3"] == pytest.approx(1000 / 2001)
    assert d["spread_ticks"]["distance"] == pytest.approx(1000 / 2001)
    assert d["mid_moving_share"]["a"] == 1.0 and d["mid_moving_share"]["b"] == 0.0
    assert r["a"]["mid_move_ticks"]["1"] == 1.0
    # the ask side adds and cancels (its level moves), the bid side of `one` adds and cancels: disjoint kinds
    assert d["event_kinds"]["distance"] == pytest.approx(1.0)


def test_trade_sizes_relative_to_the_median(tmp_path):
    n = 401
    bid = np.full(n, 1000)
    side = np.where(np.arange(n) % 2 == 1, 1, 0)  # every other event is a buyer-initiated trade
    ask_sz = np.where(side == 1, 90.0, 100.0)  # the trade took 10 shares, the next event refills the ask
    same = _write(tmp_path / "same", bid, bid + 1, np.full(n - 1, 10**6), ask_sz=ask_sz, trade_side=side,
                  trade_sz=np.where(side == 1, 10.0, 0.0))
    sizes = np.where(np.arange(n) % 4 == 1, 1.0, 10.0)  # trades of 1 and 10 shares, alternately: median 5.5
    mixed = _write(tmp_path / "mixed", bid, bid + 1, np.full(n - 1, 10**6), ask_sz=np.where(side == 1, 100 - sizes, 100.0),
                   trade_side=side, trade_sz=np.where(side == 1, sizes, 0.0))
    r = realism_report(str(mixed), str(same))
    d = r["distances"]
    # |log10(1/5.5)| and log10(10/5.5) sum to 1 decade: half of each -> W1 = 0.5 decades from all-zero
    assert d["trade_size_rel_median"]["distance"] == pytest.approx(0.5, abs=1e-9)
    assert d["trade_share"]["a"] == pytest.approx(200 / 400) and d["trade_share"]["distance"] == 0.0
    assert r["a"]["event_kinds"]["trade_ask"] == pytest.approx(0.5)


def test_clock_returns_kurtosis_and_acf(tmp_path):
    """The mid alternates up and down one tick each second: 1 s returns are +-a exactly."""
    n = 201  # one event a second, on the 1 s grid
    up = np.arange(n) % 2
    flat = _write(tmp_path / "flat", np.full(n, 1000), np.full(n, 1001), np.full(n - 1, 10**9),
                  bid_sz=_alternating_bid_size(n))
    zigzag = _write(tmp_path / "zig", 1000 + up, 1001 + up, np.full(n - 1, 10**9))
    r = realism_report(str(zigzag), str(flat))
    ret = r["a"]["returns"]["1s"]
    assert ret["n"] == n - 1
    assert ret["pearson_kurtosis"] == pytest.approx(1.0)  # a symmetric two-point distribution
    assert ret["acf_r"][0] == pytest.approx(-(ret["n"] - 1) / ret["n"])  # the standard ACF estimator of +-a
    assert ret["acf_r"][1] == pytest.approx((ret["n"] - 2) / ret["n"])
    assert ret["std_bps"] == pytest.approx(1e4 * math.log(1001.5 / 1000.5), rel=1e-9)
    assert math.isnan(r["b"]["returns"]["1s"]["pearson_kurtosis"])  # no movement: undefined, not a number
    (kurtosis_goal,) = [g for g in r["goal"] if g["fact"] == "ret_10s_pearson_kurtosis"]
    assert not kurtosis_goal["met"]  # a NaN is never a met goal


def test_books_are_compared_at_the_shallower_depth(tmp_path):
    n = 1001
    bid = np.full(n, 1000)
    # 10 levels; the odd events change only level 5 of the bid: invisible to a 1-level feed
    deep = _write(tmp_path / "deep", bid, bid + 1, np.full(n - 1, 10**6), deep=100.0 + (np.arange(n) % 2),
                  bid_sz=100.0 + ((np.arange(n) // 2) % 2))
    top = _write(tmp_path / "top", bid, bid + 1, np.full(n - 1, 2 * 10**6), bid_sz=_alternating_bid_size(n))
    r = realism_report(str(deep), str(top))
    assert r["window"]["levels"] == 1
    assert r["a"]["n_invisible"] == 500  # the level-5 changes between two changes of the best bid
    assert r["distances"]["log10_dt"]["distance"] == pytest.approx(0.0, abs=1e-12)  # visible events 2 ms apart
    r10 = realism_report(str(deep), str(deep))
    assert r10["window"]["levels"] == 10 and r10["a"]["n_invisible"] == 0
    assert all(v["distance"] == 0 or (isinstance(v["distance"], float) and math.isnan(v["distance"]))
               or v["measure"] == "ratio" for v in r10["distances"].values())


def test_cli_writes_json_and_png_and_names_bad_input(tmp_path):
    n = 301
    bid = np.full(n, 1000)
    _write(tmp_path / "a", bid, bid + 1, np.full(n - 1, 10**6), bid_sz=_alternating_bid_size(n), symbol="AAA")
    _write(tmp_path / "a", bid, bid + 2, np.full(n - 1, 10**6), bid_sz=_alternating_bid_size(n), symbol="BBB")
    out = tmp_path / "rep" / "realism.json"
    res = CliRunner().invoke(app, ["realism", f"{tmp_path / 'a'}:AAA", f"{tmp_path / 'a'}:BBB", "--out", str(out)])
    assert res.exit_code == 0, res.output
    report = json.loads(out.read_text())
    assert report["distances"]["spread_ticks"]["distance"] == pytest.approx(1.0)
    assert out.with_suffix(".png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert report["distances"]["ret_60s_pearson_kurtosis"]["distance"] is None  # 300 ms of data: undefined, null
    assert "spread_ticks" in res.output
    res = CliRunner().invoke(app, ["realism", str(tmp_path / "a"), f"{tmp_path / 'a'}:BBB"])
    assert res.exit_code == 2 and "AAA" in res.output and "BBB" in res.output
    res = CliRunner().invoke(app, ["realism", f"{tmp_path / 'a'}:ZZZ", f"{tmp_path / 'a'}:BBB"])
    assert res.exit_code == 2 and "ZZZ" in res.output


def test_fact_primitives_pin_one_kurtosis_convention_and_one_nan_rule():
    """The conventions of every stylized-fact report (`lob realism`, `lob generate`), against scipy's."""
    rng = np.random.default_rng(0)
    heavy = rng.standard_t(5, 5000)
    assert pearson_kurtosis(heavy) == pytest.approx(stats.kurtosis(heavy, fisher=False, bias=True), rel=1e-12)
    assert pearson_kurtosis(rng.standard_normal(200_000)) == pytest.approx(3.0, abs=0.05)  # Pearson: Gaussian 3
    assert pearson_kurtosis(np.array([-2.0, 0, 0, 0, 0, 0, 0, 2.0])) == pytest.approx(4.0)  # m2 = 1, m4 = 4
    # undefined facts are NaN: a constant sample, fewer than 4 values
    assert math.isnan(pearson_kurtosis(np.full(50, 2.0))) and math.isnan(pearson_kurtosis(np.array([1.0, 2.0, 3.0])))

    n = 100
    zigzag = np.array([1.0, -1.0] * (n // 2))  # the standard estimator of +-1: (-1)^k (n - k) / n
    np.testing.assert_allclose(acf(zigzag, 3), [-(n - 1) / n, (n - 2) / n, -(n - 3) / n])
    assert len(acf(zigzag)) == 10  # lags 1..10 by default
    assert all(math.isnan(v) for v in acf(np.full(20, 1.0), 3))  # no variation
    short = acf(np.array([1.0, 2.0, 0.0, 5.0]), 2)  # lag 1 has 3 pairs, lag 2 only 2: undefined
    assert math.isfinite(short[0]) and math.isnan(short[1])
    assert all(math.isnan(v) for v in acf(np.zeros(0), 2))

    assert total_variation(np.array([1.0, 0.0]), np.array([0.0, 1.0])) == 1.0
    assert total_variation(np.array([0.5, 0.5]), np.array([1.0, 0.0])) == 0.5


def test_a_part_of_a_dataset_is_lob_trains_chronological_split(tmp_path):
    """``DIR:SYM@PART`` reads the part `lob train` would use: two days with 1 s and 3 s gaps (trading time 300 s
    + 900 s; overnight counts zero): train is the first 840 s of it (across the day break), test the last 180 s (both ends included)."""
    from lob.realism.report import load_days

    _write(tmp_path, [100] * 301, [101] * 301, [10**9] * 300, date="2024-01-02")
    _write(tmp_path, [100] * 301, [101] * 301, [3 * 10**9] * 300, date="2024-01-03", t0=T0 + 86_400 * 10**9)
    _, train = load_days(f"{tmp_path}:X@train")
    _, test = load_days(f"{tmp_path}@test")
    _, held = load_days(f"{tmp_path}@heldout")
    assert [len(d) for d in train] == [301, 180] and [d.meta["date"] for d in train] == ["2024-01-02", "2024-01-03"]
    assert [len(d) for d in test] == [61] and test[0].ts_ns[0] == T0 + (86_400 + 720) * 10**9
    assert len(held[0]) == 121 and held[0].meta["part"] == "heldout" and held[0].meta["day_span_s"] == 900.0
    with pytest.raises(ValueError, match="unknown part 'tail'"):
        load_days(f"{tmp_path}@tail")
