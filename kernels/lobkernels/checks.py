"""Argument checks shared by the kernel wrappers and the references: each raises ValueError naming the argument
at fault. Torch only (triton is imported only to tell an interpreted kernel from a compiled one)."""

from __future__ import annotations

import torch


def expect_shape(name: str, t: torch.Tensor, shape: tuple[int, ...]) -> None:
    if tuple(t.shape) != tuple(shape):
        raise ValueError(f"{name} must have shape {tuple(shape)}, got {tuple(t.shape)}")


def expect_ndim(name: str, t: torch.Tensor, ndims: tuple[int, ...], layout: str) -> None:
    if t.dim() not in ndims:
        raise ValueError(f"{name} must be {layout}, got shape {tuple(t.shape)}")


def expect_float(name: str, t: torch.Tensor) -> None:
    if t.dtype not in (torch.float32, torch.float16, torch.bfloat16):
        raise ValueError(f"{name} must be float32, float16 or bfloat16, got {t.dtype}")


def expect_same_device(tensors: dict[str, torch.Tensor | None], kernel) -> torch.device:
    """Return the common device; CPU tensors are only accepted when `kernel` was defined under the interpreter."""
    given = {name: t for name, t in tensors.items() if t is not None}
    first_name, first = next(iter(given.items()))
    for name, t in given.items():
        if t.device != first.device:
            raise ValueError(f"{name} is on {t.device} but {first_name} is on {first.device}")
    from triton.runtime.jit import JITFunction

    if first.device.type != "cuda" and isinstance(kernel, JITFunction):
        raise ValueError(
            f"{first_name} is on {first.device}: lobkernels runs on CUDA tensors, or on CPU tensors only "
            "under the Triton interpreter (set TRITON_INTERPRET=1 before importing lobkernels)"
        )
    return first.device


def check_conv_args(x, conv_state, weight, bias, activation):
    if activation not in (None, "silu", "swish"):
        raise ValueError(f"activation must be None, 'silu' or 'swish', got {activation!r}")
    expect_ndim("x", x, (2, 3), "(batch, dim) or (batch, dim, seqlen)")
    expect_ndim("weight", weight, (2,), "(dim, width)")
    batch, dim = x.shape[:2]
    width = weight.shape[1]
    expect_shape("weight", weight, (dim, width))
    expect_ndim("conv_state", conv_state, (3,), "(batch, dim, state_len)")
    state_len = conv_state.shape[2]
    expect_shape("conv_state", conv_state, (batch, dim, state_len))
    if state_len < width - 1:
        raise ValueError(f"conv_state holds {state_len} steps but a width-{width} conv needs at least {width - 1}")
    if bias is not None:
        expect_shape("bias", bias, (dim,))
    for name, t in (("x", x), ("conv_state", conv_state), ("weight", weight), ("bias", bias)):
        if t is not None:
            expect_float(name, t)


def as_heads(state, x, dt, A, B, C, D, z, dt_bias):
    """Validate either form and return 4-D/3-D multi-head views (the plain form gets nheads = ngroups = 1)."""
    expect_ndim("state", state, (3, 4), "(batch, dim, dstate) or (batch, nheads, dim, dstate)")
    if state.dim() == 3:
        _, dim, dstate = state.shape
        expect_ndim("x", x, (2,), "(batch, dim) for a 3-D state")
        batch = x.shape[0]
        expect_shape("x", x, (batch, dim))
        expect_shape("dt", dt, (batch, dim))
        expect_shape("A", A, (dim, dstate))
        expect_shape("B", B, (batch, dstate))
        expect_shape("C", C, (batch, dstate))
        for name, t in (("D", D), ("dt_bias", dt_bias)):
            if t is not None:
                expect_shape(name, t, (dim,))
        if z is not None:
            expect_shape("z", z, (batch, dim))
        views = [state.unsqueeze(1), x.unsqueeze(1), dt.unsqueeze(1), A.unsqueeze(0), B.unsqueeze(1),
                 C.unsqueeze(1)]
        views += [t.unsqueeze(0) if t is not None else None for t in (D, dt_bias)]
        views += [z.unsqueeze(1) if z is not None else None]
        return views
    _, nheads, dim, dstate = state.shape
    expect_ndim("x", x, (3,), "(batch, nheads, dim) for a 4-D state")
    batch = x.shape[0]
    expect_shape("x", x, (batch, nheads, dim))
    expect_shape("dt", dt, (batch, nheads, dim))
    expect_shape("A", A, (nheads, dim, dstate))
    expect_ndim("B", B, (3,), "(batch, ngroups, dstate)")
    ngroups = B.shape[1]
    if ngroups == 0 or nheads % ngroups != 0:
        raise ValueError(f"nheads ({nheads}) must be a multiple of ngroups (B.shape[1] = {ngroups})")
    expect_shape("B", B, (batch, ngroups, dstate))
    expect_shape("C", C, (batch, ngroups, dstate))
    for name, t in (("D", D), ("dt_bias", dt_bias)):
        if t is not None:
            expect_shape(name, t, (nheads, dim))
    if z is not None:
        expect_shape("z", z, (batch, nheads, dim))
    return [state, x, dt, A, B, C, D, dt_bias, z]


def check_state_indices(state_batch_indices, batch: int, state_rows: int) -> None:
    if state_batch_indices is None:
        if state_rows != batch:
            raise ValueError(f"state has {state_rows} rows but x has batch {batch}; "
                             "pass state_batch_indices to address a larger state pool")
        return
    expect_shape("state_batch_indices", state_batch_indices, (batch,))
    if state_batch_indices.dtype not in (torch.int32, torch.int64):
        raise ValueError(f"state_batch_indices must be int32 or int64, got {state_batch_indices.dtype}")
