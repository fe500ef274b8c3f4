import numpy as np
import pytest
from sklearn.metrics import f1_score

from lob.evaluation.bootstrap import _macro_f1_rows, block_length, paired_ci

N = 20_000


def _truth(rng, run=50):
    """Labels in runs of ``run`` equal values (dependent, as overlapping horizon labels are)."""
    return np.repeat(rng.choice(3, size=N // run, p=[0.2, 0.6, 0.2]), run)


def _forecaster(rng, truth, lo, hi, run=50):
    """P(true class) ~ U(lo, hi), drawn once per run of ``run`` ticks (autocorrelated errors), rest split evenly."""
    p_true = np.repeat(rng.uniform(lo, hi, size=N // run), run)
    proba = np.repeat(((1 - p_true) / 2)[:, None], 3, axis=1)
    proba[np.arange(N), truth] = p_true
    return proba


def _expected_nll(lo, hi):
    """E[-log U] for U ~ Uniform(lo, hi)."""
    f = lambda x: x * np.log(x) - x  # noqa: E731  (antiderivative of log x)
    return -(f(hi) - f(lo)) / (hi - lo)


def test_interval_covers_a_known_edge_and_excludes_zero():
    rng = np.random.default_rng(1)
    y = _truth(rng)
    a, b = _forecaster(rng, y, 0.35, 0.85), _forecaster(rng, y, 0.15, 0.65)
    edge = _expected_nll(0.35, 0.85) - _expected_nll(0.15, 0.65)  # ~ -0.43 nats: a is better
    lo, hi = paired_ci(y, a, b, block_length(50), "log_loss", n_boot=400)
    assert lo <= edge <= hi and hi < 0
    # a's argmax is always the true class (P(true) > 1/3), b's only when its draw is above 1/3: F1 edge > 0
    lo, hi = paired_ci(y, a, b, block_length(50), "macro_f1", n_boot=400)
    assert lo > 0


def test_interval_covers_zero_without_an_edge():
    rng = np.random.default_rng(2)
    y = _truth(rng, run=10)
    a, b = _forecaster(rng, y, 0.2, 0.8, run=10), _forecaster(rng, y, 0.2, 0.8, run=10)  # same skill
    ci = {key: paired_ci(y, a, b, block_length(10), key, n_boot=400) for key in ("macro_f1", "log_loss")}
    for key, (lo, hi) in ci.items():
        assert lo < 0 < hi, (key, lo, hi)
    # blocks matter: resampling single ticks ignores the runs of dependent errors and is far too narrow
    iid = paired_ci(y, a, b, 1, "log_loss", n_boot=400)
    assert iid[1] - iid[0] < 0.5 * (ci["log_loss"][1] - ci["log_loss"][0])


def test_resampled_macro_f1_is_sklearns():
    rng = np.random.default_rng(3)
    y, p = rng.choice(3, 500), rng.choice(3, 500)
    cm = np.bincount(y * 3 + p, minlength=9).reshape(1, 3, 3)
    assert _macro_f1_rows(cm)[0] == pytest.approx(f1_score(y, p, average="macro"))
    # a class in neither truth nor prediction does not count, as in sklearn
    y2, p2 = np.array([1, 1, 2, 2]), np.array([1, 2, 2, 2])
    cm2 = np.bincount(y2 * 3 + p2, minlength=9).reshape(1, 3, 3)
    assert _macro_f1_rows(cm2)[0] == pytest.approx(f1_score(y2, p2, average="macro"))
    assert block_length(10) >= 10 and block_length(1000) >= 1000


def test_no_interval_from_too_few_blocks():
    rng = np.random.default_rng(4)
    y = rng.choice(3, 600)
    a, b = np.eye(3)[y] * 0.9 + 0.1 / 3, np.full((600, 3), 1 / 3)
    assert paired_ci(y, a, b, 500, "log_loss") is None  # 1.2 blocks: every resample is nearly the sample
    lo, hi = paired_ci(y, a, b, 100, "log_loss")
    assert hi < 0
