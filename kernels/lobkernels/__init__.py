"""lobkernels: Triton-language kernels for Mamba-LOB, drop-in compatible with mamba_ssm / causal-conv1d.

Each op has a Triton kernel behind a checked wrapper and a plain-PyTorch reference (`*_ref`) of the same signature.
Kernels run on CUDA tensors, or on CPU tensors under the Triton interpreter (TRITON_INTERPRET=1 set before import).
"""

from lobkernels.causal_conv import causal_conv1d_update, causal_conv1d_update_ref
from lobkernels.selective_scan import selective_scan_fn, selective_scan_ref
from lobkernels.state_update import selective_state_update, selective_state_update_ref

__all__ = [
    "causal_conv1d_update",
    "causal_conv1d_update_ref",
    "selective_scan_fn",
    "selective_scan_ref",
    "selective_state_update",
    "selective_state_update_ref",
]
