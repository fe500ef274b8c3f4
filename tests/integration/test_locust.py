"""docker/locustfile.py headless against the real CPU server: bounded, every streamed tick answered ok."""
from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.server, pytest.mark.slow]

LOCUSTFILE = Path(__file__).resolve().parents[2] / "docker" / "locustfile.py"
USERS, SYMBOLS, RUN_S = 8, 8, 20


@pytest.mark.skipif(shutil.which("locust", path=os.path.dirname(sys.executable)) is None, reason="locust not installed")
def test_locust_headless_8_users_x_8_symbols_no_failures(server, tmp_path):
    """The server validates every synthetic book (crossed/locked ones are refused ticks = locust failures)."""
    env = {**os.environ, "LOB_MODEL": "lob_stream", "LOB_SYMBOLS": str(SYMBOLS), "LOB_TICKS": "40"}
    cmd = [str(Path(sys.executable).with_name("locust")), "-f", str(LOCUSTFILE), "--headless", "-u", str(USERS),
           "-r", str(USERS), "-t", f"{RUN_S}s", "--stop-timeout", "20", "--host", server.url, "--csv",
           str(tmp_path / "locust"), "--only-summary"]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=RUN_S + 90)
    rows = {r["Name"]: r for r in csv.DictReader(open(tmp_path / "locust_stats.csv"))}
    total = rows["Aggregated"]
    print(f"\nlocust: {total['Request Count']} ticks, {total['Failure Count']} failures, "
          f"p50 {total['50%']} ms, p99 {total['99%']} ms, {float(total['Requests/s']):.0f} ticks/s")
    assert int(total["Request Count"]) >= USERS * SYMBOLS * 40  # at least one full task per user
    failures = list(csv.DictReader(open(tmp_path / "locust_failures.csv")))
    assert int(total["Failure Count"]) == 0 and not failures, failures[:3]
    assert done.returncode == 0, done.stderr[-2000:]
