"""deploy/prometheus and deploy/grafana against the real thing: a real Prometheus, configured by
deploy/prometheus/prometheus.yml (targets, 1 s intervals and alert ``for: 0s`` set by the test), scrapes the
session's tritonserver (the launcher `lob serve` runs) and a real `lob signal --metrics-port` writing to a
real redis-server, and evaluates lob.rules.yml. Good and bad ticks go through the server; the recording
rules return their series, the refused-ticks alert fires (and the others stay quiet), and every query of
the Grafana dashboard returns data."""
from __future__ import annotations

import json
import math
import subprocess
from pathlib import Path

import numpy as np
import pytest

import lobclient
from lob.data.schema import load_dataset
from lob.serving.replay import interleave

from .conftest import free_port
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
