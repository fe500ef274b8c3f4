"""What every architecture over tokenized ticks shares: the input embedding and the output heads.

Input per tick: an event token and F standardised features, embedded as
``token_embedding(token) + Linear(features)`` (d_model). Output: a final RMSNorm, then next-event logits
(V, tied to the token embedding, as mamba_ssm's MambaLMHeadModel and nanoGPT) and direction logits
(H horizons x 3 classes, `lob.contract.CLASSES`). An architecture subclasses `TickModel`, builds its
layers between ``embed`` and ``heads``, and keeps the attribute names (they are the checkpoint keys).
"""
from __future__ import annotations

from dataclasses import asdict, fields
from typing import Callable

import torch
from torch import nn

Tensor = torch.Tensor


class ConfigMixin:
    """What every architecture's config dataclass shares: dict round trip (the checkpoint's form) and checks."""

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict):
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"{cls.__name__}: unknown field(s) {unknown}")
        return cls(**d)

    def check_positive(self, *names: str) -> None:
        for name in names:
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{type(self).__name__}.{name} must be a positive int, got {value!r}")

    def check_heads(self) -> None:
        """horizons positive tick counts, topk <= vocab_size."""
        name = type(self).__name__
        if not self.horizons or min(self.horizons) < 1:
            raise ValueError(f"{name}.horizons must be positive tick counts, got {self.horizons!r}")
        if self.topk > self.vocab_size:
            raise ValueError(f"{name}.topk={self.topk} exceeds vocab_size={self.vocab_size}")


class TickModel(nn.Module):
    """Embedding + heads; ``config`` needs vocab_size, n_features, d_model, horizons, n_classes.

    ``layers`` builds the architecture's ``self.layers``; it is called between the embedding and the
    heads so that parameters are created (and drawn from the RNG) in input-to-output order.

    The streaming contract every architecture keeps (what predict, export and serving rely on):
    ``state_names`` names the state tensors (served as STATE_<NAME>_IN / STATE_<NAME>_OUT);
    ``allocate_inference_cache(batch)`` returns them fresh, in that order, batch first;
    ``forward(tokens, features, *state) -> (next_logits, dir_logits, *state)`` and
    ``step(token, features, *state) -> (next_logits, dir_logits, *state)`` carry them.
    """

    state_names: tuple[str, ...] = ()

    def __init__(self, config, layers: Callable[[], nn.Module]):
        super().__init__()
        self.config = cfg = config
        self.embedding = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.feature_proj = nn.Linear(cfg.n_features, cfg.d_model)
        self.layers = layers()
        self.norm_f = nn.RMSNorm(cfg.d_model, eps=1e-5)
        self.lm_head = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)
        self.lm_head.weight = self.embedding.weight  # tied
        self.dir_head = nn.Linear(cfg.d_model, len(cfg.horizons) * cfg.n_classes)

    def embed(self, tokens: Tensor, features: Tensor) -> Tensor:
        """tokens (...) int64, features (..., F) -> h (..., d_model)."""
        return self.embedding(tokens) + self.feature_proj(features)

    def heads(self, h: Tensor) -> tuple[Tensor, Tensor]:
        """h (..., d_model) -> next logits (..., V), direction logits (..., H, 3)."""
        h = self.norm_f(h)
        return self.lm_head(h), self.dir_head(h).unflatten(-1, (len(self.config.horizons), self.config.n_classes))

    def check_inputs(self, tokens: Tensor, features: Tensor) -> None:
        """Refuse what ``forward`` cannot run: tokens (B, L) int64 in [0, V), features (B, L, F)."""
        cfg = self.config
        if tokens.dim() != 2 or tokens.dtype != torch.int64:
            raise ValueError(f"tokens must be (B, L) int64, got {tuple(tokens.shape)} {tokens.dtype}")
        if features.shape != (*tokens.shape, cfg.n_features):
            raise ValueError(f"features must be (B, L, F) = {(*tokens.shape, cfg.n_features)}, "
                             f"got {tuple(features.shape)}")
        if tokens.numel() and (int(tokens.min()) < 0 or int(tokens.max()) >= cfg.vocab_size):
            raise ValueError(f"token ids must lie in [0, {cfg.vocab_size}), got "
                             f"[{int(tokens.min())}, {int(tokens.max())}]")
