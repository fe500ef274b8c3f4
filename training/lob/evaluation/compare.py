"""``lob compare RUN...``: evaluated runs side by side, and each design's mean over its seeds.

A *design* is a run's architecture, preset, model options and training arguments apart from the seed
(``config.json`` ``training``); runs of one design that differ only in seed are its seeds. Per run, from
``train_metrics.json`` and ``metrics.json`` (``lob evaluate`` first):

- parameters, best validation loss and its step (what early stopping kept), steps run;
- test next-event perplexity and top-1 (and markov1's top-1, the best token baseline here);
- per horizon, direction log-loss of the model minus the best baseline's with the 95% block-bootstrap
  interval (< 0: the model is better) and the edge (``model`` / ``baseline`` / ``none``), and the same for
  macro-F1 at the longest horizon (> 0: better);
- the longest horizon's backtest: model trades and total PnL in bps after costs.

Per design with two or more seeds: mean and sample standard deviation of the numeric columns, and how
many seeds show an edge either way. ``--markdown FILE`` writes both tables as Markdown (docs/results.md's).
"""
from __future__ import annotations

import json
import statistics
from dataclasses import MISSING, dataclass, fields
from pathlib import Path

from lob.io import atomic_write
from lob.training.config import TrainConfig
from lob.training.run import RunError

# today's training defaults as config.json records them (tuples as lists)
DEFAULTS = {f.name: json.loads(json.dumps(f.default)) for f in fields(TrainConfig) if f.default is not MISSING}


@dataclass
class RunRow:
    run: str
    design: str
    seed: int
    n_parameters: int
    best_val_loss: float
    best_step: int
    steps_run: int
    perplexity: float
    top1: float
    markov1_top1: float
    log_loss_delta: dict[str, float]  # horizon -> model - best baseline
    log_loss_ci: dict[str, list[float] | None]
    log_loss_edge: dict[str, int]  # +1 model better, -1 worse, 0 none
    f1_horizon: str
    f1_delta: float
    f1_ci: list[float] | None
    f1_edge: int
    trades: int
    pnl_bps: float


def _read(run: Path, name: str, hint: str) -> dict:
    path = run / name
    if not path.is_file():
        raise RunError(f"{path} is missing: {hint}")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise RunError(f"{path}: unreadable ({err})") from err


def design_of(training: dict, model: dict) -> tuple[str, str]:
    """(label, key) of a run's design. The key is the model's config and every training argument but the
    seed and the model options (which the config holds), so a preset and the same config reached with
    ``--model-opt`` are one design. The label names arch, preset, model options, the training arguments the run
    recorded away from today's defaults (e.g. ``labels=smoothed``) and the attention window."""
    options = training.get("model_options") or {}
    changed = {k: v for k, v in training.items() if k in DEFAULTS and k not in ("arch", "preset", "seed")
               and v != DEFAULTS[k]}
    label = " ".join([training["arch"], training["preset"], *(f"{k}={v}" for k, v in sorted(options.items())
                                                             if k != "window"),
                      *(f"{k}={v}" for k, v in changed.items())])
    if "window" in model:
        label += f" W={model['window']}"
    rest = {k: v for k, v in training.items() if k not in ("seed", "model_options")}
    return label, json.dumps({"model": model, "training": rest}, sort_keys=True)


def read_row(run: Path) -> tuple[RunRow, str]:
    """One evaluated run's row and its design key."""
    run = Path(run)
    config = _read(run, "config.json", "not a run folder from `lob train`")
    train_metrics = _read(run, "train_metrics.json", "not a finished `lob train` run")
    metrics = _read(run, "metrics.json", f"run `lob evaluate --run {run} --data DATA` first")
    label, key = design_of(config["training"], config["model"])
    direction = {h: metrics["direction"][h] for h in sorted(metrics["direction"], key=lambda h: int(h[1:]))}
    last = list(direction)[-1]  # the longest horizon ("h100")

    def delta(d: dict, metric: str) -> float:
        return d[metric] - d["baselines"][d["best_baseline"][metric]][metric]

    bt = metrics["backtest"][last]["model"]
    ne = metrics["next_event"]
    row = RunRow(
        run=run.name, design=label, seed=int(config["training"]["seed"]),
        n_parameters=int(_read(run, "manifest.json", "not a finished `lob train` run")["n_parameters"]),
        best_val_loss=train_metrics["best_val_loss"], best_step=train_metrics["best_step"],
        steps_run=train_metrics["steps_run"], perplexity=ne["perplexity"], top1=ne["top1"],
        markov1_top1=ne["baselines"]["markov1"]["top1"],
        log_loss_delta={h: delta(d, "log_loss") for h, d in direction.items()},
        log_loss_ci={h: d["ci95"]["log_loss"] for h, d in direction.items()},
        log_loss_edge={h: d["significant"]["log_loss"] for h, d in direction.items()},
        f1_horizon=last, f1_delta=delta(direction[last], "macro_f1"), f1_ci=direction[last]["ci95"]["macro_f1"],
        f1_edge=direction[last]["significant"]["macro_f1"], trades=bt["trades"], pnl_bps=bt["total_pnl_bps"])
    return row, key


def _ci(value: float, ci: list[float] | None) -> str:
    return f"{value:+.4f} " + ("[too few ticks]" if ci is None else "[{:+.4f}, {:+.4f}]".format(*ci))


EDGE = {1: "model", -1: "baseline", 0: "none"}


def run_table(rows: list[RunRow]) -> tuple[list[str], list[list[str]]]:
    horizons = list(rows[0].log_loss_delta)
    header = ["run", "design", "seed", "params", "best val loss (step/run)", "next-event ppl", "top-1 (markov1)",
              *(f"{h} log-loss Δ [95% CI], edge" for h in horizons), f"{rows[0].f1_horizon} macro-F1 Δ, edge",
              f"{rows[0].f1_horizon} trades, PnL bps"]
    body = [[r.run, r.design, str(r.seed), f"{r.n_parameters:,}",
             f"{r.best_val_loss:.4f} ({r.best_step}/{r.steps_run})", f"{r.perplexity:.2f}",
             f"{r.top1:.4f} ({r.markov1_top1:.4f})",
             *(f"{_ci(r.log_loss_delta[h], r.log_loss_ci[h])} {EDGE[r.log_loss_edge[h]]}" for h in horizons),
             f"{_ci(r.f1_delta, r.f1_ci)} {EDGE[r.f1_edge]}", f"{r.trades}, {r.pnl_bps:+.1f}"] for r in rows]
    return header, body


def _mean_sd(values: list[float], digits: int, sign: str = "") -> str:
    return f"{statistics.fmean(values):{sign}.{digits}f} ± {statistics.stdev(values):.{digits}f}"


def design_table(groups: dict[str, list[RunRow]]) -> tuple[list[str], list[list[str]]]:
    """Designs with >= 2 seeds: mean ± sd over seeds; edges counted as 'model wins / baseline wins'."""
    first = next(iter(groups.values()))[0]
    horizons = list(first.log_loss_delta)
    header = ["design", "seeds", "best val loss", "next-event ppl", "top-1",
              *(f"{h} log-loss Δ (edges +/−)" for h in horizons), f"{first.f1_horizon} macro-F1 Δ (edges +/−)",
              f"{first.f1_horizon} PnL bps"]
    body = []
    for rows in groups.values():
        if len(rows) < 2:
            continue

        def edges(values: list[int]) -> str:
            return f"{sum(v > 0 for v in values)}/{sum(v < 0 for v in values)}"
        body.append([rows[0].design, ", ".join(str(r.seed) for r in rows),
                     _mean_sd([r.best_val_loss for r in rows], 4), _mean_sd([r.perplexity for r in rows], 2),
                     _mean_sd([r.top1 for r in rows], 4),
                     *(f"{_mean_sd([r.log_loss_delta[h] for r in rows], 4, '+')} "
                       f"({edges([r.log_loss_edge[h] for r in rows])})" for h in horizons),
                     f"{_mean_sd([r.f1_delta for r in rows], 4, '+')} ({edges([r.f1_edge for r in rows])})",
                     _mean_sd([r.pnl_bps for r in rows], 1, "+")])
    return header, body


def compare_runs(runs: list[Path]) -> tuple[list[RunRow], dict[str, list[RunRow]]]:
    """Rows in the order given, and the rows grouped by design (seeds sorted)."""
    if not runs:
        raise ValueError("lob compare needs at least one run folder")
    rows, groups = [], {}
    for run in runs:
        row, key = read_row(run)
        rows.append(row)
        groups.setdefault(key, []).append(row)
    horizons = {tuple(r.log_loss_delta) for r in rows}
    if len(horizons) > 1:
        raise ValueError(f"runs scored at different horizons {sorted(horizons)}: they cannot share a table")
    for members in groups.values():
        members.sort(key=lambda r: r.seed)
        seeds = [r.seed for r in members]
        if len(set(seeds)) < len(seeds):
            raise ValueError(f"runs {[r.run for r in members]} are the same design and seed: pass one of them")
    return rows, groups


def markdown(header: list[str], body: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join([*lines, *("| " + " | ".join(row) + " |" for row in body)]) + "\n"


def write_markdown(path: Path, rows: list[RunRow], groups: dict[str, list[RunRow]]) -> None:
    text = markdown(*run_table(rows))
    header, body = design_table(groups)
    if body:
        text += "\n" + markdown(header, body)
    atomic_write(Path(path), lambda tmp: Path(tmp).write_text(text))


def print_tables(rows: list[RunRow], groups: dict[str, list[RunRow]]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    for title, (header, body) in (("runs (held-out test; Δ = model − best baseline)", run_table(rows)),
                                  ("designs: mean ± sd over seeds", design_table(groups))):
        if not body:
            continue
        table = Table(title=title)
        for col in header:
            table.add_column(col, justify="left" if col in ("run", "design") else "right")
        for row in body:
            table.add_row(*row)
        console.print(table)
