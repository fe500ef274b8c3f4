"""Which cancel rule of `lob.data.lobster_export` fits a real day: log time-to-cancel within 500-message
sequences from the synthetic order ids (oldest-first and newest-first) against the same from the real ids.

    python bench/cancel_rule.py ../shared/data/lobster/LOBSTER_SampleFile_GOOG_2012-06-21_10.zip
"""
from __future__ import annotations

import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import pyarrow as pa

import lob.data.lobster_export as ex
from lob.data.csvio import CsvBytes, read_numeric_csv
from lob.data.lobster import MESSAGE_COLUMNS, import_lobster_zips
from lob.data.schema import read_ticks
from lob.realism.lobbench import SEQ_LEN, Sequence, _time_to_cancel, l1, w1


def log_ttc(m: ex.Messages) -> np.ndarray:
    return np.concatenate([_time_to_cancel(Sequence(ex.Messages(*(getattr(m, f)[a:a + SEQ_LEN]
                                                                  for f in m.__dataclass_fields__)),
                                                    None, None, None, None, 1.0))
                           for a in range(0, len(m.type), SEQ_LEN)])


def main(zip_path: Path) -> None:
    with zipfile.ZipFile(zip_path) as zf:
        (name,) = [n for n in zf.namelist() if "_message_" in n]
        raw = read_numeric_csv(CsvBytes(str(zip_path), name, zf.read(name)),
                               {c: pa.float64() for c in MESSAGE_COLUMNS}, header=False)
    real = ex.Messages(np.round(raw["time"] * 1e9).astype(np.int64), raw["type"].astype(np.int8),
                       raw["order_id"].astype(np.int64), raw["size"], raw["price"].astype(np.int64),
                       raw["direction"].astype(np.int8))
    with tempfile.TemporaryDirectory() as tmp:
        (path,) = import_lobster_zips([zip_path], Path(tmp), tick_size=0.01)
        t = read_ticks(path)
    if len(t) != len(real.type):
        raise SystemExit(f"{zip_path}: the import dropped rows; the ids no longer line up")
    r = log_ttc(real)
    print(f"real ids: {r.size} cancels, median time-to-cancel {np.exp(np.median(r)):.3g} s; "
          f"types {np.bincount(real.type, minlength=8)[1:].tolist()}")
    for oldest in (True, False):
        ex.CANCEL_OLDEST_FIRST = oldest
        m = ex.synthesize_messages(t, int(t.meta["n_levels"]), 100)
        v = log_ttc(m)
        print(f"{'oldest' if oldest else 'newest'}-first: {v.size} cancels, median {np.exp(np.median(v)):.3g} s, "
              f"L1 {l1(v, r):.3f}, W1 {w1(v, r):.3f}; types {np.bincount(m.type, minlength=8)[1:].tolist()}")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
