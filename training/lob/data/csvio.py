"""CSV reading and error reporting shared by the importers.

Every problem becomes a ``TickDataError`` naming the file, the 1-based line a user would open
(header counted) and the field; numbers are parsed by pyarrow's CSV reader.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from lob.data.schema import TickDataError


@dataclass(frozen=True)
class CsvBytes:
    """A CSV held in memory (e.g. a zip member, read without extracting): readable wherever a CSV path is.

    ``str()`` is ``source``, the name errors give (``day.zip member X_message_1.csv``); ``name`` is its file name.
    """
    source: str
    name: str
    data: bytes

    def __str__(self) -> str:
        return self.source


def _input(path: Path | CsvBytes):
    """What pyarrow reads: the path, or a fresh reader over the bytes (each read starts at the beginning)."""
    return pa.BufferReader(path.data) if isinstance(path, CsvBytes) else path


def _parse_options(on_invalid=None) -> pacsv.ParseOptions:
    # blank lines are kept as all-empty rows so that data row i is always line i + first_line
    return pacsv.ParseOptions(invalid_row_handler=on_invalid, ignore_empty_lines=False)


def csv_header(path: Path | CsvBytes, header: bool) -> list[str]:
    """The header's names (``header``) or, for a header-less file, ``f0..f{n-1}`` for the first line's n fields."""
    try:
        reader = pacsv.open_csv(_input(path), read_options=pacsv.ReadOptions(use_threads=False, autogenerate_column_names=not header),
                                parse_options=_parse_options(lambda row: "skip"))
    except pa.ArrowInvalid as err:  # empty file
        raise TickDataError(str(path), None, None, f"cannot read: {err}") from None
    return reader.schema.names


def read_numeric_csv(path: Path | CsvBytes, columns: dict[str, pa.DataType], header: bool,
                     field_name=lambda j: f"column {j + 1}") -> dict[str, np.ndarray]:
    """Read a CSV whose fields are all numbers into ``{name: (N,) array}``, in file order.

    ``columns`` maps each expected column, in order, to its arrow type; a header, when present, must
    name exactly these columns. Trailing blank lines are ignored. Any other problem raises
    ``TickDataError(path, line, field, ...)`` with the 1-based line number (header counted): wrong
    number of fields, an empty or NaN value, a value that is not a number, an infinite value.
    ``field_name(j)`` names the j-th (0-based) column beyond ``columns`` in the error for extra fields.
    """
    names = list(columns)
    first_line = 2 if header else 1
    if header:
        found = csv_header(path, header=True)
        for j, name in enumerate(names):
            if j >= len(found) or found[j] != name:
                problem = f"header column {j + 1} is {found[j]!r}" if j < len(found) else "missing from the header"
                raise TickDataError(str(path), 1, name, f"{problem}; expected columns {names}")
        if len(found) > len(names):
            raise TickDataError(str(path), 1, found[len(names)], f"unexpected column; expected columns {names}")

    invalid: list = []

    def on_invalid(row) -> str:
        invalid.append(row)
        return "error"

    read_options = pacsv.ReadOptions(use_threads=False, column_names=None if header else names)  # threads lose row numbers
    try:
        table = pacsv.read_csv(_input(path), read_options=read_options, parse_options=_parse_options(on_invalid),
                               convert_options=pacsv.ConvertOptions(column_types=columns))
    except pa.ArrowInvalid as err:
        if invalid:
            row = invalid[0]
            j = row.actual_columns
            field = names[j] if j < len(names) else field_name(len(names))
            raise TickDataError(str(path), row.number, field,
                                f"{row.actual_columns} fields, expected {row.expected_columns}") from None
        raise _unparsable(path, columns, read_options, first_line, err) from None

    n = table.num_rows
    null_rows = np.ones(n, dtype=bool)
    for name in names:
        null_rows &= table[name].is_null().to_numpy(zero_copy_only=False)
    while n and null_rows[n - 1]:  # trailing blank lines
        n -= 1
    out = {}
    for name in names:
        col = table[name].slice(0, n)
        if col.null_count:
            i = int(np.flatnonzero(col.is_null().to_numpy(zero_copy_only=False))[0])
            raise TickDataError(str(path), i + first_line, name, "empty or NaN value")
        values = col.to_numpy()
        if values.dtype.kind == "f" and not np.isfinite(values).all():
            i = int(np.flatnonzero(~np.isfinite(values))[0])
            raise TickDataError(str(path), i + first_line, name, f"{values[i]} is not a finite number")
        out[name] = values
    if n == 0:
        raise TickDataError(str(path), None, None, "no data rows")
    return out


def _unparsable(path: Path | CsvBytes, columns: dict[str, pa.DataType], read_options, first_line: int, err) -> TickDataError:
    """The error for the first value arrow could not convert: re-read as text, bisect each column."""
    text = pacsv.read_csv(_input(path), read_options=read_options, parse_options=_parse_options(),
                          convert_options=pacsv.ConvertOptions(column_types={c: pa.string() for c in columns},
                                                               strings_can_be_null=True))  # nulls as in the typed read

    def converts(col, typ) -> bool:
        try:
            pc.cast(col, typ)
            return True
        except pa.ArrowInvalid:
            return False

    first = None
    for name, typ in columns.items():
        col = text[name].combine_chunks()
        if converts(col, typ):
            continue
        lo, hi = 0, len(col)  # col[:lo] converts, col[:hi] does not
        while hi - lo > 1:
            mid = (lo + hi) // 2
            lo, hi = (mid, hi) if converts(col.slice(0, mid), typ) else (lo, mid)
        if first is None or hi - 1 < first[0]:
            first = (hi - 1, name, col[hi - 1].as_py(), typ)
    if first is None:
        return TickDataError(str(path), None, None, str(err))
    i, name, value, typ = first
    kind = "an integer" if pa.types.is_integer(typ) else "true or false" if pa.types.is_boolean(typ) else "a number"
    return TickDataError(str(path), i + first_line, name, f"{value!r} is not {kind}")


def fail_first(mask: np.ndarray, source: Path, lines: np.ndarray, field, problem) -> None:
    """Raise for the earliest True of ``mask`` ((N,) or (N, C)); ``field``/``problem`` may be callables of (row, col)."""
    hits = np.argwhere(mask)
    if hits.size:
        i, j = (int(hits[0][0]), int(hits[0][1]) if mask.ndim == 2 else 0)
        name = field(i, j) if callable(field) else field
        raise TickDataError(str(source), int(lines[i]), name, problem(i, j) if callable(problem) else problem)


def print_import_summary(title: str, rows_read: int, written: dict[Path, int], dropped: dict[str, int]) -> None:
    """A short rich table: rows read, written per file, dropped per reason."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title, show_header=False, title_justify="left")
    table.add_row("rows read", f"{rows_read:,}")
    for path, n in written.items():
        table.add_row("written", f"{n:,}  → {path}")
    for reason, n in dropped.items():
        table.add_row(f"dropped: {reason}", f"{n:,}")
    Console().print(table)
