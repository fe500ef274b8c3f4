import numpy as np
import pytest
import torch

from lob.data.schema import Ticks
from lob.training.labels import IGNORE, direction_labels, direction_loss, session_ids, tick_targets


def test_flat_band_is_a_taker_round_trip():
    # a taker round trip t -> t+1: buy at the ask (mid + half-spread now), sell at the bid (mid - half-spread
    # then), fee of 1 bps on both legs (~0.01 each at a price of 100): band = 0.01 + 0.02 + 0.02 = 0.05
    mid = np.array([100.0, 100.05, 100.0, 99.9499, 100.0, 100.0])
    half = np.array([0.01, 0.02, 0.01, 0.02, 0.01, 0.01])
    labels, _ = direction_labels(mid, half, fee_bps=1.0, horizons=(1,))
    # moves: +0.05 (band 0.01+0.02+0.02 = 0.05: flat), -0.05 (band 0.02+0.01+0.0200 = 0.0500: flat, the fee is
    # on mid[t] = 100.05, so the band is 0.05001), -0.0501 (band 0.01+0.02+0.02 = 0.05: down),
    # +0.0501 (band 0.02+0.01+0.019999 = 0.049999: up), 0 (flat)
    assert labels[:, 0].tolist() == [1, 1, 0, 2, 1, IGNORE]
    # the old half-round-trip band (one half-spread + one fee, 0.02) would have called the first move up;
    # with no fee the band is the two half-spreads only (0.03): +0.05 clears it
    labels0, _ = direction_labels(mid, half, fee_bps=0.0, horizons=(1,))
    assert labels0[0, 0] == 2


def _ticks(ts_s: list[float], mid: list[float], half: float = 0.01) -> Ticks:
    n = len(ts_s)
    bid, bsz, ask, asz = Ticks.empty_book(n)
    bid[:, 0] = np.asarray(mid) - half
    ask[:, 0] = np.asarray(mid) + half
    ts = (np.datetime64("2024-01-02T14:30:00", "ns").astype(np.int64) + (np.asarray(ts_s) * 1e9)).astype(np.int64)
    return Ticks(ts, bid, bsz, ask, asz, np.zeros(n), np.zeros(n), np.zeros(n, np.int8), "X")


def test_no_label_crosses_a_session_boundary():
    day = 86_400.0
    # ticks 0-3 on day 1, 4-7 the next day (overnight gap), tick 8 after a 10-minute halt, 9 one second later
    ts = [0, 1, 2, 3, day, day + 1, day + 2, day + 3, day + 603, day + 604]
    assert session_ids(_ticks(ts, [100.0] * 10).ts_ns).tolist() == [0, 0, 0, 0, 1, 1, 1, 1, 2, 2]
    mid = [100.0, 100.0, 100.0, 100.0, 101.0, 101.0, 101.0, 101.0, 99.0, 99.0]
    labels, weights = tick_targets(_ticks(ts, mid), fee_bps=0.0)  # horizons 10, 50, 100: all cross a boundary
    assert (labels == IGNORE).all() and (weights == 0).all()
    sess = session_ids(_ticks(ts, mid).ts_ns)
    lab, w = direction_labels(np.asarray(mid), np.full(10, 0.01), 0.0, horizons=(1, 2), session=sess)
    # h=1: the overnight jump (tick 3 -> 4, +1.0) and the halt jump (7 -> 8, -2.0) are not labelled
    assert lab[:, 0].tolist() == [1, 1, 1, IGNORE, 1, 1, 1, IGNORE, 1, IGNORE]
    assert lab[:, 1].tolist() == [1, 1, IGNORE, IGNORE, 1, 1, IGNORE, IGNORE, IGNORE, IGNORE]
    assert (w[lab == IGNORE] == 0).all() and (w[lab != IGNORE] == 1).all()
    # without sessions the overnight move is an up label
    assert direction_labels(np.asarray(mid), np.full(10, 0.01), 0.0, horizons=(1,))[0][3, 0] == 2


def test_smoothed_labels_use_the_mean_of_the_next_h_mids():
    mid = np.array([100.0, 100.0, 100.02, 100.0, 99.97, 100.0])
    # h=2, α = 1 bps: future means 100.01 (+1.0 bps: flat, not > α), 100.01 (+1 bps: flat), 99.985 (-1.5 bps: down),
    # 99.985 (-1.5 bps: down), ignored, ignored
    labels, weights = direction_labels(mid, np.full(6, 0.01), 0.0, horizons=(2,), mode="smoothed", smooth_bps=1.0)
    assert labels[:, 0].tolist() == [1, 1, 0, 0, IGNORE, IGNORE]
    assert weights[:4, 0].tolist() == [1.0] * 4
    labels, _ = direction_labels(mid, np.full(6, 0.01), 0.0, horizons=(2,), mode="smoothed", smooth_bps=0.9)
    assert labels[:4, 0].tolist() == [2, 2, 0, 0]
    with pytest.raises(ValueError, match="label mode"):
        direction_labels(mid, np.full(6, 0.01), 0.0, mode="fancy")


def test_last_h_ticks_are_masked_per_horizon():
    n = 30
    labels, weights = direction_labels(np.linspace(100, 101, n), np.full(n, 0.005), 0.5, horizons=(1, 5, 10))
    for j, h in enumerate((1, 5, 10)):
        assert (labels[n - h:, j] == IGNORE).all() and (weights[n - h:, j] == 0).all()
        assert (labels[: n - h, j] != IGNORE).all()
    # a horizon longer than the sequence masks everything
    short, _ = direction_labels(np.full(5, 100.0), np.full(5, 0.01), 0.0, horizons=(10,))
    assert (short == IGNORE).all()


def test_weights_grow_with_move_size_and_are_capped():
    mid = np.array([100.0, 100.005, 100.015, 100.025, 100.5])
    base = np.full(5, 100.0)
    # moves 0, 0.005, 0.015, 0.025, 0.5 against band 0.005 + 0.005 = 0.01 -> profit after costs 0, 0, 0.005,
    # 0.015, 0.49 -> weights 1, 1, 1.5, 2.5, 50 capped at 4
    moves = np.stack([base, mid], axis=1).reshape(-1)  # t -> t+1 pairs
    labels, weights = direction_labels(moves, np.full(10, 0.005), 0.0, horizons=(1,), w_max=4.0)
    pairs = weights[0::2, 0]
    assert pairs.tolist() == pytest.approx([1.0, 1.0, 1.5, 2.5, 4.0])
    assert labels[0::2, 0].tolist() == [1, 1, 2, 2, 2]


def test_loss_weighs_larger_moves_more():
    # the same wrong prediction costs more on a big move than on a small one
    logits = torch.tensor([[[[0.0, 3.0, 0.0]], [[0.0, 3.0, 0.0]]]])  # (B=1, L=2, H=1, 3): confident "flat"
    labels = torch.tensor([[[2], [1]]])  # big up-move missed, flat right
    ce_up = torch.nn.functional.cross_entropy(logits[0, 0], labels[0, 0])
    ce_flat = torch.nn.functional.cross_entropy(logits[0, 1], labels[0, 1])
    uniform = direction_loss(logits, labels, torch.ones(1, 2, 1))
    weighted = direction_loss(logits, labels, torch.tensor([[[4.0], [1.0]]]))
    assert uniform == pytest.approx(float(ce_up + ce_flat) / 2)
    assert weighted == pytest.approx(float(4 * ce_up + ce_flat) / 5)
    assert weighted > uniform


def test_ignored_targets_do_not_count():
    logits = torch.randn(1, 3, 1, 3)
    weights = torch.ones(1, 3, 1)
    labels = torch.tensor([[[0], [IGNORE], [2]]])
    changed = logits.clone()
    changed[0, 1] += 100.0  # the masked tick's logits must not matter
    assert direction_loss(logits, labels, weights) == pytest.approx(float(direction_loss(changed, labels, weights)))
