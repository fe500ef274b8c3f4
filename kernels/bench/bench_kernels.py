"""Time lobkernels' Triton kernels against their PyTorch references and a naive loop.

On a CUDA GPU: median times from triton.testing.do_bench over serving shapes (batch 1..4096, d_inner of the small
and base presets and 512, dstate 16) and training shapes (L 256..4096); prints the state update's achieved GB/s
against the device's measured copy bandwidth. Without a GPU: a small smoke configuration under the Triton
interpreter, whose times say nothing about performance (it says so).

Variants: `triton` (lobkernels), `torch_ref` (the `*_ref` function: batched PyTorch), `naive_loop` (what one writes
without either: one request at a time for the decode kernels, one decode step at a time for the scan).

    python kernels/bench/bench_kernels.py [--out out/bench_kernels]

Writes <out>/bench_kernels.csv (one row per kernel, variant and shape) and <out>/bench_kernels.png.
"""

from __future__ import annotations

import argparse
import csv
import os
import statistics
import time
from pathlib import Path

import torch

GPU = torch.cuda.is_available()
if not GPU:
    os.environ.setdefault("TRITON_INTERPRET", "1")  # must precede importing lobkernels (see kernels/README.md)

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import triton  # noqa: E402

from lob.io import atomic_write  # noqa: E402
from lobkernels import (  # noqa: E402
    causal_conv1d_update,
    causal_conv1d_update_ref,
    selective_scan_fn,
    selective_scan_ref,
    selective_state_update,
    selective_state_update_ref,
)

DEVICE = "cuda" if GPU else "cpu"
DSTATE = 16
D_CONV = 4
if GPU:
    BATCHES = (1, 4, 16, 64, 256, 1024, 4096)
    D_INNERS = (192, 384, 512)  # presets small (2 x 96) and base (2 x 192), and a wider model
    SEQ_LENS = (256, 512, 1024, 2048, 4096)
    TRAIN_BATCH, TRAIN_DIM = 16, 384
    NAIVE_MAX_BATCH = 256  # one request at a time: beyond this a single call takes seconds
    NAIVE_MAX_L = 1024
    REF_BWD_MAX_L = 2048  # the reference's autograd graph holds every step's state
else:
    BATCHES = (1, 4)
    D_INNERS = (24,)
    SEQ_LENS = (8, 16)
    TRAIN_BATCH, TRAIN_DIM = 1, 24
    NAIVE_MAX_BATCH = 4
    NAIVE_MAX_L = 16
    REF_BWD_MAX_L = 16
FIELDS = ("kernel", "variant", "batch", "dim", "dstate", "L", "ms", "speedup_vs_torch_ref", "bytes", "GBps",
          "fraction_of_copy_bw")


def bench_ms(fn) -> float:
    """Median milliseconds per call."""
    if GPU:
        return triton.testing.do_bench(fn, warmup=25, rep=100, return_mode="median")
    fn()  # the interpreter's first call pays for tracing
    times = []
    for _ in range(3):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def copy_bandwidth_gbps() -> float:
    """Device-to-device copy of 512 MiB: bytes read + written per second."""
    n = (512 << 20) // 4 if GPU else 1 << 20
    src = torch.empty(n, dtype=torch.float32, device=DEVICE).uniform_()
    dst = torch.empty_like(src)
    return 2 * src.numel() * 4 / (bench_ms(lambda: dst.copy_(src)) * 1e-3) / 1e9


def randn(*shape):
    return torch.randn(*shape, device=DEVICE)


def state_update_inputs(batch, dim):
    """Mamba-LOB's decode step: plain form, D, z, dt_bias, softplus."""
    return dict(state=randn(batch, dim, DSTATE), x=randn(batch, dim), dt=randn(batch, dim),
                A=-torch.rand(dim, DSTATE, device=DEVICE) - 0.1, B=randn(batch, DSTATE), C=randn(batch, DSTATE),
                D=randn(dim), z=randn(batch, dim), dt_bias=randn(dim), dt_softplus=True)


def state_update_bytes(batch, dim) -> int:
    """fp32 bytes the state update must move: state read + write, x/dt/z/out per channel, B/C per request,
    A/D/dt_bias once."""
    return 4 * (2 * batch * dim * DSTATE + 4 * batch * dim + 2 * batch * DSTATE + dim * DSTATE + 2 * dim)


def per_request(fn, inputs, batch_keys):
    """The naive loop: call fn on one request (row) at a time."""
    batch = inputs[batch_keys[0]].shape[0]
    rows = [{k: (v[i:i + 1] if k in batch_keys else v) for k, v in inputs.items()} for i in range(batch)]

    def run():
        for row in rows:
            fn(**row)
    return run


def bench_state_update(rows, copy_bw):
    keys = ("state", "x", "dt", "B", "C", "z")
    for dim in D_INNERS:
        for batch in BATCHES:
            inputs = state_update_inputs(batch, dim)
            nbytes = state_update_bytes(batch, dim)
            variants = {"triton": lambda: selective_state_update(**inputs),
                        "torch_ref": lambda: selective_state_update_ref(**inputs)}
            if batch <= NAIVE_MAX_BATCH:
                variants["naive_loop"] = per_request(selective_state_update_ref, inputs, keys)
            for variant, fn in variants.items():
                ms = bench_ms(fn)
                gbps = nbytes / (ms * 1e-3) / 1e9
                rows.append(dict(kernel="selective_state_update", variant=variant, batch=batch, dim=dim,
                                 dstate=DSTATE, L=1, ms=ms, bytes=nbytes, GBps=gbps,
                                 fraction_of_copy_bw=gbps / copy_bw))


def bench_conv_update(rows):
    for dim in D_INNERS:
        for batch in BATCHES:
            inputs = dict(x=randn(batch, dim), conv_state=randn(batch, dim, D_CONV - 1), weight=randn(dim, D_CONV),
                          bias=randn(dim), activation="silu")
            variants = {"triton": lambda: causal_conv1d_update(**inputs),
                        "torch_ref": lambda: causal_conv1d_update_ref(**inputs)}
            if batch <= NAIVE_MAX_BATCH:
                variants["naive_loop"] = per_request(causal_conv1d_update_ref, inputs, ("x", "conv_state"))
            for variant, fn in variants.items():
                rows.append(dict(kernel="causal_conv1d_update", variant=variant, batch=batch, dim=dim, dstate="",
                                 L=1, ms=bench_ms(fn)))


def scan_inputs(L):
    b, d, n = TRAIN_BATCH, TRAIN_DIM, DSTATE
    return dict(u=randn(b, d, L), delta=randn(b, d, L), A=-torch.rand(d, n, device=DEVICE) - 0.1,
                B=randn(b, n, L), C=randn(b, n, L), D=randn(d), z=randn(b, d, L), delta_bias=randn(d))


def scan_by_decode_steps(u, delta, A, B, C, D, z, delta_bias):
    """The naive loop: the scan as L decode steps of the reference state update."""
    state = u.new_zeros(u.shape[0], u.shape[1], A.shape[1])
    return torch.stack([selective_state_update_ref(state, u[..., t], delta[..., t], A, B[..., t], C[..., t], D,
                                                   z[..., t], delta_bias, dt_softplus=True)
                        for t in range(u.shape[-1])], dim=-1)


def bench_scan(rows):
    for L in SEQ_LENS:
        inputs = scan_inputs(L)
        with torch.no_grad():
            variants = {"triton": lambda: selective_scan_fn(**inputs, delta_softplus=True),
                        "torch_ref": lambda: selective_scan_ref(**inputs, delta_softplus=True)}
            if L <= NAIVE_MAX_L:
                variants["naive_loop"] = lambda: scan_by_decode_steps(**inputs)
            for variant, fn in variants.items():
                rows.append(dict(kernel="selective_scan_fwd", variant=variant, batch=TRAIN_BATCH, dim=TRAIN_DIM,
                                 dstate=DSTATE, L=L, ms=bench_ms(fn)))

        leaves = {k: v.requires_grad_() for k, v in inputs.items()}
        grad = torch.randn_like(inputs["u"])

        def fwd_bwd(fn):
            return lambda: torch.autograd.grad(fn(**leaves, delta_softplus=True), list(leaves.values()), grad)
        variants = {"triton": fwd_bwd(selective_scan_fn)}
        if L <= REF_BWD_MAX_L:
            variants["torch_ref"] = fwd_bwd(selective_scan_ref)
        for variant, fn in variants.items():
            rows.append(dict(kernel="selective_scan_fwd_bwd", variant=variant, batch=TRAIN_BATCH, dim=TRAIN_DIM,
                             dstate=DSTATE, L=L, ms=bench_ms(fn)))


def add_speedups(rows):
    ref = {(r["kernel"], r["batch"], r["dim"], r["L"]): r["ms"] for r in rows if r["variant"] == "torch_ref"}
    for r in rows:
        base = ref.get((r["kernel"], r["batch"], r["dim"], r["L"]))
        r["speedup_vs_torch_ref"] = base / r["ms"] if base else ""


def plot(rows, copy_bw, path: Path):
    fig, axes = plt.subplots(2, 2, figsize=(12, 9))
    styles = {"triton": "-o", "torch_ref": "--s", "naive_loop": ":^"}

    def lines(ax, kernel, x, y, group):
        for (variant, g) in sorted({(r["variant"], r[group]) for r in rows if r["kernel"] == kernel}):
            sel = [r for r in rows if r["kernel"] == kernel and r["variant"] == variant and r[group] == g]
            tag = g.removeprefix("selective_scan_") if group == "kernel" else f"{group}={g}"
            ax.plot([r[x] for r in sel], [r[y] for r in sel], styles[variant], label=f"{variant} {tag}")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)

    lines(axes[0, 0], "selective_state_update", "batch", "ms", "dim")
    axes[0, 0].set(title="selective_state_update", xlabel="batch", ylabel="ms (median)")
    ax = axes[0, 1]
    for dim in D_INNERS:
        sel = [r for r in rows if r["kernel"] == "selective_state_update" and r["variant"] == "triton"
               and r["dim"] == dim]
        ax.plot([r["batch"] for r in sel], [r["GBps"] for r in sel], "-o", label=f"triton dim={dim}")
    ax.axhline(copy_bw, color="k", label=f"copy {copy_bw:.0f} GB/s")
    ax.axhline(0.7 * copy_bw, color="k", linestyle="--", label="70% of copy")
    ax.set_xscale("log", base=2)
    ax.set(title="selective_state_update achieved bandwidth", xlabel="batch", ylabel="GB/s")
    ax.legend(fontsize=7)
    ax.grid(True, alpha=0.3)
    lines(axes[1, 0], "causal_conv1d_update", "batch", "ms", "dim")
    axes[1, 0].set(title="causal_conv1d_update (width 4)", xlabel="batch", ylabel="ms (median)")
    lines(axes[1, 1], "selective_scan_fwd", "L", "ms", "kernel")
    lines(axes[1, 1], "selective_scan_fwd_bwd", "L", "ms", "kernel")
    axes[1, 1].set(title=f"selective_scan, batch {TRAIN_BATCH}, dim {TRAIN_DIM}", xlabel="L", ylabel="ms (median)")
    device = torch.cuda.get_device_name() if GPU else "CPU, Triton interpreter (smoke run, not performance)"
    fig.suptitle(f"lobkernels on {device}")
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110))
    plt.close(fig)


def write_csv(rows, path: Path):
    def write(tmp):
        with open(tmp, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=FIELDS)
            w.writeheader()
            for r in rows:
                w.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items()})
    atomic_write(path, write)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("out/bench_kernels"), help="folder for the CSV and plot")
    args = parser.parse_args()
    torch.manual_seed(0)
    if GPU:
        print(f"device: {torch.cuda.get_device_name()}, triton {triton.__version__}, torch {torch.__version__}")
    else:
        print("No CUDA GPU: smoke configuration under the Triton interpreter. The times below check that the "
              "benchmark runs; they are not kernel performance.")
    copy_bw = copy_bandwidth_gbps()
    print(f"copy bandwidth: {copy_bw:.1f} GB/s")
    rows = []
    bench_state_update(rows, copy_bw)
    bench_conv_update(rows)
    bench_scan(rows)
    add_speedups(rows)

    for r in rows:
        if r["kernel"] == "selective_state_update" and r["variant"] == "triton":
            print(f"selective_state_update batch={r['batch']:5d} dim={r['dim']:4d}: {r['ms'] * 1e3:9.1f} us "
                  f"{r['GBps']:8.1f} GB/s = {100 * r['fraction_of_copy_bw']:5.1f}% of copy, "
                  f"{r['speedup_vs_torch_ref']:.1f}x torch_ref")
    for r in rows:
        if r["kernel"].startswith("selective_scan") and r["variant"] == "triton":
            speedup = r["speedup_vs_torch_ref"]
            print(f"{r['kernel']} L={r['L']:5d}: {r['ms']:9.3f} ms"
                  + (f", {speedup:.1f}x torch_ref" if speedup else ", torch_ref not run at this L"))
    write_csv(rows, args.out / "bench_kernels.csv")
    plot(rows, copy_bw, args.out / "bench_kernels.png")
    print(f"wrote {args.out / 'bench_kernels.csv'} and {args.out / 'bench_kernels.png'}")


if __name__ == "__main__":
    main()
