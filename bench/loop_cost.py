"""What the time axis costs a live tick: the served step graph (one-tick step inside an ONNX ``Loop`` over T,
issue 21) against the same one-tick step without the loop, both at T = 1, in one process.

    python bench/loop_cost.py --out bench/loop_cost.md     # ~1 min on 2 cores

Untrained models of each architecture's ``tiny`` preset (the default recipe's size; cost does not depend on the
weights), exported by ``lob.export.onnx_step.export_step_onnx`` with and without ``chunk_graph``; onnxruntime
CPU, 1 thread, zero inputs of batch B. Blocks of ``--calls`` calls alternate between the two graphs and the
median of ``--blocks`` blocks is reported, with the ratio loop / plain (the machine is shared: the ratio of
interleaved blocks is the measurement, not the absolute times).
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

import lob.export.onnx_step as onnx_step
from lob.models import registry

VOCAB, N_FEATURES = 960, 12  # the default tokenizer's sizes


def _feed(session: ort.InferenceSession, batch: int) -> dict[str, np.ndarray]:
    """Zeros for every input, symbolic dims = ``batch`` (first) or 1 (time)."""
    feed = {}
    for i in session.get_inputs():
        shape = [d if isinstance(d, int) else (batch if k == 0 else 1) for k, d in enumerate(i.shape)]
        feed[i.name] = np.zeros(shape, np.int64 if "int64" in i.type else np.float32)
    return feed


def measure(arch: str, batch: int, calls: int, blocks: int, tmp: Path) -> dict:
    model = registry.build(arch, vars(registry.config_from_preset(arch, "tiny", VOCAB, N_FEATURES))).eval()
    chunked = onnx_step.chunk_graph
    paths = {"loop": tmp / f"{arch}-loop.onnx", "plain": tmp / f"{arch}-plain.onnx"}
    onnx_step.export_step_onnx(model, paths["loop"])
    onnx_step.chunk_graph = lambda m: m  # the same export, the one-tick graph as it is
    try:
        onnx_step.export_step_onnx(model, paths["plain"])
    finally:
        onnx_step.chunk_graph = chunked
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = opts.inter_op_num_threads = 1
    sessions = {k: ort.InferenceSession(str(p), opts, providers=["CPUExecutionProvider"]) for k, p in paths.items()}
    feeds = {k: _feed(s, batch) for k, s in sessions.items()}
    times = {k: [] for k in sessions}
    for _ in range(blocks):
        for k, s in sessions.items():
            t0 = time.perf_counter()
            for _ in range(calls):
                s.run(None, feeds[k])
            times[k].append((time.perf_counter() - t0) / calls * 1e6)
    plain, loop = (float(np.median(times[k])) for k in ("plain", "loop"))
    return {"arch": arch, "batch": batch, "plain_us": plain, "loop_us": loop, "ratio": loop / plain,
            "plain_nodes": len(onnx.load(paths["plain"]).graph.node)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=Path("bench/loop_cost.md"))
    ap.add_argument("--archs", default="mamba,transformer,hybrid")
    ap.add_argument("--batches", default="1,64")
    ap.add_argument("--calls", type=int, default=100)
    ap.add_argument("--blocks", type=int, default=20)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        rows = [measure(a, b, args.calls, args.blocks, Path(tmp)) for a in args.archs.split(",")
                for b in map(int, args.batches.split(","))]
    lines = ["| arch | B | one-tick step (µs/call) | Loop over T, T = 1 (µs/call) | loop / plain | nodes (plain) |",
             "|---|---|---|---|---|---|"]
    lines += [f"| {r['arch']} | {r['batch']} | {r['plain_us']:.1f} | {r['loop_us']:.1f} | {r['ratio']:.2f}x | "
              f"{r['plain_nodes']} |" for r in rows]
    print("\n".join(lines))
    args.out.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
