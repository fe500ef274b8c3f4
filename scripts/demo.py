"""`make demo`: a user's day on a laptop, with the same `lob` commands a user types.

simulate 4 symbols x 4 days (the default data set plus a day) -> train `tiny` on the first 3 days -> evaluate against baselines -> export
-> offline `lob predict` of the held-out 4th day -> `lob serve` (real tritonserver) -> `lob stream` the
held-out day over gRPC -> check served == offline per tick, print accuracy and latency -> stop the server.

The export / predict / serve / stream / compare half (`serve_heldout`, `report`) is shared with
`scripts/demo_real.py` (`make demo-real`, a real LOBSTER day).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
from rich import box
from rich.console import Console
from rich.table import Table

from lob.contract import CLASSES, HORIZONS, PROB_COLUMNS, STREAM_MODEL, prob_column
from lob.training.config import SIMULATOR_RECIPE_ARGS

ROOT = Path(__file__).resolve().parents[1]
LOB = str(Path(sys.executable).with_name("lob"))
MAX_DP = 1e-4  # served vs offline: largest allowed |probability difference| per tick
console = Console(width=None if sys.stdout.isatty() else 120)  # logs and pipes: wide enough for the tables


def sh(*args: str) -> None:
    console.print(f"[bold cyan]$ lob {' '.join(args)}[/]")
    subprocess.run([LOB, *args], check=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def split_heldout_day(data: Path, heldout: Path) -> None:
    """Move each symbol's last day from `data` to `heldout` (the day the model never sees)."""
    for sym_dir in sorted(p for p in data.iterdir() if p.is_dir()):
        last = sorted(sym_dir.glob("*.parquet"))[-1]
        (heldout / sym_dir.name).mkdir(parents=True, exist_ok=True)
        shutil.move(str(last), heldout / sym_dir.name / last.name)


def serve_and_stream(repo: Path, heldout: Path, out: Path) -> Path:
    """`lob serve` the build repository (real tritonserver, free ports, log in OUT/tritonserver.log), wait until
    it is ready (180 s at most), `lob stream` the held-out ticks into OUT/served.parquet, stop the server."""
    grpc, http, metrics = free_port(), free_port(), free_port()
    console.print(f"[bold cyan]$ lob serve --repo {repo} --profile cpu --grpc-port {grpc} ...[/] (background)")
    server = subprocess.Popen([LOB, "serve", "--repo", str(repo), "--profile", "cpu", "--grpc-port", str(grpc),
                               "--http-port", str(http), "--metrics-port", str(metrics),
                               "--log-file", str(out / "tritonserver.log")], start_new_session=True)
    try:
        import tritonclient.grpc as grpcclient

        client = grpcclient.InferenceServerClient(f"localhost:{grpc}")
        deadline = time.time() + 180
        while True:
            if server.poll() is not None:
                raise SystemExit(f"lob serve exited with {server.returncode}; see {out / 'tritonserver.log'}")
            try:
                if client.is_server_ready() and client.is_model_ready(STREAM_MODEL):
                    break
            except Exception:  # noqa: BLE001 - not up yet
                pass
            if time.time() > deadline:
                raise SystemExit(f"server not ready after 180 s; see {out / 'tritonserver.log'}")
            time.sleep(0.5)
        sh("stream", "--url", f"localhost:{grpc}", "--data", str(heldout), "--out", str(out / "served.parquet"))
    finally:
        os.killpg(server.pid, signal.SIGINT)
        server.wait(timeout=60)
    return out / "served.parquet"


def serve_heldout(run: Path, heldout: Path, out: Path) -> tuple[dict, dict]:
    """`lob export` RUN into OUT/model_repository, `lob predict` the held-out dataset offline, serve and stream
    it (`serve_and_stream`); returns the (offline, served) predictions tables as column dicts."""
    repo = out / "model_repository"
    # a build repository made from the tracked model_repository/ (never written)
    sh("export", "--run", str(run), "--repo", str(repo), "--source", str(ROOT / "model_repository"))
    sh("predict", "--run", str(run), "--data", str(heldout), "--out", str(out / "offline.parquet"))
    served = serve_and_stream(repo, heldout, out)
    return pq.read_table(out / "offline.parquet").to_pydict(), pq.read_table(served).to_pydict()


def heldout_scores(pred: dict, heldout: Path, run: Path) -> dict[str, dict]:
    """Per horizon ("h10", ...): `direction_scores` of the predictions table ``pred`` on the held-out ticks,
    labelled as the run was trained, and the share of flat labels (``flat``)."""
    from lob.data.schema import load_dataset
    from lob.evaluation.metrics import direction_scores
    from lob.training.labels import IGNORE, LabelSpec

    spec = LabelSpec.of_training(json.loads((run / "config.json").read_text())["training"])
    symbols = np.asarray(pred["symbol"])
    labels, proba = [], []
    for sym, t in load_dataset(heldout).items():
        labels.append(spec.targets(t)[0])  # (N, H)
        rows = symbols == sym
        proba.append(np.stack([np.stack([np.asarray(pred[prob_column(c, h)])[rows] for c in CLASSES], axis=1)
                               for h in HORIZONS], axis=1))  # (N, H, 3)
    y, p = np.concatenate(labels), np.concatenate(proba)
    out = {}
    for j, h in enumerate(HORIZONS):
        keep = y[:, j] != IGNORE
        out[f"h{h}"] = {**direction_scores(y[keep, j], p[keep, j]), "flat": float(np.mean(y[keep, j] == 1))}
    return out


def print_evaluation(metrics: dict) -> None:
    """`lob evaluate`'s metrics.json as one table: the model beside every baseline (the best in bold), and the
    95% block-bootstrap interval of model - best baseline."""
    names = list(next(iter(metrics["direction"].values()))["baselines"])
    table = Table(title=f"lob evaluate: held-out {metrics['part']} split, {metrics['test_ticks']:,} ticks, "
                        f"{metrics['labels']} labels", box=box.SIMPLE_HEAD)
    for col in ("horizon", "metric", "Mamba-LOB", *names, "model - best, 95% CI"):
        table.add_column(col, justify="left" if col in ("horizon", "metric") else "right", no_wrap=True)
    for h in (f"h{horizon}" for horizon in HORIZONS):  # metrics.json's keys are sorted as text
        d = metrics["direction"][h]
        for key, label in (("macro_f1", "macro-F1"), ("log_loss", "log-loss")):
            best = d["best_baseline"][key]
            ci = "too few ticks" if d["ci95"][key] is None else "[{:+.4f}, {:+.4f}]".format(*d["ci95"][key])
            table.add_row(h, label, f"{d[key]:.4f}",
                          *((f"[bold]{d['baselines'][b][key]:.4f}[/]" if b == best else f"{d['baselines'][b][key]:.4f}")
                            for b in names), ci)
    console.print(table)
    ne, base = metrics["next_event"], metrics["next_event"]["baselines"]
    console.print(f"next event top-1 {ne['top1']:.3f} (majority {base['majority']['top1']:.3f}, copy-prev "
                  f"{base['copy_prev']['top1']:.3f}, markov-1 {base['markov1']['top1']:.3f}); perplexity "
                  f"{ne['perplexity']:.2f} (markov-1 {base['markov1']['perplexity']:.2f})")


def report(run: Path, heldout: Path, offline: dict, served: dict, what: str, evaluated: bool) -> None:
    """Print the evaluation table, the served scores on the held-out ticks and served vs offline; exit non-zero
    when a tick's probabilities differ by more than MAX_DP or a next-token top-1 differs. ``evaluated``: the
    held-out ticks are the test split `lob evaluate` scored: its model scores are printed beside the served ones,
    and a log-loss that differs by more than MAX_DP exits non-zero too."""
    metrics = json.loads((run / "metrics.json").read_text())
    print_evaluation(metrics)
    scores = heldout_scores(served, heldout, run)
    if evaluated:
        console.print(f"{what}, served by Triton (lob evaluate's model scores in brackets): " + ", ".join(
            f"{h} macro-F1 {s['macro_f1']:.4f} ({metrics['direction'][h]['macro_f1']:.4f}) log-loss "
            f"{s['log_loss']:.4f} ({metrics['direction'][h]['log_loss']:.4f})" for h, s in scores.items()))
        if any(abs(s["log_loss"] - metrics["direction"][h]["log_loss"]) > MAX_DP for h, s in scores.items()):
            raise SystemExit(f"the served log-loss on {heldout} differs from lob evaluate's on its test split")
    else:
        console.print(f"{what}, served by Triton: direction accuracy "
                      + ", ".join(f"{h} {s['accuracy']:.3f} (always-flat {s['flat']:.3f})" for h, s in scores.items()))
    diff = max(float(np.max(np.abs(np.asarray(offline[c]) - np.asarray(served[c])))) for c in PROB_COLUMNS)
    same_top1 = np.array_equal(offline["next_token_top1"], served["next_token_top1"])
    console.print(f"served vs offline over {len(served['seq'])} ticks: max |Δp| = {diff:.2e}, "
                  f"next-token top-1 identical: {same_top1}")
    if diff > MAX_DP or not same_top1:
        raise SystemExit("served predictions differ from offline predictions")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", type=Path, default=ROOT / "out" / "demo")
    ap.add_argument("--symbols", type=int, default=4)
    ap.add_argument("--events-per-day", type=int, default=20_000)
    args = ap.parse_args()
    out: Path = args.out
    if out.exists():
        shutil.rmtree(out)
    data, heldout, run = out / "data", out / "heldout", out / "run"
    t0 = time.time()

    # `lob simulate` defaults (seed 0) plus a 4th day: days 1-3 are byte-identical to the default data set
    sh("simulate", "--out", str(data), "--symbols", str(args.symbols), "--days", "4", "--seed", "0",
       "--events-per-day", str(args.events_per_day))
    split_heldout_day(data, heldout)
    # the simulator's recorded recipe (docs/results.md), not the real-day defaults
    sh("train", "--data", str(data), "--out", str(run), "--preset", "tiny", "--seed", "0", *SIMULATOR_RECIPE_ARGS)
    # DeepLOB (a default baseline of `lob evaluate`) trains for minutes on CPU: left out of the demo
    sh("evaluate", "--run", str(run), "--data", str(data), "--deeplob-steps", "0")
    offline, served = serve_heldout(run, heldout, out)
    report(run, heldout, offline, served, "held-out day", evaluated=False)
    console.print(f"demo finished in {time.time() - t0:.0f} s; artifacts in {out}")


if __name__ == "__main__":
    main()
