"""Recovery after kill -9: seconds from the restarted server being ready until every symbol's predictions are
warm again, and the age of live ticks meanwhile, re-warming one tick per request vs in chunks (one server,
one run, same feed; results in bench/recovery.md).

Each mode: one `lobclient.stream` of S symbols (synthetic books) with its ``rewarm_chunk`` and ``chunk``; each
symbol first streams ``history`` ticks (so its re-warm ring is full), then live ticks paced at ``--rate`` ticks/s in all; after ``--live-before``
live rounds the server is killed (SIGKILL) and restarted on the same ports. Recovery = for the slowest
symbol, (first warm prediction answered after the restart) - (server ready again). Live-tick age = answer
time - the tick's scheduled arrival (what a desk sees: it includes waiting behind the re-warm), over live
ticks answered from the restart until recovery; ``latency_s`` (the request alone) is reported beside it.
The step model's batch statistics after the restart (Triton's ``batch_stats``: executions per batch size)
show how the sequence batcher grouped the re-warm's chunks and the live single ticks.
Usage: python bench/recovery.py --repo build/model_repository [--symbols 64 --modes 256:1:256,4096:256:256]
"""
from __future__ import annotations

import argparse
import os
import signal
import socket
import sys
import threading
import time
from pathlib import Path

import numpy as np

import tritonclient.grpc as grpcclient

import lobclient
from lob.contract import STEP_MODEL
from lob.serving.launcher import TritonServer
from lobclient.synthetic import synthetic_ticks


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def run_mode(server: TritonServer, symbols: list[str], history: int, rate: float, live_before: int,
             rewarm_chunk: int, chunk: int, path: dict, seed: int) -> dict:
    scheduled: dict[tuple[str, int], float] = {}  # (symbol, ts_ns) -> when the tick is due (live ticks only)
    marks: dict[str, float] = {}

    def restart():
        server.stop()  # reaps the killed process
        server.start()  # same ports; returns once every model is ready
        marks["ready"] = time.monotonic()
        print(f"# restarted in {marks['ready'] - marks['kill']:.1f} s", file=sys.stderr, flush=True)

    def feed():
        ticks = synthetic_ticks(symbols, None, np.random.default_rng(seed))
        past = [next(ticks) for _ in range(history * len(symbols))]
        for k in range(len(symbols)):  # the history symbol by symbol, so that its ticks queue and go as chunks
            yield from past[k::len(symbols)]
        start, period = time.monotonic(), 1.0 / rate
        for i, tick in enumerate(ticks):
            due = start + i * period
            time.sleep(max(0.0, due - time.monotonic()))
            scheduled[tick.symbol, tick.ts_ns] = due
            if i == live_before * len(symbols):
                print(f"# kill -9 after {len(answers):,} answers", file=sys.stderr, flush=True)
                marks["kill"] = time.monotonic()
                os.kill(server.pid, signal.SIGKILL)
                threading.Thread(target=restart, daemon=True).start()
            if "ready" in marks and warm_after.keys() >= set(symbols) and i % len(symbols) == 0:
                return
            yield tick

    warm_after: dict[str, float] = {}  # symbol -> first warm answer after the restart
    answers = []  # (answered at, symbol, ts_ns, ok, latency_s)
    errors = []  # the first few refused ticks' errors
    recovery = lobclient.Recovery(rewarm_ticks=history, rewarm_chunk=rewarm_chunk, reconnect_deadline_s=600)
    transport = lobclient.Transport(window=64 * len(symbols), timeout_s=120)
    for p in lobclient.stream(feed(), url=server.url, recovery=recovery, transport=transport, chunk=chunk, **path):
        now = time.monotonic()
        answers.append((now, p.symbol, p.ts_ns, p.ok, p.latency_s))
        if not p.ok and len(errors) < 3:
            errors.append(f"{p.symbol} {p.seq}: {p.error}")
        if p.ok and p.warm and "ready" in marks and p.symbol not in warm_after and now > marks["ready"]:
            warm_after[p.symbol] = now
    ready = marks["ready"]
    stats = grpcclient.InferenceServerClient(server.url).get_inference_statistics(STEP_MODEL, as_json=True)
    batches = {int(b["batch_size"]): int(b["compute_infer"]["count"]) for b in stats["model_stats"][0]["batch_stats"]}
    recovered = max(warm_after.values())
    during = [(t - scheduled[s, ts], lat) for t, s, ts, ok, lat in answers
              if ok and (s, ts) in scheduled and ready <= t <= recovered]
    ages, lats = (np.array([d[k] for d in during]) for k in (0, 1))
    return {"rewarm_chunk": rewarm_chunk, "chunk": chunk, "restart_s": ready - marks["kill"], "recovery_s": recovered - ready,
            "live_answered": len(during), "age_p50_ms": 1e3 * np.percentile(ages, 50),
            "age_p99_ms": 1e3 * np.percentile(ages, 99), "latency_p99_ms": 1e3 * np.percentile(lats, 99),
            "failed": sum(1 for a in answers if not a[3]), "answers": len(answers), "batches": batches,
            "errors": errors}


def feed_arguments(doc: str) -> argparse.ArgumentParser:
    """A parser with the arguments of a live feed against a server: --repo, --symbols, --rate."""
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("--repo", type=Path, required=True, help="an exported model repository (lob export)")
    ap.add_argument("--symbols", type=int, default=64)
    ap.add_argument("--rate", type=float, default=256.0, help="live ticks/s, all symbols together")
    return ap


def main() -> None:
    ap = feed_arguments(__doc__)
    ap.add_argument("--live-before", type=int, default=4, help="live rounds (one tick per symbol) before the kill")
    ap.add_argument("--modes", default="256:1:256,256:256:256,4096:256:256",
                    help="history:rewarm_chunk:chunk triples, one run each on the same server. history: ticks per symbol "
                    "before the kill = rewarm_ticks; chunk: the stream's, which fills the history fast and sends the "
                    "live ticks that queued behind a re-warm as one request")
    ap.add_argument("--tokenizer", type=Path, default=None, help="the direct path: this tokenizer.json on the client")
    args = ap.parse_args()
    symbols = [f"S{i:03d}" for i in range(args.symbols)]
    path = {} if args.tokenizer is None else {"tokenizer": args.tokenizer}
    with TritonServer(args.repo, "cpu", grpc_port=free_port(), http_port=free_port(),
                      metrics_port=free_port()) as server:
        print("| rewarm_ticks | rewarm_chunk | chunk | restart (s) | all warm after ready (s) | live ticks answered meanwhile | "
              "live age p50 / p99 (ms) | request latency p99 (ms) | failed ticks |")
        print("|---|---|---|---|---|---|---|---|---|")
        for i, mode in enumerate(args.modes.split(",")):
            history, rewarm_chunk, chunk = (int(x) for x in mode.split(":"))
            r = run_mode(server, symbols, history, args.rate, args.live_before, rewarm_chunk, chunk, path, seed=i)
            print(f"| {history} | {r['rewarm_chunk']} | {r['chunk']} | {r['restart_s']:.1f} | **{r['recovery_s']:.2f}** | {r['live_answered']:,} | "
                  f"{r['age_p50_ms']:,.0f} / {r['age_p99_ms']:,.0f} | {r['latency_p99_ms']:,.1f} | "
                  f"{r['failed']} of {r['answers']:,} |", flush=True)
            for error in r["errors"]:
                print(f"<!-- failed: {error} -->", flush=True)
            executes = sum(r["batches"].values())
            print(f"<!-- rewarm_chunk {rewarm_chunk}: {STEP_MODEL} after the restart: {executes:,} executions, mean batch "
                  f"{sum(b * n for b, n in r['batches'].items()) / max(executes, 1):.1f} requests; executions by batch "
                  f"size {dict(sorted(r['batches'].items()))} -->", flush=True)


if __name__ == "__main__":
    main()
