"""Sequence models over tokenized ticks (torch).

`heads` is what every architecture shares (token + feature embedding, tied next-event head, direction
heads); `ops` the scan / state-update / conv-update ops with their dispatch to `lobkernels` on CUDA;
`mamba` the Mamba-LOB model. References of the ops live once, in `lobkernels.reference`.
May import `lob.contract` and `lobkernels`; never data, training, evaluation, export or serving.
"""
