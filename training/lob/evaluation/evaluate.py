"""``lob evaluate``: score a run on each symbol's held-out test split against baselines.

The test split is rebuilt from the boundaries recorded in the run's manifest (the data files must
be the ones trained on: their sha256 is checked). Each symbol's test segment is tokenized from a
fresh tokenizer state and run through the model from a fresh model state, in chunks with the state
carried: exactly what streaming that segment through the server gives. Metrics pool the ticks of
every symbol.

``RUN/metrics.json``::

    next_event: top1, top5, perplexity, n, baselines.{majority,copy_prev,markov1}.top1
    direction.h10|h50|h100: accuracy, macro_f1, n, label_counts, confusion[true][pred],
                            baselines.{majority,logreg}.{accuracy,macro_f1}
    beats_baselines: every model metric above its best baseline; margins: model - best baseline

``RUN/report.png``: bars of each metric against the baselines and the confusion matrix per horizon.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from lob.contract import CLASSES
from lob.data.schema import atomic_write, dataset_files, load_dataset
from lob.evaluation.baselines import DirectionBaselines, TokenBaselines
from lob.evaluation.metrics import accuracy, confusion, macro_f1
from lob.evaluation.predict import stream_chunks
from lob.training.labels import IGNORE
from lob.training.run import RunError, load_run, sha256_file, write_json
from lob.training.segments import segments
from lob.training.split import split_from_boundaries


def check_data(run: Path, data: Path, manifest: dict) -> None:
    """Refuse data that isn't byte-for-byte the data the run was split and trained on."""
    want = {f["path"]: f["sha256"] for f in manifest["data"]["files"]}
    root = Path(data)
    have = {str(f.relative_to(root)): f for f in dataset_files(root)}
    missing = sorted(set(want) - set(have))
    if missing:
        raise RunError(f"{data}: file(s) {missing} of the data {run} was trained on are missing")
    for rel in sorted(want):
        if sha256_file(have[rel]) != want[rel]:
            raise RunError(f"{have[rel]}: differs from the file {run} was trained on (sha256 mismatch)")


@torch.no_grad()
def _model_outputs(model, seg) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per tick of a segment: next-token hit@1, hit@5 and log-prob of the true next token (N-1,), dir preds (N, H)."""
    n = len(seg.tokens)
    hit1, hit5, logp = np.zeros(n - 1, bool), np.zeros(n - 1, bool), np.zeros(n - 1, np.float64)
    dir_pred = np.empty((n, len(model.config.horizons)), np.int64)
    target = torch.from_numpy(seg.tokens[1:])
    for start, next_logits, dir_logits in stream_chunks(model, seg.tokens, seg.features):
        stop = min(start + next_logits.shape[0], n - 1)  # the last tick has no next token
        dir_pred[start:start + dir_logits.shape[0]] = dir_logits.argmax(-1).numpy()
        if stop <= start:
            continue
        lp = next_logits[: stop - start].log_softmax(-1)  # (L, V)
        tgt = target[start:stop]
        top5 = lp.topk(5, dim=-1).indices  # (L, 5)
        hit1[start:stop] = (top5[:, 0] == tgt).numpy()
        hit5[start:stop] = (top5 == tgt[:, None]).any(-1).numpy()
        logp[start:stop] = lp.gather(-1, tgt[:, None])[:, 0].double().numpy()
    return hit1, hit5, logp, dir_pred


def evaluate(run: Path, data: Path) -> dict:
    """Write RUN/metrics.json and RUN/report.png; returns the metrics."""
    run = Path(run)
    model, tokenizer, manifest = load_run(run)
    check_data(run, data, manifest)
    dataset = load_dataset(data)
    recorded = manifest["split"]["symbols"]
    unknown = sorted(set(dataset) - set(recorded))
    if unknown:
        raise RunError(f"{data}: symbol(s) {unknown} are not in {run}'s split")
    splits = {sym: split_from_boundaries(dataset[sym], recorded[sym]) for sym in sorted(dataset)}
    fee_bps, horizons = manifest["fee_bps"], tuple(model.config.horizons)
    train_segs = segments(dataset, splits, "train", tokenizer, fee_bps)
    test_segs = segments(dataset, splits, "test", tokenizer, fee_bps)

    tok_base = TokenBaselines.fit([s.tokens for s in train_segs], tokenizer.vocab_size)
    dir_base = DirectionBaselines.fit(np.concatenate([s.features for s in train_segs]),
                                      np.concatenate([s.labels for s in train_segs]))

    # per symbol, then pooled: every array below is concatenated over the test segments
    outputs = [_model_outputs(model, seg) for seg in test_segs]
    hit1, hit5, logp, dir_pred = (np.concatenate(parts) for parts in zip(*outputs))
    labels = np.concatenate([seg.labels for seg in test_segs])  # (N, H)
    next_true = np.concatenate([seg.tokens[1:] for seg in test_segs])  # (N - S,)
    tok_preds = [tok_base.predict(seg.tokens[:-1]) for seg in test_segs]
    tok_base_pred = {name: np.concatenate([p[name] for p in tok_preds]) for name in tok_preds[0]}
    dir_preds = [dir_base.predict(seg.features) for seg in test_segs]
    dir_base_pred = {name: np.concatenate([p[name] for p in dir_preds]) for name in dir_preds[0]}  # (N, H)
    metrics: dict = {"run": run.name, "test_ticks": int(sum(len(s.tokens) for s in test_segs)),
                     "next_event": {"top1": float(hit1.mean()), "top5": float(hit5.mean()),
                                    "perplexity": float(math.exp(-logp.mean())), "n": int(logp.size),
                                    "baselines": {name: {"top1": accuracy(next_true, p)}
                                                  for name, p in tok_base_pred.items()}},
                     "direction": {}}
    for j, h in enumerate(horizons):
        keep = labels[:, j] != IGNORE
        y, p = labels[keep, j], dir_pred[keep, j]
        metrics["direction"][f"h{h}"] = {
            "accuracy": accuracy(y, p), "macro_f1": macro_f1(y, p), "n": int(keep.sum()),
            "label_counts": dict(zip(CLASSES, np.bincount(y, minlength=3).tolist())),
            "confusion": confusion(y, p).tolist(),
            "baselines": {name: {"accuracy": accuracy(y, bp[keep, j]), "macro_f1": macro_f1(y, bp[keep, j])}
                          for name, bp in dir_base_pred.items()}}
    metrics["margins"] = _margins(metrics)
    metrics["beats_baselines"] = all(m > 0 for m in metrics["margins"].values())
    write_json(run / "metrics.json", metrics)
    write_report(run / "report.png", metrics)
    _print_summary(metrics)
    return metrics


def _print_summary(metrics: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{metrics['run']}: held-out test ({metrics['test_ticks']:,} ticks)")
    for col in ("metric", "model", "best baseline", "margin"):
        table.add_column(col, justify="left" if col == "metric" else "right")
    for key, margin in metrics["margins"].items():
        value = metrics
        for part in key.split("."):  # "direction.h10.accuracy" -> metrics["direction"]["h10"]["accuracy"]
            value = value[part]
        table.add_row(key, f"{value:.4f}", f"{value - margin:.4f}", f"[{'green' if margin > 0 else 'red'}]{margin:+.4f}")
    Console(stderr=True).print(table)


def _margins(metrics: dict) -> dict[str, float]:
    """Model metric minus its best baseline (perplexity has no baseline here; top1 does)."""
    ne = metrics["next_event"]
    out = {"next_event.top1": ne["top1"] - max(b["top1"] for b in ne["baselines"].values())}
    for h, d in metrics["direction"].items():
        for key in ("accuracy", "macro_f1"):
            out[f"direction.{h}.{key}"] = d[key] - max(b[key] for b in d["baselines"].values())
    return out


def write_report(path: Path, metrics: dict) -> None:
    """PNG: next-event top-1 and per-horizon direction accuracy / macro-F1 against baselines, confusion matrices."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    dirs = metrics["direction"]
    n_cols = max(3, len(dirs))  # top row: next event, accuracy, macro-F1; bottom: one confusion per horizon
    fig = plt.figure(figsize=(4.5 * n_cols, 8), constrained_layout=True)
    grid = fig.add_gridspec(2, n_cols)
    ne = metrics["next_event"]
    ax = fig.add_subplot(grid[0, 0])
    names = ["model", *ne["baselines"]]
    ax.bar(names, [ne["top1"], *(b["top1"] for b in ne["baselines"].values())],
           color=["C0"] + ["C7"] * len(ne["baselines"]))
    ax.set_title(f"next event top-1 (ppl {ne['perplexity']:.1f})")
    ax.tick_params(axis="x", rotation=30)
    for k, key in enumerate(("accuracy", "macro_f1")):
        ax = fig.add_subplot(grid[0, 1 + k])
        series = {"model": [d[key] for d in dirs.values()]}
        for name in next(iter(dirs.values()))["baselines"]:
            series[name] = [d["baselines"][name][key] for d in dirs.values()]
        x = np.arange(len(dirs))
        width = 0.8 / len(series)
        for i, (name, vals) in enumerate(series.items()):
            ax.bar(x + i * width, vals, width, label=name)
        ax.set_xticks(x + 0.4 - width / 2, list(dirs))
        ax.set_title(f"direction {key}")
        ax.legend(fontsize=8)
    for k, (h, d) in enumerate(dirs.items()):
        ax = fig.add_subplot(grid[1, k])
        cm = np.asarray(d["confusion"], dtype=np.float64)
        share = cm / np.maximum(cm.sum(1, keepdims=True), 1)  # row-normalised: recall along the diagonal
        ax.imshow(share, vmin=0, vmax=1, cmap="Blues")
        for (r, c), v in np.ndenumerate(cm):
            ax.text(c, r, f"{int(v)}", ha="center", va="center", fontsize=8,
                    color="white" if share[r, c] > 0.5 else "black")
        ax.set_xticks(range(3), CLASSES)
        ax.set_yticks(range(3), CLASSES)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title(f"{h}: acc {d['accuracy']:.3f}, F1 {d['macro_f1']:.3f}")
    fig.suptitle(f"{metrics['run']}: held-out test, {metrics['test_ticks']:,} ticks")
    atomic_write(Path(path), lambda tmp: fig.savefig(tmp, format="png", dpi=100))
    plt.close(fig)
