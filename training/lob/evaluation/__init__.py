"""Evaluation of a finished run on held-out data: baselines fitted on train (`baselines`, scikit-learn,
and the DeepLOB reference model, `deeplob`), probability scores (`metrics`), block-bootstrap intervals
(`bootstrap`), the cost-aware backtest (`backtest`), the test-split report (`evaluate`), walk-forward folds
(`walk_forward`), offline per-tick scoring (`predict`), evaluated runs side by side (`compare`) and
synthetic order flow sampled from a run, judged by `lob.realism`'s stylized facts (`generate`).

May import `lob.contract`, `lob.io`, `lob.data`, `lob.tokenizer`, `lob.realism`, `lob.models`, `lob.training`;
never export or serving.
"""
