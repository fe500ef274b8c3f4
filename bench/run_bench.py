"""perf_analyzer on `lob_stream` beside a no-op ensemble of the same topology, in the same server.

The floor (`noop_stream` = `noop_tokenizer` -> `noop_step`) has the configs of the real models (same
tensors, same stateful sequence batching, same instances) with `bench/noop_model.py` as their code,
so the ratio real/floor is what the tokenizer and the Mamba step cost on top of Triton itself.
Sequences are real tick streams (chunks of recorded symbols) passed with ``--input-data``.
Usage: python bench/run_bench.py --repo model_repository --data out/bench/data --out bench/results.md
"""
from __future__ import annotations

import argparse
import csv
import io
import json
import platform
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from lob.schema import load_dataset
from lob.serving.launcher import TritonServer

HERE = Path(__file__).resolve().parent
REAL = ("lob_tokenizer", "mamba_lob_onnx", "lob_stream")
FLOOR = {"lob_tokenizer": "noop_tokenizer", "mamba_lob_onnx": "noop_step", "lob_stream": "noop_stream"}
TICK_INPUTS = ("TS_NS", "BID_PX", "BID_SZ", "ASK_PX", "ASK_SZ", "TRADE_PX", "TRADE_SZ", "TRADE_SIDE")


def build_repo(src: Path, dst: Path, n_features: int) -> None:
    """The real CPU models (with their exported files) and their no-op twins."""
    for name in REAL:
        if not (src / name).is_dir():
            raise SystemExit(f"{src / name}: missing")
        shutil.copytree(src / name, dst / name)
    for name in ("lob_tokenizer/1/tokenizer.json", "mamba_lob_onnx/1/model.onnx", "mamba_lob_onnx/1/export.json"):
        if not (dst / name).is_file():
            raise SystemExit(f"{src / name}: missing; run `lob export --run RUN --repo {src}` first")
    for real, floor in FLOOR.items():
        config = text_format.Parse((src / real / "config.pbtxt").read_text(), model_config_pb2.ModelConfig())
        config.name = floor
        for step in config.ensemble_scheduling.step:
            step.model_name = FLOOR[step.model_name]
        (dst / floor / "1").mkdir(parents=True)
        if config.backend == "python":
            config.parameters["noop_dim"].string_value = str(n_features)
            shutil.copy(HERE / "noop_model.py", dst / floor / "1" / "model.py")
        (dst / floor / "config.pbtxt").write_text(text_format.MessageToString(config))


def input_data(data: Path, path: Path, n_streams: int, length: int) -> int:
    """perf_analyzer JSON: ``n_streams`` sequences of ``length`` consecutive recorded ticks each."""
    streams = []
    for sym, t in load_dataset(data).items():
        for start in range(0, len(t) - length + 1, length):
            streams.append([{
                "TS_NS": [int(t.ts_ns[i])], "BID_PX": t.bid_px[i].tolist(), "BID_SZ": t.bid_sz[i].tolist(),
                "ASK_PX": t.ask_px[i].tolist(), "ASK_SZ": t.ask_sz[i].tolist(), "TRADE_PX": [float(t.trade_px[i])],
                "TRADE_SZ": [float(t.trade_sz[i])], "TRADE_SIDE": [int(t.trade_side[i])]} for i in range(start, start + length)])
            if len(streams) == n_streams:
                path.write_text(json.dumps({"data": streams}))
                return len(streams)
    raise SystemExit(f"{data}: not enough ticks for {n_streams} streams of {length}")


def perf(model: str, url: str, concurrency: int, data: Path, interval_ms: int) -> dict:
    with tempfile.NamedTemporaryFile(suffix=".csv") as report:
        cmd = ["perf_analyzer", "-m", model, "-i", "grpc", "-u", url, "--streaming", "--input-data", str(data),
               "--concurrency-range", str(concurrency), "--measurement-interval", str(interval_ms),
               "--stability-percentage", "50", "--max-trials", "10", "-f", report.name]
        run = subprocess.run(cmd, capture_output=True, text=True)
        if run.returncode != 0:
            raise SystemExit(f"{' '.join(cmd)} failed:\n{run.stdout[-3000:]}\n{run.stderr[-3000:]}")
        row = next(csv.DictReader(io.StringIO(Path(report.name).read_text())))
    return {"p50_us": float(row["p50 latency"]), "p99_us": float(row["p99 latency"]),
            "throughput": float(row["Inferences/Second"]),
            "cmd": " ".join(cmd).replace(report.name, "report.csv").replace(str(data.parent), "$TMP")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repo", type=Path, default=Path("build/model_repository"))
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--out", type=Path, default=HERE / "results.md")
    ap.add_argument("--concurrency", default="1,16,64")
    ap.add_argument("--length", type=int, default=200, help="ticks per sequence")
    ap.add_argument("--interval-ms", type=int, default=4000)
    args = ap.parse_args()
    levels = [int(c) for c in args.concurrency.split(",")]
    with tempfile.TemporaryDirectory(prefix="lob-bench-") as tmp:
        tmp = Path(tmp)
        from lob.tokenizer import Tokenizer

        n_features = Tokenizer.load(args.repo / "lob_tokenizer/1/tokenizer.json").n_features
        build_repo(args.repo, tmp / "repo", n_features)
        n_streams = input_data(args.data, tmp / "input.json", max(levels), args.length)
        version = json.loads((args.repo / "mamba_lob_onnx/1/export.json").read_text())["model_version"]
        rows = []
        with TritonServer(tmp / "repo", "cpu", grpc_port=18801, http_port=18800, metrics_port=18802,
                          log_file=tmp / "server.log", extra_models=tuple(FLOOR.values())) as server:
            for c in levels:  # floor and real back to back at each level: same load on the shared cores
                floor = perf("noop_stream", server.url, c, tmp / "input.json", args.interval_ms)
                real = perf("lob_stream", server.url, c, tmp / "input.json", args.interval_ms)
                rows.append((c, real, floor))
                print(c, real, floor, flush=True)
    write_results(args.out, rows, version, n_streams, args)


def write_results(out: Path, rows, version: str, n_streams: int, args) -> None:
    lines = [
        "# `lob_stream` (CPU profile) vs a no-op ensemble of the same topology",
        "",
        f"Measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} on {platform.node()} "
        f"({subprocess.run(['nproc'], capture_output=True, text=True).stdout.strip()} CPU cores, shared), "
        f"tritonserver 2.51.0 (nvidia-pytriton wheel), perf_analyzer 2.51.0, gRPC streaming, sequence mode, "
        f"{n_streams} recorded tick sequences of {args.length} ticks (`--input-data`), model `{version}`.",
        "Floor: `noop_stream` = `noop_tokenizer` -> `noop_step`, the real configs with `bench/noop_model.py`, "
        "in the same server. Latencies are client-side per request.",
        "",
        "| concurrent sequences | lob_stream p50 | p99 | throughput | floor p50 | p99 | throughput | p50 / floor | throughput / floor |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for c, real, floor in rows:
        lines.append(f"| {c} | {real['p50_us']:.0f} us | {real['p99_us']:.0f} us | {real['throughput']:,.0f} /s | "
                     f"{floor['p50_us']:.0f} us | {floor['p99_us']:.0f} us | {floor['throughput']:,.0f} /s | "
                     f"{real['p50_us'] / floor['p50_us']:.2f}x | {real['throughput'] / floor['throughput']:.2f}x |")
    lines += ["", "Targets: p50 at 1 sequence <= 1.25x floor; throughput at 64 sequences >= 0.8x floor.", "",
              "Command: `make bench` (= `bash bench/perf_analyzer.sh`); each measurement:", "",
              "```", rows[-1][1]["cmd"], "```", ""]
    out.write_text("\n".join(lines))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
