"""How much a dataset looks like a market: stylized facts of two datasets side by side and their distances
(`report`, `lob realism`), and fitting a simulator instrument to a real dataset by matching them
(`calibrate`, `lob calibrate`). `lobbench` holds LOB-Bench's score set (L1 and W1 per score, a real-vs-real
floor; 21 unconditional and 3 conditional scores) that `lob realism` also prints. `stats` holds the fact primitives (Pearson kurtosis, ACF and their NaN
rule, total variation, W1) that `lob generate` reports with too.

May import `lob.contract`, `lob.io`, `lob.data` and `lob.tokenizer` (its event classification), and
`lob.training.split` alone (numpy only: the chronological parts `DIR:SYMBOL@PART` reads); never torch.
"""
