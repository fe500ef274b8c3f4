"""lobclient's Mux state machine (no I/O): re-warm request order, break and reconnect bookkeeping, deadline.

The server side of the same behaviour runs in tests/integration/test_faults.py; here the answers are
KServe protobufs built by hand so each transition is checked request by request.
"""
from __future__ import annotations

import struct

import numpy as np
from tritonclient.grpc import service_pb2

import lobclient
from lobclient.mux import Mux


def tick(symbol: str, i: int) -> lobclient.Tick:
    return lobclient.Tick(symbol, 1_000 + i, [100.0], [5.0], [100.1], [3.0])


def answer(request: service_pb2.ModelInferRequest) -> service_pb2.ModelInferResponse:
    """A well-formed lob_stream answer to ``request``."""
    r = service_pb2.ModelInferResponse(model_name=request.model_name, id=request.id)
    version = b"run-abc"
    for name, dtype, raw, shape in (("DIR_PROBS", "FP32", np.full((1, 3, 3), 1 / 3, np.float32).tobytes(), (1, 3, 3)),
                                    ("TOPK_IDS", "INT64", np.arange(5, dtype=np.int64).tobytes(), (1, 5)),
                                    ("TOPK_PROBS", "FP32", np.full(5, 0.1, np.float32).tobytes(), (1, 5)),
                                    ("MODEL_VERSION", "BYTES", struct.pack("<I", len(version)) + version, (1, 1))):
        out = r.outputs.add(name=name, datatype=dtype)
        out.shape.extend(shape)
        r.raw_output_contents.append(raw)
    return r


def flags(request):
    p = request.parameters
    return p["sequence_start"].bool_param, request.inputs and int(np.frombuffer(request.raw_input_contents[0], np.int64)[0])


def test_classify_error_reads_every_marker_even_behind_a_wrapper():
    assert lobclient.classify_error("in ensemble 'lob_stream', LOB_NO_STATE: sequence 7: no state slot") == "no_state"
    assert lobclient.classify_error("inference request for sequence 7 to model 'mamba_lob_onnx' must specify the "
                                    "START flag on the first request of the sequence") == "no_state"
    assert lobclient.classify_error("LOB_BAD_TICK: sequence 7: tick ts_ns=5, field 'bid_px_1': not a finite number") == "bad_tick"
    assert lobclient.classify_error("sequence 7: state pool full (2 sequences open, pool_size 2)") == "other"


def test_no_state_answer_replays_the_ring_then_resends_the_tick_and_yields_nothing_for_the_replay():
    mux = Mux("m", timeout_s=10, namespace="ns", rewarm_ticks=3)
    mux.on_connected()
    sent = []
    for i in range(5):  # 5 accepted ticks: the ring keeps the last 3
        (request,) = mux.add(tick("A", i))
        sent.append(flags(request))
        assert mux.on_response(request.id, answer(request), None) == []
    assert sent == [(True, 1000), (False, 1001), (False, 1002), (False, 1003), (False, 1004)]
    assert [p.warm for p in mux.ready()] == [False, False, False, True, True]

    (request,) = mux.add(tick("A", 5))
    (replay,) = mux.on_response(request.id, None, "LOB_NO_STATE: sequence 1: no tokenizer state")
    order = [flags(replay)]
    while True:
        (nxt,) = mux.on_response(replay.id, answer(replay), None)
        order.append(flags(nxt))
        if flags(nxt)[1] == 1005:
            break
        replay = nxt
    assert order == [(True, 1002), (False, 1003), (False, 1004), (False, 1005)]  # START of ring[0], replay, tick
    assert mux.ready() == []  # replayed ticks produce nothing
    mux.on_response(nxt.id, answer(nxt), None)
    (p,) = mux.ready()
    assert (p.seq, p.ok, p.warm) == (5, True, True)


def test_a_break_requeues_in_flight_ticks_and_the_deadline_fails_them_saying_so():
    mux = Mux("m", timeout_s=10, namespace="ns", rewarm_ticks=8, reconnect_deadline_s=5.0, url="h:1")
    mux.on_connected()
    (a0,) = mux.add(tick("A", 0))
    mux.on_response(a0.id, answer(a0), None)
    (a1,) = mux.add(tick("A", 1))
    (b0,) = mux.add(tick("B", 0))
    mux.on_break("gRPC stream to h:1 failed: UNAVAILABLE: Socket closed", now=100.0)
    assert mux.add(tick("A", 2)) == [] and not mux.connect_due(100.0) and mux.connect_due(100.1)
    resent = mux.on_connected()  # A re-warms from its ring (START of tick 0), B starts afresh with its tick
    assert sorted(flags(r) for r in resent) == [(True, 1000), (True, 1000)]
    assert {r.parameters["sequence_id"].int64_param for r in resent} == {lobclient.sequence_id(s, "ns") for s in "AB"}
    mux.on_break("gRPC stream to h:1 failed: UNAVAILABLE: Connection refused", now=101.0)
    mux.expire(106.5)  # down since 100.0: past the 5 s deadline
    preds = mux.ready()
    assert [(p.symbol, p.seq, p.ok) for p in preds] == [("A", 0, True), ("A", 1, False), ("B", 0, False), ("A", 2, False)]
    assert all("no connection to h:1 for 5 s" in p.error and "Connection refused" in p.error for p in preds[1:])
    assert "in flight when the connection broke" in preds[1].error and "in flight" not in preds[3].error
    assert mux.add(tick("A", 3)) == [] and not mux.ready()[0].ok  # the stream is over


def test_streams_draw_different_namespaces_unless_one_is_pinned():
    assert lobclient.random_namespace() != lobclient.random_namespace()
    assert lobclient.sequence_id("AAPL", lobclient.random_namespace()) != lobclient.sequence_id("AAPL", lobclient.random_namespace())


def test_synthetic_books_pass_the_servers_validation_and_sit_on_the_tick_grid():
    from lob.data.schema import Ticks, validate
    from lobclient.synthetic import TICK_SIZE, synthetic_ticks

    ticks = list(synthetic_ticks([f"S{i}" for i in range(8)], 500, np.random.default_rng(0)))
    for s in {t.symbol for t in ticks}:
        mine = [t for t in ticks if t.symbol == s]
        arrays = [np.array([getattr(t, f) for t in mine]) for f in
                  ("ts_ns", "bid_px", "bid_sz", "ask_px", "ask_sz", "trade_px", "trade_sz", "trade_side")]
        validate(Ticks(*arrays, s, {}), f"synthetic {s}")  # raises on a crossed/locked/unordered book
        px = np.concatenate([arrays[1], arrays[3]])
        assert np.abs(px / TICK_SIZE - np.round(px / TICK_SIZE)).max() < 1e-6
        assert (arrays[3][:, 0] - arrays[1][:, 0]).min() >= TICK_SIZE - 1e-9
