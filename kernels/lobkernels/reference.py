"""The plain-PyTorch references of lobkernels' ops: the one definition each kernel, and Mamba-LOB's own
PyTorch path (`lob.models.ops`), is tested against. Torch only: importing this never imports triton.

- ``selective_scan_ref``: mamba_ssm's selective_scan_ref (real A; B, C (batch, dstate, L)) + initial_state;
- ``selective_state_update_ref``: mamba_ssm's selective_state_update_ref + state_batch_indices;
- ``causal_conv1d_update_ref``: causal-conv1d's causal_conv1d_update_ref without cache_seqlens.

The scan and the state update compute in float32 (float64 inputs stay float64) and return the input dtype,
as the kernels do; the conv update computes in the weight's dtype, as causal-conv1d does.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from lobkernels.checks import as_heads, check_conv_args, check_state_indices


def _acc(dtype: torch.dtype) -> torch.dtype:
    """Accumulation dtype: float32, or float64 for float64 inputs."""
    return torch.promote_types(dtype, torch.float32)


def selective_scan_ref(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False,
                       return_last_state=False, initial_state=None):
    """mamba_ssm's selective_scan_ref for real A and B, C of shape (batch, dstate, L), plus initial_state."""
    dtype_in, acc = u.dtype, _acc(u.dtype)
    u = u.to(acc)
    delta = delta.to(acc)
    if delta_bias is not None:
        delta = delta + delta_bias[..., None].to(acc)
    if delta_softplus:
        delta = F.softplus(delta)
    batch, dim, dstate = u.shape[0], A.shape[0], A.shape[1]
    B = B.to(acc)
    C = C.to(acc)
    x = A.new_zeros((batch, dim, dstate), dtype=acc) if initial_state is None else initial_state.to(acc)
    delta_A = torch.exp(torch.einsum("bdl,dn->bdln", delta, A.to(acc)))  # (batch, dim, L, dstate)
    delta_B_u = torch.einsum("bdl,bnl,bdl->bdln", delta, B, u)  # (batch, dim, L, dstate)
    ys = []
    for i in range(u.shape[2]):
        x = delta_A[:, :, i] * x + delta_B_u[:, :, i]
        ys.append(torch.einsum("bdn,bn->bd", x, C[:, :, i]))
    y = torch.stack(ys, dim=2)  # (batch, dim, L)
    out = y if D is None else y + u * D.to(acc)[:, None]
    if z is not None:
        out = out * F.silu(z.to(acc))
    out = out.to(dtype=dtype_in)
    return (out, x) if return_last_state else out


def selective_state_update_ref(state, x, dt, A, B, C, D=None, z=None, dt_bias=None, dt_softplus=False,
                               state_batch_indices=None):
    """PyTorch reference: mamba_ssm's selective_state_update_ref, plus state_batch_indices (padding rows as above)."""
    has_heads = state.dim() == 4
    state4, x, dt, A, B, C, D, dt_bias, z = as_heads(state, x, dt, A, B, C, D, z, dt_bias)
    pool, nheads, dim, dstate = state4.shape
    batch = x.shape[0]
    check_state_indices(state_batch_indices, batch, pool)
    if state_batch_indices is None:
        s = state4.to(_acc(state4.dtype))  # (batch, nheads, dim, dstate)
    else:
        rows = state_batch_indices.long()
        valid = (rows >= 0) & (rows < pool)
        rows = torch.where(valid, rows, 0)
        s = torch.where(valid[:, None, None, None], state4[rows].to(_acc(state4.dtype)), 0.0)  # padding requests see zeros
    if dt_bias is not None:
        dt = dt + dt_bias
    dt = F.softplus(dt) if dt_softplus else dt
    dA = torch.exp(dt[..., None] * A)  # (batch, nheads, dim, dstate)
    heads_per_group = nheads // B.shape[1]
    B = B.repeat_interleave(heads_per_group, dim=1)  # (batch, nheads, dstate)
    C = C.repeat_interleave(heads_per_group, dim=1)
    dB = dt[..., None] * B[:, :, None, :]  # (batch, nheads, dim, dstate)
    s = (s * dA + dB * x[..., None]).to(state4.dtype)
    if state_batch_indices is None:
        state4.copy_(s)
    else:
        state4[rows[valid]] = s[valid]
    out = torch.einsum("bhdn,bhn->bhd", s.to(C.dtype), C)
    if D is not None:
        out += (x * D).to(out.dtype)
    out = (out if z is None else out * F.silu(z)).to(x.dtype)
    if state_batch_indices is not None:
        out = torch.where(valid[:, None, None], out, 0.0).to(x.dtype)
    return out if has_heads else out.squeeze(1)


def causal_conv1d_update_ref(x, conv_state, weight, bias=None, activation=None):
    """PyTorch reference: causal-conv1d's causal_conv1d_update_ref without cache_seqlens."""
    check_conv_args(x, conv_state, weight, bias, activation)
    dtype_in = x.dtype
    one_step = x.dim() == 2
    if one_step:
        x = x.unsqueeze(-1)
    dim, seqlen = x.shape[1], x.shape[2]
    state_len = conv_state.shape[-1]
    x_all = torch.cat([conv_state, x], dim=-1).to(weight.dtype)  # (batch, dim, state_len + seqlen)
    conv_state.copy_(x_all[:, :, x_all.shape[-1] - state_len:])  # not [-state_len:], which is all for 0
    out = F.conv1d(x_all, weight.unsqueeze(1), bias, padding=0, groups=dim)[:, :, -seqlen:]
    if one_step:
        out = out.squeeze(-1)
    return (out if activation is None else F.silu(out)).to(dtype=dtype_in)
