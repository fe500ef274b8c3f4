"""lobclient against an address where no server listens: every tick answered with the reason, no hang."""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

import lobclient

from .conftest import free_port


def ticks(n):
    return [lobclient.Tick(sym, 1_000 + i, [100.0, 99.9], [5, 7], [100.1], [3]) for i in range(n) for sym in "AB"]


def test_unreachable_server_fails_every_tick_in_order():
    feed = ticks(5)
    preds = list(lobclient.stream(feed, url=f"localhost:{free_port()}", transport=lobclient.Transport(timeout_s=5),
                                  recovery=lobclient.Recovery(reconnect_deadline_s=1.0)))
    assert [(p.symbol, p.seq) for p in preds] == [(t.symbol, i // 2) for i, t in enumerate(feed)]
    assert all(p.error is not None and "no connection" in p.error and "UNAVAILABLE" in p.error for p in preds)


def test_tick_pads_books_to_ten_levels_and_refuses_more():
    t = lobclient.Tick("A", 1, [100.0, 99.9], [5, 7], [100.1], [3])
    np.testing.assert_array_equal(t.bid_px, [100.0, 99.9] + [0.0] * 8)
    assert t.ask_sz.dtype == np.float64 and t.ask_sz.shape == (10,)
    with pytest.raises(ValueError, match="bid_sz has 11 levels"):
        lobclient.Tick("A", 1, [1.0], [1.0] * 11, [2.0], [1.0])


def test_sequence_id_is_stable_positive_63_bit_and_namespaced():
    ids = {lobclient.sequence_id(s) for s in ("AAPL", "MSFT", "BTCUSDT")}
    assert len(ids) == 3 and all(0 < i < 2**63 for i in ids)
    other_process = subprocess.run([sys.executable, "-c", "import lobclient; print(lobclient.sequence_id('AAPL'))"],
                                   capture_output=True, text=True, check=True, env={**os.environ, "PYTHONHASHSEED": "7"})
    assert int(other_process.stdout) == lobclient.sequence_id("AAPL")
    assert lobclient.sequence_id("AAPL", "desk-2") != lobclient.sequence_id("AAPL")
