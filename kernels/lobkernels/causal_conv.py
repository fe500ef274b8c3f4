"""Depthwise causal conv1d over the newest 1..few steps, with a rolling input window updated in place.

Same semantics as the causal-conv1d package's `causal_conv1d_update` / `causal_conv1d_update_ref` (without
cache_seqlens): with x_all = concat(conv_state, x) along time (batch, dim, state_len + seqlen),

    out[b, d, t] = act(bias[d] + sum_w weight[d, w] * x_all[b, d, state_len - (width - 1) + t + w])
    conv_state  <- x_all[:, :, -state_len:]

x: (batch, dim) for one step or (batch, dim, seqlen); conv_state: (batch, dim, state_len), state_len >= width - 1;
weight: (dim, width); bias: (dim,); activation: None, "silu" or "swish" (= silu).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from lobkernels.checks import check_conv_args, expect_same_device

BLOCK_DIM = 64  # channels per program: the work per channel is tiny, so programs are made wide instead


@triton.jit
def _causal_conv1d_update_kernel(
    x_ptr, state_ptr, w_ptr, bias_ptr, out_ptr,
    dim, seqlen, state_len,
    s_x_b, s_x_d, s_x_l,
    s_st_b, s_st_d, s_st_l,
    s_w_d, s_w_w,
    s_bias,
    s_out_b, s_out_d, s_out_l,
    WIDTH: tl.constexpr, HAS_BIAS: tl.constexpr, SILU: tl.constexpr,
    BLOCK_DIM: tl.constexpr, BLOCK_STATE: tl.constexpr,
):
    pid_b = tl.program_id(0).to(tl.int64)
    pid_d = tl.program_id(1)
    offs_d = pid_d * BLOCK_DIM + tl.arange(0, BLOCK_DIM)
    mask_d = offs_d < dim
    x_ptrs = x_ptr + pid_b * s_x_b + offs_d * s_x_d  # (BLOCK_DIM,)
    st_ptrs = state_ptr + pid_b * s_st_b + offs_d * s_st_d
    bias = tl.zeros((BLOCK_DIM,), tl.float32)
    if HAS_BIAS:
        bias = tl.load(bias_ptr + offs_d * s_bias, mask=mask_d, other=0.0).to(tl.float32)

    # Outputs first, from the old window: x_all[i] is conv_state[i] for i < state_len, else x[i - state_len].
    for t in range(0, seqlen):
        acc = bias
        for w in tl.static_range(WIDTH):
            i = state_len - (WIDTH - 1) + t + w
            # Bounds as vector compares: a scalar & vector mask is mis-typed by the Triton 3.9 interpreter.
            from_state = offs_d < tl.where(i < state_len, dim, 0)
            from_x = offs_d < tl.where(i < state_len, 0, dim)
            v = (tl.load(st_ptrs + i * s_st_l, mask=from_state, other=0.0).to(tl.float32)
                 + tl.load(x_ptrs + (i - state_len) * s_x_l, mask=from_x, other=0.0).to(tl.float32))
            acc += v * tl.load(w_ptr + offs_d * s_w_d + w * s_w_w, mask=mask_d, other=0.0).to(tl.float32)
        if SILU:
            acc = acc / (1.0 + tl.exp(-acc))
        tl.store(out_ptr + pid_b * s_out_b + offs_d * s_out_d + t * s_out_l,
                 acc.to(out_ptr.dtype.element_ty), mask=mask_d)

    # New window: conv_state[j] <- x_all[seqlen + j], read whole before any of it is overwritten.
    j = tl.arange(0, BLOCK_STATE)
    src = seqlen + j  # (BLOCK_STATE,) index into x_all
    in_state = j < state_len
    from_state = mask_d[:, None] & (in_state & (src < state_len))[None, :]
    from_x = mask_d[:, None] & (in_state & (src >= state_len))[None, :]
    window = (tl.load(st_ptrs[:, None] + src[None, :] * s_st_l, mask=from_state, other=0.0).to(tl.float32)
              + tl.load(x_ptrs[:, None] + (src - state_len)[None, :] * s_x_l, mask=from_x, other=0.0)
              .to(tl.float32))
    tl.debug_barrier()  # every thread has read the old window before any thread writes the new one
    tl.store(st_ptrs[:, None] + j[None, :] * s_st_l, window.to(state_ptr.dtype.element_ty),
             mask=mask_d[:, None] & in_state[None, :])


def causal_conv1d_update(x, conv_state, weight, bias=None, activation=None):
    """Returns out with x's shape and dtype; shifts x into conv_state in place. Shapes in the module docstring."""
    check_conv_args(x, conv_state, weight, bias, activation)
    expect_same_device({"x": x, "conv_state": conv_state, "weight": weight, "bias": bias},
                       _causal_conv1d_update_kernel)
    one_step = x.dim() == 2
    x3 = x.unsqueeze(-1) if one_step else x  # (batch, dim, seqlen)
    batch, dim, seqlen = x3.shape
    state_len = conv_state.shape[2]
    out = torch.empty((batch, dim, seqlen), dtype=x.dtype, device=x.device)
    grid = (batch, triton.cdiv(dim, BLOCK_DIM))
    _causal_conv1d_update_kernel[grid](
        x3, conv_state, weight, bias, out,
        dim, seqlen, state_len,
        *x3.stride(), *conv_state.stride(), *weight.stride(), *(bias.stride() if bias is not None else (0,)),
        *out.stride(),
        WIDTH=weight.shape[1], HAS_BIAS=bias is not None, SILU=activation in ("silu", "swish"),
        BLOCK_DIM=BLOCK_DIM, BLOCK_STATE=max(1, triton.next_power_of_2(state_len)),  # width 1 keeps no state
    )
    return out.squeeze(-1) if one_step else out
