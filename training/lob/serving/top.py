"""``lob top``: a live terminal view (rich) of one server and, with Redis, of the signals it feeds.

Every ``interval_s`` it reads Triton's statistics (gRPC, per model: inferences, queue and compute time), the
server's ``/metrics`` (the tokenizer's open sequences and capacity, refused ticks by reason, idle reclaims,
batch sizes; Triton's latency summaries, p50/p99 over their last 60 s) and, with ``redis_url``, each
symbol's latest signal through `lobclient.SignalReader` and the sidecar's heartbeat. Rates are differences
between two readings divided by the time between them. An unreachable source is shown as an error line and
read again next time (the view outlives a server restart).
"""
from __future__ import annotations

import json
import time
import urllib.request
from dataclasses import dataclass, field
from typing import Optional

from lob.contract import HORIZONS

REASONS = ("bad_tick", "no_state", "error")  # lob_tokenizer_refused_ticks_total{reason} (docs/serving.md)


@dataclass
class Reading:
    """One reading of the server at wall time ``t`` (s). ``models``: name -> {inferences, success, queue_ns,
    compute_ns}; ``metrics``: (metric name, sorted label items) -> value of every sample on /metrics."""
    t: float
    models: dict[str, dict[str, int]] = field(default_factory=dict)
    metrics: dict[tuple[str, tuple], float] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)

    def value(self, name: str, **labels) -> Optional[float]:
        """Sum of the samples ``name`` whose labels include ``labels``; None when there is none."""
        found = [v for (n, items), v in self.metrics.items() if n == name and set(labels.items()) <= set(items)]
        return sum(found) if found else None


def read_server(url: str, metrics_url: str) -> Reading:
    """Triton's statistics over gRPC at ``url`` and the samples of ``metrics_url``."""
    import tritonclient.grpc as grpcclient
    from prometheus_client.parser import text_string_to_metric_families

    reading = Reading(time.time())
    try:
        with grpcclient.InferenceServerClient(url) as client:
            for s in client.get_inference_statistics(client_timeout=5).model_stats:
                st = s.inference_stats
                reading.models[s.name] = {
                    "inferences": s.inference_count, "success": st.success.count, "queue_ns": st.queue.ns,
                    "compute_ns": st.compute_input.ns + st.compute_infer.ns + st.compute_output.ns}
    except Exception as err:  # InferenceServerException, connection refused: shown, retried next reading
        reading.errors.append(f"statistics {url}: {err}")
    try:
        with urllib.request.urlopen(metrics_url, timeout=5) as r:
            text = r.read().decode()
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                reading.metrics[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    except Exception as err:  # URLError, a malformed page
        reading.errors.append(f"metrics {metrics_url}: {err}")
    return reading


def read_signals(reader, prefix: str) -> tuple[list, Optional[float]]:
    """(each symbol's `lobclient.Signal`, sorted by symbol; the heartbeat's age in s or None when absent)."""
    symbols = sorted(s.decode() for s in reader.redis.smembers(f"{prefix}:symbols"))
    beat = reader.redis.get(f"{prefix}:heartbeat")
    age = None if beat is None else (time.time_ns() - json.loads(beat)["written_at_ns"]) / 1e9
    return [reader.latest(s) for s in symbols], age


def _rate(cur: Reading, prev: Optional[Reading], get) -> Optional[float]:
    """Per second change of ``get(reading)`` between two readings (None on the first, or when absent)."""
    if prev is None or cur.t <= prev.t:
        return None
    a, b = get(prev), get(cur)
    return None if a is None or b is None else max(0.0, b - a) / (cur.t - prev.t)


def _fmt(x: Optional[float], spec: str = ",.0f") -> str:
    return "–" if x is None or x != x else format(x, spec)  # x != x: NaN (an empty summary window)


def render(url: str, cur: Reading, prev: Optional[Reading], signals: Optional[tuple[list, Optional[float]]] = None,
           signal_error: Optional[str] = None):
    """The frame for reading ``cur`` (``prev``: the reading before, for rates)."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    parts = [Text(f"lob top  {url}  {time.strftime('%H:%M:%S', time.localtime(cur.t))}", style="bold")]
    parts += [Text(e, style="red") for e in cur.errors]

    models = Table(title="Models (Triton statistics; latency p50/p99 from /metrics, last 60 s)", title_justify="left")
    for col in ("model", "ticks/s", "queue µs", "compute µs", "p50 µs", "p99 µs", "ticks"):
        models.add_column(col, justify="left" if col == "model" else "right")
    for name in sorted(cur.models):
        m, p = cur.models[name], prev.models.get(name) if prev else None
        dt_success = m["success"] - p["success"] if p else 0
        models.add_row(
            name, _fmt(_rate(cur, prev, lambda r: r.models.get(name, {}).get("inferences")), ",.1f"),
            _fmt((m["queue_ns"] - p["queue_ns"]) / dt_success / 1e3 if dt_success > 0 else None),
            _fmt((m["compute_ns"] - p["compute_ns"]) / dt_success / 1e3 if dt_success > 0 else None),
            _fmt(cur.value("nv_inference_request_summary_us", model=name, quantile="0.5")),
            _fmt(cur.value("nv_inference_request_summary_us", model=name, quantile="0.99")),
            _fmt(m["inferences"]))
    parts.append(models)

    tok = Table(title="Tokenizers (/metrics)", title_justify="left")
    for col in ("model", "open sequences", "capacity", *(f"refused/s {r}" for r in REASONS), "refused total",
                "idle reclaims", "batch (mean)"):
        tok.add_column(col, justify="left" if col == "model" else "right")
    for name in sorted({dict(items)["model"] for n, items in cur.metrics if n == "lob_tokenizer_open_sequences"}):
        def get(metric, reading=cur, **labels):
            return reading.value(metric, model=name, **labels)

        refused = [_rate(cur, prev, lambda r, reason=reason: get("lob_tokenizer_refused_ticks_total", r, reason=reason))
                   for reason in REASONS]
        batch_sum = _rate(cur, prev, lambda r: get("lob_tokenizer_batch_size_sum", r))
        batch_count = _rate(cur, prev, lambda r: get("lob_tokenizer_batch_size_count", r))
        tok.add_row(name, _fmt(get("lob_tokenizer_open_sequences")),
                    _fmt(get("lob_tokenizer_max_candidate_sequences")),  # summed: one batcher per instance
                    *(_fmt(x, ",.1f") for x in refused), _fmt(get("lob_tokenizer_refused_ticks_total")),
                    _fmt(get("lob_tokenizer_idle_reclaimed_total")),
                    _fmt(batch_sum / batch_count if batch_sum is not None and batch_count else None, ",.1f"))
    parts.append(tok)

    if signal_error is not None:
        parts.append(Text(signal_error, style="red"))
    elif signals is not None:
        rows, beat_age = signals
        sig = Table(title=f"Signals (Redis; heartbeat {'absent' if beat_age is None else f'{beat_age:.1f} s old'})",
                    title_justify="left")
        for col in ("symbol", *(f"P(up) {h}" for h in HORIZONS), "age s", "warm", "status"):
            sig.add_column(col, justify="left" if col in ("symbol", "status") else "right")
        now = time.time_ns()
        for s in rows:
            age = None if s.written_at_ns is None else (now - s.written_at_ns) / 1e9
            sig.add_row(s.symbol, *(f"{p:.3f}" for p in s.dir_probs[:, 2]), _fmt(age, ".1f"),
                        "–" if s.warm is None else ("yes" if s.warm else "no"),
                        "live" if not s.neutral else f"neutral: {s.reason}")
        parts.append(sig)
    return Group(*parts)


def run_top(url: str, metrics_url: Optional[str] = None, redis_url: Optional[str] = None, prefix: str = "lob",
            max_age_s: float = 1.0, interval_s: float = 1.0) -> None:
    """Redraw the view every ``interval_s`` until Ctrl-C. ``metrics_url`` default: port 8002 of ``url``'s host."""
    from rich.live import Live

    metrics_url = metrics_url or f"http://{url.rsplit(':', 1)[0]}:8002/metrics"
    reader = None
    if redis_url is not None:
        import lobclient

        reader = lobclient.SignalReader(redis_url, prefix=prefix, max_age_s=max_age_s)
    prev = None
    with Live(auto_refresh=False, screen=False) as live:
        try:
            while True:
                cur = read_server(url, metrics_url)
                signals, signal_error = None, None
                if reader is not None:
                    try:
                        signals = read_signals(reader, prefix)
                    except Exception as err:  # redis.RedisError: shown, retried next reading
                        signal_error = f"redis {redis_url}: {err}"
                live.update(render(url, cur, prev, signals, signal_error), refresh=True)
                prev = cur
                time.sleep(interval_s)
        except KeyboardInterrupt:
            pass
