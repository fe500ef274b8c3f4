"""Mamba-LOB: a Mamba-1 language model over order-book event tokens, with direction heads.

Input per tick: an event token (int) and F standardised features. The embedding is
``token_embedding(token) + Linear(features)``; a stack of pre-norm residual Mamba-1 blocks follows,
then a final RMSNorm and two heads: next-token logits (V, tied to the token embedding) and
direction logits (H horizons x 3 classes: 0 = down, 1 = flat, 2 = up).

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

``selective_scan_fn`` and ``selective_state_update`` are the one dispatch point for the two kernels; they
have mamba_ssm's signatures (plus ``initial_state`` on the scan) so the Triton-language kernels of
``lobkernels`` can be routed there for CUDA tensors.
"""
from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import asdict, dataclass, fields

import torch
import torch.nn.functional as F
from torch import nn

Tensor = torch.Tensor


# ---------------------------------------------------------------------------------------------- config

@dataclass
class MambaLOBConfig:
    vocab_size: int
    n_features: int
    d_model: int
    n_layer: int
    d_state: int = 16
    d_conv: int = 4
    expand: int = 2
    dt_rank: int | str = "auto"  # "auto" -> ceil(d_model / 16), resolved at construction
    horizons: tuple[int, ...] = (10, 50, 100)  # ticks ahead of each direction head
    n_classes: int = 3  # down / flat / up
    topk: int = 5  # next-token candidates the served step model returns

    def __post_init__(self) -> None:
        if self.dt_rank == "auto":
            self.dt_rank = math.ceil(self.d_model / 16)
        self.horizons = tuple(int(h) for h in self.horizons)
        positive = ("vocab_size", "n_features", "d_model", "n_layer", "d_state", "expand", "dt_rank",
                    "n_classes", "topk")
        for name in positive:
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"MambaLOBConfig.{name} must be a positive int, got {value!r}")
        if not isinstance(self.d_conv, int) or self.d_conv < 2:
            raise ValueError(f"MambaLOBConfig.d_conv must be an int >= 2, got {self.d_conv!r}")
        if not self.horizons or min(self.horizons) < 1:
            raise ValueError(f"MambaLOBConfig.horizons must be positive tick counts, got {self.horizons!r}")
        if self.topk > self.vocab_size:
            raise ValueError(f"MambaLOBConfig.topk={self.topk} exceeds vocab_size={self.vocab_size}")

    @property
    def d_inner(self) -> int:
        return self.expand * self.d_model

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "MambaLOBConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"MambaLOBConfig: unknown field(s) {unknown}")
        return cls(**d)


# Sizes only; vocab_size and n_features come from the fitted tokenizer. Parameter counts with
# vocab 1000 and 12 features (the tied embedding is a large share of the small presets):
# tiny ~ 52K, small ~ 303K, base ~ 1.7M.
PRESETS: dict[str, dict] = {
    "tiny": dict(d_model=32, n_layer=2),
    "small": dict(d_model=96, n_layer=3),
    "base": dict(d_model=192, n_layer=6),
}


def config_from_preset(name: str, vocab_size: int, n_features: int, **overrides) -> MambaLOBConfig:
    if name not in PRESETS:
        raise ValueError(f"unknown model preset {name!r}; choose one of {sorted(PRESETS)}")
    return MambaLOBConfig(vocab_size=vocab_size, n_features=n_features, **{**PRESETS[name], **overrides})


def count_parameters(model: nn.Module) -> int:
    """Number of distinct parameters (tied weights counted once)."""
    return sum(p.numel() for p in model.parameters())


# ---------------------------------------------------------------------------------------------- selective scan

def _delta(delta: Tensor, delta_bias: Tensor | None, delta_softplus: bool) -> Tensor:
    """delta (B, D, L) or (B, D) plus bias (D,), through softplus if asked."""
    if delta_bias is not None:
        delta = delta + (delta_bias[:, None] if delta.dim() == 3 else delta_bias)
    return F.softplus(delta) if delta_softplus else delta


def _linear_recurrence(a: Tensor, b: Tensor, h0: Tensor, out: Tensor | None = None) -> Tensor:
    """All h_t = a_t * h_{t-1} + b_t along dim 0, with h_{-1} = h0 (no autograd; see ``LinearRecurrence``).

    a, b: (L, ...); h0: (...). Returns h (L, ...), written into ``out`` (any strided view) if given.
    Odd/even recursive doubling (Blelloch-style): each level fuses pairs of ticks with the associative
    combine (a2, b2) o (a1, b1) = (a2 a1, a2 b1 + b2), solves the half-length problem for the odd ticks
    straight into their slots of ``out``, then fills in the even ones. Depth log2(L), O(L) work, and
    only products of decays in (0, 1]: no division, nothing to overflow.
    """
    L = a.shape[0]
    h = torch.empty(b.shape, dtype=b.dtype, device=b.device) if out is None else out
    if L == 1:
        return torch.addcmul(b, a, h0, out=h)
    n = L // 2
    a_even, a_odd = a[: 2 * n].unflatten(0, (n, 2)).unbind(1)  # (n, ...) each: ticks 0, 2, ... and 1, 3, ...
    b_even, b_odd = b[: 2 * n].unflatten(0, (n, 2)).unbind(1)
    h_even, h_odd = h[: 2 * n].unflatten(0, (n, 2)).unbind(1)  # views into h
    # one fused step from h_{2i-1} to h_{2i+1}; the state before the first pair is still h0
    _linear_recurrence(a_odd * a_even, torch.addcmul(b_odd, a_odd, b_even), h0, out=h_odd)
    torch.addcmul(b_even[:1], a_even[:1], h0, out=h_even[:1])  # h_0 from h_{-1}
    torch.addcmul(b_even[1:], a_even[1:], h_odd[:-1], out=h_even[1:])  # h_2i from h_{2i-1}
    if L % 2:  # the unpaired last tick
        torch.addcmul(b[-1:], a[-1:], h_odd[-1:], out=h[-1:])
    return h


class LinearRecurrence(torch.autograd.Function):
    """Differentiable ``_linear_recurrence``. The gradient is the same recurrence run backwards in time,
    G_t = g_t + a_{t+1} G_{t+1}, so the backward is one more parallel scan (and only a, h0 and h are
    kept for it) instead of autograd's replay of every level."""

    @staticmethod
    def forward(ctx, a: Tensor, b: Tensor, h0: Tensor) -> Tensor:
        h = _linear_recurrence(a, b, h0)
        ctx.save_for_backward(a, h0, h)
        return h

    @staticmethod
    def backward(ctx, g: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        a, h0, h = ctx.saved_tensors
        # reversed time s = L-1-t: G'_s = a_{L-s} G'_{s-1} + g'_s, starting from G' = 0
        a_rev = torch.cat([torch.ones_like(a[:1]), a[1:].flip(0)])
        G = _linear_recurrence(a_rev, g.flip(0), torch.zeros_like(h0)).flip(0)  # (L, ...) dLoss/dh_t
        h_prev = torch.cat([h0[None], h[:-1]])
        return G * h_prev, G, a[0] * G[0]


def selective_scan_torch(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Tensor | None = None,
                         z: Tensor | None = None, delta_bias: Tensor | None = None, delta_softplus: bool = False,
                         return_last_state: bool = False, initial_state: Tensor | None = None):
    """Selective scan in plain PyTorch with a log-depth parallel recurrence (CPU path, any device).

    u, delta, z: (B, D, L); A: (D, N); B, C: (B, N, L); D, delta_bias: (D,); initial_state: (B, D, N)
    (zeros if None). Returns y (B, D, L), and the state after the last tick (B, D, N) when
    ``return_last_state``. Same contract as ``mamba_ssm.selective_scan_fn`` (+ ``initial_state``).
    """
    dt = _delta(delta, delta_bias, delta_softplus)
    # time-major (L, B, D, N) in memory, so each level of the recurrence slices contiguous blocks:
    # elementwise ops lay their output out like their inputs, so the small inputs are made time-major
    time_major = lambda t: t.permute(2, 0, 1).contiguous()  # noqa: E731  (B, X, L) -> (L, B, X)
    dt_t = time_major(dt)[..., None]  # (L, B, D, 1)
    a = torch.exp(dt_t * A)  # (L, B, D, N), decays in (0, 1]
    b = (dt_t * time_major(u)[..., None]) * time_major(B)[:, :, None, :]  # (L, B, D, N)
    h0 = initial_state if initial_state is not None else u.new_zeros(u.shape[0], u.shape[1], A.shape[1])
    h = LinearRecurrence.apply(a, b, h0)  # (L, B, D, N)
    y = (h @ time_major(C)[..., None]).squeeze(-1).permute(1, 2, 0)  # (B, D, L)
    if D is not None:
        y = y + u * D[:, None]
    if z is not None:
        y = y * F.silu(z)
    return (y, h[-1]) if return_last_state else y


def selective_scan_ref(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Tensor | None = None,
                       z: Tensor | None = None, delta_bias: Tensor | None = None, delta_softplus: bool = False,
                       return_last_state: bool = False, initial_state: Tensor | None = None):
    """The definition: a Python loop over time (as mamba_ssm's ``selective_scan_ref``). Same contract as
    ``selective_scan_torch``; the oracle for tests and the baseline for timings, too slow to train with."""
    dt = _delta(delta, delta_bias, delta_softplus)
    a = torch.exp(dt[..., None] * A[:, None, :])  # (B, D, L, N)
    b = (dt * u)[..., None] * B.transpose(1, 2)[:, None]  # (B, D, L, N)
    h = initial_state if initial_state is not None else u.new_zeros(u.shape[0], u.shape[1], A.shape[1])
    ys = []
    # unbind, not a[:, :, t]: the backward of indexing would allocate a full-size gradient per tick
    for a_t, b_t, c_t in zip(a.unbind(2), b.unbind(2), C.unbind(-1)):
        h = a_t * h + b_t  # (B, D, N)
        ys.append((h * c_t[:, None]).sum(-1))  # (B, D)
    y = torch.stack(ys, dim=-1)  # (B, D, L)
    if D is not None:
        y = y + u * D[:, None]
    if z is not None:
        y = y * F.silu(z)
    return (y, h) if return_last_state else y


def selective_state_update_torch(state: Tensor, x: Tensor, dt: Tensor, A: Tensor, B: Tensor, C: Tensor,
                                 D: Tensor | None = None, z: Tensor | None = None, dt_bias: Tensor | None = None,
                                 dt_softplus: bool = False) -> tuple[Tensor, Tensor]:
    """One tick of the scan. state (B, D, N); x, dt, z (B, D); A (D, N); B, C (B, N); D, dt_bias (D,).

    Returns (y (B, D), new_state (B, D, N)) and leaves ``state`` untouched (mamba_ssm's version updates
    it in place and returns y; functional here so the step exports to ONNX as a pure graph).
    """
    dt = _delta(dt, dt_bias, dt_softplus)
    a = torch.exp(dt[..., None] * A)  # (B, D, N)
    b = (dt * x)[..., None] * B[:, None, :]  # (B, D, N)
    state = a * state + b
    y = (state @ C[..., None]).squeeze(-1)  # (B, D)
    if D is not None:
        y = y + x * D
    if z is not None:
        y = y * F.silu(z)
    return y, state


# The dispatch point. "auto" runs lobkernels' Triton-language kernels on CUDA tensors and the PyTorch
# path otherwise (CPU training, the ONNX export); "triton" forces the kernels (tests run them on CPU
# under TRITON_INTERPRET=1); "torch" forces PyTorch. lobkernels is imported lazily: triton picks its
# CPU interpreter only if TRITON_INTERPRET is set before its first import.
_KERNEL_BACKEND = "auto"


@contextmanager
def kernel_backend(name: str):
    """Temporarily route the scan, state update and conv update to "auto" | "torch" | "triton"."""
    global _KERNEL_BACKEND
    if name not in ("auto", "torch", "triton"):
        raise ValueError(f"kernel backend must be auto, torch or triton, not {name!r}")
    previous, _KERNEL_BACKEND = _KERNEL_BACKEND, name
    try:
        yield
    finally:
        _KERNEL_BACKEND = previous


def _use_kernels(t: Tensor) -> bool:
    return _KERNEL_BACKEND == "triton" or (_KERNEL_BACKEND == "auto" and t.is_cuda)


def selective_scan_fn(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False,
                      return_last_state=False, initial_state=None):
    if _use_kernels(u):
        import lobkernels

        return lobkernels.selective_scan_fn(u, delta, A, B, C, D, z, delta_bias, delta_softplus,
                                            return_last_state, initial_state=initial_state)
    return selective_scan_torch(u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state,
                                initial_state)


def selective_state_update(state, x, dt, A, B, C, D=None, z=None, dt_bias=None, dt_softplus=False):
    """Functional: returns (y, new_state); the kernel updates in place, so it works on a copy."""
    if _use_kernels(x):
        import lobkernels

        state = state.clone()
        y = lobkernels.selective_state_update(state, x, dt, A, B, C, D, z, dt_bias=dt_bias, dt_softplus=dt_softplus)
        return y, state
    return selective_state_update_torch(state, x, dt, A, B, C, D, z, dt_bias, dt_softplus)


def causal_conv1d_step(x: Tensor, conv_state: Tensor, weight: Tensor, bias: Tensor) -> tuple[Tensor, Tensor]:
    """One tick of the depthwise causal conv + SiLU: x (B, D), conv_state (B, D, d_conv-1), weight (D, d_conv).

    Returns (silu(conv) (B, D), new conv_state) and leaves ``conv_state`` untouched.
    """
    if _use_kernels(x):
        import lobkernels

        conv_state = conv_state.clone()
        return lobkernels.causal_conv1d_update(x, conv_state, weight, bias, activation="silu"), conv_state
    window = torch.cat([conv_state, x[..., None]], dim=-1)  # (B, D, d_conv)
    return F.silu((window * weight).sum(-1) + bias), window[..., 1:]


# ---------------------------------------------------------------------------------------------- model

class MambaBlock(nn.Module):
    """Mamba-1 mixer (parameters named and initialised as in mamba_ssm's ``Mamba``)."""

    def __init__(self, cfg: MambaLOBConfig, dt_min: float = 1e-3, dt_max: float = 1e-1, dt_init_floor: float = 1e-4):
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


class ResidualBlock(nn.Module):
    """h + Mamba(RMSNorm(h))."""

    def __init__(self, cfg: MambaLOBConfig):
        super().__init__()
        self.norm = nn.RMSNorm(cfg.d_model, eps=1e-5)
        self.mixer = MambaBlock(cfg)

    def forward(self, h, conv_state, ssm_state):
        out, conv_state, ssm_state = self.mixer(self.norm(h), conv_state, ssm_state)
        return h + out, conv_state, ssm_state

    def step(self, h, conv_state, ssm_state):
        out, conv_state, ssm_state = self.mixer.step(self.norm(h), conv_state, ssm_state)
        return h + out, conv_state, ssm_state


class MambaLOB(nn.Module):
    def __init__(self, config: MambaLOBConfig):
        super().__init__()
        self.config = cfg = config
        self.embedding = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.feature_proj = nn.Linear(cfg.n_features, cfg.d_model)
        self.layers = nn.ModuleList(ResidualBlock(cfg) for _ in range(cfg.n_layer))
        self.norm_f = nn.RMSNorm(cfg.d_model, eps=1e-5)
        self.lm_head = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)
        self.lm_head.weight = self.embedding.weight  # tied, as mamba_ssm's MambaLMHeadModel
        self.dir_head = nn.Linear(cfg.d_model, len(cfg.horizons) * cfg.n_classes)
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

    def _heads(self, h: Tensor) -> tuple[Tensor, Tensor]:
        """h (..., d_model) -> next logits (..., V), direction logits (..., H, 3)."""
        h = self.norm_f(h)
        return self.lm_head(h), self.dir_head(h).unflatten(-1, (len(self.config.horizons), self.config.n_classes))

    def forward(self, tokens: Tensor, features: Tensor, conv_state: Tensor | None = None,
                ssm_state: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """tokens (B, L) int64, features (B, L, F) float32, optional states from ``allocate_inference_cache``
        or a previous call -> next_logits (B, L, V), dir_logits (B, L, H, 3), conv_state, ssm_state (final)."""
        self._check_inputs(tokens, features)
        if conv_state is None or ssm_state is None:
            conv_state, ssm_state = self.allocate_inference_cache(tokens.shape[0], features.dtype)
        h = self.embedding(tokens) + self.feature_proj(features)  # (B, L, d_model)
        conv_out, ssm_out = [], []
        for i, layer in enumerate(self.layers):
            h, c, s = layer(h, conv_state[:, i], ssm_state[:, i])
            conv_out.append(c)
            ssm_out.append(s)
        return *self._heads(h), torch.stack(conv_out, dim=1), torch.stack(ssm_out, dim=1)

    def step(self, token: Tensor, features: Tensor, conv_state: Tensor,
             ssm_state: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """One tick: token (B,) int64, features (B, F) -> next_logits (B, V), dir_logits (B, H, 3), and the new
        conv_state (B, n_layer, D, d_conv-1), ssm_state (B, n_layer, D, N). The input states are not modified."""
        h = self.embedding(token) + self.feature_proj(features)  # (B, d_model)
        conv_out, ssm_out = [], []
        for i, layer in enumerate(self.layers):
            h, c, s = layer.step(h, conv_state[:, i], ssm_state[:, i])
            conv_out.append(c)
            ssm_out.append(s)
        return *self._heads(h), torch.stack(conv_out, dim=1), torch.stack(ssm_out, dim=1)

    def _check_inputs(self, tokens: Tensor, features: Tensor) -> None:
        cfg = self.config
        if tokens.dim() != 2 or tokens.dtype != torch.int64:
            raise ValueError(f"tokens must be (B, L) int64, got {tuple(tokens.shape)} {tokens.dtype}")
        if features.shape != (*tokens.shape, cfg.n_features):
            raise ValueError(f"features must be (B, L, F) = {(*tokens.shape, cfg.n_features)}, "
                             f"got {tuple(features.shape)}")
        if tokens.numel() and (int(tokens.min()) < 0 or int(tokens.max()) >= cfg.vocab_size):
            raise ValueError(f"token ids must lie in [0, {cfg.vocab_size}), got "
                             f"[{int(tokens.min())}, {int(tokens.max())}]")
