"""Backfill: a recorded day of several symbols through the server in chunks vs `lob predict` in-process, on
the same machine: throughput of each and served == offline per tick (results in bench/recovery.md).

`lob predict` (the offline scorer: tokenizer batch path + the model's sequence forward in torch) runs first,
then `lob stream --chunk N` (`lob.serving.replay`, the ensemble path, or the direct path with
``--tokenizer``) for each N of ``--chunks`` against one CPU-profile server. Throughput = ticks / wall seconds
of each call (the server's start not counted).
Usage: python bench/backfill.py --run RUN --data DAY [--chunks 1,64,256,1024] [--direct]
"""
from __future__ import annotations

import argparse
import socket
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

import lobclient
from lob.contract import PROB_COLUMNS
from lob.evaluation.predict import predict
from lob.export.repository import export_repository
from lob.serving.launcher import TritonServer
from lob.serving.replay import replay


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def probs(path: Path) -> np.ndarray:
    t = pq.read_table(path)
    return np.stack([t[c].to_numpy() for c in PROB_COLUMNS], axis=1)  # (N, H * 3), rows (symbol, seq)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", type=Path, required=True)
    ap.add_argument("--data", type=Path, required=True, help="the day(s) to backfill (a dataset folder)")
    ap.add_argument("--chunks", default="1,64,256,1024")
    ap.add_argument("--direct", action="store_true", help="also the direct path (tokenizer on the client)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        t0 = time.perf_counter()
        offline = predict(args.run, args.data, tmp / "offline.parquet")
        predict_s = time.perf_counter() - t0
        ref = probs(offline)
        n = len(ref)
        print(f"lob predict (in-process): {n:,} ticks in {predict_s:.2f} s = {n / predict_s:,.0f} ticks/s\n")
        repo = tmp / "model_repository"
        export_repository(args.run, repo)
        paths = [("ensemble", {})]
        if args.direct:
            paths.append(("direct", {"tokenizer": repo / "lob_tokenizer" / "1" / "tokenizer.json"}))
        print("| path | chunk | ticks/s | vs lob predict | max abs dp vs offline |")
        print("|---|---|---|---|---|")
        with TritonServer(repo, "cpu", grpc_port=free_port(), http_port=free_port(), metrics_port=free_port()) as srv:
            for name, extra in paths:
                for chunk in (int(c) for c in args.chunks.split(",")):
                    out = tmp / f"served-{name}-{chunk}.parquet"
                    t0 = time.perf_counter()
                    replay(srv.url, args.data, out, chunk=chunk,
                           transport=lobclient.Transport(window=max(1024, 8 * chunk)), **extra)
                    served_s = time.perf_counter() - t0
                    dp = np.abs(probs(out) - ref).max()
                    print(f"| {name} | {chunk} | {n / served_s:,.0f} | {predict_s / served_s:.2f} | {dp:.1e} |",
                          flush=True)


if __name__ == "__main__":
    main()
