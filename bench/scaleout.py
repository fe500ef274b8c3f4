"""Scale-out measurement: ticks/s of `lobclient.stream` to one replica directly, and through nginx
(deploy/nginx/lob-shards.conf) to 1 and to 3 replicas with ``Transport(shards=S)``; the same ticks, the same process,
alternating configurations. Also the per-sequence state bytes of each preset (from its config).

Usage: python bench/scaleout.py [--run RUN] --out bench/scaleout.md
(without --run: a random-initialised tiny model; throughput does not depend on the weights)
"""
from __future__ import annotations

import argparse
import os
import platform
import socket
import sys
import tempfile
import threading
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

import lobclient
from lob.data.schema import load_dataset
from lob.data.simulator import simulate_dataset
from lob.models.mamba import PRESETS
from lob.models.registry import config_from_preset
from lob.serving.launcher import TritonServer
from lob.serving.replay import interleave
from lob.training.run import untrained_run

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from integration.services import Nginx  # noqa: E402  (the nginx harness of the tests, same config)


def state_bytes(preset: str, vocab: int = 1000, n_features: int = 12) -> int:
    """FP32 bytes of one sequence's recurrent state: n_layer * d_inner * ((d_conv - 1) + d_state) * 4."""
    c = config_from_preset("mamba", preset, vocab, n_features)
    return c.n_layer * c.d_inner * ((c.d_conv - 1) + c.d_state) * 4


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def desk(data: Path, n_symbols: int, n_ticks: int) -> list[lobclient.Tick]:
    base = load_dataset(data)
    names = sorted(base)
    out = {}
    for j in range(n_symbols):
        src = base[names[j % len(names)]]
        start = n_ticks * (j // len(names))
        out[f"S{j:03d}"] = replace(src.slice(start, start + n_ticks), symbol=f"S{j:03d}")
    return list(interleave(out))


def measure(ticks, url: str, shards: int | None) -> dict:
    t0 = time.perf_counter()
    preds = list(lobclient.stream(ticks, url=url, transport=lobclient.Transport(shards=shards, window=1024)))
    wall = time.perf_counter() - t0
    bad = [p.error for p in preds if p.error]
    if bad or len(preds) != len(ticks):
        raise SystemExit(f"{url} shards={shards}: {len(bad)} errors, first: {bad[:1]}")
    lat = 1e3 * np.array([p.latency_s for p in preds])
    return {"ticks_s": len(ticks) / wall, "p50_ms": float(np.percentile(lat, 50)), "p99_ms": float(np.percentile(lat, 99))}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--run", type=Path)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "scaleout.md")
    ap.add_argument("--symbols", type=int, default=64)
    ap.add_argument("--ticks", type=int, default=60, help="per symbol")
    ap.add_argument("--shards", type=int, default=16)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    from lob.export.repository import export_repository

    with tempfile.TemporaryDirectory(prefix="lob-scaleout-") as tmp:
        tmp = Path(tmp)
        simulate_dataset(tmp / "data", n_symbols=4, n_days=1, seed=11, events_per_day=args.symbols * args.ticks // 4 + 200,
                         start_date="2024-03-04")
        run = args.run or untrained_run(tmp / "run", tmp / "data")
        repo = tmp / "repo"
        export_repository(run, repo)
        ticks = desk(tmp / "data", args.symbols, args.ticks)
        servers = [TritonServer(repo, "cpu", grpc_port=free_port(), http_port=free_port(), metrics_port=free_port(),
                                log_file=tmp / f"replica{i}.log") for i in range(3)]
        threads = [threading.Thread(target=s.start) for s in servers]
        [t.start() for t in threads]
        [t.join() for t in threads]
        try:
            addrs = [f"127.0.0.1:{s.ports['grpc']}" for s in servers]
            with Nginx(tmp / "nginx1", free_port(), addrs[:1]) as one, Nginx(tmp / "nginx3", free_port(), addrs) as three:
                configs = {"1 replica, direct, 1 stream": (servers[0].url, None),
                           f"1 replica, direct, {args.shards} streams": (servers[0].url, args.shards),
                           f"1 replica via nginx, {args.shards} shards": (one.url, args.shards),
                           f"3 replicas via nginx, {args.shards} shards": (three.url, args.shards)}
                measure(ticks[:500], servers[0].url, None)  # warm-up
                results = {k: [] for k in configs}
                for _ in range(args.rounds):
                    for name, (url, shards) in configs.items():
                        results[name].append(measure(ticks, url, shards))
        finally:
            for s in servers:
                s.stop()

    base = np.median([r["ticks_s"] for r in results["1 replica, direct, 1 stream"]])
    lines = ["# Scale-out: replicas behind nginx (`hash $http_x_lob_shard consistent`)", "",
             f"Measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} on {platform.node()} "
             f"({len(os.sched_getaffinity(0))} CPU cores, shared), tritonserver 2.51.0 CPU profile "
             f"(python tokenizer -> onnxruntime step with implicit state), {args.symbols} symbols x {args.ticks} ticks "
             f"= {len(ticks):,} ticks per run, `lobclient.stream(..., transport=Transport(shards=S, window=1024))`, median of {args.rounds} "
             f"alternating rounds; all replicas on the same machine.", "",
             "| configuration | ticks/s (median) | runs | p50 latency | p99 latency | vs 1 replica direct |",
             "|---|---|---|---|---|---|"]
    for name, rs in results.items():
        tps = np.median([r["ticks_s"] for r in rs])
        runs = ", ".join(f"{r['ticks_s']:,.0f}" for r in rs)
        p50, p99 = np.median([r["p50_ms"] for r in rs]), np.median([r["p99_ms"] for r in rs])
        lines.append(f"| {name} | {tps:,.0f} | {runs} | {p50:.1f} ms | {p99:.1f} ms | {tps / base:.2f}x |")
    lines += ["", "State per sequence (FP32, `n_layer * d_inner * ((d_conv - 1) + d_state) * 4`, from the preset configs):", "",
              "| preset | n_layer | d_inner | d_conv | d_state | bytes per sequence |", "|---|---|---|---|---|---|"]
    for preset in PRESETS:
        c = config_from_preset("mamba", preset, 1000, 12)
        lines.append(f"| {preset} | {c.n_layer} | {c.d_inner} | {c.d_conv} | {c.d_state} | {state_bytes(preset):,} |")
    lines += ["", f"Command: `.venv/bin/python bench/scaleout.py --symbols {args.symbols} --ticks {args.ticks} "
              f"--shards {args.shards} --rounds {args.rounds}`", ""]
    args.out.write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
