"""The served contract as the client sees it: a copy of ``lob.contract``'s values (the client must not
import ``lob``, which needs the server's dependencies; ``N_LEVELS`` is `lobtick.ticks`'s). ``tests/unit/test_contract.py``
fails when a value here differs from ``lob.contract``'s.
"""
import re

from lobtick.ticks import N_LEVELS as N_LEVELS  # book levels per side a tick carries (the tokenizer's)

HORIZONS = (10, 50, 100)  # rows of Prediction.dir_probs, in ticks ahead
CLASSES = ("down", "flat", "up")  # columns of Prediction.dir_probs
MAX_CHUNK = 1024  # most ticks per request (every tensor has a time axis after the batch axis)

TS_NS, BID_PX, BID_SZ, ASK_PX, ASK_SZ = "TS_NS", "BID_PX", "BID_SZ", "ASK_PX", "ASK_SZ"
TRADE_PX, TRADE_SZ, TRADE_SIDE = "TRADE_PX", "TRADE_SZ", "TRADE_SIDE"
TICK_INPUTS = (TS_NS, BID_PX, BID_SZ, ASK_PX, ASK_SZ, TRADE_PX, TRADE_SZ, TRADE_SIDE)
TOKEN, FEATURES = "TOKEN", "FEATURES"
DIR_PROBS, TOPK_IDS, TOPK_PROBS, MODEL_VERSION = "DIR_PROBS", "TOPK_IDS", "TOPK_PROBS", "MODEL_VERSION"
OUTPUTS = (DIR_PROBS, TOPK_IDS, TOPK_PROBS, MODEL_VERSION)

STEP_MODEL = "mamba_lob_onnx"  # the direct path's default model
STREAM_MODEL = "lob_stream"  # the ensemble path's default model

NO_STATE_PREFIX = "LOB_NO_STATE: "
BAD_TICK_PREFIX = "LOB_BAD_TICK: "
CHUNK_TICK = re.compile(r"tick (\d+) of (\d+)")  # in a chunk's bad-tick error: index of its first bad tick


def prob_column(cls: str, horizon: int) -> str:
    """Column of P(``cls``) ``horizon`` ticks ahead, e.g. ``p_up_h10``."""
    return f"p_{cls}_h{horizon}"


PROB_COLUMNS = tuple(prob_column(c, h) for h in HORIZONS for c in CLASSES)  # row-major over dir_probs (H, 3)
