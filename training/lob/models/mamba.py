"""Mamba-LOB: a Mamba-1 language model over order-book event tokens, with direction heads.

Input per tick: an event token (int) and F standardised features, embedded by `lob.models.base`; a
stack of pre-norm residual Mamba-1 blocks follows, then the shared heads: next-token logits (V, tied to
the token embedding) and direction logits (H horizons x 3 classes: 0 = down, 1 = flat, 2 = up).

The Mamba-1 block is the one of mamba_ssm (Gu & Dao, 2023), parameter for parameter::

    x, z = in_proj(h)                              # (B, L, D) each, D = expand * d_model
    x = silu(causal depthwise conv1d(x))           # kernel d_conv
    dt, B, C = x_proj(x)                           # (R, N, N) per tick, R = dt_rank, N = d_state
    dt = dt_proj(dt)                               # (D,) per tick, softplus(dt + dt_bias) in the scan
    s_t = exp(dt_t * A) * s_{t-1} + dt_t * B_t * x_t   # (D, N) state, A = -exp(A_log)
    y_t = s_t @ C_t + D * x_t
    out = out_proj(y * silu(z))

Two ways to run it, which agree to float rounding:
- ``forward`` runs whole sequences (training, evaluation) with a parallel scan; it takes and returns the
  recurrent state, so a long day can be processed in chunks.
- ``step`` advances one tick from explicit states and returns new ones (never mutates): this is what is
  exported to ONNX and served.

The scan, the state update and the conv update come from `lob.models.ops`, which routes them to
``lobkernels``' Triton-language kernels for CUDA tensors.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from lob.models.base import HeadConfig, TickConfig, TickModel
from lob.models.ops import causal_conv1d_step, selective_scan_fn, selective_state_update

Tensor = torch.Tensor


# ---------------------------------------------------------------------------------------------- config

@dataclass
class MambaFields(TickConfig):
    """The Mamba-1 mixer's fields (as mamba_ssm's ``Mamba``)."""

    d_state: int = 16
    d_conv: int = 4
    expand: int = 2
    dt_rank: int | str = "auto"  # "auto" -> ceil(d_model / 16), resolved at construction

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.dt_rank == "auto":
            self.dt_rank = math.ceil(self.d_model / 16)
        self.check_positive("d_state", "expand", "dt_rank")
        if not isinstance(self.d_conv, int) or self.d_conv < 2:
            raise ValueError(f"{type(self).__name__}.d_conv must be an int >= 2, got {self.d_conv!r}")

    @property
    def d_inner(self) -> int:
        return self.expand * self.d_model


@dataclass
class MambaLOBConfig(HeadConfig, MambaFields):
    pass


# Sizes only; vocab_size and n_features come from the fitted tokenizer. Parameter counts with
# vocab 1000 and 12 features (the tied embedding is a large share of the small presets):
# tiny ~ 52K, small ~ 303K, base ~ 1.7M.
PRESETS: dict[str, dict] = {
    "tiny": dict(d_model=32, n_layer=2),
    "small": dict(d_model=96, n_layer=3),
    "base": dict(d_model=192, n_layer=6),
}


# ---------------------------------------------------------------------------------------------- model

class Mamba(nn.Module):
    """Mamba-1 mixer (parameters named and initialised as in mamba_ssm's ``Mamba``)."""

    def __init__(self, cfg: MambaFields, dt_min: float = 1e-3, dt_max: float = 1e-1, dt_init_floor: float = 1e-4):
        super().__init__()
        d, di, n, r, k = cfg.d_model, cfg.d_inner, cfg.d_state, cfg.dt_rank, cfg.d_conv
        self.d_inner, self.d_state, self.dt_rank, self.d_conv = di, n, r, k
        self.in_proj = nn.Linear(d, 2 * di, bias=False)
        self.conv1d = nn.Conv1d(di, di, kernel_size=k, groups=di, bias=True)  # left context comes from the state
        self.x_proj = nn.Linear(di, r + 2 * n, bias=False)
        self.dt_proj = nn.Linear(r, di, bias=True)
        self.out_proj = nn.Linear(di, d, bias=False)

        nn.init.uniform_(self.dt_proj.weight, -r ** -0.5, r ** -0.5)
        # dt = softplus(dt_bias) log-uniform in [dt_min, dt_max]: store its inverse softplus
        dt = torch.exp(torch.rand(di) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min))
        dt = dt.clamp(min=dt_init_floor)
        with torch.no_grad():
            self.dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))
        # S4D-real: A[:, n] = -(n + 1)
        self.A_log = nn.Parameter(torch.log(torch.arange(1, n + 1, dtype=torch.float32)).repeat(di, 1))  # (D, N)
        self.D = nn.Parameter(torch.ones(di))

    def _ssm_params(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """x (..., D) -> dt (..., D) before bias/softplus, B (..., N), C (..., N)."""
        dt, B, C = self.x_proj(x).split([self.dt_rank, self.d_state, self.d_state], dim=-1)
        return F.linear(dt, self.dt_proj.weight), B, C  # dt_proj.bias goes in as the scan's delta_bias

    def forward(self, h: Tensor, conv_state: Tensor, ssm_state: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """h (B, L, d_model), conv_state (B, D, d_conv-1), ssm_state (B, D, N) -> (out, conv_state, ssm_state)."""
        x, z = self.in_proj(h).transpose(1, 2).chunk(2, dim=1)  # (B, D, L) each
        x = torch.cat([conv_state, x], dim=-1)  # (B, D, d_conv-1+L): previous ticks then these
        new_conv_state = x[..., -(self.d_conv - 1):]
        x = F.silu(self.conv1d(x))  # (B, D, L)
        dt, B, C = self._ssm_params(x.transpose(1, 2))  # (B, L, D), (B, L, N), (B, L, N)
        y, new_ssm_state = selective_scan_fn(
            x, dt.transpose(1, 2), -torch.exp(self.A_log), B.transpose(1, 2), C.transpose(1, 2), self.D, z,
            delta_bias=self.dt_proj.bias, delta_softplus=True, return_last_state=True, initial_state=ssm_state)
        return self.out_proj(y.transpose(1, 2)), new_conv_state, new_ssm_state

    def step(self, h: Tensor, conv_state: Tensor, ssm_state: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """One tick: h (B, d_model) -> (out (B, d_model), conv_state (B, D, d_conv-1), ssm_state (B, D, N))."""
        x, z = self.in_proj(h).chunk(2, dim=-1)  # (B, D) each
        x, conv_state = causal_conv1d_step(x, conv_state, self.conv1d.weight[:, 0], self.conv1d.bias)  # (B, D)
        dt, B, C = self._ssm_params(x)
        y, ssm_state = selective_state_update(ssm_state, x, dt, -torch.exp(self.A_log), B, C, self.D, z,
                                              dt_bias=self.dt_proj.bias, dt_softplus=True)
        return self.out_proj(y), conv_state, ssm_state


class Block(nn.Module):
    """h + Mamba(RMSNorm(h)) (mamba_ssm's ``Block`` around its ``Mamba`` mixer)."""

    def __init__(self, cfg: MambaFields):
        super().__init__()
        self.norm = nn.RMSNorm(cfg.d_model, eps=1e-5)
        self.mixer = Mamba(cfg)

    def forward(self, h, conv_state, ssm_state):
        out, conv_state, ssm_state = self.mixer(self.norm(h), conv_state, ssm_state)
        return h + out, conv_state, ssm_state

    def step(self, h, conv_state, ssm_state):
        out, conv_state, ssm_state = self.mixer.step(self.norm(h), conv_state, ssm_state)
        return h + out, conv_state, ssm_state


class MambaLOB(TickModel):
    state_names = ("CONV", "SSM")
    serves_forward = True

    def __init__(self, config: MambaLOBConfig):
        super().__init__(config, lambda: nn.ModuleList(Block(config) for _ in range(config.n_layer)))
        self._init_weights()

    def _init_weights(self) -> None:
        """mamba_ssm's init: N(0, 0.02) embedding, zero Linear biases (dt_proj's keeps its dt init), and
        out_proj scaled by 1/sqrt(n_layer) so the residual stream's variance doesn't grow with depth."""
        nn.init.normal_(self.embedding.weight, std=0.02)
        for name, module in self.named_modules():
            if isinstance(module, nn.Linear) and module.bias is not None and not name.endswith("dt_proj"):
                nn.init.zeros_(module.bias)
        with torch.no_grad():
            for layer in self.layers:
                layer.mixer.out_proj.weight /= math.sqrt(self.config.n_layer)

    def allocate_inference_cache(self, batch: int, dtype: torch.dtype = torch.float32) -> tuple[Tensor, Tensor]:
        """Zero states: conv (B, n_layer, D, d_conv-1), ssm (B, n_layer, D, N), on the model's device."""
        cfg, device = self.config, self.embedding.weight.device
        conv = torch.zeros(batch, cfg.n_layer, cfg.d_inner, cfg.d_conv - 1, dtype=dtype, device=device)
        ssm = torch.zeros(batch, cfg.n_layer, cfg.d_inner, cfg.d_state, dtype=dtype, device=device)
        return conv, ssm

    def forward(self, tokens: Tensor, features: Tensor, conv_state: Tensor | None = None,
                ssm_state: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """tokens (B, L) int64, features (B, L, F) float32, optional states from ``allocate_inference_cache``
        or a previous call -> next_logits (B, L, V), dir_logits (B, L, H, 3), conv_state, ssm_state (final)."""
        self.check_inputs(tokens, features)
        if conv_state is None or ssm_state is None:
            conv_state, ssm_state = self.allocate_inference_cache(tokens.shape[0], features.dtype)
        h = self.embed(tokens, features)  # (B, L, d_model)
        conv_out, ssm_out = [], []
        for i, layer in enumerate(self.layers):
            h, c, s = layer(h, conv_state[:, i], ssm_state[:, i])
            conv_out.append(c)
            ssm_out.append(s)
        return *self.heads(h, features), torch.stack(conv_out, dim=1), torch.stack(ssm_out, dim=1)

    def step(self, token: Tensor, features: Tensor, conv_state: Tensor,
             ssm_state: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """One tick: token (B,) int64, features (B, F) -> next_logits (B, V), dir_logits (B, H, 3), and the new
        conv_state (B, n_layer, D, d_conv-1), ssm_state (B, n_layer, D, N). The input states are not modified."""
        h = self.embed(token, features)  # (B, d_model)
        conv_out, ssm_out = [], []
        for i, layer in enumerate(self.layers):
            h, c, s = layer.step(h, conv_state[:, i], ssm_state[:, i])
            conv_out.append(c)
            ssm_out.append(s)
        return *self.heads(h, features), torch.stack(conv_out, dim=1), torch.stack(ssm_out, dim=1)
