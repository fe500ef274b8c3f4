"""`lob generate` on a tiny run: shapes, determinism for a seed, the decode -> rebuilt tick -> tokenizer round trip,
and the stylized facts on inputs whose values are known."""
import json

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from scipy import stats

from lob.data.lobster_export import export_lobster
from lob.data.schema import dataset_files, load_dataset, read_ticks
from lob.data.simulator import simulate_dataset
from lob.evaluation.generate import RolloutBook, block_returns, bucket_value, generate, sample, stylized_facts
from lob.tokenizer import TickInput, Tokenizer
from lob.training.config import TrainConfig
from lob.training.train import train


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("gen")
    simulate_dataset(root / "data", n_symbols=2, n_days=1, seed=4, events_per_day=4000, start_date="2024-01-02")
    run = train(root / "data", root / "run", TrainConfig(arch="hybrid", max_steps=3, window=64, batch_size=2,
                                                         eval_every=3, max_val_windows=2))
    return root / "data", run


@pytest.mark.slow  # trains a tiny run (module fixture)
def test_rollouts_shapes_facts_and_determinism(tiny_run, tmp_path):
    data, run = tiny_run
    kw = dict(prompt_ticks=64, steps=60, rollouts=3, top_k=8, seed=5)
    facts = generate(run, data, tmp_path / "a", **kw)
    table = pq.read_table(tmp_path / "a" / "rollouts.parquet").to_pydict()
    assert len(table["token"]) == 3 * 60
    assert table["rollout"][:2] == [0, 0] and table["step"][:3] == [0, 1, 2] and table["rollout"][-1] == 2
    assert set(table) >= {"rollout", "step", "token", "kind", "side", "mid_move", "spread_bucket", "size_bucket",
                          "dt_bucket", "mid"}
    assert all(m > 0 for m in table["mid"])
    ts = np.array(table["ts_ns"]).reshape(3, 60)
    assert (np.diff(ts, axis=1) >= 0).all()  # time never goes back within a rollout
    assert (tmp_path / "a" / "facts.png").stat().st_size > 10_000
    on_disk = json.loads((tmp_path / "a" / "facts.json").read_text())
    assert set(on_disk["tv_distance"]) == {"event_kind", "mid_move", "spread", "inter_arrival"}
    kurtosis = on_disk["pearson_kurtosis"]  # the convention is named; Pearson's is >= 1 wherever defined
    assert all(k is None or k >= 1.0 for k in (kurtosis["generated"], kurtosis["real"]))
    assert all(0.0 <= v <= 1.0 for v in on_disk["tv_distance"].values())
    assert np.isfinite(on_disk["real_continuation"]["mean_loglik_nats"]) and on_disk["real_continuation"]["perplexity"] > 1
    assert 0.0 <= on_disk["token_roundtrip"] <= 1.0
    # the rebuilt ticks, one canonical file per rollout (read back validated: books never crossed), export apart
    files = dataset_files(tmp_path / "a" / "ticks")
    assert [f.name for f in files] == [f"2024-01-02_r{r:02d}.parquet" for r in range(3)]
    rebuilt = [read_ticks(f) for f in files]
    assert [t.meta["rollout"] for t in rebuilt] == [0, 1, 2] and all(len(t) == 60 for t in rebuilt)
    assert np.allclose(np.concatenate([t.mid() for t in rebuilt]), table["mid"])
    assert np.array_equal(np.concatenate([t.ts_ns for t in rebuilt]), table["ts_ns"])
    assert len({p.name for p in export_lobster(tmp_path / "a" / "ticks", tmp_path / "lobster")}) == 3
    again = generate(run, data, tmp_path / "b", **kw)
    assert (tmp_path / "a" / "rollouts.parquet").read_bytes() == (tmp_path / "b" / "rollouts.parquet").read_bytes()
    assert json.dumps(again, sort_keys=True) == json.dumps(facts, sort_keys=True)
    generate(run, data, tmp_path / "c", **{**kw, "seed": 6})
    other = pq.read_table(tmp_path / "c" / "rollouts.parquet")
    assert other.column("token").to_pylist() != table["token"]  # another seed, other rollouts


@pytest.mark.slow  # trains a tiny run (module fixture)
def test_refuses_a_prompt_longer_than_the_held_out_segment(tiny_run, tmp_path):
    data, run = tiny_run
    with pytest.raises(ValueError, match="test segment has"):
        generate(run, data, tmp_path / "x", prompt_ticks=512, steps=100_000)
    assert not (tmp_path / "x").exists()


@pytest.mark.slow  # trains a tiny run (module fixture)
def test_decoded_tokens_rebuild_into_ticks_that_re_encode_to_them(tiny_run):
    """Decode round trip on real transitions: each real tick's token, rebuilt into a tick from the book before it
    (``RolloutBook.apply``), re-encodes to that token (measured 96-99.8% on the 4 default simulated symbols)."""
    data, run = tiny_run
    tokenizer = Tokenizer.load(run / "tokenizer.json")
    dataset = load_dataset(data)
    for sym in sorted(dataset):
        ticks, state = dataset[sym], None
        same = same_cls = same_sign = n = 0
        for i in range(600):
            token, _, after = tokenizer.step(TickInput.of(ticks, i), state)
            if i >= 100:
                want = tokenizer.describe(token)
                again = tokenizer.step(RolloutBook(TickInput.of(ticks, i - 1)).apply(want), state)[0]
                got = tokenizer.describe(again)
                n += 1
                same += again == token
                same_cls += (got["kind"], got["side"]) == (want["kind"], want["side"])
                same_sign += np.sign(got["mid_move"]) == np.sign(want["mid_move"])
            state = after
        assert same / n >= 0.9 and same_cls / n >= 0.95 and same_sign / n >= 0.98, (sym, same, same_cls, same_sign, n)


def test_block_returns_and_bucket_values_on_known_inputs():
    mid = 100 * np.exp(np.arange(31) * 1e-4)  # +1 bp per event
    np.testing.assert_allclose(block_returns(mid, 10), [10.0, 10.0, 10.0])
    assert bucket_value(1.0, 3.0) == 2.0 and bucket_value(4.0, float("inf")) == 6.0


def test_sampling_respects_top_k_and_the_seed():
    logits = torch.tensor([[0.0, 5.0, 4.0, -1.0, 3.0]]).expand(500, -1)
    draws = sample(logits, 2, 1.0, torch.Generator().manual_seed(0))
    assert set(draws.tolist()) == {1, 2}
    assert torch.equal(draws, sample(logits, 2, 1.0, torch.Generator().manual_seed(0)))
    cold = sample(logits, 5, 1e-3, torch.Generator().manual_seed(1))
    assert set(cold.tolist()) == {1}  # temperature -> 0: the argmax


def test_return_facts_are_pearson_kurtosis_and_undefined_ones_are_null(tmp_path):
    """`lob generate` reports `lob realism`'s convention (Pearson kurtosis, scipy's fisher=False) under a key
    that names it, pooled over rollouts; a mid that never moves gives null, not a number."""
    simulate_dataset(tmp_path, n_symbols=1, n_days=1, seed=0, events_per_day=300, start_date="2024-01-02")
    tokenizer = Tokenizer.fit(list(load_dataset(tmp_path).values()))
    rng = np.random.default_rng(0)
    mids = 100 * np.exp(np.cumsum(rng.standard_t(4, size=(2, 2001)) * 1e-4, axis=1))  # (rollouts, ticks)
    tokens = np.zeros((2, 2001), np.int64)
    facts = stylized_facts(tokenizer, tokens, mids, return_ticks=10)
    pooled = np.concatenate([1e4 * np.diff(np.log(m[::10])) for m in mids])
    assert facts["n_returns"] == pooled.size == 400
    assert facts["pearson_kurtosis"] == pytest.approx(stats.kurtosis(pooled, fisher=False), rel=1e-9)
    flat = stylized_facts(tokenizer, tokens, np.full((2, 2001), 100.0), return_ticks=10)
    assert flat["pearson_kurtosis"] is None
    assert flat["acf_returns"] == [None] * 10 and flat["acf_abs_returns"] == [None] * 10
