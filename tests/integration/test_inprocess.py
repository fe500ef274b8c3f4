"""`lob.serving.inprocess`: the build repository run in this process answers exactly what the server answers."""
from __future__ import annotations

import numpy as np
import pytest

import lobclient
from lob.data.schema import load_dataset
from lob.serving.inprocess import InProcess
from lob.serving.replay import interleave

from .test_errors import with_level

pytestmark = pytest.mark.server


def test_in_process_predictions_equal_the_servers_bit_for_bit(server, repo, dataset_dir):
    data = load_dataset(dataset_dir)
    ticks = list(interleave({s: data[s].slice(0, 60) for s in sorted(data)[:3]}))
    ticks[25] = with_level(ticks[25], "ask_px", 0, np.nan)  # refused by both tokenizers; the state stays put
    recovery = lobclient.Recovery(rewarm_ticks=16)  # so that `warm` turns True within the stream
    served = list(lobclient.stream(ticks, url=server.url, recovery=recovery))
    local = InProcess(repo, rewarm_ticks=recovery.rewarm_ticks)
    # one tick per call, then one call per run of distinct symbols (batches of 3 rows)
    here = [p for t in ticks[:30] for p in local.predict([t])] + _batched(local, ticks[30:])
    assert len(here) == len(served) == len(ticks)
    for s, h in zip(served, here):
        assert (h.symbol, h.ts_ns, h.seq, h.warm, h.model_version) == (s.symbol, s.ts_ns, s.seq, s.warm, s.model_version)
        assert (h.error is None) == (s.error is None), (h.error, s.error)
        if s.error is None:
            for field in ("dir_probs", "topk_ids", "topk_probs"):
                np.testing.assert_array_equal(getattr(h, field), getattr(s, field), err_msg=f"{field} {s.symbol} {s.seq}")
    assert sum(p.error is not None for p in served) == 1 and sum(bool(p.warm) for p in served) > 0  # not vacuous
    assert served[25].error and "ask_px" in served[25].error


def _batched(local: InProcess, ticks: list) -> list:
    """``local.predict`` over runs of distinct symbols (one call per run), predictions in tick order."""
    out, run = [], []
    for t in ticks:
        if any(r.symbol == t.symbol for r in run):
            out += local.predict(run)
            run = []
        run.append(t)
    return out + (local.predict(run) if run else [])
