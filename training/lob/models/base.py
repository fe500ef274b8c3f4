"""The base of every architecture over tokenized ticks: its config fields and its model's embedding and heads.

Input per tick: an event token and F standardised features, embedded as
``token_embedding(token) + Linear(features)`` (d_model). Output: a final RMSNorm, then next-event logits
(V, tied to the token embedding, as mamba_ssm's MambaLMHeadModel and nanoGPT) and direction logits
(H horizons x 3 classes, `lob.contract.CLASSES`; with ``feature_skip`` plus a linear map of the tick's
features, so the direction heads contain the logistic-regression baseline). An architecture subclasses
`TickModel`, builds its layers between ``embed`` and ``heads``, and keeps the attribute names (they are the
checkpoint keys).

An architecture's config is composed of field groups, each a dataclass over `TickConfig` that checks its
own fields in ``__post_init__`` (after ``super().__post_init__()``)::

    @dataclass
    class MambaLOBConfig(HeadConfig, MambaFields): ...

Bases are listed output side first: a dataclass puts the fields of its last base first, so the fields
read TickConfig's sizes, the layers' groups, then HeadConfig's, the key order of every checkpoint's config.
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass, fields
from typing import Callable

import torch
from torch import nn

from lob.contract import HORIZONS

Tensor = torch.Tensor
CHUNK = 2048  # ticks per forward call of ``forward_chunked``; only memory depends on it


@dataclass
class TickConfig:
    """Sizes every architecture has (vocab_size, n_features from the fitted tokenizer); dict round trip
    (the checkpoint's form) and the checks the field groups share."""

    vocab_size: int
    n_features: int
    d_model: int
    n_layer: int

    def __post_init__(self) -> None:
        self.check_positive("vocab_size", "n_features", "d_model", "n_layer")

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


@dataclass
class HeadConfig(TickConfig):
    """The output heads' fields: horizons positive tick counts, topk <= vocab_size."""

    horizons: tuple[int, ...] = HORIZONS  # ticks ahead of each direction head
    n_classes: int = 3  # down / flat / up
    topk: int = 5  # next-token candidates the served step model returns
    feature_skip: int = 0  # 1: direction logits add a linear map of the tick's own features (a logistic
    #                        regression beside the sequence model, zero at initialisation)

    def __post_init__(self) -> None:
        super().__post_init__()
        self.horizons = tuple(int(h) for h in self.horizons)
        self.check_positive("n_classes", "topk")
        if self.feature_skip not in (0, 1):
            raise ValueError(f"{type(self).__name__}.feature_skip must be 0 or 1, got {self.feature_skip!r}")
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
    ``step(token, features, *state) -> (next_logits, dir_logits, *state)`` carry them;
    ``forward_chunked`` runs a long sequence through ``forward`` in chunks. ``serves_forward``: ``forward`` from
    the served states equals ``step`` tick by tick and exports to ONNX with a dynamic length (under
    ``kernel_backend("stepwise")``), so the served graph runs a chunk of ticks with it (`lob.export.onnx_step`).
    """

    state_names: tuple[str, ...] = ()
    serves_forward: bool = False

    def __init__(self, config: HeadConfig, layers: Callable[[], nn.Module]):
        super().__init__()
        self.config = cfg = config
        self.embedding = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.feature_proj = nn.Linear(cfg.n_features, cfg.d_model)
        self.layers = layers()
        self.norm_f = nn.RMSNorm(cfg.d_model, eps=1e-5)
        self.lm_head = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)
        self.lm_head.weight = self.embedding.weight  # tied
        self.dir_head = nn.Linear(cfg.d_model, len(cfg.horizons) * cfg.n_classes)
        if cfg.feature_skip:
            self.dir_skip = nn.Linear(cfg.n_features, len(cfg.horizons) * cfg.n_classes, bias=False)
            nn.init.zeros_(self.dir_skip.weight)

    def embed(self, tokens: Tensor, features: Tensor) -> Tensor:
        """tokens (...) int64, features (..., F) -> h (..., d_model)."""
        return self.embedding(tokens) + self.feature_proj(features)

    def heads(self, h: Tensor, features: Tensor) -> tuple[Tensor, Tensor]:
        """h (..., d_model), the tick's features (..., F) -> next logits (..., V), direction logits (..., H, 3)."""
        h = self.norm_f(h)
        dir_logits = self.dir_head(h)
        if self.config.feature_skip:
            dir_logits = dir_logits + self.dir_skip(features)
        return self.lm_head(h), dir_logits.unflatten(-1, (len(self.config.horizons), self.config.n_classes))

    def check_inputs(self, tokens: Tensor, features: Tensor) -> None:
        """Refuse what ``forward`` cannot run: tokens (B, L) int64 in [0, V), features (B, L, F)."""
        cfg = self.config
        if tokens.dim() != 2 or tokens.dtype != torch.int64:
            raise ValueError(f"tokens must be (B, L) int64, got {tuple(tokens.shape)} {tokens.dtype}")
        if features.shape != (*tokens.shape, cfg.n_features):
            raise ValueError(f"features must be (B, L, F) = {(*tokens.shape, cfg.n_features)}, "
                             f"got {tuple(features.shape)}")
        if tokens.numel() and not torch.compiler.is_exporting() and (  # values are unknown while exporting
                int(tokens.min()) < 0 or int(tokens.max()) >= cfg.vocab_size):
            raise ValueError(f"token ids must lie in [0, {cfg.vocab_size}), got "
                             f"[{int(tokens.min())}, {int(tokens.max())}]")

    @torch.no_grad()
    def forward_chunked(self, tokens, features, chunk: int = CHUNK) -> Iterator[tuple[int, Tensor, Tensor, list]]:
        """Run sequences from a fresh state, ``chunk`` ticks per ``forward`` with the state carried: what
        streaming them tick by tick gives. tokens (B, N) int64, features (B, N, F) float32 (tensors or numpy
        arrays) -> per chunk: (start, next_logits (B, L, V), dir_logits (B, L, H, 3), state after it)."""
        tokens = torch.as_tensor(tokens, dtype=torch.int64)
        features = torch.as_tensor(features, dtype=torch.float32)
        state = self.allocate_inference_cache(tokens.shape[0])  # the tensors named by state_names
        for start in range(0, tokens.shape[1], chunk):
            next_logits, dir_logits, *state = self(tokens[:, start:start + chunk], features[:, start:start + chunk],
                                                   *state)
            yield start, next_logits, dir_logits, state
