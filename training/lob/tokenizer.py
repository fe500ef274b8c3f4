"""The tick tokenizer shared by training and the Triton server: one event token + F features per tick.

The implementation is ``lobtick`` (numpy only, shipped in the client distribution, ``client/lobtick``), which the
client's direct path runs too; this module is its name inside ``lob``. The python-backend model `lob_tokenizer`
imports ``from lob.tokenizer import Tokenizer, TickInput, TickError, Ticks`` (``Ticks``: a chunk's ticks,
``lob.data.schema``'s table). ``lobtick.features`` holds the one per-tick formula that both the batch
(``Tokenizer.transform``) and the stream (``Tokenizer.step``) APIs run; ``lobtick.tokenizer`` holds ``Tokenizer``
(fit, versioned JSON with a content hash, load, describe a token).
"""
from lobtick.features import EVENT_CLASSES, FEATURE_NAMES, TokenizerState
from lobtick.ticks import Ticks
from lobtick.tokenizer import TickError, TickInput, Tokenizer

__all__ = ["Tokenizer", "TickInput", "TickError", "Ticks", "TokenizerState", "FEATURE_NAMES", "EVENT_CLASSES"]
