"""The simulator's ticks have the stylised facts a quant checks first, computed from the written files."""
from __future__ import annotations

from datetime import datetime

import numpy as np
import pytest
from typer.testing import CliRunner

from lob.cli import app
from lob.data.instruments import FITTED, load_params
from lob.data.schema import Ticks, read_ticks
from lob.data.simulator import simulate_dataset

EVENTS = 8000
DAYS = ["2024-01-05", "2024-01-08"]  # a Friday, then the weekend is skipped
SYMBOLS = ["SIMA", "SIMB", "SIMC", "SIMD"]
SEED = 7


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> dict[str, list[Ticks]]:
    """{symbol: [Ticks of each day]} read back from the written parquet files."""
    out = tmp_path_factory.mktemp("sim")
    paths = simulate_dataset(out, n_symbols=len(SYMBOLS), n_days=len(DAYS), seed=SEED, events_per_day=EVENTS,
                             start_date=DAYS[0])
    assert paths == [out / s / f"{d}.parquet" for s in SYMBOLS for d in DAYS]
    return {s: [read_ticks(out / s / f"{d}.parquet") for d in DAYS] for s in SYMBOLS}


def _mid_ticks(t: Ticks) -> np.ndarray:
    return t.mid() / t.meta["tick_size"]


def _event_returns(t: Ticks, every: int) -> np.ndarray:
    """Mid changes (ticks) over consecutive blocks of ``every`` events of one day."""
    return np.diff(_mid_ticks(t)[::every])


def _session_open_ns(day: str) -> int:
    return int(datetime.fromisoformat(f"{day}T14:30:00+00:00").timestamp()) * 10**9


def _minute_returns(t: Ticks) -> np.ndarray:
    """(390,) mid changes (ticks) over the session's minutes; the mid at a boundary is the last one before it."""
    boundaries = _session_open_ns(t.meta["date"]) + np.arange(391) * 60 * 10**9
    last = np.maximum(np.searchsorted(t.ts_ns, boundaries, side="right") - 1, 0)
    return np.diff(_mid_ticks(t)[last])


def _ofi(t: Ticks) -> np.ndarray:
    """Order-flow imbalance of each event at the best level (Cont, Kukanov & Stoikov 2014), in median best-bid sizes."""
    bp, bs, ap, az = t.bid_px[:, 0], t.bid_sz[:, 0], t.ask_px[:, 0], t.ask_sz[:, 0]
    e = np.zeros(len(t))
    e[1:] = ((bp[1:] >= bp[:-1]) * bs[1:] - (bp[1:] <= bp[:-1]) * bs[:-1]
             - (ap[1:] <= ap[:-1]) * az[1:] + (ap[1:] >= ap[:-1]) * az[:-1])
    return e / np.median(bs)


def test_files_are_canonical_one_per_symbol_weekday(dataset):
    for sym, days in dataset.items():
        for day, t in zip(DAYS, days):
            assert t.symbol == sym and len(t) == EVENTS
            assert t.meta["date"] == day and t.meta["source"] == "simulator" and t.meta["seed"] == SEED
            assert t.meta["n_levels"] == 10
            # never crossed or locked; 10 levels a side, except rarely in a thin book with gaps
            assert np.all(t.bid_px[:, 0] < t.ask_px[:, 0])
            assert np.all(t.bid_sz[:, 0] > 0) and np.all(t.ask_sz[:, 0] > 0)
            assert np.mean(t.bid_sz[:, -1] > 0) > 0.99 and np.mean(t.ask_sz[:, -1] > 0) > 0.99
            open_ns = _session_open_ns(day)
            assert open_ns <= t.ts_ns[0] and t.ts_ns[-1] < open_ns + int(6.5 * 3600e9)
            assert np.all(np.diff(t.ts_ns) >= 0)


def test_trades_execute_at_the_best_and_deplete_its_queue(dataset):
    for days in dataset.values():
        for t in days:
            for side, px, sz, worse in ((1, t.ask_px, t.ask_sz, 1.0), (-1, t.bid_px, t.bid_sz, -1.0)):
                i = np.flatnonzero(t.trade_side[1:] == side) + 1
                assert i.size > 0
                np.testing.assert_array_equal(t.trade_px[i], px[i - 1, 0])
                assert np.all(t.trade_sz[i] <= sz[i - 1, 0])
                same_level = px[i, 0] == px[i - 1, 0]
                np.testing.assert_allclose(sz[i, 0][same_level], (sz[i - 1, 0] - t.trade_sz[i])[same_level])
                # a trade that empties the best moves that side away from the mid
                cleared = ~same_level
                assert np.all(t.trade_sz[i][cleared] == sz[i - 1, 0][cleared])
                assert np.all(worse * (px[i, 0] - px[i - 1, 0])[cleared] > 0)


def test_symbols_differ_in_price_level_and_tick_size_and_prices_sit_on_the_tick_grid(dataset):
    ticks = {sym: days[0].meta["tick_size"] for sym, days in dataset.items()}
    mids = {sym: days[0].mid()[0] for sym, days in dataset.items()}
    assert len(set(ticks.values())) >= 2
    assert max(mids.values()) / min(mids.values()) > 10
    for sym, days in dataset.items():
        for t in days:
            for px in (t.bid_px, t.ask_px, t.trade_px[t.trade_side != 0]):
                on_grid = px / ticks[sym]
                np.testing.assert_allclose(on_grid, np.round(on_grid), atol=1e-6)
    # a large-tick name trades at a one-tick spread nearly always, a small-tick name often wider
    spread = {sym: (days[0].ask_px[:, 0] - days[0].bid_px[:, 0]) / ticks[sym] for sym, days in dataset.items()}
    one_tick = {sym: np.mean(np.isclose(s, 1.0)) for sym, s in spread.items()}
    assert max(one_tick.values()) > 0.9 and min(one_tick.values()) < 0.6


def test_one_minute_mid_returns_are_heavy_tailed(dataset):
    for sym, days in dataset.items():
        r = np.concatenate([_minute_returns(t) for t in days])
        excess_kurtosis = np.mean((r - r.mean()) ** 4) / r.var() ** 2 - 3.0
        assert excess_kurtosis > 2.0, (sym, excess_kurtosis)  # a Gaussian gives 0 +- 0.2 here


def test_volatility_clusters(dataset):
    """Lag-1 autocorrelation of |mid change| over 20-event blocks of each symbol-day, combined (Stouffer)."""
    z = []
    for days in dataset.values():
        for t in days:
            a = np.abs(_event_returns(t, 20))
            z.append(np.corrcoef(a[:-1], a[1:])[0, 1] * np.sqrt(a.size - 1))  # ~N(0, 1) without clustering
    assert np.mean(z) > 0 and np.sum(z) / np.sqrt(len(z)) > 3.0, z


def test_order_flow_imbalance_predicts_the_next_mid_moves_out_of_sample(dataset):
    """OFI over the last k events vs the mid change over the next h events, on disjoint windows.

    The slope's sign is fitted on the first day; the second day (unseen) must agree and be significant.
    """
    k, h = 200, 100

    def pairs(t: Ticks) -> tuple[np.ndarray, np.ndarray]:
        c = np.concatenate([[0.0], np.cumsum(_ofi(t))])
        mid = _mid_ticks(t)
        start = np.arange(k, len(t) - h, h)  # windows [s-k, s) predict (s, s+h]: past and future disjoint
        return c[start] - c[start - k], mid[start + h] - mid[start]

    fit = [pairs(days[0]) for days in dataset.values()]
    held_out = [pairs(days[1]) for days in dataset.values()]
    x, y = (np.concatenate(v) for v in zip(*fit))
    slope = np.polyfit(x, y, 1)[0]
    x, y = (np.concatenate(v) for v in zip(*held_out))
    rho = np.corrcoef(np.sign(slope) * x, y)[0, 1]
    assert slope > 0
    assert rho * np.sqrt(x.size - 2) / np.sqrt(1 - rho**2) > 3.0, rho  # t-statistic of the correlation
    assert rho < 0.9  # informative, not a deterministic function of the flow


def test_activity_is_u_shaped_over_the_session(dataset):
    per_minute = []
    for days in dataset.values():
        for t in days:
            minute = (t.ts_ns - t.ts_ns[0]) // 60_000_000_000
            per_minute.append(np.bincount(minute, minlength=390)[:390])
    counts = np.sum(per_minute, axis=0)
    open_, midday, close = counts[:30].mean(), counts[165:225].mean(), counts[-30:].mean()
    assert open_ > 1.3 * midday and close > 1.3 * midday


def test_hawkes_clock_clusters_events_at_millisecond_scale_and_keeps_the_session_facts(tmp_path):
    """``clock="hawkes"``: most gaps far below the mean, many under 1 ms, heavy-tailed gaps; the same book
    path in event time as the default clock; still U-shaped and heavy-tailed in clock time.

    The default (business-time) clock has median/mean ~0.7, ~0.05% of gaps under 1 ms and CV ~1.
    """
    kw = dict(n_symbols=2, n_days=2, seed=SEED, events_per_day=EVENTS, start_date=DAYS[0])
    bursty = simulate_dataset(tmp_path / "h", clock="hawkes", **kw)
    even = simulate_dataset(tmp_path / "b", **kw)
    per_minute = []
    for ph, pb in zip(bursty, even):
        h, b = read_ticks(ph), read_ticks(pb)
        np.testing.assert_array_equal(h.bid_px, b.bid_px)
        np.testing.assert_array_equal(h.trade_sz, b.trade_sz)
        for t, clustered in ((h, True), (b, False)):
            dt = np.diff(t.ts_ns) * 1e-9
            assert (np.median(dt) < 0.01 * dt.mean()) == clustered
            assert (np.mean(dt < 1e-3) > 0.05) == clustered
            assert (dt.std() / dt.mean() > 2.0) == clustered
        minute = (h.ts_ns - _session_open_ns(h.meta["date"])) // 60_000_000_000
        assert minute.min() >= 0 and minute.max() < 390
        per_minute.append(np.bincount(minute, minlength=390))
    counts = np.sum(per_minute, axis=0)
    assert counts[:30].mean() > 1.3 * counts[165:225].mean() and counts[-30:].mean() > 1.3 * counts[165:225].mean()
    r = np.concatenate([_minute_returns(read_ticks(p)) for p in bursty])
    assert np.mean((r - r.mean()) ** 4) / r.var() ** 2 - 3.0 > 2.0


def test_same_seed_same_bytes_other_seed_other_ticks(tmp_path):
    kw = dict(n_symbols=2, n_days=2, events_per_day=400, start_date="2024-03-04")
    a = simulate_dataset(tmp_path / "a", seed=3, **kw)
    b = simulate_dataset(tmp_path / "b", seed=3, **kw)
    c = simulate_dataset(tmp_path / "c", seed=4, **kw)
    for pa, pb, pc in zip(a, b, c):
        assert pa.read_bytes() == pb.read_bytes()
        ta, tc = read_ticks(pa), read_ticks(pc)
        assert not np.array_equal(ta.ts_ns, tc.ts_ns)
        assert not np.array_equal(ta.bid_sz, tc.bid_sz)


def test_cli_writes_the_dataset(tmp_path):
    out = tmp_path / "cli"
    result = CliRunner().invoke(app, ["simulate", "--out", str(out), "--symbols", "2", "--days", "2",
                                      "--events-per-day", "300", "--seed", "5", "--start-date", "2024-02-01"])
    assert result.exit_code == 0, result.output
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.parquet"))
    assert files == ["SIMA/2024-02-01.parquet", "SIMA/2024-02-02.parquet",
                     "SIMB/2024-02-01.parquet", "SIMB/2024-02-02.parquet"]
    kw = dict(n_symbols=2, n_days=2, seed=5, events_per_day=300, start_date="2024-02-01")
    direct = simulate_dataset(tmp_path / "direct", instruments="calibrated", **kw)
    assert [(out / f).read_bytes() for f in files] == [p.read_bytes() for p in direct]
    # the default market is the instruments fitted to the real GOOG and AAPL days (lob.data.instruments)
    fits = {name: load_params(FITTED / f"{name}.json")[0] for name in ("GOOG", "AAPL")}
    for path, name in zip(direct[::2], ("GOOG", "AAPL")):
        t = read_ticks(path)
        assert abs(t.mid()[0] / fits[name].price - 1) < 0.01 and t.meta["tick_size"] == fits[name].tick_size
    assert fits["GOOG"].level_gaps and fits["GOOG"].limit_sizes  # quoted on GOOG's spacing of levels
    # the archetypes are one option away, byte for byte the library's
    result = CliRunner().invoke(app, ["simulate", "--out", str(tmp_path / "arch"), "--symbols", "2", "--days", "2",
                                      "--events-per-day", "300", "--seed", "5", "--start-date", "2024-02-01",
                                      "--instruments", "archetypes"])
    assert result.exit_code == 0, result.output
    arch = simulate_dataset(tmp_path / "arch_direct", **kw)
    assert (tmp_path / "arch" / files[0]).read_bytes() == arch[0].read_bytes() != direct[0].read_bytes()
    result = CliRunner().invoke(app, ["simulate", "--out", str(tmp_path / "bad"), "--instruments", "fitted"])
    assert result.exit_code != 0 and "instruments" in result.output and not (tmp_path / "bad").exists()


@pytest.mark.parametrize("kwargs, message", [
    (dict(seed=-1), "seed"),
    (dict(start_date="2024-13-01"), "start_date"),
    (dict(n_symbols=27), "n_symbols"),
])
def test_bad_arguments_are_named(tmp_path, kwargs, message):
    args = dict(n_symbols=1, n_days=1, seed=0, events_per_day=100, start_date="2024-01-02") | kwargs
    with pytest.raises(ValueError, match=message):
        simulate_dataset(tmp_path, **args)
    assert not any(tmp_path.iterdir())
