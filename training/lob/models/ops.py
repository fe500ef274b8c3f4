"""The Mamba ops the model runs, in PyTorch, and their dispatch to `lobkernels`' Triton kernels.

- ``selective_scan_torch``: the whole-sequence scan with a log-depth parallel recurrence (CPU training,
  any device) and a custom backward;
- ``selective_state_update_torch`` and ``causal_conv1d_step``: one tick, functional (new states are
  returned, inputs untouched), so the step exports to ONNX as a pure graph;
- ``selective_scan_stepwise``: the scan as that one-tick update per tick under torch's ``scan`` operator, which
  the ONNX export turns into one ``Scan`` over a dynamic number of ticks (the served graph over a chunk).

``selective_scan_fn``, ``selective_state_update`` and ``causal_conv1d_step`` are the one dispatch point:
mamba_ssm's signatures (plus ``initial_state`` on the scan), routed to ``lobkernels`` for CUDA tensors.
The loop references these are tested against live in ``lobkernels.reference``.
"""
from __future__ import annotations

from contextlib import contextmanager

import torch
import torch.nn.functional as F

Tensor = torch.Tensor


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


def selective_scan_stepwise(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Tensor | None = None,
                            z: Tensor | None = None, delta_bias: Tensor | None = None, delta_softplus: bool = False,
                            return_last_state: bool = False, initial_state: Tensor | None = None):
    """Selective scan as ``selective_state_update_torch`` once per tick, under torch's ``scan`` operator (no
    autograd): exports to ONNX as one ``Scan`` whose length is the input's. Arguments and returns as
    ``selective_scan_torch``; delta's bias and softplus, the D skip and the z gate run on all ticks at once."""
    from torch._higher_order_ops.scan import scan

    time_major = lambda t: t.permute(2, 0, 1)  # noqa: E731  (B, X, L) -> (L, B, X)
    dt = _delta(delta, delta_bias, delta_softplus)

    def tick(state, x):  # state (B, D, N); x: the tick's u, dt (B, D) and B, C (B, N)
        y, state = selective_state_update_torch(state, *x[:2], A, *x[2:])
        return state, y

    h0 = initial_state if initial_state is not None else u.new_zeros(u.shape[0], u.shape[1], A.shape[1])
    h, y = scan(tick, h0.contiguous(), [time_major(t) for t in (u, dt, B, C)])  # (B, D, N), (L, B, D)
    y = y.permute(1, 2, 0)  # (B, D, L)
    if D is not None:
        y = y + u * D[:, None]
    if z is not None:
        y = y * F.silu(z)
    return (y, h) if return_last_state else y


# The dispatch point. "auto" runs lobkernels' Triton-language kernels on CUDA tensors and the PyTorch
# path otherwise (CPU training, the ONNX export); "triton" forces the kernels (tests run them on CPU
# under TRITON_INTERPRET=1); "torch" forces PyTorch. lobkernels is imported lazily: triton picks its
# CPU interpreter only if TRITON_INTERPRET is set before its first import. "stepwise" runs the scan as
# ``selective_scan_stepwise`` (the ONNX export of a chunk).
_KERNEL_BACKEND = "auto"


@contextmanager
def kernel_backend(name: str):
    """Temporarily route the scan, state update and conv update to "auto" | "torch" | "triton" | "stepwise"."""
    global _KERNEL_BACKEND
    if name not in ("auto", "torch", "triton", "stepwise"):
        raise ValueError(f"kernel backend must be auto, torch, triton or stepwise, not {name!r}")
    previous, _KERNEL_BACKEND = _KERNEL_BACKEND, name
    try:
        yield
    finally:
        _KERNEL_BACKEND = previous


def _use_kernels(t: Tensor) -> bool:
    return _KERNEL_BACKEND == "triton" or (_KERNEL_BACKEND == "auto" and t.is_cuda)


def selective_scan_fn(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False,
                      return_last_state=False, initial_state=None):
    if _KERNEL_BACKEND == "stepwise":
        return selective_scan_stepwise(u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state,
                                       initial_state)
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
