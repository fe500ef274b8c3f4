"""Scores of direction probabilities over integer labels (0 = down, 1 = flat, 2 = up), via scikit-learn.

For ``y`` (N,) int64 and ``proba`` (N, 3) rows summing to 1, predicted class = argmax:

* accuracy, macro-F1 (mean per-class F1 over the classes present in truth or prediction), confusion;
* log-loss ``mean(-log p[y])`` and the multi-class Brier score ``mean(Σ_c (p_c - 1[y = c])²)`` (0 best, 2 worst);
* expected calibration error of the top label: ticks binned by max probability into ``n_bins`` equal-width
  bins, ``ECE = Σ_b n_b / N · |accuracy_b - confidence_b|``; ``reliability`` gives the bins for the plot.
"""
from __future__ import annotations

import numpy as np
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, log_loss

N_CLASSES = 3
N_BINS = 15


def confusion(truth: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """(3, 3) int64 counts, rows = true class, columns = predicted class."""
    return confusion_matrix(truth, pred, labels=list(range(N_CLASSES)))


def accuracy(truth: np.ndarray, pred: np.ndarray) -> float:
    return float(accuracy_score(truth, pred))


def macro_f1(truth: np.ndarray, pred: np.ndarray) -> float:
    return float(f1_score(truth, pred, average="macro", zero_division=0.0))


def brier(truth: np.ndarray, proba: np.ndarray) -> float:
    return float(np.mean(np.sum((proba - np.eye(N_CLASSES)[truth]) ** 2, axis=1)))


def reliability(truth: np.ndarray, proba: np.ndarray, n_bins: int = N_BINS) -> dict[str, list]:
    """Top-label reliability bins: mean confidence, accuracy and tick count of each non-empty bin."""
    conf = proba.max(axis=1)
    hit = proba.argmax(axis=1) == truth
    b = np.minimum((conf * n_bins).astype(np.int64), n_bins - 1)
    count = np.bincount(b, minlength=n_bins)
    seen = count > 0
    mean_conf = np.bincount(b, conf, minlength=n_bins)[seen] / count[seen]
    mean_hit = np.bincount(b, hit, minlength=n_bins)[seen] / count[seen]
    return {"confidence": mean_conf.tolist(), "accuracy": mean_hit.tolist(), "count": count[seen].tolist()}


def ece(truth: np.ndarray, proba: np.ndarray, n_bins: int = N_BINS) -> float:
    r = reliability(truth, proba, n_bins)
    w = np.asarray(r["count"]) / len(truth)
    return float(np.sum(w * np.abs(np.asarray(r["accuracy"]) - np.asarray(r["confidence"]))))


def direction_scores(truth: np.ndarray, proba: np.ndarray) -> dict[str, float]:
    """accuracy, macro_f1, log_loss, brier, ece of probabilities ``proba`` (N, 3) against ``truth`` (N,)."""
    proba = np.asarray(proba, dtype=np.float64)
    proba = proba / proba.sum(axis=1, keepdims=True)  # float32 softmax rows sum to 1 only within ~1e-7
    pred = proba.argmax(axis=1)
    return {"accuracy": accuracy(truth, pred), "macro_f1": macro_f1(truth, pred),
            "log_loss": float(log_loss(truth, proba, labels=list(range(N_CLASSES)))),
            "brier": brier(truth, proba), "ece": ece(truth, proba)}
