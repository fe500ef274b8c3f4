"""Ticks on the wire (KServe v2 gRPC messages of tritonclient): sequence ids, shards, and the two request
builders the `Mux` takes.

- `EnsembleRequests`: the raw tick -> the ``lob_stream`` ensemble (``TICK_INPUTS``); the server tokenizes.
- `DirectRequests`: the tick is tokenized here (``lobtick.tokenizer.Tokenizer``, the
  tokenizer the server runs) and
  ``TOKEN`` + ``FEATURES`` go straight to the stateful step model (``mamba_lob_onnx``).

A builder turns a tick and its symbol's tokenizer state (that of the last tick the server ACCEPTED) into a
*payload* and the state after it (`encode`; `encode_many` for consecutive ticks of one symbol, what a chunk
sends: the payloads of the ticks up to the first refused one); the mux commits that state, and keeps the payload in the
symbol's re-warm ring, only when the server accepts the tick. `request` builds the protobuf of T >= 1
payloads of one symbol (a chunk: every tensor (1, T, ...), docs/serving.md); re-warm and END re-send ring
payloads, so a replay sends exactly what was sent the first time.

Requests are `ModelInferRequest` protobufs driven over ``ModelInfer``/``ModelStreamInfer`` directly:
tritonclient's stream callback drops the request id of an error response, so a refused tick could not be
told from another symbol's.
"""
from __future__ import annotations

import hashlib
import secrets
from pathlib import Path
from typing import Any, Optional

import numpy as np
from lobtick.ticks import Ticks
from lobtick.tokenizer import TickError, TickInput, Tokenizer
from tritonclient.grpc import InferResult, service_pb2

from . import contract as c
from .errors import BadTick
from .records import Prediction, Tick

SHARD_HEADER = "x-lob-shard"  # gRPC metadata key of a connection's shard (lower case: HTTP/2 header names are)


def sequence_id(symbol: str, namespace: str = "") -> int:
    """Stable Triton sequence id of a symbol: blake2b-64 of ``namespace/symbol``, top bit cleared, never 0.

    The same symbol and namespace always give the same id. ``stream`` draws a random namespace per call
    unless one is pinned, so two streams of one symbol never share server state by default. Ids are
    63-bit: among N sequences open on a server, P(any two collide) ~ N^2 / 2^64 (1e4 sequences: 5e-12).
    """
    digest = hashlib.blake2b(f"{namespace}/{symbol}".encode(), digest_size=8).digest()
    return (int.from_bytes(digest, "big") & (2**63 - 1)) or 1


def random_namespace() -> str:
    """A fresh namespace (64 random bits, hex) for one stream's sequence ids."""
    return secrets.token_hex(8)


def shard(symbol: str, shards: int) -> int:
    """Stable shard of ``symbol`` in ``range(shards)``: blake2b-64 of the UTF-8 symbol, modulo ``shards``.

    The same in every process, Python version and machine (no ``hash()`` salt), so every client of a
    deployment sends a symbol on the same shard for the same ``shards``.
    """
    if not isinstance(shards, int) or shards < 1:
        raise ValueError(f"shards must be a positive int, got {shards!r}")
    digest = hashlib.blake2b(symbol.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % shards


def _request(model: str, rid: str, seq_id: int, start: bool, end: bool, timeout_us: int,
             tensors: tuple[tuple[str, str, np.ndarray], ...], outputs: tuple[str, ...]
             ) -> service_pb2.ModelInferRequest:
    """A batch-of-one request of sequence ``seq_id``; ``timeout_us`` > 0: Triton rejects the request if it
    is still queued (e.g. behind exhausted candidate sequences) after that long. No ``outputs``: all."""
    request = service_pb2.ModelInferRequest(model_name=model, id=rid)
    if timeout_us > 0:
        request.parameters["timeout"].int64_param = timeout_us
    request.parameters["sequence_id"].int64_param = seq_id
    request.parameters["sequence_start"].bool_param = start
    request.parameters["sequence_end"].bool_param = end
    for name, datatype, array in tensors:
        tensor = request.inputs.add(name=name, datatype=datatype)
        tensor.shape.extend(array.shape)
        request.raw_input_contents.append(array.tobytes())
    for name in outputs:
        request.outputs.add(name=name)
    return request


class EnsembleRequests:
    """Raw ticks to the ensemble ``model`` (default ``lob_stream``), which tokenizes on the server.

    Payload (what the ring keeps, ~0.5 KB): ``(ts_ns, (42,) float64 = bid_px, bid_sz, ask_px, ask_sz (10 each),
    trade_px, trade_sz, trade_side)``. No client-side state.
    """

    def __init__(self, model: Optional[str] = None):
        self.model = model or c.STREAM_MODEL

    def encode(self, tick: Tick, state: None) -> tuple[tuple[int, np.ndarray, int], None]:
        book = np.concatenate([tick.bid_px, tick.bid_sz, tick.ask_px, tick.ask_sz, (tick.trade_px, tick.trade_sz)])
        return (int(tick.ts_ns), book, int(tick.trade_side)), None

    def encode_many(self, ticks: list[Tick], state: None) -> tuple[list, None, Optional[BadTick]]:
        return _encode_each(self, ticks, state)

    def request(self, rid: str, payloads: list, seq_id: int, start: bool, end: bool, timeout_us: int
                ) -> service_pb2.ModelInferRequest:
        x = np.stack([p[1] for p in payloads])[None]  # (1, T, 42)
        n = c.N_LEVELS
        return _request(self.model, rid, seq_id, start, end, timeout_us, (
            (c.TS_NS, "INT64", np.array([[p[0] for p in payloads]], np.int64)),  # (1, T)
            (c.BID_PX, "FP64", x[:, :, 0:n]),  # (1, T, 10)
            (c.BID_SZ, "FP64", x[:, :, n:2 * n]),
            (c.ASK_PX, "FP64", x[:, :, 2 * n:3 * n]),
            (c.ASK_SZ, "FP64", x[:, :, 3 * n:4 * n]),
            (c.TRADE_PX, "FP64", x[:, :, 4 * n]),  # (1, T)
            (c.TRADE_SZ, "FP64", x[:, :, 4 * n + 1]),
            (c.TRADE_SIDE, "INT8", np.array([[p[2] for p in payloads]], np.int8)),
        ), c.OUTPUTS)


class DirectRequests:
    """Ticks tokenized here, ``TOKEN`` + ``FEATURES`` to the step ``model`` (default ``mamba_lob_onnx``).

    ``tokenizer``: a ``lobtick.tokenizer.Tokenizer`` (``lob.tokenizer``'s) or the path of the ``tokenizer.json``
    the served model came with (``lob_tokenizer/1/tokenizer.json``). Payload (what the ring keeps, ~0.15 KB):
    ``(token, (F,) float32 features)``; state: the symbol's ``TokenizerState``. A tick the tokenizer refuses raises `BadTick` and never leaves the client. All the
    model's outputs are asked for (a TensorRT step model has no ``MODEL_VERSION``).
    """

    def __init__(self, tokenizer: Any, model: Optional[str] = None):
        self.tokenizer = tokenizer if isinstance(tokenizer, Tokenizer) else Tokenizer.load(Path(tokenizer))
        self.model = model or c.STEP_MODEL

    def encode(self, tick: Tick, state):
        try:
            token, features, new_state = self.tokenizer.step(TickInput(
                int(tick.ts_ns), tick.bid_px, tick.bid_sz, tick.ask_px, tick.ask_sz, float(tick.trade_px),
                float(tick.trade_sz), int(tick.trade_side)), state)
        except TickError as err:
            raise BadTick(f"{tick.symbol}: {err}") from None
        return (int(token), np.asarray(features, np.float32)), new_state

    def encode_many(self, ticks: list[Tick], state) -> tuple[list, Any, Optional[BadTick]]:
        """`encode` of each tick in turn, as one ``step_chunk`` (the tokenizer's batch path, bit for bit ``step``:
        ~10 µs a tick instead of ~60); a chunk with a refused tick is encoded tick by tick instead."""
        if len(ticks) > 1:
            table = Ticks(np.array([t.ts_ns for t in ticks], np.int64), *(np.stack([getattr(t, k) for t in ticks])
                          for k in ("bid_px", "bid_sz", "ask_px", "ask_sz")),  # (T,), (T, 10) each
                          np.array([t.trade_px for t in ticks], np.float64),
                          np.array([t.trade_sz for t in ticks], np.float64),
                          np.array([t.trade_side for t in ticks], np.int8), ticks[0].symbol)
            try:
                tokens, features, new_state = self.tokenizer.step_chunk(table, state)  # (T,), (T, F)
                return [(int(k), f) for k, f in zip(tokens, features)], new_state, None
            except (ValueError, OverflowError):  # a refused tick (TickError), or a value int64/int8 cannot hold:
                pass  # the tick-by-tick path finds it and says what is wrong
        return _encode_each(self, ticks, state)

    def request(self, rid: str, payloads: list, seq_id: int, start: bool, end: bool, timeout_us: int
                ) -> service_pb2.ModelInferRequest:
        return _request(self.model, rid, seq_id, start, end, timeout_us, (
            (c.TOKEN, "INT64", np.array([[p[0] for p in payloads]], np.int64)),  # (1, T)
            (c.FEATURES, "FP32", np.stack([p[1] for p in payloads])[None]),  # (1, T, F)
        ), ())


def _encode_each(builder, ticks: list[Tick], state) -> tuple[list, Any, Optional[BadTick]]:
    """(payloads of ``ticks`` up to the first one ``builder.encode`` refuses, the state after them, that tick's
    `BadTick` or None)."""
    payloads = []
    for tick in ticks:
        try:
            payload, state = builder.encode(tick, state)
        except BadTick as err:
            return payloads, state, err
        payloads.append(payload)
    return payloads, state, None


def fill_predictions(predictions: list[Prediction], response: service_pb2.ModelInferResponse) -> None:
    """Copy a step's outputs for the T ticks of a request into ``predictions`` (T of them, in order); raises on a
    response without the contract's outputs or with another number of ticks."""
    result = InferResult(response)
    dir_probs = result.as_numpy(c.DIR_PROBS)[0]  # (T, 3, 3)
    topk_ids, topk_probs = result.as_numpy(c.TOPK_IDS)[0], result.as_numpy(c.TOPK_PROBS)[0]  # (T, 5) each
    version = result.as_numpy(c.MODEL_VERSION)  # (1, T) or None
    if len(dir_probs) != len(predictions):
        raise ValueError(f"{len(dir_probs)} ticks answered for {len(predictions)} sent")
    for t, prediction in enumerate(predictions):
        prediction.dir_probs, prediction.topk_ids, prediction.topk_probs = dir_probs[t], topk_ids[t], topk_probs[t]
        prediction.model_version = None if version is None else version.reshape(-1)[t].decode()
