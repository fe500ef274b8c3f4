"""Stylized facts of a canonical tick dataset and distances between two datasets (`lob realism`).

Facts (``facts(days, ...)``), computed per symbol-day file and pooled over the days:

==================  ==========================================================  ==================
fact                definition                                                  distance
==================  ==========================================================  ==================
spread              best ask - best bid, in ticks, buckets 1..5, 6-7, ... 50+   total variation
event_kind          ``lobtick.features`` event class of each event (add / cancel /  total variation
                    trade x bid / ask), the tokenizer's definition
mid_moving          share of events whose mid differs from the previous one     |a - b| (and rel.)
mid_move_size       |mid change| of moving events, ticks, buckets 0.5..4.5, 5+   total variation
log10_dt            log10 of inter-arrival seconds, floored at the resolution   W1, decades
burst_1ms, dt_cv    share of gaps < 1 ms; coefficient of variation of gaps      |a - b|, a / b
imbalance_l1        (bid_sz_1 - ask_sz_1) / (bid_sz_1 + ask_sz_1)               W1 (its own units)
trade_size          log10(trade size / median trade size)                       W1, decades
ret_{1s,10s,60s}    log mid returns on a clock grid (mid = last one before      W1 of returns
                    each boundary), each standardised by its own std;           standardised;
                    Pearson kurtosis (Gaussian 3), ACF of r and |r| lags 1-10   ratio, |a - b|
intraday            events in 20 equal bins of each day's first-to-last span    total variation
==================  ==========================================================  ==================

Both datasets are seen through the same window: books are truncated to the shallower dataset's level
count (a 10-level simulation is compared with a 1-level bookTicker at level 1), events that change
nothing visible in that window and print no trade are dropped (a feed of that depth would not show
them; counted in ``n_invisible``), and gaps are floored at the coarser time resolution of the two
(Binance stamps ms, LOBSTER ns): gaps below it are unresolved, not zero.

Total variation is 0.5 * sum |p - q| over the buckets (0 same, 1 disjoint); W1 is
``scipy.stats.wasserstein_distance`` on the samples, in the unit stated. Kurtosis, ACF and both distances
are `lob.realism.stats`' (its conventions: Pearson kurtosis, NaN where a sample cannot define a fact).

The report also holds LOB-Bench's score set through the same window (``report["lobbench"]``,
`lob.realism.lobbench`): each score's L1 and W1 beside the reference's real-vs-real floor, and their
mean / median / IQM over all 24 scores (the 3 conditional ones included, as LOB-Bench's summary does) and
over the 21 unconditional ones. ``DIR[:SYMBOL]@PART`` reads a chronological part of a dataset
(``select_part``: `lob train`'s split, e.g. ``real:GOOG@test`` the last 15% of its trading time).
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lobtick.features import EVENT_CLASSES, TokenizerState, run as run_events
from lob.data.schema import N_LEVELS, Ticks, dataset_files, read_ticks
from lob.io import atomic_write
from lob.realism.stats import ACF_LAGS, acf, pearson_kurtosis, total_variation, wasserstein

SPREAD_EDGES = np.array([1, 2, 3, 4, 5, 6, 8, 10, 15, 20, 30, 50], dtype=float)  # bucket j: [edge j, edge j+1)
SPREAD_BUCKETS = [f"{a:g}" if b == a + 1 else f"{a:g}-{b - 1:g}" for a, b in zip(SPREAD_EDGES, SPREAD_EDGES[1:])] + ["50+"]
MOVE_BUCKETS = [f"{k / 2:g}" for k in range(1, 10)] + ["5+"]
KINDS = [f"{kind}_{side}" for kind, side in EVENT_CLASSES if side is not None]  # add/cancel/trade x bid/ask
HORIZONS_S = (1, 10, 60)
INTRADAY_BINS = 20


# ---------------------------------------------------------------------------------------------- loading

PARTS = ("train", "val", "test", "heldout")  # `lob train`'s chronological split; heldout = val + test


def parse_spec(spec: str) -> tuple[Path, str | None, str | None]:
    """``DIR[:SYMBOL][@PART]`` -> (folder, symbol or None, part or None)."""
    part = None
    head, sep, tail = spec.rpartition("@")
    if sep and tail in PARTS and not Path(spec).is_dir():
        spec, part = head, tail
    elif sep and "/" not in tail and not Path(spec).is_dir():
        raise ValueError(f"{spec}: unknown part {tail!r}; parts are {', '.join(PARTS)}")
    head, sep, tail = spec.rpartition(":")
    if sep and tail and "/" not in tail and not Path(spec).is_dir():
        return Path(head), tail, part
    return Path(spec), None, part


def select_part(days: list[Ticks], part: str) -> list[Ticks]:
    """The ``part`` of one symbol's days as `lob train` splits them (``lob.training.split.split_symbol``,
    default fractions of trading time: train the first 70%, val the next 15%, test the last 15%, heldout
    val + test), cut back into days; each day's meta gains ``part`` and ``day_span_s`` (its whole span)."""
    from lob.training.split import split_symbol

    sp = split_symbol(Ticks.concat(days))
    lo, hi = {"train": sp.train, "val": sp.val, "test": sp.test, "heldout": slice(sp.val_start, sp.n_ticks)}[part].indices(sp.n_ticks)[:2]
    out, start = [], 0
    for d in days:
        a, b = max(lo, start), min(hi, start + len(d))
        if b - a >= 2:
            t = d.slice(a - start, b - start)
            t.meta.update(part=part, day_span_s=(d.ts_ns[-1] - d.ts_ns[0]) * 1e-9)
            out.append(t)
        start += len(d)
    return out


def load_days(spec: str) -> tuple[str, list[Ticks]]:
    """The symbol-day files of ``DIR[:SYMBOL][@PART]`` (one symbol: the named one, or the only one; a PART
    of ``PARTS``: that chronological part of them, ``select_part``)."""
    root, symbol, part = parse_spec(spec)
    files = dataset_files(root)
    symbols = sorted({f.parent.name for f in files})
    if symbol is None:
        if len(symbols) != 1:
            raise ValueError(f"{root} holds symbols {symbols}: name one as {root}:SYMBOL")
        symbol = symbols[0]
    elif symbol not in symbols:
        raise KeyError(f"{root}: no data for symbol {symbol!r}; have {symbols}")
    days = [read_ticks(f) for f in files if f.parent.name == symbol]
    return symbol, select_part(days, part) if part else days


def n_levels(days: list[Ticks]) -> int:
    """Deepest level ever non-empty in ``days`` (1 for a bookTicker feed)."""
    used = [np.flatnonzero((t.bid_sz > 0).any(axis=0) | (t.ask_sz > 0).any(axis=0)) for t in days]
    return int(max(u.max() for u in used)) + 1


def time_resolution_ns(days: list[Ticks]) -> int:
    """Largest power of ten (ns, at most 1 s) dividing every timestamp: 10**6 for ms-stamped data."""
    res = 10**9
    for t in days:
        while res > 1 and np.any(t.ts_ns % res):
            res //= 10
    return res


def truncate(t: Ticks, levels: int) -> Ticks:
    """Keep the first ``levels`` levels, drop events that change nothing there and print no trade."""
    if levels < N_LEVELS:
        t = Ticks(t.ts_ns, *(np.where(np.arange(N_LEVELS) < levels, a, 0.0)
                             for a in (t.bid_px, t.bid_sz, t.ask_px, t.ask_sz)),
                  t.trade_px, t.trade_sz, t.trade_side, t.symbol, dict(t.meta))
    book = np.concatenate([t.bid_px, t.bid_sz, t.ask_px, t.ask_sz], axis=1)
    keep = np.r_[True, (book[1:] != book[:-1]).any(axis=1) | (t.trade_side[1:] != 0)]
    idx = np.flatnonzero(keep)
    return Ticks(t.ts_ns[idx], t.bid_px[idx], t.bid_sz[idx], t.ask_px[idx], t.ask_sz[idx], t.trade_px[idx],
                 t.trade_sz[idx], t.trade_side[idx], t.symbol, dict(t.meta))


# ---------------------------------------------------------------------------------------------- facts

def _buckets(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Bucket shares: bucket j holds [edges[j], edges[j+1]); the last one everything from edges[-1] up."""
    idx = np.clip(np.searchsorted(edges, values + 1e-9, side="right") - 1, 0, len(edges) - 1)
    counts = np.bincount(idx, minlength=len(edges)).astype(float)
    return counts / counts.sum() if counts.sum() else counts


def _clock_returns(t: Ticks, seconds: float) -> np.ndarray:
    """Log mid returns (bps) over consecutive ``seconds`` intervals from the day's first event on."""
    bounds = t.ts_ns[0] + np.arange(0, t.ts_ns[-1] - t.ts_ns[0] + 1, int(seconds * 1e9), dtype=np.int64)
    last = np.searchsorted(t.ts_ns, bounds, side="right") - 1
    return 1e4 * np.diff(np.log(t.mid()[last]))


@dataclass
class Facts:
    """Samples and summaries of one dataset (pooled over its days) seen through a level/resolution window."""

    symbol: str
    n_events: int
    n_days: int
    n_invisible: int
    span_s: float  # summed first-to-last span of the days
    spread: np.ndarray  # bucket shares, SPREAD_BUCKETS
    kinds: np.ndarray  # shares, KINDS
    mid_moving: float
    move_size: np.ndarray  # bucket shares, MOVE_BUCKETS
    log10_dt: np.ndarray  # (gaps,) decades
    burst_1ms: float
    dt_cv: float
    imbalance: np.ndarray  # (N,)
    trade_size: np.ndarray  # (trades,) log10(size / median)
    trade_share: float
    returns: dict  # seconds -> (n,) bps
    intraday: np.ndarray  # bin shares

    def summary(self) -> dict:
        """JSON-ready scalars and distributions."""
        ret = {}
        for s, r in self.returns.items():
            ret[f"{s}s"] = {"n": int(r.size), "std_bps": float(r.std()) if r.size > 1 else math.nan,
                            "pearson_kurtosis": pearson_kurtosis(r), "acf_r": acf(r), "acf_abs_r": acf(np.abs(r))}
        dt = self.log10_dt
        return {
            "symbol": self.symbol, "n_events": self.n_events, "n_days": self.n_days, "n_invisible": self.n_invisible,
            "span_s": self.span_s,
            "spread_ticks": dict(zip(SPREAD_BUCKETS, self.spread.tolist())),
            "event_kinds": dict(zip(KINDS, self.kinds.tolist())),
            "mid_moving_share": self.mid_moving, "trade_share": self.trade_share,
            "mid_move_ticks": dict(zip(MOVE_BUCKETS, self.move_size.tolist())),
            "median_dt_s": float(10 ** np.median(dt)) if dt.size else math.nan,
            "log10_dt_quantiles": {f"q{q}": float(np.quantile(dt, q / 100)) for q in (5, 25, 50, 75, 95)} if dt.size else {},
            "burst_share_under_1ms": self.burst_1ms, "dt_cv": self.dt_cv,
            "imbalance_l1_mean_abs": float(np.abs(self.imbalance).mean()),
            "returns": ret,
            "intraday": self.intraday.tolist(),
        }


def facts(symbol: str, days: list[Ticks], levels: int = N_LEVELS, resolution_ns: int = 1) -> Facts:
    """The stylized facts of one symbol's ``days`` through ``levels`` levels and gaps floored at ``resolution_ns``."""
    spread, kinds, moved, moves, log_dt, dts, imb, sizes, prof = ([] for _ in range(9))
    returns = {s: [] for s in HORIZONS_S}
    n_invisible, span = 0, 0.0
    for raw in days:
        t = truncate(raw, levels)
        n_invisible += len(raw) - len(t)
        if not raw.meta.get("tick_size"):
            raise ValueError(f"{symbol} {raw.meta.get('date', '')}: the file's metadata has no tick_size")
        tick = float(raw.meta["tick_size"])
        spread.append(np.round((t.ask_px[:, 0] - t.bid_px[:, 0]) / tick))
        events, _, _ = run_events(TokenizerState(), t, (0.1, 0.1, 0.1))
        kinds.append(np.array([e.cls for e in events[1:]], dtype=np.int64))
        dmid = np.abs(np.diff(t.mid())) / tick
        moved.append(dmid > 1e-9)
        moves.append(dmid[dmid > 1e-9])
        gaps = np.maximum(np.diff(t.ts_ns), resolution_ns) * 1e-9
        dts.append(gaps)
        log_dt.append(np.log10(gaps))
        qb, qa = t.bid_sz[:, 0], t.ask_sz[:, 0]
        imb.append((qb - qa) / (qb + qa))
        sizes.append(t.trade_sz[t.trade_side != 0])
        for s in HORIZONS_S:
            returns[s].append(_clock_returns(t, s))
        width = max(t.ts_ns[-1] - t.ts_ns[0], 1)
        prof.append(np.bincount(np.minimum((t.ts_ns - t.ts_ns[0]) * INTRADAY_BINS // width, INTRADAY_BINS - 1),
                                minlength=INTRADAY_BINS))
        span += (t.ts_ns[-1] - t.ts_ns[0]) * 1e-9
    cat = np.concatenate
    kind_idx = cat(kinds)
    kind_counts = np.array([np.sum(kind_idx == EVENT_CLASSES.index(tuple(k.split("_")))) for k in KINDS], float)
    dt = cat(dts)
    size = cat(sizes)
    trade_size = np.log10(size / np.median(size)) if size.size else np.zeros(0)
    profile = np.sum(prof, axis=0).astype(float)
    n_events = int(sum(len(k) for k in kinds))
    return Facts(
        symbol=symbol, n_events=n_events, n_days=len(days), n_invisible=n_invisible, span_s=span,
        spread=_buckets(cat(spread), SPREAD_EDGES),
        kinds=kind_counts / max(kind_counts.sum(), 1.0),
        mid_moving=float(cat(moved).mean()), move_size=_buckets(cat(moves), np.arange(1, 11) / 2.0),
        log10_dt=cat(log_dt), burst_1ms=float(np.mean(dt < 1e-3)), dt_cv=float(dt.std() / dt.mean()),
        imbalance=cat(imb), trade_size=trade_size, trade_share=float(size.size / max(n_events, 1)),
        returns={s: cat(r) for s, r in returns.items()}, intraday=profile / profile.sum(),
    )


# ---------------------------------------------------------------------------------------------- distances

def _standardised(r: np.ndarray) -> np.ndarray:
    return (r - r.mean()) / r.std() if r.size > 1 and r.std() > 0 else np.zeros(0)


def _rel(a: float, b: float) -> float:
    """|a - b| / |b| (b is the reference)."""
    return abs(a - b) / abs(b) if b else (0.0 if a == b else math.inf)


def fact_distances(fa: Facts, fb: Facts) -> dict:
    """Distances between two datasets' facts, ``fb`` the reference: {name: {"a", "b", "distance", "measure"}}."""
    sa, sb = fa.summary(), fb.summary()
    rows = {
        "spread_ticks": (sa["spread_ticks"], sb["spread_ticks"], total_variation(fa.spread, fb.spread), "TV"),
        "event_kinds": (sa["event_kinds"], sb["event_kinds"], total_variation(fa.kinds, fb.kinds), "TV"),
        "mid_moving_share": (fa.mid_moving, fb.mid_moving, _rel(fa.mid_moving, fb.mid_moving), "relative"),
        "trade_share": (fa.trade_share, fb.trade_share, _rel(fa.trade_share, fb.trade_share), "relative"),
        "mid_move_ticks": (sa["mid_move_ticks"], sb["mid_move_ticks"], total_variation(fa.move_size, fb.move_size), "TV"),
        "log10_dt": (sa["median_dt_s"], sb["median_dt_s"], wasserstein(fa.log10_dt, fb.log10_dt), "W1 decades"),
        "burst_share_under_1ms": (fa.burst_1ms, fb.burst_1ms, abs(fa.burst_1ms - fb.burst_1ms), "abs"),
        "dt_cv": (fa.dt_cv, fb.dt_cv, fa.dt_cv / fb.dt_cv if fb.dt_cv else math.nan, "ratio"),
        "imbalance_l1": (sa["imbalance_l1_mean_abs"], sb["imbalance_l1_mean_abs"],
                         wasserstein(fa.imbalance, fb.imbalance), "W1"),
        "trade_size_rel_median": (float(np.std(fa.trade_size)) if fa.trade_size.size else math.nan,
                                  float(np.std(fb.trade_size)) if fb.trade_size.size else math.nan,
                                  wasserstein(fa.trade_size, fb.trade_size), "W1 decades"),
        "intraday": (sa["intraday"], sb["intraday"], total_variation(fa.intraday, fb.intraday), "TV"),
    }
    for s in HORIZONS_S:
        ra, rb = sa["returns"][f"{s}s"], sb["returns"][f"{s}s"]
        rows[f"ret_{s}s"] = (ra["std_bps"], rb["std_bps"],
                             wasserstein(_standardised(fa.returns[s]), _standardised(fb.returns[s])), "W1 std units")
        rows[f"ret_{s}s_pearson_kurtosis"] = (ra["pearson_kurtosis"], rb["pearson_kurtosis"],
                                              ra["pearson_kurtosis"] / rb["pearson_kurtosis"], "ratio")
        rows[f"ret_{s}s_acf1_abs_r"] = (ra["acf_abs_r"][0], rb["acf_abs_r"][0],
                                        abs(ra["acf_abs_r"][0] - rb["acf_abs_r"][0]), "abs")
        for key in ("acf_r", "acf_abs_r"):
            diff = np.abs(np.array(ra[key]) - np.array(rb[key]))
            rows[f"ret_{s}s_{key}_max_lag10"] = (ra[key], rb[key], float(np.nanmax(diff)) if np.isfinite(diff).any()
                                                 else math.nan, "max abs")
    return {k: {"a": a, "b": b, "distance": d, "measure": m} for k, (a, b, d, m) in rows.items()}


# the goal of issue 12 for a simulation calibrated to a real day: (fact, test of (a, b, distance), stated rule)
GOAL = [
    ("spread_ticks", lambda a, b, d: d <= 0.2, "TV <= 0.2"),
    ("log10_dt", lambda a, b, d: d <= 0.3, "W1 <= 0.3 decades"),
    ("mid_moving_share", lambda a, b, d: d <= 0.2, "within 20% relative"),
    ("trade_share", lambda a, b, d: d <= 0.2, "within 20% relative"),
    ("ret_10s_pearson_kurtosis", lambda a, b, d: 0.5 <= d <= 2.0, "within a factor 2"),
    ("ret_10s_acf1_abs_r", lambda a, b, d: np.sign(a) == np.sign(b) and d <= 0.1, "same sign, within 0.1"),
]


def goal_check(distances: dict, kinds_a: np.ndarray | None = None, kinds_b: np.ndarray | None = None) -> list[dict]:
    """Each goal criterion: {"fact", "rule", "a", "b", "distance", "met"} (a NaN is never met).

    With the kind shares given, the add, cancel and trade shares (both sides pooled: which side leads on
    a given day is that day's order-flow direction, not the instrument) each add a "within 20%
    relative" row.
    """
    def finite(v) -> bool:
        return isinstance(v, dict) or (isinstance(v, float | int) and math.isfinite(v))

    out = []
    for name, ok, rule in GOAL:
        r = distances[name]
        vals = (r["a"], r["b"], r["distance"])
        out.append({"fact": name, "rule": rule, "a": r["a"], "b": r["b"], "distance": r["distance"],
                    "met": bool(all(map(finite, vals)) and ok(*vals))})
    if kinds_a is not None:
        for kind in ("add", "cancel", "trade"):
            cols = [i for i, k in enumerate(KINDS) if k.startswith(kind + "_")]
            pa, pb = float(np.sum(kinds_a[cols])), float(np.sum(kinds_b[cols]))
            d = _rel(pa, pb)
            out.append({"fact": f"share {kind}", "rule": "within 20% relative", "a": pa, "b": pb,
                        "distance": d, "met": bool(d <= 0.2)})
    return out


# ---------------------------------------------------------------------------------------------- report

def realism_report(spec_a: str, spec_b: str, out: Path | None = None) -> dict:
    """Facts of ``DIR_A[:SYMBOL]`` and ``DIR_B[:SYMBOL]`` (the reference) and their distances.

    Writes ``out`` (strict JSON: an undefined fact is null) and ``out`` with suffix .png when given;
    returns the report dict (NaN where a fact is undefined, e.g. returns of a mid that never moves).
    """
    from lob.realism import lobbench  # it builds on this module's window (truncate)

    (sym_a, days_a), (sym_b, days_b) = load_days(spec_a), load_days(spec_b)
    levels = min(n_levels(days_a), n_levels(days_b))
    res = max(time_resolution_ns(days_a), time_resolution_ns(days_b), 1000)
    fa, fb = facts(sym_a, days_a, levels, res), facts(sym_b, days_b, levels, res)
    distances = fact_distances(fa, fb)
    report = {"a": {"spec": spec_a, **fa.summary()}, "b": {"spec": spec_b, **fb.summary()},
              "window": {"levels": levels, "time_resolution_ns": res}, "distances": distances,
              "goal": goal_check(distances, fa.kinds, fb.kinds),
              "lobbench": lobbench.compare(lobbench.sequences(days_a, levels), lobbench.sequences(days_b, levels))}
    if out is not None:
        out = Path(out)
        text = json.dumps(_strict(report), indent=1, allow_nan=False)  # undefined facts (NaN) as null
        atomic_write(out, lambda tmp: Path(tmp).write_text(text))
        plot(fa, fb, out.with_suffix(".png"), (spec_a, spec_b))
    return report


def _strict(o):
    """``o`` with numpy scalars as Python numbers and NaN / inf as None (strict JSON)."""
    if isinstance(o, dict):
        return {k: _strict(v) for k, v in o.items()}
    if isinstance(o, list | tuple):
        return [_strict(v) for v in o]
    if isinstance(o, np.generic):
        o = o.item()
    if isinstance(o, float) and not math.isfinite(o):
        return None
    return o


def _fmt(v) -> str:
    if isinstance(v, dict):
        top = sorted(v.items(), key=lambda kv: -kv[1])[:3]
        return " ".join(f"{k}:{p:.2f}" for k, p in top)
    if isinstance(v, list):
        return " ".join(f"{x:.2f}" for x in v[:3]) + (" …" if len(v) > 3 else "")
    if isinstance(v, float):
        return "n/a" if not math.isfinite(v) else (f"{v:.3g}" if abs(v) >= 1e-3 or v == 0 else f"{v:.2e}")
    return str(v)


def print_report(report: dict) -> None:
    """The distances (and the goal rows) as rich tables on the terminal."""
    from rich.console import Console
    from rich.table import Table

    from lob.realism.lobbench import SEQ_LEN

    a, b = report["a"], report["b"]
    w = report["window"]
    table = Table(title=f"A = {a['spec']} ({a['n_events']:,} events, {a['span_s']:,.0f} s)   "
                        f"B = {b['spec']} ({b['n_events']:,} events, {b['span_s']:,.0f} s)   "
                        f"window: {w['levels']} level(s), gaps >= {w['time_resolution_ns'] / 1e3:g} µs",
                  title_justify="left")
    for col in ("fact", "A", "B", "distance", "measure"):
        table.add_column(col, justify="right" if col == "distance" else "left")
    for name, r in report["distances"].items():
        table.add_row(name, _fmt(r["a"]), _fmt(r["b"]), _fmt(r["distance"]), r["measure"])
    console = Console()
    console.print(table)
    goal = Table(title="calibration goal (issue 12), B the reference", title_justify="left")
    for col in ("fact", "rule", "A", "B", "distance", "met"):
        goal.add_column(col)
    for g in report["goal"]:
        goal.add_row(g["fact"], g["rule"], _fmt(g["a"]), _fmt(g["b"]), _fmt(g["distance"]),
                     "[green]yes[/]" if g["met"] else "[red]no[/]")
    console.print(goal)
    lb = report["lobbench"]
    scores = Table(title=f"LOB-Bench scores (lob.realism.lobbench; {lb['sequences'][0]} vs {lb['sequences'][1]} "
                         f"sequences of {SEQ_LEN}), B the reference; floor: B's even vs odd sequences",
                   title_justify="left")
    for col in ("score", "L1", "L1 floor", "W1", "W1 floor"):
        scores.add_column(col, justify="left" if col == "score" else "right")
    rows = [(k, v) for k, v in lb["scores"].items()] + [
        (f"[bold]{k}[/] ({label})", {m: s[k] for m, s in lb[key].items()})
        for key, label in (("summary", "all 24, as LOB-Bench"), ("summary_unconditional", "21 unconditional"))
        for k in ("mean", "median", "iqm")]
    for name, v in rows:
        scores.add_row(name, *(_fmt(v[m]) for m in ("l1", "floor_l1", "w1", "floor_w1")))
    console.print(scores)


def plot(fa: Facts, fb: Facts, path: Path, labels: tuple[str, str]) -> None:
    """A 3x3 grid of the facts of both datasets, written atomically to ``path`` (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(3, 3, figsize=(14, 11))
    colors = ("tab:blue", "tab:orange")

    def bars(axis, cats, shares, title):
        x = np.arange(len(cats))
        for j, (s, c) in enumerate(zip(shares, colors)):
            axis.bar(x + (j - 0.5) * 0.4, s, 0.4, color=c, label=labels[j])
        axis.set_xticks(x, cats, rotation=45, fontsize=7)
        axis.set_title(title, fontsize=9)

    def hists(axis, samples, title, bins=50):
        finite = [s[np.isfinite(s)] for s in samples if s.size]
        if finite:
            lo, hi = min(s.min() for s in finite), max(s.max() for s in finite)
            for s, c, lab in zip(samples, colors, labels):
                if s.size:
                    axis.hist(s, bins=np.linspace(lo, hi + 1e-12, bins), density=True, alpha=0.5, color=c, label=lab)
        axis.set_title(title, fontsize=9)

    bars(ax[0, 0], SPREAD_BUCKETS, (fa.spread, fb.spread), "spread (ticks)")
    bars(ax[0, 1], KINDS, (fa.kinds, fb.kinds), "event kinds")
    bars(ax[0, 2], MOVE_BUCKETS, (fa.move_size, fb.move_size),
         f"|mid move| (ticks); moving share {fa.mid_moving:.2f} vs {fb.mid_moving:.2f}")
    hists(ax[1, 0], (fa.log10_dt, fb.log10_dt), "log10 inter-arrival (s)")
    hists(ax[1, 1], (fa.imbalance, fb.imbalance), "level-1 imbalance")
    hists(ax[1, 2], (fa.trade_size, fb.trade_size), "log10 trade size / median")
    hists(ax[2, 0], (_standardised(fa.returns[10]), _standardised(fb.returns[10])), "10 s returns (standardised)")
    for f, c, lab in zip((fa, fb), colors, labels):
        ax[2, 1].plot(range(1, ACF_LAGS + 1), acf(np.abs(f.returns[10])), "o-", color=c, label=lab)
    ax[2, 1].axhline(0, color="k", lw=0.5)
    ax[2, 1].set_title("ACF of |10 s return|", fontsize=9)
    bars(ax[2, 2], [str(i) for i in range(INTRADAY_BINS)], (fa.intraday, fb.intraday), "activity over the day's span")
    ax[0, 0].legend(fontsize=7)
    fig.tight_layout()

    def save(tmp):
        fig.savefig(tmp, format="png", dpi=80)

    atomic_write(Path(path), save)
    plt.close(fig)
