"""``lob train``: fit the tokenizer on the train split, then train a model (``--arch``) on random windows of it.

Per symbol, ticks split chronologically (``lob.training.split``); the tokenizer (and with it the feature
standardisation) is fitted on the train parts only. Each segment (one symbol's train, validation or
test part) is tokenized from a fresh tokenizer state and labelled within itself, so no label looks
past its segment's end.

Optimisation: AdamW, linear warmup then cosine decay to ``min_lr_ratio`` · lr, gradient clipping,
batches of ``batch_size`` random windows of ``window`` ticks (model state fresh at each window
start; the first ``burn_in`` ticks, at most half a window, only warm the state up and stay out of the
loss). Loss ``L_dir + λ · L_next`` (``lob.training.labels``). Every ``eval_every`` steps the same loss is
taken on the validation windows (non-overlapping, fixed); training stops after ``patience``
evaluations without improvement and keeps the best weights. Everything random flows from ``seed``:
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
import platform
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from lob.data.schema import dataset_files, load_dataset
from lob.io import atomic_write, building, sha256_file, write_json
from lob.training.labels import SMOOTH_BPS, W_MAX, LabelSpec, direction_loss
from lob.training.optim import param_groups
from lob.training.segments import Segment, segments
from lob.training.split import DEFAULT_FRACTIONS, split_symbol


@dataclass
class TrainConfig:
    arch: str = "mamba"  # lob.models.registry.ARCHS
    preset: str = "tiny"
    model_options: dict = field(default_factory=dict)  # preset fields replaced, e.g. {"window": 128, "attn_every": 2}
    seed: int = 0
    fee_bps: float = 0.5  # fee per side (bps of mid); the label band pays it on both legs
    labels: str = "cost"  # "cost" (round-trip band) | "smoothed" (literature protocol), `lob.training.labels`
    smooth_bps: float = SMOOTH_BPS  # α of the smoothed labels
    split: tuple[float, float, float] = DEFAULT_FRACTIONS
    window: int = 512  # ticks per training window: long enough to carry the slow order-flow signal
    batch_size: int = 8  # 4,096 ticks per step, as 16 x 256 (same cost per step)
    max_steps: int = 700  # tiny on `lob simulate` defaults: ~2.3 min on 2 idle cores (0.175 s a step)
    lr: float = 3e-3
    min_lr_ratio: float = 0.1
    weight_decay: float = 0.1
    warmup_steps: int = 40
    grad_clip: float = 1.0
    lambda_next: float = 0.3  # λ: weight of next-event cross-entropy (0.1 left next-event top-1 ~0.1 pt over markov1)
    w_max: float = W_MAX  # cap of the move-size weight
    burn_in: int = 64  # ticks at each window start that warm the state up, outside the loss
    eval_every: int = 50
    patience: int = 4
    max_val_windows: int = 64

    @property
    def label_spec(self) -> LabelSpec:
        return LabelSpec(self.fee_bps, self.w_max, self.labels, self.smooth_bps)


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


def check_model_options(arch: str, options: dict) -> None:
    """Refuse (ValueError) a model option the architecture's config does not have, or one that sets the
    tokenizer's sizes, before any data is read."""
    from dataclasses import fields

    from lob.models.registry import arch as get_arch

    known = {f.name for f in fields(get_arch(arch).config)} - {"vocab_size", "n_features", "horizons"}
    unknown = sorted(set(options) - known)
    if unknown:
        raise ValueError(f"model option(s) {unknown} are not {arch} config fields; choose from {sorted(known)}")


def resume_path(out: Path) -> Path:
    """Where an unfinished run ``out`` keeps its training state."""
    out = Path(out)
    return out.parent / f".{out.name}.resume.pt"


def train(data: Path, out: Path, preset: str = "tiny", max_steps: int | None = None, seed: int = 0,
          fee_bps: float = 0.5, force: bool = False, arch: str = "mamba", resume: bool = False,
          **overrides) -> Path:
    """Train a run into ``out``; returns ``out``. ``overrides`` set other ``TrainConfig`` fields;
    ``resume`` continues from ``resume_path(out)`` (FileNotFoundError when there is none)."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from lob.models.registry import checkpoint, config_from_preset, count_parameters
    from lob.models.registry import arch as get_arch
    from lob.tokenizer import Tokenizer

    cfg = TrainConfig(arch=arch, preset=preset, seed=seed, fee_bps=fee_bps, **overrides)
    model_class = get_arch(cfg.arch).model  # unknown arch: refused before any work
    check_model_options(cfg.arch, cfg.model_options)
    if max_steps is not None:
        cfg.max_steps = max_steps
    out = Path(out)
    if out.exists() and not force:
        raise FileExistsError(f"{out} already exists; pass --force to replace it")
    console = Console(stderr=True)
    t_start = time.perf_counter()

    dataset = load_dataset(data)
    if not dataset:
        raise ValueError(f"{data}: no tick files (expected DIR/<SYMBOL>/<YYYY-MM-DD>.parquet)")
    splits = {sym: split_symbol(t, cfg.split) for sym, t in dataset.items()}
    tokenizer = Tokenizer.fit([dataset[s].slice(sp.train.start, sp.train.stop) for s, sp in splits.items()])
    train_segs = segments(dataset, splits, "train", tokenizer, cfg.label_spec)
    val_segs = segments(dataset, splits, "val", tokenizer, cfg.label_spec)
    short = [s.symbol for s in train_segs if len(s.tokens) < cfg.window]
    if short:
        raise ValueError(f"{data}: symbol(s) {short} have fewer train ticks than the window ({cfg.window})")
    val_window = min(cfg.window, min(len(s.tokens) for s in val_segs))  # a short day's val part may be shorter
    val_picks = _val_picks(val_segs, val_window, cfg.max_val_windows)

    torch.manual_seed(cfg.seed)
    model_cfg = config_from_preset(cfg.arch, cfg.preset, vocab_size=tokenizer.vocab_size,
                                   n_features=tokenizer.n_features, **cfg.model_options)
    model = model_class(model_cfg)
    n_params = count_parameters(model)
    console.print(f"[bold]{cfg.arch}[/] preset={cfg.preset}: {n_params:,} parameters; vocab {tokenizer.vocab_size}, "
                  f"{tokenizer.n_features} features; train ticks {sum(len(s.tokens) for s in train_segs):,}, "
                  f"val windows {len(val_picks)}")
    opt = torch.optim.AdamW(param_groups(model, cfg.weight_decay), lr=cfg.lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: _lr_factor(s, cfg, cfg.max_steps))
    rng = np.random.default_rng(cfg.seed)
    starts = np.array([len(s.tokens) - cfg.window + 1 for s in train_segs])  # valid window starts per segment
    cum = np.cumsum(starts)

    curves = {"step": [], "train_loss": [], "train_dir": [], "train_next": [], "lr": [],
              "val_step": [], "val_loss": [], "val_dir": [], "val_next": []}
    best = (math.inf, -1, None)  # (val loss, step, state_dict)
    bad_evals, first_step, elapsed_before = 0, 0, 0.0
    state_file, data_files = resume_path(out), [sha256_file(f) for f in dataset_files(Path(data))]
    if resume:
        if not state_file.exists():
            raise FileNotFoundError(f"{state_file}: no interrupted run of {out} to resume")
        st = torch.load(state_file, map_location="cpu", weights_only=False)
        if st["training"] != asdict(cfg) or st["data_sha256"] != data_files:
            raise ValueError(f"{state_file}: the interrupted run had other arguments or data "
                             f"({st['training']}); resume with the same ones")
        model.load_state_dict(st["model"])
        opt.load_state_dict(st["opt"])
        sched.load_state_dict(st["sched"])
        rng.bit_generator.state = st["rng"]
        torch.set_rng_state(st["torch_rng"])
        curves, best, bad_evals, first_step, elapsed_before = (st["curves"], st["best"], st["bad_evals"], st["step"],
                                                              st["elapsed"])
        console.print(f"resuming {out} at step {first_step}")
        if bad_evals >= cfg.patience:  # it had early-stopped at that evaluation: nothing left to train
            first_step = cfg.max_steps
    model.train()
    columns = [TextColumn("train"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TextColumn("loss {task.fields[loss]:.4f}  val {task.fields[val]:.4f}")]
    with Progress(*columns, console=console, transient=False) as bar:
        task = bar.add_task("train", total=cfg.max_steps, completed=first_step, loss=float("nan"), val=float("nan"))
        for step in range(first_step, cfg.max_steps):
            flat = rng.integers(0, cum[-1], cfg.batch_size)  # uniform over all windows of all symbols
            seg_idx = np.searchsorted(cum, flat, side="right")
            picks = [(int(i), int(f - (cum[i] - starts[i]))) for i, f in zip(seg_idx, flat)]
            l_dir, l_next = loss_terms(model, *_batch(train_segs, picks, cfg.window), min(cfg.burn_in, cfg.window // 2))
            loss = l_dir + cfg.lambda_next * l_next
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            opt.step()
            sched.step()
            for k, v in (("step", step + 1), ("train_loss", loss.item()), ("train_dir", l_dir.item()),
                         ("train_next", l_next.item()), ("lr", opt.param_groups[0]["lr"])):
                curves[k].append(v)
            if (step + 1) % cfg.eval_every == 0 or step + 1 == cfg.max_steps:
                val, v_dir, v_next = _val_loss(model, val_segs, val_picks, val_window, cfg)
                for k, v in (("val_step", step + 1), ("val_loss", val), ("val_dir", v_dir), ("val_next", v_next)):
                    curves[k].append(v)
                if val < best[0]:
                    best, bad_evals = (val, step + 1, copy.deepcopy(model.state_dict())), 0
                else:
                    bad_evals += 1
                bar.update(task, val=val)
                st = {"step": step + 1, "model": model.state_dict(), "opt": opt.state_dict(),
                      "sched": sched.state_dict(), "rng": rng.bit_generator.state, "torch_rng": torch.get_rng_state(),
                      "curves": curves, "best": best, "bad_evals": bad_evals, "training": asdict(cfg),
                      "data_sha256": data_files, "elapsed": elapsed_before + time.perf_counter() - t_start}
                atomic_write(state_file, lambda tmp: torch.save(st, tmp))
            bar.update(task, advance=1, loss=loss.item())
            if bad_evals >= cfg.patience:
                console.print(f"early stop at step {step + 1}: no validation improvement in {cfg.patience} evaluations")
                break
    model.load_state_dict(best[2])
    elapsed = elapsed_before + time.perf_counter() - t_start

    with building(out, force) as tmp:
        torch.save(checkpoint(model), tmp / "checkpoint.pt")
        tokenizer.save(tmp / "tokenizer.json")
        write_json(tmp / "config.json", {"arch": cfg.arch, "model": asdict(model_cfg), "training": asdict(cfg)})
        write_json(tmp / "train_metrics.json", {**curves, "best_step": best[1], "best_val_loss": best[0],
                                                "steps_run": len(curves["step"]), "wall_s": elapsed})
        write_json(tmp / "manifest.json", _manifest(data, splits, train_segs, val_segs, tokenizer, n_params, cfg,
                                                          model_cfg.horizons))
    state_file.unlink(missing_ok=True)
    console.print(f"run written to {out} (best val loss {best[0]:.4f} at step {best[1]}, {elapsed:.0f} s)")
    return out


def _manifest(data: Path, splits, train_segs, val_segs, tokenizer, n_params: int, cfg: TrainConfig,
              horizons: tuple[int, ...]) -> dict:
    import lob

    root = Path(data)
    files = [{"path": str(f.relative_to(root)), "sha256": sha256_file(f)} for f in dataset_files(root)]
    return {
        "data": {"root": str(root.resolve()), "files": files},
        "split": {"fractions": list(cfg.split), "symbols": {s: sp.to_json() for s, sp in splits.items()}},
        "counts": {"symbols": len(splits), "train_ticks": sum(len(s.tokens) for s in train_segs),
                   "val_ticks": sum(len(s.tokens) for s in val_segs),
                   "test_ticks": sum(sp.n_ticks - sp.test_start for sp in splits.values())},
        "tokenizer_hash": tokenizer.content_hash,
        "n_parameters": n_params,
        "fee_bps": cfg.fee_bps,
        "labels": cfg.labels,
        "horizons": list(horizons),
        "versions": {"lob": getattr(lob, "__version__", "unknown"), "torch": torch.__version__,
                     "numpy": np.__version__, "python": platform.python_version()},
        "complete": True,
    }
