"""The signal sidecar (`lob signal`) with a real redis-server and a real tritonserver: signals land and equal
the served predictions; kill -9 of the sidecar sends every reader to neutral within the heartbeat TTL,
saying why; a restarted sidecar's signals resume."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import lobclient
from lob.cli import app
from lob.contract import CLASSES, HORIZONS
from lob.data.schema import load_dataset
from lob.serving.replay import interleave

from .conftest import free_port
from .test_stream import offline_rows

pytestmark = pytest.mark.server

K = 30  # ticks per symbol and phase
TTL_S = 2.0  # beats every TTL/3: 1.3 s of slack for a starved sidecar on a loaded machine
LOB = str(Path(sys.executable).parent / "lob")


@pytest.fixture(scope="module")
def dataset(dataset_dir):
    return {s: t.slice(0, 2 * K) for s, t in load_dataset(dataset_dir).items()}


def served_latest(ticks, url) -> dict[str, lobclient.Prediction]:
    """Each symbol's last prediction of ``ticks`` streamed from fresh sequences (own namespace)."""
    return {p.symbol: p for p in lobclient.stream(ticks, url=url, namespace="reference")}


def tick_line(t: lobclient.Tick) -> str:
    return json.dumps({"symbol": t.symbol, "ts_ns": t.ts_ns, "bid_px": t.bid_px.tolist(), "bid_sz": t.bid_sz.tolist(),
                       "ask_px": t.ask_px.tolist(), "ask_sz": t.ask_sz.tolist(), "trade_px": t.trade_px,
                       "trade_sz": t.trade_sz, "trade_side": t.trade_side}) + "\n"


def start_sidecar(server, redis_server, log: Path, prefix: str) -> subprocess.Popen:
    return subprocess.Popen([LOB, "signal", "--url", server.url, "--redis", redis_server.url, "--stdin",
                             "--ttl", str(TTL_S), "--prefix", prefix],
                            stdin=subprocess.PIPE, stdout=log.open("ab"), stderr=subprocess.STDOUT, text=True)


def wait_for(condition, timeout_s: float, what: str, poll_s: float = 0.02):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if (value := condition()):
            return value
        time.sleep(poll_s)
    raise AssertionError(f"not within {timeout_s:g} s: {what}")


def assert_signal_is(sig: lobclient.Signal, served: lobclient.Prediction, t_written: tuple[int, int]):
    assert not sig.neutral and sig.reason is None
    np.testing.assert_array_equal(sig.dir_probs, served.dir_probs)  # written as repr(float): exact
    assert (sig.ts_ns, sig.model_version, sig.warm) == (served.ts_ns, served.model_version, served.warm)
    assert t_written[0] <= sig.written_at_ns <= t_written[1]


def test_signals_land_go_neutral_when_the_sidecar_dies_and_resume(server, redis_server, dataset, tmp_path):
    import redis

    r = redis.Redis.from_url(redis_server.url)
    first = list(interleave({s: t.slice(0, K) for s, t in dataset.items()}))
    second = list(interleave({s: t.slice(K, 2 * K) for s, t in dataset.items()}))
    served_first, served_second = served_latest(first, server.url), served_latest(second, server.url)
    symbols = sorted(dataset)
    live = lobclient.SignalReader(redis_server.url, prefix="live", max_age_s=60)
    log = tmp_path / "sidecar.log"

    assert all(live.latest(s).neutral and "heartbeat" in live.latest(s).reason for s in symbols)  # none running
    t0 = time.time_ns()
    sidecar = start_sidecar(server, redis_server, log, "live")
    try:
        sidecar.stdin.writelines(tick_line(t) for t in first)
        sidecar.stdin.flush()
        wait_for(lambda: all(live.latest(s).ts_ns == served_first[s].ts_ns for s in symbols), 30,
                 f"the first {K} ticks' signals in redis; log:\n{log.read_text()}")
        for s in symbols:
            assert_signal_is(live.latest(s), served_first[s], (t0, time.time_ns()))
        assert {m.decode() for m in r.smembers("live:symbols")} == set(symbols)

        # idle: no ticks for 1.5 TTLs, the heartbeat stays (refreshed) and only the age grows
        time.sleep(1.5 * TTL_S)
        assert not live.latest(symbols[0]).neutral
        stale = lobclient.SignalReader(redis_server.url, prefix="live", max_age_s=TTL_S).latest(symbols[0])
        assert stale.neutral and "stale" in stale.reason and stale.ts_ns == served_first[symbols[0]].ts_ns
        assert np.all(stale.dir_probs[:, CLASSES.index("flat")] == 1.0) and stale.dir_probs.shape == (len(HORIZONS), 3)

        os.kill(sidecar.pid, signal.SIGKILL)
        t_kill = time.monotonic()
        sidecar.wait(10)
        down = wait_for(lambda: (sig := live.latest(symbols[0])).neutral and sig, TTL_S + 1.0,
                        "the reader falling back to neutral after kill -9 (heartbeat TTL)")
        assert time.monotonic() - t_kill <= TTL_S + 1.0
        assert "heartbeat" in down.reason and "down" in down.reason
        assert r.exists("live:signal:" + symbols[0])  # the signal is still there: the heartbeat decided
        assert all(live.latest(s).neutral for s in symbols)
    finally:
        if sidecar.poll() is None:
            sidecar.kill()
            sidecar.wait()

    t1 = time.time_ns()
    restarted = start_sidecar(server, redis_server, log, "live")
    try:
        restarted.stdin.writelines(tick_line(t) for t in second)
        restarted.stdin.flush()
        wait_for(lambda: all(live.latest(s).ts_ns == served_second[s].ts_ns for s in symbols), 30,
                 f"signals after the restart; log:\n{log.read_text()}")
        for s in symbols:  # the restarted sidecar streams fresh sequences from tick K on
            assert_signal_is(live.latest(s), served_second[s], (t1, time.time_ns()))
        restarted.send_signal(signal.SIGTERM)  # a stop (kubectl delete): the heartbeat goes at once, no TTL wait
        assert restarted.wait(30) == 128 + signal.SIGTERM, log.read_text()
        assert r.get("live:heartbeat") is None
        gone = live.latest(symbols[0])
        assert gone.neutral and "heartbeat" in gone.reason
    finally:
        if restarted.poll() is None:
            restarted.kill()
            restarted.wait()


def test_lob_signal_replays_a_dataset_into_redis(server, redis_server, dataset_dir, offline):
    import redis

    n = 25
    result = CliRunner().invoke(app, ["signal", "--url", server.url, "--redis", redis_server.url, "--data",
                                      str(dataset_dir), "--limit", str(n), "--prefix", "replay", "--shards", "2"])
    assert result.exit_code == 0, result.output
    r = redis.Redis.from_url(redis_server.url)
    assert r.get("replay:heartbeat") is None  # the replay ended: heartbeat deleted
    for symbol in offline:
        fields = {k.decode(): v.decode() for k, v in r.hgetall(f"replay:signal:{symbol}").items()}
        assert int(fields["seq"]) == n - 1
        dir_probs, _, _ = offline_rows(offline, symbol, n)
        got = np.array([[float(fields[f"p_{c}_h{h}"]) for c in CLASSES] for h in HORIZONS])
        assert np.abs(got - dir_probs[-1]).max() <= 1e-4


def test_reader_is_neutral_with_a_reason_for_an_unknown_symbol_or_no_redis(redis_server):
    sink = lobclient.RedisSink(redis_server.url, prefix="unit", ttl_s=5)
    probs = np.array([[0.1, 0.2, 0.7], [0.3, 0.3, 0.4], [0.5, 0.25, 0.25]], np.float32)
    bad = lobclient.Prediction("AAA", 2, 1, error="refused")
    assert sink.write([lobclient.Prediction("AAA", 1, 0, dir_probs=probs, model_version="v1"), bad]) == 1
    reader = lobclient.SignalReader(redis_server.url, prefix="unit", max_age_s=5)
    sig = reader.latest("AAA")
    assert not sig.neutral and sig.ts_ns == 1 and sig.model_version == "v1"  # the refused tick is no signal
    np.testing.assert_array_equal(sig.dir_probs, probs)
    unknown = reader.latest("ZZZ")
    assert unknown.neutral and "no signal for ZZZ" in unknown.reason
    nowhere = lobclient.SignalReader(f"redis://127.0.0.1:{free_port()}/0").latest("AAA")
    assert nowhere.neutral and "redis unreachable" in nowhere.reason


def test_a_malformed_stdin_line_stops_the_sidecar_naming_the_line(server, redis_server, dataset):
    t = next(interleave(dataset))
    lines = tick_line(t) + tick_line(t).replace('"bid_sz"', '"bid_size"')
    result = CliRunner().invoke(app, ["signal", "--url", server.url, "--redis", redis_server.url, "--stdin",
                                      "--prefix", "bad"], input=lines)
    assert result.exit_code == 2
    assert "stdin, row 2" in result.output and "bid_s" in result.output


def test_serving_doc_signal_reader_example_runs(redis_server):
    import contextlib
    import io
    import re

    doc = (Path(__file__).resolve().parents[2] / "docs" / "serving.md").read_text()
    (example,) = [b for b in re.findall(r"```python\n(.*?)```", doc, flags=re.S) if "SignalReader(" in b]
    url = "redis://localhost:6379/0"
    assert url in example
    code = example.replace(url, redis_server.url)
    probs = np.full((3, 3), 1 / 3, np.float32)
    sink = lobclient.RedisSink(redis_server.url, ttl_s=5)
    sink.beat()
    for expect in ("flat: no signal for AAPL", "[0.33333334 0.33333334 0.33333334] v7 42"):
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            exec(code, {})  # noqa: S102
        assert out.getvalue().startswith(expect), out.getvalue()
        sink.write([lobclient.Prediction("AAPL", 42, 0, dir_probs=probs, model_version="v7")])
    sink.stop()
