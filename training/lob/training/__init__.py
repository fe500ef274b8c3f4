"""Training: chronological split (`split`), cost-aware labels and loss (`labels`), the train loop
(`train`), and the run folder contract (`run`: write atomically, load a finished run).

May import `lob.contract`, `lob.io`, `lob.data`, `lob.tokenizer`, `lob.models`; never evaluation, export or serving.
"""
