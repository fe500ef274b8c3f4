"""What a refused tick's error message means to the client (the server's side: docs/serving.md, "Errors").

The lob python models prefix their errors with stable codes (`lobclient.contract`); Triton core's sequence
batcher has its own message for a non-START request of a sequence it does not hold. One function reads them all.
"""
from __future__ import annotations

from typing import Literal

from .contract import BAD_TICK_PREFIX, NO_STATE_PREFIX

TRITON_NO_STATE = "must specify the START flag"  # Triton core's sequence batcher: unknown sequence without START

ErrorKind = Literal["no_state", "bad_tick", "other"]


class BadTick(ValueError):
    """A tick the client-side tokenizer refused (the direct path); its message starts with ``LOB_BAD_TICK: ``."""

    def __init__(self, reason: str):
        super().__init__(f"{BAD_TICK_PREFIX}{reason}")


def classify_error(message: str) -> ErrorKind:
    """``"no_state"``: the server holds no state for the tick's sequence (resend after a START, e.g. re-warm);
    ``"bad_tick"``: the tick itself is invalid (state untouched; do not resend); ``"other"``: anything else
    (overload, pool full, a server fault). The prefixes may follow a wrapper's text (an ensemble's), so they
    are searched for, not only matched at the start."""
    if NO_STATE_PREFIX in message or TRITON_NO_STATE in message:
        return "no_state"
    if BAD_TICK_PREFIX in message:
        return "bad_tick"
    return "other"
