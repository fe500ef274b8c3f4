import numpy as np
import pytest
import torch

from lob.training.labels import IGNORE, direction_labels, direction_loss


def test_flat_band_is_half_spread_plus_fee():
    # mid 100, half-spread 0.01, fee 1 bps of mid = 0.01: band 0.02
    mid = np.array([100.0, 100.02, 99.98, 100.021, 99.979, 100.0])
    half = np.full(6, 0.01)
    labels, _ = direction_labels(mid, half, fee_bps=1.0, horizons=(1,))
    # moves from each tick: +0.02 (=band: flat), -0.04 (down), +0.041 (up), -0.042 (down), +0.021 (up)
    assert labels[:, 0].tolist() == [1, 0, 2, 0, 2, IGNORE]
    # without the fee the first move (+0.02 > 0.01) clears the band
    labels0, _ = direction_labels(mid, half, fee_bps=0.0, horizons=(1,))
    assert labels0[0, 0] == 2


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
    # moves 0, 0.005, 0.015, 0.025, 0.5 against band 0.01 -> profit after costs 0, 0, 0.005, 0.015, 0.49
    # -> weights 1, 1, 1.5, 2.5, 50 capped at 4
    moves = np.stack([base, mid], axis=1).reshape(-1)  # t -> t+1 pairs
    labels, weights = direction_labels(moves, np.full(10, 0.01), 0.0, horizons=(1,), w_max=4.0)
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
