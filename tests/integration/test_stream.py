"""Served predictions through `lob_stream` on a real tritonserver: order, offline equality, isolation."""
from __future__ import annotations

import asyncio
import dataclasses
import json

import numpy as np
import pytest

import lobclient
from lob.contract import CLASSES
from lob.data.schema import load_dataset
from lob.serving.replay import interleave

pytestmark = pytest.mark.server

N_TICKS = 120  # per symbol
TOL = 1e-4


@pytest.fixture(scope="module")
def dataset(dataset_dir):
    return {s: t.slice(0, N_TICKS) for s, t in load_dataset(dataset_dir).items()}


def offline_rows(offline, symbol, n=N_TICKS):
    """(dir_probs (n, 3, 3), top1 (n,), top1_p (n,)) of `lob predict` for the first n ticks of symbol."""
    t = offline[symbol].slice(0, n)
    dir_probs = np.stack([np.stack([t[f"p_{c}_h{h}"].to_numpy() for c in CLASSES], -1) for h in lobclient.HORIZONS], 1)
    return dir_probs, t["next_token_top1"].to_numpy(), t["next_token_top1_p"].to_numpy()


def assert_matches_offline(preds, offline, symbol):
    dir_probs, top1, top1_p = offline_rows(offline, symbol, len(preds))
    served = np.stack([p.dir_probs for p in preds])  # (n, 3, 3)
    assert np.abs(served - dir_probs).max() <= TOL
    served_p = np.array([p.topk_probs[0] for p in preds])
    assert np.abs(served_p - top1_p).max() <= TOL
    # ids can only differ where the two best tokens tie within the tolerance
    tie = np.array([p.topk_probs[0] - p.topk_probs[1] <= TOL for p in preds])
    assert np.all((np.array([p.topk_ids[0] for p in preds]) == top1) | tie)


def test_interleaved_symbols_one_prediction_per_tick_in_order_equal_to_offline(server, dataset, offline, repo):
    ticks = list(interleave(dataset))
    assert len(dataset) >= 4
    preds = list(lobclient.stream(ticks, url=server.url, transport=lobclient.Transport(window=64)))

    assert [(p.symbol, p.ts_ns) for p in preds] == [(t.symbol, t.ts_ns) for t in ticks]
    assert all(p.error is None for p in preds)
    version = json.loads((repo / "mamba_lob_onnx" / "1" / "export.json").read_text())["model_version"]
    assert {p.model_version for p in preds} == {version}
    for symbol in dataset:
        mine = [p for p in preds if p.symbol == symbol]
        assert [p.seq for p in mine] == list(range(N_TICKS))
        probs = np.stack([p.dir_probs for p in mine])
        assert np.all(probs >= 0) and np.allclose(probs.sum(-1), 1.0, atol=1e-5)
        topk = np.stack([p.topk_probs for p in mine])
        assert np.all(np.diff(topk, axis=1) <= 0)
        assert_matches_offline(mine, offline, symbol)


def test_symbol_alone_equals_symbol_interleaved(server, dataset):
    symbol = sorted(dataset)[1]
    alone = list(lobclient.stream(interleave({symbol: dataset[symbol]}), url=server.url))
    mixed = [p for p in lobclient.stream(interleave(dataset), url=server.url) if p.symbol == symbol]
    np.testing.assert_array_equal(np.stack([p.dir_probs for p in alone]), np.stack([p.dir_probs for p in mixed]))


@pytest.mark.parametrize("kind", ["stream", "unary"])
def test_astream_equals_stream(server, dataset, kind):
    ticks = list(interleave(dataset))[:200]

    async def collect():
        return [p async for p in lobclient.astream(ticks, url=server.url,
                                                   transport=lobclient.Transport(kind=kind, window=16))]

    preds = asyncio.run(collect())
    reference = list(lobclient.stream(ticks, url=server.url))
    assert [(p.symbol, p.seq) for p in preds] == [(p.symbol, p.seq) for p in reference]
    np.testing.assert_array_equal(np.stack([p.dir_probs for p in preds]), np.stack([p.dir_probs for p in reference]))


@pytest.mark.parametrize("path", ["ensemble", "direct"])
def test_lob_stream_cli_writes_the_lob_predict_table(server, dataset_dir, offline, repo, tmp_path, path):
    import pyarrow as pa
    import pyarrow.parquet as pq
    from typer.testing import CliRunner

    from lob.cli import app

    out = tmp_path / "served.parquet"
    result = CliRunner().invoke(app, ["stream", "--url", server.url, "--data", str(dataset_dir), "--out", str(out),
                                      "--limit", "50"]
                                 + (["--tokenizer", str(repo / "lob_tokenizer/1/tokenizer.json")] if path == "direct" else []))
    assert result.exit_code == 0, result.output
    assert "p99" in result.output
    served = pq.read_table(out)
    reference = pa.concat_tables([offline[s].slice(0, 50) for s in sorted(offline)])
    assert served.schema == reference.schema
    assert served.column("symbol").to_pylist() == reference.column("symbol").to_pylist()
    assert served.column("seq").to_pylist() == reference.column("seq").to_pylist()
    for name in served.column_names:
        if name.startswith("p_"):
            assert np.abs(served[name].to_numpy() - reference[name].to_numpy()).max() <= TOL


def test_step_model_runs_back_to_back_ticks_of_one_sequence_in_order(server, dataset, offline, run_dir):
    """Many ticks of one sequence queued at once on mamba_lob_onnx (no client-side pacing) still run in
    order, each on the state the previous one left."""
    import queue

    import tritonclient.grpc as grpcclient

    from lob.tokenizer import Tokenizer

    symbol = sorted(dataset)[0]
    tokens, features, _ = Tokenizer.load(run_dir / "tokenizer.json").transform(dataset[symbol])
    answers: queue.Queue = queue.Queue()
    client = grpcclient.InferenceServerClient(server.url)
    client.start_stream(callback=lambda result, error: answers.put((result, error)))
    for i in range(N_TICKS):
        inputs = [grpcclient.InferInput("TOKEN", [1, 1], "INT64"),
                  grpcclient.InferInput("FEATURES", [1, 1, features.shape[1]], "FP32")]
        inputs[0].set_data_from_numpy(tokens[i:i + 1, None].astype(np.int64))
        inputs[1].set_data_from_numpy(features[None, i:i + 1].astype(np.float32))
        client.async_stream_infer("mamba_lob_onnx", inputs, request_id=str(i), sequence_id=905,
                                  sequence_start=i == 0, sequence_end=i == N_TICKS - 1)
    got = {}
    for _ in range(N_TICKS):
        result, error = answers.get(timeout=30)
        assert error is None, error
        got[int(result.get_response().id)] = result.as_numpy("DIR_PROBS")[0, 0]
    client.stop_stream()
    dir_probs, _, _ = offline_rows(offline, symbol)
    assert np.abs(np.stack([got[i] for i in range(N_TICKS)]) - dir_probs).max() <= TOL


def test_concurrent_sequences_share_one_step_execution(server, dataset):
    """The sequence batcher runs ticks of several symbols as one onnxruntime call (server statistics)."""
    import time

    import tritonclient.grpc as grpcclient

    client = grpcclient.InferenceServerClient(server.url)

    def batched_rows():  # {batch size: executions} of mamba_lob_onnx so far
        stats = client.get_inference_statistics("mamba_lob_onnx").model_stats[0]
        return {b.batch_size: b.compute_infer.count for b in stats.batch_stats}

    def executed_since(before):  # ({batch size: new executions}, ticks they ran)
        after = batched_rows()
        grew = {b: after[b] - before.get(b, 0) for b in after if after[b] > before.get(b, 0)}
        return grew, sum(n * b for b, n in grew.items())

    # the backend records a batch's statistics after sending its responses: wait for the counts to settle,
    # before the stream and after it, instead of reading them once
    before = batched_rows()
    while (settled := batched_rows()) != before:
        before = settled
        time.sleep(0.2)
    ticks = [t for s in sorted(dataset) for t in list(interleave({s: dataset[s]}))[:40]]
    many = [dataclasses.replace(t, symbol=f"{t.symbol}-{k}") for k in range(4) for t in ticks]  # 16 sequences
    preds = list(lobclient.stream(sorted(many, key=lambda t: t.ts_ns), url=server.url,
                                  transport=lobclient.Transport(window=64)))
    assert all(p.error is None for p in preds) and len(preds) == len(many)
    expected = len(many) + 16  # every tick ran once, in some batch, plus the END tick closing each sequence
    deadline = time.monotonic() + 10.0
    while (ran := executed_since(before))[1] < expected and time.monotonic() < deadline:
        time.sleep(0.1)
    grew, n_ticks = ran
    time.sleep(0.5)  # nothing more may land: an extra execution would be a tick run twice
    assert executed_since(before) == ran
    assert n_ticks == expected, grew
    assert any(b >= 2 for b in grew), grew


def test_direct_path_with_client_side_tokenizer_equals_the_ensemble(server, dataset, repo):
    ticks = list(interleave(dataset))
    bad = dataclasses.replace(ticks[50], bid_px=np.full(10, np.nan))
    feed = ticks[:50] + [bad] + ticks[50:]
    direct = list(lobclient.stream(feed, url=server.url, tokenizer=repo / "lob_tokenizer" / "1" / "tokenizer.json"))
    ensemble = list(lobclient.stream(feed, url=server.url))
    assert [(p.symbol, p.seq) for p in direct] == [(p.symbol, p.seq) for p in ensemble]
    assert direct[50].error.startswith("LOB_BAD_TICK: ") and "bid_px_1" in direct[50].error
    assert ensemble[50].error is not None and "bid_px_1" in ensemble[50].error
    ok = [i for i, p in enumerate(ensemble) if p.error is None]
    assert len(ok) == len(feed) - 1 and all(direct[i].error is None for i in ok)
    np.testing.assert_array_equal(np.stack([direct[i].dir_probs for i in ok]), np.stack([ensemble[i].dir_probs for i in ok]))
    np.testing.assert_array_equal(np.stack([direct[i].topk_ids for i in ok]), np.stack([ensemble[i].topk_ids for i in ok]))
    assert {direct[i].model_version for i in ok} == {ensemble[0].model_version}
