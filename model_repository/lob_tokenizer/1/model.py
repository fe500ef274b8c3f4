"""lob_tokenizer: one raw L2 tick of one symbol -> (event token, standardised features).

Triton sequence per symbol; the TokenizerState of each sequence is kept here, keyed by correlation id
(the python backend has no implicit state). START resets it, END frees it, and a sequence idle for the
config's ``sequence_batching.max_sequence_idle_microseconds`` is forgotten. A bad tick gets an error
response naming the field and leaves that sequence's state where it was.
"""
import json
import time
from pathlib import Path

import numpy as np
import triton_python_backend_utils as pb_utils

from lob.tokenizer import TickError, TickInput, Tokenizer

# Stable error prefixes clients match on (docs/serving.md, lobclient.classify_error)
NO_STATE, BAD_TICK = "LOB_NO_STATE: ", "LOB_BAD_TICK: "


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        folder = Path(args["model_repository"]) / args["model_version"]
        self.tokenizer = Tokenizer.load(folder / "tokenizer.json")
        self.idle_timeout_s = int(config["sequence_batching"]["max_sequence_idle_microseconds"]) / 1e6
        self.states = {}  # correlation id -> TokenizerState
        self.last_seen = {}  # correlation id -> time.monotonic() of its last tick
        self.next_sweep = time.monotonic() + min(self.idle_timeout_s, 1.0)

    def execute(self, requests):
        # Requests arrive in sequence order (oldest strategy, preserve_ordering): loop, never reorder.
        responses = []
        for request in requests:
            try:
                responses.append(self._step(request))
            except Exception as err:  # one broken request must not fail the batch it came in
                responses.append(_error(f"lob_tokenizer: {type(err).__name__}: {err}"))
        self._forget_idle()
        return responses

    def _step(self, request):
        x = {t.name(): t.as_numpy() for t in request.inputs()}  # one pass, not a lookup per name
        corrid, start, end = int(x["CORRID"].flat[0]), bool(x["START"].flat[0]), bool(x["END"].flat[0])
        tick = TickInput(ts_ns=int(x["TS_NS"][0, 0]), bid_px=x["BID_PX"][0], bid_sz=x["BID_SZ"][0],
                         ask_px=x["ASK_PX"][0], ask_sz=x["ASK_SZ"][0], trade_px=float(x["TRADE_PX"][0, 0]),
                         trade_sz=float(x["TRADE_SZ"][0, 0]), trade_side=int(x["TRADE_SIDE"][0, 0]))
        state = self.tokenizer.init_state() if start else self.states.get(corrid)
        if state is None:
            return _error(f"{NO_STATE}sequence {corrid}: no tokenizer state (never started, ended, or idle longer than "
                          f"{self.idle_timeout_s:g} s); send this tick with the START flag")
        try:
            token, features, new_state = self.tokenizer.step(tick, state)
        except TickError as err:
            if start or end:  # a refused START opens no sequence: its next tick must START again
                self._forget(corrid)
            return _error(f"{BAD_TICK}sequence {corrid}: {err}")  # err names the tick and the field
        if end:
            self._forget(corrid)
        else:
            self.states[corrid] = new_state
            self.last_seen[corrid] = time.monotonic()
        return pb_utils.InferenceResponse(output_tensors=[
            pb_utils.Tensor("TOKEN", np.array([[token]], dtype=np.int64)),  # (1, 1)
            pb_utils.Tensor("FEATURES", features.astype(np.float32).reshape(1, -1)),  # (1, F)
        ])

    def _forget(self, corrid):
        self.states.pop(corrid, None)
        self.last_seen.pop(corrid, None)

    def _forget_idle(self):
        now = time.monotonic()
        if now < self.next_sweep:
            return
        self.next_sweep = now + min(self.idle_timeout_s, 1.0)
        for corrid in [c for c, t in self.last_seen.items() if now - t > self.idle_timeout_s]:
            self._forget(corrid)


def _error(message):
    return pb_utils.InferenceResponse(output_tensors=[], error=pb_utils.TritonError(message))
