"""Architecture name -> config class, model class, presets: what ``lob train --arch``, ``load_run`` and export use.

A checkpoint stores ``{"arch": name, "config": config.to_dict(), "model": state_dict}``; one without
"arch" (written before the registry) is a Mamba-LOB run.
"""
from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from lob.models.base import TickModel
from lob.models.hybrid import PRESETS as HYBRID_PRESETS
from lob.models.hybrid import HybridLOB, HybridLOBConfig
from lob.models.mamba import PRESETS as MAMBA_PRESETS
from lob.models.mamba import MambaLOB, MambaLOBConfig
from lob.models.transformer import PRESETS as TRANSFORMER_PRESETS
from lob.models.transformer import TransformerLOB, TransformerLOBConfig


@dataclass(frozen=True)
class Arch:
    config: type
    model: type
    presets: dict[str, dict]
    attention: bool  # has K/V state: step takes ``cache="ring"|"full"``


ARCHS: dict[str, Arch] = {
    "mamba": Arch(MambaLOBConfig, MambaLOB, MAMBA_PRESETS, attention=False),
    "transformer": Arch(TransformerLOBConfig, TransformerLOB, TRANSFORMER_PRESETS, attention=True),
    "hybrid": Arch(HybridLOBConfig, HybridLOB, HYBRID_PRESETS, attention=True),
}


def arch(name: str) -> Arch:
    if name not in ARCHS:
        raise ValueError(f"unknown architecture {name!r}; choose one of {sorted(ARCHS)}")
    return ARCHS[name]


def arch_of(model: TickModel) -> str:
    return next(name for name, a in ARCHS.items() if type(model) is a.model)


def config_from_preset(name: str, preset: str, vocab_size: int, n_features: int, **overrides):
    a = arch(name)
    if preset not in a.presets:
        raise ValueError(f"unknown model preset {preset!r}; choose one of {sorted(a.presets)}")
    return a.config(vocab_size=vocab_size, n_features=n_features, **{**a.presets[preset], **overrides})


def build(name: str, config: dict) -> TickModel:
    """A fresh model of architecture ``name`` from its config dict (as saved in the checkpoint)."""
    a = arch(name)
    return a.model(a.config.from_dict(config))


def checkpoint(model: TickModel) -> dict:
    """What ``torch.save`` writes as RUN/checkpoint.pt."""
    return {"arch": arch_of(model), "config": model.config.to_dict(), "model": model.state_dict()}


def from_checkpoint(ckpt: dict) -> TickModel:
    model = build(ckpt.get("arch", "mamba"), ckpt["config"])
    model.load_state_dict(ckpt["model"])
    return model


def count_parameters(model: nn.Module) -> int:
    """Number of distinct parameters (tied weights counted once)."""
    return sum(p.numel() for p in model.parameters())
