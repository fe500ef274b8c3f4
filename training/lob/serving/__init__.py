"""Serving glue: the tritonserver launcher (`launcher`) and the replay client (`replay`, over `lobclient`).

May import `lob.contract`, `lob.io`, `lob.data`, `lob.tokenizer`; never models, training, evaluation or export
(a serving host installs no torch).
"""
