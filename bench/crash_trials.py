"""Does the CPU profile survive many concurrent sequences? perf_analyzer trials against a fresh server each.

For each (model, run) and trial: start the CPU profile (launcher, built backend) on an exported
repository, with the gRPC State pool of the run (``flag``: the launcher's ``GRPC_STATE_POOL``; ``default``:
Triton's own 8, the control; ``none``: 0, every released State is freed, the sharpest control), drive ``--concurrency`` concurrent sequences with perf_analyzer in sequence mode for about
``--seconds`` (3 measurement windows), then record whether the server is still alive (a crash is the
server process exiting, e.g. "Signal (11) received" in its log), its peak resident memory (VmHWM) and
perf_analyzer's ticks/s and p50. Models: ``lob_stream`` (the ensemble, recorded ticks) and ``mamba_lob_onnx``
(the direct path, zero TOKEN/FEATURES). ``--runs``: TRANSPORT:POOL:TRIALS entries (transport ``stream``, gRPC
streaming, or ``unary``); trials are interleaved round by round so load drift hits every run alike.
Results (markdown) go to ``--out``; docs/serving.md cites them.
Usage: python bench/crash_trials.py --repo build/model_repository --data out/bench/data \
           --runs stream:flag:10,stream:default:3,unary:flag:3
"""
from __future__ import annotations

import argparse
import csv
import io
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run_bench import input_data  # noqa: E402  (the same recorded tick streams as make bench)

from lob.contract import STEP_MODEL, STREAM_MODEL  # noqa: E402
from lob.serving.launcher import GRPC_STATE_POOL, ServerError, TritonServer  # noqa: E402

MODELS = {STREAM_MODEL: "ticks", STEP_MODEL: "zero"}  # model -> its perf_analyzer input
# run's pool -> TritonServer(grpc_state_pool=...): the launcher's, Triton's default (8), none (every State freed)
POOLS = {"flag": GRPC_STATE_POOL, "default": None, "none": 0}


def _peak_rss_mib(pid: int | None) -> float | None:
    try:
        line = next(ln for ln in Path(f"/proc/{pid}/status").read_text().splitlines() if ln.startswith("VmHWM:"))
    except (OSError, StopIteration, TypeError):
        return None
    return int(line.split()[1]) / 1024


def trial(repo: Path, model: str, streaming: bool, pool: str, concurrency: int, seconds: float, data: Path,
          tmp: Path, ports: tuple[int, int, int]) -> dict:
    log = tmp / f"server-{model}-{'stream' if streaming else 'unary'}-{time.time_ns()}.log"
    window_ms = int(seconds * 1000 / 3)
    cmd = ["perf_analyzer", "-m", model, "-i", "grpc", "--input-data", str(data) if MODELS[model] == "ticks" else "zero",
           "--concurrency-range", str(concurrency), "--measurement-interval", str(window_ms),
           "--stability-percentage", "1000", "--max-trials", "3",
           # recorded streams set their own length (a longer sequence would replay a stream: time going backwards)
           *(["--sequence-length", "100"] if MODELS[model] == "zero" else []), *(["--streaming"] if streaming else [])]
    server = TritonServer(repo, "cpu", grpc_port=ports[0], http_port=ports[1], metrics_port=ports[2], log_file=log,
                          grpc_state_pool=POOLS[pool])
    server.start()
    try:
        t0 = time.monotonic()
        with tempfile.NamedTemporaryFile(suffix=".csv") as report:
            perf = subprocess.Popen([*cmd, "-u", server.url, "-f", report.name], stdout=subprocess.DEVNULL,
                                    stderr=subprocess.PIPE, text=True)
            while perf.poll() is None and server.returncode() is None and time.monotonic() - t0 < seconds * 4 + 120:
                time.sleep(0.5)
            if perf.poll() is None:  # the server died (perf_analyzer would wait on it forever) or a hang
                perf.kill()
            perf.wait()
            text = Path(report.name).read_text() if perf.returncode == 0 else ""
            rows = list(csv.DictReader(io.StringIO(text))) if text else []
        run = perf
        elapsed = time.monotonic() - t0
        time.sleep(1.0)
        alive = server.returncode() is None
        rss = _peak_rss_mib(server.pid)
        signal_line = next((ln for ln in log.read_text(errors="replace").splitlines() if "Signal (" in ln), "")
        if not alive:  # keep the server log (its backtrace) beside the results
            keep = Path(os.environ.get("CRASH_LOGS", "out/crash"))
            keep.mkdir(parents=True, exist_ok=True)
            shutil.copy(log, keep / log.name)
        return {"model": model, "streaming": streaming, "pool": pool, "alive": alive, "elapsed_s": elapsed,
                "throughput": float(rows[0]["Inferences/Second"]) if rows else None,
                "p50_us": float(rows[0]["p50 latency"]) if rows else None,
                "p99_us": float(rows[0]["p99 latency"]) if rows else None, "rss_mib": rss,
                "perf_rc": run.returncode, "signal": signal_line.strip(), "perf_err": (run.stderr.read() or "")[-300:],
                "cmd": " ".join(cmd).replace(str(data), "input.json")}
    finally:
        server.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repo", type=Path, default=Path("build/model_repository"))
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--runs", default="stream:flag:10,stream:default:3,unary:flag:3",
                    help="TRANSPORT:POOL:TRIALS,... (stream|unary : flag|default|none : count)")
    ap.add_argument("--concurrency", type=int, default=256)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--out", type=Path, default=Path("out/crash_trials.md"))
    ap.add_argument("--port-base", type=int, default=18900, help="HTTP port; gRPC and metrics the next two")
    args = ap.parse_args()
    runs = [(t, p, int(n)) for t, p, n in (r.split(":") for r in args.runs.split(","))]
    for transport, pool, _ in runs:
        if transport not in ("stream", "unary") or pool not in POOLS:
            raise SystemExit(f"--runs: {transport}:{pool}: transport stream|unary, pool {'|'.join(POOLS)}")
    results = []
    with tempfile.TemporaryDirectory(prefix="lob-crash-") as tmp:
        tmp = Path(tmp)
        input_data(args.data, tmp / "input.json", args.concurrency, 100)
        for t in range(max(n for *_, n in runs)):
            for transport, pool, n in runs:
                if t >= n:
                    continue
                for model in args.models.split(","):
                    try:
                        r = trial(args.repo, model, transport == "stream", pool, args.concurrency, args.seconds,
                                  tmp / "input.json", tmp, (args.port_base + 1, args.port_base, args.port_base + 2))
                    except ServerError as err:
                        r = {"model": model, "streaming": transport == "stream", "pool": pool, "alive": False,
                             "elapsed_s": 0, "throughput": None, "p50_us": None, "p99_us": None, "rss_mib": None,
                             "perf_rc": None, "signal": f"start: {err}"[:200], "cmd": ""}
                    r["trial"] = t + 1
                    results.append(r)
                    print(t, r, flush=True)
    lines = [f"Measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}: {args.concurrency} concurrent sequences, "
             f"~{args.seconds:g} s each, a fresh CPU-profile server per trial (`python bench/crash_trials.py "
             f"--runs {args.runs} --concurrency {args.concurrency} --seconds {args.seconds:g}`); load average at "
             f"the end {os.getloadavg()[0]:.1f}; flag = --grpc-infer-allocation-pool-size={GRPC_STATE_POOL}, "
             f"default = Triton's 8, none = 0.", "",
             "| model | transport | pool | trial | server | ticks/s | p50 | p99 | peak RSS | perf_analyzer rc | crash line |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        ms = {k: "-" if r[k] is None else f"{r[k] / 1000:.0f} ms" for k in ("p50_us", "p99_us")}
        rate = "-" if r["throughput"] is None else f"{r['throughput']:,.0f}"
        rss = "-" if r["rss_mib"] is None else f"{r['rss_mib']:.0f} MiB"
        lines.append(f"| {r['model']} | {'gRPC streaming' if r['streaming'] else 'unary gRPC'} | {r['pool']} | "
                     f"{r['trial']} | {'alive' if r['alive'] else '**died**'} | {rate} | {ms['p50_us']} | "
                     f"{ms['p99_us']} | {rss} | {r['perf_rc']} | {r['signal'][:80]} |")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
