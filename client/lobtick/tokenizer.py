"""Tick tokenizer shared by training and the Triton server: one event token + F features per tick.

Pure numpy (never imports torch): the Triton python backend (through ``lob.tokenizer``) and the client's direct
path (``lobclient.protocol.DirectRequests``) run this module unchanged.

One implementation, two entry points. ``lobtick.features`` holds the per-tick formula, written once and run
on one tick's Python floats (``advance_one``: ``step``/``step_batch``, the server's live ticks) or on a
sequence's numpy arrays (``advance``: ``transform``/``step_chunk``/``fit``, training and chunks); both finish
with the same ``_encode`` (buckets) and ``_standardise`` (numpy, any leading shape). Stream and batch therefore
give bit-identical tokens and features. ``fit_transform`` fits and tokenizes the training split in one pass.

Token layout (mixed radix, most significant first)::

    token = ((((cls * R_mid + mid) * R_spread + spread) * R_size + size) * R_dt + dt

- ``cls``: event class, ``lobtick.features.EVENT_CLASSES`` (first / add / cancel / trade on bid or ask / other)
- ``mid``: signed mid-move bucket; index ``n_mag`` is "no move", ``n_mag + 1 + k`` up by magnitude
  bucket k, ``n_mag - 1 - k`` down; ``R_mid = 2 n_mag + 1``; magnitude edges are quantiles of
  |mid move| (bps) over the nonzero moves of the training split, shared by both signs
- ``spread``, ``size``, ``dt``: quantile buckets of spread (bps), event size (best-queue sizes:
  trade size or |visible size change|) and inter-arrival time (µs)

Bucket k of edges e covers (e[k-1], e[k]] (``bisect_left``), so a value tied with an edge, e.g. the
one-tick spread that dominates a liquid book, falls in the lower bucket. Edges are
``np.unique``d quantiles, so a radix can be smaller than configured; ``vocab_size`` is the product
of the fitted radices (<= 8 * 5 * 2 * 4 * 3 = 960 with the default config). ``describe(token)``
inverts the layout.

Features: the raw values of ``lobtick.features`` (see its docstring for units) standardised with the
training split's mean and std (std 0 -> 1) and clipped to +-10, float32.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import NamedTuple

import numpy as np

from lobtick.features import (
    EVENT_CLASSES,
    FEATURE_NAMES,
    FIRST,
    MANY,
    ONE,
    Event,
    TokenizerState,
    advance,
    advance_one,
    ema_alpha,
    is_canonical,
)
from lobtick.io import atomic_write
from lobtick.ticks import N_LEVELS, TickDataError, Ticks, validate

__all__ = ["Tokenizer", "TickInput", "TickError", "TokenizerState", "FEATURE_NAMES", "EVENT_CLASSES"]

FORMAT = "mamba-lob-tokenizer"
VERSION = 1
DEFAULT_CONFIG = {
    "mid_buckets": 2,  # magnitude buckets per sign of the mid move
    "spread_buckets": 2,
    "size_buckets": 4,
    "dt_buckets": 3,
    "ofi_span": 20.0,  # events
    "rv_span": 50.0,  # events
    "vwap_span": 100.0,  # trades
}
CLIP = 10.0
_BUCKETS = ("mid_bps", "spread_bps", "size", "dt_us")  # bucketed quantities, token digits 2..5
_BOOK_FIELDS = ("bid_px", "bid_sz", "ask_px", "ask_sz")
_BOOK_SHAPE = (N_LEVELS,)
_F64 = np.dtype(np.float64)


class TickError(TickDataError):
    """A tick the tokenizer cannot take. ``field`` names the offending field (e.g. ``bid_px_1``)."""

class TickInput(NamedTuple):
    """One tick, as the server receives it; meaning as in ``lobtick.ticks`` (book after the event)."""

    ts_ns: int
    bid_px: np.ndarray  # (N_LEVELS,) float64 (other dtypes are rejected), 0 = empty level
    bid_sz: np.ndarray  # (N_LEVELS,)
    ask_px: np.ndarray  # (N_LEVELS,)
    ask_sz: np.ndarray  # (N_LEVELS,)
    trade_px: float = 0.0
    trade_sz: float = 0.0
    trade_side: int = 0  # +1 buyer-initiated, -1 seller-initiated, 0 no trade

    @classmethod
    def of(cls, ticks: Ticks, i: int) -> "TickInput":
        """Row ``i`` of a ``Ticks`` table."""
        return cls(int(ticks.ts_ns[i]), ticks.bid_px[i], ticks.bid_sz[i], ticks.ask_px[i], ticks.ask_sz[i],
                   float(ticks.trade_px[i]), float(ticks.trade_sz[i]), int(ticks.trade_side[i]))


def _quantile_edges(values: np.ndarray, n_buckets: int) -> list[float]:
    if n_buckets < 1:
        raise ValueError(f"bucket counts must be >= 1, got {n_buckets}")
    if not len(values) or n_buckets == 1:
        return []
    probs = np.linspace(0.0, 1.0, n_buckets + 1)[1:-1]
    return np.unique(np.quantile(np.asarray(values, np.float64), probs)).tolist()


def _alphas(config: dict) -> tuple[float, float, float]:
    return ema_alpha(config["ofi_span"]), ema_alpha(config["rv_span"]), ema_alpha(config["vwap_span"])


def _canonical_json(obj) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), allow_nan=False).encode()


class Tokenizer:
    """Fitted tokenizer. Build with ``Tokenizer.fit`` or ``Tokenizer.load``; immutable afterwards."""

    def __init__(self, config: dict, buckets: dict[str, list[float]], feature_mean: list[float],
                 feature_std: list[float]):
        self._config = dict(config)
        self._buckets = {k: [float(e) for e in buckets[k]] for k in _BUCKETS}
        self._mean = np.asarray(feature_mean, np.float64)  # (F,)
        self._std = np.asarray(feature_std, np.float64)  # (F,)
        self._alphas = _alphas(config)
        self._mid_edges, self._spread_edges, self._size_edges, self._dt_edges = (self._buckets[k] for k in _BUCKETS)
        self._n_mag = len(self._mid_edges) + 1
        # radices, most significant first: class, mid, spread, size, dt
        self._radices = (len(EVENT_CLASSES), 2 * self._n_mag + 1, len(self._spread_edges) + 1,
                         len(self._size_edges) + 1, len(self._dt_edges) + 1)
        self._content_hash = hashlib.sha256(_canonical_json(self._payload())).hexdigest()

    # ------------------------------------------------------------------------------------------- fitting

    @classmethod
    def fit(cls, train: list[Ticks], **config) -> "Tokenizer":
        """Fit buckets and feature scaling on the TRAINING split (one ``Ticks`` per sequence)."""
        return cls.fit_transform(train, **config)[0]

    @classmethod
    def fit_transform(cls, train: list[Ticks], **config
                      ) -> tuple["Tokenizer", list[tuple[np.ndarray, np.ndarray, TokenizerState]]]:
        """``fit``, and each training sequence's ``transform`` from a fresh state (one per item of ``train``, in
        order), from ONE pass of the per-tick formula: equal to ``fit`` then ``transform`` bit for bit."""
        unknown = sorted(set(config) - set(DEFAULT_CONFIG))
        if unknown:
            raise ValueError(f"unknown tokenizer config {unknown}; known: {sorted(DEFAULT_CONFIG)}")
        config = {**DEFAULT_CONFIG, **config}
        if not train or not sum(len(t) for t in train):
            raise ValueError("Tokenizer.fit needs at least one training tick")
        alphas = _alphas(config)
        runs = [_run(t, TokenizerState(), alphas) for t in train]  # (events, raws, state) per sequence
        e = Event(*map(np.concatenate, zip(*(ev for ev, _, _ in runs))))  # (N,) each
        buckets = {
            "mid_bps": _quantile_edges(np.abs(e.mid_bps[e.mid_bps != 0.0]), config["mid_buckets"]),
            "spread_bps": _quantile_edges(e.spread_bps, config["spread_buckets"]),
            "size": _quantile_edges(e.size[e.size > 0.0], config["size_buckets"]),
            "dt_us": _quantile_edges(e.dt_us[e.cls != FIRST], config["dt_buckets"]),
        }
        x = np.concatenate([raws for _, raws, _ in runs])  # (N, F)
        std = x.std(axis=0)
        std[std == 0.0] = 1.0  # a constant feature stays at 0 after centring
        tok = cls(config, buckets, x.mean(axis=0).tolist(), std.tolist())
        return tok, [(*tok._finish(ev, raws), state) for ev, raws, state in runs]

    # ---------------------------------------------------------------------------------------- properties

    @property
    def config(self) -> dict:
        return dict(self._config)

    @property
    def buckets(self) -> dict[str, list[float]]:
        """Fitted bucket edges: ``mid_bps`` (|mid move|), ``spread_bps``, ``size`` (best-queue sizes), ``dt_us``."""
        return {k: list(v) for k, v in self._buckets.items()}

    @property
    def vocab_size(self) -> int:
        return int(np.prod(self._radices))

    @property
    def n_features(self) -> int:
        return len(FEATURE_NAMES)

    @property
    def feature_names(self) -> list[str]:
        return list(FEATURE_NAMES)

    @property
    def feature_mean(self) -> np.ndarray:
        """(F,) float64 training mean of the raw features (``lobtick.features`` units)."""
        return self._mean.copy()

    @property
    def feature_std(self) -> np.ndarray:
        """(F,) float64 training std of the raw features (1 where a feature was constant)."""
        return self._std.copy()

    @property
    def content_hash(self) -> str:
        return self._content_hash

    def __repr__(self) -> str:
        return f"Tokenizer(vocab_size={self.vocab_size}, n_features={self.n_features}, hash={self._content_hash[:12]})"

    # ------------------------------------------------------------------------------------------- the API

    def init_state(self) -> TokenizerState:
        """State of a sequence before its first tick."""
        return TokenizerState()

    def transform(self, ticks: Ticks, state: TokenizerState | None = None
                  ) -> tuple[np.ndarray, np.ndarray, TokenizerState]:
        """Batch API: ``(tokens (N,) int64, features (N, F) float32, state after the last tick)``.

        ``state`` continues a sequence (default: a new one). Raises ``TickError`` naming the row and field.
        """
        events, raws, state = _run(ticks, TokenizerState() if state is None else state, self._alphas)
        return (*self._finish(events, raws), state)

    def step(self, tick: TickInput, state: TokenizerState | None) -> tuple[int, np.ndarray, TokenizerState]:
        """Streaming API: ``(token, features (F,) float32, new state)``; ``state`` is never modified.

        A bad tick raises ``TickError`` naming the field; the caller keeps its old state.
        """
        tokens, features, (new_state,) = self.step_batch([tick], [state])
        if isinstance(new_state, TickError):
            raise new_state
        return int(tokens[0]), features[0], new_state

    def step_batch(self, ticks: list[TickInput], states: list[TokenizerState | None]
                   ) -> tuple[np.ndarray, np.ndarray, list[TokenizerState | TickError]]:
        """Streaming API for B sequences at once, one tick each (the server's batch of requests):
        ``(tokens (B,) int64, features (B, F) float32, per row the new state or the row's TickError)``.

        Each tick is checked alone (``is_canonical``) and goes through ``advance_one`` (Python floats: a
        request of one tick pays no numpy per tick), then one standardisation of the (B, F) batch; row b
        equals ``step(ticks[b], states[b])`` and a chunk's tick bit for bit. A refused row has token 0 and
        zero features.
        """
        tokens = np.zeros(len(ticks), np.int64)  # (B,)
        raws = np.zeros((len(ticks), self.n_features), np.float64)  # (B, F)
        new_states: list[TokenizerState | TickError] = []
        for b, (tick, state) in enumerate(zip(ticks, states)):
            state = TokenizerState() if state is None else state
            try:
                event, raws[b], new_state = advance_one(state, _checked(tick, state), self._alphas)
                tokens[b] = self._encode(ONE, event)
            except TickError as err:
                new_state = err
            new_states.append(new_state)
        features = self._standardise(raws)
        for b, new_state in enumerate(new_states):
            if isinstance(new_state, TickError):
                features[b] = 0.0
        return tokens, features, new_states

    def step_chunk(self, ticks: Ticks, state: TokenizerState | None
                   ) -> tuple[np.ndarray, np.ndarray, TokenizerState]:
        """Streaming API for T consecutive ticks of one sequence (one request of a chunk): ``(tokens (T,)
        int64, features (T, F) float32, state after the last tick)``; ``state`` is never modified.

        Runs the batch path (``transform``: vectorised checks, one standardisation), equal to T ``step``
        calls bit for bit. All or nothing: when any tick is bad, raises the ``TickError`` of the FIRST bad
        tick as ``step`` would see it after the ticks before it, its source ``"tick i of T, ts_ns=..."``
        (``i`` 0-based), and no state is returned.
        """
        state = TokenizerState() if state is None else state
        try:
            return self.transform(ticks, state)
        except TickError:  # find the first tick step() refuses, from the state the ticks before it leave
            for i in range(len(ticks)):
                try:
                    _, _, state = self.step(TickInput.of(ticks, i), state)
                except TickError as err:
                    where = f"tick {i} of {len(ticks)}, ts_ns={int(ticks.ts_ns[i])}"
                    raise TickError(where, None, err.field, err.problem) from None
            raise

    def describe(self, token: int) -> dict:
        """Inverse of the token layout: event kind, side and each bucket with its value range.

        Keys: ``kind``, ``side`` (None for first/other), ``mid_move`` (signed bucket, 0 = no move),
        ``mid_bps``, ``spread_bucket``, ``spread_bps``, ``size_bucket``, ``size`` (best-queue sizes),
        ``dt_bucket``, ``dt_us``. Ranges are ``(lo, hi]`` in the bucket's unit; a down move's
        ``mid_bps`` range is ``[lo, hi)`` with lo < hi < 0, no move is ``(0.0, 0.0)``.
        """
        token = int(token)
        if not 0 <= token < self.vocab_size:
            raise ValueError(f"token {token} outside [0, {self.vocab_size})")
        digits = []
        for radix in reversed(self._radices):
            token, d = divmod(token, radix)
            digits.append(d)
        dt, size, spread, mid, cls = digits
        kind, side = EVENT_CLASSES[cls]
        move = mid - self._n_mag  # signed: 0 no move, +k up by magnitude bucket k-1
        if move == 0:
            mid_range = (0.0, 0.0)
        else:
            lo, hi = _bucket_range(self._mid_edges, abs(move) - 1, floor=0.0)
            mid_range = (lo, hi) if move > 0 else (-hi, -lo)
        return {"kind": kind, "side": side, "mid_move": move, "mid_bps": mid_range,
                "spread_bucket": spread, "spread_bps": _bucket_range(self._spread_edges, spread),
                "size_bucket": size, "size": _bucket_range(self._size_edges, size, floor=0.0),
                "dt_bucket": dt, "dt_us": _bucket_range(self._dt_edges, dt, floor=0.0)}

    # ----------------------------------------------------------------------------------------- internals

    def _finish(self, e: Event, raws: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """N events (arrays) and raw features (N, F) -> (tokens (N,) int64, features (N, F) float32)."""
        return self._encode(MANY, e).astype(np.int64), self._standardise(raws)

    def _encode(self, o, e: Event):
        """The token layout of ``o``'s events (``lobtick.features.ONE``: an int; ``MANY``: (N,) ints); ``bucket``
        is ``bisect_left``."""
        _, r_mid, r_spread, r_size, r_dt = self._radices
        bucket = o.bucket
        mid = o.where(e.mid_bps > 0.0, self._n_mag + 1 + bucket(self._mid_edges, e.mid_bps),
                      self._n_mag - 1 - bucket(self._mid_edges, -e.mid_bps))
        mid = o.where(e.mid_bps == 0.0, self._n_mag, mid)
        return ((((e.cls * r_mid + mid) * r_spread + bucket(self._spread_edges, e.spread_bps)) * r_size
                 + bucket(self._size_edges, e.size)) * r_dt + bucket(self._dt_edges, e.dt_us))

    def _standardise(self, raw: np.ndarray) -> np.ndarray:
        """(..., F) float64 raw features -> (..., F) float32 standardised and clipped."""
        z = (raw - self._mean) / self._std
        np.maximum(z, -CLIP, out=z)  # np.clip costs several µs more per call at F=12
        np.minimum(z, CLIP, out=z)
        return z.astype(np.float32)

    # ------------------------------------------------------------------------------------------ artifact

    def _payload(self) -> dict:
        return {"format": FORMAT, "version": VERSION, "config": self._config, "buckets": self._buckets,
                "feature_mean": self._mean.tolist(), "feature_std": self._std.tolist(),
                "feature_names": list(FEATURE_NAMES), "vocab_size": self.vocab_size}

    def save(self, path: Path) -> Path:
        """Write the versioned JSON artifact atomically."""
        doc = {**self._payload(), "content_hash": self._content_hash}
        text = json.dumps(doc, indent=1, sort_keys=True, allow_nan=False)
        atomic_write(Path(path), lambda tmp: Path(tmp).write_text(text))
        return Path(path)

    @classmethod
    def load(cls, path: Path) -> "Tokenizer":
        """Read and verify an artifact written by ``save``; ``ValueError`` naming the file otherwise."""
        path = Path(path)
        try:
            doc = json.loads(path.read_text())
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}: not a tokenizer artifact (invalid JSON: {err})") from None
        found = doc.get("format") if isinstance(doc, dict) else type(doc).__name__
        if found != FORMAT:
            raise ValueError(f"{path}: not a tokenizer artifact (format {found!r}, expected {FORMAT!r})")
        if doc.get("version") != VERSION:
            raise ValueError(f"{path}: tokenizer format version {doc.get('version')!r} is not supported "
                             f"(this code reads version {VERSION})")
        missing = sorted({"config", "buckets", "feature_mean", "feature_std", "feature_names", "vocab_size",
                          "content_hash"} - set(doc))
        if missing:
            raise ValueError(f"{path}: tokenizer artifact lacks {missing}")
        stored = doc.pop("content_hash")
        if stored != hashlib.sha256(_canonical_json(doc)).hexdigest():
            raise ValueError(f"{path}: content_hash does not match the content (file modified or corrupt)")
        if doc["feature_names"] != list(FEATURE_NAMES):
            raise ValueError(f"{path}: features {doc['feature_names']} differ from this code's {list(FEATURE_NAMES)}")
        tok = cls(doc["config"], doc["buckets"], doc["feature_mean"], doc["feature_std"])
        if tok.content_hash != stored:  # e.g. a vocab_size that does not match the buckets
            raise ValueError(f"{path}: inconsistent artifact "
                             f"(vocab_size {doc['vocab_size']}, buckets give {tok.vocab_size})")
        return tok


def _bucket_range(edges: list[float], k: int, floor: float = -np.inf) -> tuple[float, float]:
    return (edges[k - 1] if k > 0 else floor, edges[k] if k < len(edges) else np.inf)


def _run(ticks: Ticks, state: TokenizerState, alphas: tuple[float, float, float]
         ) -> tuple[Event, np.ndarray, TokenizerState]:
    """Chained ``advance`` of a checked ``ticks``: valid and continuing ``state`` in time, else ``TickError``
    naming row and field."""
    if not len(ticks):  # (lobtick.ticks.validate cannot take an empty table)
        empty = Event(np.zeros(0, np.int64), *(np.zeros(0) for _ in range(4)))
        return empty, np.zeros((0, len(FEATURE_NAMES))), state
    source = _validated(ticks)
    if state.ts_ns is not None and ticks.ts_ns[0] < state.ts_ns:
        raise TickError(source, 0, "ts_ns", f"timestamp goes backwards: {int(ticks.ts_ns[0])} < previous {state.ts_ns}")
    return advance(state, ticks, alphas)


def _validated(ticks: Ticks) -> str:
    source = ticks.symbol or "ticks"
    try:
        validate(ticks, source)
    except TickDataError as err:
        raise TickError(err.source, err.row, err.field, err.problem) from None
    return source


def _checked(tick: TickInput, state: TokenizerState) -> tuple:
    """One tick checked alone and against ``state``'s time: ``(ts_ns, bid_px, bid_sz, ask_px, ask_sz, trade_px,
    trade_sz, trade_side)``, the book as lists of L floats; else ``TickError`` naming the field."""
    ts, books, trade_px, trade_sz, trade_side = _unpack(tick)
    if state.ts_ns is not None and ts < state.ts_ns:
        raise TickError(f"tick ts_ns={ts}", None, "ts_ns", f"timestamp goes backwards: {ts} < previous {state.ts_ns}")
    if not is_canonical(*books, trade_px, trade_sz, trade_side):
        _raise_invalid(ts, books, trade_px, trade_sz, trade_side)
    return (ts, *books, trade_px, trade_sz, trade_side)


def _unpack(tick: TickInput) -> tuple[int, tuple[list, list, list, list], float, float, int]:
    """Type/shape checks and conversion of a ``TickInput`` to the Python scalars ``advance`` takes.

    Exact-type tests first: ``isinstance`` against numpy's abstract types and dtype comparisons are
    the slow part of this hot path.
    """
    ts = tick.ts_ns
    if type(ts) is not int:
        if not isinstance(ts, np.integer):
            raise TickError("tick", None, "ts_ns", f"must be an integer (ns since the epoch), got {type(ts).__name__}")
        ts = int(ts)
    books = []
    for name, a in zip(_BOOK_FIELDS, tick[1:5]):
        # float64 only: a float32 price (100.01 -> 100.0100021) would skew spreads and buckets vs training
        if not isinstance(a, np.ndarray) or a.shape != _BOOK_SHAPE or (a.dtype is not _F64 and a.dtype != _F64):
            got = f"{a.dtype} array of shape {a.shape}" if isinstance(a, np.ndarray) else type(a).__name__
            raise TickError(f"tick ts_ns={ts}", None, name, f"expected a {_BOOK_SHAPE} float64 array, got {got}")
        books.append(a.tolist())
    side = tick.trade_side
    if not (type(side) is int or isinstance(side, np.integer)) or side not in (-1, 0, 1):
        raise TickError(f"tick ts_ns={ts}", None, "trade_side", f"must be -1, 0 or +1, got {side!r}")
    scalars = []
    for name, value in zip(("trade_px", "trade_sz"), tick[5:7]):
        if type(value) is not float:
            if not isinstance(value, (int, float, np.integer, np.floating)):
                raise TickError(f"tick ts_ns={ts}", None, name, f"must be a number, got {type(value).__name__}")
            value = float(value)
        scalars.append(value)
    return ts, tuple(books), scalars[0], scalars[1], int(side)


def _raise_invalid(ts: int, books, trade_px: float, trade_sz: float, trade_side: int):
    """Name the field ``lobtick.ticks.validate`` rejects in this one tick, as a ``TickError``."""
    source = f"tick ts_ns={ts}"
    one = Ticks(np.array([ts], np.int64), *(np.array([b], np.float64) for b in books),
                np.array([trade_px]), np.array([trade_sz]), np.array([trade_side], np.int8))
    try:
        validate(one, source)
    except TickDataError as err:
        raise TickError(source, None, err.field, err.problem) from None
    raise TickError(source, None, None, "rejected by lobtick.features.is_canonical but not by lobtick.ticks.validate (a bug)")
