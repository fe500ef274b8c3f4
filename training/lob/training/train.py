"""``lob train``: fit the tokenizer on the train split, then train a model (``--arch``) on random windows of it.

Per symbol, ticks split chronologically (``lob.training.split``); the tokenizer (and with it the feature
standardisation) is fitted on the train parts only. Each segment (one symbol's train, validation or
test part) is tokenized from a fresh tokenizer state and labelled within itself, so no label looks
past its segment's end.

``train`` runs the stages in order: ``split_data`` (load, split; the data files hashed once),
``fit_tokenizer``, ``label_segments``, ``build_model``, ``Loop`` (optimiser, schedule, batches, validation, resume state),
then ``lob.training.run.write_run``. Every argument and default lives in ``lob.training.config.TrainConfig``.

Optimisation: AdamW, linear warmup then cosine decay to ``min_lr_ratio`` · lr, gradient clipping,
batches of ``batch_size`` random windows of ``window`` ticks (model state fresh at each window
start; the first ``burn_in`` ticks, at most half a window, only warm the state up and stay out of the
loss). Loss ``L_dir + λ · L_next`` (``lob.training.labels``). Every ``eval_every`` steps the same loss is
taken on the validation windows (non-overlapping, fixed); training stops after ``patience``
evaluations without a lower validation total loss (what training minimises; ``train_metrics.json``
``stopped_by``) and keeps the best weights by ``select_on``: by default ("dir") the lowest
direction loss among evaluations whose next-event loss beats Markov-1's on the same windows, the direction
being what a run is judged on and the next-event head a means to it that must at least beat the token baseline
(before any does, the lowest total loss); "loss", the lowest total loss. Everything random flows from ``seed``:
same data, same seed, same checkpoint. Weight decay applies to weight matrices only
(``lob.training.optim``).

Resume: at every evaluation the whole training state (weights, optimiser, schedule, batch sampler,
curves, best weights) is written atomically to ``.<RUN>.resume.pt`` beside the run folder; ``resume=True``
(``lob train --resume``, same arguments) continues an interrupted run from there and ends with the
checkpoint the uninterrupted run would have written. The file is removed once the run is written.
"""
from __future__ import annotations

import copy
import math
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from lob.data.schema import load_dataset
from lob.io import atomic_write
from lob.training.config import TrainConfig
from lob.training.labels import direction_loss
from lob.training.markov import TokenBaselines
from lob.training.optim import param_groups
from lob.training.readout import init_from_logreg, refit_readout
from lob.training.run import data_files, write_run
from lob.training.segments import Segment, segments
from lob.training.split import SymbolSplit, split_symbol

CURVES = ("step", "train_loss", "train_dir", "train_next", "lr", "val_step", "val_loss", "val_dir", "val_next")


def _batch(segs: list[Segment], picks: list[tuple[int, int]], window: int) -> tuple[torch.Tensor, ...]:
    """Stack windows (segment index, start) into tokens (B, W), features (B, W, F), labels/weights (B, W, H)."""
    cut = lambda a: np.stack([getattr(segs[i], a)[s:s + window] for i, s in picks])  # noqa: E731
    return (torch.from_numpy(cut("tokens")), torch.from_numpy(cut("features")), torch.from_numpy(cut("labels")),
            torch.from_numpy(cut("weights")))


def loss_terms(model, tokens, features, labels, weights, burn_in: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(direction loss, next-event cross-entropy) of one batch, fresh state at each window start.

    The first ``burn_in`` ticks of each window only warm the state up: they are left out of both
    losses, so the model is scored where it has history behind it, as it has when streaming.
    """
    next_logits, dir_logits = model(tokens, features)[:2]  # (B, W, V), (B, W, H, 3)
    l_dir = direction_loss(dir_logits[:, burn_in:], labels[:, burn_in:], weights[:, burn_in:])
    l_next = F.cross_entropy(next_logits[:, burn_in:-1].reshape(-1, next_logits.shape[-1]),
                             tokens[:, burn_in + 1:].reshape(-1))
    return l_dir, l_next


def _lr_factor(step: int, cfg: TrainConfig, total: int) -> float:
    if step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    progress = (step - cfg.warmup_steps) / max(1, total - cfg.warmup_steps)
    return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))


def _val_picks(segs: list[Segment], window: int, limit: int) -> list[tuple[int, int]]:
    picks = [(i, s) for i, seg in enumerate(segs) for s in range(0, len(seg.tokens) - window + 1, window)]
    if len(picks) > limit:  # evenly spaced subset, deterministic
        picks = [picks[k] for k in np.linspace(0, len(picks) - 1, limit).round().astype(int)]
    return picks


@torch.no_grad()
def _val_loss(model, segs, picks, window: int, cfg: TrainConfig) -> tuple[float, float, float]:
    """Loss, direction loss, next-event loss averaged over validation windows of ``window`` ticks."""
    model.eval()
    tot = np.zeros(2)
    for k in range(0, len(picks), cfg.batch_size):
        chunk = picks[k:k + cfg.batch_size]
        l_dir, l_next = loss_terms(model, *_batch(segs, chunk, window), min(cfg.burn_in, window // 2))
        tot += np.array([float(l_dir), float(l_next)]) * len(chunk)
    model.train()
    d, n = tot / len(picks)
    return d + cfg.lambda_next * n, d, n


def _markov_val_loss(model, train_segs, segs, picks, window: int, cfg: TrainConfig) -> float:
    """Markov-1's next-event cross-entropy (`lob.training.markov`, fitted on ``train_segs``) on the positions
    ``loss_terms`` scores in the validation windows ``picks``."""
    markov = TokenBaselines.fit([s.tokens for s in train_segs], model.config.vocab_size, [s.tokens for s in segs])
    b = min(cfg.burn_in, window // 2)
    return -float(np.mean([markov.markov_log_prob(segs[i].tokens[s + b:s + window]) for i, s in picks]))


def resume_path(out: Path) -> Path:
    """Where an unfinished run ``out`` keeps its training state."""
    out = Path(out)
    return out.parent / f".{out.name}.resume.pt"


def train(data: Path, out: Path, cfg: TrainConfig | None = None, force: bool = False, resume: bool = False) -> Path:
    """Train a run of ``cfg`` (default: TrainConfig()) on the dataset ``data`` into ``out``; returns ``out``.
    ``resume`` continues from ``resume_path(out)`` (FileNotFoundError when there is none)."""
    from rich.console import Console

    cfg = cfg or TrainConfig()
    out = Path(out)
    if out.exists() and not force:
        raise FileExistsError(f"{out} already exists; pass --force to replace it")
    console = Console(stderr=True)
    t_start = time.perf_counter()
    dataset, splits, files = split_data(data, cfg)
    tokenizer, train_tokens = fit_tokenizer(dataset, splits)
    train_segs, val_segs = label_segments(dataset, splits, tokenizer, cfg, train_tokens)
    model = build_model(cfg, tokenizer)
    if cfg.dir_init == "logreg":
        init_from_logreg(model, train_segs)
    loop = Loop(model, cfg, train_segs, val_segs)
    console.print(f"[bold]{cfg.arch}[/] preset={cfg.preset}: {loop.n_params:,} parameters; vocab "
                  f"{tokenizer.vocab_size}, {tokenizer.n_features} features; train ticks "
                  f"{sum(len(s.tokens) for s in train_segs):,}, val windows {len(loop.val_picks)}")
    state_file = resume_path(out)
    if resume:
        loop.resume(state_file, files)
        console.print(f"resuming {out} at step {loop.step}")
    loop.run(state_file, files, console, t_start)
    model.load_state_dict(loop.best[2])
    readout = refit_readout(model, train_segs, val_segs) if cfg.dir_readout == "probe" else None
    metrics = {**loop.curves, "best_step": loop.best[1], "best_val_loss": loop.best[0],
               "val_next_markov1": loop.markov_next, "dir_readout": readout,
               "steps_run": len(loop.curves["step"]), "stopped_by": loop.stopped_by,
               "wall_s": loop.elapsed_before + time.perf_counter() - t_start}
    write_run(out, model, tokenizer, cfg, data, files, splits, metrics, force)
    state_file.unlink(missing_ok=True)
    console.print(f"run written to {out} (best val loss {loop.best[0]:.4f} at step {loop.best[1]}, "
                  f"{metrics['wall_s']:.0f} s)")
    return out


# ---------------------------------------------------------------------------------------------- stages

def split_data(data: Path, cfg: TrainConfig) -> tuple[dict, dict[str, SymbolSplit], list[dict]]:
    """The dataset {symbol: Ticks}, each symbol's chronological split, and its files with their sha256
    (hashed once per run: the manifest and the resume check share them)."""
    dataset = load_dataset(data)
    if not dataset:
        raise ValueError(f"{data}: no tick files (expected DIR/<SYMBOL>/<YYYY-MM-DD>.parquet)")
    splits = {sym: split_symbol(t, cfg.split) for sym, t in dataset.items()}
    return dataset, splits, data_files(data)


def fit_tokenizer(dataset: dict, splits: dict[str, SymbolSplit]) -> tuple[object, dict]:
    """The tokenizer (and its feature standardisation) fitted on the train parts only, and the train parts
    it tokenized while fitting ({symbol: (tokens (N,), features (N, F))}, for ``label_segments``)."""
    from lob.tokenizer import Tokenizer

    tokenizer, out = Tokenizer.fit_transform([dataset[s].slice(sp.train.start, sp.train.stop) for s, sp in splits.items()])
    return tokenizer, {s: (tokens, features) for s, (tokens, features, _) in zip(splits, out)}


def label_segments(dataset: dict, splits: dict[str, SymbolSplit], tokenizer, cfg: TrainConfig,
                   train_tokens: dict) -> tuple[list[Segment], list[Segment]]:
    """The train and validation segments, tokenized (the train parts: ``fit_tokenizer``'s ``train_tokens``)
    and labelled; every train part must hold a window."""
    train_segs = segments(dataset, splits, "train", tokenizer, cfg.label_spec, train_tokens)
    short = [s.symbol for s in train_segs if len(s.tokens) < cfg.window]
    if short:
        raise ValueError(f"symbol(s) {short} have fewer train ticks than the window ({cfg.window})")
    return train_segs, segments(dataset, splits, "val", tokenizer, cfg.label_spec)


def build_model(cfg: TrainConfig, tokenizer):
    """The ``cfg.arch`` model of ``cfg.preset`` (+ ``cfg.model_options``) sized for ``tokenizer``, its
    initial weights drawn from ``cfg.seed``."""
    from lob.models.registry import arch, config_from_preset

    torch.manual_seed(cfg.seed)
    model_cfg = config_from_preset(cfg.arch, cfg.preset, vocab_size=tokenizer.vocab_size,
                                   n_features=tokenizer.n_features, **cfg.model_options)
    return arch(cfg.arch).model(model_cfg)


class Loop:
    """The optimisation loop over random train windows, with periodic validation, early stopping and the
    resume file: ``step`` (next step to run), ``curves`` (early stopping's count is read from their ``val_loss``),
    ``best`` (val loss, step, state_dict, selection key). A resume file written before early stopping counted on
    the total loss (its ``bad_evals`` counted the selection key) continues under today's count."""

    def __init__(self, model, cfg: TrainConfig, train_segs: list[Segment], val_segs: list[Segment]):
        from lob.models.registry import count_parameters

        self.model, self.cfg, self.train_segs, self.val_segs = model, cfg, train_segs, val_segs
        self.n_params = count_parameters(model)
        self.val_window = min(cfg.window, min(len(s.tokens) for s in val_segs))  # a short val part may be shorter
        self.val_picks = _val_picks(val_segs, self.val_window, cfg.max_val_windows)
        self.markov_next = _markov_val_loss(model, train_segs, val_segs, self.val_picks, self.val_window, cfg)
        self.opt = torch.optim.AdamW(param_groups(model, cfg.weight_decay), lr=cfg.lr)
        self.sched = torch.optim.lr_scheduler.LambdaLR(self.opt, lambda s: _lr_factor(s, cfg, cfg.max_steps))
        self.rng = np.random.default_rng(cfg.seed)
        self.starts = np.array([len(s.tokens) - cfg.window + 1 for s in train_segs])  # window starts per segment
        self.cum = np.cumsum(self.starts)
        self.curves = {k: [] for k in CURVES}
        self.best = (math.inf, -1, None, (2, math.inf))
        self.step, self.elapsed_before = 0, 0.0

    def resume(self, state_file: Path, files: list[dict]) -> None:
        """Continue from the state an interrupted run with the same config and data wrote at its last evaluation."""
        if not state_file.exists():
            raise FileNotFoundError(f"{state_file}: no interrupted run to resume")
        st = torch.load(state_file, map_location="cpu", weights_only=False)
        if st["training"] != asdict(self.cfg) or st["data_files"] != files:
            raise ValueError(f"{state_file}: the interrupted run had other arguments or data "
                             f"({st['training']}); resume with the same ones")
        self.model.load_state_dict(st["model"])
        self.opt.load_state_dict(st["opt"])
        self.sched.load_state_dict(st["sched"])
        self.rng.bit_generator.state = st["rng"]
        torch.set_rng_state(st["torch_rng"])
        self.curves, self.best, self.step, self.elapsed_before = st["curves"], st["best"], st["step"], st["elapsed"]
        if self.bad_evals >= self.cfg.patience:  # it had early-stopped at that evaluation: nothing left to train
            self.step = self.cfg.max_steps

    @property
    def bad_evals(self) -> int:
        """Evaluations since the lowest validation total loss so far (0 before any): early stopping's count."""
        v = self.curves["val_loss"]
        return len(v) - 1 - int(np.argmin(v)) if v else 0

    @property
    def stopped_by(self) -> str:
        """What ended the run: "max_steps", or "patience" (early stop) when it ended before them."""
        return "max_steps" if len(self.curves["step"]) >= self.cfg.max_steps else "patience"

    def run(self, state_file: Path, files: list[dict], console, t_start: float) -> None:
        """Train until ``max_steps`` or early stop, writing the resume state at every evaluation."""
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        cfg, model, opt, sched, cum, starts = self.cfg, self.model, self.opt, self.sched, self.cum, self.starts
        model.train()
        columns = [TextColumn("train"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                   TextColumn("loss {task.fields[loss]:.4f}  val {task.fields[val]:.4f}")]
        with Progress(*columns, console=console, transient=False) as bar:
            task = bar.add_task("train", total=cfg.max_steps, completed=self.step, loss=float("nan"),
                                val=float("nan"))
            for step in range(self.step, cfg.max_steps):
                flat = self.rng.integers(0, cum[-1], cfg.batch_size)  # uniform over all windows of all symbols
                seg_idx = np.searchsorted(cum, flat, side="right")
                picks = [(int(i), int(f - (cum[i] - starts[i]))) for i, f in zip(seg_idx, flat)]
                l_dir, l_next = loss_terms(model, *_batch(self.train_segs, picks, cfg.window),
                                           min(cfg.burn_in, cfg.window // 2))
                loss = l_dir + cfg.lambda_next * l_next
                opt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
                opt.step()
                sched.step()
                for k, v in (("step", step + 1), ("train_loss", loss.item()), ("train_dir", l_dir.item()),
                             ("train_next", l_next.item()), ("lr", opt.param_groups[0]["lr"])):
                    self.curves[k].append(v)
                if (step + 1) % cfg.eval_every == 0 or step + 1 == cfg.max_steps:
                    bar.update(task, val=self._evaluate(step + 1, state_file, files, t_start))
                bar.update(task, advance=1, loss=loss.item())
                if self.bad_evals >= cfg.patience:
                    console.print(f"early stop at step {step + 1}: no lower validation loss in {cfg.patience} "
                                  "evaluations")
                    break

    def _evaluate(self, step: int, state_file: Path, files: list[dict], t_start: float) -> float:
        """Validation loss after ``step`` steps; keeps the best weights and writes the resume state."""
        val, v_dir, v_next = _val_loss(self.model, self.val_segs, self.val_picks, self.val_window, self.cfg)
        for k, v in (("val_step", step), ("val_loss", val), ("val_dir", v_dir), ("val_next", v_next)):
            self.curves[k].append(v)
        key = (0, v_dir) if self.cfg.select_on == "dir" and v_next < self.markov_next else (1, val)
        if key < self.best[3]:
            self.best = (val, step, copy.deepcopy(self.model.state_dict()), key)
        st = {"step": step, "model": self.model.state_dict(), "opt": self.opt.state_dict(),
              "sched": self.sched.state_dict(), "rng": self.rng.bit_generator.state,
              "torch_rng": torch.get_rng_state(), "curves": self.curves, "best": self.best,
              "training": asdict(self.cfg), "data_files": files,
              "elapsed": self.elapsed_before + time.perf_counter() - t_start}
        atomic_write(state_file, lambda tmp: torch.save(st, tmp))
        return val
