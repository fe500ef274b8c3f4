"""The canonical tick table: one row per book event, every data source is imported into it.

A dataset is a folder of parquet files, one per symbol and trading day::

    DIR/<SYMBOL>/<YYYY-MM-DD>.parquet

Columns (always ``N_LEVELS`` = 10 levels per side; level 1 is the best):

==================  =======  ==============================================================
column              dtype    meaning
==================  =======  ==============================================================
symbol              string   instrument id (same for every row of a file)
ts_ns               int64    event time, ns since the Unix epoch (UTC); non-decreasing
bid_px_1..10        float64  bid price of level k (price units, e.g. USD); 0 = empty level
bid_sz_1..10        float64  bid size of level k (shares/contracts/coins); 0 = empty level
ask_px_1..10        float64  ask price of level k; 0 = empty level
ask_sz_1..10        float64  ask size of level k; 0 = empty level
trade_px            float64  trade print price if this event was a trade, else 0
trade_sz            float64  trade print size if this event was a trade, else 0
trade_side          int8     aggressor: +1 buyer-initiated, -1 seller-initiated, 0 no trade
==================  =======  ==============================================================

The book columns hold the book *after* the event. Sources with fewer than 10 levels (Binance
bookTicker has 1) leave the deeper levels empty (price 0, size 0); empty levels are always the
deepest ones. Level 1 is never empty on either side and the book is never crossed or locked
(best bid < best ask). File-level metadata (parquet schema metadata, key ``lob``) holds
``{"symbol", "date", "tick_size", "n_levels", "source"}``, and ``session_starts_ns`` (the times a new
session starts inside the data, e.g. a book rebuilt after a feed gap) where an importer records them;
`Ticks.concat` keeps the union of its parts'.

``Ticks``, ``validate`` and ``TickDataError`` are `lobtick.ticks`'s (numpy only, the client's tokenizer uses them);
this module adds the columns and the parquet I/O.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from lobtick.ticks import TickDataError, Ticks, validate

from lob.contract import N_LEVELS
from lob.io import atomic_write

SIDES = ("bid", "ask")
BOOK_COLUMNS = [f"{side}_{q}_{k}" for side in SIDES for q in ("px", "sz") for k in range(1, N_LEVELS + 1)]
COLUMNS = ["symbol", "ts_ns", *BOOK_COLUMNS, "trade_px", "trade_sz", "trade_side"]
META_KEY = b"lob"


# ---------------------------------------------------------------------------------------------- parquet I/O

def to_arrow(t: Ticks):
    import pyarrow as pa

    cols = {"symbol": pa.array([t.symbol] * len(t), pa.string()).dictionary_encode(), "ts_ns": pa.array(t.ts_ns, pa.int64())}
    for side in SIDES:
        for q in ("px", "sz"):
            arr = getattr(t, f"{side}_{q}")
            for k in range(N_LEVELS):
                cols[f"{side}_{q}_{k + 1}"] = pa.array(arr[:, k], pa.float64())
    cols["trade_px"] = pa.array(t.trade_px, pa.float64())
    cols["trade_sz"] = pa.array(t.trade_sz, pa.float64())
    cols["trade_side"] = pa.array(t.trade_side, pa.int8())
    table = pa.table(cols)
    return table.replace_schema_metadata({META_KEY: json.dumps({"symbol": t.symbol, **t.meta}, sort_keys=True).encode()})


def write_ticks(path: Path, t: Ticks) -> Path:
    """Validate and write one symbol-day file atomically."""
    import pyarrow.parquet as pq

    validate(t, str(path))
    table = to_arrow(t)
    atomic_write(Path(path), lambda tmp: pq.write_table(table, tmp, compression="zstd"))
    return Path(path)


def day_path(root: Path, symbol: str, date: str) -> Path:
    return Path(root) / symbol / f"{date}.parquet"


def read_ticks(path: Path, validate_rows: bool = True) -> Ticks:
    """Read one canonical parquet file (checking columns and, by default, every row)."""
    import pyarrow.parquet as pq

    path = Path(path)
    table = pq.read_table(path)
    missing = [c for c in COLUMNS if c not in table.column_names]
    if missing:
        raise TickDataError(str(path), None, missing[0], f"missing column(s) {missing}")
    raw_meta = (table.schema.metadata or {}).get(META_KEY)
    meta = json.loads(raw_meta) if raw_meta else {}
    symbol = meta.pop("symbol", None) or (table.column("symbol")[0].as_py() if table.num_rows else path.parent.name)

    def levels(side: str, q: str) -> np.ndarray:
        return np.stack([table.column(f"{side}_{q}_{k}").to_numpy(zero_copy_only=False) for k in range(1, N_LEVELS + 1)],
                        axis=1).astype(np.float64)

    t = Ticks(
        ts_ns=table.column("ts_ns").to_numpy(zero_copy_only=False).astype(np.int64),
        bid_px=levels("bid", "px"), bid_sz=levels("bid", "sz"), ask_px=levels("ask", "px"), ask_sz=levels("ask", "sz"),
        trade_px=table.column("trade_px").to_numpy(zero_copy_only=False).astype(np.float64),
        trade_sz=table.column("trade_sz").to_numpy(zero_copy_only=False).astype(np.float64),
        trade_side=table.column("trade_side").to_numpy(zero_copy_only=False).astype(np.int8),
        symbol=symbol, meta=meta,
    )
    if validate_rows:
        validate(t, str(path))
    return t


def dataset_files(root: Path) -> list[Path]:
    """All symbol-day files under ``root``, sorted by (symbol, date)."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such data folder")
    files = sorted(p for p in root.glob("*/*.parquet") if not p.name.startswith("."))
    if not files:
        raise FileNotFoundError(f"{root}: no <SYMBOL>/<YYYY-MM-DD>.parquet files")
    return files


def load_dataset(root: Path, symbols: list[str] | None = None) -> dict[str, Ticks]:
    """Every symbol's days concatenated in time order: ``{symbol: Ticks}`` sorted by symbol.

    A symbol's ticks across days form one sequence (that is what a client streams).
    """
    by_symbol: dict[str, list[Ticks]] = {}
    for f in dataset_files(root):
        if symbols is not None and f.parent.name not in symbols:
            continue
        by_symbol.setdefault(f.parent.name, []).append(read_ticks(f))
    if symbols is not None:
        unknown = sorted(set(symbols) - set(by_symbol))
        if unknown:
            raise KeyError(f"{root}: no data for symbol(s) {unknown}; have {sorted(by_symbol)}")
    out = {}
    for sym in sorted(by_symbol):
        t = Ticks.concat(by_symbol[sym])
        validate(t, f"{root}/{sym}")  # days must also be in order across files
        out[sym] = t
    return out
