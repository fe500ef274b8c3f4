"""Latency at a fixed offered load, with a paced client (what `bench/run_bench.py` reports at half capacity).

perf_analyzer's request-rate mode sends on schedule without waiting for a sequence's previous answer, so
two ticks of one sequence can overtake each other in the ensemble (the tokenizer then sees time go
backwards and refuses the tick). This client keeps at most one tick in flight per sequence: each of
``sequences`` sequences sends one recorded tick every ``sequences / rate`` seconds, their phases spread
evenly, over gRPC (tritonclient's asyncio client, one channel). A tick whose slot comes while the
sequence's previous tick is still in flight goes as soon as that answer arrives and counts as *late*
(the offered load was not met). Latency is client side, from just before the call to its answer; the
first ``warmup_s`` are not counted. Each sequence runs recorded streams back to back (START on a stream's
first tick, END on its last or when time is up).
"""
from __future__ import annotations

import asyncio
import itertools
import resource
import statistics
import time

import numpy as np


def _percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


async def _run(url: str, model: str, streams: list[list[dict]], rate: float, sequences: int, seconds: float,
               warmup_s: float, first_id: int) -> dict:
    import tritonclient.grpc.aio as grpcclient
    from tritonclient.utils import triton_to_np_dtype

    client = grpcclient.InferenceServerClient(url)
    meta = await client.get_model_metadata(model, as_json=True)
    wire = {i["name"]: i["datatype"] for i in meta["inputs"]}  # "FP64", "INT8", ...
    dtypes = {name: triton_to_np_dtype(t) for name, t in wire.items()}
    period = sequences / rate
    loop = asyncio.get_running_loop()
    t0 = loop.time() + 0.2
    t_measure, t_end = t0 + warmup_s, t0 + warmup_s + seconds
    latencies, late, sent = [], [0], [0]
    ids = itertools.count(first_id)

    def inputs(tick: dict) -> list:
        out = []
        for name, value in tick.items():  # run_bench.input_data's {"content", "shape"} (T = 1 first)
            arr = np.asarray(value["content"], dtype=dtypes[name]).reshape(1, *value["shape"])  # (1, 1, ...)
            inp = grpcclient.InferInput(name, list(arr.shape), wire[name])
            inp.set_data_from_numpy(arr)
            out.append(inp)
        return out

    async def sequence(i: int) -> None:
        slot = t0 + i * period / sequences
        for stream in itertools.islice(itertools.cycle(streams), i, None, sequences):
            sid = next(ids)
            for k, tick in enumerate(stream):
                delay = slot - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                elif -delay > 1e-3 and slot >= t_measure:
                    late[0] += 1
                last = k == len(stream) - 1 or slot + period >= t_end
                start = time.perf_counter()
                await client.infer(model, inputs(tick), sequence_id=sid, sequence_start=k == 0, sequence_end=last)
                if slot >= t_measure:
                    latencies.append(time.perf_counter() - start)
                    sent[0] += 1
                slot += period
                if last:
                    break
            if slot >= t_end:
                return

    cpu0, wall0 = resource.getrusage(resource.RUSAGE_SELF), time.monotonic()
    try:
        await asyncio.gather(*(sequence(i) for i in range(sequences)))
    finally:
        await client.close()
    cpu1, wall = resource.getrusage(resource.RUSAGE_SELF), time.monotonic() - wall0
    cpu = (cpu1.ru_utime - cpu0.ru_utime + cpu1.ru_stime - cpu0.ru_stime) / wall
    return {"throughput": sent[0] / seconds, "p50_us": _percentile(latencies, 50) * 1e6,
            "p99_us": _percentile(latencies, 99) * 1e6, "mean_us": statistics.fmean(latencies) * 1e6,
            "late": late[0], "ticks": sent[0], "client_cores": cpu}


def paced(url: str, model: str, streams: list[list[dict]], rate: float, sequences: int = 64,
          seconds: float = 10.0, warmup_s: float = 2.0, first_id: int = 1 << 40) -> dict:
    """Offer ``rate`` ticks/s over ``sequences`` paced sequences for ``seconds`` (after ``warmup_s``); returns
    achieved ticks/s, p50/p99/mean latency (µs), late ticks, ticks measured and the client's CPU in cores."""
    if rate <= 0 or sequences < 1:
        raise ValueError(f"rate must be > 0 and sequences >= 1, got {rate}, {sequences}")
    return asyncio.run(_run(url, model, streams, rate, sequences, seconds, warmup_s, first_id))
