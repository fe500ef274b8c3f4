"""Catching up after a stall: a symbol's waiting ticks as one chunk vs one tick per request (one server, one
run, same feed; results in bench/burst.md).

Each mode: one `lobclient.stream` of S symbols (synthetic books) with its ``chunk``: ``--history`` ticks per
symbol, then live ticks paced at ``--rate`` ticks/s in all; after ``--live-before`` s the feed stalls for
``--stall`` s (the ticks keep happening but reach the client only when the stall ends, all at once: a feed
handler's pause, a GC, a reconnect), then the live pace goes on for ``--live-after`` s. Drain = from the end of
the stall until every stalled tick is answered; a stalled tick's wait = its answer time - the end of the stall;
the age of live ticks = answer time - scheduled arrival, for the ticks due in the ``--live-after`` s after the
stall (they queue behind the backlog). Answer times are when `lobclient.stream` yields the prediction (in input
order: what the consumer sees).
Each mode runs ``--repeat`` times, the modes interleaved (the machine is shared: compare the spread).
Usage: python bench/burst.py --repo build/model_repository [--symbols 64 --stall 5 --chunks 1,1024]
"""
from __future__ import annotations

import time

import numpy as np

import lobclient
from lob.serving.launcher import TritonServer
from lobclient.synthetic import synthetic_ticks
from recovery import feed_arguments, free_port  # bench/recovery.py


def run_mode(server: TritonServer, symbols: list[str], chunk: int, args, seed: int) -> dict:
    due: dict[tuple[str, int], float] = {}  # (symbol, ts_ns) -> scheduled arrival (live ticks)
    marks: dict[str, float] = {}

    def feed():
        ticks = synthetic_ticks(symbols, None, np.random.default_rng(seed))
        yield from (next(ticks) for _ in range(args.history * len(symbols)))
        start, period = time.monotonic(), 1.0 / args.rate
        stall_from, stall_to = start + args.live_before, start + args.live_before + args.stall
        marks["stall_to"], marks["until"] = stall_to, stall_to + args.live_after
        for i, tick in enumerate(ticks):
            at = start + i * period
            if at > marks["until"]:
                return
            time.sleep(max(0.0, (stall_to if stall_from <= at < stall_to else at) - time.monotonic()))
            due[tick.symbol, tick.ts_ns] = at
            yield tick

    answers = []  # (answered at, symbol, ts_ns, ok)
    transport = lobclient.Transport(window=1 << 20, timeout_s=120)
    for p in lobclient.stream(feed(), url=server.url, transport=transport, chunk=chunk):
        answers.append((time.monotonic(), p.symbol, p.ts_ns, p.ok))
    stall_to = marks["stall_to"]
    stalled = np.array([t - stall_to for t, s, ts, ok in answers
                        if (s, ts) in due and stall_to - args.stall <= due[s, ts] < stall_to])
    after = np.array([t - due[s, ts] for t, s, ts, ok in answers if (s, ts) in due and due[s, ts] >= stall_to])
    return {"chunk": chunk, "stalled": len(stalled), "drain_s": stalled.max(), "wait_p50_ms": 1e3 * np.median(stalled),
            "wait_p99_ms": 1e3 * np.percentile(stalled, 99), "after": len(after),
            "age_p50_ms": 1e3 * np.median(after), "age_p99_ms": 1e3 * np.percentile(after, 99),
            "failed": sum(1 for a in answers if not a[3]), "answers": len(answers)}


def main() -> None:
    ap = feed_arguments(__doc__)
    ap.add_argument("--history", type=int, default=32, help="ticks per symbol before the live pace")
    ap.add_argument("--live-before", type=float, default=2.0, help="seconds of live ticks before the stall")
    ap.add_argument("--stall", type=float, default=5.0, help="seconds the feed stalls")
    ap.add_argument("--live-after", type=float, default=3.0, help="seconds of live ticks after the stall")
    ap.add_argument("--chunks", default="1,1024", help="the stream's chunk in each mode, one run each")
    ap.add_argument("--repeat", type=int, default=3, help="rounds of all modes (interleaved), a row per run")
    args = ap.parse_args()
    symbols = [f"S{i:03d}" for i in range(args.symbols)]
    with TritonServer(args.repo, "cpu", grpc_port=free_port(), http_port=free_port(),
                      metrics_port=free_port()) as server:
        print("| chunk | stalled ticks | drain after the stall (s) | stalled tick's wait p50 / p99 (ms) | "
              "ticks due after | their age p50 / p99 (ms) | failed ticks |")
        print("|---|---|---|---|---|---|---|")
        chunks = [int(c) for c in args.chunks.split(",")]
        for i, chunk in enumerate(chunks * args.repeat):
            r = run_mode(server, symbols, chunk, args, seed=i % len(chunks))
            print(f"| {chunk} | {r['stalled']:,} | **{r['drain_s']:.2f}** | {r['wait_p50_ms']:,.0f} / "
                  f"{r['wait_p99_ms']:,.0f} | {r['after']:,} | {r['age_p50_ms']:,.0f} / {r['age_p99_ms']:,.0f} | "
                  f"{r['failed']} of {r['answers']:,} |", flush=True)


if __name__ == "__main__":
    main()
