"""Item features: reading feature files keyed by item ID, and assembling one matrix per modality."""

from __future__ import annotations

import csv
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from ..errors import DataError
from ..io import finite_float32, numpy_file_kind
from .ids import IdMaps
from .read import CSV_SUFFIXES, PARQUET_SUFFIXES, check_file, csv_rows
from .report import ModalityReport

__all__ = ["ID_HEADER_NAMES", "Loaded", "feature_matrices", "read_item_features"]

#: First fields that make the first row of a CSV feature file its header (besides the item column).
ID_HEADER_NAMES: tuple[str, ...] = ("id", "item", "item_id", "itemid")

#: A modality's rows as read: ``(item IDs, rows or None for text not yet encoded, source file)``.
Loaded = tuple[list[str], "np.ndarray | None", str]


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
    """Refuse an empty or repeated item ID, naming the file and the rows' places."""
    seen: dict[str, int] = {}
    for r, i in enumerate(ids):
        if i == "":
            raise DataError(f"{path}: empty item ID ({where[r]})")
        if i in seen:
            raise DataError(
                f"{path}: item {i!r} has two feature rows ({where[seen[i]]} and {where[r]}); keep one per item"
            )
        seen[i] = r


def _load_npz(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """The arrays ``ids`` and ``features`` of an ``.npz`` archive, loaded without pickle."""
    kind = numpy_file_kind(path)
    if kind != "npz":
        what = {"npy": "it holds a single .npy array", "empty": "the file is empty"}.get(
            kind, "not a NumPy file at all: a text file, say"
        )
        raise DataError(f"{path}: not an .npz archive ({what}); write it with np.savez(path, ids=ids, features=x)")
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
                return npz["ids"], npz["features"]
            except ValueError as e:
                raise DataError(
                    f"{path}: array 'ids' or 'features' is an object array, which needs pickle to "
                    "load; store string IDs as a unicode array, e.g. np.array(ids, dtype=str)"
                ) from e
    except DataError:
        raise
    except Exception as e:  # zipfile.BadZipFile, OSError, ValueError, ...
        raise DataError(f"{path}: cannot be loaded as an .npz archive ({type(e).__name__}: {e})") from e


def _read_npz_features(path: Path) -> tuple[list[str], np.ndarray]:
    """:func:`read_item_features` of an ``.npz`` file (arrays ``ids`` and ``features``)."""
    raw_ids, x = _load_npz(path)
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


def _feature_row(path: Path, cells: list[str], line: int, width: int, delim: str, header_hint: str) -> list[float]:
    """The features of one CSV row (``cells[0]`` the item ID), checked against the first row's width.

    ``header_hint`` is appended to the error for a non-numeric value (non-empty on the first row).
    """
    if len(cells) < 2:
        raise DataError(
            f"{path}: line {line} has no feature column (item ID first, then features; delimiter {delim!r})"
        )
    if width > 0 and len(cells) != width:
        raise DataError(
            f"{path}: line {line} (item {cells[0]!r}) has {len(cells) - 1} features, "
            f"expected {width - 1} like the first row"
        )
    try:
        return [float(c) for c in cells[1:]]
    except ValueError:
        bad = next(j for j, c in enumerate(cells[1:]) if not _is_number(c))
        raise DataError(
            f"{path}: non-numeric feature {cells[1 + bad][:40]!r} for item {cells[0]!r} on line "
            f"{line}, feature column {bad}{header_hint}"
        ) from None


def _read_csv_features(path: Path, item_col: str | None, header: bool | None) -> tuple[list[str], np.ndarray]:
    """:func:`read_item_features` of a CSV / TSV / TXT file (item ID first, optional header row)."""
    reader, delim, fh = csv_rows(path)
    names = set(ID_HEADER_NAMES) | ({item_col.lower()} if item_col else set())
    shown = ", ".join(repr(n) for n in sorted(names))
    ids: list[str] = []
    where: list[str] = []
    rows: list[list[float]] = []
    first = True
    width = -1
    with fh:
        try:
            for row in reader:
                if not row or not any(c.strip() for c in row):
                    continue
                cells = [c.strip() for c in row]
                hint = ""
                if first:
                    first = False
                    if header or (header is None and cells[0].lower() in names):
                        continue
                    if header is None:
                        hint = f" (a header row starts with {shown}, or is declared with header=True)"
                rows.append(_feature_row(path, cells, reader.line_num, width, delim, hint))
                width = len(cells)
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


def read_item_features(
    path: str | Path, item_col: str | None = None, *, header: bool | None = None
) -> tuple[list[str], np.ndarray]:
    """Read one modality's feature file keyed by item ID (see :mod:`dhmrec_pyg.data.prepare` for formats).

    Args:
        path: a ``.npz`` (arrays ``ids`` and ``features``) or a ``.csv`` / ``.tsv`` / ``.txt`` file
            (ID first, then one feature per column, optional header row).
        item_col: the interaction table's item column name, also recognised as a header's first field.
        header: for a CSV file, whether its first row is a header. ``None`` (default): it is one
            when its first field is ``id``, ``item``, ``item_id``, ``itemid`` or ``item_col``
            (case-insensitive); a first row that is neither a header nor numbers is an error, never
            guessed to be a header.

    Returns:
        ``(ids, x)``: the item IDs as text (unique, non-empty) and a float32 matrix ``[len(ids), d]``.

    Raises:
        DataError: for a missing or unreadable file, an unsupported type, missing arrays, a shape
            mismatch, a duplicate or empty ID, a non-numeric value (naming the line and column) or a
            NaN / infinite value (the message names the file and the item ID).
    """
    path = Path(path)
    check_file(path, "feature file")
    suffix = path.suffix.lower()
    if suffix == ".npz":
        return _read_npz_features(path)
    if suffix in PARQUET_SUFFIXES or suffix == ".npy":
        raise DataError(
            f"{path}: unsupported feature file type {suffix!r}; a {suffix} has no item IDs here - save "
            "np.savez(path.npz, ids=ids, features=x) or a CSV with the item ID first"
        )
    if suffix not in CSV_SUFFIXES:
        raise DataError(f"{path}: unsupported feature file type {suffix!r}; use .npz, .csv, .tsv or .txt")
    return _read_csv_features(path, item_col, header)


def _no_shared_id(source: str, item_keys: list[str], ids: IdMaps, src: Path, item_col: str) -> DataError:
    """The error for a modality none of whose IDs is a kept item with interactions."""
    example = ", ".join(repr(i) for i in item_keys[:3])
    return DataError(
        f"{source}: none of its {len(item_keys)} item IDs (e.g. {example}) is an item with interactions "
        f"kept from {src} (column {item_col!r}, e.g. "
        f"{', '.join(repr(s) for s in ids.warm_ids[:3].tolist())}); do the IDs match?"
    )


def feature_matrices(
    loaded: Mapping[str, Loaded], rows_read_of: Mapping[str, int], ids: IdMaps, fill: str, src: Path,
    item_col: str,
) -> tuple[dict[str, np.ndarray], dict[str, ModalityReport]]:
    """One ``[items, d]`` matrix per modality, in the new item IDs, missing rows filled.

    Args:
        loaded: modality -> its rows as read (:data:`Loaded`); rows of items not kept are ignored.
        rows_read_of: the rows each modality's file had (for text: every text read, before only
            the kept items' texts were encoded).
        ids: the ID maps.
        fill: ``'mean'`` (the mean of the rows used) or ``'zeros'``, for kept items without a row.
        src: the interaction file, and ``item_col`` its item column, for the error.

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
            raise _no_shared_id(source, item_keys, ids, src, item_col)
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
