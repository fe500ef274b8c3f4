import numpy as np
import pytest

from lob.data.schema import Ticks
from lob.training.split import split_from_boundaries, split_symbol

DAY = 86_400 * 10**9
OPEN = 14 * 3600 * 10**9  # 14:00 UTC, first tick of each day


def ticks_at(ts_ns: np.ndarray, symbol: str = "AAA") -> Ticks:
    n = ts_ns.shape[0]
    bid_px, bid_sz, ask_px, ask_sz = Ticks.empty_book(n)
    bid_px[:, 0], ask_px[:, 0], bid_sz[:, 0], ask_sz[:, 0] = 100.0, 100.01, 1.0, 1.0
    return Ticks(ts_ns.astype(np.int64), bid_px, bid_sz, ask_px, ask_sz, np.zeros(n), np.zeros(n),
                 np.zeros(n, np.int8), symbol)


def test_single_day_splits_by_time_not_by_count():
    # 1,000 ticks in the first hour, 100 in the next two: a count split would put everything late in test
    ts = np.concatenate([np.linspace(0, 3600e9, 1000, endpoint=False), np.linspace(3600e9, 3 * 3600e9, 100)])
    s = split_symbol(ticks_at(OPEN + ts.astype(np.int64)))
    assert s.train == slice(0, s.val_start) and s.val == slice(s.val_start, s.test_start)
    assert 0 < s.val_start < s.test_start < s.n_ticks
    elapsed = (np.array([s.val_start_ts, s.test_start_ts]) - OPEN) / 3600e9
    # boundaries at 70% and 85% of the 3 h span (within one tick's spacing)
    assert elapsed == pytest.approx([2.1, 2.55], abs=0.03)
    assert s.val_start > 1000  # all of the busy first hour is training data


def test_parts_are_disjoint_chronological_and_cover_every_tick():
    rng = np.random.default_rng(0)
    ts = np.sort(rng.integers(0, 6 * 3600 * 10**9, 5000)) + OPEN
    t = ticks_at(ts)
    s = split_symbol(t, (0.6, 0.2, 0.2))
    idx = [np.arange(len(t))[p] for p in (s.train, s.val, s.test)]
    assert sum(len(i) for i in idx) == len(t)
    assert not set(idx[0]) & set(idx[1]) and not set(idx[1]) & set(idx[2])
    assert ts[idx[0]].max() < ts[idx[1]].min() and ts[idx[1]].max() < ts[idx[2]].min()


def test_overnight_gaps_do_not_count_as_time():
    # three equal trading days: 70% / 85% of trading time fall in day 3 (a wall-clock split would put
    # val and test both inside the night before day 3 and leave val empty)
    day = np.arange(0, 6 * 3600, 1) * 10**9
    ts = np.concatenate([OPEN + d * DAY + day for d in range(3)])
    s = split_symbol(ticks_at(ts))
    n_day = day.shape[0]
    assert s.val_start == pytest.approx(0.70 * 3 * n_day, abs=2)
    assert s.test_start == pytest.approx(0.85 * 3 * n_day, abs=2)


def test_boundaries_round_trip_and_detect_changed_data():
    ts = OPEN + np.arange(1000, dtype=np.int64) * 10**9
    s = split_symbol(ticks_at(ts))
    assert split_from_boundaries(ticks_at(ts), s.to_json()) == s
    with pytest.raises(ValueError, match="no longer matches"):
        split_from_boundaries(ticks_at(ts[:900]), s.to_json())


def test_bad_fractions_and_tiny_sequences_are_refused():
    ts = OPEN + np.arange(10, dtype=np.int64)
    with pytest.raises(ValueError, match="fractions"):
        split_symbol(ticks_at(ts), (0.8, 0.3, 0.1))
    with pytest.raises(ValueError, match="at least 3"):
        split_symbol(ticks_at(ts[:2]))
