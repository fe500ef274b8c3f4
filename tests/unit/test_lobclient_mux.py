"""lobclient's Mux state machine (no I/O): re-warm request order, break and reconnect bookkeeping, deadline.

The server side of the same behaviour runs in tests/integration/test_faults.py; here the answers are
KServe protobufs built by hand so each transition is checked request by request.
"""
from __future__ import annotations

import struct

import numpy as np
import pytest
from tritonclient.grpc import service_pb2

import lobclient
from lobclient.mux import Mux
from lobclient.protocol import EnsembleRequests
from lobtick.ticks import Ticks, validate  # what lob.data.schema validates with on the server
from lobtick.tokenizer import TickInput, Tokenizer  # lob.tokenizer's


def tick(symbol: str, i: int) -> lobclient.Tick:
    return lobclient.Tick(symbol, 1_000 + i, [100.0], [5.0], [100.1], [3.0])


def answer(request: service_pb2.ModelInferRequest) -> service_pb2.ModelInferResponse:
    """A well-formed lob_stream answer to ``request`` (T ticks: its first input is (1, T, ...)); tick t's
    TOPK_IDS[0] is t, so each prediction shows which tick of the chunk it came from."""
    r = service_pb2.ModelInferResponse(model_name=request.model_name, id=request.id)
    version = b"run-abc"
    n = request.inputs[0].shape[1]
    ids = np.arange(5, dtype=np.int64)[None] + np.arange(n)[:, None]  # (T, 5)
    for name, dtype, raw, shape in (("DIR_PROBS", "FP32", np.full((n, 3, 3), 1 / 3, np.float32).tobytes(), (1, n, 3, 3)),
                                    ("TOPK_IDS", "INT64", ids.tobytes(), (1, n, 5)),
                                    ("TOPK_PROBS", "FP32", np.full((n, 5), 0.1, np.float32).tobytes(), (1, n, 5)),
                                    ("MODEL_VERSION", "BYTES", (struct.pack("<I", len(version)) + version) * n, (1, n))):
        out = r.outputs.add(name=name, datatype=dtype)
        out.shape.extend(shape)
        r.raw_output_contents.append(raw)
    return r


def flags(request):
    """(START, ts_ns of the first tick) of an ensemble request."""
    return request.parameters["sequence_start"].bool_param, int(times(request)[0])


def times(request) -> list[int]:
    """ts_ns of the T ticks of an ensemble request (TS_NS (1, T))."""
    assert request.inputs[0].name == "TS_NS" and list(request.inputs[0].shape)[0] == 1
    return np.frombuffer(request.raw_input_contents[0], np.int64).tolist()


def test_classify_error_reads_every_marker_even_behind_a_wrapper():
    assert lobclient.classify_error("in ensemble 'lob_stream', LOB_NO_STATE: sequence 7: no state slot") == "no_state"
    assert lobclient.classify_error("inference request for sequence 7 to model 'mamba_lob_onnx' must specify the "
                                    "START flag on the first request of the sequence") == "no_state"
    assert lobclient.classify_error("LOB_BAD_TICK: sequence 7: tick ts_ns=5, field 'bid_px_1': not a finite number") == "bad_tick"
    assert lobclient.classify_error("sequence 7: state pool full (2 sequences open, pool_size 2)") == "other"


def test_no_state_answer_replays_the_ring_in_chunks_then_resends_the_tick_and_yields_nothing_for_the_replay():
    mux = Mux(EnsembleRequests("m"), timeout_s=10, namespace="ns",
              recovery=lobclient.Recovery(rewarm_ticks=3, rewarm_chunk=2))
    mux.on_connected(0)
    sent = []
    for i in range(5):  # 5 accepted ticks: the ring keeps the last 3
        ((_, request),) = mux.add(tick("A", i))
        sent.append(flags(request))
        assert mux.on_response(request.id, answer(request), None) == []
    assert sent == [(True, 1000), (False, 1001), (False, 1002), (False, 1003), (False, 1004)]
    assert [p.warm for p in mux.ready()] == [False, False, False, True, True]

    ((_, request),) = mux.add(tick("A", 5))
    ((_, replay),) = mux.on_response(request.id, None, "LOB_NO_STATE: sequence 1: no tokenizer state")
    order = [(flags(replay)[0], times(replay))]
    while True:
        ((_, nxt),) = mux.on_response(replay.id, answer(replay), None)
        order.append((flags(nxt)[0], times(nxt)))
        if flags(nxt)[1] == 1005:
            break
        replay = nxt
    # START with the ring's oldest 2 ticks, the rest of the ring, then the tick
    assert order == [(True, [1002, 1003]), (False, [1004]), (False, [1005])]
    assert mux.ready() == []  # replayed ticks produce nothing
    mux.on_response(nxt.id, answer(nxt), None)
    (p,) = mux.ready()
    assert (p.seq, p.ok, p.warm) == (5, True, True)


def test_a_break_requeues_in_flight_ticks_and_the_deadline_fails_them_saying_so():
    mux = Mux(EnsembleRequests("m"), timeout_s=10, namespace="ns", url="h:1",
              recovery=lobclient.Recovery(rewarm_ticks=8, reconnect_deadline_s=5.0))
    mux.on_connected(0)
    ((_, a0),) = mux.add(tick("A", 0))
    mux.on_response(a0.id, answer(a0), None)
    mux.add(tick("A", 1))
    mux.add(tick("B", 0))
    mux.on_break(0, "gRPC stream to h:1 failed: UNAVAILABLE: Socket closed", now=100.0)
    assert mux.add(tick("A", 2)) == [] and mux.connect_due(100.0) == [] and mux.connect_due(100.1) == [0]
    resent = [r for _, r in mux.on_connected(0)]  # A re-warms from its ring (START of tick 0), B starts afresh
    assert sorted(flags(r) for r in resent) == [(True, 1000), (True, 1000)]
    assert {r.parameters["sequence_id"].int64_param for r in resent} == {lobclient.sequence_id(s, "ns") for s in "AB"}
    mux.on_break(0, "gRPC stream to h:1 failed: UNAVAILABLE: Connection refused", now=101.0)
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


def _tokenizer_and_ticks(symbol: str, n: int):
    """A tokenizer fitted on synthetic books, and n more of them for ``symbol``."""
    from lobclient.synthetic import synthetic_ticks

    ticks = list(synthetic_ticks([symbol], 200 + n, np.random.default_rng(1)))
    fields = ("ts_ns", "bid_px", "bid_sz", "ask_px", "ask_sz", "trade_px", "trade_sz", "trade_side")
    fit = Ticks(*[np.array([getattr(t, f) for t in ticks[:200]]) for f in fields], symbol, {})
    return Tokenizer.fit([fit]), ticks[200:]


def sent_inputs(request):
    """(TOKEN, FEATURES (F,)) of a direct request of one tick."""
    assert [t.name for t in request.inputs] == ["TOKEN", "FEATURES"] and list(request.inputs[0].shape) == [1, 1]
    return (int(np.frombuffer(request.raw_input_contents[0], np.int64)[0]),
            np.frombuffer(request.raw_input_contents[1], np.float32))


def test_direct_path_tokenizes_from_the_last_accepted_state_and_never_sends_a_refused_tick():
    from lobclient.protocol import DirectRequests

    tokenizer, (t0, t1, t2) = _tokenizer_and_ticks("A", 3)

    def step(t, state):
        return tokenizer.step(TickInput(t.ts_ns, t.bid_px, t.bid_sz, t.ask_px, t.ask_sz, t.trade_px, t.trade_sz,
                                        t.trade_side), state)

    tok0, f0, s0 = step(t0, None)
    mux = Mux(DirectRequests(tokenizer, "step"), timeout_s=10, namespace="ns")
    mux.on_connected(0)
    ((_, r0),) = mux.add(t0)
    assert r0.model_name == "step" and r0.parameters["sequence_start"].bool_param
    assert sent_inputs(r0)[0] == tok0 and np.array_equal(sent_inputs(r0)[1], f0)
    mux.on_response(r0.id, answer(r0), None)

    bad = lobclient.Tick("A", t1.ts_ns, np.full(10, np.nan), t1.bid_sz, t1.ask_px, t1.ask_sz)
    assert mux.add(bad) == []  # refused here: nothing sent
    ((_, r1),) = mux.add(t1)  # tokenized from the state after t0, as if the bad tick never came
    tok1, f1, _ = step(t1, s0)
    assert sent_inputs(r1)[0] == tok1 and np.array_equal(sent_inputs(r1)[1], f1)
    mux.on_response(r1.id, None, "some server fault")  # refused: its tokenizer state is not committed

    ((_, replay),) = mux.add(t2)  # the fault left the server state unknown: re-warm replays t0's inputs
    assert replay.parameters["sequence_start"].bool_param
    assert sent_inputs(replay)[0] == tok0 and np.array_equal(sent_inputs(replay)[1], f0)
    ((_, r2),) = mux.on_response(replay.id, answer(replay), None)
    tok2, f2, _ = step(t2, s0)  # from the state after t0: t1 was never accepted
    assert not r2.parameters["sequence_start"].bool_param
    assert sent_inputs(r2)[0] == tok2 and np.array_equal(sent_inputs(r2)[1], f2)
    mux.on_response(r2.id, answer(r2), None)
    preds = mux.ready()
    assert [(p.seq, p.ok) for p in preds] == [(0, True), (1, False), (2, False), (3, True)]
    assert preds[1].error.startswith("LOB_BAD_TICK: A: ") and "bid_px_1" in preds[1].error
    assert preds[2].error == "some server fault"


def test_shards_each_symbol_keeps_one_link_and_a_break_touches_only_its_links_symbols():
    symbols = [f"S{i}" for i in range(40)]
    mux = Mux(EnsembleRequests("m"), timeout_s=10, namespace="ns", shards=4, url="proxy:1",
              recovery=lobclient.Recovery(reconnect_deadline_s=5.0))
    for link in mux.connect_due(0.0):
        mux.on_connected(link)
    links = {}
    for s in symbols:
        ((link, _),) = mux.add(tick(s, 0))
        links[s] = link
    assert links == {s: lobclient.shard(s, 4) for s in symbols} and set(links.values()) == {0, 1, 2, 3}
    mux.on_break(2, "UNAVAILABLE: reset", now=100.0)
    assert mux.connect_due(100.1) == [2]
    mux.expire(105.5)  # link 2 down past its deadline: only its symbols' ticks fail
    on_2 = [s for s in symbols if links[s] == 2]
    failed = [p for p in mux.order if p.done]
    assert {p.prediction.symbol for p in failed} == set(on_2)
    assert all("no connection to proxy:1 (shard 2) for 5 s" in p.prediction.error for p in failed)
    assert len(mux.in_flight) == len(symbols) - len(on_2)  # the other links' ticks are still in flight


def test_options_refuse_bad_values_naming_the_field():
    for make, field in ((lambda: lobclient.Transport(kind="grpc"), "Transport.kind"),
                        (lambda: lobclient.Transport(window=0), "Transport.window"),
                        (lambda: lobclient.Transport(shards=0), "Transport.shards"),
                        (lambda: lobclient.Recovery(rewarm_ticks=0), "Recovery.rewarm_ticks"),
                        (lambda: lobclient.Recovery(rewarm_chunk=0), "Recovery.rewarm_chunk"),
                        (lambda: Mux(EnsembleRequests("m"), 1.0, chunk=lobclient.contract.MAX_CHUNK + 1), "chunk"),
                        (lambda: lobclient.Recovery(backoff_s=(2.0, 1.0)), "Recovery.backoff_s"),
                        (lambda: lobclient.TLS(private_key=b"key"), "certificate_chain")):
        with pytest.raises(ValueError, match=field):
            make()


def test_waiting_ticks_go_as_one_chunk_and_a_refused_chunk_is_resent_one_tick_per_request():
    mux = Mux(EnsembleRequests("m"), timeout_s=10, namespace="ns", chunk=4)
    mux.on_connected(0)
    ((_, first),) = mux.add(tick("A", 0))
    for i in range(1, 7):  # wait behind the tick in flight
        assert mux.add(tick("A", i)) == []
    ((_, chunk),) = mux.on_response(first.id, answer(first), None)
    assert times(chunk) == [1001, 1002, 1003, 1004] and not flags(chunk)[0]  # at most `chunk` ticks
    assert [p.topk_ids[0] for p in mux.ready()] == [0]
    ((_, rest),) = mux.on_response(chunk.id, answer(chunk), None)
    assert times(rest) == [1005, 1006]
    preds = mux.ready()
    assert [(p.seq, p.topk_ids[0], p.model_version) for p in preds] == [(i, i - 1, "run-abc") for i in range(1, 5)]

    # the server refuses the whole chunk for its tick 1 (atomic): each tick is sent again on its own
    singles = mux.on_response(rest.id, None, "LOB_BAD_TICK: sequence 9: tick 1 of 2, ts_ns=1006, field 'bid_px_1': x")
    for i in range(7, 9):
        assert mux.add(tick("A", i)) == []  # behind the re-sent ticks
    got = []
    while singles:
        ((_, r),) = singles
        got.append(times(r))
        bad = times(r) == [1006]
        singles = mux.on_response(r.id, None if bad else answer(r), "LOB_BAD_TICK: field 'bid_px_1'" if bad else None)
    assert got == [[1005], [1006], [1007, 1008]]  # one by one, then chunks again
    preds = mux.ready()
    assert [(p.seq, p.ok) for p in preds] == [(5, True), (6, False), (7, True), (8, True)]
    assert "bid_px_1" in preds[1].error


def test_a_tick_keeps_its_own_book_padded_to_ten_levels():
    """A feed handler may reuse one buffer for every tick: a Tick already sent (and kept in the re-warm ring)
    must not change when the buffer does. Short books are padded with empty levels; more than 10 is refused."""
    buf = np.array([100.0, 99.9, 99.8])
    t = lobclient.Tick("A", 1, buf, buf, buf + 0.5, buf)
    buf[0] = -1.0
    assert t.bid_px.tolist() == [100.0, 99.9, 99.8] + [0.0] * 7 and t.bid_px.dtype == np.float64
    full = np.arange(1.0, 11.0)
    u = lobclient.Tick("A", 2, full, full, full, full)
    full[0] = -1.0
    assert u.ask_sz[0] == 1.0 and u.ask_sz.shape == (10,)
    with pytest.raises(ValueError, match="bid_px has 11 levels, at most 10"):
        lobclient.Tick("A", 3, np.ones(11), full, full, full)


def test_direct_path_chunk_tokenizes_as_tick_by_tick_and_stops_before_a_refused_tick():
    """A chunk on the direct path is tokenized at once (`encode_many`: the tokenizer's batch path), bit for bit the
    tokens and features of one ``step`` per tick; a refused tick inside the waiting ticks ends the chunk before it,
    gets its own error, never leaves the client, and the ticks after it are tokenized from the state before it."""
    from lobclient.protocol import DirectRequests

    tokenizer, ticks = _tokenizer_and_ticks("A", 7)
    bad = lobclient.Tick("A", ticks[3].ts_ns, ticks[3].bid_px, ticks[3].bid_sz, ticks[3].ask_px,
                         np.full(10, -1.0))  # negative sizes
    feed = [*ticks[:3], bad, *ticks[3:]]  # 8 ticks, the 4th refused
    want, state = [], None  # the tokens and features of the good ticks, one step at a time
    for t in ticks:
        token, features, state = tokenizer.step(TickInput(t.ts_ns, t.bid_px, t.bid_sz, t.ask_px, t.ask_sz,
                                                          t.trade_px, t.trade_sz, t.trade_side), state)
        want.append((token, features))
    assert len({w[0] for w in want}) > 1  # the ticks differ: the comparison is not vacuous

    mux = Mux(DirectRequests(tokenizer, "step"), timeout_s=10, namespace="ns", chunk=8)
    mux.on_connected(0)
    ((_, first),) = mux.add(feed[0])
    for t in feed[1:]:
        assert mux.add(t) == []  # waiting behind the tick in flight

    def sent(request):  # (TOKEN (T,), FEATURES (T, F)) of a direct request
        tokens = np.frombuffer(request.raw_input_contents[0], np.int64)
        return tokens, np.frombuffer(request.raw_input_contents[1], np.float32).reshape(len(tokens), -1)

    ((_, chunk),) = mux.on_response(first.id, answer(first), None)
    tokens, features = sent(chunk)
    assert tokens.tolist() == [w[0] for w in want[1:3]]  # ticks 1-2: the chunk ends before the refused tick
    assert np.array_equal(features, np.stack([w[1] for w in want[1:3]]))
    ((_, rest),) = mux.on_response(chunk.id, answer(chunk), None)
    tokens, features = sent(rest)
    assert tokens.tolist() == [w[0] for w in want[3:]]  # after it: from the state before it
    assert np.array_equal(features, np.stack([w[1] for w in want[3:]]))
    mux.on_response(rest.id, answer(rest), None)
    preds = mux.ready()
    assert [(p.seq, p.ok) for p in preds] == [(i, i != 3) for i in range(8)]
    assert preds[3].error.startswith("LOB_BAD_TICK: A: ") and "ask_sz" in preds[3].error
