"""Classification metrics over integer labels (0 = down, 1 = flat, 2 = up)."""
from __future__ import annotations

import numpy as np


def confusion(truth: np.ndarray, pred: np.ndarray, n_classes: int = 3) -> np.ndarray:
    """(C, C) int64 counts, rows = true class, columns = predicted class."""
    return np.bincount(truth * n_classes + pred, minlength=n_classes * n_classes).reshape(n_classes, n_classes)


def accuracy(truth: np.ndarray, pred: np.ndarray) -> float:
    return float(np.mean(truth == pred))


def macro_f1(truth: np.ndarray, pred: np.ndarray, n_classes: int = 3) -> float:
    """Mean per-class F1 = 2TP / (2TP + FP + FN) over the classes that occur in truth or prediction."""
    cm = confusion(truth, pred, n_classes)
    tp = np.diag(cm)
    denom = 2 * tp + (cm.sum(0) - tp) + (cm.sum(1) - tp)
    seen = denom > 0
    return float(np.mean(2 * tp[seen] / denom[seen]))
