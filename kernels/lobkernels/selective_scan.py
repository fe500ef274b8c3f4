"""Selective scan (Mamba's S6 recurrence) over a whole sequence, differentiable.

    h_t = exp(delta_t * A) * h_{t-1} + delta_t * B_t * u_t        h: (batch, dim, dstate), h_{-1} = 0 or given
    y_t = sum_n h_t[..., n] * C_t[n]  (+ D * u_t)  (* silu(z_t))

Same semantics as mamba_ssm's `selective_scan_fn` / `selective_scan_ref` for real A and input-dependent B, C of
shape (batch, dstate, L). One Triton program owns a (batch, BLOCK_D channels) slice and walks the sequence with the
state tile (BLOCK_D, dstate) in registers. The backward walks the sequence in reverse, chunk by chunk: the forward
saves the state at the end of every CHUNK steps; the backward recomputes a chunk's states from its checkpoint into
a per-program scratch buffer and then runs the reverse recurrence over that chunk.

The loop bodies inline softplus and sigmoid: under the Triton interpreter (CPU tests) every nested @triton.jit call
costs milliseconds per step; compiled, it makes no difference.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from lobkernels.checks import expect_float, expect_ndim, expect_same_device, expect_shape

# Steps between saved states. Memory: checkpoints hold L/CHUNK states per (batch, dim), the backward scratch holds
# CHUNK+1 state tiles per program; 32 keeps both near 1/32 of storing every state.
CHUNK = 32


def _block_sizes(dim: int, dstate: int) -> tuple[int, int]:
    """(BLOCK_D, BLOCK_N): the whole dstate in one tile of about 512 fp32 state values per program, as mamba_ssm's
    state update picks. The scan is latency-bound (one step after another), so smaller tiles buy more programs
    in flight; not yet tuned on a GPU."""
    block_n = triton.next_power_of_2(dstate)
    block_d = min(triton.next_power_of_2(dim), max(16, 512 // block_n))
    return block_d, block_n


@triton.jit
def _selective_scan_fwd_kernel(
    u_ptr, delta_ptr, A_ptr, B_ptr, C_ptr, D_ptr, z_ptr, bias_ptr, init_ptr, out_ptr, ckpt_ptr,
    dim, L, dstate,
    s_u_b, s_u_d, s_u_l,
    s_dt_b, s_dt_d, s_dt_l,
    s_A_d, s_A_n,
    s_B_b, s_B_n, s_B_l,
    s_C_b, s_C_n, s_C_l,
    s_D, s_bias,
    s_z_b, s_z_d, s_z_l,
    s_init_b, s_init_d, s_init_n,
    s_out_b, s_out_d, s_out_l,
    s_ck_b, s_ck_d, s_ck_c, s_ck_n,
    DELTA_SOFTPLUS: tl.constexpr, HAS_D: tl.constexpr, HAS_Z: tl.constexpr, HAS_BIAS: tl.constexpr,
    HAS_INIT: tl.constexpr, SAVE_CHECKPOINTS: tl.constexpr,
    CHUNK: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_N: tl.constexpr,
):
    pid_b = tl.program_id(0).to(tl.int64)
    pid_d = tl.program_id(1)
    offs_d = pid_d * BLOCK_D + tl.arange(0, BLOCK_D)
    offs_n = tl.arange(0, BLOCK_N)
    mask_d = offs_d < dim
    mask_n = offs_n < dstate
    mask_dn = mask_d[:, None] & mask_n[None, :]

    A = tl.load(A_ptr + offs_d[:, None] * s_A_d + offs_n[None, :] * s_A_n, mask=mask_dn, other=0.0).to(tl.float32)
    bias = tl.zeros((BLOCK_D,), tl.float32)
    if HAS_BIAS:
        bias = tl.load(bias_ptr + offs_d * s_bias, mask=mask_d, other=0.0).to(tl.float32)
    if HAS_D:
        Dv = tl.load(D_ptr + offs_d * s_D, mask=mask_d, other=0.0).to(tl.float32)

    u_ptrs = u_ptr + pid_b * s_u_b + offs_d * s_u_d
    dt_ptrs = delta_ptr + pid_b * s_dt_b + offs_d * s_dt_d
    B_ptrs = B_ptr + pid_b * s_B_b + offs_n * s_B_n
    C_ptrs = C_ptr + pid_b * s_C_b + offs_n * s_C_n
    z_offs = pid_b * s_z_b + offs_d * s_z_d  # an offset, not a pointer: z_ptr may be None
    out_ptrs = out_ptr + pid_b * s_out_b + offs_d * s_out_d
    ck_ptrs = ckpt_ptr + pid_b * s_ck_b + offs_d[:, None] * s_ck_d + offs_n[None, :] * s_ck_n

    h = tl.zeros((BLOCK_D, BLOCK_N), tl.float32)  # (BLOCK_D, BLOCK_N)
    if HAS_INIT:
        h = tl.load(init_ptr + pid_b * s_init_b + offs_d[:, None] * s_init_d + offs_n[None, :] * s_init_n,
                    mask=mask_dn, other=0.0).to(tl.float32)
    n_chunks = tl.cdiv(L, CHUNK)
    for c in range(0, n_chunks):
        for k in range(0, CHUNK):
            t = c * CHUNK + k
            # Bounds as vector compares: a scalar & vector mask is mis-typed by the Triton 3.9 interpreter.
            mask_t = offs_d < tl.where(t < L, dim, 0)
            mask_nt = offs_n < tl.where(t < L, dstate, 0)
            u = tl.load(u_ptrs + t * s_u_l, mask=mask_t, other=0.0).to(tl.float32)
            dt = tl.load(dt_ptrs + t * s_dt_l, mask=mask_t, other=0.0).to(tl.float32) + bias
            if DELTA_SOFTPLUS:
                dt = tl.where(dt <= 20.0, tl.log(1.0 + tl.exp(dt)), dt)  # F.softplus, threshold 20
            dt = tl.where(mask_t, dt, 0.0)  # delta = 0 on padded steps keeps the state unchanged
            Bt = tl.load(B_ptrs + t * s_B_l, mask=mask_nt, other=0.0).to(tl.float32)
            Ct = tl.load(C_ptrs + t * s_C_l, mask=mask_nt, other=0.0).to(tl.float32)
            h = tl.exp(dt[:, None] * A) * h + (dt * u)[:, None] * Bt[None, :]
            y = tl.sum(h * Ct[None, :], axis=1)  # (BLOCK_D,)
            if HAS_D:
                y += u * Dv
            if HAS_Z:
                z = tl.load(z_ptr + z_offs + t * s_z_l, mask=mask_t, other=0.0).to(tl.float32)
                y *= z / (1.0 + tl.exp(-z))
            tl.store(out_ptrs + t * s_out_l, y.to(out_ptr.dtype.element_ty), mask=mask_t)
        if SAVE_CHECKPOINTS:
            tl.store(ck_ptrs + c * s_ck_c, h, mask=mask_dn)
    if not SAVE_CHECKPOINTS:
        tl.store(ck_ptrs, h, mask=mask_dn)  # the only "checkpoint" is the final state


@triton.jit
def _selective_scan_bwd_kernel(
    u_ptr, delta_ptr, A_ptr, B_ptr, C_ptr, D_ptr, z_ptr, bias_ptr, init_ptr, ckpt_ptr, dout_ptr, dlast_ptr,
    scratch_ptr, du_ptr, ddelta_ptr, dz_ptr, dA_ptr, dB_ptr, dC_ptr, dD_ptr, dbias_ptr, dinit_ptr,
    dim, L, dstate,
    s_u_b, s_u_d, s_u_l,
    s_dt_b, s_dt_d, s_dt_l,
    s_A_d, s_A_n,
    s_B_b, s_B_n, s_B_l,
    s_C_b, s_C_n, s_C_l,
    s_D, s_bias,
    s_z_b, s_z_d, s_z_l,
    s_init_b, s_init_d, s_init_n,
    s_ck_b, s_ck_d, s_ck_c, s_ck_n,
    s_do_b, s_do_d, s_do_l,
    s_dl_b, s_dl_d, s_dl_n,
    DELTA_SOFTPLUS: tl.constexpr, HAS_D: tl.constexpr, HAS_Z: tl.constexpr, HAS_BIAS: tl.constexpr,
    HAS_INIT: tl.constexpr, HAS_DLAST: tl.constexpr, CHUNK: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_N: tl.constexpr,
):
    """Reverse scan. With g_t = dLoss/dh_t and a_t = exp(delta_t A):
    g_t = a_{t+1} g_{t+1} + dy_t C_t;  dA += g_t a_t h_{t-1} delta_t;  ddelta_t = sum_n g_t (a_t h_{t-1} A + B_t u_t);
    du_t = delta_t sum_n g_t B_t (+ D dy_t);  dB_t = sum_d g_t delta_t u_t;  dC_t = sum_d dy_t h_t.
    Outputs dB, dC are per-channel-block partial sums (batch, n_dblocks, dstate, L), dA, dD, dbias per-batch partial
    sums: summed by the caller, which keeps the result deterministic (no atomics). dinit = a_0 g_0."""
    pid_b = tl.program_id(0).to(tl.int64)
    pid_d = tl.program_id(1)
    n_dblocks = tl.num_programs(1)
    offs_d = pid_d * BLOCK_D + tl.arange(0, BLOCK_D)
    offs_n = tl.arange(0, BLOCK_N)
    mask_d = offs_d < dim
    mask_n = offs_n < dstate
    mask_dn = mask_d[:, None] & mask_n[None, :]

    A = tl.load(A_ptr + offs_d[:, None] * s_A_d + offs_n[None, :] * s_A_n, mask=mask_dn, other=0.0).to(tl.float32)
    bias = tl.zeros((BLOCK_D,), tl.float32)
    if HAS_BIAS:
        bias = tl.load(bias_ptr + offs_d * s_bias, mask=mask_d, other=0.0).to(tl.float32)
    if HAS_D:
        Dv = tl.load(D_ptr + offs_d * s_D, mask=mask_d, other=0.0).to(tl.float32)

    u_ptrs = u_ptr + pid_b * s_u_b + offs_d * s_u_d
    dt_ptrs = delta_ptr + pid_b * s_dt_b + offs_d * s_dt_d
    B_ptrs = B_ptr + pid_b * s_B_b + offs_n * s_B_n
    C_ptrs = C_ptr + pid_b * s_C_b + offs_n * s_C_n
    z_offs = pid_b * s_z_b + offs_d * s_z_d  # an offset, not a pointer: z_ptr may be None
    do_ptrs = dout_ptr + pid_b * s_do_b + offs_d * s_do_d
    ck_ptrs = ckpt_ptr + pid_b * s_ck_b + offs_d[:, None] * s_ck_d + offs_n[None, :] * s_ck_n
    grad_offs = (pid_b * dim + offs_d) * L  # du, ddelta, dz: contiguous (batch, dim, L) buffers from the wrapper
    dB_ptrs = dB_ptr + ((pid_b * n_dblocks + pid_d) * dstate + offs_n) * L
    dC_ptrs = dC_ptr + ((pid_b * n_dblocks + pid_d) * dstate + offs_n) * L
    tile = tl.arange(0, BLOCK_D)[:, None] * BLOCK_N + offs_n[None, :]
    scratch_ptrs = scratch_ptr + (pid_b * n_dblocks + pid_d) * ((CHUNK + 1) * BLOCK_D * BLOCK_N) + tile

    # g_next = a_{t+1} * g_{t+1}; the gradient of the returned last state enters at t = L-1.
    g_next = tl.zeros((BLOCK_D, BLOCK_N), tl.float32)
    if HAS_DLAST:
        g_next = tl.load(dlast_ptr + pid_b * s_dl_b + offs_d[:, None] * s_dl_d + offs_n[None, :] * s_dl_n,
                         mask=mask_dn, other=0.0).to(tl.float32)
    dA_acc = tl.zeros((BLOCK_D, BLOCK_N), tl.float32)
    dD_acc = tl.zeros((BLOCK_D,), tl.float32)
    dbias_acc = tl.zeros((BLOCK_D,), tl.float32)

    if HAS_INIT:
        h0 = tl.load(init_ptr + pid_b * s_init_b + offs_d[:, None] * s_init_d + offs_n[None, :] * s_init_n,
                     mask=mask_dn, other=0.0).to(tl.float32)
    n_chunks = tl.cdiv(L, CHUNK)
    for ci in range(0, n_chunks):
        c = n_chunks - 1 - ci
        # Recompute this chunk's states: scratch[k] = state before step c*CHUNK + k, scratch[CHUNK] = after the last.
        after_first = offs_n < tl.where(c > 0, dstate, 0)  # chunk 0 starts from zeros or initial_state
        h = tl.load(ck_ptrs + (c - 1) * s_ck_c, mask=mask_d[:, None] & after_first[None, :], other=0.0)
        if HAS_INIT:
            h = tl.where(c > 0, h, h0)
        tl.store(scratch_ptrs, h)
        for k in range(0, CHUNK):
            t = c * CHUNK + k
            # Bounds as vector compares: a scalar & vector mask is mis-typed by the Triton 3.9 interpreter.
            mask_t = offs_d < tl.where(t < L, dim, 0)
            mask_nt = offs_n < tl.where(t < L, dstate, 0)
            u = tl.load(u_ptrs + t * s_u_l, mask=mask_t, other=0.0).to(tl.float32)
            dt = tl.load(dt_ptrs + t * s_dt_l, mask=mask_t, other=0.0).to(tl.float32) + bias
            if DELTA_SOFTPLUS:
                dt = tl.where(dt <= 20.0, tl.log(1.0 + tl.exp(dt)), dt)  # F.softplus, threshold 20
            dt = tl.where(mask_t, dt, 0.0)  # delta = 0 on padded steps keeps the state unchanged
            Bt = tl.load(B_ptrs + t * s_B_l, mask=mask_nt, other=0.0).to(tl.float32)
            h = tl.exp(dt[:, None] * A) * h + (dt * u)[:, None] * Bt[None, :]
            tl.store(scratch_ptrs + (k + 1) * (BLOCK_D * BLOCK_N), h)
        tl.debug_barrier()  # scratch written by all threads before any reads it back

        h_cur = h  # state after step t
        for kk in range(0, CHUNK):
            k = CHUNK - 1 - kk
            t = c * CHUNK + k
            mask_t = offs_d < tl.where(t < L, dim, 0)
            mask_nt = offs_n < tl.where(t < L, dstate, 0)
            h_prev = tl.load(scratch_ptrs + k * (BLOCK_D * BLOCK_N))
            u = tl.load(u_ptrs + t * s_u_l, mask=mask_t, other=0.0).to(tl.float32)
            dt_raw = tl.load(dt_ptrs + t * s_dt_l, mask=mask_t, other=0.0).to(tl.float32) + bias
            dt = dt_raw
            if DELTA_SOFTPLUS:
                dt = tl.where(dt_raw <= 20.0, tl.log(1.0 + tl.exp(dt_raw)), dt_raw)
            dt = tl.where(mask_t, dt, 0.0)
            Bt = tl.load(B_ptrs + t * s_B_l, mask=mask_nt, other=0.0).to(tl.float32)
            Ct = tl.load(C_ptrs + t * s_C_l, mask=mask_nt, other=0.0).to(tl.float32)
            dout = tl.load(do_ptrs + t * s_do_l, mask=mask_t, other=0.0).to(tl.float32)
            a = tl.exp(dt[:, None] * A)

            dy = dout
            if HAS_Z:
                z = tl.load(z_ptr + z_offs + t * s_z_l, mask=mask_t, other=0.0).to(tl.float32)
                sig = 1.0 / (1.0 + tl.exp(-z))
                pre = tl.sum(h_cur * Ct[None, :], axis=1)  # output before gating
                if HAS_D:
                    pre += u * Dv
                dz = dout * pre * sig * (1.0 + z * (1.0 - sig))
                tl.store(dz_ptr + grad_offs + t, dz.to(dz_ptr.dtype.element_ty), mask=mask_t)
                dy = dout * z * sig
            du = tl.zeros((BLOCK_D,), tl.float32)
            if HAS_D:
                dD_acc += dy * u
                du = dy * Dv

            g = g_next + dy[:, None] * Ct[None, :]  # (BLOCK_D, BLOCK_N)
            tl.store(dC_ptrs + t, tl.sum(dy[:, None] * h_cur, axis=0), mask=mask_nt)
            tl.store(dB_ptrs + t, tl.sum(g * (dt * u)[:, None], axis=0), mask=mask_nt)
            gB = tl.sum(g * Bt[None, :], axis=1)  # (BLOCK_D,)
            du += gB * dt
            gah = g * a * h_prev
            ddt = tl.sum(gah * A, axis=1) + gB * u
            dA_acc += gah * dt[:, None]
            if DELTA_SOFTPLUS:
                ddt = ddt * tl.where(dt_raw <= 20.0, 1.0 / (1.0 + tl.exp(-dt_raw)), 1.0)
            ddt = tl.where(mask_t, ddt, 0.0)  # padded steps carry g but contribute nothing
            dbias_acc += ddt
            tl.store(du_ptr + grad_offs + t, du.to(du_ptr.dtype.element_ty), mask=mask_t)
            tl.store(ddelta_ptr + grad_offs + t, ddt.to(ddelta_ptr.dtype.element_ty), mask=mask_t)

            g_next = g * a
            h_cur = h_prev
        tl.debug_barrier()  # all reads of scratch done before the next chunk overwrites it

    tl.store(dA_ptr + (pid_b * dim + offs_d[:, None]) * dstate + offs_n[None, :], dA_acc, mask=mask_dn)
    if HAS_D:
        tl.store(dD_ptr + pid_b * dim + offs_d, dD_acc, mask=mask_d)
    if HAS_BIAS:
        tl.store(dbias_ptr + pid_b * dim + offs_d, dbias_acc, mask=mask_d)
    if HAS_INIT:
        tl.store(dinit_ptr + (pid_b * dim + offs_d[:, None]) * dstate + offs_n[None, :], g_next, mask=mask_dn)


def _check_args(u, delta, A, B, C, D, z, delta_bias, initial_state):
    expect_same_device({"u": u, "delta": delta, "A": A, "B": B, "C": C, "D": D, "z": z, "delta_bias": delta_bias,
                        "initial_state": initial_state}, _selective_scan_fwd_kernel)
    expect_ndim("u", u, (3,), "(batch, dim, L)")
    batch, dim, L = u.shape
    if L < 1:
        raise ValueError(f"u must hold at least one step, got shape {tuple(u.shape)}")
    if A.is_complex():
        raise ValueError("A must be real: complex A is not supported")
    expect_ndim("A", A, (2,), "(dim, dstate)")
    dstate = A.shape[1]
    expect_shape("A", A, (dim, dstate))
    expect_shape("delta", delta, (batch, dim, L))
    if B.dim() != 3 or C.dim() != 3:
        raise ValueError("B and C must be input-dependent, (batch, dstate, L); "
                         f"got B {tuple(B.shape)}, C {tuple(C.shape)}")
    expect_shape("B", B, (batch, dstate, L))
    expect_shape("C", C, (batch, dstate, L))
    for name, t in (("D", D), ("delta_bias", delta_bias)):
        if t is not None:
            expect_shape(name, t, (dim,))
    if z is not None:
        expect_shape("z", z, (batch, dim, L))
    if initial_state is not None:
        expect_shape("initial_state", initial_state, (batch, dim, dstate))
    for name, t in (("u", u), ("delta", delta), ("A", A), ("B", B), ("C", C), ("D", D), ("z", z),
                    ("delta_bias", delta_bias), ("initial_state", initial_state)):
        if t is not None:
            expect_float(name, t)
    return batch, dim, L, dstate


def _strides(t: torch.Tensor | None, ndim: int) -> tuple[int, ...]:
    return tuple(t.stride()) if t is not None else (0,) * ndim


class SelectiveScanFn(torch.autograd.Function):

    @staticmethod
    def forward(ctx, u, delta, A, B, C, D, z, delta_bias, initial_state, delta_softplus, return_last_state,
                save_checkpoints):
        batch, dim, L, dstate = _check_args(u, delta, A, B, C, D, z, delta_bias, initial_state)
        block_d, block_n = _block_sizes(dim, dstate)
        chunk = min(CHUNK, triton.next_power_of_2(L))  # short sequences: no padded steps beyond the next power of 2
        n_ckpt = triton.cdiv(L, chunk) if save_checkpoints else 1
        out = torch.empty((batch, dim, L), dtype=u.dtype, device=u.device)
        ckpt = torch.empty((batch, dim, n_ckpt, dstate), dtype=torch.float32, device=u.device)
        grid = (batch, triton.cdiv(dim, block_d))
        _selective_scan_fwd_kernel[grid](
            u, delta, A, B, C, D, z, delta_bias, initial_state, out, ckpt,
            dim, L, dstate,
            *u.stride(), *delta.stride(), *A.stride(), *B.stride(), *C.stride(),
            *_strides(D, 1), *_strides(delta_bias, 1), *_strides(z, 3), *_strides(initial_state, 3),
            *out.stride(), *ckpt.stride(),
            DELTA_SOFTPLUS=delta_softplus, HAS_D=D is not None, HAS_Z=z is not None,
            HAS_BIAS=delta_bias is not None, HAS_INIT=initial_state is not None, SAVE_CHECKPOINTS=save_checkpoints,
            CHUNK=chunk, BLOCK_D=block_d, BLOCK_N=block_n,
        )
        ctx.chunk = chunk
        ctx.save_for_backward(u, delta, A, B, C, D, z, delta_bias, initial_state, ckpt)
        ctx.delta_softplus = delta_softplus
        # (batch, dim, dstate) float32, like mamba_ssm; a copy, so that editing it cannot corrupt the saved checkpoints
        last_state = ckpt[:, :, -1].clone() if save_checkpoints else ckpt[:, :, 0]
        if return_last_state:
            return out, last_state
        return out

    @staticmethod
    def backward(ctx, dout, *rest):
        u, delta, A, B, C, D, z, delta_bias, initial_state, ckpt = ctx.saved_tensors
        dlast = rest[0] if rest else None
        batch, dim, L = u.shape
        dstate = A.shape[1]
        block_d, block_n = _block_sizes(dim, dstate)
        n_dblocks = triton.cdiv(dim, block_d)
        dev = u.device
        f32 = torch.float32
        du = torch.empty((batch, dim, L), dtype=u.dtype, device=dev)
        ddelta = torch.empty((batch, dim, L), dtype=delta.dtype, device=dev)
        dz = torch.empty((batch, dim, L), dtype=z.dtype, device=dev) if z is not None else None
        dA = torch.empty((batch, dim, dstate), dtype=f32, device=dev)
        dB = torch.empty((batch, n_dblocks, dstate, L), dtype=f32, device=dev)
        dC = torch.empty((batch, n_dblocks, dstate, L), dtype=f32, device=dev)
        dD = torch.empty((batch, dim), dtype=f32, device=dev) if D is not None else None
        dbias = torch.empty((batch, dim), dtype=f32, device=dev) if delta_bias is not None else None
        dinit = torch.empty((batch, dim, dstate), dtype=f32, device=dev) if initial_state is not None else None
        chunk = ctx.chunk
        scratch = torch.empty((batch * n_dblocks, chunk + 1, block_d, block_n), dtype=f32, device=dev)
        _selective_scan_bwd_kernel[(batch, n_dblocks)](
            u, delta, A, B, C, D, z, delta_bias, initial_state, ckpt, dout, dlast,
            scratch, du, ddelta, dz, dA, dB, dC, dD, dbias, dinit,
            dim, L, dstate,
            *u.stride(), *delta.stride(), *A.stride(), *B.stride(), *C.stride(),
            *_strides(D, 1), *_strides(delta_bias, 1), *_strides(z, 3), *_strides(initial_state, 3),
            *ckpt.stride(), *dout.stride(), *_strides(dlast, 3),
            DELTA_SOFTPLUS=ctx.delta_softplus, HAS_D=D is not None, HAS_Z=z is not None,
            HAS_BIAS=delta_bias is not None, HAS_INIT=initial_state is not None, HAS_DLAST=dlast is not None,
            CHUNK=chunk, BLOCK_D=block_d, BLOCK_N=block_n,
        )
        return (
            du, ddelta, dA.sum(0).to(A.dtype), dB.sum(1).to(B.dtype), dC.sum(1).to(C.dtype),
            dD.sum(0).to(D.dtype) if D is not None else None,
            dz,
            dbias.sum(0).to(delta_bias.dtype) if delta_bias is not None else None,
            dinit.to(initial_state.dtype) if initial_state is not None else None,
            None, None, None,
        )


def selective_scan_fn(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False,
                      return_last_state=False, initial_state=None):
    """Selective scan; see the module docstring.

    u, delta, z: (batch, dim, L); A: (dim, dstate) real; B, C: (batch, dstate, L); D, delta_bias: (dim,).
    initial_state (batch, dim, dstate) replaces h_{-1} = 0 (an extension over mamba_ssm: it lets a long
    sequence be scanned in pieces). Returns out (batch, dim, L) in u's dtype, and with return_last_state the
    final state (batch, dim, dstate) in float32. Differentiable in every tensor argument, through both outputs.
    """
    tensors = (u, delta, A, B, C, D, z, delta_bias, initial_state)
    # Checkpoints only when a backward can follow (ctx.needs_input_grad stays True under torch.no_grad).
    save_checkpoints = torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)
    return SelectiveScanFn.apply(*tensors, delta_softplus, return_last_state, save_checkpoints)
