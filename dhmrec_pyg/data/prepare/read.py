"""Reading input tables: the interaction table (CSV or Parquet) and its cells (IDs, timestamps).

Every problem raises :class:`~dhmrec_pyg.data.errors.DataError` naming the file, the column and
the line.
"""

from __future__ import annotations

import csv
import datetime as _dt
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataError

__all__ = [
    "CSV_SUFFIXES",
    "PARQUET_SUFFIXES",
    "Interactions",
    "cell_to_str",
    "check_file",
    "csv_rows",
    "read_interactions",
    "read_table",
    "to_time",
]

CSV_SUFFIXES = {".csv", ".tsv", ".txt"}
PARQUET_SUFFIXES = {".parquet", ".pq"}


def check_file(path: Path, what: str) -> None:
    """Raise a :class:`DataError` naming ``path`` unless it is an existing file."""
    if not path.exists():
        raise DataError(f"{path}: {what} not found")
    if not path.is_file():
        raise DataError(f"{path}: {what} must be a file, found a folder")


def _detect_delimiter(path: Path, first_line: str) -> str:
    """The most frequent of ``,``, ``;`` and tab in the header line (comma if none; tab for .tsv)."""
    if path.suffix.lower() == ".tsv":
        return "\t"
    counts = {d: first_line.count(d) for d in (",", ";", "\t")}
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] else ","


def csv_rows(path: Path, delimiter: str | None = None) -> tuple[Any, str, Any]:
    """Open ``path`` and return ``(csv.reader, delimiter, file)``; the caller closes the file.

    The delimiter, unless given, is detected from the first non-blank line.
    """
    try:
        fh = open(path, newline="", encoding="utf-8-sig")
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror or e})") from e
    try:
        first = ""
        pos = fh.tell()
        for line in fh:
            if line.strip():
                first = line
                break
        fh.seek(pos)
    except UnicodeDecodeError as e:
        fh.close()
        raise DataError(f"{path}: not UTF-8 text ({e})") from e
    delim = delimiter or _detect_delimiter(path, first)
    return csv.reader(fh, delimiter=delim), delim, fh


def cell_to_str(value: Any) -> str:
    """Normalise one ID cell to text: None -> '', integral floats without '.0', bytes decoded."""
    if value is None:
        return ""
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace").strip()
    if isinstance(value, float):
        if math.isnan(value):
            return ""
        if value.is_integer():
            return str(int(value))
    return str(value).strip()


def _read_parquet(path: Path, columns: Sequence[str]) -> tuple[dict[str, list[Any]], list[int]]:
    """:func:`read_table` of a Parquet file: cells as Python values, rows numbered from 1."""
    try:
        import pyarrow.parquet as pq
    except ImportError as e:
        raise DataError(
            f"{path}: reading Parquet needs pyarrow (pip install pyarrow), or save the table as CSV"
        ) from e
    try:
        schema_names = list(pq.read_schema(path).names)
    except Exception as e:  # pyarrow raises ArrowInvalid, OSError, ...
        raise DataError(f"{path}: cannot be read as Parquet ({type(e).__name__}: {e})") from e
    for col in columns:
        if col not in schema_names:
            raise DataError(f"{path}: missing column {col!r} (available columns: {schema_names})")
    try:
        table = pq.read_table(path, columns=list(dict.fromkeys(columns)))
    except Exception as e:
        raise DataError(f"{path}: cannot be read as Parquet ({type(e).__name__}: {e})") from e
    values = {col: table.column(col).to_pylist() for col in columns}
    return values, list(range(1, table.num_rows + 1))


def _column_index(path: Path, header: list[str], columns: Sequence[str]) -> dict[str, int]:
    """The position of each of ``columns`` in a CSV ``header``, or a :class:`DataError`."""
    idx = {}
    for col in columns:
        if col not in header:
            hint = "" if len(header) > 1 else " (is the delimiter one of ',', ';' or tab?)"
            raise DataError(f"{path}: missing column {col!r} (available columns: {header}){hint}")
        idx[col] = header.index(col)
    return idx


def _read_csv_table(path: Path, columns: Sequence[str]) -> tuple[dict[str, list[Any]], list[int]]:
    """:func:`read_table` of a CSV file: a header row, then rows of as many fields."""
    reader, delim, fh = csv_rows(path)
    with fh:
        try:
            header: list[str] | None = None
            for row in reader:
                if any(c.strip() for c in row):
                    header = [c.strip() for c in row]
                    break
            if header is None:
                raise DataError(f"{path}: file is empty, expected a header row naming the columns {list(columns)}")
            idx = _column_index(path, header, columns)
            ncol = len(header)
            values: dict[str, list[Any]] = {col: [] for col in columns}
            lines: list[int] = []
            for row in reader:
                if not row or not any(c.strip() for c in row):
                    continue
                if len(row) != ncol:
                    raise DataError(
                        f"{path}: line {reader.line_num} has {len(row)} fields, expected {ncol} like the "
                        f"header {header} (delimiter {delim!r})"
                    )
                for col in columns:
                    values[col].append(row[idx[col]].strip())
                lines.append(reader.line_num)
        except UnicodeDecodeError as e:
            raise DataError(f"{path}: not UTF-8 text ({e})") from e
        except csv.Error as e:
            raise DataError(f"{path}: malformed CSV near line {reader.line_num} ({e})") from e
    return values, lines


def read_table(path: Path, columns: Sequence[str], what: str) -> tuple[dict[str, list[Any]], list[int]]:
    """Read ``columns`` of a CSV or Parquet table.

    Args:
        path: the table (``.parquet`` / ``.pq``: Parquet; anything else: CSV with a header row and
            the delimiter ``,``, ``;`` or tab).
        columns: the columns to read.
        what: what the file is, for the error when it is missing.

    Returns:
        ``(values, line_numbers)``: CSV cells as stripped strings (Parquet cells as Python values)
        and, per row, its line in the file (CSV) or its 1-based row number (Parquet).
    """
    check_file(path, what)
    if path.suffix.lower() in PARQUET_SUFFIXES:
        return _read_parquet(path, columns)
    return _read_csv_table(path, columns)


def to_time(value: Any, path: Path, column: str, line: int) -> float:
    """Convert one timestamp cell (number, numeric text, ISO 8601 text, date/datetime) to seconds."""
    if isinstance(value, bool):
        value = None
    if isinstance(value, (int, float)):
        out = float(value)
    elif isinstance(value, _dt.datetime):
        out = (value if value.tzinfo else value.replace(tzinfo=_dt.timezone.utc)).timestamp()
    elif isinstance(value, _dt.date):
        out = _dt.datetime(value.year, value.month, value.day, tzinfo=_dt.timezone.utc).timestamp()
    elif isinstance(value, str) and value.strip():
        text = value.strip()
        try:
            out = float(text)
        except ValueError:
            try:
                parsed = _dt.datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith("Z") else text)
            except ValueError:
                raise DataError(
                    f"{path}: column {column!r} holds {text[:40]!r} on line {line}, not a number or an "
                    "ISO 8601 date/time"
                ) from None
            return to_time(parsed, path, column, line)
    else:
        raise DataError(f"{path}: column {column!r} is empty on line {line}; every row needs a timestamp")
    if not math.isfinite(out):
        raise DataError(f"{path}: column {column!r} holds {value!r} on line {line}; timestamps must be finite")
    return out


@dataclass
class Interactions:
    """The interactions read, as codes into their unique user and item IDs, and what was dropped.

    :mod:`~dhmrec_pyg.data.prepare.filter` updates the codes (and counts) in place.
    """

    uniq_u: np.ndarray
    uniq_i: np.ndarray
    u_code: np.ndarray
    i_code: np.ndarray
    ts: np.ndarray | None
    rows_read: int
    rows_missing_id: int
    duplicates: int = 0
    k_core_rounds: int = 0
    k_core_dropped: int = 0
    users_before_core: int = 0
    items_before_core: int = 0


def read_interactions(src: Path, user_col: str, item_col: str, timestamp_col: str | None) -> Interactions:
    """Read the interaction table, dropping rows without a user or an item ID.

    Returns:
        Every remaining row, duplicates included, in file order.

    Raises:
        DataError: for a missing file or column, a bad timestamp, or no row with both IDs.
    """
    cols = [user_col, item_col] + ([timestamp_col] if timestamp_col else [])
    if len(set(cols)) != len(cols):
        raise DataError(f"user, item and timestamp columns must differ, got {cols}")
    values, lines = read_table(src, cols, "interaction file")
    rows_read = len(lines)
    users = np.array([cell_to_str(v) for v in values[user_col]], dtype=str)
    items = np.array([cell_to_str(v) for v in values[item_col]], dtype=str)
    present = (users != "") & (items != "")
    idx_present = np.flatnonzero(present)
    users, items = users[present], items[present]
    ts: np.ndarray | None = None
    if timestamp_col:
        raw_ts = values[timestamp_col]
        ts = np.array(
            [to_time(raw_ts[r], src, timestamp_col, lines[r]) for r in idx_present.tolist()], dtype=np.float64
        )
    del values
    if users.size == 0:
        raise DataError(f"{src}: no interaction with both a {user_col!r} and an {item_col!r} ID ({rows_read} rows read)")
    uniq_u, u_code = np.unique(users, return_inverse=True)
    uniq_i, i_code = np.unique(items, return_inverse=True)
    return Interactions(
        uniq_u=uniq_u, uniq_i=uniq_i, u_code=u_code, i_code=i_code, ts=ts, rows_read=rows_read,
        rows_missing_id=int((~present).sum()),
    )
