"""Calibration: the Hawkes clock is exact, `lob calibrate` recovers a simulated instrument, params round-trip."""
from __future__ import annotations

import json
import math
from dataclasses import asdict, replace

import numpy as np
import pytest
from scipy import stats
from typer.testing import CliRunner

from lob.cli import app
from lob.data.instruments import load_params
from lob.realism.calibrate import calibrate, size_unit
from lob.realism.report import realism_report
from lob.data.simulator import SymbolSpec, hawkes_clock, simulate_dataset
from lob.data.schema import read_ticks

TRUTH = SymbolSpec(symbol="CAL", price=50.0, tick_size=0.01, lot_size=100.0, depth=6.0, limit_size=2.0, market_size=2.5,
                   inside_rate=0.3, market_mult=1.6, cancel_mult=0.8, clock_branching=(0.6, 0.25),
                   clock_decay_s=(0.01, 20.0))


def test_hawkes_clock_passes_the_time_rescaling_test():
    """Compensator increments between events of an exact sampler are iid Exp(1) (time-rescaling theorem)."""
    branching, decay, rate = (0.5, 0.3), (0.002, 5.0), 4.0
    mu, beta = rate * (1 - sum(branching)), [1 / d for d in decay]

    def increments(t):
        x = [b * rate for b in branching]  # the sampler starts from the stationary mean excitation
        out = []
        for dt in np.diff(np.r_[0.0, t]).tolist():
            out.append(mu * dt + sum(xk * (1 - math.exp(-bk * dt)) / bk for xk, bk in zip(x, beta)))
            x = [xk * math.exp(-bk * dt) + a * bk for xk, bk, a in zip(x, beta, branching)]
        return np.array(out)

    t = hawkes_clock(np.random.default_rng(1), 40_000, branching, decay, rate)
    assert stats.kstest(increments(t), "expon").pvalue > 1e-3
    gaps = np.diff(t)
    assert gaps.mean() == pytest.approx(1 / rate, rel=0.1)
    assert np.median(gaps) < 0.2 / rate  # bursty: most gaps far below the mean
    # evenly spread (Poisson) times of the same rate fail the same test: the test can fail
    poisson = np.cumsum(np.random.default_rng(1).exponential(1 / rate, 40_000))
    assert stats.kstest(increments(poisson), "expon").pvalue < 1e-6


def test_size_unit_is_the_lot():
    assert size_unit(np.array([100.0, 300, 200, 1200])) == 100
    assert size_unit(np.array([18.0, 37, 100, 5])) == 1
    assert size_unit(np.array([4.524, 6.221, 0.015])) == 0.001


@pytest.mark.slow
def test_calibration_recovers_a_simulated_instrument(tmp_path):
    """Simulate a known instrument, calibrate on its output, compare parameters and the goal table.

    Tolerances: tick, grid, lot exact; market_mult, depth within 35%; cancel_mult, inside_rate within 50%;
    limit/market sizes within 25% (their estimators are capped by the queue); total clock branching
    within 0.1, fast decay within a factor 2.
    """
    simulate_dataset(tmp_path / "truth", n_symbols=1, n_days=2, seed=11, events_per_day=10_000,
                     start_date="2024-03-04", specs=[TRUTH])
    params = calibrate(str(tmp_path / "truth"), tmp_path / "params.json", seed=0)
    spec, events = load_params(tmp_path / "params.json")
    assert abs(events / 10_000 - 1) < 0.03 and spec.symbol == "CAL"  # visible events / simulated visible share
    assert (spec.tick_size, spec.grid_ticks, spec.lot_size, spec.session_s, spec.u_shaped) == (0.01, 1, 100.0, 23400.0, True)
    got = asdict(spec)
    for name, tol in (("market_mult", 0.35), ("depth", 0.35), ("cancel_mult", 0.5), ("inside_rate", 0.5),
                      ("limit_size", 0.25), ("market_size", 0.25)):
        assert abs(got[name] / getattr(TRUTH, name) - 1) <= tol, (name, got[name], getattr(TRUTH, name), params["moments"])
    assert abs(sum(spec.clock_branching) - sum(TRUTH.clock_branching)) <= 0.1, spec.clock_branching
    assert 0.5 <= spec.clock_decay_s[0] / TRUTH.clock_decay_s[0] <= 2.0, spec.clock_decay_s
    # the calibrated instrument, simulated with other seeds, meets the goal against its source
    simulate_dataset(tmp_path / "fit", n_symbols=1, n_days=2, seed=12, events_per_day=events, start_date="2024-03-04",
                     specs=[spec])
    report = realism_report(str(tmp_path / "fit"), str(tmp_path / "truth"))
    unmet = [g for g in report["goal"] if not g["met"]]
    assert not unmet, unmet


def test_simulate_params_cli_and_bad_params_are_named(tmp_path):
    good = {"format": "lob-instrument/1", "instrument": asdict(replace(TRUTH, session_s=600.0, u_shaped=False)),
            "events_per_day": 400}
    path = tmp_path / "p.json"
    path.write_text(json.dumps(good))
    res = CliRunner().invoke(app, ["simulate", "--params", str(path), "--out", str(tmp_path / "d"), "--days", "2"])
    assert res.exit_code == 0, res.output
    files = sorted((tmp_path / "d" / "CAL").glob("*.parquet"))
    assert len(files) == 2
    t = read_ticks(files[0])
    assert len(t) == 400 and t.meta["tick_size"] == 0.01
    assert (t.ts_ns[-1] - t.ts_ns[0]) * 1e-9 < 600.0
    assert np.median(np.diff(t.ts_ns)) * 1e-9 < 0.2 * 600.0 / 400  # the Hawkes clock: bursts well below the mean gap
    for broken, word in ((dict(good, format="x"), "format"), (dict(good, events_per_day=1), "events_per_day"),
                         (dict(good, instrument=dict(good["instrument"], depth=-1)), "depth"),
                         (dict(good, instrument=dict(good["instrument"], clock_branching=[0.7, 0.4])), "clock_branching"),
                         (dict(good, instrument=dict(good["instrument"], level_gaps=[0.5, -0.1])), "level_gaps"),
                         (dict(good, instrument=dict(good["instrument"], limit_sizes=[100, 0])), "limit_sizes"),
                         (dict(good, instrument=dict(good["instrument"], colour=1)), "colour")):
        path.write_text(json.dumps(broken))
        res = CliRunner().invoke(app, ["simulate", "--params", str(path), "--out", str(tmp_path / "bad")])
        assert res.exit_code == 2 and word in res.output, (word, res.output)
        assert not (tmp_path / "bad").exists()


def test_wide_grid_instrument_quotes_every_few_ticks(tmp_path):
    spec = replace(TRUTH, grid_ticks=3, price=90.0, clock_branching=(), clock_decay_s=())
    simulate_dataset(tmp_path, n_symbols=1, n_days=1, seed=0, events_per_day=2000, start_date="2024-03-04", specs=[spec])
    t = read_ticks(tmp_path / "CAL" / "2024-03-04.parquet")
    on = t.bid_px / 0.03
    np.testing.assert_allclose(on, np.round(on), atol=1e-6)
    spread_ticks = np.round((t.ask_px[:, 0] - t.bid_px[:, 0]) / 0.01)
    assert set(np.unique(spread_ticks) % 3) == {0} and t.meta["tick_size"] == 0.01


def test_level_gaps_put_quotes_on_a_lattice_of_the_given_gaps_and_sizes_come_from_their_tables(tmp_path):
    """A calibrated book quotes where a real one does: adjacent quotable prices 1, 2 or 3 ticks apart at the
    given odds (so spreads take every tick count, not a multiple of a grid step); adds are drawn from
    ``limit_sizes``, market orders from ``market_sizes``."""
    gaps = (0.5, 0.3, 0.2)
    spec = replace(TRUTH, level_gaps=gaps, limit_sizes=(1, 7), market_sizes=(3,), price=90.0, lot_size=1.0,
                   clock_branching=(), clock_decay_s=())
    assert spec.step_ticks == pytest.approx(1.7)
    paths = simulate_dataset(tmp_path, n_symbols=1, n_days=3, seed=0, events_per_day=10_000, start_date="2024-03-04",
                             specs=[spec])
    step = []
    for path in paths:  # the day's lattice: every price quoted that day
        t = read_ticks(path)
        quoted = np.unique(np.round(np.r_[t.bid_px[t.bid_px > 0], t.ask_px[t.ask_px > 0]] / 0.01).astype(np.int64))
        step += np.diff(quoted).tolist()
    assert len(step) > 300 and set(step) <= {1, 2, 3}  # every price ever quoted sits on the lattice
    np.testing.assert_allclose(np.bincount(step, minlength=4)[1:] / len(step), gaps, atol=0.08)
    spread = np.round((t.ask_px[:, 0] - t.bid_px[:, 0]) / 0.01).astype(np.int64)
    assert np.gcd.reduce(spread) == 1 and len(np.unique(spread)) >= 5
    assert abs(np.median((t.bid_px[:, 0] + t.ask_px[:, 0]) / 2) / 90.0 - 1) < 0.05  # the lattice is anchored at the price
    same = (t.bid_px[1:, 0] == t.bid_px[:-1, 0]) & (t.trade_side[1:] == 0)
    added = np.diff(t.bid_sz[:, 0])[same]
    assert set(np.unique(added[added > 0])) == {1.0, 7.0}
    fills = t.trade_sz[t.trade_side != 0]
    assert fills.max() == 3.0 and np.mean(fills == 3.0) > 0.5  # a fill takes less only when the queue is shorter
