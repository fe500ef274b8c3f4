"""perf_analyzer on the ensemble (`lob_stream`) and the direct path (`mamba_lob_onnx`), each beside a no-op
floor of its own topology and beside the all-python floor of the previous design, in one server.

Topologies (no-op twins: the real configs, with `bench/noop_model.py` for python models and
`bench/noop_onnx.py` for the ONNX step, implicit state included):

- ensemble `lob_stream` = lob_tokenizer (python) -> mamba_lob_onnx (onnxruntime);  floor `noop_stream`
- direct `mamba_lob_onnx` (client sends TOKEN + FEATURES);                        floor `noop_step`
- previous design's floor `noop_stream_py` = python no-op tokenizer -> python no-op stateful step (CORRID
  START/END controls, as the retired mamba_lob_cpu)

Sequences are recorded tick streams (chunks of recorded symbols, ``--input-data``; the direct path gets
their tokens and features from the same tokenizer). Concurrency mode at each level, then request-rate
at half the capacity measured at ``--rate-level`` sequences, latency at that fixed offered load from a
paced client (`bench/paced.py`: one tick in flight per sequence, which perf_analyzer's request-rate mode
does not keep).
perf_analyzer's own CPU use is measured (it shares the cores). Transport: unary gRPC by default, `lobclient`'s
default (docs/serving.md, "Crash safety"); ``--streaming`` for gRPC streaming.
Usage: python bench/run_bench.py --repo build/model_repository --data out/bench/data --out bench/results.md
"""
from __future__ import annotations

import argparse
import csv
import io
import json
import os
import platform
import resource
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import onnx
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from lob.contract import (FEATURES, STEP_MODEL, STREAM_MODEL, TICK_INPUTS, TOKEN, TOKENIZER_MODEL, TRADE_PX,
                          TRADE_SIDE, TRADE_SZ, TS_NS)
from lob.data.schema import load_dataset
from lob.serving.launcher import TritonServer
from paced import paced  # bench/paced.py

HERE = Path(__file__).resolve().parent
REAL = (TOKENIZER_MODEL, STEP_MODEL, STREAM_MODEL)
TOKENIZER_JSON, STEP_ONNX, EXPORT_JSON = (f"{TOKENIZER_MODEL}/1/tokenizer.json", f"{STEP_MODEL}/1/model.onnx",
                                         f"{STEP_MODEL}/1/export.json")  # written by `lob export`
FLOORS = ("noop_tokenizer", "noop_step", "noop_stream", "noop_step_py", "noop_stream_py")
# (label, model, input file)
RUNS = (("ensemble", STREAM_MODEL, "ticks"), ("ensemble floor", "noop_stream", "ticks"),
        ("python-python floor", "noop_stream_py", "ticks"), ("direct", STEP_MODEL, "tokens"),
        ("direct floor", "noop_step", "tokens"))


def _config(path: Path) -> model_config_pb2.ModelConfig:
    return text_format.Parse(path.read_text(), model_config_pb2.ModelConfig())


def _write(folder: Path, config: model_config_pb2.ModelConfig) -> None:
    (folder / "1").mkdir(parents=True, exist_ok=True)
    (folder / "config.pbtxt").write_text(text_format.MessageToString(config))


def build_repo(src: Path, dst: Path, n_features: int) -> None:
    """The real CPU models (with their exported files) and the no-op twins of the three topologies."""
    from noop_onnx import noop_step_graph

    for name in REAL:
        if not (src / name).is_dir():
            raise SystemExit(f"{src / name}: missing")
        shutil.copytree(src / name, dst / name, ignore=shutil.ignore_patterns("configs"))
    for name in (TOKENIZER_JSON, STEP_ONNX, EXPORT_JSON):
        if not (dst / name).is_file():
            raise SystemExit(f"{src / name}: missing; run `lob export --run RUN --repo {src}` first")
    tok, step, ens = (_config(src / n / "config.pbtxt") for n in REAL)
    tok.name = "noop_tokenizer"
    tok.parameters["noop_dim"].string_value = str(n_features)
    _write(dst / "noop_tokenizer", tok)
    shutil.copy(HERE / "noop_model.py", dst / "noop_tokenizer" / "1" / "model.py")
    onnx_step = model_config_pb2.ModelConfig()
    onnx_step.CopyFrom(step)
    onnx_step.name = "noop_step"
    _write(dst / "noop_step", onnx_step)
    onnx.save(noop_step_graph(onnx.load(str(src / STEP_ONNX))), str(dst / "noop_step/1/model.onnx"))
    py_step = model_config_pb2.ModelConfig()  # the retired python step's shape: own state, CORRID/START/END
    py_step.CopyFrom(step)
    py_step.name, py_step.platform, py_step.backend = "noop_step_py", "", "python"
    del py_step.sequence_batching.state[:]
    py_step.sequence_batching.control_input.extend(tok.sequence_batching.control_input)
    py_step.ClearField("parameters")
    py_step.parameters["noop_dim"].string_value = str(n_features)
    _write(dst / "noop_step_py", py_step)
    shutil.copy(HERE / "noop_model.py", dst / "noop_step_py" / "1" / "model.py")
    for name, step_name in (("noop_stream", "noop_step"), ("noop_stream_py", "noop_step_py")):
        floor = model_config_pb2.ModelConfig()
        floor.CopyFrom(ens)
        floor.name = name
        floor.ensemble_scheduling.step[0].model_name = "noop_tokenizer"
        floor.ensemble_scheduling.step[1].model_name = step_name
        _write(dst / name, floor)


def input_data(data: Path, path: Path, n_streams: int, length: int, tokenizer=None) -> int:
    """perf_analyzer JSON: ``n_streams`` sequences of ``length`` consecutive recorded ticks each (raw ticks,
    or with ``tokenizer`` their TOKEN + FEATURES), one tick per request: each input ``{"content", "shape"}``
    with the time axis T = 1 first (the configs' dims start with -1)."""
    streams = []
    for sym, t in load_dataset(data).items():
        for start in range(0, len(t) - length + 1, length):
            chunk = t.slice(start, start + length)
            if tokenizer is not None:
                tokens, features, _ = tokenizer.transform(chunk)
                streams.append([_one_tick({TOKEN: [int(k)], FEATURES: f.tolist()}) for k, f in zip(tokens, features)])
            else:  # values in TICK_INPUTS order
                streams.append([_one_tick(dict(zip(TICK_INPUTS, (
                    [int(chunk.ts_ns[i])], chunk.bid_px[i].tolist(), chunk.bid_sz[i].tolist(), chunk.ask_px[i].tolist(),
                    chunk.ask_sz[i].tolist(), [float(chunk.trade_px[i])], [float(chunk.trade_sz[i])],
                    [int(chunk.trade_side[i])])))) for i in range(length)])
            if len(streams) == n_streams:
                path.write_text(json.dumps({"data": streams}))
                return len(streams)
    raise SystemExit(f"{data}: not enough ticks for {n_streams} streams of {length}")


def _one_tick(tensors: dict) -> dict:
    """perf_analyzer inputs of one tick: shape (T=1,) for one value, (1, n) for n values (books, FEATURES)."""
    return {name: {"content": v, "shape": [1] if name in (TOKEN, TS_NS, TRADE_PX, TRADE_SZ, TRADE_SIDE) else [1, len(v)]}
            for name, v in tensors.items()}


def perf(model: str, url: str, data: Path, interval_ms: int, streaming: bool, concurrency: int | None = None,
         rate: float | None = None, sequences: int = 64) -> dict:
    """One perf_analyzer measurement; also perf_analyzer's CPU use in cores (user + system / wall)."""
    load = (["--concurrency-range", str(concurrency)] if rate is None
            else ["--request-rate-range", f"{rate:.0f}", "--num-of-sequences", str(sequences)])
    with tempfile.NamedTemporaryFile(suffix=".csv") as report:
        cmd = ["perf_analyzer", "-m", model, "-i", "grpc", "-u", url, *(["--streaming"] if streaming else []),
               "--input-data", str(data), *load, "--measurement-interval", str(interval_ms),
               # 3 windows, averaged: on shared cores a stability criterion is rarely met, and each figure is
               # read against a floor measured back to back with it, not on its own
               "--stability-percentage", "1000", "--max-trials", "3", "-f", report.name]
        before, t0 = resource.getrusage(resource.RUSAGE_CHILDREN), time.monotonic()
        run = subprocess.run(cmd, capture_output=True, text=True)
        after, wall = resource.getrusage(resource.RUSAGE_CHILDREN), time.monotonic() - t0
        if run.returncode != 0:
            raise SystemExit(f"{' '.join(cmd)} failed:\n{run.stdout[-3000:]}\n{run.stderr[-3000:]}")
        row = next(csv.DictReader(io.StringIO(Path(report.name).read_text())))
    cpu = (after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime) / wall
    return {"p50_us": float(row["p50 latency"]), "p99_us": float(row["p99 latency"]),
            "throughput": float(row["Inferences/Second"]), "perf_cores": cpu,
            "cmd": " ".join(cmd).replace(report.name, "report.csv").replace(str(data.parent), "$TMP")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repo", type=Path, default=Path("build/model_repository"))
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--out", type=Path, default=HERE / "results.md")
    ap.add_argument("--concurrency", default="1,16,64,256")
    ap.add_argument("--rate-level", type=int, default=64, help="sequences whose capacity sets the fixed rate")
    ap.add_argument("--length", type=int, default=100, help="ticks per sequence")
    ap.add_argument("--interval-ms", type=int, default=4000)
    ap.add_argument("--streaming", action="store_true", help="gRPC streaming (safe with the launcher's --grpc-infer-allocation-pool-size)")
    args = ap.parse_args()
    levels = [int(c) for c in args.concurrency.split(",")]
    from lob.tokenizer import Tokenizer

    with tempfile.TemporaryDirectory(prefix="lob-bench-") as tmp:
        tmp = Path(tmp)
        tokenizer = Tokenizer.load(args.repo / TOKENIZER_JSON)
        build_repo(args.repo, tmp / "repo", tokenizer.n_features)
        files = {"ticks": tmp / "ticks.json", "tokens": tmp / "tokens.json"}
        n_streams = input_data(args.data, files["ticks"], max(levels), args.length)
        input_data(args.data, files["tokens"], max(levels), args.length, tokenizer)
        version = json.loads((args.repo / EXPORT_JSON).read_text())["model_version"]
        rows, rated = {}, {}
        with TritonServer(tmp / "repo", "cpu", grpc_port=18801, http_port=18800, metrics_port=18802,
                          log_file=tmp / "server.log", extra_models=FLOORS) as server:
            for c in levels:  # every topology back to back at each level: same load on the shared cores
                for label, model, kind in RUNS:
                    rows[label, c] = perf(model, server.url, files[kind], args.interval_ms, args.streaming, concurrency=c)
                    print(label, c, rows[label, c], flush=True)
            for i, (label, model, kind) in enumerate(RUNS):
                if (label, args.rate_level) in rows and label in ("ensemble", "direct", "ensemble floor", "direct floor"):
                    rate = rows[label, args.rate_level]["throughput"] / 2
                    streams = json.loads(files[kind].read_text())["data"]
                    rated[label] = (rate, paced(server.url, model, streams, rate, sequences=args.rate_level,
                                                first_id=(1 << 40) + i * 1_000_000))
                    print(label, "paced", rated[label], flush=True)
            alive = server.returncode() is None
    write_results(args.out, levels, rows, rated, version, n_streams, alive, args)


def write_results(out: Path, levels, rows, rated, version: str, n_streams: int, alive: bool, args) -> None:
    transport = "gRPC streaming" if args.streaming else "unary gRPC"
    load = os.getloadavg()
    lines = [
        "# Ensemble and direct path (CPU profile) vs no-op floors of their topologies",
        "",
        f"Measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} on {platform.node()} "
        f"({os.cpu_count()} CPU cores, shared; load average {load[0]:.1f} at the end), tritonserver 2.51.0 (nvidia-pytriton "
        f"wheel) with the onnxruntime backend `make backend` builds, perf_analyzer 2.51.0, {transport}, sequence mode, "
        f"{n_streams} recorded tick sequences of {args.length} ticks (`--input-data`), model `{version}`. "
        f"Server alive after the run: {'yes' if alive else '**no**'}.",
        "Floors are no-op twins of the real configs in the same server (`bench/noop_model.py`, `bench/noop_onnx.py`); "
        "the python-python floor is the previous design's topology. Latencies are client-side per request; "
        "`perf cores` is perf_analyzer's own CPU use (it shares the 2 cores with the server).",
        "",
        "| sequences | topology | ticks/s | p50 | p99 | / python-python floor | / own floor (ticks/s) | p50 / own floor | perf cores |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    own = {"ensemble": "ensemble floor", "direct": "direct floor"}
    for c in levels:
        for label, _, _ in RUNS:
            r, base = rows[label, c], rows["python-python floor", c]
            floor = rows.get((own.get(label), c))
            vs_floor = "" if floor is None else f"{r['throughput'] / floor['throughput']:.2f}x"
            p50_floor = "" if floor is None else f"{r['p50_us'] / floor['p50_us']:.2f}x"
            lines.append(f"| {c} | {label} | {r['throughput']:,.0f} | {r['p50_us'] / 1e3:.2f} ms | {r['p99_us'] / 1e3:.2f} ms | "
                         f"{r['throughput'] / base['throughput']:.2f}x | {vs_floor} | {p50_floor} | {r['perf_cores']:.2f} |")
    lines += ["", f"Fixed offered load: half the capacity measured at {args.rate_level} sequences, offered by a paced "
              f"client (`bench/paced.py`) over {args.rate_level} sequences, one tick in flight each, 10 s after 2 s "
              "of warm-up; `late`: ticks sent > 1 ms after their slot because the previous answer had not come:", "",
              "| topology | offered ticks/s | achieved | late | p50 | p99 | p99 / own floor's | client cores |",
              "|---|---|---|---|---|---|---|---|"]
    for label, (rate, r) in rated.items():
        floor = rated.get(own.get(label), (None, None))[1]
        vs = "" if floor is None else f"{r['p99_us'] / floor['p99_us']:.2f}x"
        lines.append(f"| {label} | {rate:,.0f} | {r['throughput']:,.0f} | {r['late']} | {r['p50_us'] / 1e3:.2f} ms | "
                     f"{r['p99_us'] / 1e3:.2f} ms | {vs} | {r['client_cores']:.2f} |")
    lines += ["", "Command: `make bench` (= `bash bench/perf_analyzer.sh`); a measurement, e.g.:", "",
              "```", rows["ensemble", levels[-1]]["cmd"], "```", ""]
    out.write_text("\n".join(lines))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
