"""Tick-to-prediction latency in-process (`lob.serving.inprocess`) beside the served path over gRPC, one run.

The same build repository, the same recorded ticks: at 1 symbol, each tick alone; at 64 symbols (recorded
symbols cut into chunks, each chunk one symbol), rounds of one tick per symbol. In-process, a round is one
``predict`` call (every tick of the round waits for it: its latency is the call's); over gRPC, the CPU
server (launcher, unary calls, one in flight per symbol; ``latency_s``: send to answer at the client). Both
paths are asserted to agree. Results (markdown) go to ``--out``.
Usage: python bench/inprocess.py --repo build/model_repository --data out/bench/data --out bench/inprocess.md
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import socket
import tempfile
import time
from pathlib import Path

import numpy as np

import lobclient
from lob.data.schema import load_dataset
from lob.serving.inprocess import InProcess
from lob.serving.launcher import TritonServer
from lob.serving.replay import interleave


def rounds(data: Path, n_symbols: int, ticks_per_symbol: int) -> list[list[lobclient.Tick]]:
    """``ticks_per_symbol`` rounds of one tick for each of ``n_symbols`` symbols (recorded ones cut in chunks)."""
    dataset = load_dataset(data)
    chunks = []
    for sym in sorted(dataset):
        ticks = list(interleave({sym: dataset[sym]}))
        for k in range(len(ticks) // ticks_per_symbol):
            chunks.append([dataclasses.replace(t, symbol=f"{sym}-{k}")
                           for t in ticks[k * ticks_per_symbol:(k + 1) * ticks_per_symbol]])
    if len(chunks) < n_symbols:
        raise SystemExit(f"{data}: {len(chunks)} chunks of {ticks_per_symbol} ticks, need {n_symbols}")
    return [[c[r] for c in chunks[:n_symbols]] for r in range(ticks_per_symbol)]


def in_process(repo: Path, plan: list[list[lobclient.Tick]]) -> tuple[list, np.ndarray, float]:
    """(predictions in tick order, per-tick latency s, ticks/s)."""
    local = InProcess(repo)
    local.predict(plan[0])  # warm-up round (the session's first run allocates), state then reset
    for t in plan[0]:
        local.end(t.symbol)
    preds, t0 = [], time.perf_counter()
    for ticks in plan:
        preds += local.predict(ticks)
    wall = time.perf_counter() - t0
    return preds, np.array([p.latency_s for p in preds]), len(preds) / wall


def served(url: str, plan: list[list[lobclient.Tick]], kind: str) -> tuple[list, np.ndarray, float]:
    ticks, transport = [t for r in plan for t in r], lobclient.Transport(kind=kind)
    list(lobclient.stream(plan[0], url=url, transport=transport))  # warm-up: connection, sessions
    t0 = time.perf_counter()
    preds = list(lobclient.stream(ticks, url=url, transport=transport))
    wall = time.perf_counter() - t0
    assert all(p.ok for p in preds), next(p.error for p in preds if not p.ok)
    return preds, np.array([p.latency_s for p in preds]), len(preds) / wall


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repo", type=Path, default=Path("build/model_repository"))
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--ticks", type=int, default=400, help="ticks per symbol")
    ap.add_argument("--out", type=Path, default=Path("bench/inprocess.md"))
    args = ap.parse_args()
    load0 = os.getloadavg()[0]
    rows = []
    with tempfile.TemporaryDirectory(prefix="lob-inprocess-") as tmp, \
            TritonServer(args.repo, "cpu", grpc_port=_free_port(), http_port=_free_port(), metrics_port=_free_port(),
                         log_file=Path(tmp) / "server.log") as server:
        for n in (1, 64):
            plan = rounds(args.data, n, args.ticks)
            local, lat, rate = in_process(args.repo, plan)
            rows.append((n, "in-process", len(local), lat, rate, 0.0))
            for kind in ("unary", "stream"):
                remote, lat, rate = served(server.url, plan, kind)
                by_key = {(p.symbol, p.seq): p for p in remote}
                worst = max(float(np.abs(p.dir_probs - by_key[(p.symbol, p.seq)].dir_probs).max()) for p in local)
                rows.append((n, f"gRPC {kind}", len(remote), lat, rate, worst))
            for r in rows[-3:]:
                print(n, r[1], f"p50 {np.median(r[3]) * 1e6:.0f} us", flush=True)
    us = lambda a, q: f"{np.quantile(a, q) * 1e6:,.0f} us"  # noqa: E731
    lines = [f"Measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} on {platform.node()} "
             f"({os.cpu_count()} cores; load average {load0:.1f} before, {os.getloadavg()[0]:.1f} after): "
             f"`python bench/inprocess.py --repo {args.repo} --data {args.data} --ticks {args.ticks}`.", "",
             "| symbols | path | ticks | p50 | p99 | ticks/s | p50 / in-process p50 | max \\|dp\\| vs in-process |",
             "|---|---|---|---|---|---|---|---|"]
    for n, path, count, lat, rate, worst in rows:
        base = next(r[3] for r in rows if r[0] == n and r[1] == "in-process")
        lines.append(f"| {n} | {path} | {count:,} | {us(lat, .5)} | {us(lat, .99)} | {rate:,.0f} | "
                     f"{np.median(lat) / np.median(base):.1f}x | {worst:.1g} |")
    args.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
