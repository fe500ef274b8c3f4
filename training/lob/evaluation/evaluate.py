"""``lob evaluate``: score a run on each symbol's held-out test split against baselines.

The test split is rebuilt from the boundaries recorded in the run's manifest (the data files must
be the ones trained on: their sha256 is checked) and labelled as the run was trained
(``config.json`` ``training``: fee, label mode). Each symbol's validation and test segments are
tokenized from a fresh tokenizer state and run through the model from a fresh model state, in
chunks with the state carried: exactly what streaming that segment through the server gives.
Metrics pool the ticks of every symbol.

``RUN/metrics.json``::

    next_event: top1, top5, perplexity, n, baselines.{majority,copy_prev,markov1}.top1,
                baselines.markov1.{perplexity, beta} (smoothed bigrams, `lob.evaluation.baselines`)
    direction.hH: accuracy, macro_f1, log_loss, brier, ece, n, label_counts, confusion[true][pred],
                  baselines.{majority,logreg,hgb,deeplob}.{accuracy,macro_f1,log_loss,brier,ece},
                  best_baseline.{macro_f1,log_loss} (name), block (bootstrap block, ticks),
                  ci95.{macro_f1,log_loss} = [lo, hi] of model - best baseline (``lob.evaluation.bootstrap``;
                  null with fewer than 5 blocks of test ticks),
                  significant.{macro_f1,log_loss}: +1 model better (interval excludes 0), -1 worse, 0 no edge
    backtest.hH.{model,logreg,hgb,deeplob}: threshold, trades, hit_rate, mean_pnl_bps, total_pnl_bps, total_pnl,
                                    per_day (``lob.evaluation.backtest``)
    margins: model - best baseline per metric (log-loss: best - model, so > 0 is a model win), information
    deeplob: its training budget and outcome (steps asked and run, best step, validation loss, seconds) and its
             input normalisation (`lob.evaluation.deeplob`); ``{"steps": 0}`` when turned off, and then no
             ``deeplob`` baseline or backtest. DeepLOB is fitted once per run and step budget and kept in
             RUN/deeplob.pt, which later evaluations of the run (``--on``, ``--score-data``) reuse

Accuracy against the majority class is information, not a target: ~96% of h10 labels are flat.

``RUN/report.png``: per horizon, macro-F1 and log-loss against baselines with the interval, the
reliability diagram, the confusion matrix and the backtest PnL curves.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import torch

from lob.contract import CLASSES, HORIZONS
from lob.data.schema import dataset_files, load_dataset
from lob.evaluation.backtest import Touch, backtest, segment_run
from lob.evaluation.baselines import DirectionBaselines
from lob.evaluation.deeplob import DEFAULT_STEPS, DeepLOBBaseline
from lob.evaluation.bootstrap import block_length, paired_ci
from lob.evaluation.metrics import accuracy, confusion, direction_scores, reliability
from lob.io import atomic_write, sha256_file, write_json
from lob.training.labels import IGNORE, LabelSpec
from lob.training.markov import TokenBaselines
from lob.training.run import RunError, load_run
from lob.training.segments import segments
from lob.training.split import split_from_boundaries, split_symbol

TRADED = ("model", "logreg", "hgb", "deeplob")  # systems the backtest runs on
DEEPLOB_FILE = "deeplob.pt"  # the DeepLOB baseline a run's evaluations fit once and share


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
    """Per tick of a segment: next-token hit@1, hit@5, log-prob of the true next token (N-1,); dir probs (N, H, 3)."""
    n = len(seg.tokens)
    hit1, hit5, logp = np.zeros(n - 1, bool), np.zeros(n - 1, bool), np.zeros(n - 1, np.float64)
    dir_proba = np.empty((n, len(model.config.horizons), 3), np.float64)
    target = torch.from_numpy(seg.tokens[1:])
    for start, next_logits, dir_logits, _ in model.forward_chunked(seg.tokens[None], seg.features[None]):
        stop = min(start + next_logits.shape[1], n - 1)  # the last tick has no next token
        dir_proba[start:start + dir_logits.shape[1]] = dir_logits[0].double().softmax(-1).numpy()
        if stop <= start:
            continue
        lp = next_logits[0, : stop - start].log_softmax(-1)  # (L, V)
        tgt = target[start:stop]
        top5 = lp.topk(5, dim=-1).indices  # (L, 5)
        hit1[start:stop] = (top5[:, 0] == tgt).numpy()
        hit5[start:stop] = (top5 == tgt[:, None]).any(-1).numpy()
        logp[start:stop] = lp.gather(-1, tgt[:, None])[:, 0].double().numpy()
    return hit1, hit5, logp, dir_proba


def _deeplob(path: Path, segs: dict, steps: int, seed: int) -> DeepLOBBaseline:
    """DeepLOB fitted on the run's train split (early-stopped on validation), or the one an earlier evaluation
    of this run fitted with the same step budget (RUN/deeplob.pt; the run's data and labels are fixed)."""
    if path.exists():
        cached = DeepLOBBaseline.load(path)
        if cached.budget["steps"] == steps:
            return cached
    fitted = DeepLOBBaseline.fit(segs["train"], segs["val"], steps, seed)
    fitted.save(path)
    return fitted


def _significance(ci: list[float] | None, higher_is_better: bool) -> int:
    if ci is None:  # too few test ticks for an interval: no edge can be claimed
        return 0
    lo, hi = ci
    if lo > 0 or hi < 0:
        return 1 if (lo > 0) == higher_is_better else -1
    return 0


def evaluate(run: Path, data: Path, n_boot: int = 1000, quiet: bool = False,
             deeplob_steps: int | None = None, part: str = "test", score_data: Path | None = None) -> dict:
    """Write RUN/metrics.json and RUN/report.png; returns the metrics. ``deeplob_steps``: DeepLOB's Adam
    step budget (None: ``lob.evaluation.deeplob.DEFAULT_STEPS``; 0: no DeepLOB baseline).

    ``part="val"`` scores the validation split instead (for tuning: the test split is then never read by
    any score) into RUN/metrics.val.json and RUN/report.val.png; DeepLOB and the trees early-stop on that
    same split, so their validation scores lean optimistic.

    ``score_data``: out of sample across names. The model and every baseline stay fitted on ``data`` (the
    run's training data); they are scored on the names of ``score_data`` instead, each split by the run's
    fractions (its ``part`` scored, its validation part choosing the backtest thresholds), tokenized with the
    run's tokenizer. Written to RUN/metrics.on-<NAMES>.json (with ``.val`` before ``.json`` for ``part="val"``)."""
    if part not in ("val", "test"):
        raise ValueError(f"part must be 'val' or 'test', got {part!r}")
    run = Path(run)
    model, tokenizer, manifest = load_run(run)
    check_data(run, data, manifest)
    training = json.loads((run / "config.json").read_text())["training"]
    spec = LabelSpec.of_training(training)
    dataset = load_dataset(data)
    recorded = manifest["split"]["symbols"]
    unknown = sorted(set(dataset) - set(recorded))
    if unknown:
        raise RunError(f"{data}: symbol(s) {unknown} are not in {run}'s split")
    splits = {sym: split_from_boundaries(dataset[sym], recorded[sym]) for sym in sorted(dataset)}
    horizons = tuple(model.config.horizons)
    if horizons != HORIZONS:
        raise RunError(f"{run}: the model's horizons {horizons} are not lob.contract.HORIZONS {HORIZONS}, "
                       "which the labels use; retrain it")
    fit_parts = ("train", "val") if score_data is not None else ("train", "val", part)
    segs = {q: segments(dataset, splits, q, tokenizer, spec) for q in dict.fromkeys(fit_parts)}
    scored = segs  # the segments scored (val: backtest thresholds; part: the scores)
    if score_data is not None:
        other = load_dataset(score_data)
        if not other:
            raise RunError(f"{score_data}: no tick files (expected DIR/<SYMBOL>/<YYYY-MM-DD>.parquet)")
        other_splits = {sym: split_symbol(t, tuple(training["split"])) for sym, t in other.items()}
        scored = {q: segments(other, other_splits, q, tokenizer, spec) for q in dict.fromkeys(("val", part))}

    tok_base = TokenBaselines.fit([s.tokens for s in segs["train"]], tokenizer.vocab_size,
                                  [s.tokens for s in segs["val"]])
    stack = lambda part, a: np.concatenate([getattr(s, a) for s in segs[part]])  # noqa: E731
    dir_base = DirectionBaselines.fit(stack("train", "features"), stack("train", "labels"),
                                      val=(stack("val", "features"), stack("val", "labels")), seed=training["seed"])
    steps = DEFAULT_STEPS if deeplob_steps is None else deeplob_steps
    deeplob = _deeplob(run / DEEPLOB_FILE, segs, steps, training["seed"]) if steps else None

    # per segment: {system: (N, H, 3)} direction probabilities on validation and test
    proba = {}
    test_out = []
    for p in dict.fromkeys(("val", part)):
        proba[p] = []
        for seg in scored[p]:
            out = _model_outputs(model, seg)
            if p == part:
                test_out.append(out)
            proba[p].append({"model": out[3], **dir_base.predict_proba(seg.features),
                             **({"deeplob": deeplob.predict_proba(seg)} if deeplob else {})})
    hit1, hit5, logp = (np.concatenate([o[k] for o in test_out]) for k in range(3))
    markov_logp = np.concatenate([tok_base.markov_log_prob(seg.tokens) for seg in scored[part]])  # (N - S,)
    test_segs = scored[part]
    next_true = np.concatenate([seg.tokens[1:] for seg in test_segs])  # (N - S,)
    tok_preds = [tok_base.predict(seg.tokens[:-1]) for seg in test_segs]
    metrics: dict = {"run": run.name, "part": part, "scored": sorted({s.symbol for s in test_segs}),
                     "labels": spec.mode, "fee_bps": spec.fee_bps,
                     "test_ticks": int(sum(len(s.tokens) for s in test_segs)),
                     "next_event": {"top1": float(hit1.mean()), "top5": float(hit5.mean()),
                                    "perplexity": float(math.exp(-logp.mean())), "n": int(logp.size),
                                    "baselines": {name: {"top1": accuracy(next_true, np.concatenate(
                                        [p[name] for p in tok_preds]))} for name in tok_preds[0]}},
                     "direction": {}, "backtest": {},
                     "deeplob": deeplob.budget if deeplob else {"steps": 0}}
    metrics["next_event"]["baselines"]["markov1"].update(perplexity=float(math.exp(-markov_logp.mean())),
                                                         beta=tok_base.beta)
    labels = np.concatenate([seg.labels for seg in test_segs])  # (N, H)
    systems = list(proba[part][0])
    pooled = {name: np.concatenate([p[name] for p in proba[part]]) for name in systems}  # (N, H, 3)
    curves, reliab = {}, {}
    for j, h in enumerate(horizons):
        keep = labels[:, j] != IGNORE
        y = labels[keep, j]
        scores = {name: direction_scores(y, pooled[name][keep, j]) for name in systems}
        d = {**scores["model"], "n": int(keep.sum()),
             "label_counts": dict(zip(CLASSES, np.bincount(y, minlength=3).tolist())),
             "confusion": confusion(y, pooled["model"][keep, j].argmax(1)).tolist(),
             "baselines": {name: scores[name] for name in systems if name != "model"}}
        best = {"macro_f1": max(d["baselines"], key=lambda b: d["baselines"][b]["macro_f1"]),
                "log_loss": min(d["baselines"], key=lambda b: d["baselines"][b]["log_loss"])}
        d["best_baseline"] = best
        d["block"] = block_length(h)
        ci = {key: paired_ci(y, pooled["model"][keep, j], pooled[best[key]][keep, j], d["block"], key, n_boot)
              for key in ("macro_f1", "log_loss")}
        d["ci95"] = ci
        d["significant"] = {"macro_f1": _significance(ci["macro_f1"], True),
                            "log_loss": _significance(ci["log_loss"], False)}
        metrics["direction"][f"h{h}"] = d
        reliab[f"h{h}"] = {name: reliability(y, pooled[name][keep, j]) for name in ("model", best["log_loss"])}

        bt, curves[f"h{h}"] = {}, {}
        for name in (s for s in TRADED if s in systems):
            runs = {q: [segment_run(Touch.of_ticks(seg.ticks), p[name][:, j], seg.labels[:, j], h, spec.fee_bps)
                           for seg, p in zip(scored[q], proba[q])] for q in dict.fromkeys(("val", part))}
            bt[name], curves[f"h{h}"][name] = backtest(runs["val"], runs[part], h)
        metrics["backtest"][f"h{h}"] = bt
    metrics["margins"] = _margins(metrics)
    suffix = "" if score_data is None else f".on-{'+'.join(metrics['scored'])}"
    suffix += "" if part == "test" else f".{part}"
    write_json(run / f"metrics{suffix}.json", metrics)
    write_report(run / f"report{suffix}.png", metrics, reliab, curves)
    if not quiet:
        _print_summary(metrics)
    return metrics


def _margins(metrics: dict) -> dict[str, float]:
    """Model minus its best baseline, signed so that > 0 is a model win (log-loss: baseline - model)."""
    ne = metrics["next_event"]
    out = {"next_event.top1": ne["top1"] - max(b["top1"] for b in ne["baselines"].values())}
    for h, d in metrics["direction"].items():
        for key in ("accuracy", "macro_f1"):
            out[f"direction.{h}.{key}"] = d[key] - max(b[key] for b in d["baselines"].values())
        out[f"direction.{h}.log_loss"] = min(b["log_loss"] for b in d["baselines"].values()) - d["log_loss"]
    return out


def _title(metrics: dict) -> str:
    return (f"{metrics['run']}: held-out {metrics['part']} of {', '.join(metrics['scored'])} "
            f"({metrics['test_ticks']:,} ticks, {metrics['labels']} labels)")


def _print_summary(metrics: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=_title(metrics))
    for col in ("horizon", "metric", "model", "best baseline", "model - best, 95% CI", "edge"):
        table.add_column(col, justify="left" if col in ("horizon", "metric") else "right")
    edge = {1: "[green]model[/]", -1: "[red]baseline[/]", 0: "none"}
    for h, d in metrics["direction"].items():
        for key in ("macro_f1", "log_loss"):
            b = d["best_baseline"][key]
            ci = "[too few ticks]" if d["ci95"][key] is None else "[{:+.4f}, {:+.4f}]".format(*d["ci95"][key])
            table.add_row(h, key, f"{d[key]:.4f}", f"{d['baselines'][b][key]:.4f} ({b})",
                          f"{d[key] - d['baselines'][b][key]:+.4f} {ci}", edge[d["significant"][key]])
    console = Console(stderr=True)
    console.print(table)
    bt = Table(title=f"backtest on {metrics['part']} (threshold chosen on validation; spread both ways, fee twice)")
    for col in ("horizon", "system", "trades", "hit rate", "mean bps", "total bps"):
        bt.add_column(col, justify="left" if col in ("horizon", "system") else "right")
    for h, systems in metrics["backtest"].items():
        for name, r in systems.items():
            bt.add_row(h, name, str(r["trades"]), "-" if r["hit_rate"] is None else f"{r['hit_rate']:.3f}",
                       "-" if r["mean_pnl_bps"] is None else f"{r['mean_pnl_bps']:+.2f}", f"{r['total_pnl_bps']:+.1f}")
    console.print(bt)


def write_report(path: Path, metrics: dict, reliab: dict, curves: dict) -> None:
    """PNG, one column per horizon: macro-F1 and log-loss bars, reliability diagram, confusion, PnL curves."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    dirs = metrics["direction"]
    fig, axes = plt.subplots(5, len(dirs), figsize=(4.8 * len(dirs), 19), squeeze=False, constrained_layout=True)
    for k, (h, d) in enumerate(dirs.items()):
        names = ["model", *d["baselines"]]
        for row, key in enumerate(("macro_f1", "log_loss")):
            ax = axes[row, k]
            vals = [d[key], *(d["baselines"][b][key] for b in d["baselines"])]
            ax.bar(names, vals, color=["C0"] + ["C7"] * len(d["baselines"]))
            ci = "no interval (too few ticks)" if d["ci95"][key] is None else "in [{:+.4f}, {:+.4f}]".format(
                *d["ci95"][key])
            ax.set_title(f"{h} {key}: model - {d['best_baseline'][key]} {ci}", fontsize=9)
            if key == "log_loss":
                ax.set_ylim(min(vals) * 0.95, max(vals) * 1.02)
        ax = axes[2, k]
        ax.plot([0, 1], [0, 1], color="k", lw=0.5)
        for name, r in reliab[h].items():
            ax.plot(r["confidence"], r["accuracy"], "o-", ms=3, label=name)
        ax.set_xlabel("top-label confidence")
        ax.set_ylabel("accuracy")
        ax.set_title(f"{h} reliability (model ECE {d['ece']:.3f})", fontsize=9)
        ax.legend(fontsize=8)
        ax = axes[3, k]
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
        ax.set_title(f"{h} model: acc {d['accuracy']:.3f}, F1 {d['macro_f1']:.3f}", fontsize=9)
        ax = axes[4, k]
        for name, curve in curves[h].items():
            ax.plot(np.arange(1, len(curve) + 1), curve, label=f"{name} ({len(curve)} trades)")
        ax.axhline(0, color="k", lw=0.5)
        ax.set_xlabel("trade")
        ax.set_ylabel("cumulative PnL (bps)")
        ax.set_title(f"{h} backtest on {metrics['part']}", fontsize=9)
        ax.legend(fontsize=8)
    fig.suptitle(_title(metrics))
    atomic_write(Path(path), lambda tmp: fig.savefig(tmp, format="png", dpi=80))
    plt.close(fig)
