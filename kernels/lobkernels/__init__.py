"""lobkernels: Triton-language kernels for Mamba-LOB (selective scan, state update, causal conv)."""
