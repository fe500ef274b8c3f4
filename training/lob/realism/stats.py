"""The fact primitives every stylized-fact report uses (`lob realism`, `lob generate`): one kurtosis
convention, one autocorrelation rule, one total-variation and one Wasserstein distance.

Conventions: kurtosis is **Pearson's** (m4 / m2², population moments: 3 for a Gaussian, 1 for a symmetric
two-point sample; ``scipy.stats.kurtosis(x, fisher=False)``); a statistic that a sample cannot define is
NaN, never a number: kurtosis of fewer than ``MIN_KURTOSIS_N`` values or of a constant sample, the
autocorrelation at a lag with fewer than ``MIN_ACF_PAIRS`` pairs or of a constant sample.
"""
from __future__ import annotations

import math

import numpy as np

ACF_LAGS = 10  # autocorrelations are reported at lags 1..ACF_LAGS
MIN_KURTOSIS_N = 4
MIN_ACF_PAIRS = 3


def pearson_kurtosis(x: np.ndarray) -> float:
    """Pearson kurtosis of the sample x (N,) (3 for a Gaussian); NaN for N < 4 or no variation."""
    if x.size < MIN_KURTOSIS_N or x.var() == 0:
        return math.nan
    return float(np.mean((x - x.mean()) ** 4) / x.var() ** 2)


def acf(x: np.ndarray, lags: int = ACF_LAGS) -> list[float]:
    """Sample autocorrelation of x (N,) at lags 1..lags (the standard estimator: lag-k sum of products of
    deviations over the lag-0 sum); NaN where fewer than 3 pairs or no variation."""
    x = x - x.mean() if x.size else x
    den = float(np.dot(x, x))
    return [float(np.dot(x[:-k], x[k:]) / den) if x.size - k >= MIN_ACF_PAIRS and den > 0 else math.nan
            for k in range(1, lags + 1)]


def total_variation(p: np.ndarray, q: np.ndarray) -> float:
    """0.5 * sum |p - q| of two share vectors over the same buckets: 0 same, 1 disjoint."""
    return float(0.5 * np.abs(np.asarray(p) - np.asarray(q)).sum())


def wasserstein(a: np.ndarray, b: np.ndarray) -> float:
    """W1 between two samples, in their unit (NaN if either is empty)."""
    from scipy.stats import wasserstein_distance

    return float(wasserstein_distance(a, b)) if a.size and b.size else math.nan
