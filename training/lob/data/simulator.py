"""Multi-symbol L2 market simulator: queue-reactive limit/cancel flow, Hawkes-excited market orders.

Each symbol-day is one event loop over ``events_per_day`` book events, written as the canonical tick
table (``lob.data.schema``): ``OUT/<SYMBOL>/<YYYY-MM-DD>.parquet``, one row per event, book after the event.

State (per symbol; prices in integer ticks, sizes in integer lots)
    b, a          best bid / best ask; a > b always (never crossed or locked)
    bq[k], aq[k]  queues on a dense grid of GRID = 16 ticks per side (bid price b-k, ask price a+k),
                  bq[0], aq[0] >= 1; deeper ticks may be empty. The 10 output levels are the first
                  non-empty grid ticks (a thin book rarely shows fewer than 10).
    r             hidden regime, 0 calm / 1 volatile; leaves state r with probability SWITCH[r] per event
    z             latent informed flow: OU in event time, stationary N(0, 1), correlation time Z_EVENTS
    eb, es        Hawkes excitation of market buys / sells, decaying at rate KAPPA in business time

Intensities in business time (D_k = D * DEPTH_PROFILE[k] typical queue, w_k = LEVEL_W[k]; the ask side
mirrors the bid side with z -> -z, so z > 0 is buying pressure)
    market buy          MU * MKT_MULT[r] * exp(BETA z) + eb
    limit bid at k      LAM * LIMIT_MULT[r] * w_k * (1+REACT) D_k / (D_k + REACT bq[k]) * exp(GAMMA z)
                        (queue-reactive: (1+REACT)x the arrivals on an empty tick as on a typical queue)
    cancel bid at k     LAM * CANCEL_MULT[r] * w_k * bq[k] / D_k * exp(-GAMMA z)   (grows with the queue)
    bid inside spread   inside_rate * (a - b - 1) * exp(GAMMA z)   (uniform improvement; only if spread > 1)
A market buy takes geometric(market_size) lots from the best ask, at most the whole queue, printing at the
ask; it raises eb by ALPHA_SELF * KAPPA * HAWKES_MULT[r] and es by ALPHA_CROSS * KAPPA * HAWKES_MULT[r]
(branching ratio 0.65 calm, 0.85 volatile). Limit and cancel sizes are geometric(limit_size) lots. When a
best queue empties the side shifts to its next non-empty tick (the mid moves, the spread widens) and
the vacated deep ticks refill with geometric(2D) lots. The volatile regime trades more, cancels more
and posts less, so queues thin and the mid moves more often. z tilts market, limit, cancel and
inside-spread flow, so order-flow imbalance over the last hundreds of events predicts the next moves;
the signal is spread over a long history (slow z, Hawkes memory, regimes), not held in one tick.

Clock. Each symbol-day has exactly ``events_per_day`` events. With ``clock_branching`` set (the
archetypes with ``clock="hawkes"``: ``ARCHETYPE_CLOCK``; calibrated instruments) their times come from a
self-exciting Hawkes process (``hawkes_clock``: a millisecond kernel and a slow one, branching ratio
0.9), so events cluster milliseconds apart between quiet gaps as in real order flow; the clock draws
its random numbers after the order flow, so the book path in event time is the one of the other clock.
Without it (``clock_branching=()``) events are spaced by Exp(1)/total-intensity in business time, so
busy (volatile, excited) periods are dense. Either way the day's clock is mapped onto the session
(09:30-16:00, or ``session_s``) through a U-shaped activity profile (``session_fraction``: more events per
minute near the open and the close; flat when ``u_shaped`` is False). ``ts_ns`` is UTC ns of
``date 14:30 UTC + elapsed`` (09:30 New York in winter; daylight saving is ignored).

Instruments (``symbol_specs``): the archetypes differ in price level, tick size, lot size, depth and spread: a
$20 stock, a $150 stock with thin queues and wider spreads, a $3000 future with $0.25 ticks, a $4 large-tick
stock whose spread is nearly always one tick, ... Output sizes are lots * lot_size. A calibrated instrument
(``lob.realism.calibrate``; `lob simulate`'s default market is made of them, ``lob.data.instruments``) also
scales the market-order and cancel rates, draws order sizes from a real day's (``limit_sizes``,
``market_sizes``) and quotes on a real day's spacing of levels (``level_gaps``: a random lattice of prices,
``price_lattice``; or every ``grid_ticks`` ticks). State (close, z, regime)
carries from one day to the next, with an overnight gap that mean-reverts slowly towards the first
open (``simulate_symbol``). Randomness: one ``numpy.random.Generator`` per symbol-day from
``SeedSequence([seed, symbol_index, day_index])``.
"""
from __future__ import annotations

import math
from bisect import bisect_right
from dataclasses import dataclass, replace
from datetime import date as Date
from datetime import datetime, timedelta, timezone
from itertools import accumulate
from pathlib import Path
from typing import Iterator

import numpy as np

from lob.data.schema import N_LEVELS, Ticks, day_path, write_ticks

GRID = 16  # ticks tracked per side; the 10 output levels are the first non-empty ones of this grid
SESSION_S = 6.5 * 3600  # 09:30-16:00
OPEN_UTC = timedelta(hours=14, minutes=30)
LEVEL_W = [2.5, 1.6, 1.2, 1.0, 0.9, 0.8, 0.7, 0.6, 0.55, 0.5, 0.45] + [0.4] * 5  # activity by distance from best
DEPTH_PROFILE = [1.0, 1.3, 1.6, 1.8] + [2.0] * 12  # typical queue by distance from best, in units of D

# order flow (business-time rates; only their ratios matter, the clock is rescaled to the session)
LAM = 0.05  # limit arrivals per level at w=1 and q=D
REACT = 3.0  # queue reactivity: limit arrivals on an empty queue are (1 + REACT)x those at q = D
MU = 0.03  # baseline market-order rate per side
KAPPA = 0.05  # Hawkes decay: memory of 20 business-time units, about 50 events
ALPHA_SELF, ALPHA_CROSS = 0.55, 0.1  # kernel mass per market order, self- and cross-excitation
BETA, GAMMA = 0.4, 0.2  # tilt of market / limit-and-cancel flow by the informed signal z
Z_EVENTS = 3000.0  # correlation time of z, in events
# regimes: 0 calm, 1 volatile
SWITCH = (1 / 4000, 1 / 1500)  # per-event probability of leaving the regime
MKT_MULT = (1.0, 2.2)
LIMIT_MULT = (1.0, 0.75)  # liquidity is withdrawn in the volatile regime: thinner queues
CANCEL_MULT = (1.0, 1.6)
HAWKES_MULT = (1.0, 1.3)


@dataclass(frozen=True)
class SymbolSpec:
    """One instrument. Sizes in lots; ``lot_size`` units (shares, contracts) per lot."""

    symbol: str
    price: float  # first open, price units
    tick_size: float  # price units
    lot_size: float
    depth: float  # D: typical queue at the best, lots
    limit_size: float  # mean limit/cancel order size, lots
    market_size: float  # mean market order size, lots
    inside_rate: float  # lam_in: inside-spread arrivals per empty tick of spread
    # calibrated instruments (``lob.realism.calibrate``) set these; the defaults are the archetypes' model
    grid_ticks: int = 1  # price step of the simulator's grid, in ticks (a wide-spread book quotes every few ticks)
    level_gaps: tuple[float, ...] = ()  # P(1, 2, ... ticks) between adjacent quotable prices (``price_lattice``);
    # () = every grid_ticks ticks
    limit_sizes: tuple[int, ...] = ()  # limit/cancel sizes (lots) drawn uniformly, e.g. a day's percentiles;
    # () = geometric(limit_size)
    market_sizes: tuple[int, ...] = ()  # market-order sizes (lots) likewise; () = geometric(market_size)
    market_mult: float = 1.0  # scales the market-order rate MU
    cancel_mult: float = 1.0  # scales the cancel rates
    clock_branching: tuple[float, ...] = ()  # Hawkes event clock: kernel masses (sum < 1); () = business-time clock
    clock_decay_s: tuple[float, ...] = ()  # and their decay times, seconds at the mean event rate
    session_s: float = SESSION_S  # length of the simulated session from 09:30 New York
    u_shaped: bool = True  # U-shaped intraday activity (False: flat)

    @property
    def step_ticks(self) -> float:
        """Mean ticks per step of the simulator's price grid."""
        if self.level_gaps:
            return float(np.dot(np.arange(1, len(self.level_gaps) + 1), self.level_gaps) / sum(self.level_gaps))
        return float(self.grid_ticks)


# the archetypes' bursty event clock (``clock="hawkes"``, ``hawkes_clock``): a millisecond kernel and a 30 s one
ARCHETYPE_CLOCK = dict(clock_branching=(0.7, 0.2), clock_decay_s=(0.005, 30.0))
CLOCKS = ("business", "hawkes")
INSTRUMENTS = ("calibrated", "archetypes")  # `lob simulate --instruments`: the fitted ones are its default
# price level, tick grid, depth and spread character of each archetype (symbol i uses i % 6)
_ARCHETYPES = [
    dict(price=20.0, tick_size=0.01, lot_size=100, depth=10, limit_size=1.6, market_size=2.0, inside_rate=0.25),
    dict(price=150.0, tick_size=0.01, lot_size=100, depth=2.5, limit_size=1.3, market_size=1.4, inside_rate=0.06),
    dict(price=3000.0, tick_size=0.25, lot_size=1, depth=40, limit_size=4.0, market_size=6.0, inside_rate=2.0),
    dict(price=4.0, tick_size=0.01, lot_size=100, depth=150, limit_size=8.0, market_size=10.0, inside_rate=3.0),
    dict(price=60.0, tick_size=0.01, lot_size=100, depth=5, limit_size=1.5, market_size=1.8, inside_rate=0.15),
    dict(price=600.0, tick_size=0.05, lot_size=10, depth=12, limit_size=2.5, market_size=3.0, inside_rate=0.6),
]


def symbol_specs(n_symbols: int, clock: str = "business", instruments: str = "archetypes") -> list[SymbolSpec]:
    """``n_symbols`` (1..26) instruments SIMA, SIMB, ...; the base instruments repeat at 1.7x the price each round.

    ``instruments``: "archetypes" (``_ARCHETYPES``, symbol i uses i % 6) or "calibrated" (the instruments
    fitted to real days, ``lob.data.instruments.fitted_specs``: `lob simulate`'s default market, each with its
    own fitted clock). ``clock`` (archetypes only): "business" (events spaced by the order-flow intensity) or
    "hawkes" (``ARCHETYPE_CLOCK``).
    """
    if not 1 <= n_symbols <= 26:
        raise ValueError(f"n_symbols must be in 1..26, got {n_symbols}")
    if clock not in CLOCKS:
        raise ValueError(f"clock must be one of {CLOCKS}, got {clock!r}")
    if instruments not in INSTRUMENTS:
        raise ValueError(f"instruments must be one of {INSTRUMENTS}, got {instruments!r}")
    if instruments == "calibrated":
        from lob.data.instruments import fitted_specs  # it reads SymbolSpec from here

        bases = fitted_specs()
    else:
        bases = [SymbolSpec(symbol="", **arch, **(ARCHETYPE_CLOCK if clock == "hawkes" else {})) for arch in _ARCHETYPES]
    specs = []
    for i in range(n_symbols):
        base = bases[i % len(bases)]
        step = base.tick_size * base.grid_ticks
        price = round(round(base.price * 1.7 ** (i // len(bases)) / step) * step, 8)
        specs.append(replace(base, symbol=f"SIM{chr(ord('A') + i)}", price=price))
    return specs


def trading_days(start_date: str, n_days: int) -> list[str]:
    """``n_days`` weekdays (YYYY-MM-DD) from ``start_date`` on (holidays are not skipped)."""
    try:
        day = Date.fromisoformat(start_date)
    except ValueError:
        raise ValueError(f"start_date {start_date!r} is not a YYYY-MM-DD date") from None
    days = []
    while len(days) < n_days:
        if day.weekday() < 5:
            days.append(day.isoformat())
        day += timedelta(days=1)
    return days


@dataclass
class _Carry:
    """What a symbol carries from one day's close to the next open."""

    mid_ticks: int
    open_ticks: int  # first open, the anchor of the overnight mean reversion
    z: float
    regime: int


def _season(u: np.ndarray) -> np.ndarray:
    """Relative activity at fraction ``u`` of the session: U-shaped, busiest at the open."""
    return 1.0 + 2.5 * np.exp(-u / 0.04) + 1.5 * np.exp(-(1.0 - u) / 0.06)


def session_fraction(business: np.ndarray) -> np.ndarray:
    """Map business times in [0, 1] to session fractions with activity ``_season``: (N,) -> (N,)."""
    grid = np.linspace(0.0, 1.0, 4097)
    s = _season(grid)
    cum = np.concatenate([[0.0], np.cumsum(0.5 * (s[1:] + s[:-1]) * np.diff(grid))])
    return np.interp(business, cum / cum[-1], grid)


def _simulate_day(spec: SymbolSpec, carry: _Carry, rng: np.random.Generator, n: int, day: str, seed: int) -> Ticks:
    """Run ``n`` events of one symbol-day from ``carry`` (updated in place to the close)."""
    D, W = spec.depth, GRID
    # level k: arrivals LAM w_k (1+R) D_k / (D_k + R q) = lam_w / (dr + q), cancels LAM w_k q / D_k; balance at q = D_k
    depth_k = [D * f for f in DEPTH_PROFILE]
    dr = [d / REACT for d in depth_k]
    lam_w = [LAM * w * (1 + REACT) * d for w, d in zip(LEVEL_W, dr)]
    th_w = [LAM * w / d for w, d in zip(LEVEL_W, depth_k)]
    phi = math.exp(-1.0 / Z_EVENTS)
    z_sd = math.sqrt(1.0 - phi * phi)

    # every random number of the day, drawn in bulk (scalar draws would dominate the loop)
    u_event = rng.random(n).tolist()
    u_level = rng.random(n).tolist()
    u_regime = rng.random(n).tolist()
    e_gap = rng.standard_exponential(n).tolist()
    z_noise = (z_sd * rng.standard_normal(n)).tolist()
    lim_size = _sizes(rng, spec.limit_sizes, spec.limit_size, n)
    mkt_size = _sizes(rng, spec.market_sizes, spec.market_size, n)
    refill = rng.geometric(1.0 / depth_k[-1], 2 * n + 2 * W).tolist()  # deep levels, opening book

    # overnight gap: noise plus slow reversion of the log price towards the first open
    gap = rng.normal(-0.1 * math.log(carry.mid_ticks / carry.open_ticks), 0.004)
    mid = max(round(carry.mid_ticks * math.exp(gap)), 4 * W)
    b, a = mid, mid + 1
    bq, aq = refill[:W], refill[W:2 * W]
    n_refill = 2 * W
    z, r = carry.z, carry.regime
    eb = es = 0.0

    rec_b = [0] * n  # best bid, ticks
    rec_a = [0] * n
    rec_bq: list[int] = []  # (n * W) grid queues, lots
    rec_aq: list[int] = []
    rec_gap = [0.0] * n  # business time since the previous event
    tr_side = [0] * n
    tr_px = [0] * n  # ticks
    tr_sz = [0] * n  # lots

    for i in range(n):
        if u_regime[i] < SWITCH[r]:
            r = 1 - r
        z = phi * z + z_noise[i]
        ez = math.exp(GAMMA * z)
        mkt = MU * spec.market_mult * MKT_MULT[r]
        bm = math.exp(BETA * z)
        cm = CANCEL_MULT[r] * spec.cancel_mult
        spread_in = spec.inside_rate * (a - b - 1)
        rates = [mkt * bm + eb, mkt / bm + es, spread_in * ez, spread_in / ez]
        lb, la = LIMIT_MULT[r] * ez, LIMIT_MULT[r] / ez
        rates += [lw * lb / (d + q) for lw, d, q in zip(lam_w, dr, bq)]
        rates += [lw * la / (d + q) for lw, d, q in zip(lam_w, dr, aq)]
        cb, ca = cm / ez, cm * ez
        rates += [t * cb * q for t, q in zip(th_w, bq)]
        rates += [t * ca * q for t, q in zip(th_w, aq)]
        cum = list(accumulate(rates))
        total = cum[-1]
        ev = bisect_right(cum, u_event[i] * total)

        dt = e_gap[i] / total
        rec_gap[i] = dt
        decay = math.exp(-KAPPA * dt)
        eb *= decay
        es *= decay

        if ev < 2:  # market order: trades at the opposite best, the level shifts if it empties
            jump = KAPPA * HAWKES_MULT[r]
            if ev == 0:
                eb += ALPHA_SELF * jump
                es += ALPHA_CROSS * jump
                fill = min(mkt_size[i], aq[0])
                tr_side[i], tr_px[i], tr_sz[i] = 1, a, fill
                aq[0] -= fill
            else:
                es += ALPHA_SELF * jump
                eb += ALPHA_CROSS * jump
                fill = min(mkt_size[i], bq[0])
                tr_side[i], tr_px[i], tr_sz[i] = -1, b, fill
                bq[0] -= fill
        elif ev < 4:  # limit order inside the spread becomes the new best
            k = 1 + int(u_level[i] * (a - b - 1))  # ticks of improvement
            if ev == 2:
                bq = ([lim_size[i]] + [0] * (k - 1) + bq)[:W]
                b += k
            else:
                aq = ([lim_size[i]] + [0] * (k - 1) + aq)[:W]
                a -= k
        else:
            ev -= 4
            side, k = divmod(ev, W)
            if side == 0:
                bq[k] += lim_size[i]
            elif side == 1:
                aq[k] += lim_size[i]
            elif side == 2:
                bq[k] -= min(lim_size[i], bq[k])
            else:
                aq[k] -= min(lim_size[i], aq[k])

        # an empty best: the side moves to its next non-empty level, the deep end refills
        if bq[0] == 0:
            k = next((j for j, q in enumerate(bq) if q), W)
            bq = bq[k:] + refill[n_refill:n_refill + k]
            n_refill += k
            b -= k
        if aq[0] == 0:
            k = next((j for j, q in enumerate(aq) if q), W)
            aq = aq[k:] + refill[n_refill:n_refill + k]
            n_refill += k
            a += k
        if n_refill > len(refill) - 2 * W:
            refill += rng.geometric(1.0 / depth_k[-1], n).tolist()

        rec_b[i], rec_a[i] = b, a
        rec_bq.extend(bq)
        rec_aq.extend(aq)

    carry.mid_ticks, carry.z, carry.regime = (b + a) // 2, z, r
    grid_bq = np.array(rec_bq, dtype=np.int64).reshape(n, W)
    grid_aq = np.array(rec_aq, dtype=np.int64).reshape(n, W)
    if spec.clock_branching:  # drawn after the order flow: the book path is the same with either clock
        times = hawkes_clock(rng, n + 1, spec.clock_branching, spec.clock_decay_s, n / spec.session_s)
        business, end = times[:n], times[n]
    else:
        business = np.cumsum(rec_gap)
        end = business[-1] + rng.exponential() * business[-1] / n  # the close comes one more gap after the last event
    rec_b, rec_a = np.array(rec_b), np.array(rec_a)
    lo, hi = min(int(rec_b.min()), mid) - W, max(int(rec_a.max()), mid) + W
    lattice = price_lattice(spec, rng, lo, hi, mid)  # drawn last: the book path and clock are as without it
    return _to_ticks(spec, day, seed, rec_b, rec_a, grid_bq, grid_aq, business,
                     np.array(tr_side), np.array(tr_px), np.array(tr_sz), end, lattice, lo)


def _sizes(rng: np.random.Generator, table: tuple[int, ...], mean: float, n: int) -> list[int]:
    """``n`` order sizes in lots: uniform draws from ``table``, else geometric with mean ``mean``."""
    if table:
        return np.asarray(table, dtype=np.int64)[rng.integers(0, len(table), n)].tolist()
    return rng.geometric(1.0 / mean, n).tolist()


def price_lattice(spec: SymbolSpec, rng: np.random.Generator, lo: int, hi: int, anchor: int) -> np.ndarray:
    """Ticks of the simulator's grid steps ``lo..hi`` (hi - lo + 1,) for one day.

    Without ``level_gaps`` step i is at ``i * grid_ticks``. With them the quotable prices are a fixed random
    lattice of the day: gaps between adjacent steps are iid draws of ``level_gaps`` (P(1 tick), P(2 ticks), ...),
    step ``anchor`` (the open) at ``round(anchor * step_ticks)``, so a real day's spacing of levels, and
    spreads of every tick count, come out of the grid model; a quote keeps its price while it lives.
    """
    if not spec.level_gaps:
        return np.arange(lo, hi + 1, dtype=np.int64) * spec.grid_ticks
    p = np.asarray(spec.level_gaps, dtype=np.float64)
    gaps = rng.choice(np.arange(1, len(p) + 1), size=hi - lo, p=p / p.sum())
    k = anchor - lo
    up, down = np.cumsum(gaps[k:]), np.cumsum(gaps[:k][::-1])
    return round(anchor * spec.step_ticks) + np.r_[-down[::-1], 0, up].astype(np.int64)


def simulate_symbol(spec: SymbolSpec, days: list[str], events_per_day: int, seed: int,
                    symbol_index: int = 0) -> Iterator[Ticks]:
    """The Ticks of ``spec`` on each of ``days`` in turn, symbol ``symbol_index`` of a dataset seeded ``seed``.

    The book state carries from one day to the next, starting from ``spec.price``; yields lazily, one day at a time.
    """
    open_ticks = round(spec.price / (spec.tick_size * spec.step_ticks))
    carry = _Carry(mid_ticks=open_ticks, open_ticks=open_ticks, z=0.0, regime=0)
    for d, day in enumerate(days):
        rng = np.random.default_rng(np.random.SeedSequence([seed, symbol_index, d]))
        yield _simulate_day(spec, carry, rng, events_per_day, day, seed)


def hawkes_clock(rng: np.random.Generator, n: int, branching, decay_s, rate: float) -> np.ndarray:
    """(n,) increasing event times (s) of a stationary Hawkes process with exponential kernels.

    Intensity ``mu + sum_k sum_{t_i < t} branching[k] / decay_s[k] * exp(-(t - t_i) / decay_s[k])`` with
    ``mu = rate * (1 - sum(branching))``, so ``rate`` events per second on average; started from the
    stationary mean excitation. Exact sampling: the next arrival is the earliest of the baseline's and
    each decaying kernel's first arrival (Dassios & Zhao 2013), one uniform each.
    """
    total = float(sum(branching))
    if not (len(branching) == len(decay_s) and all(b >= 0 for b in branching) and total < 1
            and all(d > 0 for d in decay_s) and rate > 0):
        raise ValueError(f"Hawkes clock needs branching >= 0 summing to < 1 and positive decays, got {branching}, {decay_s}")
    mu = rate * (1.0 - total)
    beta = [1.0 / d for d in decay_s]
    jump = [a * b for a, b in zip(branching, beta)]
    x = [a * rate for a in branching]  # stationary mean excitation of each kernel
    log_u = np.log(rng.random((n, len(beta) + 1))).tolist()
    out = [0.0] * n
    t = 0.0
    for i in range(n):
        lu = log_u[i]
        s = -lu[0] / mu
        for k, (bk, xk) in enumerate(zip(beta, x)):
            d = 1.0 + bk * lu[k + 1] / xk
            if d > 0.0:
                s = min(s, -math.log(d) / bk)
        t += s
        out[i] = t
        x = [xk * math.exp(-bk * s) + jk for xk, bk, jk in zip(x, beta, jump)]
    return np.array(out)


def _to_ticks(spec: SymbolSpec, day: str, seed: int, b, a, bq, aq, business, tr_side, tr_px, tr_sz,
              end: float, lattice: np.ndarray, lo: int) -> Ticks:
    """Grid state (grid steps, lots) -> canonical Ticks (price units, size units). Shapes: (N,), (N, GRID).

    ``business`` (N,) event times on the model's clock, ``end`` the close on it (> business[-1]);
    ``lattice[i - lo]`` the ticks of grid step i (``price_lattice``).
    """
    step = spec.tick_size
    steps = np.arange(GRID)
    decimals = max(0, -math.floor(math.log10(spec.tick_size))) + 2

    def levels(best, q, sign):  # first N_LEVELS non-empty grid levels, in order
        px_ticks = lattice[best[:, None] + sign * steps - lo]  # (N, GRID)
        present = (q > 0) & (px_ticks > 0)
        order = np.argsort(~present, axis=1, kind="stable")[:, :N_LEVELS]  # (N, L)
        keep = np.take_along_axis(present, order, axis=1)
        px = np.where(keep, np.round(np.take_along_axis(px_ticks, order, axis=1) * step, decimals), 0.0)
        sz = np.where(keep, np.take_along_axis(q, order, axis=1) * spec.lot_size, 0.0)
        return px.astype(np.float64), sz.astype(np.float64)

    bid_px, bid_sz = levels(b, bq, -1)
    ask_px, ask_sz = levels(a, aq, +1)
    # model clock -> session clock
    frac = business / end
    if spec.u_shaped:
        frac = session_fraction(frac)
    day_open = datetime.fromisoformat(day).replace(tzinfo=timezone.utc) + OPEN_UTC
    open_ns = int(day_open.timestamp()) * 1_000_000_000
    ts_ns = open_ns + np.round(frac * spec.session_s * 1e9).astype(np.int64)
    traded = tr_side != 0
    return Ticks(
        ts_ns=ts_ns, bid_px=bid_px, bid_sz=bid_sz, ask_px=ask_px, ask_sz=ask_sz,
        trade_px=np.where(traded, np.round(lattice[np.where(traded, tr_px, lo) - lo] * step, decimals), 0.0),
        trade_sz=(tr_sz * spec.lot_size).astype(np.float64),
        trade_side=tr_side.astype(np.int8),
        symbol=spec.symbol,
        meta={"date": day, "tick_size": spec.tick_size, "n_levels": N_LEVELS, "source": "simulator", "seed": seed},
    )


def simulate_dataset(out: Path, n_symbols: int, n_days: int, seed: int, events_per_day: int,
                     start_date: str, specs: list[SymbolSpec] | None = None, clock: str = "business",
                     instruments: str = "archetypes") -> list[Path]:
    """Simulate ``n_symbols`` x ``n_days`` symbol-days of ``events_per_day`` events each.

    ``specs`` (e.g. a calibrated instrument, ``lob.data.instruments.load_params``, with its own clock)
    replaces ``symbol_specs(n_symbols, clock, instruments)``. Writes ``out/<SYMBOL>/<YYYY-MM-DD>.parquet`` (weekdays from ``start_date``) and returns the paths,
    sorted by (symbol, date). Same arguments, same bytes.
    """
    from rich.progress import Progress

    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    if n_days < 1 or events_per_day < 2:
        raise ValueError(f"need n_days >= 1 and events_per_day >= 2, got {n_days}, {events_per_day}")
    specs = symbol_specs(n_symbols, clock, instruments) if specs is None else list(specs)
    days = trading_days(start_date, n_days)
    paths = []
    with Progress() as progress:
        task = progress.add_task("simulating symbol-days", total=len(specs) * len(days))
        for s, spec in enumerate(specs):
            for day, ticks in zip(days, simulate_symbol(spec, days, events_per_day, seed, s)):
                paths.append(write_ticks(day_path(out, spec.symbol, day), ticks))
                progress.advance(task)
    return paths
