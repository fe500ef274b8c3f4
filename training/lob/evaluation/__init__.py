"""Evaluation of a finished run on held-out data: baselines fitted on train (`baselines`), metrics
(`metrics`), the test-split report (`evaluate`) and offline per-tick scoring (`predict`).

May import `lob.contract`, `lob.data`, `lob.tokenizer`, `lob.models`, `lob.training`; never export or serving.
"""
