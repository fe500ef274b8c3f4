"""lob.tokenizer: stream == batch, fitted-on-train buckets, artifact round trip, bad ticks, known events."""
from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pytest

from lob.data.schema import N_LEVELS, TickDataError, Ticks, validate
from lob.tokenizer import TickError, TickInput, Tokenizer

TICK = 0.01
T0 = 1_704_186_000_000_000_000  # 2024-01-02 09:00 UTC, ns


def random_walk(n: int, levels: int, seed: int, size_scale: float = 1.0) -> Ticks:
    """A valid book on a 1-cent grid (contiguous levels) driven by random adds, cancels, trades and
    inside-spread quotes; ``levels`` non-empty levels per side, the rest empty."""
    rng = np.random.default_rng(seed)
    bid, spread = 10_000, 1  # best bid and spread, in ticks
    bq = rng.integers(1, 20, levels).astype(float)
    aq = rng.integers(1, 20, levels).astype(float)
    ts = T0
    out = {k: np.zeros((n, N_LEVELS)) for k in ("bid_px", "bid_sz", "ask_px", "ask_sz")}
    ts_ns, tpx, tsz, tside = np.zeros(n, np.int64), np.zeros(n), np.zeros(n), np.zeros(n, np.int8)
    for i in range(n):
        u = rng.random()
        if u < 0.45:  # add to / cancel from one level, never emptying it
            q = bq if rng.random() < 0.5 else aq
            k = rng.integers(levels)
            q[k] = max(1.0, q[k] + rng.integers(-6, 7))
        elif u < 0.65:  # market order against the best level
            side = 1 if rng.random() < 0.5 else -1
            q = aq if side > 0 else bq
            size = float(rng.integers(1, q[0] + 1))
            tside[i], tsz[i], tpx[i] = side, size, (bid + spread if side > 0 else bid) * TICK
            q[0] -= size
        elif u < 0.75:  # cancel a whole best level
            (aq if rng.random() < 0.5 else bq)[0] = 0.0
        elif u < 0.85 and spread > 1:  # new best level inside the spread
            if rng.random() < 0.5:
                bid, bq[:] = bid + 1, np.r_[rng.integers(1, 20), bq[:-1]]
            else:
                aq[:] = np.r_[rng.integers(1, 20), aq[:-1]]
            spread -= 1
        # else: a timestamp-only update
        if bq[0] == 0.0:  # best bid level gone: the book scrolls, a new level shows at the bottom
            bid, spread, bq[:] = bid - 1, spread + 1, np.r_[bq[1:], rng.integers(1, 20)]
        if aq[0] == 0.0:
            spread, aq[:] = spread + 1, np.r_[aq[1:], rng.integers(1, 20)]
        ts += int(rng.exponential(2e6)) if rng.random() < 0.9 else 0
        ts_ns[i] = ts
        out["bid_px"][i, :levels] = (bid - np.arange(levels)) * TICK
        out["ask_px"][i, :levels] = (bid + spread + np.arange(levels)) * TICK
        out["bid_sz"][i, :levels] = bq * size_scale
        out["ask_sz"][i, :levels] = aq * size_scale
    t = Ticks(ts_ns, out["bid_px"], out["bid_sz"], out["ask_px"], out["ask_sz"], tpx, tsz * size_scale, tside, "RW")
    validate(t, "random_walk")
    return t


def stream(tok: Tokenizer, ticks: Ticks, state=None):
    state = tok.init_state() if state is None else state
    tokens, features = [], []
    for i in range(len(ticks)):
        token, f, state = tok.step(TickInput.of(ticks, i), state)
        tokens.append(token)
        features.append(f)
    return np.array(tokens, np.int64), np.stack(features), state


@pytest.fixture(scope="module")
def tok10() -> Tokenizer:
    return Tokenizer.fit([random_walk(3000, 10, seed=1), random_walk(1000, 10, seed=2)])


# ------------------------------------------------------------------------------------- stream == batch

@pytest.mark.parametrize("levels", [1, 10])
def test_stream_equals_batch(levels):
    tok = Tokenizer.fit([random_walk(2000, levels, seed=10 + levels)])
    ticks = random_walk(3000, levels, seed=20 + levels)
    tokens, features, state = tok.transform(ticks)
    s_tokens, s_features, s_state = stream(tok, ticks)
    assert tokens.dtype == np.int64 and tokens.shape == (3000,)
    assert features.dtype == np.float32 and features.shape == (3000, tok.n_features)
    np.testing.assert_array_equal(s_tokens, tokens)
    assert np.abs(s_features - features).max() <= 1e-6
    assert s_state == state
    # the walk reaches every event class but "first" more than once, so this compares real variety
    assert len({tok.describe(t)["kind"] for t in tokens}) == 5


def test_stream_equals_batch_on_simulator(tmp_path):
    simulator = pytest.importorskip("lob.data.simulator")
    from lob.data.schema import load_dataset

    simulator.simulate_dataset(tmp_path, n_symbols=2, n_days=1, seed=3, events_per_day=3000, start_date="2024-01-02")
    data = load_dataset(tmp_path)
    train, test = (data[s] for s in sorted(data))
    tok = Tokenizer.fit([train])
    tokens, features, _ = tok.transform(test)
    s_tokens, s_features, _ = stream(tok, test)
    np.testing.assert_array_equal(s_tokens, tokens)
    assert np.abs(s_features - features).max() <= 1e-6


def test_carried_state_continues_the_sequence(tok10):
    ticks = random_walk(2001, 10, seed=5)
    whole_tokens, whole_features, whole_state = tok10.transform(ticks)
    t1, f1, state = tok10.transform(ticks.slice(0, 777))
    t2, f2, state = tok10.transform(ticks.slice(777, 2001), state)
    np.testing.assert_array_equal(np.r_[t1, t2], whole_tokens)
    np.testing.assert_array_equal(np.vstack([f1, f2]), whole_features)
    assert state == whole_state
    tokens, features, same = tok10.transform(ticks.slice(5, 5), state)  # an empty chunk changes nothing
    assert tokens.shape == (0,) and features.shape == (0, tok10.n_features) and same == state
    # a fresh state would have made tick 777 a "first" event: the carried one did not
    assert tok10.describe(t2[0])["kind"] != "first"
    assert tok10.transform(ticks.slice(777, 778))[0][0] != t2[0]


# --------------------------------------------------------------------------------- fit on train only

def test_tokens_in_vocab_and_buckets_fitted_on_train_only(tok10):
    assert tok10.vocab_size <= 1024
    before = json.dumps(tok10.buckets, sort_keys=True), tok10.content_hash
    # a test split unlike the training one: 50x larger sizes, a wider book range
    odd = random_walk(2000, 10, seed=7, size_scale=50.0)
    for test in (random_walk(2000, 10, seed=6), odd):
        tokens, features, _ = tok10.transform(test)
        assert tokens.min() >= 0 and tokens.max() < tok10.vocab_size
        assert np.abs(features).max() <= 10.0
        assert (json.dumps(tok10.buckets, sort_keys=True), tok10.content_hash) == before
    refit = Tokenizer.fit([random_walk(3000, 10, seed=1), random_walk(1000, 10, seed=2)])
    assert refit.content_hash == tok10.content_hash
    # fitting does depend on the data it sees, so the equalities above are not vacuous
    assert Tokenizer.fit([random_walk(3000, 10, seed=1), odd]).buckets != tok10.buckets


def test_fit_transform_equals_fit_then_transform_bit_for_bit():
    """Training tokenizes its train parts while fitting (one feature pass): the same tokenizer, and per part the
    same tokens, features and end state as ``fit`` then ``transform`` from a fresh state (an empty part too)."""
    train = [random_walk(1500, 10, seed=3), random_walk(700, 1, seed=4).slice(0, 0), random_walk(900, 1, seed=5)]
    tok, out = Tokenizer.fit_transform(train, size_buckets=3)
    fitted = Tokenizer.fit(train, size_buckets=3)
    assert tok.content_hash == fitted.content_hash and len(out) == 3
    for ticks, (tokens, features, state) in zip(train, out):
        want_tokens, want_features, want_state = fitted.transform(ticks)
        assert tokens.dtype == want_tokens.dtype and features.dtype == want_features.dtype
        np.testing.assert_array_equal(tokens, want_tokens)
        np.testing.assert_array_equal(features, want_features)
        assert state == want_state
    assert [len(t) for t, _, _ in out] == [1500, 0, 900]


def test_describe_inverts_the_token_layout(tok10):
    described = [tok10.describe(t) for t in range(tok10.vocab_size)]
    digits = {(d["kind"], d["side"], d["mid_move"], d["spread_bucket"], d["size_bucket"], d["dt_bucket"]) for d in described}
    assert len(digits) == tok10.vocab_size  # every token names a different event
    assert {d["kind"] for d in described} == {"first", "add", "cancel", "trade", "other"}
    for bad in (-1, tok10.vocab_size):
        with pytest.raises(ValueError, match="outside"):
            tok10.describe(bad)


def test_features_are_standardised_with_training_statistics():
    train = random_walk(4000, 10, seed=8)
    tok = Tokenizer.fit([train])
    _, features, _ = tok.transform(train)
    unclipped = np.abs(features).max(axis=0) < 10.0
    assert unclipped.sum() >= 8
    np.testing.assert_allclose(features[:, unclipped].mean(axis=0), 0.0, atol=1e-4)
    np.testing.assert_allclose(features[:, unclipped].std(axis=0), 1.0, atol=1e-4)


def test_fit_rejects_unknown_config():
    with pytest.raises(ValueError, match="unknown tokenizer config"):
        Tokenizer.fit([random_walk(100, 1, seed=0)], n_mid_buckets=3)


# ---------------------------------------------------------------------------------------- artifact

def test_save_load_round_trip_and_tamper_detection(tok10, tmp_path):
    path = tok10.save(tmp_path / "tokenizer.json")
    assert [p.name for p in tmp_path.iterdir()] == ["tokenizer.json"]  # no temp file left behind
    doc = json.loads(path.read_text())
    assert doc["format"] == "mamba-lob-tokenizer" and doc["version"] == 1
    assert doc["content_hash"] == tok10.content_hash and doc["vocab_size"] == tok10.vocab_size

    loaded = Tokenizer.load(path)
    assert loaded.content_hash == tok10.content_hash
    ticks = random_walk(500, 10, seed=9)
    for a, b in zip(loaded.transform(ticks)[:2], tok10.transform(ticks)[:2]):
        np.testing.assert_array_equal(a, b)

    tampered = dict(doc, buckets=dict(doc["buckets"], size=[e * 1.01 for e in doc["buckets"]["size"]]))
    (tmp_path / "tampered.json").write_text(json.dumps(tampered))
    with pytest.raises(ValueError, match="content_hash"):
        Tokenizer.load(tmp_path / "tampered.json")
    (tmp_path / "v2.json").write_text(json.dumps(dict(doc, version=2)))
    with pytest.raises(ValueError, match="version 2"):
        Tokenizer.load(tmp_path / "v2.json")
    (tmp_path / "other.json").write_text(json.dumps(dict(doc, format="something-else")))
    with pytest.raises(ValueError, match="format"):
        Tokenizer.load(tmp_path / "other.json")
    (tmp_path / "truncated.json").write_text(path.read_text()[:200])
    with pytest.raises(ValueError, match="truncated.json: not a tokenizer artifact"):
        Tokenizer.load(tmp_path / "truncated.json")


def test_importing_the_tokenizer_does_not_import_torch():
    code = "import sys, lob.tokenizer; sys.exit(1 if 'torch' in sys.modules else 0)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


# ---------------------------------------------------------------------------------------- bad ticks

def _with(tick: TickInput, field: str, index: int | None = None, value=None) -> TickInput:
    if index is None:
        return tick._replace(**{field: value})
    arr = getattr(tick, field).copy()
    arr[index] = value
    return tick._replace(**{field: arr})


BAD_TICKS = {  # case: (mutation of a valid 10-level tick, field the error must name)
    "nan price": (lambda t: _with(t, "bid_px", 0, np.nan), "bid_px_1"),
    "negative size": (lambda t: _with(t, "ask_sz", 2, -1.0), "ask_sz_3"),
    "crossed": (lambda t: _with(t, "bid_px", 0, t.ask_px[0]), "bid_px_1"),
    "empty best bid": (lambda t: _with(_with(t, "bid_px", 0, 0.0), "bid_sz", 0, 0.0), "bid_px_1"),
    "price without size": (lambda t: _with(t, "ask_sz", 4, 0.0), "ask_sz"),
    "gap in the book": (lambda t: _with(_with(t, "bid_px", 3, 0.0), "bid_sz", 3, 0.0), "bid_px"),
    "prices not monotone": (lambda t: _with(t, "ask_px", 2, t.ask_px[1]), "ask_px"),
    "bad trade side": (lambda t: _with(t, "trade_side", value=2), "trade_side"),
    "trade without size": (lambda t: t._replace(trade_side=1, trade_px=t.ask_px[0], trade_sz=0.0), "trade_px"),
    "trade price without side": (lambda t: t._replace(trade_side=0, trade_px=100.0, trade_sz=1.0), "trade_side"),
    "infinite trade price": (lambda t: t._replace(trade_side=-1, trade_px=np.inf, trade_sz=1.0), "trade_px"),
    "timestamp backwards": (lambda t: t._replace(ts_ns=t.ts_ns - 10**9), "ts_ns"),
    "float timestamp": (lambda t: t._replace(ts_ns=float(t.ts_ns)), "ts_ns"),
    "short array": (lambda t: t._replace(bid_sz=t.bid_sz[:9]), "bid_sz"),
    "string array": (lambda t: t._replace(ask_px=t.ask_px.astype(str)), "ask_px"),
    "float32 array": (lambda t: t._replace(bid_px=t.bid_px.astype(np.float32)), "bid_px"),
    "list not array": (lambda t: t._replace(bid_px=list(t.bid_px)), "bid_px"),
}


@pytest.mark.parametrize("case", sorted(BAD_TICKS))
def test_bad_tick_names_the_field_and_leaves_the_state_usable(tok10, case):
    mutate, field = BAD_TICKS[case]
    ticks = random_walk(60, 10, seed=11)
    expected_tokens, expected_features, _ = tok10.transform(ticks)
    _, _, state = stream(tok10, ticks.slice(0, 40))
    good = TickInput.of(ticks, 40)
    with pytest.raises(TickError) as err:
        tok10.step(mutate(good), state)
    assert err.value.field == field and repr(field) in str(err.value)
    assert isinstance(err.value, ValueError)
    token, features, _ = tok10.step(good, state)  # as if the bad tick never arrived
    assert token == expected_tokens[40]
    np.testing.assert_array_equal(features, expected_features[40])


def test_batch_error_names_row_and_field(tok10):
    ticks = random_walk(50, 10, seed=12)
    ticks.ask_sz[17, 0] = np.nan
    with pytest.raises(TickError, match=r"row 17, field 'ask_sz_1'"):
        tok10.transform(ticks)
    _, _, state = tok10.transform(random_walk(50, 10, seed=13).slice(0, 50))
    later = random_walk(50, 10, seed=12)
    later.ts_ns -= 10**12  # starts before the carried state's last tick
    with pytest.raises(TickError, match=r"row 0, field 'ts_ns'"):
        tok10.transform(later, state)


def test_stream_check_agrees_with_schema_validate(tok10):
    """The step's fast scalar check and lob.data.schema.validate accept and reject the same ticks."""
    rng = np.random.default_rng(0)
    ticks = random_walk(300, 10, seed=14)
    _, _, state = tok10.transform(ticks.slice(0, 1))
    values = [np.nan, np.inf, -1.0, 0.0, -0.0, 1e-9, 99.99, 100.0, 100.02, 5.0]
    n_rejected = 0
    for _ in range(600):
        tick = TickInput.of(ticks, int(rng.integers(1, 300)))
        for _ in range(int(rng.integers(1, 3))):
            field = ("bid_px", "bid_sz", "ask_px", "ask_sz", "trade_px", "trade_sz", "trade_side")[rng.integers(7)]
            if field == "trade_side":
                tick = tick._replace(trade_side=int(rng.integers(-1, 2)))
            elif field.startswith("trade"):
                tick = tick._replace(**{field: float(rng.choice(values))})
            else:
                tick = _with(tick, field, int(rng.integers(3 if rng.random() < 0.5 else N_LEVELS)), rng.choice(values))
        one = Ticks(np.array([tick.ts_ns]), *(np.array([book]) for book in tick[1:5]),
                    np.array([tick.trade_px]), np.array([tick.trade_sz]), np.array([tick.trade_side], np.int8))
        try:
            validate(one, "case")
            schema_error = None
        except TickDataError as err:
            schema_error = err.field
        try:
            tok10.step(tick, state)
            step_error = None
        except TickError as err:
            step_error = err.field
        assert step_error == schema_error, tick
        n_rejected += schema_error is not None
    assert 100 < n_rejected < 590  # both outcomes were exercised


# ---------------------------------------------------------------------------------- known events

def book(ts_ms: int, bids, asks, trade=(0.0, 0.0, 0)) -> dict:
    return {"ts": T0 + ts_ms * 10**6, "bids": bids, "asks": asks, "trade": trade}


def to_ticks(rows: list[dict]) -> Ticks:
    n = len(rows)
    bp, bs, ap, az = Ticks.empty_book(n)
    for i, r in enumerate(rows):
        for k, (p, q) in enumerate(r["bids"]):
            bp[i, k], bs[i, k] = p, q
        for k, (p, q) in enumerate(r["asks"]):
            ap[i, k], az[i, k] = p, q
    t = Ticks(np.array([r["ts"] for r in rows], np.int64), bp, bs, ap, az,
              np.array([r["trade"][0] for r in rows]), np.array([r["trade"][1] for r in rows]),
              np.array([r["trade"][2] for r in rows], np.int8), "KNOWN")
    validate(t, "known events")
    return t


def mid_bps(prev: dict, cur: dict) -> float:
    mid = lambda r: 0.5 * (r["bids"][0][0] + r["asks"][0][0])  # noqa: E731
    return 1e4 * math.log(mid(cur) / mid(prev))


def q_ref(prev: dict) -> float:
    return 0.5 * (prev["bids"][0][1] + prev["asks"][0][1])


KNOWN_10 = [  # (book after the event, expected kind, side, mid direction, event size in lots)
    (book(0, [(100.00, 5), (99.99, 7), (99.98, 9)], [(100.01, 3), (100.02, 4), (100.03, 6)]), "first", None, 0, None),
    # a buy market order takes the whole best ask queue: the ask scrolls up, a new level shows at the bottom
    (book(3, [(100.00, 5), (99.99, 7), (99.98, 9)], [(100.02, 4), (100.03, 6), (100.04, 2)], (100.01, 3, 1)),
     "trade", "ask", 1, 3),
    (book(5, [(100.00, 8), (99.99, 7), (99.98, 9)], [(100.02, 4), (100.03, 6), (100.04, 2)]), "add", "bid", 0, 3),
    (book(9, [(100.00, 8), (99.99, 7), (99.98, 9)], [(100.02, 4), (100.03, 1), (100.04, 2)]), "cancel", "ask", 0, 5),
    # a new best bid inside the spread: the deepest bid scrolls out of view (not a cancel)
    (book(9, [(100.01, 2), (100.00, 8), (99.99, 7)], [(100.02, 4), (100.03, 1), (100.04, 2)]), "add", "bid", 1, 2),
    (book(12, [(100.01, 1), (100.00, 8), (99.99, 7)], [(100.02, 4), (100.03, 1), (100.04, 2)], (100.01, 1, -1)),
     "trade", "bid", 0, 1),
    # the last lot of the best bid is cancelled: a deeper level scrolls into view (not an add)
    (book(20, [(100.00, 8), (99.99, 7), (99.98, 4)], [(100.02, 4), (100.03, 1), (100.04, 2)]), "cancel", "bid", -1, 1),
    (book(31, [(100.00, 8), (99.99, 7), (99.98, 4)], [(100.02, 4), (100.03, 1), (100.04, 2)]), "other", None, 0, None),
]
KNOWN_1 = [  # a best bid/ask feed (Binance bookTicker)
    (book(0, [(100.00, 5)], [(100.01, 3)]), "first", None, 0, None),
    (book(1, [(100.00, 5)], [(100.02, 4)], (100.01, 3, 1)), "trade", "ask", 1, 3),
    (book(2, [(100.01, 1)], [(100.02, 4)]), "add", "bid", 1, 1),
    (book(4, [(100.00, 6)], [(100.02, 4)]), "cancel", "bid", -1, 1),
    (book(5, [(100.00, 6)], [(100.02, 9)]), "add", "ask", 0, 5),
]


@pytest.mark.parametrize("known", [KNOWN_10, KNOWN_1], ids=["10-level", "1-level"])
def test_known_events_map_to_kind_side_and_buckets(tok10, known):
    rows = [r for r, *_ in known]
    tokens, _, _ = tok10.transform(to_ticks(rows))
    for i, (row, kind, side, direction, lots) in enumerate(known):
        d = tok10.describe(tokens[i])
        assert (d["kind"], d["side"], int(np.sign(d["mid_move"]))) == (kind, side, direction), (i, d)
        if i:
            move = mid_bps(rows[i - 1], row)
            lo, hi = d["mid_bps"]
            assert (lo < move <= hi) if move > 0 else (lo <= move < hi) if move < 0 else lo == hi == 0.0
            if lots is not None:
                lo, hi = d["size"]
                assert lo < lots / q_ref(rows[i - 1]) <= hi, (i, d)
            dt_us, (lo, hi) = (row["ts"] - rows[i - 1]["ts"]) / 1e3, d["dt_us"]
            assert lo < dt_us <= hi or dt_us == lo == 0.0, (i, d)


def test_feature_values_follow_their_definitions(tok10):
    rows = [r for r, *_ in KNOWN_10]
    _, features, _ = tok10.transform(to_ticks(rows))
    assert np.abs(features[:3]).max() < 10.0  # not clipped, so the raw values can be recovered
    raw = features.astype(np.float64) * tok10.feature_std + tok10.feature_mean  # (N, F)
    f = {name: raw[:, k] for k, name in enumerate(tok10.feature_names)}
    b, a = 100.00, 100.01
    mid = 0.5 * (b + a)
    expected_first = {
        "imbalance_l1": (5 - 3) / (5 + 3),
        "imbalance_depth5": (21 - 13) / (21 + 13),
        "spread_bps": 1e4 * (a - b) / mid,
        "microprice_dev_bps": 1e4 * ((b * 3 + a * 5) / 8 - mid) / mid,
        "trade_sign": 0.0, "log_trade_size": 0.0, "ofi": 0.0, "mid_ret_bps": 0.0, "log_dt_us": 0.0,
    }
    for name, value in expected_first.items():
        assert f[name][0] == pytest.approx(value, abs=1e-4), name
    # tick 1: buy 3 lots at 100.01 emptied the ask queue (size 3); q_ref = (5 + 3) / 2
    assert f["trade_sign"][1] == pytest.approx(1.0, abs=1e-4)
    assert f["log_trade_size"][1] == pytest.approx(math.log1p(3 / 4), abs=1e-4)
    # CKS: bid unchanged (+5 - 5); ask moved up, so only the old queue counts (+3)
    assert f["ofi"][1] == pytest.approx(3 / 4, abs=1e-4)
    assert f["log_dt_us"][1] == pytest.approx(math.log1p(3000.0), abs=1e-4)
    assert f["mid_ret_bps"][1] == pytest.approx(1e4 * math.log(100.01 / 100.005), abs=1e-4)
    # the only trade so far was at 100.01; mid is now 100.01
    assert f["vwap_dev_bps"][1] == pytest.approx(0.0, abs=1e-4)
    # tick 2: 3 lots added to the best bid (q_ref = (5 + 4) / 2)
    assert f["ofi"][2] == pytest.approx(3 / 4.5, abs=1e-4)


def test_step_batch_equals_step_per_sequence_bit_for_bit(tok10):
    """The server's batch path: B sequences, one tick each per call, one bad row, == step() row by row."""
    walks = [random_walk(80, 10, seed=30 + k) for k in range(5)]
    states_b: list = [None] * 5
    states_s: list = [None] * 5
    refused = 0
    for i in range(80):
        ticks = [TickInput.of(w, i) for w in walks]
        if i == 33:
            ticks[2] = ticks[2]._replace(bid_px=np.full(10, np.nan))  # one bad tick in the batch
        tokens, features, new = tok10.step_batch(ticks, states_b)
        assert tokens.shape == (5,) and features.shape == (5, tok10.n_features) and features.dtype == np.float32
        for b in range(5):
            try:
                token, f, states_s[b] = tok10.step(ticks[b], states_s[b])
            except TickError as err:
                assert isinstance(new[b], TickError) and new[b].field == err.field == "bid_px_1"
                assert tokens[b] == 0 and not features[b].any()
                refused += 1
                continue
            assert tokens[b] == token
            np.testing.assert_array_equal(features[b], f)
            assert new[b] == states_s[b]
            states_b[b] = new[b]
    assert refused == 1


def test_step_chunk_equals_step_bit_for_bit_and_refuses_a_chunk_at_its_first_bad_tick(tok10):
    """The server's chunk path (T ticks of one sequence per request) == step() tick by tick, across cuts of
    any length; a chunk with bad ticks raises the first one's error as step() would see it, and moves nothing."""
    walk = random_walk(300, 10, seed=41)
    state, tokens, features = None, [], []
    for i in range(len(walk)):
        token, f, state = tok10.step(TickInput.of(walk, i), state)
        tokens.append(token)
        features.append(f)
    chunk_state, lo = None, 0
    for hi in (1, 2, 66, 67, 250, 300):
        t, f, chunk_state = tok10.step_chunk(walk.slice(lo, hi), chunk_state)
        assert t.dtype == np.int64 and f.dtype == np.float32 and f.shape == (hi - lo, tok10.n_features)
        assert t.tolist() == tokens[lo:hi]
        np.testing.assert_array_equal(f, np.stack(features[lo:hi]))
        lo = hi
    assert chunk_state == state

    bad = walk.slice(100, 140)
    bad.bid_sz = bad.bid_sz.copy()
    bad.bid_sz[20, 0] = -1.0  # the first bad tick; validate() alone would report the NaN price of tick 25
    bad.bid_px = bad.bid_px.copy()
    bad.bid_px[25, 0] = np.nan
    before = tok10.step_chunk(walk.slice(0, 100), None)[2]
    with pytest.raises(TickError, match=r"^tick 20 of 40, ts_ns=\d+, field 'bid_sz_1': negative value"):
        tok10.step_chunk(bad, before)
    back = walk.slice(100, 102)
    back.ts_ns = back.ts_ns[::-1].copy()  # the first tick of a chunk is checked against the carried state too
    assert back.ts_ns[0] > back.ts_ns[1]
    with pytest.raises(TickError, match="tick 1 of 2.*timestamp goes backwards"):
        tok10.step_chunk(back, before)
    t, _, _ = tok10.step_chunk(walk.slice(100, 140), before)  # the state was not moved by the refusals
    assert t.tolist() == tokens[100:140]
