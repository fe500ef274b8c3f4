"""Per-tick step cost against the tick index, to 1,000,000 ticks: Mamba, Transformer with a full KV cache,
Transformer with the sliding-window ring, hybrid (ring); batch 1 and 64; in-process PyTorch and ONNX Runtime.

    make bench-step        # = python bench/step_cost.py --out bench  (writes step_cost.csv, step_cost.png)

Every model has the same size (the ``small`` presets: d_model 96 x 3 layers; ``--window`` W = 512 for the ring,
the committed run's, above the presets' 128: cost is linear in W, so this is the harder case). The cost
at a position is the time of a block of steps from the state at that position (the same state fed each
step, so a full cache stays at its length), paired with a block at the 1k-tick reference state of the
same series run right before it: the machine is shared and its load moves, so the ratio of each pair is
what is reported (median of ``--pairs`` pairs), beside the median step time. Times are the stepping
thread's CPU time (``time.thread_time``; torch and onnxruntime run 1 thread, on the caller): on 2 cores
shared at load ~12, wall time measures the scheduler (the 1k reference against itself read 0.4x-6.7x).

States at position p, built cheaply but as the model makes them:
- ring / hybrid: a forward over the ``--warm`` ticks before p started at position p - warm (POS = p; RoPE
  is relative, so the ring depends on the ticks only). A sliding-window stack of n layers depends on the
  last n * W ticks only, so with warm >= n_layer * W the ring is the one a run from tick 0 leaves. The
  hybrid's Mamba states hold those warm ticks of history.
- mamba: the state after a forward over the same ``--warm`` ticks: a Mamba state has no position; its cost
  could only move with its values (e.g. denormals), which the measurement would show.
- full: K/V of length p drawn at random (attention costs the same whatever the values), POS = p. Measured
  until a ratio passes ``--stop-ratio`` (10x) or the cache passes ``--mem-cap-gb`` at that batch; the CSV
  ends where it stopped.

CSV columns: arch, cache, runtime, batch, position, step_us (median per step), state_bytes (per sequence),
ratio_vs_1k (median of the paired ratios), n_steps (per block).
"""
from __future__ import annotations

import argparse
import csv
import math
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from lob.contract import FEATURES, TOKEN
from lob.export.onnx_step import export_step_onnx, io_names
from lob.models.registry import arch, config_from_preset

VOCAB, N_FEATURES = 960, 12
SERIES = (("mamba", "state"), ("transformer", "full"), ("transformer", "ring"), ("hybrid", "ring"))
POSITIONS = (1_000, 3_000, 10_000, 30_000, 100_000, 300_000, 1_000_000)
BATCHES = (1, 64)
COLUMNS = ("arch", "cache", "runtime", "batch", "position", "step_us", "state_bytes", "ratio_vs_1k", "n_steps")


def build_models(preset: str, window: int) -> dict[str, torch.nn.Module]:
    models = {}
    for name in ("mamba", "transformer", "hybrid"):
        torch.manual_seed(0)
        overrides = {} if name == "mamba" else {"window": window}
        models[name] = arch(name).model(config_from_preset(name, preset, VOCAB, N_FEATURES, **overrides)).eval()
    return models


@torch.no_grad()
def state_at(model, name: str, cache: str, position: int, warm: int, rng: np.random.Generator) -> list[torch.Tensor]:
    """The batch-1 state after ``position`` ticks (see the module docstring for how each form is built)."""
    if cache == "full":
        k, v, pos = model.allocate_inference_cache(1, cache="full")
        shape = (*k.shape[:3], position, k.shape[4])
        g = torch.Generator().manual_seed(position)
        return [torch.randn(shape, generator=g), torch.randn(shape, generator=g), pos + position]
    n = min(warm, position)
    tokens = torch.from_numpy(rng.integers(0, VOCAB, (1, n)))
    features = torch.from_numpy(rng.standard_normal((1, n, N_FEATURES), dtype=np.float32))
    start = torch.full((1, 1), position - n, dtype=torch.int64)
    state = None
    for a in range(0, n, 512):
        args = (tokens[:, a:a + 512], features[:, a:a + 512])
        if state is not None:
            out = model(*args, *state)
        elif name == "mamba":
            out = model(*args)
        else:  # fresh at position - n: no ring yet, positions from there
            out = model(*args, pos=start)
        state = list(out[2:])
    return state


def batched(state: list[torch.Tensor], batch: int) -> list[torch.Tensor]:
    return [s.expand(batch, *s.shape[1:]).contiguous() for s in state]


class TorchStep:
    def __init__(self, model, cache: str):
        self.model, self.kwargs = model, ({} if cache == "state" else {"cache": cache})

    def runner(self, state: list[torch.Tensor], batch: int):
        token = torch.zeros(batch, dtype=torch.int64)
        features = torch.zeros(batch, N_FEATURES)

        def run():
            with torch.no_grad():
                self.model.step(token, features, *state, **self.kwargs)
        return run


class OrtStep:
    def __init__(self, model, cache: str, folder: Path):
        path = folder / f"{type(model).__name__}-{cache}.onnx"
        export_step_onnx(model, path, cache=None if cache == "state" else cache)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = opts.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        self.state_in = io_names(model)[0][2:]

    def runner(self, state: list[torch.Tensor], batch: int):
        feed = {TOKEN: np.zeros((batch, 1), np.int64), FEATURES: np.zeros((batch, N_FEATURES), np.float32),
                **{n: s.numpy() for n, s in zip(self.state_in, state)}}
        return lambda: self.session.run(None, feed)


def block_time(run, n: int) -> float:
    """CPU seconds of this thread per step over a block of n steps (torch and onnxruntime both run on the
    calling thread with 1 intra-op thread): the time the machine's other load takes is not counted."""
    t = time.thread_time()
    for _ in range(n):
        run()
    return (time.thread_time() - t) / n


def calibrate(run, target_s: float) -> int:
    run()  # warm-up (first-run allocations)
    t1 = block_time(run, 1)
    return max(1, min(200, math.ceil(target_s / max(t1, 1e-6))))


def measure(ref_run, run, pairs: int, target_s: float) -> tuple[float, float, int]:
    """(median s per step at the position, median of the paired ratios vs the reference, steps per block)."""
    n_ref, n = calibrate(ref_run, target_s), calibrate(run, target_s)
    times, ratios = [], []
    for _ in range(pairs):
        t_ref = block_time(ref_run, n_ref)
        t = block_time(run, n)
        times.append(t)
        ratios.append(t / t_ref)
    return statistics.median(times), statistics.median(ratios), n


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=Path("bench"))
    ap.add_argument("--preset", default="small")
    ap.add_argument("--window", type=int, default=512, help="W of the ring (Transformer and hybrid)")
    ap.add_argument("--positions", type=int, nargs="+", default=list(POSITIONS))
    ap.add_argument("--batches", type=int, nargs="+", default=list(BATCHES))
    ap.add_argument("--runtimes", nargs="+", default=["torch", "ort"])
    ap.add_argument("--warm", type=int, default=2048, help="ticks of real history behind a ring/Mamba state")
    ap.add_argument("--pairs", type=int, default=5)
    ap.add_argument("--block-s", type=float, default=0.03, help="target seconds per timed block")
    ap.add_argument("--stop-ratio", type=float, default=10.0)
    ap.add_argument("--mem-cap-gb", type=float, default=1.0, help="largest full KV cache (all sequences) measured")
    args = ap.parse_args(argv)

    torch.set_num_threads(1)
    models = build_models(args.preset, args.window)
    rng = np.random.default_rng(0)
    ref_pos = args.positions[0]
    args.out.mkdir(parents=True, exist_ok=True)
    rows, stops = [], []
    t_start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        for name, cache in SERIES:
            model = models[name]
            if name != "mamba":
                assert args.warm >= model.config.n_layer * model.config.window, "warm < n_layer * W: ring not exact"
            steppers = {"torch": TorchStep(model, cache)}
            if "ort" in args.runtimes:
                steppers["ort"] = OrtStep(model, cache, Path(tmp))
            ref_state = state_at(model, name, cache, ref_pos, args.warm, rng)
            stopped = {(rt, b): False for rt in args.runtimes for b in args.batches}
            for position in args.positions:
                if all(stopped.values()):
                    break
                state = ref_state if position == ref_pos else state_at(model, name, cache, position, args.warm, rng)
                per_seq = sum(s[0].numel() * s.element_size() for s in state)
                for batch in args.batches:
                    if cache == "full" and per_seq * batch > args.mem_cap_gb * 2**30:
                        for rt in args.runtimes:
                            if not stopped[(rt, batch)]:
                                stopped[(rt, batch)] = True
                                stops.append(f"{name}/{cache} {rt} batch {batch}: stopped before position {position:,}"
                                             f" (cache {per_seq * batch / 2**30:.2f} GiB > cap {args.mem_cap_gb} GiB)")
                        continue
                    ref_b, state_b = batched(ref_state, batch), batched(state, batch)
                    for rt in args.runtimes:
                        if stopped[(rt, batch)]:
                            continue
                        step_s, ratio, n = measure(steppers[rt].runner(ref_b, batch), steppers[rt].runner(state_b, batch),
                                                   args.pairs, args.block_s)
                        rows.append(dict(arch=name, cache=cache, runtime=rt, batch=batch, position=position,
                                         step_us=round(step_s * 1e6, 1), state_bytes=per_seq,
                                         ratio_vs_1k=round(ratio, 3), n_steps=n))
                        print(f"{name:12s} {cache:5s} {rt:5s} b={batch:<3d} p={position:>9,d} {step_s * 1e6:10.1f} us "
                              f"x{ratio:6.2f}  state {per_seq / 1e3:10.1f} kB", flush=True)
                        if cache == "full" and ratio > args.stop_ratio:
                            stopped[(rt, batch)] = True
                            stops.append(f"{name}/{cache} {rt} batch {batch}: passed {args.stop_ratio:g}x at "
                                         f"position {position:,} (x{ratio:.1f})")
                del state
    elapsed = time.perf_counter() - t_start

    tmp_csv = args.out / ".step_cost.csv.tmp"
    with open(tmp_csv, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS)
        w.writeheader()
        w.writerows(rows)
    os.replace(tmp_csv, args.out / "step_cost.csv")
    plot(rows, args.out / "step_cost.png")
    load = os.getloadavg()
    print(f"\nwrote {args.out / 'step_cost.csv'} and step_cost.png in {elapsed:.0f} s; "
          f"load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}")
    for s in stops:
        print("full KV cache", s)
    return 0


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    batches = sorted({r["batch"] for r in rows})
    fig, axes = plt.subplots(2, len(batches), figsize=(6 * len(batches), 8), squeeze=False)
    series = sorted({(r["arch"], r["cache"], r["runtime"]) for r in rows})
    for j, batch in enumerate(batches):
        for key in series:
            pts = [r for r in rows if (r["arch"], r["cache"], r["runtime"]) == key and r["batch"] == batch]
            if not pts:
                continue
            x = [r["position"] for r in pts]
            style = "-" if key[2] == "torch" else "--"
            label = f"{key[0]} ({key[1]}) {key[2]}"
            axes[0, j].plot(x, [r["step_us"] for r in pts], style, marker="o", label=label)
            axes[1, j].plot(x, [r["ratio_vs_1k"] for r in pts], style, marker="o", label=label)
        for i, ylabel in enumerate(("µs per step (median)", "cost / cost at 1k (paired)")):
            ax = axes[i, j]
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_xlabel("tick index (position)")
            ax.set_ylabel(ylabel)
            ax.grid(True, which="both", alpha=0.3)
        axes[0, j].set_title(f"batch {batch}")
    axes[0, 0].legend(fontsize=7)
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    os.replace(tmp, path)


if __name__ == "__main__":
    sys.exit(main())
