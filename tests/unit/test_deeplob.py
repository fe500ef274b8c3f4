"""DeepLOB, `lob evaluate`'s reference baseline: shapes, learning, chronological windows, determinism.
(`lob evaluate`'s deeplob rows: tests/unit/test_evaluate.py.)"""
import numpy as np
import pytest
import torch

from lob.contract import HORIZONS, N_LEVELS
from lob.data.schema import Ticks
from lob.evaluation.deeplob import WINDOW, Books, DeepLOB, DeepLOBBaseline
from lob.evaluation.metrics import direction_scores
from lob.training.labels import HALT_GAP_S
from lob.training.segments import Segment

TICK = 0.01


def book(n: int, seed: int = 0, gap_at: int | None = None, levels: int = N_LEVELS) -> Ticks:
    """n ticks of a 1-tick-spread book around a random-walk mid, ``levels`` deep (the rest empty); 1 ms apart,
    with a gap longer than a halt (a new session) before tick ``gap_at``."""
    rng = np.random.default_rng(seed)
    bid1 = 100.0 + TICK * np.cumsum(rng.integers(-1, 2, n))
    bid_px, bid_sz, ask_px, ask_sz = Ticks.empty_book(n)
    k = np.arange(levels)
    bid_px[:, :levels] = bid1[:, None] - TICK * k
    ask_px[:, :levels] = bid1[:, None] + TICK * (k + 1)
    bid_sz[:, :levels] = rng.integers(1, 500, (n, levels))
    ask_sz[:, :levels] = rng.integers(1, 500, (n, levels))
    ts = 1_700_000_000 * 10**9 + np.arange(n, dtype=np.int64) * 10**6
    if gap_at is not None:
        ts[gap_at:] += int((HALT_GAP_S + 1) * 1e9)
    z = np.zeros(n)
    return Ticks(ts, bid_px, bid_sz, ask_px, ask_sz, z, z.copy(), np.zeros(n, np.int8), "SYN")


def segment(ticks: Ticks, labels: np.ndarray | None = None) -> Segment:
    """A segment of ``ticks`` (DeepLOB reads only the book and the labels); labels default to all flat."""
    n = len(ticks)
    labels = np.ones((n, len(HORIZONS)), np.int64) if labels is None else labels
    return Segment("SYN", ticks, np.zeros(n, np.int64), np.zeros((n, 1), np.float32), labels,
                   np.ones(labels.shape, np.float32))


def imbalance_labels(t: Ticks, seed: int = 5) -> np.ndarray:
    """Sets the best sizes to 5 or 500 at random and returns a pattern the last snapshot decides: up where
    the best bid is the larger, down where the best ask is, else flat; the same on every horizon."""
    rng = np.random.default_rng(seed)
    t.bid_sz[:, 0], t.ask_sz[:, 0] = rng.choice([5, 500], len(t)), rng.choice([5, 500], len(t))
    b, a = t.bid_sz[:, 0], t.ask_sz[:, 0]
    y = np.where(b > a, 2, np.where(a > b, 0, 1))
    return np.repeat(y[:, None], len(HORIZONS), axis=1)


@pytest.fixture(autouse=True)
def one_thread():
    torch.set_num_threads(1)


def test_outputs_one_softmax_per_horizon():
    logits = DeepLOB()(torch.randn(2, WINDOW, 4 * N_LEVELS))
    assert logits.shape == (2, len(HORIZONS), 3)
    seg = segment(book(150, levels=5))  # a 5-level book: the empty levels are handled
    proba = DeepLOBBaseline.fit([seg], [seg], steps=0).predict_proba(seg)
    assert proba.shape == (150, len(HORIZONS), 3) and np.isfinite(proba).all()
    assert (proba > 0).all() and np.allclose(proba.sum(-1), 1.0)


def test_a_few_steps_reduce_the_training_loss():
    t = book(600, seed=1)
    seg = segment(t, imbalance_labels(t))
    y = seg.labels[:, 0]
    assert min(np.bincount(y, minlength=3)) > 100  # all three classes are there to learn
    # a 10-snapshot window keeps the test fast; the layers and the training loop are the same
    fit = lambda steps: DeepLOBBaseline.fit([seg], [], steps=steps, batch=64, window=10)  # noqa: E731
    loss = {steps: direction_scores(y, fit(steps).predict_proba(seg)[:, 0])["log_loss"] for steps in (0, 30)}
    assert loss[30] < 0.97 * loss[0]


def test_windows_hold_the_tick_and_earlier_snapshots_of_its_session_only():
    t = book(260, seed=2, gap_at=150)
    base = DeepLOBBaseline.fit([segment(t)], [], steps=0)
    proba = base.predict_proba(segment(t))
    for tick in (120, 200):
        later = book(260, seed=2, gap_at=150)
        later.bid_sz[tick + 1:] *= 3.0  # every later snapshot changes
        later.ask_px[tick + 1:] += TICK
        got = base.predict_proba(segment(later))
        assert np.array_equal(got[: tick + 1], proba[: tick + 1])  # no window up to tick t sees them
        assert not np.allclose(got[tick + 1], proba[tick + 1])  # (tick t + 1's does)
    # the window of tick t ends with snapshot t: changing snapshot t changes its last row only
    changed = book(260, seed=2, gap_at=150)
    changed.ask_sz[100] *= 5.0
    rows = np.arange(80, 101)
    x0, x1 = (base.norm.windows(Books.of([segment(b)]), rows).numpy() for b in (t, changed))
    assert np.array_equal(x0[:-1], x1[:-1]) and not np.array_equal(x0[-1, -1], x1[-1, -1])
    assert np.array_equal(x0[-1, :-1], x1[-1, :-1])
    # the session starting at tick 150 never sees the earlier one: its first ticks are left-padded with tick 150
    earlier = book(260, seed=2, gap_at=150)
    earlier.bid_sz[:150] *= 7.0
    assert np.array_equal(base.predict_proba(segment(earlier))[150:], proba[150:])
    x = base.norm.windows(Books.of([segment(t)]), np.array([155]))[0].numpy()
    assert (x[: WINDOW - 5] == x[WINDOW - 6]).all() and not np.array_equal(x[WINDOW - 6], x[WINDOW - 5])


def test_same_seed_same_probabilities():
    t = book(120, seed=3)
    seg = segment(t, imbalance_labels(t))
    fit = lambda seed: DeepLOBBaseline.fit([seg], [seg], steps=3, seed=seed, batch=16).predict_proba(seg)  # noqa: E731
    first = fit(0)
    assert np.array_equal(first, fit(0))
    assert not np.allclose(first, fit(1))


def test_saved_baseline_predicts_what_the_fitted_one_did(tmp_path):
    """RUN/deeplob.pt: a later evaluation of the run reuses the fitted DeepLOB; it must be the same model."""
    t = book(120, seed=3)
    seg = segment(t, imbalance_labels(t))
    fitted = DeepLOBBaseline.fit([seg], [seg], steps=3, seed=0, batch=16)
    fitted.save(tmp_path / "deeplob.pt")
    loaded = DeepLOBBaseline.load(tmp_path / "deeplob.pt")
    assert loaded.budget == fitted.budget
    proba = fitted.predict_proba(seg)
    assert proba.std(axis=0).max() > 0  # not a constant forecast: the comparison below could fail
    np.testing.assert_array_equal(loaded.predict_proba(seg), proba)
