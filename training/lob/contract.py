"""The served contract, defined once (stdlib only): what crosses a process boundary between training,
export, the Triton model repository, the tokenizer's python model and the client.

Every module of ``lob`` and ``model_repository/lob_tokenizer/1/model.py`` takes these values from here.
``lobclient`` must not import ``lob`` (no torch on its side): it keeps a copy in ``lobclient.contract``,
and ``tests/unit/test_contract.py`` fails when the copy, or a ``config.pbtxt``, disagrees with this module.

``HORIZONS``: the direction heads' horizons, in ticks ahead; ``CLASSES``: direction classes, in the order
of the last axis of every direction probability tensor (0 = down, 1 = flat, 2 = up).
"""
from __future__ import annotations

import re

HORIZONS = (10, 50, 100)
CLASSES = ("down", "flat", "up")
N_LEVELS = 10  # book levels per side a tick carries (shorter books are padded with price 0, size 0)

# -- tensor names -------------------------------------------------------------------------------------
# Every tensor below has a time axis after the batch axis: a request of one sequence carries T >= 1
# consecutive ticks of it (config dims start with -1), and outputs come back per tick, in order.
MAX_CHUNK = 1024  # most ticks per request: the TensorRT profiles' time axis; the client never sends more
# raw tick inputs of the lob_stream* ensembles and the tokenizer, in wire order: (B, T) or (B, T, N_LEVELS)
TS_NS, BID_PX, BID_SZ, ASK_PX, ASK_SZ = "TS_NS", "BID_PX", "BID_SZ", "ASK_PX", "ASK_SZ"
TRADE_PX, TRADE_SZ, TRADE_SIDE = "TRADE_PX", "TRADE_SZ", "TRADE_SIDE"
TICK_INPUTS = (TS_NS, BID_PX, BID_SZ, ASK_PX, ASK_SZ, TRADE_PX, TRADE_SZ, TRADE_SIDE)
# the tokenizer's outputs = the step model's inputs (the direct path sends them itself)
TOKEN, FEATURES = "TOKEN", "FEATURES"  # int64 (B, T), float32 (B, T, F)
# the step model's and the ensembles' outputs: (B, T, H, 3), (B, T, K), (B, T, K), string (B, T)
DIR_PROBS, TOPK_IDS, TOPK_PROBS, MODEL_VERSION = "DIR_PROBS", "TOPK_IDS", "TOPK_PROBS", "MODEL_VERSION"
OUTPUTS = (DIR_PROBS, TOPK_IDS, TOPK_PROBS, MODEL_VERSION)  # what a client asks for, in this order
TENSORS = (*TICK_INPUTS, TOKEN, FEATURES, *OUTPUTS)  # every tensor a served model declares, besides its states

# implicit state of the step models: one STATE_<NAME>_IN / STATE_<NAME>_OUT pair per state tensor
_STATE_NAME = re.compile(r"STATE_([A-Z0-9]+(?:_[A-Z0-9]+)*)_(IN|OUT)")


def state_names(name: str) -> tuple[str, str]:
    """(input, output) tensor names of the state ``name`` (upper case, e.g. ``"CONV_0"``)."""
    if not re.fullmatch(r"[A-Z0-9]+(?:_[A-Z0-9]+)*", name):
        raise ValueError(f"state name {name!r} must be upper-case words joined by '_'")
    return f"STATE_{name}_IN", f"STATE_{name}_OUT"


def parse_state_name(tensor: str) -> tuple[str, str] | None:
    """(NAME, "IN" | "OUT") of a state tensor name, or None when ``tensor`` is not one."""
    m = _STATE_NAME.fullmatch(tensor)
    return None if m is None else (m.group(1), m.group(2))


# -- model names (model_repository/) ------------------------------------------------------------------
TOKENIZER_MODEL = "lob_tokenizer"  # python backend: raw ticks -> TOKEN, FEATURES
STEP_MODEL = "mamba_lob_onnx"  # onnxruntime step model, implicit state (CPU and GPU profiles)
TRT_STEP_MODELS = {"fp16": "mamba_lob_trt_fp16", "bf16": "mamba_lob_trt_bf16"}  # TensorRT step models
STEP_MODELS = (STEP_MODEL, *TRT_STEP_MODELS.values())  # every model whose state Triton holds
VERSION_MODEL = "lob_model_version"  # MODEL_VERSION for the TensorRT ensembles
STREAM_MODEL = "lob_stream"  # the CPU ensemble: raw tick in, prediction out (the client's default)
STREAM_MODELS = {"cpu": STREAM_MODEL, "onnx": "lob_stream_onnx", "fp16": "lob_stream_trt_fp16",
                 "bf16": "lob_stream_trt_bf16"}
MODELS = (TOKENIZER_MODEL, *STEP_MODELS, VERSION_MODEL, *STREAM_MODELS.values())  # every model of model_repository/

# -- error prefixes of refused ticks (docs/serving.md, "Errors") ---------------------------------------
NO_STATE_PREFIX = "LOB_NO_STATE: "  # no state for this sequence here (never started, ended, reclaimed)
BAD_TICK_PREFIX = "LOB_BAD_TICK: "  # the tick failed validation; the sequence's state did not move
# in a chunk's bad-tick error: the index (0-based, within the request) of its first bad tick, e.g. "tick 7 of 64"
CHUNK_TICK = re.compile(r"tick (\d+) of (\d+)")


# -- prediction tables (lob predict, lob stream, the signal sidecar) ----------------------------------
def prob_column(cls: str, horizon: int) -> str:
    """Column of P(``cls``) ``horizon`` ticks ahead, e.g. ``p_up_h10``."""
    return f"p_{cls}_h{horizon}"


PROB_COLUMNS = tuple(prob_column(c, h) for h in HORIZONS for c in CLASSES)  # row-major over DIR_PROBS (H, 3)
