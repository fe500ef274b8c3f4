"""DeepLOB, the field's reference direction baseline, trained by `lob evaluate` on the run's own split and labels.

Zhang, Zohren & Roberts, "DeepLOB: Deep Convolutional Neural Networks for Limit Order Books", IEEE TSP 2019
(arXiv 1808.03668). Input: the last ``WINDOW`` = 100 book snapshots of 40 values, per level k = 1..10
``(ask px, ask sz, bid px, bid sz)``. Layers (time along the first spatial axis, book values along the second)::

    (B, 1, 100, 40) -conv 1x2 stride (1,2), 4x1, 4x1-> (B, C, 100, 20)    px/sz pairs  (C = 16)
                    -conv 1x2 stride (1,2), 4x1, 4x1-> (B, C, 100, 10)    ask/bid pairs
                    -conv 1x10,             4x1, 4x1-> (B, C, 100, 1)     the 10 levels
                    -inception: 1x1->3x1 | 1x1->5x1 | maxpool 3x1->1x1  -> (B, 3I, 100)   (I = 32)
                    -LSTM(64), last step -> (B, 64) -linear-> (B, H, 3) logits over down/flat/up

every conv followed by LeakyReLU(0.01), the 4x1 and inception convs zero-padded to keep 100 steps (the
paper's Keras code: ``padding='same'``). Sizes are the paper's (16 conv filters, 32 per inception branch, no batch
norm); its later PyTorch release uses 32 and 64 with batch norm. The paper trains one model per horizon;
here one trunk carries a head per horizon of `lob.contract.HORIZONS` (a third of the training cost).

Context only (other data, other labels; not comparable to our numbers): the paper reports accuracy and
F1 of roughly 0.75-0.85 on FI-2010 (5 Nasdaq Nordic stocks, 10 days; horizons k = 10, 50, 100, smoothed
labels) and lower, around 0.7, on a year of LSE stocks; see its tables.

Input normalisation (statistics from the train split only: we have one day per symbol, where the paper
used the previous day or five): prices as bps from the mid of the window's last snapshot, divided per
column by the train std of (price - own mid) / own mid in bps; sizes as ``log1p``, z-scored per column
with the train mean and std. Empty levels (price 0, size 0: books shallower than 10) are 0 after
normalisation, both price and size.

Windows are chronological: tick t's window holds snapshots t-99 .. t of its own segment (one symbol's
train, validation or test part) and session (`lob.training.labels.tick_sessions`); a tick with fewer than
99 earlier snapshots there is left-padded with the first snapshot of its session.

Training: Adam (lr 1e-3, as the paper), batches of ``BATCH`` train ticks drawn at random (seeded), mean
cross-entropy over each tick's horizons with a label (IGNORE skipped, unweighted like the other
baselines), at most ``steps`` steps and ``MAX_EPOCHS`` passes over the train ticks; every ``EVAL_EVERY``
steps the loss on (up to ``VAL_WINDOWS``) validation ticks is measured, the best weights kept, and training
stops after ``PATIENCE`` measurements without improvement. Same data and seed -> same probabilities.
"""
from __future__ import annotations

import copy
import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from lob.contract import HORIZONS
from lob.data.schema import Ticks
from lob.training.labels import IGNORE, tick_sessions
from lob.training.segments import Segment

WINDOW = 100  # snapshots per input window
DEFAULT_STEPS = 300  # Adam steps at most (lob evaluate --deeplob-steps; 0 = no DeepLOB)
MAX_EPOCHS = 4  # passes over the train ticks at most (binds on small data)
BATCH = 64
LR = 1e-3
EVAL_EVERY = 50  # steps between validation-loss measurements
PATIENCE = 3  # measurements without improvement before stopping
VAL_WINDOWS = 2048  # validation ticks (evenly spaced) the early stopping measures
PREDICT_BATCH = 512
NORMALISATION = ("prices: bps from the window's last mid / train std of (px - mid)/mid bps per column; "
                 "sizes: log1p z-scored per column (train mean, std); empty levels 0; "
                 "a tick's window: its last `window` snapshots within its segment and session, left-padded "
                 "with the session's first")


def _act() -> nn.Module:
    return nn.LeakyReLU(0.01)


def _conv_block(c_in: int, c: int, width: int, stride: int) -> nn.Sequential:
    """1 x width conv over book values (stride along them), then two 4x1 convs over time; LeakyReLU after each."""
    return nn.Sequential(nn.Conv2d(c_in, c, (1, width), stride=(1, stride)), _act(),
                         nn.ZeroPad2d((0, 0, 1, 2)), nn.Conv2d(c, c, (4, 1)), _act(),
                         nn.ZeroPad2d((0, 0, 1, 2)), nn.Conv2d(c, c, (4, 1)), _act())


def _inception_branch(c_in: int, c: int, k: int) -> nn.Sequential:
    """1x1 conv, then k x 1 over time (padded to keep the length)."""
    return nn.Sequential(nn.Conv2d(c_in, c, 1), _act(), nn.Conv2d(c, c, (k, 1), padding=((k - 1) // 2, 0)), _act())


class DeepLOB(nn.Module):
    """(B, T, 40) normalised windows -> (B, H, 3) direction logits."""

    def __init__(self, n_horizons: int = len(HORIZONS), conv: int = 16, inception: int = 32, hidden: int = 64):
        super().__init__()
        self.n_horizons = n_horizons
        self.convs = nn.Sequential(_conv_block(1, conv, 2, 2), _conv_block(conv, conv, 2, 2),
                                   _conv_block(conv, conv, 10, 1))
        self.branches = nn.ModuleList([
            _inception_branch(conv, inception, 3), _inception_branch(conv, inception, 5),
            nn.Sequential(nn.MaxPool2d((3, 1), stride=1, padding=(1, 0)), nn.Conv2d(conv, inception, 1), _act()),
        ])
        self.lstm = nn.LSTM(3 * inception, hidden, batch_first=True)
        self.head = nn.Linear(hidden, n_horizons * 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.convs(x[:, None])  # (B, C, T, 1)
        z = torch.cat([b(z) for b in self.branches], dim=1)  # (B, 3I, T, 1)
        out, _ = self.lstm(z[..., 0].transpose(1, 2))  # (B, T, hidden)
        return self.head(out[:, -1]).view(-1, self.n_horizons, 3)  # (B, H, 3)


def book_snapshots(ticks: Ticks) -> tuple[np.ndarray, np.ndarray]:
    """Prices (N, 20) and sizes (N, 20) float64, columns level-major: ask_1, bid_1, ask_2, bid_2, ..."""
    px = np.stack([ticks.ask_px, ticks.bid_px], axis=2).reshape(len(ticks), -1)
    sz = np.stack([ticks.ask_sz, ticks.bid_sz], axis=2).reshape(len(ticks), -1)
    return px, sz


@dataclass
class Books:
    """Segments' snapshots concatenated: prices, sizes (N, 20), mid (N,), ``first`` (N,) int64 the index of
    the first snapshot of each tick's segment and session (where its window is clipped), labels (N, H)."""

    px: np.ndarray
    sz: np.ndarray
    mid: np.ndarray
    first: np.ndarray
    labels: np.ndarray

    @staticmethod
    def of(segs: list[Segment]) -> "Books":
        parts, firsts, offset = [], [], 0
        for seg in segs:
            sess = tick_sessions(seg.ticks)
            starts = np.concatenate([[True], sess[1:] != sess[:-1]])  # (N,)
            firsts.append(offset + np.maximum.accumulate(np.where(starts, np.arange(len(sess)), 0)))
            parts.append(book_snapshots(seg.ticks))
            offset += len(sess)
        return Books(np.concatenate([p for p, _ in parts]), np.concatenate([s for _, s in parts]),
                     np.concatenate([s.ticks.mid() for s in segs]), np.concatenate(firsts),
                     np.concatenate([s.labels for s in segs]))


@dataclass
class Normaliser:
    """Train-split statistics per column (20,): price scale in bps, log1p size mean and std; the window length."""

    px_scale: np.ndarray
    sz_mean: np.ndarray
    sz_std: np.ndarray
    window: int = WINDOW

    @staticmethod
    def fit(books: Books, window: int = WINDOW) -> "Normaliser":
        present = books.px > 0  # (N, 20)
        bps = (books.px - books.mid[:, None]) / books.mid[:, None] * 1e4
        logsz = np.log1p(books.sz)
        col = lambda f, a: np.array([f(a[present[:, k], k]) if present[:, k].any() else 0.0  # noqa: E731
                                     for k in range(a.shape[1])])
        std = lambda a: np.maximum(col(np.std, a), 1e-6)  # noqa: E731
        return Normaliser(std(bps), col(np.mean, logsz), std(logsz), window)

    def windows(self, books: Books, ticks: np.ndarray) -> torch.Tensor:
        """(B, T, 40) float32 inputs of the given tick indices: snapshots t-T+1 .. t clipped at ``first[t]``."""
        rows = np.maximum(ticks[:, None] + np.arange(1 - self.window, 1), books.first[ticks][:, None])  # (B, T)
        px, sz = books.px[rows], books.sz[rows]  # (B, T, 20)
        ref = books.mid[ticks][:, None, None]
        present = px > 0
        px_n = np.where(present, (px - ref) / ref * 1e4 / self.px_scale, 0.0)
        sz_n = np.where(present, (np.log1p(sz) - self.sz_mean) / self.sz_std, 0.0)
        # per level: ask px, ask sz, bid px, bid sz
        x = np.stack([px_n, sz_n], axis=3).reshape(len(ticks), self.window, 40)
        return torch.from_numpy(x.astype(np.float32))


def _loss(model: DeepLOB, x: torch.Tensor, labels: np.ndarray) -> torch.Tensor:
    """Mean cross-entropy over the (tick, horizon) pairs with a label; labels (B, H) with IGNORE."""
    y = torch.from_numpy(labels)
    return F.cross_entropy(model(x).reshape(-1, 3), y.reshape(-1), ignore_index=IGNORE)


@dataclass
class DeepLOBBaseline:
    model: DeepLOB
    norm: Normaliser
    budget: dict  # what metrics.json records: steps asked and run, best step, losses, seconds, normalisation

    @staticmethod
    def fit(train: list[Segment], val: list[Segment], steps: int = DEFAULT_STEPS, seed: int = 0,
            batch: int = BATCH, window: int = WINDOW) -> "DeepLOBBaseline":
        """Train on the train segments' ticks that have a label, early-stopped on the validation segments'."""
        t0 = time.perf_counter()
        books = Books.of(train)
        norm = Normaliser.fit(books, window)
        labelled = np.flatnonzero((books.labels != IGNORE).any(axis=1))
        vbooks = Books.of(val) if val else None
        vlab = np.flatnonzero((vbooks.labels != IGNORE).any(axis=1)) if val else np.zeros(0, np.int64)
        vlab = vlab[np.linspace(0, len(vlab) - 1, min(len(vlab), VAL_WINDOWS)).astype(np.int64)] if len(vlab) else vlab
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            model = DeepLOB()
        rng = np.random.default_rng(seed)
        opt = torch.optim.Adam(model.parameters(), lr=LR)
        max_steps = min(steps, MAX_EPOCHS * -(-len(labelled) // batch))
        best, best_state, best_step, bad, step, train_loss = np.inf, None, 0, 0, 0, []
        while step < max_steps:
            idx = rng.choice(labelled, size=min(batch, len(labelled)), replace=False)
            model.train()
            loss = _loss(model, norm.windows(books, idx), books.labels[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            step += 1
            train_loss.append(float(loss.detach()))
            if len(vlab) and (step % EVAL_EVERY == 0 or step == max_steps):
                vloss = _predict_loss(model, norm, vbooks, vlab)
                if vloss < best:
                    best, best_state, best_step, bad = vloss, copy.deepcopy(model.state_dict()), step, 0
                else:
                    bad += 1
                    if bad >= PATIENCE:
                        break
        if best_state is not None:
            model.load_state_dict(best_state)
        model.eval()
        budget = {"steps": steps, "max_epochs": MAX_EPOCHS, "batch": batch, "lr": LR, "window": window,
                  "steps_run": step, "best_step": best_step if best_state is not None else step,
                  "val_loss": None if best_state is None else best, "train_ticks": int(len(labelled)),
                  "train_loss_first_last": [float(np.mean(train_loss[:EVAL_EVERY])),
                                            float(np.mean(train_loss[-EVAL_EVERY:]))] if train_loss else None,
                  "seconds": round(time.perf_counter() - t0, 1), "normalisation": NORMALISATION}
        return DeepLOBBaseline(model, norm, budget)

    def save(self, path) -> None:
        """Weights, normaliser and budget to ``path`` (atomically): what ``load`` restores."""
        from dataclasses import asdict

        from lob.io import atomic_write

        state = {"model": self.model.state_dict(), "norm": asdict(self.norm), "budget": self.budget}
        atomic_write(path, lambda tmp: torch.save(state, tmp))

    @staticmethod
    def load(path) -> "DeepLOBBaseline":
        st = torch.load(path, map_location="cpu", weights_only=False)
        model = DeepLOB()
        model.load_state_dict(st["model"])
        model.eval()
        return DeepLOBBaseline(model, Normaliser(**st["norm"]), st["budget"])

    @torch.no_grad()
    def predict_proba(self, seg: Segment) -> np.ndarray:
        """(N, H, 3) float64 direction probabilities of every tick of one segment (its windows never leave it)."""
        books = Books.of([seg])
        self.model.eval()
        n = len(seg.ticks)
        out = [self.model(self.norm.windows(books, idx)).double().softmax(-1).numpy()
               for idx in np.array_split(np.arange(n), max(1, -(-n // PREDICT_BATCH)))]
        return np.concatenate(out)


@torch.no_grad()
def _predict_loss(model: DeepLOB, norm: Normaliser, books: Books, ticks: np.ndarray) -> float:
    model.eval()
    total, n = 0.0, 0
    for idx in np.array_split(ticks, max(1, -(-len(ticks) // PREDICT_BATCH))):
        k = int((books.labels[idx] != IGNORE).sum())
        total += float(_loss(model, norm.windows(books, idx), books.labels[idx])) * k
        n += k
    return total / max(n, 1)
