"""The direct path: tokenize on the client, send ``TOKEN`` + ``FEATURES`` straight to the stateful step model.

``stream(ticks, url, tokenizer=..., tokenize="client")`` ends here. The client holds each symbol's
``TokenizerState`` (``lob.tokenizer``, the one implementation training and the server use: numpy only, but
it needs the ``mamba-lob`` package installed beside ``lobclient``) and the step model (``mamba_lob_onnx``, or
a TensorRT step of a GPU profile) keeps the conv/SSM state by Triton implicit state. No python model runs
per tick on the server. Predictions equal the ensemble's. A tick the tokenizer refuses never leaves the
client (``error`` starts with ``LOB_BAD_TICK: ``; the symbol's state is unchanged).

Transport: unary gRPC calls (``tritonclient`` ``async_infer``), at most one in flight per symbol and
``window`` in all; unary gRPC is the transport that survived 256 concurrent sequences on this server build
(docs/serving.md, "Crash safety").
"""
from __future__ import annotations

import threading
import time
from collections import deque
from pathlib import Path
from typing import Iterable, Iterator, Literal

import numpy as np

from .protocol import sequence_id
from .records import Prediction, Tick, TickFailed

BAD_TICK = "LOB_BAD_TICK: "


def stream_direct(ticks: Iterable[Tick], tokenizer, url: str = "localhost:8001", model: str = "mamba_lob_onnx",
                  window: int = 256, timeout_s: float = 10.0, errors: Literal["record", "raise"] = "record",
                  namespace: str = "") -> Iterator[Prediction]:
    """Yield one `Prediction` per tick, in input order; ``tokenizer`` is a ``lob.tokenizer.Tokenizer`` or
    the path of the ``tokenizer.json`` the server's model came with (``lob_tokenizer/1/tokenizer.json``)."""
    import tritonclient.grpc as grpcclient
    from lob.tokenizer import TickError, TickInput, Tokenizer

    if not isinstance(tokenizer, Tokenizer):
        tokenizer = Tokenizer.load(Path(tokenizer))
    client = grpcclient.InferenceServerClient(url)
    states: dict[str, object] = {}  # symbol -> TokenizerState of its last accepted tick
    last: dict[str, tuple] = {}  # symbol -> (token, features) of its last accepted tick (for the closing END)
    counts: dict[str, int] = {}
    busy: dict[str, threading.Event] = {}  # symbol -> set when its request in flight has answered
    pending: deque = deque()  # (prediction, done event) in input order
    slots = threading.Semaphore(window)

    def send(prediction: Prediction, token: int, features: np.ndarray, start: bool, end: bool,
             done: threading.Event) -> None:
        inputs = [grpcclient.InferInput("TOKEN", [1, 1], "INT64"),
                  grpcclient.InferInput("FEATURES", [1, features.shape[0]], "FP32")]
        inputs[0].set_data_from_numpy(np.array([[token]], np.int64))
        inputs[1].set_data_from_numpy(features[None].astype(np.float32))
        sent = time.monotonic()

        def answered(result, error):
            if error is not None:
                prediction.error = str(error)
            else:
                prediction.dir_probs = result.as_numpy("DIR_PROBS")[0]  # (3, 3)
                prediction.topk_ids = result.as_numpy("TOPK_IDS")[0]  # (5,)
                prediction.topk_probs = result.as_numpy("TOPK_PROBS")[0]  # (5,)
                version = result.as_numpy("MODEL_VERSION")
                prediction.model_version = None if version is None else version.reshape(-1)[0].decode()
            prediction.latency_s = time.monotonic() - sent
            done.set()
            slots.release()

        slots.acquire()
        client.async_infer(model, inputs, answered, sequence_id=sequence_id(prediction.symbol, namespace),
                           sequence_start=start, sequence_end=end, client_timeout=timeout_s)

    def drain(block: bool) -> Iterator[Prediction]:
        while pending and (block or pending[0][1].is_set()):
            prediction, done = pending.popleft()
            if not done.wait(timeout_s + 5.0):
                prediction.error = f"no answer within {timeout_s:g} s"
            if prediction.error is not None and errors == "raise":
                raise TickFailed(prediction)
            yield prediction

    try:
        for tick in ticks:
            seq = counts.get(tick.symbol, 0)
            counts[tick.symbol] = seq + 1
            prediction = Prediction(tick.symbol, tick.ts_ns, seq)
            done = threading.Event()
            pending.append((prediction, done))
            state = states.get(tick.symbol)
            try:
                token, features, new_state = tokenizer.step(TickInput(
                    int(tick.ts_ns), tick.bid_px, tick.bid_sz, tick.ask_px, tick.ask_sz, float(tick.trade_px),
                    float(tick.trade_sz), int(tick.trade_side)), state)
            except TickError as err:
                prediction.error = f"{BAD_TICK}{err}"
                done.set()
            else:
                previous = busy.get(tick.symbol)
                if previous is not None:
                    previous.wait(timeout_s + 5.0)  # one request in flight per symbol: its state is sequential
                states[tick.symbol], last[tick.symbol], busy[tick.symbol] = new_state, (token, features), done
                send(prediction, token, features, state is None, False, done)
            yield from drain(block=False)
        yield from drain(block=True)
    finally:
        for symbol, (token, features) in last.items():  # close every open sequence (answers dropped)
            busy[symbol].wait(timeout_s + 5.0)
            closing = threading.Event()
            send(Prediction(symbol, 0, -1), token, features, False, True, closing)
            closing.wait(timeout_s + 5.0)
        client.close()
