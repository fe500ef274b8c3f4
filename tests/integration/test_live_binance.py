"""`lob live binance` against loopback servers replaying a recorded Binance session (`binance_replay`): the
feed resyncs after a dropped connection, a forced gap and a malformed message without a repeated tick and
marks each; and, with a
real tritonserver serving a model trained a few steps on the imported recording (the smoke of import ->
train -> serve -> stream on a real crypto book), its predictions equal ``lob import binance-ws`` +
``lob predict`` of the same recording."""
from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from lob.cli import app
from lob.data.binance_ws import import_binance_ws
from lob.data.schema import read_ticks
from lob.serving.live import BinanceFeed

from .binance_replay import BinanceReplay, write_head
from .conftest import free_port

RECORDING = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "binance" / "BTCUSDT-usdm-ws-2024-08-08.gz"
pytestmark = pytest.mark.skipif(not RECORDING.exists(), reason="../shared/data/binance (the recorded sessions) is absent")
TOL = 1e-5


def rows(t) -> list[tuple]:
    """Each tick as a hashable row (time, book, trade)."""
    return [(int(t.ts_ns[i]), *t.bid_px[i], *t.bid_sz[i], *t.ask_px[i], *t.ask_sz[i], float(t.trade_px[i]),
             float(t.trade_sz[i]), int(t.trade_side[i])) for i in range(len(t))]


def test_feed_resyncs_after_a_drop_a_gap_and_a_bad_message(tmp_path):
    head = write_head(RECORDING, 4000, tmp_path / "head.gz")
    reference = read_ticks(import_binance_ws([head], tmp_path / "data", time="exchange")[0])
    with gzip.open(head, "rt") as f:
        forced_gap = next(i for i, line in enumerate(f) if i > 2500 and '"e":"depthUpdate"' in line)
    malformed = json.dumps({"stream": "btcusdt@depth@100ms", "data": {"e": "depthUpdate", "s": "BTCUSDT", "U": 1}})
    replay = BinanceReplay(head, drop_after=1500, skip=frozenset({forced_gap}), inject={3300: malformed})
    log: list[str] = []
    feed = BinanceFeed(["BTCUSDT"], ws_url=replay.ws_url, rest_url=replay.rest_url, time="exchange", log=log.append)
    got, last = [], rows(reference)[-1]
    try:
        for tick in feed.ticks(max_seconds=120):
            got.append((tick.ts_ns, *tick.bid_px, *tick.bid_sz, *tick.ask_px, *tick.ask_sz, tick.trade_px, tick.trade_sz,
                        tick.trade_side))
            if got[-1] == last:
                break
    finally:
        replay.close()
    assert got and got[-1] == last, "the feed never caught up with the end of the recording"
    counts = feed.builders["BTCUSDT"].counts
    # the drop, the forced gap and the malformed message (named in the log) each resynced the book
    assert feed.counts["disconnects"] == 1 and feed.counts["refused"] == 1 and counts["gaps"] == 3, log
    assert counts["resyncs"] == 4 and any("BTCUSDT: refused message (field 'pu' missing)" in line for line in log)
    starts = set(feed.session_starts["BTCUSDT"])
    # each tick is the next imported tick with the same book and trade (identical rows exist: trades of one ms
    # at one price), except the first of a session (always sent, even when its book made no import tick). Times
    # are not compared: a message lost with the connection no longer raises the non-decreasing exchange clock
    occurrences: dict[tuple, list[int]] = {}
    for i, row in enumerate(rows(reference)):
        occurrences.setdefault(row[1:], []).append(i)
    positions, previous = [], -1  # each tick's index in the import (None: a session's first, not there)
    for row in got:
        later = [i for i in occurrences.get(row[1:], ()) if i > previous]
        assert later or row[0] in starts, f"tick {row[:1]} is not the import's next tick: repeated or invented"
        positions.append(later[0] if later else None)
        previous = later[0] if later else previous
    known = [p for p in positions if p is not None]
    missing = sorted(set(range(known[0], known[-1] + 1)) - set(known))
    assert missing, "nothing was lost: the drop and the gap were not exercised"
    # ticks were lost in three places, and the tick after each loss starts a session
    holes = [m for k, m in enumerate(missing) if k == 0 or missing[k - 1] != m - 1]
    assert len(holes) == 3 and len(starts) == 4
    for hole in holes:
        k = next(k for k, p in enumerate(positions) if p is not None and p > hole)  # the first tick after the loss
        first = k - 1 if positions[k - 1] is None else k  # or the session's first tick just before it
        assert got[first][0] in starts and positions[first - 1] is not None and positions[first - 1] < hole


@pytest.mark.server
@pytest.mark.slow
def test_live_equals_import_and_predict_on_a_model_trained_on_the_recording(tmp_path, request):
    from lob.evaluation.predict import predict
    from lob.export.repository import export_repository
    from lob.serving.launcher import TritonServer

    runner = CliRunner()
    head = write_head(RECORDING, 2500, tmp_path / "head.gz")
    result = runner.invoke(app, ["import", "binance-ws", str(head), "--out", str(tmp_path / "data"), "--time", "exchange"])
    assert result.exit_code == 0, result.output
    n_ticks = len(read_ticks(tmp_path / "data" / "BTCUSDT" / "2024-08-08.parquet"))
    result = runner.invoke(app, ["train", "--data", str(tmp_path / "data"), "--out", str(tmp_path / "run"),
                                 "--max-steps", "3", "--window", "64", "--batch-size", "2"])
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "run" / "train_metrics.json").read_text())["steps_run"] == 3
    offline = pq.read_table(predict(tmp_path / "run", tmp_path / "data", tmp_path / "offline.parquet"))
    export_repository(tmp_path / "run", tmp_path / "repo")
    replay = BinanceReplay(head)
    try:
        with TritonServer(tmp_path / "repo", "cpu", grpc_port=free_port(), http_port=free_port(),
                          metrics_port=free_port(), log_file=tmp_path / "tritonserver.log") as server:
            live = ["live", "binance", "--symbols", "BTCUSDT", "--url", server.url, "--ws-url", replay.ws_url,
                    "--rest-url", replay.rest_url, "--time", "exchange", "--max-ticks", str(n_ticks), "--max-seconds", "300"]
            result = runner.invoke(app, live + ["--out", str(tmp_path / "live.parquet")])
            replay.close()
            # the same feed through the signal sidecar: the last signal in Redis is the last tick's prediction
            redis_server = request.getfixturevalue("redis_server")
            replay = BinanceReplay(head)
            live[live.index("--ws-url") + 1], live[live.index("--rest-url") + 1] = replay.ws_url, replay.rest_url
            sidecar = runner.invoke(app, live + ["--redis", redis_server.url, "--prefix", "live"])
    finally:
        replay.close()
    assert sidecar.exit_code == 0, sidecar.output
    import redis

    signal = redis.Redis.from_url(redis_server.url).hgetall("live:signal:BTCUSDT")
    assert int(signal[b"ts_ns"]) == offline.column("ts_ns")[-1].as_py()
    for name in (n for n in offline.column_names if n.startswith("p_")):
        assert abs(float(signal[name.encode()]) - offline[name][-1].as_py()) <= TOL, name
    assert result.exit_code == 0, result.output
    printed = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert len(printed) == n_ticks and all("error" not in p for p in printed)
    live = pq.read_table(tmp_path / "live.parquet")
    assert live.num_rows == offline.num_rows == n_ticks > 300
    assert live.column("ts_ns").to_pylist() == offline.column("ts_ns").to_pylist()
    for name in live.column_names:
        if name.startswith("p_"):
            assert np.abs(live[name].to_numpy() - offline[name].to_numpy()).max() <= TOL, name
