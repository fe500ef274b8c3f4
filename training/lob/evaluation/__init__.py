"""Evaluation of a finished run on held-out data: baselines fitted on train (`baselines`, scikit-learn),
probability scores (`metrics`), block-bootstrap intervals (`bootstrap`), the cost-aware backtest
(`backtest`), the test-split report (`evaluate`), walk-forward folds (`walk_forward`) and offline per-tick
scoring (`predict`).

May import `lob.contract`, `lob.io`, `lob.data`, `lob.tokenizer`, `lob.models`, `lob.training`; never export or serving.
"""
