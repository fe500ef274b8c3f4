"""Training. Modules: `config` (`TrainConfig`: every training argument and its default), `split`
(chronological train/val/test split), `labels` (cost-aware labels and loss), `segments` (a split part
tokenized and labelled), `optim` (weight-decay groups), `readout` (the direction readout as a logistic regression: where
training starts it, how a probe may refit it), `markov` (the Markov-1 next-event baseline training's checkpoint rule
and evaluation compare against), `train` (the stages and the loop), `run` (the run
folder: its one writer `write_run`, `untrained_run`, `load_run`).

May import `lob.contract`, `lob.io`, `lob.data`, `lob.tokenizer`, `lob.models`; never evaluation, export or serving.
"""
