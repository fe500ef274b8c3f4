"""Where a chunked re-warm's time goes on the server: the tokenizer's chunk path and the step graph's Loop, per
tick, in one process (the two stages of the ensemble, which pipeline on separate cores).

    python bench/rewarm_cost.py --repo out/bench/model_repository

One symbol's ``--chunk`` synthetic ticks through ``Tokenizer.step_chunk`` (the server's path for a chunk), then
the exported step graph (onnxruntime CPU, 1 thread, as the config sets it) on those tokens for B sequences at
once (B = 1 and a re-warm's batch of chunks; bench/recovery.md saw up to 38 chunks of 1024 in one execute).
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

from lob.contract import FEATURES, STEP_MODEL, TOKEN, TOKENIZER_MODEL
from lob.tokenizer import Ticks, Tokenizer
from lobclient.synthetic import synthetic_ticks


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repo", type=Path, required=True, help="an exported model repository (lob export)")
    ap.add_argument("--chunk", type=int, default=1024)
    ap.add_argument("--batches", default="1,38")
    args = ap.parse_args()
    tok = Tokenizer.load(args.repo / TOKENIZER_MODEL / "1" / "tokenizer.json")
    gen = synthetic_ticks(["A"], None, np.random.default_rng(0))
    raw = [next(gen) for _ in range(args.chunk)]
    column = lambda f, dtype: np.array([getattr(t, f) for t in raw], dtype)  # noqa: E731
    ticks = Ticks(column("ts_ns", np.int64), *(column(f, np.float64) for f in
                                              ("bid_px", "bid_sz", "ask_px", "ask_sz", "trade_px", "trade_sz")),
                  column("trade_side", np.int8))
    t0, n = time.perf_counter(), 5
    for _ in range(n):
        tokens, features, _ = tok.step_chunk(ticks, tok.init_state())
    dt = (time.perf_counter() - t0) / n
    print(f"| tokenizer step_chunk | 1 | {args.chunk} | {dt * 1e3:.1f} | {dt / args.chunk * 1e6:.1f} |")
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = opts.inter_op_num_threads = 1
    session = ort.InferenceSession(str(args.repo / STEP_MODEL / "1" / "model.onnx"), opts,
                                   providers=["CPUExecutionProvider"])
    for b in map(int, args.batches.split(",")):
        feed = {i.name: np.zeros([b, *i.shape[1:]], np.float32) for i in session.get_inputs()
                if i.name not in (TOKEN, FEATURES)}
        feed.update({TOKEN: np.tile(tokens[None], (b, 1)), FEATURES: np.tile(features[None], (b, 1, 1))})
        t0 = time.perf_counter()
        session.run(None, feed)
        dt = time.perf_counter() - t0
        print(f"| step graph (Loop over T) | {b} | {args.chunk} | {dt * 1e3:.1f} | {dt / b / args.chunk * 1e6:.1f} |")


if __name__ == "__main__":
    main()
