"""Fit a simulator instrument (``SymbolSpec``) to a real dataset (`lob calibrate`).

Method, in three steps (all on the calibrated symbol's days, books seen through the real data's level
count as in ``lob.realism.report``):

1. **Method of moments** for what the data shows directly: ``tick_size`` (the importer's), ``price``
   (first mid), ``level_gaps`` (the distribution of gaps between adjacent visible levels, in ticks, up to
   MAX_GAP: a wide-spread book quotes every few ticks; none for a one-level or one-tick book),
   ``lot_size`` (the largest power of ten that 99% of sizes are multiples of), ``limit_size`` and the
   percentiles ``limit_sizes`` of |best-queue change| of non-trade events at an unchanged best price,
   ``market_size`` and ``market_sizes`` of trade sizes, the session length (the days' mean first-to-last span, 6.5 h for
   full days) and whether its activity is U-shaped (spans of 3 h or more), events per day. A chronological
   part of the days (``DIR:SYMBOL@train``, ``lob.realism.report.select_part``) stands for its whole days:
   the session is the days' span, the events per day the part's rate over it.
2. **Simulated method of moments** for the order-flow rates: ``market_mult``, ``cancel_mult``,
   ``inside_rate`` and ``depth`` (log scale) minimise the squared standardised differences between
   simulated and real trade share, mid-moving share, spread quantiles (25/50/75 %, log ticks) and median
   best queue (log lots); Nelder-Mead with common random numbers (one seed for every evaluation). The
   share of adds among adds and cancels (the tokenizer's event classes) is reported, not fitted.
3. **Simulated moments of the clock**: the Hawkes clock (``hawkes_clock``: a fast and a slow exponential
   kernel) minimises the Wasserstein-1 distance of log10 inter-arrival times (gaps floored at the data's
   resolution, 1 µs at least) to the real ones, again with common random numbers.

The result is a params JSON (``lob.data.instruments``: its format and reader, ``load_params``, for
``lob simulate --params``; the instruments fitted to the LOBSTER samples are `lob simulate`'s default market).
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np

from lobtick.features import ADD_ASK, ADD_BID, CANCEL_ASK, CANCEL_BID, TokenizerState, run as run_events
from lob.realism.report import load_days, n_levels, time_resolution_ns, truncate
from lob.realism.stats import wasserstein
from lob.data.instruments import FORMAT
from lob.data.simulator import SESSION_S, SymbolSpec, hawkes_clock, session_fraction, simulate_symbol
from lob.data.schema import Ticks
from lob.io import atomic_write

SIM_EVENTS = 8000  # simulated events per evaluation inside the fit (whole days of the real day's count)
MAX_FIT_DAY = 20_000  # longer real days are fitted on simulated days of this many events
FLOW_ITERS = 60
CLOCK_ITERS = 120
MAX_GAP = 20  # level gaps of more ticks count as this many
SIZE_PERCENTILES = 100  # order sizes kept per instrument


# ---------------------------------------------------------------------------------------------- moments

def flow_moments(days: list[Ticks], levels: int, lot: float) -> dict[str, float]:
    """The order-flow moments the fit matches, pooled over ``days`` seen through ``levels`` levels."""
    trades = moving = events = adds = cancels = raw_events = 0
    spreads, queues = [], []
    for raw in days:
        t = truncate(raw, levels)
        seen = len(t) - 1
        raw_events += len(raw) - 1
        cls = np.array([e.cls for e in run_events(TokenizerState(), t, (0.1, 0.1, 0.1))[0]])
        adds += int(np.isin(cls, (ADD_BID, ADD_ASK)).sum())
        cancels += int(np.isin(cls, (CANCEL_BID, CANCEL_ASK)).sum())
        tick = float(raw.meta["tick_size"])
        events += seen
        trades += int(np.sum(t.trade_side[1:] != 0))
        moving += int(np.sum(np.diff(t.mid()) != 0))
        spreads.append(np.round((t.ask_px[:, 0] - t.bid_px[:, 0]) / tick))
        queues.append(np.r_[t.bid_sz[:, 0], t.ask_sz[:, 0]] / lot)
    sp = np.log(np.concatenate(spreads))
    q25, q50, q75 = np.quantile(sp, [0.25, 0.5, 0.75])
    return {"trade_share": trades / events, "mid_moving_share": moving / events,
            "add_share": adds / max(adds + cancels, 1), "log_spread_q25": float(q25),
            "log_spread_q50": float(q50), "log_spread_q75": float(q75),
            "log_median_queue": float(np.log(np.median(np.concatenate(queues)))),
            "visible_share": events / max(raw_events, 1)}


# spread of each moment under resampling, roughly: the standardisation of the SMM objective
# (add_share and visible_share are reported, not fitted: with equal add and cancel sizes the model's
# volume balance pins the first; the second is the share of events within the data's levels)
MOMENT_SCALE = {"trade_share": 0.02, "mid_moving_share": 0.03, "log_spread_q25": 0.1, "log_spread_q50": 0.1,
                "log_spread_q75": 0.1, "log_median_queue": 0.15}


def _log10_gaps(ts_ns: np.ndarray, resolution_ns: int) -> np.ndarray:
    return np.log10(np.maximum(np.diff(ts_ns), resolution_ns) * 1e-9)


# ---------------------------------------------------------------------------------------------- step 1

def size_unit(sizes: np.ndarray) -> float:
    """The largest power of ten (1e-8 .. 1e6) that 99% of ``sizes`` are whole multiples of: the lot."""
    sizes = sizes[sizes > 0]
    for e in range(6, -9, -1):
        q = sizes / 10.0**e
        if np.mean(np.abs(q - np.round(q)) < 1e-6 * np.maximum(q, 1)) >= 0.99 and np.median(q) >= 1:
            return 10.0**e
    return 1e-8


def percentiles(sizes: np.ndarray) -> tuple[int, ...]:
    """SIZE_PERCENTILES sizes (whole lots >= 1) at evenly spaced quantiles of ``sizes`` (lots): draws from them
    follow the empirical distribution, round lots' spikes included; () when there are no sizes."""
    if not sizes.size:
        return ()
    q = np.quantile(sizes, (np.arange(SIZE_PERCENTILES) + 0.5) / SIZE_PERCENTILES, method="inverted_cdf")
    return tuple(int(x) for x in np.maximum(np.round(q), 1))


def direct_spec(symbol: str, days: list[Ticks], levels: int) -> tuple[SymbolSpec, int]:
    """Step 1: the instrument's directly observed parameters (flow rates at their defaults, no clock)."""
    tick = float(days[0].meta["tick_size"])
    t = Ticks.concat([truncate(d, levels) for d in days])
    price = float(t.mid()[0])
    level_gaps: tuple[float, ...] = ()
    if levels > 1:  # gaps between adjacent visible levels, in ticks: the price lattice's gap distribution
        gaps = np.r_[(t.bid_px[:, :-1] - t.bid_px[:, 1:])[t.bid_px[:, 1:] > 0],
                     (t.ask_px[:, 1:] - t.ask_px[:, :-1])[t.ask_px[:, 1:] > 0]]
        counts = np.bincount(np.clip(np.round(gaps / tick).astype(np.int64), 1, MAX_GAP), minlength=MAX_GAP + 1)[1:]
        if counts[0] < 0.95 * counts.sum():  # not a one-tick book
            level_gaps = tuple(round(float(c), 5) for c in counts / counts.sum())
    same_b = np.r_[False, t.bid_px[1:, 0] == t.bid_px[:-1, 0]]
    same_a = np.r_[False, t.ask_px[1:, 0] == t.ask_px[:-1, 0]]
    no_trade = t.trade_side == 0
    changes = np.r_[np.abs(np.diff(t.bid_sz[:, 0]))[(same_b & no_trade)[1:]],
                    np.abs(np.diff(t.ask_sz[:, 0]))[(same_a & no_trade)[1:]]]
    changes = changes[changes > 0]
    trades = t.trade_sz[t.trade_side != 0]
    lot = size_unit(np.r_[t.bid_sz[:, 0], t.ask_sz[:, 0], trades, changes])
    limit_size = max(1.0, float(changes.mean()) / lot) if changes.size else 1.0
    market_size = max(1.0, float(trades.mean()) / lot) if trades.size else 1.0
    depth = max(1.0, float(np.median(np.r_[t.bid_sz[:, 0], t.ask_sz[:, 0]])) / lot)
    spans = [d.meta.get("day_span_s", (d.ts_ns[-1] - d.ts_ns[0]) * 1e-9) for d in days]  # a part: its whole day
    session = float(min(max(np.mean(spans), 1.0), 24 * 3600.0))
    if abs(session - SESSION_S) < 0.05 * SESSION_S:
        session = SESSION_S
    spread_ticks = np.round((t.ask_px[:, 0] - t.bid_px[:, 0]) / tick)
    inside = 0.5 if np.median(spread_ticks) > 1 else 0.1
    spec = SymbolSpec(symbol=symbol, price=round(round(price / tick) * tick, 10), tick_size=tick,
                      lot_size=lot, depth=depth, limit_size=limit_size, market_size=market_size, inside_rate=inside,
                      level_gaps=level_gaps, limit_sizes=percentiles(changes / lot), market_sizes=percentiles(trades / lot),
                      session_s=session, u_shaped=session >= 3 * 3600)
    per_day = [len(truncate(d, levels)) * span / max((d.ts_ns[-1] - d.ts_ns[0]) * 1e-9, 1e-9)
               for d, span in zip(days, spans)]  # a part's events at its rate over the whole day
    return spec, int(round(np.mean(per_day)))


# ---------------------------------------------------------------------------------------------- simulation

def _simulate(spec: SymbolSpec, n: int, seed: int, n_days: int) -> list[Ticks]:
    """``n_days`` simulated days of ``n`` events of ``spec``, as ``lob simulate`` makes them (no file written)."""
    return list(simulate_symbol(spec, ["2024-01-02"] * n_days, n, seed))


def _clock_gaps(branching, decay_s, n: int, session_s: float, u_shaped: bool, seed: int, resolution_ns: int,
                visible: float = 1.0) -> np.ndarray:
    """log10 gaps of simulated days of ``n`` events of the clock alone (at least SIM_EVENTS gaps in all),
    mapped onto the session as the simulator does; a random ``visible`` share of the events is kept
    (the rest are book changes too deep for the data's levels)."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(max(1, math.ceil(SIM_EVENTS / n))):
        times = hawkes_clock(rng, n + 1, branching, decay_s, n / session_s)
        keep = rng.random(n) < visible
        frac = times[:n][keep] / times[n]
        if u_shaped:
            frac = session_fraction(frac)
        out.append(_log10_gaps(np.round(frac * session_s * 1e9).astype(np.int64), resolution_ns))
    return np.concatenate(out)


FLOW_PARAMS = ("market_mult", "cancel_mult", "inside_rate", "depth")
START_INSIDE = (0.01, 0.03, 0.1, 0.3)  # the coarse grid fit_flow starts from
START_MARKET = (0.5, 1.5, 5.0)


def fit_flow(spec: SymbolSpec, target: dict[str, float], levels: int, n: int, seed: int,
             iters: int = FLOW_ITERS) -> tuple[SymbolSpec, dict[str, float]]:
    """Step 2: SMM over FLOW_PARAMS (log scale) from ``spec``; returns the fitted spec and its moments.

    Nelder-Mead starts from ``spec``; when it ends more than one scale per moment off, once more from the
    best point of a coarse grid (START_INSIDE x START_MARKET, the rest as in ``spec``), the better fit kept.
    Each evaluation simulates days of ``n`` events (the real day's count, at most MAX_FIT_DAY: a day
    starts from a fresh book) until SIM_EVENTS events are reached. Data without trades (a bookTicker
    alone) fixes ``market_mult`` at 0.
    """
    from scipy.optimize import minimize

    base = replace(spec, clock_branching=(), clock_decay_s=())  # the clock does not change the flow moments
    lot = spec.lot_size
    n = min(n, MAX_FIT_DAY)
    n_days = max(1, math.ceil(SIM_EVENTS / n))
    names = [k for k in target if math.isfinite(target[k])]
    no_trades = target["trade_share"] == 0
    free = [k for k in FLOW_PARAMS if not (no_trades and k == "market_mult")]

    def spec_of(x):
        vals = {k: float(v) for k, v in zip(free, np.exp(np.clip(x, -6, 6)))} | ({"market_mult": 0.0} if no_trades else {})
        vals["depth"] = max(vals["depth"], 0.5)
        return replace(base, **vals)

    def moments(x):
        return flow_moments(_simulate(spec_of(x), n, seed, n_days), levels, lot)

    def loss(x):
        m = moments(x)
        return sum(((m[k] - target[k]) / MOMENT_SCALE[k]) ** 2 for k in names if k in MOMENT_SCALE)

    def fit(x0):
        simplex = x0 + np.vstack([np.zeros(len(free)), 0.7 * np.eye(len(free))])
        return minimize(loss, x0, method="Nelder-Mead", options={"maxfev": iters, "initial_simplex": simplex})

    res = fit(np.log([getattr(spec, k) for k in free]))
    if res.fun > len(MOMENT_SCALE):  # off by more than one scale per moment: stalled on a plateau of the spread
        # quantiles (e.g. a spread pinned at the grid step); again from the best point of a coarse grid
        grid = [np.log([getattr(replace(spec, inside_rate=i, market_mult=m), k) for k in free])
                for i in START_INSIDE for m in (START_MARKET if not no_trades else (1.0,))]
        res = min(res, fit(min(grid, key=loss)), key=lambda r: r.fun)
    fitted = replace(spec_of(res.x), clock_branching=spec.clock_branching, clock_decay_s=spec.clock_decay_s)
    return fitted, moments(res.x)


def fit_clock(log10_dt: np.ndarray, n: int, session_s: float, u_shaped: bool, resolution_ns: int, seed: int,
              iters: int = CLOCK_ITERS, visible: float = 1.0) -> tuple[tuple[float, float], tuple[float, float], float]:
    """Step 3: two-kernel Hawkes clock of ``n`` events a day (a ``visible`` share of them seen) minimising W1
    of log10 gaps to ``log10_dt``; returns (branching, decay_s, W1 decades)."""
    from scipy.optimize import minimize

    mean_gap = session_s / n

    def params(x):
        total = 0.98 / (1.0 + math.exp(-x[0]))  # kernel mass < 0.98
        fast = 1.0 / (1.0 + math.exp(-x[1]))  # share of it in the fast kernel
        d_fast = mean_gap * math.exp(min(x[2], 0.0))  # the fast kernel is faster than the mean gap
        d_slow = mean_gap * math.exp(max(x[3], 0.0))  # the slow one slower
        return (total * fast, total * (1 - fast)), (d_fast, d_slow)

    def loss(x):
        b, d = params(x)
        return wasserstein(_clock_gaps(b, d, n, session_s, u_shaped, seed, resolution_ns, visible), log10_dt)

    best = None
    for start in ([1.5, 1.0, -4.0, 3.0], [0.5, 0.0, -2.0, 1.0], [3.0, 2.0, -7.0, 4.0]):
        res = minimize(loss, np.array(start), method="Nelder-Mead", options={"maxfev": iters // 3, "xatol": 1e-3})
        if best is None or res.fun < best.fun:
            best = res
    b, d = params(best.x)
    return b, d, float(best.fun)


# ---------------------------------------------------------------------------------------------- calibrate

def provenance(spec_arg: str, days: list[Ticks]) -> str:
    """What ``DIR[:SYMBOL][@PART]`` holds, without the local folder: the source files its importer
    recorded (else the folder's name), and the part."""
    from lob.realism.report import parse_spec

    root, _, part = parse_spec(spec_arg)
    files = sorted({f for d in days for f in d.meta.get("files", [])})
    what = f"{days[0].meta.get('source', 'dataset')} {' + '.join(files)}" if files else root.name
    if part:
        what += f", part {part!r} of lob.training.split (train: first 70% of trading time; test: last 15%)"
    return what


def calibrate(spec_arg: str, out: Path | None = None, seed: int = 0, flow_iters: int = FLOW_ITERS,
              clock_iters: int = CLOCK_ITERS) -> dict:
    """Fit an instrument to ``DIR[:SYMBOL]``; write the params JSON to ``out`` (atomically) when given."""
    symbol, days = load_days(spec_arg)
    levels = n_levels(days)
    resolution = max(time_resolution_ns(days), 1000)
    spec, events = direct_spec(symbol, days, levels)
    target = flow_moments(days, levels, spec.lot_size)
    spec, sim_moments = fit_flow(spec, target, levels, events, seed, flow_iters)
    # the simulator also makes book changes deeper than the data's levels: simulate that many more events
    visible = sim_moments["visible_share"]
    events = int(round(events / visible))
    real_dt = np.concatenate([_log10_gaps(truncate(d, levels).ts_ns, resolution) for d in days])
    branching, decay, w1 = fit_clock(real_dt, events, spec.session_s, spec.u_shaped, resolution, seed, clock_iters,
                                     visible)
    spec = replace(spec, clock_branching=tuple(round(b, 6) for b in branching),
                   clock_decay_s=tuple(float(f"{x:.6g}") for x in decay))
    params = {
        "format": FORMAT,
        "instrument": asdict(spec),
        "events_per_day": events,
        "fitted_to": {"data": provenance(spec_arg, days), "days": [d.meta.get("date") for d in days], "levels": levels,
                      "time_resolution_ns": resolution, "events": int(sum(len(d) for d in days))},
        "method": "method of moments (tick, price, level gaps, sizes, session) + simulated method of moments "
                  "(flow rates: Nelder-Mead on standardised moments; Hawkes clock: W1 of log10 gaps)",
        "moments": {k: [target[k], sim_moments[k]] for k in target} | {"clock_w1_log10_dt": w1},
    }
    if out is not None:
        text = json.dumps(params, indent=1)
        atomic_write(Path(out), lambda tmp: Path(tmp).write_text(text))
    return params
