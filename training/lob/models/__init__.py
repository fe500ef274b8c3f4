"""Sequence models over tokenized ticks (torch).

Modules: `base` (what every architecture shares: `TickConfig`/`HeadConfig` config fields, `TickModel` with
the token + feature embedding, tied next-event head, direction heads and the chunked forward); `mamba`
(Mamba-LOB: the `Mamba` mixer inside `Block`); `transformer` (sliding-window GQA decoder); `hybrid`
(Mamba and attention blocks interleaved); `registry` (architecture name -> config, model, presets;
checkpoints, parameter counts); `ops` (the scan / state-update / conv-update ops with their dispatch to
`lobkernels` on CUDA). References of the ops live once, in `lobkernels.reference`.
May import `lob.contract` and `lobkernels`; never data, training, evaluation, export or serving.
"""
