"""`make soak`: streaming soak with faults. N symbols stream synthetic books through a real CPU tritonserver
for M minutes while the server is killed (SIGKILL) and restarted on the same ports every K seconds.

Samples every S seconds into CSV + PNG: server RSS (tritonserver and its python-backend stubs), client RSS
(this process alone; it also imports torch to export the model), symbols answered in the last sample period (client side: sequences in use), predictions
and errors so far. Passes when every tick yielded exactly one prediction in order (per-symbol seq
contiguous, total = ticks sent) and RSS growth after warm-up stays under 5%: the client's (median of
the last fifth of the run vs the first fifth after warm-up) and the server's (median of its last life
vs its first, each after warm-up: a restarted server starts from scratch).

    python scripts/soak.py --out bench/soak [--minutes 30 --symbols 64 --kill-every 300 --run RUN]
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
PAGE = os.sysconf("SC_PAGE_SIZE")


def random_run(folder: Path) -> Path:
    """A run folder holding a random-initialised tiny model (the soak checks plumbing, not accuracy)."""
    from lob.data.simulator import simulate_dataset
    from lob.training.run import untrained_run

    simulate_dataset(folder / "data", n_symbols=2, n_days=1, seed=3, events_per_day=2000, start_date="2024-03-04")
    return untrained_run(folder / "run", folder / "data")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tree_rss(pid: int) -> int:
    """RSS bytes of ``pid`` and all its descendants (from /proc)."""
    parent = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                parent[int(d.name)] = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                pass
    family, todo = {pid}, [pid]
    while todo:
        p = todo.pop()
        kids = [c for c, pp in parent.items() if pp == p and c not in family]
        family.update(kids)
        todo += kids
    return sum(rss(p) for p in family)


def rss(pid: int) -> int:
    """RSS bytes of one process (0 if it is gone)."""
    try:
        return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE
    except (OSError, IndexError):
        return 0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "soak")
    ap.add_argument("--minutes", type=float, default=30)
    ap.add_argument("--symbols", type=int, default=64)
    ap.add_argument("--kill-every", type=float, default=300, help="seconds between kill -9 + restart")
    ap.add_argument("--sample-every", type=float, default=10)
    ap.add_argument("--warmup", type=float, default=60, help="seconds of each server life not used for RSS growth")
    ap.add_argument("--transport", default="stream", choices=["stream", "unary"])
    ap.add_argument("--run", type=Path, help="run folder to export (default: a random-initialised tiny model)")
    args = ap.parse_args()

    import lobclient
    from lob.export.repository import export_repository
    from lob.serving.launcher import TritonServer
    from lobclient.synthetic import synthetic_ticks

    args.out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="lob-soak-"))
    repo = work / "repo"
    for name in ("lob_tokenizer", "mamba_lob_onnx", "lob_stream"):
        shutil.copytree(ROOT / "model_repository" / name, repo / name, ignore=shutil.ignore_patterns("*.onnx", "*.json"))
    export_repository(args.run or random_run(work), repo)
    server = TritonServer(repo, "cpu", grpc_port=free_port(), http_port=free_port(), metrics_port=free_port(),
                          log_file=args.out / "tritonserver.log")
    server.start()
    symbols = [f"SOAK{i:03d}" for i in range(args.symbols)]
    stop = threading.Event()
    sent, got = {s: 0 for s in symbols}, {s: 0 for s in symbols}
    tally = {"predictions": 0, "errors": 0, "out_of_order": 0, "recent": set()}
    first_errors: list[str] = []

    def feed():
        for tick in synthetic_ticks(symbols, None, np.random.default_rng(0)):
            if stop.is_set():
                return
            sent[tick.symbol] += 1
            yield tick

    def consume():
        for p in lobclient.stream(feed(), url=server.url,
                                  transport=lobclient.Transport(kind=args.transport, window=4 * args.symbols, timeout_s=30),
                                  recovery=lobclient.Recovery(reconnect_deadline_s=180)):
            tally["out_of_order"] += p.seq != got[p.symbol]
            got[p.symbol] += 1
            tally["predictions"] += 1
            tally["recent"].add(p.symbol)
            if not p.ok:
                tally["errors"] += 1
                if len(first_errors) < 20:
                    first_errors.append(f"{p.symbol} seq {p.seq}: {p.error}")

    client = threading.Thread(target=consume, daemon=True)
    rows, lives, restarting = [], 0, threading.Event()

    def restart():
        server.stop()
        server.start()
        restarting.clear()

    t0 = time.monotonic()
    next_kill, next_sample, life_start = t0 + args.kill_every, t0, t0
    client.start()
    try:
        while time.monotonic() - t0 < args.minutes * 60:
            now = time.monotonic()
            if now >= next_kill and not restarting.is_set():
                os.kill(server.pid, signal.SIGKILL)
                restarting.set()
                threading.Thread(target=restart, daemon=True).start()
                lives += 1
                life_start, next_kill = now, now + args.kill_every
            if now >= next_sample:
                pid = server.pid
                rows.append({"t_s": round(now - t0, 1), "life": lives, "life_s": round(now - life_start, 1),
                             "server_rss_mb": round(tree_rss(pid) / 2**20, 1) if pid and not restarting.is_set() else "",
                             "client_rss_mb": round(rss(os.getpid()) / 2**20, 1),
                             "active_symbols": len(tally["recent"]), "predictions": tally["predictions"],
                             "errors": tally["errors"]})
                tally["recent"] = set()
                print(rows[-1], flush=True)
                next_sample += args.sample_every
            time.sleep(0.2)
    finally:
        stop.set()
        client.join(timeout=240)
        while restarting.is_set():
            time.sleep(0.5)
        server.stop()
        shutil.rmtree(work, ignore_errors=True)

    with open(args.out / "soak.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    total_sent, total_got = sum(sent.values()), sum(got.values())
    accounted = total_sent == total_got == tally["predictions"] and tally["out_of_order"] == 0 and not client.is_alive()

    def median(vals):
        return float(np.median(vals)) if vals else float("nan")

    srv = [r for r in rows if r["server_rss_mb"] != "" and r["life_s"] >= args.warmup]
    server_first = median([r["server_rss_mb"] for r in srv if r["life"] == srv[0]["life"]]) if srv else float("nan")
    server_last = median([r["server_rss_mb"] for r in srv if r["life"] == srv[-1]["life"]]) if srv else float("nan")
    cli = [r for r in rows if r["t_s"] >= args.warmup]
    fifth = max(len(cli) // 5, 1)
    client_first, client_last = median([r["client_rss_mb"] for r in cli[:fifth]]), median([r["client_rss_mb"] for r in cli[-fifth:]])
    growth = {"server": server_last / server_first - 1, "client": client_last / client_first - 1}
    passed = accounted and all(g < 0.05 for g in growth.values())
    summary = {"minutes": args.minutes, "symbols": args.symbols, "kill_every_s": args.kill_every, "kills": lives,
               "transport": args.transport, "ticks_sent": total_sent, "predictions": tally["predictions"],
               "errors": tally["errors"], "out_of_order": tally["out_of_order"], "every_tick_accounted": accounted,
               "server_rss_mb_first_last": [server_first, server_last], "client_rss_mb_first_last": [client_first, client_last],
               "rss_growth": growth, "passed": passed, "first_errors": first_errors,
               "command": " ".join(["python", "scripts/soak.py", *sys.argv[1:]])}
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2))
    plot(rows, args.out / "soak.png", summary)
    print(json.dumps(summary, indent=2))
    raise SystemExit(0 if passed else 1)


def plot(rows, path: Path, summary) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = [r["t_s"] / 60 for r in rows]
    fig, axes = plt.subplots(3, 1, figsize=(9, 8), sharex=True)
    axes[0].plot(t, [np.nan if r["server_rss_mb"] == "" else r["server_rss_mb"] for r in rows], ".-", label="server (tree)")
    axes[0].plot(t, [r["client_rss_mb"] for r in rows], ".-", label="client")
    axes[0].set_ylabel("RSS MiB")
    axes[0].legend()
    axes[1].plot(t, [r["active_symbols"] for r in rows], ".-")
    axes[1].set_ylabel("symbols answered\nper sample")
    axes[2].plot(t, [r["predictions"] for r in rows], ".-", label="predictions")
    axes[2].plot(t, [r["errors"] for r in rows], ".-", label="errors")
    axes[2].set_ylabel("cumulative")
    axes[2].set_xlabel("minutes")
    axes[2].legend()
    for ax in axes:
        for r0, r1 in zip(rows, rows[1:]):
            if r1["life"] != r0["life"]:
                ax.axvline(r1["t_s"] / 60, color="red", alpha=0.3)
    fig.suptitle(f"soak: {summary['symbols']} symbols, kill -9 every {summary['kill_every_s']:g} s "
                 f"({summary['kills']} kills), passed={summary['passed']}")
    fig.tight_layout()
    fig.savefig(path, dpi=90)


if __name__ == "__main__":
    main()
