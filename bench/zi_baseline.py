"""Zero-intelligence Poisson order flow fitted to a real day: the Cont-Stoikov-Talreja (2010, Operations Research
58(3), "A stochastic model for order book dynamics") baseline LOB-Bench ranks generators against.

Orders are one unit of S shares (the real day's mean add size). Limit buys arrive at distance i = 1..K ticks
below the best ask at rate lambda(i) per second (sells mirror them above the best bid), each resting order at
distance i is cancelled at rate theta(i), market orders arrive at rate mu per side; all Poisson. Fitted the
paper's way on the real day's LOBSTER messages (``lob.data.lobster_export``): lambda(i) = adds at distance i
/ T, theta(i) = cancelled units at i / (T * mean queue at i, units), mu = executed units / T (per side, pooled).
Simulated from the real day's first book for as many events as the real day has; written as a canonical
dataset (one row per event, the book after it) for `lob realism`.

    python bench/zi_baseline.py --data real:GOOG --out zi [--seed 0]
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from lob.data.lobster import PRICE_SCALE
from lob.data.lobster_export import ADD, DELETE, EXECUTE, PARTIAL_CANCEL, synthesize_messages
from lob.data.schema import N_LEVELS, Ticks, day_path, write_ticks
from lob.realism.report import load_days

K = 100  # ticks from the opposite best where orders arrive and are cancelled


def fit(t: Ticks, levels: int) -> dict:
    """CST rates of one real day (per second, per side; sizes in units of the mean add size)."""
    tick = float(t.meta["tick_size"])
    m = synthesize_messages(t, levels, int(round(tick * PRICE_SCALE)))
    span = (t.ts_ns[-1] - t.ts_ns[0]) * 1e-9
    unit = float(m.size[m.type == ADD].mean())
    bid, ask = np.round(t.bid_px[:, 0] / tick).astype(int), np.round(t.ask_px[:, 0] / tick).astype(int)
    px = m.price / (tick * PRICE_SCALE)
    # distance from the opposite best before the message (after it for adds at a new level: the same price)
    prev_bid, prev_ask = np.r_[bid[0], bid[:-1]], np.r_[ask[0], ask[:-1]]
    dist = np.where(m.direction == 1, prev_ask - px, px - prev_bid).round().astype(int)
    inside = (dist >= 1) & (dist <= K)
    adds = np.bincount(dist[(m.type == ADD) & inside], minlength=K + 1)[1:] / 2  # per side
    cancelled = np.bincount(dist[np.isin(m.type, (PARTIAL_CANCEL, DELETE)) & inside],
                            weights=m.size[np.isin(m.type, (PARTIAL_CANCEL, DELETE)) & inside], minlength=K + 1)[1:] / 2
    queue = np.zeros(K)  # mean resting units at distance i, per side
    for side_px, side_sz, opp, sign in ((t.bid_px, t.bid_sz, ask, -1), (t.ask_px, t.ask_sz, bid, 1)):
        d = np.round((side_px / tick - opp[:, None]) * sign).astype(int)
        ok = (side_sz > 0) & (d >= 1) & (d <= K)
        queue += np.bincount(d[ok] - 1, weights=side_sz[ok] / unit, minlength=K)[:K] / len(t) / 2
    lam = adds / span
    theta = np.where(queue > 0, cancelled / unit / span / np.maximum(queue, 1e-9), 0.0)
    mu = float(m.size[m.type == EXECUTE].sum()) / unit / span / 2
    return {"lam": lam, "theta": theta, "mu": mu, "unit": unit, "tick": tick, "events": len(t),
            "bid": int(bid[0]), "ask": int(ask[0]), "book": t.slice(0, 1)}


def simulate(p: dict, seed: int, symbol: str, date: str, t0_ns: int) -> Ticks:
    """One day of CST flow from the real first book; (N,) rows of the canonical table."""
    rng = np.random.default_rng(seed)
    n, tick, unit = p["events"], p["tick"], p["unit"]
    size = 1 << 14
    base = p["bid"] - size // 2  # grid index 0
    q = np.zeros(size)  # signed units: bids > 0, asks < 0
    b0 = p["book"]
    for px, sz, sign in ((b0.bid_px[0], b0.bid_sz[0], 1), (b0.ask_px[0], b0.ask_sz[0], -1)):
        for x, s in zip(px, sz):
            if s > 0:
                q[int(round(x / tick)) - base] = sign * max(1, round(s / unit))
    b, a = p["bid"] - base, p["ask"] - base
    lam, theta, mu = p["lam"], p["theta"], p["mu"]
    lam_total = lam.sum()
    rows = {"ts": np.zeros(n, np.int64), "side": np.zeros(n, np.int8), "tpx": np.zeros(n)}
    books = np.zeros((n, 4, N_LEVELS))
    clock = 0.0
    for i in range(n):
        bids = np.clip(q[a - K:a][::-1], 0, None)  # units at a-1 .. a-K
        asks = np.clip(-q[b + 1:b + K + 1], 0, None)  # units at b+1 .. b+K
        rates = np.r_[lam_total, lam_total, mu, mu, (theta * bids).sum(), (theta * asks).sum()]
        total = rates.sum()
        clock += rng.exponential(1.0 / total)
        ev = rng.choice(6, p=rates / total)
        if ev == 0:  # limit buy at a - i
            i_ = rng.choice(K, p=lam / lam_total) + 1
            q[a - i_] += 1
            b = max(b, a - i_)
        elif ev == 1:
            i_ = rng.choice(K, p=lam / lam_total) + 1
            q[b + i_] -= 1
            a = min(a, b + i_)
        elif ev == 2 and q[a] < 0:  # market buy takes a unit at the ask
            q[a] += 1
            rows["side"][i], rows["tpx"][i] = 1, (a + base) * tick
        elif ev == 3 and q[b] > 0:
            q[b] -= 1
            rows["side"][i], rows["tpx"][i] = -1, (b + base) * tick
        elif ev == 4:
            w = theta * bids
            q[a - 1 - rng.choice(K, p=w / w.sum())] -= 1
        elif ev == 5:
            w = theta * asks
            q[b + 1 + rng.choice(K, p=w / w.sum())] += 1
        while q[b] <= 0 and b > 0:
            b -= 1
        while q[a] >= 0 and a < size - 1:
            a += 1
        if not (K < b < a < size - K):
            raise SystemExit(f"event {i}: a side of the book emptied (these rates do not keep a book)")
        bid_lv = b - np.flatnonzero(q[b - 200:b + 1][::-1] > 0)[:N_LEVELS]
        ask_lv = a + np.flatnonzero(q[a:a + 200] < 0)[:N_LEVELS]
        books[i, 0, :bid_lv.size], books[i, 1, :bid_lv.size] = (bid_lv + base) * tick, q[bid_lv] * unit
        books[i, 2, :ask_lv.size], books[i, 3, :ask_lv.size] = (ask_lv + base) * tick, -q[ask_lv] * unit
        rows["ts"][i] = t0_ns + int(clock * 1e9)
    side = rows["side"]
    return Ticks(rows["ts"], np.round(books[:, 0], 8), books[:, 1], np.round(books[:, 2], 8), books[:, 3],
                 rows["tpx"], np.where(side != 0, unit, 0.0), side, symbol,
                 {"date": date, "tick_size": tick, "n_levels": N_LEVELS, "source": "zero-intelligence (CST 2010)"})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True, help="DIR[:SYMBOL] of the real day")
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    symbol, days = load_days(args.data)
    real = days[0]
    p = fit(real, int(real.meta.get("n_levels", N_LEVELS)))
    resting = np.where(p["theta"] > 0, p["lam"] / np.maximum(p["theta"], 1e-12), 0.0)
    print(f"{symbol}: unit {p['unit']:.1f} shares, mu {p['mu']:.3f}/s, lambda {p['lam'].sum():.3f}/s in all, "
          f"stationary resting units (lambda/theta) within {K} ticks {resting.sum():.1f}")
    t = simulate(p, args.seed, symbol, real.meta["date"], int(real.ts_ns[0]))
    print(f"wrote {write_ticks(day_path(args.out, symbol, real.meta['date']), t)} ({len(t):,} events)")


if __name__ == "__main__":
    main()
