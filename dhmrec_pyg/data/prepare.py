"""Bring your own data: turn an interaction table and per-item feature files into the MMRec layout.

:func:`prepare_dataset` reads

* an **interaction table**: a CSV file (delimiter ``,``, ``;`` or tab, detected from the header
  line; a header row is required) or a Parquet file (needs ``pyarrow``), with a user column and an
  item column holding IDs of any kind (text or numbers, compared as text after stripping spaces)
  and optionally a timestamp column (numbers, or ISO 8601 dates such as ``2023-05-01T12:00:00``);
* zero or more **feature files keyed by item ID**, one per modality:

  - ``.npz`` written with ``np.savez(path, ids=ids, features=x)``: ``ids`` a 1-D array of item IDs
    (integers, or strings stored as a unicode array, e.g. ``np.array(ids, dtype=str)``; object
    arrays are refused because loading them needs pickle) and ``features`` a 2-D numeric array
    with one row per ID;
  - ``.csv`` / ``.tsv`` / ``.txt``: the item ID in the first column and one feature per further
    column. A header row is optional: the first row is taken as a header when one of its feature
    fields is not a number, or when its first field is ``id``, ``item``, ``item_id``, ``itemid``
    or the interaction table's item column name;

* optionally a **text file** (CSV or Parquet, keyed by the same item column) whose text column is
  encoded into a ``text`` modality with a sentence-transformers model (:func:`encode_text`).

It then

1. drops rows with an empty user or item ID, and duplicate ``(user, item)`` pairs (keeping the
   earliest by timestamp, else the first in the file);
2. optionally keeps the ``k``-core: iteratively removes users and items with fewer than ``k``
   interactions until every remaining user and item has at least ``k``;
3. maps IDs to dense 0-based integers: users sorted by ID; items with interactions first (sorted by
   ID), then *cold items* - items that have a feature (or text) row but appear in no row of the
   interaction table - sorted by ID. IDs made only of digits sort numerically. Items removed by
   the k-core filter are dropped, not kept as cold items;
4. assembles one feature matrix per modality, filling items without a feature row with the mean
   row of the modality (or zeros), and ignoring rows for items that are not kept;
5. splits each user's interactions with MMRec's rule (:func:`~dhmrec_pyg.data.split.mmrec_split`,
   random, seeded) or chronologically (:func:`~dhmrec_pyg.data.split.chronological_split`);
6. writes the folder: ``NAME.inter`` (``NAME`` is the folder's base name, so that
   :func:`~dhmrec_pyg.data.io.load_mmrec` finds it), ``<modality>_feat.npy``, ``user_map.csv`` and
   ``item_map.csv`` (columns ``original_id`` and ``userID`` / ``itemID``) and ``prepare.json`` (the
   report and the options used). A new folder is built next to its destination and renamed into
   place, so that a failure leaves nothing half-written; writing into a non-empty folder needs
   ``overwrite=True`` (each file is then replaced atomically).

Everything that goes wrong with the input raises :class:`~dhmrec_pyg.data.errors.DataError`
naming the file, the column or array, and the offending line or ID. Nothing is ever unpickled.
"""

from __future__ import annotations

import csv
import dataclasses
import datetime as _dt
import math
import os
import shutil
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..files import atomic_write, write_json
from .errors import DataError
from .io import MODALITY_NAME_RE, finite_float32, write_mmrec
from .split import chronological_split, mmrec_split

__all__ = [
    "ModalityReport",
    "PrepareReport",
    "encode_text",
    "prepare_dataset",
    "read_id_map",
    "read_item_features",
]

SPLITS: tuple[str, ...] = ("mmrec", "chronological")
FILLS: tuple[str, ...] = ("mean", "zeros")
_ID_HEADER_NAMES = {"id", "item", "item_id", "itemid"}
_CSV_SUFFIXES = {".csv", ".tsv", ".txt"}
_PARQUET_SUFFIXES = {".parquet", ".pq"}
_TEXT_EXTRA = "pip install 'dhmrec_pyg[text]' (or: pip install sentence-transformers)"


# ----------------------------------------------------------------------------------------------
# The report
# ----------------------------------------------------------------------------------------------
@dataclass
class ModalityReport:
    """What :func:`prepare_dataset` did with one modality's features.

    Attributes:
        source: the feature file (or the text file, for an encoded text modality).
        dim: feature width.
        rows_read: feature rows in the file.
        rows_used: rows that became an item's features.
        rows_ignored: rows for IDs not kept (not in the interactions and cold items dropped, or
            removed by the k-core filter).
        filled: kept items without a row in this file, given the fill row.
        fill: ``'mean'`` or ``'zeros'``.
        filled_examples: up to five original IDs of filled items.
    """

    source: str
    dim: int
    rows_read: int
    rows_used: int
    rows_ignored: int
    filled: int
    fill: str
    filled_examples: list[str] = field(default_factory=list)


@dataclass
class PrepareReport:
    """Counts describing one run of :func:`prepare_dataset`; ``str(report)`` is a readable summary.

    Attributes:
        source: the interaction file read.
        out_folder: the folder written.
        name: the dataset name (the ``.inter`` file's stem).
        rows_read: data rows in the interaction file.
        rows_missing_id: rows dropped for an empty user or item ID.
        duplicates_dropped: repeated ``(user, item)`` rows dropped.
        k_core: the ``k`` of the k-core filter (0: none).
        k_core_rounds: filtering rounds until stable.
        k_core_dropped_interactions: interactions removed by the k-core filter.
        k_core_dropped_users: users removed by the k-core filter.
        k_core_dropped_items: items removed by the k-core filter.
        users: users in the output.
        items: items in the output (``warm_items + cold_items``).
        warm_items: items with at least one interaction.
        cold_items: items kept for their features only (no interaction).
        cold_items_dropped: items with features but no interaction that were left out
            (``keep_cold_items=False``).
        interactions: interactions in the output.
        split: ``'mmrec'`` or ``'chronological'``.
        seed: seed of the ``'mmrec'`` split.
        train: interactions with ``x_label`` 0.
        valid: interactions with ``x_label`` 1.
        test: interactions with ``x_label`` 2.
        modalities: modality name -> :class:`ModalityReport`.
        files: the files written, relative to ``out_folder``.
    """

    source: str
    out_folder: str
    name: str
    rows_read: int
    rows_missing_id: int
    duplicates_dropped: int
    k_core: int
    k_core_rounds: int
    k_core_dropped_interactions: int
    k_core_dropped_users: int
    k_core_dropped_items: int
    users: int
    items: int
    warm_items: int
    cold_items: int
    cold_items_dropped: int
    interactions: int
    split: str
    seed: int
    train: int
    valid: int
    test: int
    modalities: dict[str, ModalityReport] = field(default_factory=dict)
    files: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """Return the report as plain JSON-serialisable data."""
        return dataclasses.asdict(self)

    def __str__(self) -> str:
        def n(count: int, noun: str) -> str:
            """``count`` and ``noun``, pluralised."""
            return f"{count:,} {noun}" + ("" if count == 1 else "s")

        lines = [f"Prepared {self.out_folder} from {self.source}"]
        dropped = []
        if self.rows_missing_id:
            dropped.append(f"{n(self.rows_missing_id, 'row')} with an empty user or item ID")
        if self.duplicates_dropped:
            dropped.append(f"{n(self.duplicates_dropped, 'duplicate (user, item) pair')}")
        lines.append(
            f"  read {self.rows_read:,} interaction rows"
            + (f"; dropped {' and '.join(dropped)}" if dropped else "; nothing dropped")
        )
        if self.k_core > 0:
            lines.append(
                f"  {self.k_core}-core filter ({n(self.k_core_rounds, 'round')}): dropped "
                f"{n(self.k_core_dropped_interactions, 'interaction')}, {n(self.k_core_dropped_users, 'user')}, "
                f"{n(self.k_core_dropped_items, 'item')}"
            )
        cold = f", {self.cold_items:,} cold (features only, no interaction)" if self.cold_items else ""
        lines.append(
            f"  kept {self.interactions:,} interactions of {self.users:,} users on {self.items:,} items "
            f"({self.warm_items:,} with interactions{cold})"
        )
        if self.cold_items_dropped:
            lines.append(f"  left out {n(self.cold_items_dropped, 'item')} with features but no interaction")
        how = f"MMRec's random per-user rule, seed {self.seed}" if self.split == "mmrec" else "chronological per user"
        lines.append(f"  split ({how}): {self.train:,} train / {self.valid:,} valid / {self.test:,} test")
        for m, r in sorted(self.modalities.items()):
            text = f"  {m}: {r.dim}-d from {r.source}; {r.rows_used:,} rows used"
            if r.filled:
                ex = ", ".join(repr(e) for e in r.filled_examples)
                text += f"; {n(r.filled, 'item')} without a row given the {r.fill} row (e.g. {ex})"
            if r.rows_ignored:
                text += f"; {n(r.rows_ignored, 'row')} for items not kept ignored"
            lines.append(text)
        if not self.modalities:
            lines.append("  no feature files: ID-only models (LightGCN, BPR) only")
        lines.append(f"  wrote {', '.join(self.files)}")
        return "\n".join(lines)


# ----------------------------------------------------------------------------------------------
# Reading tables
# ----------------------------------------------------------------------------------------------
def _check_file(path: Path, what: str) -> None:
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


def _csv_rows(path: Path, delimiter: str | None = None) -> tuple[Any, str, Any]:
    """Open ``path`` and return ``(csv.reader, delimiter, file)``; the caller closes the file."""
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


def _cell_to_str(value: Any) -> str:
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


def _read_table(path: Path, columns: Sequence[str], what: str) -> tuple[dict[str, list[Any]], list[int]]:
    """Read ``columns`` of a CSV or Parquet table.

    Returns:
        ``(values, line_numbers)``: CSV cells as stripped strings (Parquet cells as Python values)
        and, per row, its line in the file (CSV) or its 1-based row number (Parquet).
    """
    _check_file(path, what)
    if path.suffix.lower() in _PARQUET_SUFFIXES:
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

    reader, delim, fh = _csv_rows(path)
    with fh:
        try:
            header: list[str] | None = None
            for row in reader:
                if any(c.strip() for c in row):
                    header = [c.strip() for c in row]
                    break
            if header is None:
                raise DataError(f"{path}: file is empty, expected a header row naming the columns {list(columns)}")
            idx = {}
            for col in columns:
                if col not in header:
                    hint = "" if len(header) > 1 else " (is the delimiter one of ',', ';' or tab?)"
                    raise DataError(f"{path}: missing column {col!r} (available columns: {header}){hint}")
                idx[col] = header.index(col)
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


def _to_time(value: Any, path: Path, column: str, line: int) -> float:
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
            return _to_time(parsed, path, column, line)
    else:
        raise DataError(f"{path}: column {column!r} is empty on line {line}; every row needs a timestamp")
    if not math.isfinite(out):
        raise DataError(f"{path}: column {column!r} holds {value!r} on line {line}; timestamps must be finite")
    return out


# ----------------------------------------------------------------------------------------------
# Feature files keyed by item ID
# ----------------------------------------------------------------------------------------------
def _is_number(text: str) -> bool:
    """Whether ``float(text)`` succeeds."""
    try:
        float(text)
    except ValueError:
        return False
    return True


def _check_feature_values(path: Path, ids: list[str], x: np.ndarray, where: list[str]) -> np.ndarray:
    """Convert to float32 and refuse NaN / inf, naming the file, the row's ID and its place."""
    return finite_float32(x, path, lambda r: f"item {ids[r]!r} ({where[r]})")


def _check_unique(path: Path, ids: list[str], where: list[str]) -> None:
    seen: dict[str, int] = {}
    for r, i in enumerate(ids):
        if i == "":
            raise DataError(f"{path}: empty item ID ({where[r]})")
        if i in seen:
            raise DataError(
                f"{path}: item {i!r} has two feature rows ({where[seen[i]]} and {where[r]}); keep one per item"
            )
        seen[i] = r


def _read_npz_features(path: Path) -> tuple[list[str], np.ndarray]:
    """:func:`read_item_features` of an ``.npz`` file (arrays ``ids`` and ``features``)."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            names = list(npz.files)
            for key in ("ids", "features"):
                if key not in names:
                    raise DataError(
                        f"{path}: missing array {key!r} (arrays in file: {names}); write it with "
                        "np.savez(path, ids=ids, features=x)"
                    )
            try:
                raw_ids = npz["ids"]
                x = npz["features"]
            except ValueError as e:
                raise DataError(
                    f"{path}: array 'ids' or 'features' is an object array, which needs pickle to "
                    "load; store string IDs as a unicode array, e.g. np.array(ids, dtype=str)"
                ) from e
    except DataError:
        raise
    except Exception as e:  # zipfile.BadZipFile, OSError, ValueError, ...
        raise DataError(f"{path}: cannot be loaded as an .npz archive ({type(e).__name__}: {e})") from e
    if raw_ids.ndim != 1:
        raise DataError(f"{path}: array 'ids' must be 1-D, found shape {raw_ids.shape}")
    if raw_ids.dtype.kind in "iu":
        ids = [str(int(v)) for v in raw_ids.tolist()]
    elif raw_ids.dtype.kind == "U":
        ids = [str(v).strip() for v in raw_ids.tolist()]
    elif raw_ids.dtype.kind == "S":
        ids = [v.decode("utf-8", errors="replace").strip() for v in raw_ids.tolist()]
    else:
        raise DataError(
            f"{path}: array 'ids' must hold integers or strings, found dtype '{raw_ids.dtype}'"
        )
    if x.dtype.kind not in "iuf":
        raise DataError(f"{path}: array 'features' must be numeric, found dtype '{x.dtype}'")
    if x.ndim != 2 or x.shape[1] == 0:
        raise DataError(f"{path}: array 'features' must be 2-D with at least one column, found shape {x.shape}")
    if x.shape[0] != len(ids):
        raise DataError(
            f"{path}: array 'features' has {x.shape[0]} rows but 'ids' has {len(ids)} entries"
        )
    where = [f"row {r}" for r in range(len(ids))]
    _check_unique(path, ids, where)
    return ids, _check_feature_values(path, ids, x, where)


def _read_csv_features(path: Path, item_col: str | None) -> tuple[list[str], np.ndarray]:
    """:func:`read_item_features` of a CSV / TSV / TXT file (item ID first, optional header row)."""
    reader, delim, fh = _csv_rows(path)
    ids: list[str] = []
    where: list[str] = []
    rows: list[list[float]] = []
    header_names = _ID_HEADER_NAMES | ({item_col.lower()} if item_col else set())
    first = True
    width = -1
    with fh:
        try:
            for row in reader:
                if not row or not any(c.strip() for c in row):
                    continue
                cells = [c.strip() for c in row]
                if first:
                    first = False
                    if cells[0].lower() in header_names or not all(_is_number(c) for c in cells[1:]):
                        continue
                if len(cells) < 2:
                    raise DataError(
                        f"{path}: line {reader.line_num} has no feature column (item ID first, then features; "
                        f"delimiter {delim!r})"
                    )
                if width < 0:
                    width = len(cells)
                elif len(cells) != width:
                    raise DataError(
                        f"{path}: line {reader.line_num} (item {cells[0]!r}) has {len(cells) - 1} features, "
                        f"expected {width - 1} like the first row"
                    )
                try:
                    rows.append([float(c) for c in cells[1:]])
                except ValueError:
                    bad = next(j for j, c in enumerate(cells[1:]) if not _is_number(c))
                    raise DataError(
                        f"{path}: non-numeric feature {cells[1 + bad][:40]!r} for item {cells[0]!r} on line "
                        f"{reader.line_num}, feature column {bad}"
                    ) from None
                ids.append(cells[0])
                where.append(f"line {reader.line_num}")
        except UnicodeDecodeError as e:
            raise DataError(f"{path}: not UTF-8 text ({e})") from e
        except csv.Error as e:
            raise DataError(f"{path}: malformed CSV near line {reader.line_num} ({e})") from e
    if not ids:
        raise DataError(f"{path}: no feature rows (expected the item ID first, then the features)")
    _check_unique(path, ids, where)
    return ids, _check_feature_values(path, ids, np.asarray(rows, dtype=np.float64), where)


def read_item_features(path: str | Path, item_col: str | None = None) -> tuple[list[str], np.ndarray]:
    """Read one modality's feature file keyed by item ID (see the module docstring for formats).

    Args:
        path: a ``.npz`` (arrays ``ids`` and ``features``) or a ``.csv`` / ``.tsv`` / ``.txt`` file
            (ID first, then one feature per column, optional header row).
        item_col: the interaction table's item column name, also recognised as a header's first field.

    Returns:
        ``(ids, x)``: the item IDs as text (unique, non-empty) and a float32 matrix ``[len(ids), d]``.

    Raises:
        DataError: for a missing or unreadable file, an unsupported type, missing arrays, a shape
            mismatch, a duplicate or empty ID, a non-numeric value or a NaN / infinite value (the
            message names the file and the item ID).
    """
    path = Path(path)
    _check_file(path, "feature file")
    suffix = path.suffix.lower()
    if suffix == ".npz":
        return _read_npz_features(path)
    if suffix in _PARQUET_SUFFIXES or suffix == ".npy":
        raise DataError(
            f"{path}: unsupported feature file type {suffix!r}; a {suffix} has no item IDs here - save "
            "np.savez(path.npz, ids=ids, features=x) or a CSV with the item ID first"
        )
    if suffix not in _CSV_SUFFIXES:
        raise DataError(f"{path}: unsupported feature file type {suffix!r}; use .npz, .csv, .tsv or .txt")
    return _read_csv_features(path, item_col)


# ----------------------------------------------------------------------------------------------
# Text encoding
# ----------------------------------------------------------------------------------------------
def encode_text(
    texts: Sequence[str], model: str | Path, *, batch_size: int = 64, device: str | None = None
) -> np.ndarray:
    """Encode texts into dense vectors with a sentence-transformers model.

    Needs the optional ``text`` extra (``pip install 'dhmrec_pyg[text]'``, i.e.
    ``sentence-transformers``). The model is loaded by sentence-transformers, which may download it
    when ``model`` is a hub name rather than a local folder.

    Args:
        texts: the texts, one per item.
        model: a local model folder or a model name (e.g. ``'all-MiniLM-L6-v2'``).
        batch_size: encoding batch size.
        device: e.g. ``'cpu'`` or ``'cuda'``; sentence-transformers chooses by default.

    Returns:
        float32 array ``[len(texts), d]``.

    Raises:
        ImportError: if sentence-transformers is not installed (the message says what to install).
        DataError: if ``texts`` is empty or the model returns a malformed or non-finite array.
    """
    if not texts:
        raise DataError("encode_text: no text to encode")
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError as e:
        raise ImportError(f"encoding item text needs sentence-transformers: {_TEXT_EXTRA}") from e
    encoder = SentenceTransformer(str(model), device=device)
    out = encoder.encode(list(texts), batch_size=batch_size, convert_to_numpy=True, show_progress_bar=False)
    x = np.asarray(out, dtype=np.float32)
    if x.ndim != 2 or x.shape[0] != len(texts):
        raise DataError(f"encode_text: model {str(model)!r} returned shape {x.shape}, expected ({len(texts)}, d)")
    if not np.isfinite(x).all():
        raise DataError(f"encode_text: model {str(model)!r} returned non-finite values")
    return x


# ----------------------------------------------------------------------------------------------
# ID maps
# ----------------------------------------------------------------------------------------------
def _sorted_ids(ids: np.ndarray) -> np.ndarray:
    """Sort unique text IDs: numerically when all are digit strings, else as text."""
    values = ids.tolist()
    if values and all(v.isdigit() for v in values):
        return np.array(sorted(values, key=lambda v: (int(v), v)), dtype=ids.dtype)
    return np.sort(ids)


def _write_id_map(path: Path, ids: np.ndarray, new_name: str) -> None:
    """Atomically write ``original_id,<new_name>`` rows: ``ids[k]`` maps to ``k``."""
    def write(fh: Any) -> None:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(["original_id", new_name])
        w.writerows((s, k) for k, s in enumerate(ids.tolist()))

    atomic_write(path, write, mode="w")


def read_id_map(path: str | Path) -> dict[str, int]:
    """Read a ``user_map.csv`` / ``item_map.csv`` written by :func:`prepare_dataset`.

    Args:
        path: the map file (columns ``original_id`` and ``userID`` or ``itemID``).

    Returns:
        original ID (text) -> dense 0-based ID.

    Raises:
        DataError: if the file is missing or malformed.
    """
    path = Path(path)
    _check_file(path, "ID map")
    out: dict[str, int] = {}
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        if not header or len(header) != 2 or header[0] != "original_id":
            raise DataError(f"{path}: expected a header 'original_id,userID' or 'original_id,itemID', found {header}")
        for row in reader:
            if len(row) != 2 or not row[1].isdigit():
                raise DataError(f"{path}: malformed row on line {reader.line_num}: {row}")
            out[row[0]] = int(row[1])
    return out


# ----------------------------------------------------------------------------------------------
# Filtering
# ----------------------------------------------------------------------------------------------
def _k_core(u: np.ndarray, i: np.ndarray, k: int) -> tuple[np.ndarray, int]:
    """Boolean mask of the interactions in the ``k``-core and the number of rounds it took."""
    keep = np.ones(u.shape[0], dtype=bool)
    rounds = 0
    if k <= 1:
        return keep, rounds
    nu, ni = int(u.max()) + 1, int(i.max()) + 1
    while True:
        rounds += 1
        cu = np.bincount(u[keep], minlength=nu)
        ci = np.bincount(i[keep], minlength=ni)
        new = keep & (cu[u] >= k) & (ci[i] >= k)
        if new.sum() == keep.sum():
            return keep, rounds
        keep = new


# ----------------------------------------------------------------------------------------------
# The entry point
# ----------------------------------------------------------------------------------------------
def _check_out(out: Path, overwrite: bool) -> bool:
    """Validate the output folder; return whether it exists with content (so files are replaced)."""
    for parent in [out, *out.parents]:
        if parent.exists() and not parent.is_dir():
            raise DataError(f"{out}: cannot write the dataset folder, {parent} is a file")
    if out.is_dir():
        entries = sorted(p.name for p in out.iterdir())
        if entries:
            if not overwrite:
                shown = ", ".join(entries[:5]) + (", ..." if len(entries) > 5 else "")
                raise DataError(
                    f"{out}: output folder is not empty ({shown}); choose a new folder or pass "
                    "overwrite=True (--overwrite) to replace the dataset files in it"
                )
            return True
    name = out.resolve().name
    if not name or name in (".", ".."):
        raise DataError(f"{out}: the output folder needs a base name (it becomes the dataset name)")
    return False


@dataclass
class _Interactions:
    """The interactions of steps 1-3, as codes into their unique user and item IDs."""

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


@dataclass
class _IdMaps:
    """Step 5: dense user and item IDs, and the kept interactions in them."""

    user_ids: np.ndarray
    warm_ids: np.ndarray
    cold_ids: np.ndarray
    cold_dropped: int
    item_ids: np.ndarray
    item_pos: dict[str, int]
    user_new: np.ndarray
    item_new: np.ndarray


def _check_options(
    features: dict[str, str | Path], split: str, timestamp_col: str | None, fill: str, k_core: int,
    text_file: str | Path | None, text_model: str | Path | None, text_modality: str,
) -> None:
    """Refuse a bad option, modality name or missing feature file before reading anything."""
    if split not in SPLITS:
        raise DataError(f"split must be one of {list(SPLITS)}, got {split!r}")
    if split == "chronological" and not timestamp_col:
        raise DataError("split='chronological' needs a timestamp column (timestamp_col / --timestamp-col)")
    if fill not in FILLS:
        raise DataError(f"fill must be one of {list(FILLS)}, got {fill!r}")
    if not isinstance(k_core, int) or k_core < 0:
        raise DataError(f"k_core must be a non-negative integer, got {k_core!r}")
    if text_file is not None:
        if text_model is None:
            raise DataError(f"{text_file}: encoding item text needs a model (text_model / --text-model)")
        if text_modality in features:
            raise DataError(f"modality {text_modality!r} is given both as a feature file and as text to encode")
        features_and_text = [*features, text_modality]
    else:
        features_and_text = list(features)
    for m in features_and_text:
        if not MODALITY_NAME_RE.match(m):
            raise DataError(f"modality name {m!r} must be non-empty and use only letters, digits and underscores")
    for m, p in features.items():
        _check_file(Path(p), f"feature file of modality {m!r}")


def _read_interactions(src: Path, user_col: str, item_col: str, timestamp_col: str | None) -> _Interactions:
    """Steps 1 and 2: read the interactions, drop rows without an ID, then duplicates.

    Of repeated (user, item) pairs the earliest is kept, else the first in the file.
    """
    cols = [user_col, item_col] + ([timestamp_col] if timestamp_col else [])
    if len(set(cols)) != len(cols):
        raise DataError(f"user, item and timestamp columns must differ, got {cols}")
    values, lines = _read_table(src, cols, "interaction file")
    rows_read = len(lines)
    users = np.array([_cell_to_str(v) for v in values[user_col]], dtype=str)
    items = np.array([_cell_to_str(v) for v in values[item_col]], dtype=str)
    present = (users != "") & (items != "")
    rows_missing_id = int((~present).sum())
    idx_present = np.flatnonzero(present)
    users, items = users[present], items[present]
    ts: np.ndarray | None = None
    if timestamp_col:
        raw_ts = values[timestamp_col]
        ts = np.array(
            [_to_time(raw_ts[r], src, timestamp_col, lines[r]) for r in idx_present.tolist()], dtype=np.float64
        )
    del values
    if users.size == 0:
        raise DataError(f"{src}: no interaction with both a {user_col!r} and an {item_col!r} ID ({rows_read} rows read)")

    uniq_u, u_code = np.unique(users, return_inverse=True)
    uniq_i, i_code = np.unique(items, return_inverse=True)
    key = u_code.astype(np.int64) * len(uniq_i) + i_code
    order = np.lexsort((np.arange(key.size), ts)) if ts is not None else np.arange(key.size)
    _, first = np.unique(key[order], return_index=True)
    keep = np.sort(order[first])
    return _Interactions(
        uniq_u=uniq_u, uniq_i=uniq_i, u_code=u_code[keep], i_code=i_code[keep],
        ts=None if ts is None else ts[keep], rows_read=rows_read, rows_missing_id=rows_missing_id,
        duplicates=int(key.size - keep.size),
    )


def _k_core_filter(table: _Interactions, k_core: int, src: Path) -> tuple[np.ndarray, np.ndarray]:
    """Step 3: keep the ``k_core``-core of ``table`` (in place); the codes of the users and items left."""
    core, table.k_core_rounds = _k_core(table.u_code, table.i_code, k_core)
    table.users_before_core = np.unique(table.u_code).size
    table.items_before_core = np.unique(table.i_code).size
    table.u_code, table.i_code = table.u_code[core], table.i_code[core]
    if table.ts is not None:
        table.ts = table.ts[core]
    table.k_core_dropped = int((~core).sum())
    if table.u_code.size == 0:
        raise DataError(
            f"{src}: no interaction left after the {k_core}-core filter ({int(core.size)} before it); "
            "lower k_core"
        )
    return np.unique(table.u_code), np.unique(table.i_code)


def _read_modalities(
    features: dict[str, str | Path], item_col: str, text_file: str | Path | None, text_col: str,
    text_modality: str,
) -> tuple[dict[str, tuple[list[str], np.ndarray | None, str]], dict[str, str]]:
    """Step 4: the feature files (and texts), keyed by original item ID.

    Returns:
        modality -> ``(item IDs, rows or None for text not yet encoded, source)``, and the
        texts by item ID (the first non-empty one of each ID).
    """
    loaded: dict[str, tuple[list[str], np.ndarray | None, str]] = {}
    for m, p in sorted(features.items()):
        ids, x = read_item_features(p, item_col)
        loaded[m] = (ids, x, str(p))
    texts: dict[str, str] = {}
    if text_file is not None:
        tpath = Path(text_file)
        tvalues, _ = _read_table(tpath, [item_col, text_col], "text file")
        for raw_id, raw_text in zip(tvalues[item_col], tvalues[text_col]):
            tid = _cell_to_str(raw_id)
            text = "" if raw_text is None else str(raw_text).strip()
            if tid and text and tid not in texts:
                texts[tid] = text
        if not texts:
            raise DataError(f"{tpath}: no row with both an {item_col!r} ID and a non-empty {text_col!r}")
        loaded[text_modality] = (list(texts), None, str(tpath))
    return loaded, texts


def _id_maps(
    table: _Interactions, warm_u: np.ndarray, warm_i: np.ndarray,
    loaded: Mapping[str, tuple[list[str], np.ndarray | None, str]], keep_cold_items: bool,
) -> _IdMaps:
    """Step 5: users sorted; items with interactions, then cold items (feature rows only)."""
    uniq_u, uniq_i = table.uniq_u, table.uniq_i
    user_ids = _sorted_ids(uniq_u[warm_u])
    warm_ids = _sorted_ids(uniq_i[warm_i])
    feature_ids: set[str] = set()
    for ids, _, _ in loaded.values():
        feature_ids.update(ids)
    cold_set = feature_ids - set(uniq_i.tolist())
    cold_ids = _sorted_ids(np.array(sorted(cold_set), dtype=str)) if cold_set else np.zeros(0, dtype=str)
    cold_dropped = 0
    if not keep_cold_items:
        cold_dropped, cold_ids = int(cold_ids.size), np.zeros(0, dtype=str)
    item_ids = np.concatenate([warm_ids, cold_ids]) if cold_ids.size else warm_ids
    item_pos = {s: k for k, s in enumerate(item_ids.tolist())}
    user_pos = {s: k for k, s in enumerate(user_ids.tolist())}
    # Dense IDs of the kept interactions, via the codes of the unique arrays.
    code_to_user = np.full(len(uniq_u), -1, dtype=np.int64)
    code_to_user[warm_u] = [user_pos[s] for s in uniq_u[warm_u].tolist()]
    code_to_item = np.full(len(uniq_i), -1, dtype=np.int64)
    code_to_item[warm_i] = [item_pos[s] for s in uniq_i[warm_i].tolist()]
    return _IdMaps(
        user_ids=user_ids, warm_ids=warm_ids, cold_ids=cold_ids, cold_dropped=cold_dropped, item_ids=item_ids,
        item_pos=item_pos, user_new=code_to_user[table.u_code], item_new=code_to_item[table.i_code],
    )


def _feature_matrices(
    loaded: dict[str, tuple[list[str], np.ndarray | None, str]], rows_read_of: Mapping[str, int],
    ids: _IdMaps, fill: str, src: Path, item_col: str,
) -> tuple[dict[str, np.ndarray], dict[str, ModalityReport]]:
    """Step 6: one ``[items, d]`` matrix per modality, in the new item IDs, missing rows filled.

    ``rows_read_of``: the rows each modality's file had (for text: every text read, before
    only the kept items' texts were encoded).

    Raises:
        DataError: a modality shares no ID with the items that have interactions.
    """
    n_items = int(ids.item_ids.size)
    matrices: dict[str, np.ndarray] = {}
    mreports: dict[str, ModalityReport] = {}
    for m, (item_keys, x, source) in sorted(loaded.items()):
        rows = np.array([ids.item_pos.get(i, -1) for i in item_keys], dtype=np.int64)
        used = rows >= 0
        if x is None or not (used & (rows < ids.warm_ids.size)).any():
            example = ", ".join(repr(i) for i in item_keys[:3])
            raise DataError(
                f"{source}: none of its {len(item_keys)} item IDs (e.g. {example}) is an item with interactions "
                f"kept from {src} (column {item_col!r}, e.g. "
                f"{', '.join(repr(s) for s in ids.warm_ids[:3].tolist())}); do the IDs match?"
            )
        mat = np.zeros((n_items, x.shape[1]), dtype=np.float32)
        has = np.zeros(n_items, dtype=bool)
        mat[rows[used]] = x[used]
        has[rows[used]] = True
        missing = np.flatnonzero(~has)
        if missing.size and fill == "mean":
            mat[missing] = x[used].astype(np.float64).mean(axis=0).astype(np.float32)
        matrices[m] = mat
        mreports[m] = ModalityReport(
            source=source,
            dim=int(x.shape[1]),
            rows_read=rows_read_of[m],
            rows_used=int(used.sum()),
            rows_ignored=rows_read_of[m] - int(used.sum()),
            filled=int(missing.size),
            fill=fill,
            filled_examples=[str(ids.item_ids[j]) for j in missing[:5].tolist()],
        )
    return matrices, mreports


def _split_columns(split: str, seed: int, ids: _IdMaps, ts: np.ndarray | None) -> dict[str, np.ndarray]:
    """Step 7: the ``.inter`` columns, with each interaction's split label (``x_label``)."""
    if split == "chronological":
        assert ts is not None
        x_label = chronological_split(ids.user_new, ts)
    else:
        x_label = mmrec_split(ids.user_new, ids.item_new, seed=seed)
    columns: dict[str, np.ndarray] = {"userID": ids.user_new, "itemID": ids.item_new, "x_label": x_label}
    if ts is not None:
        integral = bool(np.all(ts == np.round(ts))) and bool(np.all(np.abs(ts) < 2**62))
        columns["timestamp"] = ts.astype(np.int64) if integral else ts
    return columns


def _make_report(
    src: Path, out: Path, name: str, table: _Interactions, k_core: int, warm_u: np.ndarray, warm_i: np.ndarray,
    ids: _IdMaps, split: str, seed: int, x_label: np.ndarray, mreports: dict[str, ModalityReport],
) -> PrepareReport:
    """The :class:`PrepareReport` of a prepared dataset."""
    return PrepareReport(
        source=str(src),
        out_folder=str(out),
        name=name,
        rows_read=table.rows_read,
        rows_missing_id=table.rows_missing_id,
        duplicates_dropped=table.duplicates,
        k_core=int(k_core),
        k_core_rounds=table.k_core_rounds,
        k_core_dropped_interactions=table.k_core_dropped,
        k_core_dropped_users=int(table.users_before_core - warm_u.size),
        k_core_dropped_items=int(table.items_before_core - warm_i.size),
        users=int(ids.user_ids.size),
        items=int(ids.item_ids.size),
        warm_items=int(ids.warm_ids.size),
        cold_items=int(ids.cold_ids.size),
        cold_items_dropped=ids.cold_dropped,
        interactions=int(ids.user_new.size),
        split=split,
        seed=int(seed),
        train=int((x_label == 0).sum()),
        valid=int((x_label == 1).sum()),
        test=int((x_label == 2).sum()),
        modalities=mreports,
        files=[f"{name}.inter", *(f"{m}_feat.npy" for m in sorted(mreports)), "user_map.csv", "item_map.csv",
               "prepare.json"],
    )


def _write_dataset(out: Path, name: str, replace: bool, write_all: Callable[[Path, bool], None]) -> None:
    """Step 8: write into the existing folder (``replace``), else build beside it and rename into place."""
    if replace:
        write_all(out, True)
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{name}.", suffix=".tmp"))
    try:
        mask = os.umask(0)
        os.umask(mask)
        os.chmod(tmp, 0o777 & ~mask)
        write_all(tmp, False)
        if out.is_dir():
            out.rmdir()  # empty (checked above); os.replace onto a folder is not portable
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def prepare_dataset(
    interactions: str | Path,
    out_folder: str | Path,
    *,
    user_col: str = "user",
    item_col: str = "item",
    timestamp_col: str | None = None,
    features: Mapping[str, str | Path] | None = None,
    split: str = "mmrec",
    seed: int = 0,
    k_core: int = 0,
    fill: str = "mean",
    keep_cold_items: bool = True,
    text_file: str | Path | None = None,
    text_col: str = "text",
    text_model: str | Path | None = None,
    text_modality: str = "text",
    text_device: str | None = None,
    overwrite: bool = False,
) -> PrepareReport:
    """Turn an interaction table and item feature files into an MMRec-layout dataset folder.

    See the module docstring for the accepted formats and the exact rules.

    Args:
        interactions: CSV (``,``/``;``/tab, header row) or Parquet file of interactions.
        out_folder: the dataset folder to write; its base name becomes the dataset name.
        user_col: the user ID column.
        item_col: the item ID column (also the ID column of ``text_file``).
        timestamp_col: optional timestamp column (numbers or ISO 8601); required by
            ``split='chronological'`` and written to the ``.inter`` file as ``timestamp``.
        features: modality name -> feature file keyed by item ID (``.npz`` or CSV), e.g.
            ``{'image': 'image.npz', 'text': 'text.csv'}``. Names use letters, digits, underscores.
        split: ``'mmrec'`` (MMRec's random per-user rule, seeded by ``seed``) or ``'chronological'``.
        seed: seed of the ``'mmrec'`` split.
        k_core: if ``>= 2``, keep the ``k``-core (every user and item with at least ``k``
            interactions), applied before the split; 0 or 1 keeps everything.
        fill: the row given to kept items missing from a feature file: ``'mean'`` (the modality's
            mean row over the kept items that have one) or ``'zeros'``.
        keep_cold_items: keep items that have feature rows but no interaction (they get IDs after
            all items with interactions); if false they are left out.
        text_file: optional CSV/Parquet with columns ``item_col`` and ``text_col``; its texts are
            encoded with ``text_model`` into the modality ``text_modality``. Repeated IDs: the first
            row wins; empty texts count as missing.
        text_col: the text column of ``text_file``.
        text_model: sentence-transformers model folder or name (required with ``text_file``).
        text_modality: name of the encoded modality (default ``'text'``).
        text_device: device for the text encoder (default: sentence-transformers' choice).
        overwrite: allow writing into a non-empty folder (dataset files in it are replaced, other
            files are left alone).

    Returns:
        A :class:`PrepareReport` (also saved as ``prepare.json`` in the folder).

    Raises:
        DataError: for a missing file or column, a bad option, a malformed value, an empty result
            after filtering, a feature file sharing no ID with the interactions, or a non-empty
            output folder without ``overwrite``.
        ImportError: for text encoding without sentence-transformers (Parquet input without
            pyarrow is a DataError saying what to install).
    """
    src = Path(interactions)
    out = Path(out_folder)
    features = dict(features or {})
    _check_options(features, split, timestamp_col, fill, k_core, text_file, text_model, text_modality)
    replace = _check_out(out, overwrite)

    # 1.-2. Interactions, without duplicates (keep the earliest, else the first in the file).
    table = _read_interactions(src, user_col, item_col, timestamp_col)
    # 3. k-core.
    warm_u, warm_i = _k_core_filter(table, k_core, src)
    # 4. Features (and text), keyed by original item ID.
    loaded, texts = _read_modalities(features, item_col, text_file, text_col, text_modality)
    # 5. ID maps: users sorted; items with interactions, then cold items.
    ids = _id_maps(table, warm_u, warm_i, loaded, keep_cold_items)
    # 6. Feature matrices (text is encoded only for the items kept).
    rows_read_of = {m: len(item_keys) for m, (item_keys, _, _) in loaded.items()}
    if text_file is not None:
        ids_t = [i for i in texts if i in ids.item_pos]
        x_t = encode_text([texts[i] for i in ids_t], text_model, device=text_device) if ids_t else None
        loaded[text_modality] = (ids_t or list(texts), x_t, str(text_file))
    matrices, mreports = _feature_matrices(loaded, rows_read_of, ids, fill, src, item_col)
    # 7. Split.
    columns = _split_columns(split, seed, ids, table.ts)

    name = out.resolve().name
    report = _make_report(
        src, out, name, table, k_core, warm_u, warm_i, ids, split, seed, columns["x_label"], mreports
    )
    record = {"report": report.to_dict(), "options": {
        "interactions": str(src), "user_col": user_col, "item_col": item_col, "timestamp_col": timestamp_col,
        "features": {m: str(p) for m, p in features.items()}, "split": split, "seed": seed, "k_core": k_core,
        "fill": fill, "keep_cold_items": keep_cold_items,
        "text_file": None if text_file is None else str(text_file), "text_col": text_col,
        "text_model": None if text_model is None else str(text_model), "text_modality": text_modality,
    }}

    def write_all(folder: Path, replace_existing: bool) -> None:
        """Write every output file into ``folder``."""
        write_mmrec(columns, folder, name, features=matrices, overwrite=replace_existing)
        _write_id_map(folder / "user_map.csv", ids.user_ids, "userID")
        _write_id_map(folder / "item_map.csv", ids.item_ids, "itemID")
        write_json(folder / "prepare.json", record)

    # 8. Write: into the existing folder (overwrite), else build beside it and rename into place.
    _write_dataset(out, name, replace, write_all)
    return report
