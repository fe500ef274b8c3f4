"""One decode step of the selective scan, updating the SSM state in place (mamba_ssm's selective_state_update).

    dt = softplus(dt + dt_bias)            (each optional)
    state = exp(dt * A) * state + dt * B * x
    out = (sum_n state[..., n] * C[n] + D * x) * silu(z)

Plain form: state (batch, dim, dstate), x/dt/z (batch, dim), A (dim, dstate), B/C (batch, dstate), D/dt_bias (dim,).
Multi-head form: state (batch, nheads, dim, dstate), x/dt/z (batch, nheads, dim), A (nheads, dim, dstate),
B/C (batch, ngroups, dstate) shared by nheads // ngroups consecutive heads, D/dt_bias (nheads, dim).

state_batch_indices (batch,) int: request i reads and writes state row state_batch_indices[i] of a larger pool
(a serving slot pool, state.shape[0] >= 1); rows not named are untouched. An index outside [0, pool size) marks a
padding request (like vLLM's PAD_SLOT_ID = -1): no state row is read or written and its output is zero. Two
requests must not name the same row (they would race).

Not autotuned: autotuning reruns the kernel, which would apply the update to the live state several times.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from lobkernels.activations import softplus
from lobkernels.checks import as_heads, check_state_indices, expect_float, expect_same_device


def _block_dim_and_warps(dstate: int) -> tuple[int, int]:
    """Channels per program and warps, from dstate (mamba_ssm's table): about 512 state values per program."""
    if dstate <= 16:
        return 32, 4
    if dstate <= 32:
        return 16, 4
    if dstate <= 64:
        return 8, 4
    if dstate <= 128:
        return 4, 4
    return 4, 8


@triton.jit
def _selective_state_update_kernel(
    state_ptr, x_ptr, dt_ptr, dt_bias_ptr, A_ptr, B_ptr, C_ptr, D_ptr, z_ptr, out_ptr, idx_ptr,
    dim, dstate, heads_per_group, pool_size,
    s_st_b, s_st_h, s_st_d, s_st_n,
    s_x_b, s_x_h, s_x_d,
    s_dt_b, s_dt_h, s_dt_d,
    s_dtb_h, s_dtb_d,
    s_A_h, s_A_d, s_A_n,
    s_B_b, s_B_g, s_B_n,
    s_C_b, s_C_g, s_C_n,
    s_D_h, s_D_d,
    s_z_b, s_z_h, s_z_d,
    s_out_b, s_out_h, s_out_d,
    s_idx,
    DT_SOFTPLUS: tl.constexpr, HAS_DT_BIAS: tl.constexpr, HAS_D: tl.constexpr, HAS_Z: tl.constexpr,
    HAS_STATE_BATCH_INDICES: tl.constexpr, BLOCK_DIM: tl.constexpr, BLOCK_N: tl.constexpr,
):
    pid_d = tl.program_id(0)
    pid_b = tl.program_id(1).to(tl.int64)
    pid_h = tl.program_id(2)
    group = pid_h // heads_per_group
    offs_d = pid_d * BLOCK_DIM + tl.arange(0, BLOCK_DIM)
    offs_n = tl.arange(0, BLOCK_N)
    mask_d = offs_d < dim
    mask_n = offs_n < dstate

    if HAS_STATE_BATCH_INDICES:
        row = tl.load(idx_ptr + pid_b * s_idx).to(tl.int64)
        valid = (row >= 0) & (row < pool_size)
        row = tl.where(valid, row, 0)  # never form an out-of-pool address, even masked
        # A padding request touches no state: the mask empties (vector compare, see selective_scan).
        mask_d = offs_d < tl.where(valid, dim, 0)
    else:
        row = pid_b
    mask_dn = mask_d[:, None] & mask_n[None, :]

    state_ptrs = (state_ptr + row * s_st_b + pid_h * s_st_h
                  + offs_d[:, None] * s_st_d + offs_n[None, :] * s_st_n)
    state = tl.load(state_ptrs, mask=mask_dn, other=0.0).to(tl.float32)  # (BLOCK_DIM, BLOCK_N)
    x = tl.load(x_ptr + pid_b * s_x_b + pid_h * s_x_h + offs_d * s_x_d, mask=mask_d, other=0.0).to(tl.float32)
    dt = tl.load(dt_ptr + pid_b * s_dt_b + pid_h * s_dt_h + offs_d * s_dt_d, mask=mask_d, other=0.0).to(tl.float32)
    if HAS_DT_BIAS:
        dt += tl.load(dt_bias_ptr + pid_h * s_dtb_h + offs_d * s_dtb_d, mask=mask_d, other=0.0).to(tl.float32)
    if DT_SOFTPLUS:
        dt = softplus(dt)
    A = tl.load(A_ptr + pid_h * s_A_h + offs_d[:, None] * s_A_d + offs_n[None, :] * s_A_n,
                mask=mask_dn, other=0.0).to(tl.float32)
    B = tl.load(B_ptr + pid_b * s_B_b + group * s_B_g + offs_n * s_B_n, mask=mask_n, other=0.0).to(tl.float32)
    C = tl.load(C_ptr + pid_b * s_C_b + group * s_C_g + offs_n * s_C_n, mask=mask_n, other=0.0).to(tl.float32)

    state = state * tl.exp(dt[:, None] * A) + (dt * x)[:, None] * B[None, :]
    tl.store(state_ptrs, state.to(state_ptr.dtype.element_ty), mask=mask_dn)

    out = tl.sum(state * C[None, :], axis=1)  # (BLOCK_DIM,)
    if HAS_D:
        out += x * tl.load(D_ptr + pid_h * s_D_h + offs_d * s_D_d, mask=mask_d, other=0.0).to(tl.float32)
    if HAS_Z:
        z = tl.load(z_ptr + pid_b * s_z_b + pid_h * s_z_h + offs_d * s_z_d, mask=mask_d, other=0.0).to(tl.float32)
        out *= z * tl.sigmoid(z)
    # Padding requests: every input above was masked to zero, so out is zero; store the whole row.
    out_mask = (pid_d * BLOCK_DIM + tl.arange(0, BLOCK_DIM)) < dim
    tl.store(out_ptr + pid_b * s_out_b + pid_h * s_out_h + offs_d * s_out_d,
             out.to(out_ptr.dtype.element_ty), mask=out_mask)


def selective_state_update(state, x, dt, A, B, C, D=None, z=None, dt_bias=None, dt_softplus=False,
                           state_batch_indices=None):
    """One step; updates `state` in place and returns out (batch, dim) or (batch, nheads, dim) in x's dtype.

    Shapes in the module docstring. The state may be float32, float16 or bfloat16; the update is computed in
    float32 and rounded once when stored.
    """
    expect_same_device({"state": state, "x": x, "dt": dt, "A": A, "B": B, "C": C, "D": D, "z": z,
                        "dt_bias": dt_bias, "state_batch_indices": state_batch_indices},
                       _selective_state_update_kernel)
    for name, t in (("state", state), ("x", x), ("dt", dt), ("A", A), ("B", B), ("C", C), ("D", D), ("z", z),
                    ("dt_bias", dt_bias)):
        if t is not None:
            expect_float(name, t)
    has_heads = state.dim() == 4
    state4, x3, dt3, A3, B3, C3, D2, dt_bias2, z3 = as_heads(state, x, dt, A, B, C, D, z, dt_bias)
    pool, nheads, dim, dstate = state4.shape
    batch = x3.shape[0]
    check_state_indices(state_batch_indices, batch, pool)
    out = torch.empty_like(x3, memory_format=torch.contiguous_format)
    block_dim, num_warps = _block_dim_and_warps(dstate)
    block_n = triton.next_power_of_2(dstate)

    def strides(t, n):
        return tuple(t.stride()) if t is not None else (0,) * n

    grid = (triton.cdiv(dim, block_dim), batch, nheads)
    _selective_state_update_kernel[grid](
        state4, x3, dt3, dt_bias2, A3, B3, C3, D2, z3, out, state_batch_indices,
        dim, dstate, nheads // B3.shape[1], pool,
        *state4.stride(), *x3.stride(), *dt3.stride(), *strides(dt_bias2, 2), *A3.stride(), *B3.stride(),
        *C3.stride(), *strides(D2, 2), *strides(z3, 3), *out.stride(), *strides(state_batch_indices, 1),
        DT_SOFTPLUS=dt_softplus, HAS_DT_BIAS=dt_bias is not None, HAS_D=D is not None, HAS_Z=z is not None,
        HAS_STATE_BATCH_INDICES=state_batch_indices is not None,
        BLOCK_DIM=block_dim, BLOCK_N=block_n, num_warps=num_warps,
    )
    return out if has_heads else out.squeeze(1)
