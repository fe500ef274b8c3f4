"""LOB-Bench's distances and scores (`lob.realism.lobbench`) on hand-made inputs with known values, and the
real-vs-real floor of a real day below its distance to a perturbed copy of the day."""
from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from lob.data.lobster import import_lobster_zips
from lob.data.schema import Ticks, read_ticks
from lob.realism import lobbench
from lob.realism.lobbench import TIME_EDGES, conditional, l1, score_values, sequences, summary, w1

GOOG = Path(__file__).parents[2].parent / "shared" / "data" / "lobster" / "LOBSTER_SampleFile_GOOG_2012-06-21_10.zip"
T0 = 1_704_205_800 * 10**9  # 2024-01-02 09:30 New York


def test_l1_identical_disjoint_and_known_histograms():
    x = np.array([1.0, 2.0, 2.0, 5.0])
    assert l1(x, x) == 0.0 and l1(x, x, discrete=True) == 0.0
    assert l1(np.zeros(50), np.ones(50)) == 1.0 and l1(np.zeros(5), np.ones(7), discrete=True) == 1.0
    # discrete: shares {0: 3/4, 1: 1/4} vs {0: 1/4, 1: 3/4}: half of (1/2 + 1/2)
    assert l1(np.array([0, 0, 0, 1.0]), np.array([0, 1, 1, 1.0]), discrete=True) == pytest.approx(0.5)
    assert l1(np.zeros(0), x) == 1.0 and math.isnan(l1(np.zeros(0), np.zeros(0)))
    # far apart continuous samples fall in different bins however the edges are set
    rng = np.random.default_rng(0)
    assert l1(rng.normal(0, 1, 500), rng.normal(100, 1, 500)) == 1.0


def test_w1_is_in_pooled_standard_deviations():
    a, b = np.array([0.0, 1.0]), np.array([2.0, 3.0])
    sd = math.sqrt((1.5**2 + 0.5**2 + 0.5**2 + 1.5**2) / 3)  # pooled sample sd of 0, 1, 2, 3
    assert w1(a, b) == pytest.approx(2.0 / sd)  # every point moves by 2
    assert w1(a, a) == 0.0 and w1(10 * a, 10 * b) == pytest.approx(w1(a, b))  # scale free
    assert math.isnan(w1(a, np.zeros(0)))


def test_summary_mean_median_and_interquartile_mean():
    s = summary([0.1, 0.2, 0.3, 0.4, 10.0, math.nan])
    assert s["n"] == 5 and s["mean"] == pytest.approx(2.2) and s["median"] == pytest.approx(0.3)
    assert s["iqm"] == pytest.approx(0.3)  # the middle 50% of 5 values: 0.2, 0.3, 0.4


def test_conditional_scores_see_what_the_marginal_hides():
    n = 400
    pair = lambda x, c: np.array([np.repeat(x, n), np.repeat(c, n)], float)  # (2, 2n): rows X, C
    # the same X marginal (half 0, half 1) but swapped against C: unconditional L1 0, conditional 1
    a, b = pair([0, 1], [1, 2]), pair([1, 0], [1, 2])
    assert l1(a[0], b[0]) == 0.0
    assert conditional(a, b, "discrete", False) == {"l1": 1.0, "w1": pytest.approx(2 / math.sqrt(2 * n / (2 * n - 1)))}
    assert conditional(a, a, "discrete", False) == {"l1": 0.0, "w1": 0.0}
    # one group alike, the other disjoint in X; each holds half of the messages: L1 = 0.5
    c = pair([0, 7], [1, 2])
    sd = math.sqrt(2 * n / (2 * n - 1))  # sample sd of n fives and n sevens: every point moves 2 / sd
    assert conditional(pair([0, 5], [1, 2]), c, "discrete", True) == {"l1": 0.5, "w1": pytest.approx(0.5 * 2 / sd)}
    # groups of C one side lacks count L1 1, W1 0 (LOB-Bench's sum skips the undefined W1)
    assert conditional(pair([3, 3], [1, 1]), pair([3, 3], [2, 2]), "discrete", False) == {"l1": 1.0, "w1": 0.0}
    # time of day (24 edges 3,756.5 s apart): 10:00 and 15:00 fall in different groups; 10:00 and 10:16 in one
    assert conditional(pair([1, 2], [36_000, 54_000]), pair([2, 1], [36_000, 54_000]), TIME_EDGES, False)["l1"] == 1.0
    assert conditional(pair([1, 2], [36_000, 37_000]), pair([2, 1], [36_000, 37_000]), TIME_EDGES, False)["l1"] == 0.0
    assert math.isnan(conditional(np.zeros((2, 0)), a, "deciles", False)["l1"])


def test_conditional_values_of_a_hand_made_day():
    """A one-level book whose mid alternates between two values, one message every 100 ms from 09:30:
    volatility = the std (ddof 1) of alternating +-r log returns, spread and time of day per message."""
    m = 500
    bid_px, bid_sz, ask_px, ask_sz = Ticks.empty_book(m)
    up = np.arange(m) % 2 == 1
    bid_px[:, 0], ask_px[:, 0] = np.where(up, 10.01, 10.00), np.where(up, 10.03, 10.02)
    bid_sz[:, 0], ask_sz[:, 0] = 100.0, 200.0
    ts = T0 + np.arange(m, dtype=np.int64) * 10**8
    t = Ticks(ts, bid_px, bid_sz, ask_px, ask_sz, np.zeros(m), np.zeros(m), np.zeros(m, np.int8), "X",
              {"date": "2024-01-02", "tick_size": 0.01, "n_levels": 1})
    v = score_values(sequences([t], 1))
    r = math.log(10.02 / 10.01)
    returns = np.where(np.arange(m - 1) % 2 == 0, r, -r)
    vol = v["spread | volatility"]
    assert vol.shape == (2, m) and set(vol[0]) == {2.0} and np.allclose(vol[1], returns.std(ddof=1))
    assert np.allclose(v["spread | time"][1], 9.5 * 3600 + np.arange(m) * 0.1)
    assert np.array_equal(v["ask_volume | spread"], np.array([np.full(m, 200.0), np.full(m, 2.0)]))


def day(gaps_ms: float, spread: int, size: float, n: int = 1000) -> Ticks:
    """A one-level book: the bid queue alternates ``size`` and 2 ``size`` (an order of ``size`` added, then the
    oldest resting one cancelled); ``spread`` ticks wide; events ``gaps_ms`` apart."""
    bid_px, bid_sz, ask_px, ask_sz = Ticks.empty_book(n)
    bid_px[:, 0], ask_px[:, 0] = 10.0, 10.0 + 0.01 * spread
    bid_sz[:, 0], ask_sz[:, 0] = size * (1 + np.arange(n) % 2), 300.0
    ts = T0 + np.round(np.arange(n) * gaps_ms * 1e6).astype(np.int64)
    return Ticks(ts, bid_px, bid_sz, ask_px, ask_sz, np.zeros(n), np.zeros(n), np.zeros(n, np.int8), "X",
                 {"date": "2024-01-02", "tick_size": 0.01, "n_levels": 1})


def test_scores_of_hand_made_days():
    v = score_values(sequences([day(2.0, 1, 10.0)], 1))
    assert set(v["spread"]) == {1.0} and np.allclose(v["log_inter_arrival_time"], math.log(2.0))
    # oldest first: the order added at odd event j is the older of two from j + 2 on and cancelled at j + 3,
    # 6 ms later; the first book's order (event 0) goes at event 2, 4 ms
    ttc = v["log_time_to_cancel"]
    assert ttc.size > 400 and ttc[0] == pytest.approx(math.log(0.004)) and np.allclose(ttc[1:], math.log(0.006))
    assert np.allclose(v["orderbook_imbalance"][1::2], (20 - 300) / 320)
    assert set(v["limit_bid_order_levels"]) == {1.0} and v["limit_ask_order_levels"].size == 0
    assert np.allclose(v["limit_bid_order_depth"], 0.5)  # a tick's half spread below the mid
    assert v["ask_volume"].sum() == 300 * 1000 and v["vol_per_min"].size == 0  # no trades
    w = score_values(sequences([day(20.0, 3, 10.0)], 1))
    d = lobbench.distances(v, w)
    assert d["spread"]["l1"] == 1.0 and d["log_inter_arrival_time"]["l1"] == 1.0
    assert d["orderbook_imbalance"]["l1"] == 0.0 and d["bid_volume"]["w1"] == 0.0
    # the same day again: every score 0; the floor of a day whose sequences are alike (but for the first
    # one's 4 ms time-to-cancel) is near 0
    same = lobbench.compare(sequences([day(2.0, 1, 10.0)], 1), sequences([day(2.0, 1, 10.0)], 1))
    assert same["summary"]["l1"]["mean"] == 0.0 and 0.0 < same["summary"]["floor_l1"]["mean"] < 0.001
    undefined = {k for k, v in same["scores"].items() if math.isnan(v["l1"])}  # empty on both sides
    assert undefined == {"limit_ask_order_depth", "ask_cancellation_depth", "limit_ask_order_levels",
                         "ask_cancellation_levels", "vol_per_min", "ofi_up", "ofi_down"}
    assert same["summary"]["l1"]["n"] == 24 - len(undefined)  # the 3 conditional scores are in the summary
    assert same["summary_unconditional"]["l1"]["n"] == 21 - len(undefined)


@pytest.mark.skipif(not GOOG.exists(), reason=f"LOBSTER GOOG sample day not found at {GOOG}")
def test_floor_of_a_real_day_is_below_its_distance_to_a_perturbed_copy(tmp_path):
    (path,) = import_lobster_zips([GOOG], tmp_path, tick_size=0.01)
    real = read_ticks(path).slice(0, 20_000)
    ts = real.ts_ns[0] + (real.ts_ns - real.ts_ns[0]) // 2  # clock x 0.5
    perturbed = replace(real, ts_ns=ts, bid_sz=2 * real.bid_sz, ask_sz=2 * real.ask_sz, trade_sz=2 * real.trade_sz)
    r = lobbench.compare(sequences([perturbed], 10), sequences([real], 10))
    s = r["summary"]
    assert r["sequences"][0] == r["sequences"][1] >= 30 and s["l1"]["n"] == s["floor_l1"]["n"] == 24
    assert r["summary_unconditional"]["floor_l1"]["mean"] < 0.2 and s["floor_l1"]["mean"] < s["l1"]["mean"]
    assert s["floor_w1"]["mean"] < s["w1"]["mean"]
    for name in ("log_inter_arrival_time", "ask_volume", "bid_volume_touch", "vol_per_min", "ask_volume | spread"):
        assert r["scores"][name]["floor_l1"] < r["scores"][name]["l1"], name


def test_cli_realism_prints_and_writes_the_scores_beside_the_floor(tmp_path):
    import json

    from typer.testing import CliRunner

    from lob.cli import app
    from lob.data.schema import day_path, write_ticks

    write_ticks(day_path(tmp_path / "a", "X", "2024-01-02"), day(2.0, 3, 10.0))
    write_ticks(day_path(tmp_path / "b", "X", "2024-01-02"), day(2.0, 1, 10.0))
    res = CliRunner().invoke(app, ["realism", str(tmp_path / "a"), str(tmp_path / "b"), "--out",
                                   str(tmp_path / "r.json")], env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    assert "LOB-Bench scores" in res.output and "floor" in res.output
    lb = json.loads((tmp_path / "r.json").read_text())["lobbench"]
    assert lb["scores"]["spread"]["l1"] == 1.0 and lb["scores"]["bid_volume"]["l1"] == 0.0
    assert lb["sequences"] == [2, 2] and lb["summary"]["floor_l1"]["mean"] < 0.001
