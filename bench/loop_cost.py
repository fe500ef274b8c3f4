"""What the time axis costs: a live tick through the served step graph (``If(T == 1)``: the one-tick step as it is;
``lob.export.onnx_chunk.chunk_graph``) and through the Loop-only graph (issue 21's, still what TensorRT builds:
``loop_only``) against the one-tick step alone, all at T = 1; and a chunk's cost per tick, the served graph's
chunk branch (Mamba: its sequence graph) against the Loop over the step (``--chunk-len`` ticks, ``--chunk-batches``
sequences). One process.

    python bench/loop_cost.py --out bench/loop_cost.md     # ~4 min on 2 cores

Untrained models of each architecture's ``tiny`` preset (the default recipe's size; cost does not depend on the
weights), exported by ``lob.export.onnx_step.export_step_onnx`` with and without ``chunk_graph``; onnxruntime
CPU, 1 thread, zero inputs of batch B. Blocks of ``--calls`` calls alternate between the graphs and the median
of ``--blocks`` blocks is reported, with each graph's ratio to the one-tick step (the machine is shared: the
ratio of interleaved blocks is the measurement, not the absolute times). ``--options`` adds the served graph
under onnxruntime session options Triton's onnxruntime backend takes from config.pbtxt (``arena=0``:
``enable_mem_arena``, ``pattern=0``: ``enable_mem_pattern``, ``level=basic|extended``:
``optimization { graph { level } }``).
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
from lob.export.onnx_chunk import loop_only, one_tick_step
from lob.models import registry

VOCAB, N_FEATURES = 960, 12  # the default tokenizer's sizes
OPTIONS = {"arena=0": ("enable_cpu_mem_arena", False), "pattern=0": ("enable_mem_pattern", False),
           "level=basic": ("graph_optimization_level", ort.GraphOptimizationLevel.ORT_ENABLE_BASIC),
           "level=extended": ("graph_optimization_level", ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED)}


def _feed(session: ort.InferenceSession, batch: int, time: int = 1) -> dict[str, np.ndarray]:
    """Zeros for every input, symbolic dims = ``batch`` (first) or ``time``."""
    feed = {}
    for i in session.get_inputs():
        shape = [d if isinstance(d, int) else (batch if k == 0 else time) for k, d in enumerate(i.shape)]
        feed[i.name] = np.zeros(shape, np.int64 if "int64" in i.type else np.float32)
    return feed


def _interleaved(sessions: dict, feeds: dict, calls: int, blocks: int) -> dict[str, float]:
    """Median µs per call of each session over ``blocks`` interleaved blocks of ``calls`` calls."""
    times = {k: [] for k in sessions}
    for _ in range(blocks):
        for k, s in sessions.items():
            t0 = time.perf_counter()
            for _ in range(calls):
                s.run(None, feeds[k])
            times[k].append((time.perf_counter() - t0) / calls * 1e6)
    return {k: float(np.median(v)) for k, v in times.items()}


def _exports(arch: str, tmp: Path) -> tuple[Path, Path, Path]:
    """(served, one-tick step, Loop-only) graphs of an untrained ``tiny`` model of ``arch``, written once."""
    served, plain, loop = (tmp / f"{arch}-{k}.onnx" for k in ("served", "plain", "loop"))
    if not served.exists():
        model = registry.build(arch, vars(registry.config_from_preset(arch, "tiny", VOCAB, N_FEATURES))).eval()
        onnx_step.export_step_onnx(model, served)
        onnx.save(one_tick_step(onnx.load(served)), plain)
        onnx.save(loop_only(onnx.load(served)), loop)
    return served, plain, loop


def _session(path: Path, option: str | None) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = opts.inter_op_num_threads = 1
    if option:
        setattr(opts, *OPTIONS[option])
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def measure(arch: str, batch: int, calls: int, blocks: int, options: list[str], tmp: Path) -> dict:
    served, plain, loop = _exports(arch, tmp)
    sessions = {"plain": _session(plain, None), "loop": _session(loop, None), "served": _session(served, None),
                **{f"served {o}": _session(served, o) for o in options}}
    us = _interleaved(sessions, {k: _feed(s, batch) for k, s in sessions.items()}, calls, blocks)
    return {"arch": arch, "batch": batch, "us": us, "plain_nodes": len(onnx.load(plain).graph.node)}


def measure_chunk(arch: str, batch: int, length: int, blocks: int, tmp: Path) -> dict:
    """µs per tick and sequence of a (``batch``, ``length``) chunk: the served graph vs the Loop-only graph."""
    served, _, loop = _exports(arch, tmp)
    sessions = {"served": _session(served, None), "loop": _session(loop, None)}
    us = _interleaved(sessions, {k: _feed(s, batch, length) for k, s in sessions.items()}, 1, blocks)
    return {"arch": arch, "batch": batch, "us": {k: v / (batch * length) for k, v in us.items()}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=Path("bench/loop_cost.md"))
    ap.add_argument("--archs", default="mamba,transformer,hybrid")
    ap.add_argument("--batches", default="1,64")
    ap.add_argument("--calls", type=int, default=100)
    ap.add_argument("--blocks", type=int, default=20)
    ap.add_argument("--options", default="arena=0,pattern=0", help=f"comma list of {sorted(OPTIONS)}, or ''")
    ap.add_argument("--chunk-len", type=int, default=1024, help="ticks per chunk (the re-warm's chunk)")
    ap.add_argument("--chunk-batches", default="1,8,38", help="chunks per call (re-warm executes: mean 9, up to 38)")
    ap.add_argument("--chunk-blocks", type=int, default=5)
    args = ap.parse_args()
    options = [o for o in args.options.split(",") if o]
    with tempfile.TemporaryDirectory() as tmp:
        rows = [measure(a, b, args.calls, args.blocks, options, Path(tmp)) for a in args.archs.split(",")
                for b in map(int, args.batches.split(","))]
        chunks = [measure_chunk(a, b, args.chunk_len, args.chunk_blocks, Path(tmp)) for a in args.archs.split(",")
                  for b in map(int, args.chunk_batches.split(","))]
    extra = [f"served {o}" for o in options]
    lines = ["| arch | B | nodes (one-tick) | one-tick step (µs/call) | Loop, T = 1 (µs/call) | served If, T = 1 "
             "(µs/call) | Loop / one-tick | served / one-tick |" + "".join(f" {e} / one-tick |" for e in extra),
             "|---|---|---|---|---|---|---|---|" + "---|" * len(extra)]
    for r in rows:
        us = r["us"]
        lines.append(f"| {r['arch']} | {r['batch']} | {r['plain_nodes']} | {us['plain']:.1f} | {us['loop']:.1f} | "
                     f"{us['served']:.1f} | {us['loop'] / us['plain']:.2f}x | {us['served'] / us['plain']:.2f}x |"
                     + "".join(f" {us[e] / us['plain']:.2f}x |" for e in extra))
    lines += ["", f"A chunk of {args.chunk_len} ticks per sequence, µs per tick and sequence (median of "
              f"{args.chunk_blocks} interleaved calls):", "",
              "| arch | B | served chunk branch | Loop over the step | served / Loop |", "|---|---|---|---|---|"]
    lines += [f"| {r['arch']} | {r['batch']} | {r['us']['served']:.2f} | {r['us']['loop']:.2f} | "
              f"{r['us']['served'] / r['us']['loop']:.2f}x |" for r in chunks]
    print("\n".join(lines))
    args.out.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
