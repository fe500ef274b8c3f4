"""Baselines the model must beat, all fitted on the train split only.

Next event (token ``t+1`` given ticks up to ``t``):
  * majority: the most frequent train token, always;
  * copy_prev: the current token repeats;
  * markov1: ``argmax_j P(next = j | current = i)`` from train bigram counts (unseen ``i``: majority).

Direction (per horizon):
  * majority: the most frequent train label;
  * logreg: multinomial logistic regression on the tokenizer's standardised features of tick ``t``
    (L2-regularised, fitted full-batch with torch L-BFGS).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lob.training.labels import IGNORE


@dataclass
class TokenBaselines:
    majority: int
    markov_next: np.ndarray  # (V,) int64: most likely next token after each token

    @staticmethod
    def fit(train_tokens: list[np.ndarray], vocab_size: int) -> "TokenBaselines":
        """``train_tokens``: one (N_s,) int64 array per symbol (bigrams never cross symbols)."""
        counts = np.bincount(np.concatenate(train_tokens), minlength=vocab_size)
        majority = int(np.argmax(counts))
        bigrams = np.zeros((vocab_size, vocab_size), dtype=np.int64)  # [current, next]
        for tok in train_tokens:
            np.add.at(bigrams, (tok[:-1], tok[1:]), 1)
        markov_next = np.where(bigrams.sum(axis=1) > 0, bigrams.argmax(axis=1), majority).astype(np.int64)
        return TokenBaselines(majority, markov_next)

    def predict(self, tokens: np.ndarray) -> dict[str, np.ndarray]:
        """Prediction of token t+1 at each t: name -> (N,) int64."""
        return {"majority": np.full_like(tokens, self.majority), "copy_prev": tokens.copy(),
                "markov1": self.markov_next[tokens]}


@dataclass
class DirectionBaselines:
    majority: np.ndarray  # (H,) int64: most frequent train label per horizon
    weight: np.ndarray  # (H, F, 3) float32 logistic-regression weights
    bias: np.ndarray  # (H, 3) float32

    @staticmethod
    def fit(features: np.ndarray, labels: np.ndarray, l2: float = 1e-4, max_iter: int = 200) -> "DirectionBaselines":
        """features (N, F) float32 standardised, labels (N, H) int64 with IGNORE for masked ticks."""
        import torch
        import torch.nn.functional as F

        n_h = labels.shape[1]
        majority = np.array([np.bincount(labels[labels[:, j] != IGNORE, j], minlength=3).argmax() for j in range(n_h)])
        x = torch.from_numpy(np.ascontiguousarray(features, dtype=np.float32))  # (N, F)
        weights, biases = [], []
        for j in range(n_h):
            keep = torch.from_numpy(labels[:, j] != IGNORE)
            xj, yj = x[keep], torch.from_numpy(labels[:, j])[keep]
            w = torch.zeros(x.shape[1], 3, requires_grad=True)
            b = torch.zeros(3, requires_grad=True)
            opt = torch.optim.LBFGS([w, b], lr=1.0, max_iter=max_iter, tolerance_grad=1e-7,
                                    line_search_fn="strong_wolfe")

            def closure():
                opt.zero_grad()
                loss = F.cross_entropy(xj @ w + b, yj) + l2 * (w * w).sum()
                loss.backward()
                return loss

            opt.step(closure)
            weights.append(w.detach().numpy().copy())
            biases.append(b.detach().numpy().copy())
        return DirectionBaselines(majority.astype(np.int64), np.stack(weights), np.stack(biases))

    def predict(self, features: np.ndarray) -> dict[str, np.ndarray]:
        """name -> (N, H) int64 predicted class per horizon."""
        logits = np.einsum("nf,hfc->nhc", features.astype(np.float32), self.weight) + self.bias  # (N, H, 3)
        n = features.shape[0]
        return {"majority": np.broadcast_to(self.majority, (n, self.majority.shape[0])).copy(),
                "logreg": logits.argmax(axis=-1).astype(np.int64)}
