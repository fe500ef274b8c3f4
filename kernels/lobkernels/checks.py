"""Argument checks shared by the kernel wrappers: each raises ValueError naming the argument at fault."""

from __future__ import annotations

import torch
from triton.runtime.jit import JITFunction


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
    if first.device.type != "cuda" and isinstance(kernel, JITFunction):
        raise ValueError(
            f"{first_name} is on {first.device}: lobkernels runs on CUDA tensors, or on CPU tensors only "
            "under the Triton interpreter (set TRITON_INTERPRET=1 before importing lobkernels)"
        )
    return first.device
