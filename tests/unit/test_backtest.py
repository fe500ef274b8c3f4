import numpy as np
import pytest

from lob.evaluation.backtest import Touch, _pnl, backtest, choose_threshold, round_trip_pnl, segment_run, trades


def _touch(bid, spread=0.1, days=None, symbol="X"):
    bid = np.asarray(bid, dtype=np.float64)
    day = np.asarray(days if days is not None else ["2024-01-02"] * len(bid))
    return Touch(symbol, bid, bid + spread, day)


def _proba(signal):
    """(N, 3) probabilities with P(up) - P(down) = signal / 2."""
    s = np.asarray(signal, dtype=np.float64)
    return np.stack([(1 - s) / 4, np.full_like(s, 0.5), (1 + s) / 4], axis=1)


def test_round_trips_pay_the_spread_both_ways_and_the_fee_twice():
    touch = _touch([100, 100, 101, 101, 100, 99, 99, 99])
    long_, short = round_trip_pnl(touch, 2, fee_bps=1.0)
    # long at 0: buy the ask 100.1, sell the bid at 2 (101): 0.9 - 1e-4 (100.1 + 101) = 0.87989 on mid 100.05
    assert long_[0] == pytest.approx(0.87989 / 100.05 * 1e4)
    # short at 3: sell the bid 101, buy back the ask at 5 (99.1): 1.9 - 1e-4 (101 + 99.1) on mid 101.05
    assert short[3] == pytest.approx(1.87999 / 101.05 * 1e4)
    # a flat price loses the spread and the fees: long at 5 (ask 99.1 -> bid 99)
    assert long_[5] == pytest.approx((-0.1 - 1e-4 * (99.1 + 99)) / 99.05 * 1e4)
    assert np.isnan(long_[6:]).all() and np.isnan(short[6:]).all()


def test_policy_holds_one_position_and_skips_untradable_entries():
    signal = np.array([0.9, 0.9, 0.0, -0.9, 0.9, 0.0, 0.9, 0.9])
    tradable = np.array([True] * 6 + [False, False])  # the last h = 2 ticks have no exit
    t, side = trades(signal, tradable, 2, threshold=0.5)
    # 0 long (open until 2), 1 skipped, 3 short (open until 5), 4 skipped, 6 and 7 untradable
    assert t.tolist() == [0, 3] and side.tolist() == [1, -1]


def test_backtest_reports_the_hand_computed_pnl_per_day():
    bid = [100, 100, 101, 101, 100, 99, 99, 99]
    days = ["2024-01-02"] * 3 + ["2024-01-03"] * 5
    touch = _touch(bid, days=days)
    labels = np.array([1, 1, 1, 1, 1, 1, -1, -1])
    signal = [0.9, 0.9, 0.0, -0.9, 0.9, 0.0, 0.9, 0.9]
    run = segment_run(touch, _proba(signal), labels, 2, fee_bps=1.0)
    assert run.signal == pytest.approx(np.asarray(signal) * 0.5)
    out, curve = backtest([run], [run], 2, min_trades=1)
    pnl = [0.87989 / 100.05 * 1e4, 1.87999 / 101.05 * 1e4]
    assert out["trades"] == 2 and out["hit_rate"] == 1.0
    assert out["mean_pnl_bps"] == pytest.approx(np.mean(pnl)) and out["total_pnl_bps"] == pytest.approx(sum(pnl))
    assert out["total_pnl"] == pytest.approx(0.87989 + 1.87999)
    assert out["per_day"] == {"X 2024-01-02": {"trades": 1, "total_pnl_bps": pytest.approx(pnl[0])},
                              "X 2024-01-03": {"trades": 1, "total_pnl_bps": pytest.approx(pnl[1])}}
    assert curve == pytest.approx(np.cumsum(pnl))


def test_threshold_is_chosen_on_validation_and_a_losing_signal_does_not_trade():
    rng = np.random.default_rng(0)
    n, h = 4000, 5
    steps = rng.choice([-1.0, 1.0], size=n)
    bid = 100 + np.cumsum(steps) * 0.5  # moves of 0.5 per tick, spread 0.1
    touch = _touch(bid)
    future = np.concatenate([bid[h:] - bid[:-h], np.zeros(h)])
    labels = np.where(np.arange(n) < n - h, 1, -1)
    # knows the move 10% of the time (|signal| 0.45 there), else noise of |signal| < 0.15
    knows = rng.random(n) < 0.1
    informative = np.where(knows, 0.9 * np.sign(future), rng.uniform(-0.3, 0.3, n))
    good = segment_run(touch, _proba(informative), labels, h, fee_bps=0.5)
    theta, val_pnl = choose_threshold([good], h)
    assert theta is not None and theta >= 0.1 and val_pnl > 0  # most of the noise is filtered out
    assert val_pnl > _pnl([good], h, 0.0)[0].sum()  # better than trading on every non-zero signal
    out, _ = backtest([good], [good], h)
    assert out["trades"] >= 20 and out["mean_pnl_bps"] > 0
    # the same signal with its sign flipped loses on every threshold: the policy stays out
    bad = segment_run(touch, _proba(-informative), labels, h, fee_bps=0.5)
    assert choose_threshold([bad], h) == (None, 0.0)
    out, curve = backtest([bad], [good], h)
    assert out["threshold"] is None and out["trades"] == 0 and out["total_pnl_bps"] == 0 and len(curve) == 0
