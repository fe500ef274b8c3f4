"""``lob stream``: replay recorded ticks through the server as a live feed and record its answers.

Every symbol of the dataset becomes its own sequence; ticks of all symbols are interleaved by
timestamp (ties: symbol order, then row order) and sent over one gRPC stream with `lobclient`.
The output has exactly the columns and dtypes of ``lob predict``, rows sorted as it sorts them
(symbol, then the symbol's tick order), so the two files compare row for row.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Iterator

import numpy as np

import lobclient
from lob.data.schema import Ticks, load_dataset
from lob.io import write_predictions


def interleave(dataset: dict[str, Ticks]) -> Iterator[lobclient.Tick]:
    """The ticks of every symbol, merged in time order, as `lobclient.Tick`s."""
    symbols = sorted(dataset)
    ts = np.concatenate([dataset[s].ts_ns for s in symbols])  # (N,)
    sym = np.concatenate([np.full(len(dataset[s]), i) for i, s in enumerate(symbols)])
    row = np.concatenate([np.arange(len(dataset[s])) for s in symbols])
    for k in np.lexsort((row, sym, ts)):
        t, i = dataset[symbols[sym[k]]], row[k]
        yield lobclient.Tick(t.symbol or symbols[sym[k]], int(t.ts_ns[i]), t.bid_px[i], t.bid_sz[i], t.ask_px[i],
                             t.ask_sz[i], float(t.trade_px[i]), float(t.trade_sz[i]), int(t.trade_side[i]))


def replay(url: str, data: Path, out: Path, symbols: list[str] | None = None, limit: int | None = None,
           model: str | None = None, **client) -> Path:
    """Stream ``data`` to ``url`` and write the predictions parquet ``out`` (atomically); returns ``out``.
    ``model`` None: `lobclient.stream`'s default for the path (``lob_stream``; the step model with a
    ``tokenizer``). ``client``: more `lobclient.stream` options (transport, recovery, tls, tokenizer).

    Raises `lobclient.TickFailed` at the first tick the server refuses (recorded ticks are valid, so
    that is a server or model fault) and writes nothing then.
    """
    from rich.console import Console

    if limit is not None and limit < 1:
        raise ValueError(f"limit must be >= 1, got {limit}")
    dataset = load_dataset(data, symbols)
    if limit is not None:
        dataset = {s: t.slice(0, limit) for s, t in dataset.items()}
    started = time.perf_counter()
    preds = list(lobclient.stream(interleave(dataset), url=url, model=model, errors="raise", **client))
    elapsed = time.perf_counter() - started
    save_predictions(out, preds)
    latency_ms = 1e3 * np.array([p.latency_s for p in preds])
    p50, p90, p99 = np.percentile(latency_ms, [50, 90, 99])
    Console(stderr=True).print(
        f"{len(preds):,} ticks of {len(dataset)} symbols via {model or 'the default model'} at {url} "
        f"(model {preds[0].model_version if preds else '-'}) in {elapsed:.2f} s ({len(preds) / elapsed:,.0f} "
        f"ticks/s); per-tick latency p50 {p50:.2f} ms, "
        f"p90 {p90:.2f} ms, p99 {p99:.2f} ms; wrote {out}")
    return Path(out)


def save_predictions(out: Path, preds: list[lobclient.Prediction]) -> Path:
    """``preds`` (none refused) as the predictions table of ``lob predict``, rows sorted as it sorts them."""
    preds = sorted(preds, key=lambda p: (p.symbol, p.seq))
    return write_predictions(out, [p.symbol for p in preds], [p.ts_ns for p in preds], [p.seq for p in preds],
                             np.stack([p.dir_probs for p in preds]),  # (N, H, 3)
                             [int(p.topk_ids[0]) for p in preds], [float(p.topk_probs[0]) for p in preds])
