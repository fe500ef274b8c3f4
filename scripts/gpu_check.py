"""One bounded check of the project on a lent GPU: kernels against their references, kernel speed, mixed precision
over a long simulated stream, and step throughput with the state pool (docs/gpu.md).

    python scripts/gpu_check.py --out DIR            # on a CUDA GPU; about 5 minutes on one H100 (--budget-s)
    python scripts/gpu_check.py --cpu --out DIR      # the same code paths on tiny shapes (Triton's interpreter)

Runs from a plain checkout (it puts training/ and kernels/ on sys.path). Writes DIR/report.md, DIR/report.json
(device, versions, one entry per section: status "ok" | "failed" | "skipped: <reason>", rows) and DIR/results.csv
(one row per measurement, the section named). Every measurement is caught on its own: an error becomes a failed
row naming it and the script goes on; sections past the time budget are skipped and say so. Exit status 1 when any
row failed.
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import os
import platform
import sys
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "training"), str(ROOT / "kernels")]

NO_GPU = "skipped: no GPU"
PRESETS = ("tiny", "small", "base")
SERVING_BATCHES = (1, 64, 1024, 4096)
DTYPES = ("float32", "float16", "bfloat16")
# mamba_ssm's tolerances (rtol, atol), as the kernel unit tests use them; gradients that sum over batch and
# sequence (A, B, C, D, delta_bias) get 2 x rtol and 5 x atol, as mamba_ssm's scan test gives its weight gradients.
TOL = {"float32": (3e-4, 1e-3), "float16": (5e-3, 1e-2), "bfloat16": (1e-2, 5e-2)}
SUMMED_GRADS = ("A", "B", "C", "D", "delta_bias")


def sizes(gpu: bool) -> dict:
    """Shapes and budgets of each mode. Kernel shapes: the unit tests' (batch, dim, L, dstate), the two they skip on
    CPU (training shapes L 256 / 2048 at dim 384) and the serving shapes (batch x each preset's d_inner)."""
    if gpu:
        return dict(scan_shapes=[(1, 5, 1, 1), (3, 70, 7, 16), (1, 40, 129, 16), (2, 3, 7, 1), (4, 384, 256, 16),
                                 (4, 384, 2048, 16)],
                    decode_shapes=[(1, 5, 1), (3, 40, 16), (2, 33, 16)], serving_batches=SERVING_BATCHES,
                    presets=PRESETS, pool_extra=1024, mp_preset="small", mp_ticks=100_000, mp_streams=4,
                    mp_windows=10, throughput_batches=SERVING_BATCHES, cpu_throughput_batches=(1, 64, 1024),
                    throughput_s=0.5, speed_scan_L=(256, 2048), speed_scan_batch_dim=(4, 384),
                    speed_dims=tuple(d_inner(p) for p in PRESETS), speed_batches=SERVING_BATCHES)
    return dict(scan_shapes=[(2, 6, 9, 16)], decode_shapes=[(1, 5, 1), (3, 8, 16)],
                serving_batches=(3,), presets=("tiny",), pool_extra=5, mp_preset="tiny", mp_ticks=4, mp_streams=2,
                mp_windows=2, throughput_batches=(1, 4), cpu_throughput_batches=(), throughput_s=0.05,
                speed_scan_L=(9,), speed_scan_batch_dim=(1, 8), speed_dims=(8,), speed_batches=(2,))


class Check:
    """The run's state: device, deadline, the sections' results."""

    def __init__(self, gpu: bool, budget_s: float, out: Path | None = None):
        import torch

        self.torch = torch
        self.gpu = gpu
        self.device = "cuda" if gpu else "cpu"
        self.size = sizes(gpu)
        self.start = time.monotonic()
        self.deadline = self.section_deadline = self.start + budget_s
        self.out = out
        self.sections: dict[str, dict] = {}

    def left(self) -> float:
        """Seconds left to the running section (its share of the budget)."""
        return min(self.deadline, self.section_deadline) - time.monotonic()

    def section(self, name: str, fn, gpu_only: str | None = None, share: float = 1.0) -> None:
        """Run fn(rows) into section ``name`` within ``share`` of the time left (unused time passes on);
        ``gpu_only`` (the reason) skips it without a GPU. The report is rewritten after each section, so a run
        stopped from outside still leaves the sections done."""
        self.section_deadline = time.monotonic() + share * (self.deadline - time.monotonic())
        rows: list[dict] = []
        entry = {"status": "ok", "rows": rows}
        if gpu_only and not self.gpu:
            entry["status"] = f"{NO_GPU} ({gpu_only})"
        elif self.left() <= 0:
            entry["status"] = "skipped: time budget spent"
        else:
            t0 = time.monotonic()
            try:
                fn(rows)
            except Exception:  # noqa: BLE001 - one broken section must not cost the others on a 15-minute lease
                rows.append({"what": "section", "status": "failed", "error": traceback.format_exc(limit=3)})
            entry["seconds"] = round(time.monotonic() - t0, 1)
            if any(r.get("status") == "failed" for r in rows):
                entry["status"] = "failed"
        self.sections[name] = entry
        print(f"[gpu_check] {name}: {entry['status']} ({len(rows)} rows)", flush=True)
        if self.out is not None:
            write_report(self, self.out)

    def guarded(self, rows: list, what: dict, fn) -> None:
        """Append ``what`` + fn()'s fields as one row; an exception becomes a failed row naming the error."""
        if self.left() <= 0:
            rows.append({**what, "status": "skipped: time budget spent"})
            return
        try:
            rows.append({**what, **fn()})
        except Exception as err:  # noqa: BLE001
            rows.append({**what, "status": "failed", "error": f"{type(err).__name__}: {err}"[:500]})


# ------------------------------------------------------------------------------------ kernels vs references

def compare(actual, expected, dtype: str, scale: tuple[float, float] = (1, 1)) -> dict:
    """max |actual - expected| and whether allclose at the dtype's (rtol, atol) times ``scale``."""
    torch = sys.modules["torch"]
    rtol, atol = TOL[dtype]
    a, e = actual.detach().float(), expected.detach().float()
    ok = bool(torch.allclose(a, e, rtol=rtol * scale[0], atol=atol * scale[1]))
    return {"max_abs_err": float((a - e).abs().max()) if a.numel() else 0.0, "ok": ok}


def verdict(parts: dict[str, dict]) -> dict:
    """One row's fields from per-tensor comparisons: the worst error, the tensors outside tolerance."""
    bad = [k for k, v in parts.items() if not v["ok"]]
    return {"max_abs_err": max(v["max_abs_err"] for v in parts.values()), "status": "failed" if bad else "ok",
            **({"error": f"outside tolerance: {', '.join(bad)}"} if bad else {})}


def scan_row(c: Check, batch: int, dim: int, L: int, dstate: int, dtype: str) -> dict:
    """selective_scan_fn vs selective_scan_ref, forward (out, last state) and the gradients of every input."""
    import lobkernels

    torch, dt = c.torch, getattr(c.torch, dtype)
    g = torch.Generator().manual_seed(0)

    def rand(*shape, scale=1.0, shift=0.0, to=dt):
        return (torch.rand(*shape, generator=g) * scale + shift).to(c.device, to)

    def randn(*shape, to=dt):
        return torch.randn(*shape, generator=g).to(c.device, to)

    inputs = dict(u=randn(batch, dim, L), delta=rand(batch, dim, L, scale=0.5),
                  A=rand(dim, dstate, scale=-0.5, shift=-0.1, to=torch.float32), B=randn(batch, dstate, L),
                  C=randn(batch, dstate, L), D=randn(dim, to=torch.float32), z=randn(batch, dim, L),
                  delta_bias=rand(dim, scale=0.5, to=torch.float32))
    runs = []
    for fn in (lobkernels.selective_scan_fn, lobkernels.selective_scan_ref):
        leaves = {k: v.detach().clone().requires_grad_() for k, v in inputs.items()}
        out, last = fn(**leaves, delta_softplus=True, return_last_state=True)
        grads = torch.autograd.grad((out.float().sum() + last.sum()), list(leaves.values()))
        runs.append((out, last, dict(zip(leaves, grads))))
    (out, last, grads), (out_ref, last_ref, grads_ref) = runs
    parts = {"out": compare(out, out_ref, dtype), "last_state": compare(last, last_ref, dtype)}
    for name, ref in grads_ref.items():
        parts[f"d{name}"] = compare(grads[name], ref, dtype, (2, 5) if name in SUMMED_GRADS else (1, 1))
    return verdict(parts)


def state_update_row(c: Check, batch: int, dim: int, dstate: int, dtype: str, pool_extra: int) -> dict:
    """selective_state_update on `batch` random rows of a pool of batch + pool_extra slots vs the reference; the
    rows not named must stay bit-identical."""
    import lobkernels

    torch, dt = c.torch, getattr(c.torch, dtype)
    g = torch.Generator().manual_seed(1)
    pool = batch + pool_extra

    def randn(*shape, to=dt):
        return torch.randn(*shape, generator=g).to(c.device, to)

    A = (-torch.rand(dim, dstate, generator=g) - 0.1).to(c.device)
    inputs = dict(x=randn(batch, dim), dt=randn(batch, dim), A=A,
                  B=randn(batch, dstate), C=randn(batch, dstate), D=randn(dim, to=torch.float32), z=randn(batch, dim),
                  dt_bias=randn(dim, to=torch.float32))
    state = randn(pool, dim, dstate)
    indices = torch.randperm(pool, generator=g)[:batch].to(c.device)
    before = state.clone()
    state_ref = state.clone()
    out = lobkernels.selective_state_update(state, **inputs, dt_softplus=True, state_batch_indices=indices)
    out_ref = lobkernels.selective_state_update_ref(state_ref, **inputs, dt_softplus=True,
                                                    state_batch_indices=indices)
    untouched = torch.ones(pool, dtype=torch.bool, device=c.device)
    untouched[indices] = False
    row = verdict({"out": compare(out, out_ref, dtype), "state": compare(state[indices], state_ref[indices], dtype)})
    row["pool_rows_untouched_identical"] = bool(torch.equal(state[untouched], before[untouched]))
    if not row["pool_rows_untouched_identical"]:
        row.update(status="failed", error="rows of the pool not named were modified")
    return row


def conv_update_row(c: Check, batch: int, dim: int, dtype: str) -> dict:
    """causal_conv1d_update (width 4, state_len 3, SiLU, bias) vs its reference: output and shifted state."""
    import lobkernels

    torch, dt = c.torch, getattr(c.torch, dtype)
    g = torch.Generator().manual_seed(2)
    x, state, w, b = (torch.randn(*s, generator=g).to(c.device, dt) for s in ((batch, dim), (batch, dim, 3), (dim, 4),
                                                                              (dim,)))
    state_ref = state.clone()
    out = lobkernels.causal_conv1d_update(x, state, w, b, activation="silu")
    out_ref = lobkernels.causal_conv1d_update_ref(x, state_ref, w, b, activation="silu")
    return verdict({"out": compare(out, out_ref, dtype), "conv_state": compare(state, state_ref, dtype)})


def d_inner(preset: str) -> int:
    from lob.models.mamba import PRESETS, MambaFields

    return MambaFields.expand * PRESETS[preset]["d_model"]


def kernels(c: Check, rows: list) -> None:
    s = c.size
    decode = [(b, d, n, "test shape") for b, d, n in s["decode_shapes"]]
    decode += [(b, d_inner(p), 16, f"serving {p}") for p in s["presets"] for b in s["serving_batches"]]
    for dtype in DTYPES:
        for shape in s["scan_shapes"]:
            c.guarded(rows, dict(kernel="selective_scan fwd+bwd", dtype=dtype, shape="batch,dim,L,dstate=%d,%d,%d,%d"
                                 % shape, tol="rtol %g atol %g" % TOL[dtype]), lambda: scan_row(c, *shape, dtype))
        for batch, dim, dstate, kind in decode:
            what = dict(kernel="selective_state_update", dtype=dtype, shape=f"batch,dim,dstate={batch},{dim},{dstate}",
                        tol="rtol %g atol %g" % TOL[dtype], kind=kind)
            c.guarded(rows, what, lambda: state_update_row(c, batch, dim, dstate, dtype, s["pool_extra"]))
            c.guarded(rows, {**what, "kernel": "causal_conv1d_update", "shape": f"batch,dim={batch},{dim}"},
                      lambda: conv_update_row(c, batch, dim, dtype))


# ------------------------------------------------------------------------------------------------ kernel speed

def do_bench_ms(fn) -> float:
    """Median milliseconds per call (triton.testing.do_bench: CUDA events, L2 flushed between calls)."""
    import triton

    return triton.testing.do_bench(fn, warmup=10, rep=50, return_mode="median")


def kernel_speed(c: Check, rows: list, ms=do_bench_ms) -> None:
    """State update (fp32, plain form, softplus, D, z, dt_bias): effective GB/s and time against a device-to-device
    copy of the same bytes; scan forward (fp32): time against selective_scan_ref."""
    import lobkernels

    torch, dev, s = c.torch, c.device, c.size

    def state_update(batch: int, dim: int) -> dict:
        st = torch.randn(batch, dim, 16, device=dev)
        x, dt, z = (torch.randn(batch, dim, device=dev) for _ in range(3))
        B, C = (torch.randn(batch, 16, device=dev) for _ in range(2))
        A = -torch.rand(dim, 16, device=dev) - 0.1
        D, bias = torch.randn(dim, device=dev), torch.randn(dim, device=dev)
        t = ms(lambda: lobkernels.selective_state_update(st, x, dt, A, B, C, D, z, dt_bias=bias, dt_softplus=True))
        # state read + written, x/dt/z read and out written, B/C per request, A/D/dt_bias once
        nbytes = 4 * (2 * st.numel() + 4 * x.numel() + 2 * B.numel() + A.numel() + 2 * dim)
        src = torch.empty(nbytes // 8, dtype=torch.float32, device=dev)  # copied: nbytes read + written
        dst = torch.empty_like(src)
        t_copy = ms(lambda: dst.copy_(src))
        return dict(ms=t, bytes=nbytes, GBps=nbytes / t / 1e6, copy_ms=t_copy, copy_time_ratio=t_copy / t,
                    status="ok")

    def scan(batch: int, dim: int, L: int) -> dict:
        u, delta, z = (torch.randn(batch, dim, L, device=dev) for _ in range(3))
        B, C = (torch.randn(batch, 16, L, device=dev) for _ in range(2))
        args = dict(u=u, delta=delta.sigmoid(), A=-torch.rand(dim, 16, device=dev) - 0.1, B=B, C=C,
                    D=torch.ones(dim, device=dev), z=z)
        with torch.no_grad():
            t = ms(lambda: lobkernels.selective_scan_fn(**args))
            t_ref = ms(lambda: lobkernels.selective_scan_ref(**args))
        return dict(ms=t, ref_ms=t_ref, speedup_vs_ref=t_ref / t, status="ok")

    for dim in s["speed_dims"]:
        for batch in s["speed_batches"]:
            c.guarded(rows, dict(kernel="selective_state_update", batch=batch, dim=dim),
                      lambda: state_update(batch, dim))
    batch, dim = s["speed_scan_batch_dim"]
    for L in s["speed_scan_L"]:
        c.guarded(rows, dict(kernel="selective_scan fwd", batch=batch, dim=dim, L=L), lambda: scan(batch, dim, L))


# ------------------------------------------------------------------------------ simulated stream, models

def simulated_stream(n_streams: int, ticks: int):
    """tokens (S, T) int64, features (S, T, F) float32, vocab size: one simulated day per symbol, tokenized."""
    import numpy as np
    from lob.data.simulator import simulate_symbol, symbol_specs
    from lob.tokenizer import Tokenizer

    days = [next(simulate_symbol(spec, ["2024-01-02"], ticks, seed=0, symbol_index=i))
            for i, spec in enumerate(symbol_specs(n_streams))]
    tok = Tokenizer.fit(days)
    encoded = [tok.transform(day)[:2] for day in days]
    n = min(len(t) for t, _ in encoded)
    return (np.stack([t[:n] for t, _ in encoded]), np.stack([f[:n] for _, f in encoded]).astype(np.float32),
            tok.vocab_size)


def model(c: Check, arch: str, preset: str, vocab: int, n_features: int):
    from lob.models.registry import arch as get_arch
    from lob.models.registry import config_from_preset

    c.torch.manual_seed(0)
    return get_arch(arch).model(config_from_preset(arch, preset, vocab, n_features)).to(c.device).eval()


# ----------------------------------------------------------------------------------------- mixed precision

def mixed_precision(c: Check, rows: list) -> None:
    """Each architecture's step in FP16 and BF16 autocast against FP32, in lock step over one simulated day per
    stream: per window of ticks, max |dp| of direction and next-event probabilities and top-1 agreement. The step
    runs lobkernels' kernels, as on a GPU (on the CPU under the interpreter)."""
    from lob.models.ops import kernel_backend
    from lob.models.registry import ARCHS

    torch, s = c.torch, c.size
    tokens, features, vocab = simulated_stream(s["mp_streams"], s["mp_ticks"])
    tokens, features = torch.as_tensor(tokens, device=c.device), torch.as_tensor(features, device=c.device)
    n_ticks = tokens.shape[1]
    window = math.ceil(n_ticks / s["mp_windows"])
    for i, arch in enumerate(ARCHS):
        per_arch = c.left() / (len(ARCHS) - i)
        m = model(c, arch, s["mp_preset"], vocab, features.shape[-1])
        states = {d: m.allocate_inference_cache(tokens.shape[0]) for d in DTYPES}
        # per window: max |dp| of direction / next-event probabilities, top-1 agreements; on the device (no sync)
        worst = {d: torch.zeros(3, s["mp_windows"], device=c.device) for d in DTYPES[1:]}
        stop = time.monotonic() + per_arch
        t = 0
        try:
            with torch.no_grad(), kernel_backend("triton"):
                while t < n_ticks and time.monotonic() < stop:
                    probs = {}
                    for d in DTYPES:
                        with torch.autocast(c.device, dtype=getattr(torch, d), enabled=d != "float32"):
                            nl, dl, *states[d] = m.step(tokens[:, t], features[:, t], *states[d])
                        probs[d] = (nl.float().softmax(-1), dl.float().softmax(-1))
                    w = t // window
                    ref_next, ref_dir = probs["float32"]
                    for d in DTYPES[1:]:
                        acc = worst[d][:, w]
                        acc[0] = torch.maximum(acc[0], (probs[d][1] - ref_dir).abs().max())
                        acc[1] = torch.maximum(acc[1], (probs[d][0] - ref_next).abs().max())
                        acc[2] += (probs[d][0].argmax(-1) == ref_next.argmax(-1)).sum()
                    t += 1
        except Exception as err:  # noqa: BLE001
            rows.append(dict(arch=arch, status="failed", error=f"{type(err).__name__}: {err}"[:500], ticks=t))
            continue
        worst = {d: v.cpu().numpy() for d, v in worst.items()}
        for d in DTYPES[1:]:
            for w in range(min(s["mp_windows"], math.ceil(t / window))):
                lo, hi = w * window, min((w + 1) * window, t)
                rows.append(dict(arch=arch, preset=s["mp_preset"], dtype=d, ticks_from=lo, ticks_to=hi,
                                 stream_ticks=n_ticks, streams=tokens.shape[0], max_abs_dp_dir=float(worst[d][0, w]),
                                 max_abs_dp_next=float(worst[d][1, w]),
                                 top1_agreement=float(worst[d][2, w]) / ((hi - lo) * tokens.shape[0]),
                                 status="ok" if t == n_ticks else f"ok: {t} of {n_ticks} ticks in the time budget"))


# ------------------------------------------------------------------------------------------ step throughput

def state_bytes(m) -> int:
    return sum(x.numel() * x.element_size() for x in m.allocate_inference_cache(1))


def throughput(c: Check, device: str, m, batch: int, graphs: bool, seconds: float) -> dict:
    """Ticks/s of gather-from-pool -> step -> scatter-back for `batch` sequences of a pool of 2 x batch slots."""
    torch = c.torch
    m = m.to(device)
    pool = [x.repeat_interleave(2 * batch, 0) for x in m.allocate_inference_cache(1)]
    idx = torch.randperm(2 * batch, device=device)[:batch]
    token = torch.randint(0, m.config.vocab_size, (batch,), device=device)
    feats = torch.randn(batch, m.config.n_features, device=device)

    def tick():
        _, _, *new = m.step(token, feats, *(p.index_select(0, idx) for p in pool))
        for p, n in zip(pool, new):
            p.index_copy_(0, idx, n.to(p.dtype))

    with torch.no_grad():
        for _ in range(3):
            tick()
        run = tick
        if graphs:
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                tick()
            torch.cuda.current_stream().wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                tick()
            run = graph.replay
        if device == "cuda":
            torch.cuda.synchronize()
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            run()
            n += 1
            if device == "cuda" and n % 50 == 0:
                torch.cuda.synchronize()
        if device == "cuda":
            torch.cuda.synchronize()
        elapsed = time.perf_counter() - t0
    per_seq = state_bytes(m)
    return dict(ticks_per_s=n * batch / elapsed, steps=n, state_bytes_per_seq=per_seq,
                seqs_per_GB=int(1e9 // per_seq), status="ok")


def step_throughput(c: Check, rows: list) -> None:
    """Mamba-LOB's step at each preset and batch; on a GPU with and without a CUDA graph, and on the CPU."""
    s = c.size
    runs = [(c.device, b, False) for b in s["throughput_batches"]]
    if c.gpu:
        runs += [("cuda", b, True) for b in s["throughput_batches"]] + [("cpu", b, False)
                                                                          for b in s["cpu_throughput_batches"]]
    for preset in s["presets"]:
        m = model(c, "mamba", preset, 1000, 12)
        for device, batch, graphs in runs:
            c.guarded(rows, dict(arch="mamba", preset=preset, device=device, batch=batch, cuda_graph=graphs),
                      lambda: throughput(c, device, m, batch, graphs, s["throughput_s"]))


# ------------------------------------------------------------------------------------------------- report

# name, function, reason it needs a GPU (None: runs in both modes), weight in the time budget
SECTIONS = (
    ("kernels", kernels, None, 0.35),
    ("kernel_speed", kernel_speed, "interpreter timings say nothing about GPU speed", 0.12),
    ("mixed_precision", mixed_precision, None, 0.33),
    ("step_throughput", step_throughput, None, 0.2),
    ("cuda_graphs", None, "CUDA graphs need a CUDA device; on a GPU they are rows of step_throughput", 0.0),
)


def device_name(c: Check) -> str:
    if c.gpu:
        p = c.torch.cuda.get_device_properties(0)
        return f"{p.name} ({p.total_memory / 2**30:.0f} GiB, {p.multi_processor_count} SMs)"
    return f"CPU {platform.machine()} ({os.cpu_count()} cores), Triton interpreter"


def fmt(v) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def write_report(c: Check, out: Path) -> dict:
    import torch
    import triton
    from lob.io import atomic_write

    report = dict(device=device_name(c), mode="gpu" if c.gpu else "cpu", torch=torch.__version__,
                  triton=triton.__version__, python=platform.python_version(),
                  utc=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                  seconds=round(time.monotonic() - c.start, 1), sections=c.sections)
    atomic_write(out / "report.json", lambda p: Path(p).write_text(json.dumps(report, indent=1, default=str)))
    fields = ["section"] + sorted({k for sec in c.sections.values() for r in sec["rows"] for k in r})

    def write_csv(p):
        with open(p, "w", newline="") as f:
            w = csv.DictWriter(f, fields)
            w.writeheader()
            for name, sec in c.sections.items():
                for r in sec["rows"]:
                    w.writerow({"section": name, **r})
    atomic_write(out / "results.csv", write_csv)
    lines = [f"# GPU check: {report['device']}", "",
             f"{report['utc']}, mode {report['mode']}, torch {report['torch']}, triton {report['triton']}, "
             f"{report['seconds']} s. Written by `scripts/gpu_check.py` (docs/gpu.md).", ""]
    for name, sec in c.sections.items():
        lines += [f"## {name}", "", f"Status: {sec['status']}", ""]
        if sec["rows"]:
            cols = sorted({k for r in sec["rows"] for k in r}, key=lambda k: (k in ("status", "error"), k))
            lines += ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
            lines += ["| " + " | ".join(fmt(r.get(k, "")).replace("|", "/").replace("\n", " ") for k in cols) + " |"
                      for r in sec["rows"]]
            lines.append("")
    atomic_write(out / "report.md", lambda p: Path(p).write_text("\n".join(lines)))
    return report


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, required=True, help="folder for report.md, report.json, results.csv")
    ap.add_argument("--cpu", action="store_true", help="tiny shapes on the CPU, kernels under Triton's interpreter")
    ap.add_argument("--budget-s", type=float, default=330.0,
                    help="wall-clock seconds after which the remaining measurements are skipped (default 330)")
    args = ap.parse_args(argv)
    if args.cpu:
        os.environ["TRITON_INTERPRET"] = "1"  # read when lobkernels defines its kernels (kernels/README.md)
    import torch

    if not args.cpu and not torch.cuda.is_available():
        ap.error("no CUDA GPU visible to torch; run with --cpu for the CPU mode")
    c = Check(gpu=not args.cpu, budget_s=args.budget_s, out=args.out)
    for i, (name, fn, gpu_only, weight) in enumerate(SECTIONS):
        if fn is None and c.gpu:
            continue
        rest = sum(w for *_, w in SECTIONS[i:])
        c.section(name, lambda rows, fn=fn: fn(c, rows), gpu_only, share=weight / rest if rest else 1.0)
    report = write_report(c, args.out)
    failed = [n for n, s in report["sections"].items() if s["status"] == "failed"]
    print(f"[gpu_check] {report['device']}: {report['seconds']} s; report in {args.out}/report.md"
          + (f"; FAILED: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
