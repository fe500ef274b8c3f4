"""The direction readout as a logistic regression: where training starts it and how it may end.

The direction logits of a tick are ``dir_head(h) + dir_skip(features)`` (`lob.models.base.TickModel.heads`,
with the feature skip): a linear map of the sequence state ``h`` (D, after the final norm) and the tick's
standardised features (F). Both stages below fit that map as ``logistic_regression`` (scikit-learn's
multinomial L-BFGS fit, which is also the evaluation's ``logreg`` baseline) and write it into those two
layers, per horizon:

* ``init_from_logreg`` (``TrainConfig.dir_init = "logreg"``): before training, the evaluation's own
  ``logreg`` baseline on the features, with the state's weights zero: the untrained model predicts direction
  exactly as that baseline does, and training starts there.
* ``refit_readout`` (``TrainConfig.dir_readout = "probe"``): after training, the trunk frozen, a regression on
  ``[h, features]`` of every train tick, streamed from a fresh state per segment as serving streams them; its
  L2 strength, or keeping the trained readout, is chosen per horizon by the log-loss on the validation
  segments. Training early-stops on the sum of the direction and next-event losses, where the next event
  dominates; this lets the direction readout stop where direction is best without giving up the next event.
  The probe fits plain cross-entropy, the log-loss a user scores: the cost weights (``w_max``) shape the
  trunk's training only (a first probe fitted with them lost on validation log-loss, docs/tuning.md).
A class absent from a horizon's train labels gets the logit ``ABSENT_LOGIT``.
"""
from __future__ import annotations

import numpy as np
import torch

from sklearn.linear_model import LogisticRegression

from lob.training.labels import IGNORE
from lob.training.segments import Segment

ABSENT_LOGIT = -9.0  # direction logit of a class the train labels never show (~1e-4 probability)
LOGREG_L2 = 1e-4  # L2 of the logistic regression: the evaluation's baseline and the readout's start
PROBE_L2 = (1e-4, 1e-3, 1e-2)  # L2 strengths of the probe tried on validation


def logistic_regression(x: np.ndarray, y: np.ndarray, l2: float = LOGREG_L2) -> LogisticRegression:
    """Multinomial logistic regression of labels ``y`` (N,) on ``x`` (N, F), L-BFGS, objective
    ``mean CE + l2 · ||W||²`` (bias unpenalised), i.e. ``C = 1 / (2 · l2 · N)``."""
    return LogisticRegression(C=1.0 / (2.0 * l2 * len(y)), max_iter=500, tol=1e-7).fit(x, y)


def class_proba(clf, x: np.ndarray) -> np.ndarray:
    """(N, 3) probabilities over all three classes, zero for a class absent from the classifier's train labels."""
    out = np.zeros((x.shape[0], 3))
    out[:, clf.classes_] = clf.predict_proba(x)
    return out


def _fit(x: np.ndarray, y: np.ndarray, l2: float = LOGREG_L2):
    """``logistic_regression``, or with one class in ``y`` that class (an int): its prior is all there is."""
    classes = np.unique(y)
    return logistic_regression(x, y, l2) if len(classes) > 1 else int(classes[0])


def _write(model, j: int, clf, n_state: int) -> None:
    """Horizon ``j``'s logits := those of ``clf`` (``_fit``'s), fitted on ``[h (n_state), features]``."""
    n_cls = model.config.n_classes
    rows = slice(j * n_cls, (j + 1) * n_cls)
    dim = n_state + model.dir_skip.weight.shape[1]
    coef, icpt = np.zeros((n_cls, dim)), np.full(n_cls, ABSENT_LOGIT)
    if isinstance(clf, int):  # one class only
        icpt[clf] = 0.0
    else:
        c, b = clf.coef_, clf.intercept_
        if len(clf.classes_) == 2:  # scikit-learn's binary form: logit of classes_[1] against classes_[0]
            c, b = np.vstack([np.zeros_like(c), c]), np.concatenate([[0.0], b])
        coef[clf.classes_], icpt[clf.classes_] = c, b
    with torch.no_grad():
        head = model.dir_head.weight[rows]
        head.copy_(torch.as_tensor(coef[:, :n_state]) if n_state else torch.zeros_like(head))
        model.dir_skip.weight[rows] = torch.as_tensor(coef[:, n_state:], dtype=head.dtype)
        model.dir_head.bias[rows] = torch.as_tensor(icpt, dtype=head.dtype)


def init_from_logreg(model, train_segs: list[Segment]) -> None:
    """Direction heads := the evaluation's ``logreg`` baseline fitted on the train segments (state weights 0)."""
    feats = np.concatenate([s.features for s in train_segs]).astype(np.float64)  # (N, F)
    labels = np.concatenate([s.labels for s in train_segs])  # (N, H)
    for j in range(labels.shape[1]):
        keep = labels[:, j] != IGNORE
        _write(model, j, _fit(feats[keep], labels[keep, j]), n_state=0)


@torch.no_grad()
def readout_inputs(model, segs: list[Segment]) -> np.ndarray:
    """``[h, features]`` (N, D + F) float64 of every tick of ``segs``, each streamed from a fresh state."""
    states = []
    hook = model.norm_f.register_forward_hook(lambda mod, inp, out: states.append(out[0]))
    try:
        was_training = model.training
        model.eval()
        for seg in segs:
            for _ in model.forward_chunked(seg.tokens[None], seg.features[None]):
                pass
        model.train(was_training)
    finally:
        hook.remove()
    h = torch.cat(states).double().numpy()  # (N, D)
    return np.concatenate([h, np.concatenate([s.features for s in segs]).astype(np.float64)], axis=1)


def _log_loss(proba: np.ndarray, y: np.ndarray) -> float:
    """Mean cross-entropy of (N, 3) probabilities against labels (N,)."""
    return float(-np.mean(np.log(np.clip(proba[np.arange(len(y)), y], 1e-12, 1.0))))


def refit_readout(model, train_segs: list[Segment], val_segs: list[Segment]) -> list[str]:
    """Refit each horizon's readout on the frozen trunk (see the module doc); returns the choice per horizon
    ("trained" or "l2=<strength>")."""
    x_tr, x_va = readout_inputs(model, train_segs), readout_inputs(model, val_segs)
    n_state = x_tr.shape[1] - model.dir_skip.weight.shape[1]
    y_tr, y_va = np.concatenate([s.labels for s in train_segs]), np.concatenate([s.labels for s in val_segs])
    w_all = torch.cat([model.dir_head.weight, model.dir_skip.weight], 1).detach().double().numpy()  # (H*3, D+F)
    logits = (x_va @ w_all.T + model.dir_head.bias.detach().double().numpy()).reshape(len(x_va), -1, 3)
    trained = np.exp(logits - logits.max(-1, keepdims=True))
    trained /= trained.sum(-1, keepdims=True)  # (N, H, 3)
    choices = []
    for j in range(y_tr.shape[1]):
        kt, kv = y_tr[:, j] != IGNORE, y_va[:, j] != IGNORE
        if not kv.any():
            choices.append("trained")
            continue
        best = (_log_loss(trained[kv, j], y_va[kv, j]), "trained", None)
        for l2 in PROBE_L2:
            clf = _fit(x_tr[kt], y_tr[kt, j], l2)
            loss = _log_loss(class_proba(clf, x_va[kv]) if not isinstance(clf, int) else np.eye(3)[[clf] * kv.sum()],
                             y_va[kv, j])
            if loss < best[0]:
                best = (loss, f"l2={l2:g}", clf)
        if best[2] is not None:
            _write(model, j, best[2], n_state)
        choices.append(best[1])
    return choices
