"""Synthetic, valid L2 books for load and soak tests (locust, `make soak`): no data files needed."""
from __future__ import annotations

from typing import Iterator, Optional

import numpy as np

from .contract import N_LEVELS
from .records import Tick

TICK_SIZE = 0.01


def synthetic_ticks(symbols: list[str], n: Optional[int], rng: np.random.Generator,
                    start_ns: int = 1_700_000_000 * 10**9) -> Iterator[Tick]:
    """``n`` rounds (None: endless) of one tick per symbol: a random-walk best bid on the tick grid, a
    1-3 tick spread, 10 levels a side one tick apart, 1 in 10 a trade at the touch. Prices are integer
    ticks times TICK_SIZE, so books are never crossed or locked; time strictly increases."""
    best_bid = {s: 10_000 + int(rng.integers(0, 1000)) for s in symbols}  # in ticks
    ts_ns = start_ns
    levels = np.arange(N_LEVELS)  # (10,) ticks from the touch
    rounds = 0
    while n is None or rounds < n:
        rounds += 1
        for symbol in symbols:
            ts_ns += int(rng.integers(1_000, 1_000_000))
            bid = best_bid[symbol] = max(best_bid[symbol] + int(rng.integers(-1, 2)), 100)
            ask = bid + int(rng.integers(1, 4))
            side = int(rng.choice([-1, 0, 0, 0, 0, 0, 0, 0, 0, 1]))
            yield Tick(symbol=symbol, ts_ns=ts_ns, bid_px=np.round((bid - levels) * TICK_SIZE, 2),
                       ask_px=np.round((ask + levels) * TICK_SIZE, 2),
                       bid_sz=rng.integers(1, 500, N_LEVELS).astype(float),
                       ask_sz=rng.integers(1, 500, N_LEVELS).astype(float),
                       trade_px=round((ask if side > 0 else bid) * TICK_SIZE, 2) if side else 0.0,  # a buyer lifts the ask
                       trade_sz=float(rng.integers(1, 100)) if side else 0.0, trade_side=side)
