"""The Markov-1 next-event baseline: ``P(next = j | current = i)`` from train bigram counts, smoothed
towards the unigram frequencies, ``P(j | i) = (c_ij + β P(j)) / (c_i + β)`` (``P(j)`` add-one unigram), ``β``
chosen on the validation split from ``BETAS``. One fit for both users: `lob evaluate` scores the model's
perplexity against it, and training keeps only checkpoints whose validation next-event loss beats it
(``TrainConfig.select_on``)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

BETAS = (0.1, 1.0, 10.0, 100.0, 1000.0)  # Markov-1 prior strengths tried on validation


@dataclass
class TokenBaselines:
    majority: int
    markov_next: np.ndarray  # (V,) int64: most likely next token after each token
    markov_logp: np.ndarray  # (V, V) float64: smoothed log P(next = j | current = i)
    beta: float  # the prior strength chosen on validation

    @staticmethod
    def fit(train_tokens: list[np.ndarray], vocab_size: int,
            val_tokens: list[np.ndarray] | None = None) -> "TokenBaselines":
        """``train_tokens``, ``val_tokens``: one (N_s,) int64 array per symbol (bigrams never cross symbols);
        without validation tokens ``β`` = 1."""
        counts = np.bincount(np.concatenate(train_tokens), minlength=vocab_size)
        majority = int(np.argmax(counts))
        bigrams = np.zeros((vocab_size, vocab_size), dtype=np.int64)  # [current, next]
        for tok in train_tokens:
            np.add.at(bigrams, (tok[:-1], tok[1:]), 1)
        markov_next = np.where(bigrams.sum(axis=1) > 0, bigrams.argmax(axis=1), majority).astype(np.int64)
        unigram = (counts + 1.0) / (counts.sum() + vocab_size)  # (V,)

        def logp(beta: float) -> np.ndarray:
            return np.log((bigrams + beta * unigram) / (bigrams.sum(1, keepdims=True) + beta))

        def val_nll(beta: float) -> float:
            table = logp(beta)
            return -np.mean(np.concatenate([table[t[:-1], t[1:]] for t in val_tokens]))

        beta = min(BETAS, key=val_nll) if val_tokens else 1.0
        return TokenBaselines(majority, markov_next, logp(beta), beta)

    def markov_log_prob(self, tokens: np.ndarray) -> np.ndarray:
        """(N-1,) Markov-1 log-probability of each next token of one sequence ``tokens`` (N,)."""
        return self.markov_logp[tokens[:-1], tokens[1:]]

    def predict(self, tokens: np.ndarray) -> dict[str, np.ndarray]:
        """Prediction of token t+1 at each t: name -> (N,) int64."""
        return {"majority": np.full_like(tokens, self.majority), "copy_prev": tokens.copy(),
                "markov1": self.markov_next[tokens]}
