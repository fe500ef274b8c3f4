"""Monitoring against the real thing. deploy/prometheus and deploy/grafana: a real Prometheus, configured by
deploy/prometheus/prometheus.yml (targets, 1 s intervals and alert ``for: 0s`` set by the test), scrapes the
session's tritonserver (the launcher `lob serve` runs) and a real `lob signal --metrics-port` writing to a
real redis-server, and evaluates lob.rules.yml. Good and bad ticks go through the server; the recording
rules return their series, the refused-ticks alert fires (and the others stay quiet), and every query of
the Grafana dashboard returns data. `lob top`: run in a tmux pseudo-terminal beside them, its screen shows
the live rates, the server's counts and the signals in Redis."""
from __future__ import annotations

import json
import math
import os
import re
import shlex
import subprocess
import threading
from pathlib import Path

import numpy as np
import pytest

import lobclient
from lob.data.schema import load_dataset
from lob.serving.replay import interleave

from .conftest import free_port, read_config
from .services import Prometheus, find_binary, stop_process, wait_listening
from .test_signal import LOB, tick_line, wait_for

yaml = pytest.importorskip("yaml", reason="pyyaml is the test extra: pip install -e '.[test]'")
pytestmark = pytest.mark.server

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS_DIR, DASHBOARD = ROOT / "deploy" / "prometheus", ROOT / "deploy" / "grafana" / "lob.json"
N_BAD = 120  # bad ticks within seconds: 2/s over rate()'s 1 minute window, above the alert's 1/s
QUIET = ("LobTritonDown", "LobTritonNotReady", "LobOpenSequencesNearCapacity", "LobSignalHeartbeatStale",
         "LobSignalDown")  # nothing provokes these here


@pytest.fixture(scope="module")
def ticks(dataset_dir) -> list[lobclient.Tick]:
    data = load_dataset(dataset_dir)
    return list(interleave({s: data[s].slice(0, N_BAD // 2) for s in sorted(data)[:2]}))


@pytest.fixture(scope="module")
def sidecar(server, redis_server, ticks, tmp_path_factory):
    """`lob signal --stdin --metrics-port P` fed the ticks and kept running (stdin open): (process, port)."""
    port, log = free_port(), tmp_path_factory.mktemp("signal") / "signal.log"
    proc = subprocess.Popen([LOB, "signal", "--url", server.url, "--redis", redis_server.url, "--stdin",
                             "--prefix", "prom", "--metrics-port", str(port), "--metrics-addr", "127.0.0.1"],
                            stdin=subprocess.PIPE, stdout=log.open("wb"), stderr=subprocess.STDOUT, text=True)
    try:
        wait_listening(port, proc, "lob signal", log, timeout_s=60)
        proc.stdin.writelines(tick_line(t) for t in ticks)
        proc.stdin.flush()
        yield proc, port
    finally:
        proc.stdin.close()
        stop_process(proc)


@pytest.fixture(scope="module")
def rules() -> dict:
    return yaml.safe_load((PROMETHEUS_DIR / "lob.rules.yml").read_text())


@pytest.fixture(scope="module")
def prometheus(server, sidecar, rules, tmp_path_factory):
    find_binary("prometheus")
    config = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())
    assert config["rule_files"] == ["lob.rules.yml"]
    config["global"].update(scrape_interval="1s", evaluation_interval="1s")
    targets = {"lob-triton": f"127.0.0.1:{server.ports['metrics']}", "lob-signal": f"127.0.0.1:{sidecar[1]}"}
    assert {job["job_name"] for job in config["scrape_configs"]} == set(targets)
    for job in config["scrape_configs"]:
        job["static_configs"] = [{"targets": [targets[job["job_name"]]]}]
    fast = json.loads(json.dumps(rules))  # the same rules, firing without their `for` wait
    for group in fast["groups"]:
        for rule in group["rules"]:
            if "alert" in rule:
                rule["for"] = "0s"
    with Prometheus(tmp_path_factory.mktemp("prometheus"), free_port(), config, {"lob.rules.yml": fast}) as prom:
        wait_for(lambda: len([s for s in prom.query("up") if s["value"][1] == "1"]) == 2, 30,
                 "Prometheus scraping the server and the sidecar", poll_s=0.2)
        yield prom


def total(prom: Prometheus, expr: str) -> float:
    (sample,) = prom.query(f"sum({expr})")
    return float(sample["value"][1])


@pytest.fixture(scope="module")
def traffic(server, prometheus, ticks) -> dict:
    """Good ticks of two symbols with N_BAD bad ones (NaN best bid) between them, streamed once the bad-tick
    counter has been scraped; returns the refused counts the client saw and Prometheus recorded."""
    bad_counter = 'lob_tokenizer_refused_ticks_total{job="lob-triton",model="lob_tokenizer",reason="bad_tick"}'
    before = total(prometheus, bad_counter)
    mixed = []
    for i, t in enumerate(ticks):
        mixed.append(t)
        if i < N_BAD:
            bid = np.array(t.bid_px, np.float64)
            bid[0] = np.nan
            mixed.append(lobclient.Tick(t.symbol, t.ts_ns, bid, t.bid_sz, t.ask_px, t.ask_sz))
    refused = [p.error for p in lobclient.stream(mixed, url=server.url) if p.error is not None]
    assert len(refused) == N_BAD and all("LOB_BAD_TICK: " in e for e in refused), refused[:3]
    wait_for(lambda: total(prometheus, bad_counter) >= before + N_BAD, 15, "the bad ticks scraped", poll_s=0.2)
    return {"client": len(refused), "prometheus": total(prometheus, bad_counter) - before}


def test_recording_rules_return_their_series_and_refused_ticks_fire_an_alert(prometheus, rules, traffic, server):
    assert traffic["prometheus"] == traffic["client"] == N_BAD  # nothing else sent bad ticks meanwhile
    firing = wait_for(lambda: [a for a in prometheus.alerts()
                               if a["labels"]["alertname"] == "LobTicksRefused" and a["state"] == "firing"], 20,
                      "LobTicksRefused firing", poll_s=0.2)
    triton = {"job": "lob-triton", "instance": f"127.0.0.1:{server.ports['metrics']}"}
    assert [a["labels"] for a in firing] == [{"alertname": "LobTicksRefused", "severity": "warning", **triton,
                                              "model": "lob_tokenizer", "reason": "bad_tick"}]
    assert "bad_tick" in firing[0]["annotations"]["summary"]
    assert not [a for a in prometheus.alerts() if a["labels"]["alertname"] in QUIET]

    def series(record: str) -> dict[tuple, float]:
        return {tuple(sorted((k, v) for k, v in s["metric"].items() if k != "__name__")): float(s["value"][1])
                for s in prometheus.query(record)}

    def of(record: str, **labels) -> float:
        return series(record)[tuple(sorted({**triton, **labels}.items()))]

    records = [r["record"] for g in rules["groups"] for r in g["rules"] if "record" in r]
    assert len(records) >= 9 and all(series(r) for r in records), [r for r in records if not series(r)]
    for model in ("lob_stream", "lob_tokenizer", "mamba_lob_onnx"):
        assert of("instance_model:nv_inference_count:rate1m", model=model) > 0
        assert of("instance_model:nv_inference_queue_duration_us_per_request:rate1m", model=model) >= 0
        assert of("instance_model:nv_inference_compute_duration_us_per_request:rate1m", model=model) > 0
    assert of("instance_model_reason:lob_tokenizer_refused_ticks:rate1m", model="lob_tokenizer", reason="bad_tick") > 1
    assert 1 <= of("instance_model:lob_tokenizer_batch_size:p50_1m", model="lob_tokenizer") \
        <= of("instance_model:lob_tokenizer_batch_size:p99_1m", model="lob_tokenizer")
    # the sidecar holds its two symbols' sequences open
    assert 0 < of("instance_model:lob_tokenizer_open_sequences:ratio_capacity", model="lob_tokenizer") < 0.9
    assert of("instance_model:lob_tokenizer_idle_reclaimed:increase5m", model="lob_tokenizer") >= 0
    (age,) = series("instance:lob_signal_heartbeat_age_seconds").values()
    assert 0 <= age < 5  # beats every TTL/3 (0.7 s), scraped every second


def test_every_dashboard_query_returns_data(prometheus, traffic):
    dashboard = json.loads(DASHBOARD.read_text())
    targets = [(p["title"], t["expr"]) for p in dashboard["panels"] for t in p["targets"]]
    assert len(targets) >= 9
    for title, expr in targets:
        query = expr.replace("$instance", ".*")  # the dashboard's one template variable, "All"
        assert "$" not in query, (title, expr)
        values = [float(s["value"][1]) for s in prometheus.query(query)]
        assert values and not all(math.isnan(v) for v in values), f"panel {title!r}: {query} returned no data"


def cells(screen: str, first: str, table: str = "") -> list[str]:
    """The cells of the first table row whose first cell is ``first`` on a captured screen, below the line
    holding ``table`` (a table's title)."""
    lines = screen.splitlines()
    for line in lines[next((i for i, line in enumerate(lines) if table in line), len(lines)):]:
        row = [c.strip() for c in line.split("│")[1:-1]]
        if row and row[0] == first:
            return row
    raise AssertionError(f"no row {first!r} on the screen:\n{screen}")


def number(cell: str) -> float:
    return float(cell.replace(",", ""))


def test_lob_top_shows_live_rates_counts_and_signals(server, redis_server, sidecar, traffic, ticks, tmp_path):
    import tritonclient.grpc as grpcclient

    tmux, sock = find_binary("tmux"), tmp_path / "tmux.sock"
    top = [LOB, "top", "--url", server.url, "--metrics-url", f"http://127.0.0.1:{server.ports['metrics']}/metrics",
           "--redis", redis_server.url, "--prefix", "prom", "--max-age", "3600", "--interval", "0.5"]
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}  # rich reads the pane's size
    subprocess.run([tmux, "-S", sock, "new-session", "-d", "-x", "220", "-y", "50", shlex.join(top)], check=True, env=env)

    def screen() -> str:
        return subprocess.run([tmux, "-S", sock, "capture-pane", "-p"], capture_output=True, text=True).stdout

    def showing(check) -> str | None:
        """The screen when ``check(screen)`` holds, else None (also while a row is missing: a frame not yet drawn)."""
        s = screen()
        try:
            return s if check(s) else None
        except (AssertionError, ValueError):
            return None

    stop = threading.Event()

    def feed():  # fresh sequences (a new namespace per call) until told to stop
        while not stop.is_set():
            list(lobclient.stream(ticks[:40], url=server.url))

    feeder = threading.Thread(target=feed, daemon=True)
    try:
        feeder.start()
        wait_for(lambda: showing(lambda s: number(cells(s, "lob_stream")[1]) > 0), 30,
                 "lob top showing lob_stream ticks/s > 0 while ticks flow", poll_s=0.2)
        stop.set()
        feeder.join(30)
        with grpcclient.InferenceServerClient(server.url) as client:  # what the server says it has done
            done = {s.name: s.inference_count for s in client.get_inference_statistics().model_stats}
        symbols = sorted({t.symbol for t in ticks})

        def complete(s: str) -> bool:  # the counts, and a whole frame: the tokenizer and signal tables drawn too
            return (all(number(cells(s, m)[6]) == done[m] for m in done)
                    and bool(cells(s, "lob_tokenizer", table="Tokenizers"))
                    and all(cells(s, symbol, table="Signals") for symbol in symbols))

        shown = wait_for(lambda: showing(complete), 10, f"lob top showing the server's inference counts {done}",
                         poll_s=0.2)
        assert set(done) >= {"lob_stream", "lob_tokenizer", "mamba_lob_onnx"}
        # the tokenizer: the sidecar's 2 sequences open, the config's capacity, the bad ticks counted
        _, open_now, capacity, *_, refused_total, _, _ = cells(shown, "lob_tokenizer", table="Tokenizers")
        assert number(open_now) >= 2
        assert number(capacity) == read_config(server.repo / "lob_tokenizer" / "config.pbtxt") \
            .sequence_batching.oldest.max_candidate_sequences
        assert number(refused_total) >= traffic["client"]
        # the signals: what a reader of the sidecar's Redis gets, and a fresh heartbeat
        beat = re.search(r"heartbeat (\d+\.\d) s old", shown)
        assert beat and float(beat.group(1)) < 5, shown
        reader = lobclient.SignalReader(redis_server.url, prefix="prom", max_age_s=3600)
        for symbol in symbols:
            sig = reader.latest(symbol)
            assert not sig.neutral, sig.reason
            row = cells(shown, symbol, table="Signals")
            assert row[1:4] == [f"{p:.3f}" for p in sig.dir_probs[:, 2]], row
            assert row[5:] == ["yes" if sig.warm else "no", "live"], row
    finally:
        stop.set()
        subprocess.run([tmux, "-S", sock, "kill-server"], capture_output=True)  # its own server: ends lob top
