"""``lob generate``: roll a trained model forward from a held-out prompt into synthetic order flow, and compare
the rollouts' stylized facts with the real continuation.

From the first ``prompt_ticks`` of one symbol's test segment, ``rollouts`` sequences of ``steps`` event
tokens are sampled (top-k, temperature; one torch.Generator seeded with ``seed``: same seed, same
rollouts), each with the model's O(1)-per-tick ``step`` from the state the prompt leaves (Mamba: CONV/SSM;
Transformer and hybrid: the ring).

**Features of a generated tick** (the model takes a token and 12 features per tick): every rollout keeps
an order book, starting from the prompt's last real book, and each sampled token is *rebuilt into a
tick* (``RolloutBook.apply``): its signed mid move and spread bucket set the new best prices on the prompt's
price grid (levels that appear get the book's smallest size, levels that survive keep theirs); its event
kind and side act on that side's best queue (an add creates the new best level or joins it; a cancel or
trade takes the size from it, or empties it when the mid moved away; a trade prints at the old best); its
inter-arrival bucket advances the clock.
That tick goes through the run's own tokenizer (``Tokenizer.step``), which gives the features the model
sees next, exactly as it would for a real tick. The tokenizer also re-encodes the rebuilt tick; how often
that equals the sampled token is reported (``token_roundtrip``): grid rounding of a move or spread
can land in a neighbouring bucket. Bucket values: the midpoint of a bounded bucket, 1.5x the lower
edge of the open top bucket.

Writes ``OUT/rollouts.parquet`` (rollout, step, token, kind, side, mid_move, spread_bucket, size_bucket,
dt_bucket, mid, ts_ns; step 0 is the first generated tick), the rebuilt ticks as a canonical dataset with one
file per rollout (``OUT/ticks/<SYMBOL>/<date>_r<NN>.parquet``, for `lob realism` and `lob export-lobster`),
``OUT/facts.json`` and ``OUT/facts.png``:
total-variation distances between the rollouts' and the real continuation's event-kind mix, spread,
mid-move and inter-arrival bucket distributions; Pearson kurtosis (Gaussian 3) of ``return_ticks``-event
mid log-returns; ACF (lags 1..10) of those returns and of their absolute values, each averaged over the
rollouts where defined; and the model's mean log-likelihood (nats per token) and perplexity on the real
continuation given the prompt. Kurtosis, ACF and TV are `lob.realism.stats`' (the conventions and NaN rules
of `lob realism`); an undefined fact is null in facts.json.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import torch

from lob.data.schema import Ticks, load_dataset, write_ticks
from lob.io import atomic_write, write_json
from lob.realism.stats import ACF_LAGS, acf, pearson_kurtosis, total_variation
from lob.tokenizer import EVENT_CLASSES, TickInput, Tokenizer
from lob.training.labels import LabelSpec
from lob.training.run import load_run
from lob.training.segments import segments
from lob.training.split import split_from_boundaries


# ------------------------------------------------------------------------------------------- book rebuild

def bucket_value(lo: float, hi: float) -> float:
    """A representative value of bucket (lo, hi]: midpoint; 1.5 lo for the open top bucket (lo > 0)."""
    if math.isinf(hi):
        return 1.5 * lo if lo > 0 else lo + 1.0
    if math.isinf(lo):
        return hi
    return 0.5 * (lo + hi)


class RolloutBook:
    """A rollout's L-level book on a price grid of ``tick`` (the smallest price gap of the start book); sizes in
    the data's units (not rounded to lots: a bucket of a fraction of the queue must stay reachable)."""

    def __init__(self, tick: TickInput):
        self.bid_px, self.bid_sz = [float(x) for x in tick.bid_px], [float(x) for x in tick.bid_sz]
        self.ask_px, self.ask_sz = [float(x) for x in tick.ask_px], [float(x) for x in tick.ask_sz]
        self.ts_ns = int(tick.ts_ns)
        prices = sorted({p for p in self.bid_px + self.ask_px if p > 0})
        gaps = [b - a for a, b in zip(prices, prices[1:]) if b - a > 1e-12]
        self.tick = min(gaps) if gaps else 1e-4 * prices[0]
        self.small = min(q for q in self.bid_sz + self.ask_sz if q > 0)  # size of a level that appears
        self.levels = len(self.bid_px)

    @property
    def mid(self) -> float:
        return 0.5 * (self.bid_px[0] + self.ask_px[0])

    def _grid(self, x: float) -> float:
        return round(x / self.tick) * self.tick

    def _spread_ticks(self, lo: float, hi: float) -> int:
        """Spread in ticks within bucket (lo, hi] bps: the current one if it is, else the tick count nearest
        the bucket's value among those inside it (the nearest to the bucket if none is)."""
        bps = 1e4 * self.tick / self.mid  # one tick
        now = round((self.ask_px[0] - self.bid_px[0]) / self.tick)
        if lo < now * bps <= hi:
            return now
        target = bucket_value(lo, hi) / bps
        inside = [n for n in range(1, max(2, math.ceil(target) + 2)) if lo < n * bps <= hi]
        return min(inside, key=lambda n: abs(n - target)) if inside else max(1, round(target))

    def _relevel(self, bid1: float, ask1: float) -> None:
        """Best prices bid1 < ask1; levels every tick behind them, sizes kept where the price survives."""
        def side(best, step, old_px, old_sz):
            n = old_sz.count(0.0)
            n_levels = self.levels - n if n else self.levels  # keep the depth the book had
            old = {round(p / self.tick): q for p, q in zip(old_px, old_sz) if q > 0}
            px = [best + step * k * self.tick for k in range(n_levels)]
            sz = [old.get(round(p / self.tick), self.small) for p in px]
            pad = self.levels - n_levels
            return px + [0.0] * pad, sz + [0.0] * pad
        self.bid_px, self.bid_sz = side(bid1, -1, self.bid_px, self.bid_sz)
        self.ask_px, self.ask_sz = side(ask1, +1, self.ask_px, self.ask_sz)

    def apply(self, desc: dict) -> TickInput:
        """Rebuild the tick a decoded token describes (``Tokenizer.describe``) and move the book to it."""
        q_ref = 0.5 * (self.bid_sz[0] + self.ask_sz[0])
        before = (self.bid_px[0], self.ask_px[0])
        spread_ticks = self._spread_ticks(*desc["spread_bps"])
        if desc["mid_move"] != 0:
            mid_bps = bucket_value(*desc["mid_bps"]) if desc["mid_move"] > 0 else -bucket_value(
                -desc["mid_bps"][1], -desc["mid_bps"][0])
            up = mid_bps > 0
            # the side the event acts on moves the mid: a bid add or an ask cancel/trade moves it up, ...
            side = {("add", "bid"): up, ("add", "ask"): not up, ("cancel", "ask"): up, ("trade", "ask"): up,
                    ("cancel", "bid"): not up, ("trade", "bid"): not up}.get((desc["kind"], desc["side"]), False)
            if side:  # one side moves n ticks (the mid n/2); the other only if the book would cross
                n = max(1, round(2 * abs(self.mid * math.expm1(mid_bps / 1e4)) / self.tick))
                shift = n * self.tick if up else -n * self.tick
                bid1, ask1 = self.bid_px[0], self.ask_px[0]
                if desc["side"] == "bid":
                    bid1 += shift
                    ask1 = max(ask1, bid1 + self.tick)
                else:
                    ask1 += shift
                    bid1 = min(bid1, ask1 - self.tick)
                self._relevel(bid1, ask1)
            else:  # both sides move to the bucket's mid and spread
                mid = self.mid * math.exp(mid_bps / 1e4)
                bid1 = self._grid(mid - 0.5 * spread_ticks * self.tick)
                if abs(bid1 + 0.5 * spread_ticks * self.tick - self.mid) < 0.25 * self.tick:  # rounded back: 1 tick
                    bid1 += math.copysign(self.tick, mid_bps)
                self._relevel(bid1, bid1 + spread_ticks * self.tick)
        else:  # the mid stays: the spread can only widen or narrow by a tick on each side
            now = round((self.ask_px[0] - self.bid_px[0]) / self.tick)
            k = round((spread_ticks - now) / 2) or (0 if spread_ticks == now else (1 if spread_ticks > now else -1))
            if k and now + 2 * k >= 1:
                self._relevel(self.bid_px[0] - k * self.tick, self.ask_px[0] + k * self.tick)
        size = bucket_value(*desc["size"]) * q_ref
        trade_px, trade_sz, trade_side = 0.0, 0.0, 0
        kind, on_bid = desc["kind"], desc["side"] == "bid"
        if kind in ("add", "cancel", "trade"):
            px, sz = (self.bid_px, self.bid_sz) if on_bid else (self.ask_px, self.ask_sz)
            improved = (px[0] > before[0]) if on_bid else (px[0] < before[1])  # a new best level on this side
            worsened = (px[0] < before[0]) if on_bid else (px[0] > before[1])  # its old best level emptied
            if kind == "add":
                sz[0] = size if improved else sz[0] + size
            elif not worsened:  # a cancel or trade that emptied the queue would have moved the mid: take <= 90%
                size = min(size, 0.9 * sz[0])
                sz[0] -= size
            if kind == "trade":  # a trade on the bid is seller-initiated
                trade_px = before[0] if on_bid else before[1]
                trade_sz, trade_side = size, -1 if on_bid else 1
        self.ts_ns += max(0, round(bucket_value(*desc["dt_us"]) * 1e3))
        arr = lambda xs: np.asarray(xs, np.float64)  # noqa: E731
        return TickInput(self.ts_ns, arr(self.bid_px), arr(self.bid_sz), arr(self.ask_px), arr(self.ask_sz),
                         float(trade_px), float(trade_sz), int(trade_side))


def as_ticks(ticks: list[TickInput], symbol: str, meta: dict) -> Ticks:
    """A rollout's rebuilt ticks as a canonical table (N rows)."""
    col = lambda i, dtype=np.float64: np.array([t[i] for t in ticks], dtype)  # noqa: E731
    return Ticks(col(0, np.int64), col(1), col(2), col(3), col(4), col(5), col(6), col(7, np.int8), symbol, meta)


# ------------------------------------------------------------------------------------------------ sampling

def sample(logits: torch.Tensor, top_k: int, temperature: float, generator: torch.Generator) -> torch.Tensor:
    """logits (B, V) -> token ids (B,) drawn from the top-k of softmax(logits / temperature)."""
    values, ids = (logits / temperature).topk(min(top_k, logits.shape[-1]), dim=-1)  # (B, k)
    pick = torch.multinomial(values.softmax(-1), 1, generator=generator)  # (B, 1)
    return ids.gather(-1, pick)[:, 0]


@torch.no_grad()
def rollout(model, tokenizer: Tokenizer, prompt_tokens: np.ndarray, prompt_features: np.ndarray,
            last_tick: TickInput, tok_state, steps: int, rollouts: int, top_k: int, temperature: float,
            seed: int) -> dict[str, np.ndarray]:
    """Sample ``rollouts`` x ``steps`` tokens after the prompt. Returns arrays (R, S): token, re-encoded token,
    mid, ts_ns; and "ticks": each rollout's rebuilt ticks (R lists of S ``TickInput``)."""
    g = torch.Generator().manual_seed(seed)
    *_, (_, next_logits, _, state) = model.forward_chunked(prompt_tokens[None], prompt_features[None])  # last chunk
    logits = next_logits[:, -1].expand(rollouts, -1)
    state = [s.expand(rollouts, *s.shape[1:]).contiguous() for s in state]
    books = [RolloutBook(last_tick) for _ in range(rollouts)]
    tok_states = [tok_state] * rollouts
    out = {k: np.zeros((rollouts, steps), np.int64) for k in ("token", "reencoded", "ts_ns")}
    out["mid"] = np.zeros((rollouts, steps), np.float64)
    out["ticks"] = [[] for _ in range(rollouts)]
    for t in range(steps):
        tokens = sample(logits, top_k, temperature, g)  # (R,)
        features = np.empty((rollouts, tokenizer.n_features), np.float32)
        for r, token in enumerate(tokens.tolist()):
            tick = books[r].apply(tokenizer.describe(token))
            out["ticks"][r].append(tick)
            out["reencoded"][r, t], features[r], tok_states[r] = tokenizer.step(tick, tok_states[r])
            out["token"][r, t], out["mid"][r, t], out["ts_ns"][r, t] = token, books[r].mid, tick.ts_ns
        logits, _, *state = model.step(tokens, torch.from_numpy(features), *state)
    return out


# ------------------------------------------------------------------------------------------------- facts

def digits(tokenizer: Tokenizer, tokens: np.ndarray) -> dict[str, np.ndarray]:
    """Decoded fields of each token: cls (event class index), mid_move, spread_bucket, size_bucket, dt_bucket."""
    table = [tokenizer.describe(t) for t in range(tokenizer.vocab_size)]
    cls = {c: i for i, c in enumerate(EVENT_CLASSES)}
    lut = {"cls": np.array([cls[(d["kind"], d["side"])] for d in table]),
           **{k: np.array([d[k] for d in table]) for k in ("mid_move", "spread_bucket", "size_bucket", "dt_bucket")}}
    return {k: v[tokens] for k, v in lut.items()}


def histogram(values: np.ndarray, support: np.ndarray) -> np.ndarray:
    """Frequencies of ``values`` over ``support`` (sums to 1)."""
    counts = np.array([(values == s).sum() for s in support], np.float64)
    return counts / max(counts.sum(), 1.0)


def block_returns(mid: np.ndarray, k: int) -> np.ndarray:
    """Log-returns (bps) over consecutive non-overlapping blocks of k events of a mid path (N,) -> (N // k - 1,)."""
    m = mid[::k]
    return 1e4 * np.diff(np.log(m))


def _or_none(x: float) -> float | None:
    return None if math.isnan(x) else x


def fmt_value(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.2f}"


def _mean_over_rows(rows: list[list[float]]) -> list[float | None]:
    """Mean over rows ignoring nan; None (JSON null) where every row is nan."""
    a = np.array(rows)
    ok = ~np.isnan(a)
    n = ok.sum(0)
    return [float(np.where(ok[:, j], a[:, j], 0).sum() / n[j]) if n[j] else None for j in range(a.shape[1])]


def stylized_facts(tokenizer: Tokenizer, tokens: np.ndarray, mids: np.ndarray, return_ticks: int) -> dict:
    """Facts of paths tokens, mids (R, S) (R rollouts, or 1 for the real continuation), pooled over rows."""
    d = digits(tokenizer, tokens.reshape(-1))
    returns = [block_returns(m, return_ticks) for m in mids]
    pooled = np.concatenate(returns)
    acfs = _mean_over_rows([acf(r) for r in returns])
    abs_acfs = _mean_over_rows([acf(np.abs(r)) for r in returns])
    return {"cls": d["cls"], "mid_move": d["mid_move"], "spread_bucket": d["spread_bucket"], "dt_bucket": d["dt_bucket"],
            "pearson_kurtosis": _or_none(pearson_kurtosis(pooled)), "acf_returns": acfs,
            "acf_abs_returns": abs_acfs, "n_returns": int(pooled.size)}


def generated_vs_real(tokenizer: Tokenizer, gen: dict, real: dict) -> dict:
    """Distributions, TV distances and return statistics of generated vs real facts."""
    n_mag = (tokenizer.describe(0)["mid_move"] * -1)  # token 0 has the largest down move
    supports = {"event_kind": ("cls", np.arange(len(EVENT_CLASSES))),
                "mid_move": ("mid_move", np.arange(-n_mag, n_mag + 1)),
                "spread": ("spread_bucket", np.arange(int(max(gen["spread_bucket"].max(), real["spread_bucket"].max())) + 1)),
                "inter_arrival": ("dt_bucket", np.arange(int(max(gen["dt_bucket"].max(), real["dt_bucket"].max())) + 1))}
    out = {"tv_distance": {}, "distributions": {}}
    for name, (key, support) in supports.items():
        p, q = histogram(gen[key], support), histogram(real[key], support)
        out["tv_distance"][name] = total_variation(p, q)
        out["distributions"][name] = {"support": support.tolist(), "generated": p.tolist(), "real": q.tolist()}
    out["distributions"]["event_kind"]["labels"] = [f"{k}/{s}" if s else k for k, s in EVENT_CLASSES]
    for key in ("pearson_kurtosis", "acf_returns", "acf_abs_returns", "n_returns"):
        out[key] = {"generated": gen[key], "real": real[key]}
    return out


@torch.no_grad()
def continuation_likelihood(model, tokens: np.ndarray, features: np.ndarray, prompt: int) -> float:
    """Mean log-probability (nats) the model gives each real token after the prompt (teacher forced)."""
    next_logits = torch.cat([c[1][0] for c in model.forward_chunked(tokens[None], features[None])])  # (N, V)
    target = torch.as_tensor(tokens[prompt:, None], dtype=torch.int64)  # (N - prompt, 1)
    lp = next_logits[prompt - 1:-1].log_softmax(-1).gather(-1, target)[:, 0]
    return float(lp.mean())


# ---------------------------------------------------------------------------------------------- command

def generate(run: Path, data: Path, out: Path, prompt_ticks: int = 512, steps: int = 2000, rollouts: int = 16,
             top_k: int = 16, temperature: float = 1.0, seed: int = 0, symbol: str | None = None,
             return_ticks: int = 10) -> dict:
    """Write OUT/rollouts.parquet, OUT/facts.json, OUT/facts.png; returns the facts."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    for name, value in (("prompt_ticks", prompt_ticks), ("steps", steps), ("rollouts", rollouts), ("top_k", top_k)):
        if value < 1:
            raise ValueError(f"{name} must be >= 1, got {value}")
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if steps < 2 * return_ticks:
        raise ValueError(f"steps={steps} gives no returns over {return_ticks}-tick blocks")
    from lob.evaluation.evaluate import check_data

    model, tokenizer, manifest = load_run(run)
    check_data(run, data, manifest)
    recorded = manifest["split"]["symbols"]
    symbol = symbol or sorted(recorded)[0]
    if symbol not in recorded:
        raise ValueError(f"symbol {symbol!r} is not in {run}'s split (it has {sorted(recorded)})")
    dataset = load_dataset(data, [symbol])
    split = {symbol: split_from_boundaries(dataset[symbol], recorded[symbol])}
    spec = LabelSpec.of_training(json.loads((Path(run) / "config.json").read_text())["training"])
    seg = segments(dataset, split, "test", tokenizer, spec)[0]  # labelled as the run was trained
    need = prompt_ticks + steps
    if len(seg.tokens) < need:
        raise ValueError(f"{symbol}'s test segment has {len(seg.tokens)} ticks; prompt {prompt_ticks} + steps {steps} "
                         f"= {need} needed")
    _, _, tok_state = tokenizer.transform(seg.ticks.slice(0, prompt_ticks))
    last = TickInput.of(seg.ticks, prompt_ticks - 1)
    gen = rollout(model, tokenizer, seg.tokens[:prompt_ticks], seg.features[:prompt_ticks], last, tok_state, steps,
                  rollouts, top_k, temperature, seed)
    mids_real = 0.5 * (seg.ticks.bid_px[:, 0] + seg.ticks.ask_px[:, 0])
    real_tokens, real_mids = seg.tokens[prompt_ticks:need][None], mids_real[prompt_ticks:need][None]
    prompt_mid = mids_real[prompt_ticks - 1]
    with_start = lambda m: np.concatenate([np.full((m.shape[0], 1), prompt_mid), m], axis=1)  # noqa: E731
    facts = generated_vs_real(tokenizer, stylized_facts(tokenizer, gen["token"], with_start(gen["mid"]), return_ticks),
                    stylized_facts(tokenizer, real_tokens, with_start(real_mids), return_ticks))
    loglik = continuation_likelihood(model, seg.tokens[:need], seg.features[:need], prompt_ticks)
    facts.update({"symbol": symbol, "prompt_ticks": prompt_ticks, "steps": steps, "rollouts": rollouts, "top_k": top_k,
                  "temperature": temperature, "seed": seed, "return_ticks": return_ticks,
                  "token_roundtrip": float((gen["reencoded"] == gen["token"]).mean()),
                  "real_continuation": {"mean_loglik_nats": loglik, "perplexity": math.exp(-loglik)}})

    d = digits(tokenizer, gen["token"].reshape(-1))
    kinds = [EVENT_CLASSES[c] for c in d["cls"]]
    table = pa.table({
        "rollout": pa.array(np.repeat(np.arange(rollouts), steps), pa.int32()),
        "step": pa.array(np.tile(np.arange(steps), rollouts), pa.int32()),
        "token": pa.array(gen["token"].reshape(-1), pa.int64()),
        "kind": pa.array([k for k, _ in kinds], pa.string()), "side": pa.array([s for _, s in kinds], pa.string()),
        **{k: pa.array(d[k], pa.int32()) for k in ("mid_move", "spread_bucket", "size_bucket", "dt_bucket")},
        "mid": pa.array(gen["mid"].reshape(-1), pa.float64()), "ts_ns": pa.array(gen["ts_ns"].reshape(-1), pa.int64())})
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write(out / "rollouts.parquet", lambda tmp: pq.write_table(table, tmp))
    write_json(out / "facts.json", facts)
    meta = {"date": seg.ticks.meta.get("date", ""), "tick_size": seg.ticks.meta.get("tick_size"),
            "n_levels": seg.ticks.meta.get("n_levels", len(last.bid_px)), "source": f"lob generate ({Path(run).name})"}
    for r, ticks in enumerate(gen["ticks"]):
        write_ticks(out / "ticks" / symbol / f"{meta['date']}_r{r:02d}.parquet", as_ticks(ticks, symbol, meta | {"rollout": r}))
    _plot(facts, gen["mid"], real_mids[0], prompt_mid, out / "facts.png")
    return facts


def _plot(facts: dict, gen_mids: np.ndarray, real_mid: np.ndarray, prompt_mid: float, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 3, figsize=(15, 8))
    ax = axes[0, 0]
    for m in gen_mids:
        ax.plot(1e4 * np.log(m / prompt_mid), color="tab:blue", alpha=0.3, lw=0.8)
    ax.plot(1e4 * np.log(real_mid / prompt_mid), color="black", lw=1.5, label="real")
    ax.set_title("mid path (bps from the prompt's last mid)")
    ax.set_xlabel("generated tick")
    ax.legend()
    for ax, name in zip([axes[0, 1], axes[0, 2], axes[1, 0], axes[1, 1]], ("event_kind", "mid_move", "spread", "inter_arrival")):
        dist = facts["distributions"][name]
        x = np.arange(len(dist["support"]))
        ax.bar(x - 0.2, dist["generated"], 0.4, label="generated")
        ax.bar(x + 0.2, dist["real"], 0.4, label="real")
        ax.set_xticks(x, dist.get("labels", dist["support"]), rotation=45 if "labels" in dist else 0, fontsize=7)
        ax.set_title(f"{name} (TV {facts['tv_distance'][name]:.3f})")
        ax.legend(fontsize=7)
    ax = axes[1, 2]
    lags = np.arange(1, ACF_LAGS + 1)
    for key, style in (("acf_returns", "o-"), ("acf_abs_returns", "s--")):
        ax.plot(lags, np.array(facts[key]["generated"], float), style, color="tab:blue", label=f"{key} generated")
        ax.plot(lags, np.array(facts[key]["real"], float), style, color="black", label=f"{key} real")
    ax.axhline(0, color="grey", lw=0.5)
    kurt = facts["pearson_kurtosis"]
    ax.set_title(f"ACF of {facts['return_ticks']}-tick returns; Pearson kurtosis gen {fmt_value(kurt['generated'])} "
                 f"real {fmt_value(kurt['real'])}", fontsize=9)
    ax.legend(fontsize=6)
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=100, format="png"))
    plt.close(fig)

