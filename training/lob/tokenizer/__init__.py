"""The tick tokenizer shared by training and the Triton server: one event token + F features per tick.

Pure numpy (plus `lob.data.schema`, `lob.io`); never imports torch. The python-backend model `lob_tokenizer`
imports ``from lob.tokenizer import Tokenizer, TickInput, TickError, Ticks`` unchanged (``Ticks``: a chunk's
ticks, `lob.data.schema`'s table, re-exported here). `features` holds the one
per-tick formula that both the batch (`Tokenizer.transform`) and the stream (`Tokenizer.step`) APIs run;
`tokenizer` holds `Tokenizer` (fit, versioned JSON with a content hash, load, describe a token).
"""
from lob.data.schema import Ticks
from lob.tokenizer.features import EVENT_CLASSES, FEATURE_NAMES, TokenizerState
from lob.tokenizer.tokenizer import TickError, TickInput, Tokenizer

__all__ = ["Tokenizer", "TickInput", "TickError", "Ticks", "TokenizerState", "FEATURE_NAMES", "EVENT_CLASSES"]
