"""`lobclient.shard`: the stable symbol -> shard map every client of a deployment must agree on."""
import subprocess
import sys

import numpy as np
import pytest

import lobclient

SYMBOLS = [f"SYM{i:05d}" for i in range(20_000)]


def test_shard_is_the_same_in_another_process_with_another_hash_seed():
    code = "import lobclient, sys; print(*(lobclient.shard(s, 16) for s in sys.argv[1:]))"
    some = SYMBOLS[:200] + ["AAPL", "BTCUSDT", "ÉTÉ.PA", ""]
    runs = {subprocess.run([sys.executable, "-c", code, *some], capture_output=True, text=True, check=True,
                           env={"PYTHONHASHSEED": seed}).stdout for seed in ("1", "2")}
    assert len(runs) == 1
    assert runs.pop().split() == [str(lobclient.shard(s, 16)) for s in some]


@pytest.mark.parametrize("shards", [1, 3, 16, 64])
def test_shards_are_in_range_and_balanced(shards):
    counts = np.bincount([lobclient.shard(s, shards) for s in SYMBOLS], minlength=shards)
    assert counts.shape == (shards,) and counts.sum() == len(SYMBOLS)
    expected = len(SYMBOLS) / shards
    # chi-square with shards-1 degrees of freedom: far below its 1e-6 tail for a uniform hash
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    assert chi2 < shards + 10 * np.sqrt(2 * shards) + 25


@pytest.mark.parametrize("bad", [0, -1, 2.0, None])
def test_shard_count_must_be_a_positive_int(bad):
    with pytest.raises(ValueError, match="shards"):
        lobclient.shard("AAPL", bad)
