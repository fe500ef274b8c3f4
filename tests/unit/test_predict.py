import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from lob.data.schema import load_dataset
from lob.data.simulator import simulate_dataset
from lob.evaluation.predict import predict
from lob.training.run import load_run
from lob.training.config import TrainConfig
from lob.training.train import train

H_COLS = [f"p_{c}_h{h}" for h in (10, 50, 100) for c in ("down", "flat", "up")]


@pytest.fixture(scope="module")
def data_and_run(tmp_path_factory):
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("predict")
    simulate_dataset(root / "data", n_symbols=3, n_days=1, seed=5, events_per_day=1500, start_date="2024-01-02")
    run = train(root / "data", root / "run", TrainConfig(max_steps=3, window=64, batch_size=4, eval_every=3,
                                                         max_val_windows=4))
    return root / "data", run


def test_one_row_per_tick_in_symbol_then_time_order(data_and_run, tmp_path):
    data, run = data_and_run
    table = pq.read_table(predict(run, data, tmp_path / "p.parquet"))
    assert table.column_names == ["symbol", "ts_ns", "seq", *H_COLS, "next_token_top1", "next_token_top1_p"]
    df = table.to_pydict()
    ds = load_dataset(data)
    assert sorted(set(df["symbol"])) == list(ds)
    sym = np.array(df["symbol"])
    assert list(dict.fromkeys(df["symbol"])) == sorted(ds)  # symbols sorted, each one contiguous
    for s, t in ds.items():
        rows = sym == s
        assert np.array_equal(np.array(df["ts_ns"])[rows], t.ts_ns)
        assert np.array_equal(np.array(df["seq"])[rows], np.arange(len(t)))
    probs = np.stack([np.array(df[c]) for c in H_COLS], axis=1).reshape(-1, 3, 3)
    assert np.allclose(probs.sum(-1), 1.0, atol=1e-5) and (probs >= 0).all()
    _, tokenizer, _ = load_run(run)
    assert 0 <= min(df["next_token_top1"]) and max(df["next_token_top1"]) < tokenizer.vocab_size
    assert all(0 < p <= 1 for p in df["next_token_top1_p"])


def test_limit_and_symbols_select_a_causal_prefix(data_and_run, tmp_path):
    data, run = data_and_run
    full = pq.read_table(predict(run, data, tmp_path / "full.parquet")).to_pydict()
    part = pq.read_table(predict(run, data, tmp_path / "part.parquet", symbols=["SIMC", "SIMA"], limit=700)).to_pydict()
    assert part["symbol"] == ["SIMA"] * 700 + ["SIMC"] * 700
    assert part["seq"] == list(range(700)) * 2
    # the first 700 ticks of a symbol score the same whether or not later ticks follow (fresh state, causal)
    sym = np.array(full["symbol"])
    for s in ("SIMA", "SIMC"):
        rows = np.flatnonzero(sym == s)[:700]
        mine = np.flatnonzero(np.array(part["symbol"]) == s)
        for col in (*H_COLS, "next_token_top1_p"):
            assert np.allclose(np.array(full[col])[rows], np.array(part[col])[mine], atol=1e-5), col
        assert np.array_equal(np.array(full["next_token_top1"])[rows], np.array(part["next_token_top1"])[mine])


def test_unknown_symbol_is_a_clear_error_and_writes_nothing(data_and_run, tmp_path):
    data, run = data_and_run
    with pytest.raises(KeyError, match="NOPE"):
        predict(run, data, tmp_path / "p.parquet", symbols=["NOPE"])
    assert list(tmp_path.iterdir()) == []
