"""The `lob_stream` tensor contract on the wire (KServe v2 gRPC messages of tritonclient).

Requests are built as `ModelInferRequest` protobufs and driven over `ModelStreamInfer` directly:
tritonclient's stream callback drops the request id of an error response, so a refused tick could not be
told from another symbol's.
"""
from __future__ import annotations

import hashlib
import secrets

import numpy as np
from tritonclient.grpc import InferResult, service_pb2

from .records import Prediction, Tick

OUTPUTS = ("DIR_PROBS", "TOPK_IDS", "TOPK_PROBS", "MODEL_VERSION")


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


def infer_request(model: str, request_id: str, tick: Tick, seq_id: int, start: bool, end: bool,
                  timeout_us: int = 0) -> service_pb2.ModelInferRequest:
    """One tick as a batch-of-one request of sequence ``seq_id``; ``timeout_us`` > 0: Triton rejects the
    request if it is still queued (e.g. behind exhausted candidate sequences) after that long."""
    request = service_pb2.ModelInferRequest(model_name=model, id=request_id)
    if timeout_us > 0:
        request.parameters["timeout"].int64_param = timeout_us
    request.parameters["sequence_id"].int64_param = seq_id
    request.parameters["sequence_start"].bool_param = start
    request.parameters["sequence_end"].bool_param = end
    tensors = (
        ("TS_NS", "INT64", np.array([[tick.ts_ns]], np.int64)),  # (1, 1)
        ("BID_PX", "FP64", tick.bid_px.reshape(1, -1)),  # (1, 10)
        ("BID_SZ", "FP64", tick.bid_sz.reshape(1, -1)),
        ("ASK_PX", "FP64", tick.ask_px.reshape(1, -1)),
        ("ASK_SZ", "FP64", tick.ask_sz.reshape(1, -1)),
        ("TRADE_PX", "FP64", np.array([[tick.trade_px]], np.float64)),  # (1, 1)
        ("TRADE_SZ", "FP64", np.array([[tick.trade_sz]], np.float64)),
        ("TRADE_SIDE", "INT8", np.array([[tick.trade_side]], np.int8)),
    )
    for name, datatype, array in tensors:
        tensor = request.inputs.add(name=name, datatype=datatype)
        tensor.shape.extend(array.shape)
        request.raw_input_contents.append(array.tobytes())
    for name in OUTPUTS:
        request.outputs.add(name=name)
    return request


def fill_prediction(prediction: Prediction, response: service_pb2.ModelInferResponse) -> None:
    result = InferResult(response)
    prediction.dir_probs = result.as_numpy("DIR_PROBS")[0]  # (3, 3)
    prediction.topk_ids = result.as_numpy("TOPK_IDS")[0]  # (5,)
    prediction.topk_probs = result.as_numpy("TOPK_PROBS")[0]  # (5,)
    prediction.model_version = result.as_numpy("MODEL_VERSION").reshape(-1)[0].decode()
