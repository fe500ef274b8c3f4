"""lobkernels: Triton-language kernels for Mamba-LOB, drop-in compatible with mamba_ssm / causal-conv1d.

Each op has a Triton kernel behind a checked wrapper, one module per op: the selective scan over a sequence
(`selective_scan`), one decode step of it (`state_update`) and the causal conv1d update (`causal_conv`);
and a plain-PyTorch reference (`*_ref`, all in `lobkernels.reference`) of the same signature. The
wrappers and references share their argument checks (`checks`); `activations` holds the kernels'
element-wise functions. Kernels run on CUDA tensors, or on CPU
tensors under the Triton interpreter (TRITON_INTERPRET=1 set before the kernel's module is imported).
The kernels are imported on first use, so ``import lobkernels`` and the references need no triton.
"""
import importlib

from lobkernels.reference import causal_conv1d_update_ref, selective_scan_ref, selective_state_update_ref

_KERNEL_MODULES = {
    "selective_scan_fn": "lobkernels.selective_scan",
    "selective_state_update": "lobkernels.state_update",
    "causal_conv1d_update": "lobkernels.causal_conv",
}

__all__ = [*_KERNEL_MODULES, "causal_conv1d_update_ref", "selective_scan_ref", "selective_state_update_ref"]


def __getattr__(name: str):
    if name in _KERNEL_MODULES:
        return getattr(importlib.import_module(_KERNEL_MODULES[name]), name)
    raise AttributeError(f"module 'lobkernels' has no attribute {name!r}")
