"""lob_tokenizer: raw L2 ticks of a batch of symbols -> (event token, standardised features) per tick.

Triton sequence per symbol; the TokenizerState of each sequence is kept here, keyed by correlation id
(the python backend has no implicit state). START resets it, END frees it, and a sequence idle for the
config's ``sequence_batching.max_sequence_idle_microseconds`` is forgotten. A request carries T >= 1
consecutive ticks of its sequence (inputs (1, T, ...), outputs TOKEN (1, T), FEATURES (1, T, F)). One execute
tokenizes the single-tick requests of the batch with ``Tokenizer.step_batch`` (row b == ``Tokenizer.step``
bit for bit) and each chunk (T > 1) with ``Tokenizer.step_chunk`` (the same, T ticks at once). A bad tick gets
an error response naming the field (in a chunk: "tick i of T", the first bad one; the whole chunk is
refused) and leaves that sequence's state where it was; a refused tick that
carries END still ends the sequence in the step models named by the ``end_step_models`` parameter
(the ensemble stops at this error, so they would otherwise hold it until their idle timeout).

Custom metrics on the server's /metrics: ``lob_tokenizer_open_sequences`` (gauge),
``lob_tokenizer_max_candidate_sequences`` (gauge: the config's ``oldest.max_candidate_sequences``, the slots
of this instance's sequence batcher; Triton keeps one per model instance, the model's capacity is their sum), ``lob_tokenizer_refused_ticks_total{reason}``, ``lob_tokenizer_idle_reclaimed_total``,
``lob_tokenizer_batch_size`` (histogram of requests per execute: ``_bucket{le}``, ``_sum``, ``_count``).
Each custom-metric call is a blocking round trip between the stub and the server, so ``execute`` makes none:
it adds to ``_Pending`` (in process), and a thread flushes the sums every ``METRICS_FLUSH_S``; /metrics
lags by at most that (plus one flush). The histogram's series are written as counters (cumulative per bucket):
the backend's histogram takes one blocking ``observe`` per value.
"""
import json
import threading
import time
from pathlib import Path

import numpy as np
import triton_python_backend_utils as pb_utils

from lob.contract import (ASK_PX, ASK_SZ, BAD_TICK_PREFIX, BID_PX, BID_SZ, DIR_PROBS, FEATURES, NO_STATE_PREFIX, TOKEN,
                          TRADE_PX, TRADE_SIDE, TRADE_SZ, TS_NS)
from lob.tokenizer import TickError, TickInput, Ticks, Tokenizer

SEQUENCE_END_FLAG = 2  # TRITONSERVER_REQUEST_FLAG_SEQUENCE_END (tritonserver.h)
BATCH_BUCKETS = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024]
METRICS_FLUSH_S = 0.5  # custom metrics reach /metrics within this delay


class _Pending:
    """Custom-metric updates not yet sent: counter increments by key, and the open-sequences gauge."""

    def __init__(self):
        self.lock = threading.Lock()
        self.counts = {}  # metric key -> increment since the last flush

    def add(self, key, n=1):
        with self.lock:
            self.counts[key] = self.counts.get(key, 0) + n

    def observe_batch(self, size):
        """One execute of ``size`` requests: the histogram's bucket, sum and count counters."""
        with self.lock:
            for le in BATCH_BUCKETS:
                if size <= le:
                    self.counts[("le", le)] = self.counts.get(("le", le), 0) + 1
            for key, n in ((("le", "+Inf"), 1), ("sum", size), ("count", 1)):
                self.counts[key] = self.counts.get(key, 0) + n

    def take(self):
        with self.lock:
            counts, self.counts = self.counts, {}
        return counts


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        params = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        folder = Path(args["model_repository"]) / args["model_version"]
        self.tokenizer = Tokenizer.load(folder / "tokenizer.json")
        self.idle_timeout_s = int(config["sequence_batching"]["max_sequence_idle_microseconds"]) / 1e6
        self.end_step_models = [m for m in params.get("end_step_models", "").split(",") if m]
        self.states = {}  # correlation id -> TokenizerState
        self.last_seen = {}  # correlation id -> time.monotonic() of its last tick
        self.next_sweep = time.monotonic() + min(self.idle_timeout_s, 1.0)
        labels = {"model": args["model_name"], "instance": args["model_instance_name"]}
        family = pb_utils.MetricFamily
        # the families must outlive their metrics: a collected family is removed from /metrics
        self.families = {
            "open": family("lob_tokenizer_open_sequences", "Sequences with tokenizer state", family.GAUGE),
            "capacity": family("lob_tokenizer_max_candidate_sequences",
                               "Sequence slots of this instance's sequence batcher (oldest strategy)", family.GAUGE),
            "refused": family("lob_tokenizer_refused_ticks_total", "Ticks refused, by reason", family.COUNTER),
            "reclaimed": family("lob_tokenizer_idle_reclaimed_total",
                                "Sequences forgotten after max_sequence_idle_microseconds", family.COUNTER),
            "le": family("lob_tokenizer_batch_size_bucket", "Requests per execute (histogram buckets)", family.COUNTER),
            "sum": family("lob_tokenizer_batch_size_sum", "Requests per execute (histogram sum)", family.COUNTER),
            "count": family("lob_tokenizer_batch_size_count", "Executes (histogram count)", family.COUNTER),
        }
        self.m_open = self.families["open"].Metric(labels=labels)
        capacity = config["sequence_batching"].get("oldest", {}).get("max_candidate_sequences")
        if capacity is not None:  # the direct strategy has no candidate limit
            self.m_capacity = self.families["capacity"].Metric(labels=labels)
            self.m_capacity.set(int(capacity))
        self.metrics = {("refused", r): self.families["refused"].Metric(labels={**labels, "reason": r})
                        for r in ("bad_tick", "no_state", "error")}
        self.metrics["reclaimed"] = self.families["reclaimed"].Metric(labels=labels)
        self.metrics.update({("le", le): self.families["le"].Metric(labels={**labels, "le": str(le)})
                             for le in (*BATCH_BUCKETS, "+Inf")})
        self.metrics.update({k: self.families[k].Metric(labels=labels) for k in ("sum", "count")})
        self.pending, self.open_sent = _Pending(), None
        self.stop_flush = threading.Event()
        self.flusher = threading.Thread(target=self._flush_every, name="lob-metrics", daemon=True)
        self.flusher.start()

    def _flush(self):
        """Send what ``execute`` aggregated: one call per changed metric."""
        for key, n in self.pending.take().items():
            self.metrics[key].increment(n)
        open_now = len(self.states)
        if open_now != self.open_sent:
            self.m_open.set(open_now)
            self.open_sent = open_now

    def _flush_every(self):
        while not self.stop_flush.wait(METRICS_FLUSH_S):
            self._flush()

    def finalize(self):
        self.stop_flush.set()
        self.flusher.join()
        self._flush()

    def execute(self, requests):
        # Requests arrive in sequence order (oldest strategy, preserve_ordering), at most one per sequence.
        self.pending.observe_batch(len(requests))
        responses = [None] * len(requests)
        rows, ticks, states = [], [], []  # the single-tick requests that reach the tokenizer, ticks, states
        for i, request in enumerate(requests):
            try:
                corrid, start, end, chunk = _read(request)
            except Exception as err:  # one broken request must not fail the batch it came in
                responses[i] = self._refuse("error", f"lob_tokenizer: {type(err).__name__}: {err}")
                continue
            state = self.tokenizer.init_state() if start else self.states.get(corrid)
            if state is None:
                responses[i] = self._refuse("no_state", f"{NO_STATE_PREFIX}sequence {corrid}: no tokenizer state "
                                            f"(never started, ended, or idle longer than {self.idle_timeout_s:g} s); "
                                            "send this tick with the START flag")
                if end:
                    self._end_downstream(corrid)
                continue
            if len(chunk) > 1:
                try:
                    tokens, features, new_state = self.tokenizer.step_chunk(chunk, state)  # (T,), (T, F)
                    responses[i] = self._respond(corrid, start, end, new_state, tokens[None], features[None])
                except TickError as err:  # the whole chunk is refused; the state does not move
                    responses[i] = self._respond(corrid, start, end, err)
                continue
            rows.append((i, corrid, start, end))
            ticks.append(TickInput.of(chunk, 0))
            states.append(state)
        if rows:
            tokens, features, new_states = self.tokenizer.step_batch(ticks, states)  # (n,), (n, F), n
            for b, (i, corrid, start, end) in enumerate(rows):
                responses[i] = self._respond(corrid, start, end, new_states[b], tokens[None, b:b + 1],
                                             features[None, b:b + 1])
        self._forget_idle()
        return responses

    def _respond(self, corrid, start, end, new_state, tokens=None, features=None):
        """Commit ``new_state`` of sequence ``corrid`` and answer TOKEN (1, T), FEATURES (1, T, F); or, when
        ``new_state`` is a TickError, refuse the request and leave the state where it was."""
        if isinstance(new_state, TickError):
            if start or end:  # a refused START opens no sequence: its next tick must START again
                self._forget(corrid)
            if end:
                self._end_downstream(corrid)
            return self._refuse("bad_tick", f"{BAD_TICK_PREFIX}sequence {corrid}: {new_state}")
        if end:
            self._forget(corrid)
        else:
            self.states[corrid] = new_state
            self.last_seen[corrid] = time.monotonic()
        return pb_utils.InferenceResponse(output_tensors=[pb_utils.Tensor(TOKEN, tokens),
                                                          pb_utils.Tensor(FEATURES, features)])

    def _refuse(self, reason, message):
        self.pending.add(("refused", reason))
        return pb_utils.InferenceResponse(output_tensors=[], error=pb_utils.TritonError(message))

    def _end_downstream(self, corrid):
        """End sequence ``corrid`` in the step models (a dummy END tick; its answer is dropped). A model that
        does not hold the sequence, or is not loaded in this profile, refuses it: nothing to end there."""
        inputs = [pb_utils.Tensor(TOKEN, np.zeros((1, 1), np.int64)),
                  pb_utils.Tensor(FEATURES, np.zeros((1, 1, self.tokenizer.n_features), np.float32))]
        for model in self.end_step_models:
            request = pb_utils.InferenceRequest(model_name=model, inputs=inputs, requested_output_names=[DIR_PROBS],
                                                correlation_id=corrid)
            request.set_flags(SEQUENCE_END_FLAG)
            try:
                request.exec()  # an error response (unknown sequence or model) is the expected no-op
            except pb_utils.TritonModelException:  # raised instead by some backend versions: the same no-op
                pass

    def _forget(self, corrid):
        self.states.pop(corrid, None)
        self.last_seen.pop(corrid, None)

    def _forget_idle(self):
        now = time.monotonic()
        if now < self.next_sweep:
            return
        self.next_sweep = now + min(self.idle_timeout_s, 1.0)
        idle = [c for c, t in self.last_seen.items() if now - t > self.idle_timeout_s]
        for corrid in idle:
            self._forget(corrid)
        if idle:
            self.pending.add("reclaimed", len(idle))


def _read(request):
    """(correlation id, START, END, Ticks of the request's T ticks) of one request (inputs (1, T, ...))."""
    x = {t.name(): t.as_numpy() for t in request.inputs()}  # one pass, not a lookup per name
    chunk = Ticks(x[TS_NS][0], x[BID_PX][0], x[BID_SZ][0], x[ASK_PX][0], x[ASK_SZ][0], x[TRADE_PX][0],
                  x[TRADE_SZ][0], x[TRADE_SIDE][0])
    if not len(chunk):
        raise ValueError("a request carries T >= 1 ticks, got T = 0")
    return int(x["CORRID"].flat[0]), bool(x["START"].flat[0]), bool(x["END"].flat[0]), chunk
