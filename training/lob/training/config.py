"""``TrainConfig``: every argument of a training run and its default, in one place (numpy only, so the CLI
can read the defaults without loading torch). ``lob train`` builds it from its options; the run records it
as ``config.json`` ``training``.

The defaults are the recipe recommended for a real 5- or 10-level day imported by ``lob import lobster``,
chosen on the validation splits of two NASDAQ days (docs/tuning.md): tiny Mamba-LOB whose direction heads
also read the tick's features linearly (``RECIPE_MODEL_OPTIONS``) and start as the train split's logistic
regression (``dir_init``), cost-aware labels, λ = 0.3, 700 steps, the weights of the best validation direction
loss kept (``select_on``). The simulator results recorded before those
choices were trained with ``SIMULATOR_RECIPE_ARGS``."""
from __future__ import annotations

from dataclasses import dataclass, field, fields

from lob.training.labels import SMOOTH_BPS, W_MAX, LabelSpec
from lob.training.split import DEFAULT_FRACTIONS


RECIPE_MODEL_OPTIONS = {"feature_skip": 1}  # model fields the recipe sets beside the preset's
# `lob train` arguments of the simulator results recorded before the real-day recipe (make demo, docs/results.md)
SIMULATOR_RECIPE_ARGS = ("--model-opt", "feature_skip=0", "--dir-init", "zero", "--select-on", "loss")
RECORDED_BEFORE = {"dir_init": "zero", "dir_readout": "sgd", "select_on": "loss"}  # what runs before these fields did
DIR_INITS = ("zero", "logreg")  # how the direction heads start (`lob.training.readout`)
DIR_READOUTS = ("sgd", "probe")  # how they end: as trained, or refit on the frozen trunk (`lob.training.readout`)
SELECT_ONS = ("loss", "dir")  # which validation evaluation's weights a run keeps (`lob.training.train.Loop`)


@dataclass
class TrainConfig:
    arch: str = "mamba"  # lob.models.registry.ARCHS
    preset: str = "tiny"
    # preset fields replaced, e.g. {"window": 128, "attn_every": 2}; `lob train --model-opt` adds to the recipe's
    model_options: dict = field(default_factory=lambda: dict(RECIPE_MODEL_OPTIONS))
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
    dir_init: str = "logreg"  # direction heads start as the train split's logistic regression | "zero" (DIR_INITS)
    dir_readout: str = "sgd"  # "probe": refit after training on the frozen trunk, L2 chosen on validation
    # the weights kept: "dir", the lowest validation direction loss among evaluations whose next-event loss beats
    # Markov-1's (`lob.training.markov`) on the same windows; "loss", the lowest L_dir + λ·L_next (SELECT_ONS).
    # Either way early stopping (`patience`) counts on L_dir + λ·L_next
    select_on: str = "dir"
    burn_in: int = 64  # ticks at each window start that warm the state up, outside the loss
    eval_every: int = 50
    patience: int = 4  # evaluations without a lower validation L_dir + λ·L_next before training stops
    max_val_windows: int = 64

    def __post_init__(self) -> None:
        """Refuse (ValueError) an unknown arch, or a model option the arch's config does not
        have (or one that sets the tokenizer's sizes), before any data is read."""
        from lob.models.registry import arch

        known = {f.name for f in fields(arch(self.arch).config)} - {"vocab_size", "n_features", "horizons"}
        unknown = sorted(set(self.model_options) - known)
        if unknown:
            raise ValueError(f"model option(s) {unknown} are not {self.arch} config fields; choose from {sorted(known)}")
        if self.dir_init not in DIR_INITS:
            raise ValueError(f"dir_init must be one of {DIR_INITS}, got {self.dir_init!r}")
        if self.dir_readout not in DIR_READOUTS:
            raise ValueError(f"dir_readout must be one of {DIR_READOUTS}, got {self.dir_readout!r}")
        if self.select_on not in SELECT_ONS:
            raise ValueError(f"select_on must be one of {SELECT_ONS}, got {self.select_on!r}")
        wants_skip = [f"{k}={v!r}" for k, v in (("dir_init", self.dir_init), ("dir_readout", self.dir_readout))
                      if v in ("logreg", "probe")]
        if wants_skip and not self.model_options.get("feature_skip"):
            raise ValueError(f"{', '.join(wants_skip)} needs the feature skip (model option feature_skip=1): the "
                             "regression's feature weights go there")

    @classmethod
    def from_recorded(cls, training: dict) -> "TrainConfig":
        """The config a run recorded (``config.json`` ``training``); a field added since the run was trained
        takes the value such runs had (``RECORDED_BEFORE``), not today's default."""
        known = {f.name for f in fields(cls)}
        args = {**RECORDED_BEFORE, **{k: v for k, v in training.items() if k in known}}
        return cls(**{**args, "split": tuple(args.get("split", DEFAULT_FRACTIONS))})

    @property
    def label_spec(self) -> LabelSpec:
        return LabelSpec(self.fee_bps, self.w_max, self.labels, self.smooth_bps)
