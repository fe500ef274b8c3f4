"""Baselines the model must beat, all fitted on the train split only.

Next event (token ``t+1`` given ticks up to ``t``):
  * majority: the most frequent train token, always;
  * copy_prev: the current token repeats;
  * markov1: ``argmax_j P(next = j | current = i)`` from train bigram counts (unseen ``i``: majority);
    its perplexity from the smoothed bigrams of `lob.training.markov` (``TokenBaselines``: these three).

Direction (per horizon), as probabilities (N, 3) from the tokenizer's standardised features of tick ``t``:
  * majority: the train class frequencies at every tick (``DummyClassifier("prior")``; argmax = majority class);
  * logreg: multinomial logistic regression (`lob.training.readout.logistic_regression`, the fit the model's
    direction readout starts from), objective ``mean CE + l2 · ||W||²`` (bias unpenalised);
  * hgb: gradient-boosted trees (``HistGradientBoostingClassifier``), early-stopped on the validation split
    (chronologically after train; without validation ticks of its classes, all 200 iterations run);
  * deeplob: the field's reference model (`lob.evaluation.deeplob`: convolutions, inception and an LSTM over
    the last 100 book snapshots, not the tokenizer's features), trained with Adam on the train split's ticks
    and early-stopped on validation; fitted by ``lob evaluate`` itself, within a step budget.
A horizon whose train labels hold one class only gets that class's prior from every feature baseline.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.dummy import DummyClassifier
from sklearn.ensemble import HistGradientBoostingClassifier

from lob.training.labels import IGNORE
from lob.training.readout import LOGREG_L2, class_proba, logistic_regression

FEATURE_BASELINES = ("majority", "logreg", "hgb")  # fitted on the tokenizer's features of tick t
DIRECTION_BASELINES = (*FEATURE_BASELINES, "deeplob")  # every direction baseline metrics.json scores


def _fit_one(name: str, x: np.ndarray, y: np.ndarray, early: dict, l2: float, seed: int):
    if name == "majority" or len(np.unique(y)) < 2:  # one class only: its prior is all there is to learn
        return DummyClassifier(strategy="prior").fit(x, y)
    if name == "logreg":
        return logistic_regression(x, y, l2)
    return HistGradientBoostingClassifier(max_iter=200, learning_rate=0.1, early_stopping=bool(early),
                                          n_iter_no_change=10, random_state=seed).fit(x, y, **early)


@dataclass
class DirectionBaselines:
    models: dict[str, list]  # name -> one fitted scikit-learn classifier per horizon

    @staticmethod
    def fit(features: np.ndarray, labels: np.ndarray, val: tuple[np.ndarray, np.ndarray] | None = None,
            l2: float = LOGREG_L2, seed: int = 0, names: tuple[str, ...] = FEATURE_BASELINES) -> "DirectionBaselines":
        """features (N, F) float32 standardised, labels (N, H) int64 with IGNORE for masked ticks;
        ``val`` the validation split's (features, labels) alike, for the trees' early stopping."""
        models: dict[str, list] = {name: [] for name in names}
        for j in range(labels.shape[1]):
            keep = labels[:, j] != IGNORE
            x, y = features[keep].astype(np.float64), labels[keep, j]
            early = {}
            if val is not None:  # the trees stop on validation ticks of the classes they are fitted on
                vkeep = (val[1][:, j] != IGNORE) & np.isin(val[1][:, j], np.unique(y))
                if vkeep.any():
                    early = {"X_val": val[0][vkeep].astype(np.float64), "y_val": val[1][vkeep, j]}
            for name in names:
                models[name].append(_fit_one(name, x, y, early, l2, seed))
        return DirectionBaselines(models)

    def predict_proba(self, features: np.ndarray) -> dict[str, np.ndarray]:
        """name -> (N, H, 3) float64 direction probabilities per horizon."""
        x = features.astype(np.float64)
        return {name: np.stack([class_proba(m, x) for m in models], axis=1) for name, models in self.models.items()}
