"""Training: chronological split (`split`), one symbol's tokenized and labelled part (`segments`),
cost-aware labels and loss (`labels`), AdamW parameter groups (`optim`), the train loop (`train`), and the
run folder contract (`run`: write atomically, load a finished run).

May import `lob.contract`, `lob.io`, `lob.data`, `lob.tokenizer`, `lob.models`; never evaluation, export or serving.
"""
