"""Reading and writing the MMRec on-disk layout.

A dataset folder ``NAME/`` holds

* ``NAME.inter``: tab-separated text with a header naming at least the columns ``userID``,
  ``itemID`` and ``x_label`` (0 train, 1 validation, 2 test); any further columns (MMRec's
  ``rating`` and ``timestamp``, for instance) are accepted and ignored. IDs are 0-based integers.
* ``MODALITY_feat.npy`` (zero or more): a plain 2-D numeric array per modality, row ``i`` describing
  item ``i``; the modality is the file stem without ``_feat`` (``image_feat.npy`` -> ``image``).

:func:`load_mmrec` turns such a folder into a :class:`torch_geometric.data.HeteroData` and
:func:`write_mmrec` writes one back.
"""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
import torch
from torch_geometric.data import HeteroData

from ..files import atomic_write
from ..schema import EDGE_TYPE, as_interaction_graph, modality_names, split_edge_index, split_edge_type
from .errors import DataError

__all__ = [
    "EDGE_TYPE",
    "atomic_write",
    "build_heterodata",
    "KNOWN_DATASETS",
    "REQUIRED_COLUMNS",
    "check_known_statistics",
    "find_mmrec_files",
    "load_mmrec",
    "modalities",
    "numpy_file_kind",
    "read_features",
    "read_inter",
    "write_mmrec",
]

#: Columns every ``.inter`` file must have.
REQUIRED_COLUMNS: tuple[str, ...] = ("userID", "itemID", "x_label")

#: Published statistics of the standard benchmarks: users, items and interactions (all splits).
KNOWN_DATASETS: dict[str, dict[str, int]] = {
    "baby": {"users": 19445, "items": 7050, "interactions": 160792},
    "sports": {"users": 35598, "items": 18357, "interactions": 296337},
    "clothing": {"users": 39387, "items": 23033, "interactions": 278677},
    "tiktok": {"users": 9308, "items": 6710, "interactions": 68722},
}

_FEAT_SUFFIX = "_feat.npy"
#: A modality name (the ``<modality>`` of ``<modality>_feat.npy`` and ``x_<modality>``): letters,
#: digits and underscores. The one definition, shared with :mod:`dhmrec_pyg.data.prepare`.
MODALITY_NAME_RE = re.compile(r"^[A-Za-z0-9_]+$")
_MAX_ID = 2**31 - 1


# ----------------------------------------------------------------------------------------------
# Locating files
# ----------------------------------------------------------------------------------------------
def find_mmrec_files(folder: str | Path, name: str | None = None) -> tuple[Path, list[tuple[str, Path]]]:
    """Locate the interaction file and the modality feature files of an MMRec folder.

    Args:
        folder: the dataset folder.
        name: the dataset name, i.e. the ``.inter`` file's stem. By default the folder's base name;
            if no such file exists but the folder holds exactly one ``*.inter`` file, that one.

    Returns:
        ``(inter_path, [(modality, feat_path), ...])`` with modalities sorted by name.

    Raises:
        DataError: if the folder or the interaction file is missing, a modality name is invalid, or
            ``name`` is not a plain file name (it may not lead outside ``folder``).
    """
    folder = Path(folder)
    if not folder.exists():
        raise DataError(f"{folder}: dataset folder does not exist")
    if not folder.is_dir():
        raise DataError(f"{folder}: expected a dataset folder, found a file")
    inters = sorted(p for p in folder.glob("*.inter") if p.is_file())
    if name is not None:
        if not name or name in (".", "..") or any(c in name for c in ("/", "\\", "\0", os.sep)):
            raise DataError(
                f"{folder}: dataset name {name!r} must be a plain file name (the .inter file's stem, "
                "no path separators), so that it cannot point outside the folder"
            )
        inter = folder / f"{name}.inter"
        if not inter.is_file():
            found = ", ".join(p.name for p in inters) or "none"
            raise DataError(f"{inter}: interaction file not found (.inter files in folder: {found})")
    else:
        inter = folder / f"{folder.resolve().name}.inter"
        if not inter.is_file():
            if len(inters) == 1:
                inter = inters[0]
            elif not inters:
                raise DataError(f"{inter}: interaction file not found (the folder holds no .inter file)")
            else:
                found = ", ".join(p.name for p in inters)
                raise DataError(
                    f"{inter}: interaction file not found, and the folder holds several .inter "
                    f"files ({found}); pass name= to choose one"
                )
    feats: list[tuple[str, Path]] = []
    for path in sorted(folder.glob(f"*{_FEAT_SUFFIX}")):
        if not path.is_file():
            continue
        modality = path.name[: -len(_FEAT_SUFFIX)]
        if not MODALITY_NAME_RE.match(modality):
            raise DataError(
                f"{path.name}: modality name {modality!r} must be non-empty and use only letters, "
                "digits and underscores"
            )
        feats.append((modality, path))
    feats.sort()
    return inter, feats


# ----------------------------------------------------------------------------------------------
# Parsing the .inter file
# ----------------------------------------------------------------------------------------------
def _decode(token: bytes) -> str:
    return token.decode("utf-8", errors="replace")


def _parse_int_column(
    tokens: list[bytes], fname: str, column: str, line_no: np.ndarray
) -> np.ndarray:
    """Parse a column of byte tokens as non-negative int64, with a clear error on the first bad one."""
    if not tokens:
        return np.zeros(0, dtype=np.int64)
    col = np.char.strip(np.array(tokens, dtype=bytes))
    ok = np.char.isdigit(col) & (np.char.str_len(col) <= 10)
    if not ok.all():
        bad = int(np.flatnonzero(~ok)[0])
        tok = _decode(col[bad])
        if np.char.isdigit(col[bad]):
            raise DataError(
                f"{fname}: column {column!r} holds {tok!r} on line {int(line_no[bad])}, "
                f"larger than the maximum supported ID {_MAX_ID}"
            )
        raise DataError(
            f"{fname}: column {column!r} must hold non-negative integers, found {tok!r} "
            f"on line {int(line_no[bad])}"
        )
    values = col.astype(np.int64)
    if values.max() > _MAX_ID:
        bad = int(np.flatnonzero(values > _MAX_ID)[0])
        raise DataError(
            f"{fname}: column {column!r} holds '{int(values[bad])}' on line {int(line_no[bad])}, "
            f"larger than the maximum supported ID {_MAX_ID}"
        )
    return values


def read_inter(path: str | Path) -> dict[str, np.ndarray]:
    """Read the required columns of an MMRec ``.inter`` file.

    Blank lines are skipped; a UTF-8 byte-order mark and Windows line ends are accepted.

    Args:
        path: the ``.inter`` file.

    Returns:
        A dict with int64 arrays ``userID``, ``itemID``, ``x_label`` and ``line`` (the 1-based line
        number of each row in the file, for error messages).

    Raises:
        DataError: on a missing column, a row with the wrong number of fields, a value that is not a
            non-negative integer, or an ``x_label`` outside ``{0, 1, 2}``.
    """
    path = Path(path)
    fname = path.name
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise DataError(f"{path}: cannot read the interaction file ({e.strerror or e})") from e
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    if b"\r" in raw:
        raw = raw.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    lines = raw.split(b"\n")
    first = 0
    while first < len(lines) and not lines[first].strip():
        first += 1
    if first == len(lines):
        raise DataError(f"{fname}: file is empty, expected a header with columns {', '.join(REQUIRED_COLUMNS)}")
    names = [_decode(h.strip()) for h in lines[first].split(b"\t")]
    for col in REQUIRED_COLUMNS:
        if col not in names:
            raise DataError(
                f"{fname}: missing column {col!r} in the header (found columns {names!r}; the file "
                "must be tab-separated)"
            )
        if names.count(col) > 1:
            raise DataError(f"{fname}: column {col!r} appears {names.count(col)} times in the header")
    ncol = len(names)
    body = lines[first + 1 :]
    keep = [i for i, line in enumerate(body) if line.strip()]
    line_no = np.asarray(keep, dtype=np.int64) + first + 2
    if len(keep) != len(body):
        body = [body[i] for i in keep]
    n = len(body)
    tokens = b"\t".join(body).split(b"\t") if n else []
    if len(tokens) != n * ncol:
        for row, line in enumerate(body):
            k = line.count(b"\t") + 1
            if k != ncol:
                raise DataError(
                    f"{fname}: line {int(line_no[row])} has {k} tab-separated fields, expected {ncol} "
                    f"like the header {names!r}: {_decode(line[:80])!r}"
                )
    out: dict[str, np.ndarray] = {}
    for col in REQUIRED_COLUMNS:
        j = names.index(col)
        out[col] = _parse_int_column(tokens[j::ncol], fname, col, line_no)
    label = out["x_label"]
    bad = np.flatnonzero(label > 2)
    if bad.size:
        b = int(bad[0])
        raise DataError(
            f"{fname}: column 'x_label' must be 0 (train), 1 (valid) or 2 (test), found "
            f"'{int(label[b])}' on line {int(line_no[b])}"
        )
    out["line"] = line_no
    return out


# ----------------------------------------------------------------------------------------------
# Feature files
# ----------------------------------------------------------------------------------------------
_NPY_MAGIC = b"\x93NUMPY"
_ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06")  # a zip archive, or an empty one (what np.load looks for)


def numpy_file_kind(path: str | Path) -> str:
    """What a file is, from its first bytes, before numpy is asked to load it.

    Without this check ``np.load`` takes any file that is neither an ``.npy`` array nor a zip
    archive for a pickle, and refuses it as "pickled data", which misleads about a text file.

    Returns:
        ``'npy'`` (the ``.npy`` magic string), ``'npz'`` (a zip archive), ``'empty'``, or
        ``'other'`` (e.g. a text file).

    Raises:
        DataError: naming ``path`` if it cannot be read.
    """
    try:
        with open(path, "rb") as fh:
            head = fh.read(len(_NPY_MAGIC))
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror or e})") from e
    if not head:
        return "empty"
    if head == _NPY_MAGIC:
        return "npy"
    if head.startswith(_ZIP_MAGICS):
        return "npz"
    return "other"


def read_features(path: str | Path) -> np.ndarray:
    """Load and validate one modality feature file as a C-contiguous float32 matrix.

    Args:
        path: a ``*_feat.npy`` file holding a plain (non-pickled) 2-D numeric array.

    Returns:
        float32 array ``[num_rows, dim]``.

    Raises:
        DataError: if the file is not an ``.npy`` file (text, say, or an ``.npz`` archive), if numpy
            cannot load it without pickle, if it is not a 2-D integer or floating array with at least
            one column, or if any value is NaN or infinite (also after conversion to float32).
    """
    path = Path(path)
    fname = path.name
    kind = numpy_file_kind(path)
    if kind == "npz":
        raise DataError(f"{fname}: expected a single .npy array, found an .npz archive; save it with np.save")
    if kind != "npy":
        what = "the file is empty" if kind == "empty" else "it lacks the .npy header: a text file, say"
        raise DataError(f"{fname}: not a NumPy file ({what}); save the 2-D array with np.save")
    try:
        arr = np.load(path, allow_pickle=False)
    except Exception as e:  # numpy raises ValueError, OSError, EOFError, ... for bad files
        raise DataError(f"{fname}: cannot be loaded as a plain .npy array ({type(e).__name__}: {e})") from e
    if not isinstance(arr, np.ndarray):
        if hasattr(arr, "close"):
            arr.close()
        raise DataError(f"{fname}: expected a single .npy array, found {type(arr).__name__} (an .npz archive?)")
    if arr.dtype.kind not in "iuf":
        raise DataError(f"{fname}: array must be numeric (integer or float), found dtype '{arr.dtype}'")
    if arr.ndim != 2:
        raise DataError(f"{fname}: array must be 2-D (items x features), found shape {arr.shape}")
    if arr.shape[1] == 0:
        raise DataError(f"{fname}: array has shape {arr.shape}, expected at least one feature column")
    x = finite_float32(arr, fname)
    del arr
    return x


def finite_float32(
    x: np.ndarray, source: str | Path, describe_row: Callable[[int], str] | None = None
) -> np.ndarray:
    """``x`` as a C-contiguous float32 matrix, refusing NaN and inf (also after the conversion).

    The one check of feature values, for MMRec feature files (:func:`read_features`) and the
    feature files :func:`~dhmrec_pyg.data.prepare.prepare_dataset` reads.

    Args:
        x: a 2-D numeric array, one row per item.
        source: the file named in the error.
        describe_row: the item a row holds, for the error (default: ``"item R (row R)"``).

    Raises:
        DataError: naming ``source``, the first non-finite value, its item and its column.
    """
    with np.errstate(over="ignore", invalid="ignore"):
        x32 = np.ascontiguousarray(x, dtype=np.float32)
    finite_rows = np.isfinite(x32).all(axis=1)
    if not finite_rows.all():
        row = int(np.flatnonzero(~finite_rows)[0])
        col = int(np.flatnonzero(~np.isfinite(x32[row]))[0])
        item = describe_row(row) if describe_row is not None else f"item {row} (row {row})"
        raise DataError(
            f"{source}: non-finite feature value ({x32[row, col]}: NaN, inf or beyond float32 range) "
            f"for {item}, feature column {col}"
        )
    return x32


# ----------------------------------------------------------------------------------------------
# Loading
# ----------------------------------------------------------------------------------------------
def modalities(data: HeteroData) -> list[str]:
    """Return the sorted modality names of ``data``: its item attributes ``x_<m>``, prefix stripped
    (:func:`dhmrec_pyg.schema.modality_names`)."""
    return modality_names(data)


def check_known_statistics(data: HeteroData, dataset: str) -> list[str]:
    """Warn when ``dataset`` names a known benchmark (case-insensitive) whose counts ``data`` misses.

    Args:
        data: a graph built by :func:`load_mmrec`.
        dataset: the dataset's name (typically the folder's base name).

    Returns:
        The list of differences found (empty when the name is unknown or everything matches); one
        :class:`UserWarning` is issued when it is not empty.
    """
    known = KNOWN_DATASETS.get(dataset.lower())
    if known is None:
        return []
    found = {
        "users": int(data["user"].num_nodes),
        "items": int(data["item"].num_nodes),
        "interactions": sum(
            int(ei.size(1)) for ei in (split_edge_index(data, s, missing_ok=True) for s in ("train", "val", "test"))
            if ei is not None
        ),
    }
    diffs = [f"{k} expected {known[k]}, found {found[k]}" for k in ("users", "items", "interactions") if found[k] != known[k]]
    if diffs:
        warnings.warn(
            f"dataset {dataset!r} differs from the published statistics of {dataset.lower()!r}: "
            + "; ".join(diffs)
            + " (is this the benchmark's standard 5-core version?)",
            UserWarning,
            stacklevel=2,
        )
    return diffs


def _edge_index(user: np.ndarray, item: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(np.stack([user, item]), dtype=np.int64))


def build_heterodata(
    user: np.ndarray,
    item: np.ndarray,
    x_label: np.ndarray,
    num_users: int,
    num_items: int,
    features: Mapping[str, np.ndarray] | None = None,
    name: str = "",
) -> HeteroData:
    """Assemble the package's :class:`HeteroData` from validated arrays (no checks are made here).

    Args:
        user: int array ``[E]`` of user IDs.
        item: int array ``[E]`` of item IDs.
        x_label: int array ``[E]`` of split labels (0 train, 1 valid, 2 test).
        num_users: number of user nodes.
        num_items: number of item nodes.
        features: modality name -> float32 ``[num_items, d]`` matrix.
        name: stored as ``data.name``.

    Returns:
        The graph described in :func:`load_mmrec`.
    """
    data = HeteroData()
    data.name = name
    data["user"].num_nodes = int(num_users)
    data["item"].num_nodes = int(num_items)
    for k, split in enumerate(("train", "val", "test")):
        mask = x_label == k
        edge_index = _edge_index(user[mask], item[mask])
        data[split_edge_type(split)].edge_index = edge_index
        if split != "train":  # the earlier layout's attribute, for code that still reads it
            data[EDGE_TYPE][f"{split}_edge_index"] = edge_index
    for modality, x in sorted((features or {}).items()):
        data["item"][f"x_{modality}"] = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    return data


def load_mmrec(folder: str | Path, name: str | None = None) -> HeteroData:
    """Load an MMRec-layout dataset folder into a :class:`HeteroData`.

    Args:
        folder: the dataset folder holding ``NAME.inter`` and zero or more ``*_feat.npy`` files.
        name: the ``.inter`` file's stem; defaults to the folder's base name, or to the folder's only
            ``.inter`` file.

    Returns:
        A :class:`HeteroData` with

        * ``data['user'].num_nodes`` = max userID + 1; ``data['item'].num_nodes`` = the feature
          files' row count, or max itemID + 1 without feature files;
        * ``data['user', 'interacts', 'item'].edge_index`` (training, ``x_label == 0``),
          ``data['user', 'interacts_val', 'item'].edge_index`` (validation, 1) and
          ``data['user', 'interacts_test', 'item'].edge_index`` (test, 2): int64 ``[2, E]`` (row 0
          users, row 1 items), each in file order (the schema of :mod:`dhmrec_pyg.schema`; the
          training store also carries the earlier layout's ``val_edge_index`` and
          ``test_edge_index``, the same tensors);
        * ``data['item'][f'x_{m}']``: float32 ``[num_items, d_m]`` for every modality ``m``;
        * ``data.name``: the dataset name (the ``.inter`` stem).

        Duplicate ``(userID, itemID)`` pairs are dropped, keeping the first occurrence, with a
        warning; a warning is also issued when the folder names a known benchmark
        (:data:`KNOWN_DATASETS`) and the counts differ.

    Raises:
        DataError: for any missing file or column, malformed value, inconsistent feature shapes,
            non-finite feature, or an empty training split.
    """
    folder = Path(folder)
    inter_path, feat_paths = find_mmrec_files(folder, name)
    fname = inter_path.name
    cols = read_inter(inter_path)
    user, item, label, line_no = cols["userID"], cols["itemID"], cols["x_label"], cols["line"]

    features: dict[str, np.ndarray] = {}
    rows_of: dict[str, int] = {}
    for modality, path in feat_paths:
        x = read_features(path)
        features[modality] = x
        rows_of[path.name] = x.shape[0]
    if len(set(rows_of.values())) > 1:
        desc = ", ".join(f"{k} has {v}" for k, v in rows_of.items())
        raise DataError(f"feature files disagree on the number of items (rows): {desc}")

    max_item = int(item.max()) if item.size else -1
    if features:
        fpath, n_items = next(iter(rows_of.items()))
        if max_item >= n_items:
            bad = int(np.flatnonzero(item >= n_items)[0])
            raise DataError(
                f"{fpath}: has {n_items} rows but {fname} column 'itemID' holds '{int(item[bad])}' on "
                f"line {int(line_no[bad])}; a feature file needs one row per item (IDs 0..{max_item})"
            )
    else:
        n_items = max_item + 1
    n_users = int(user.max()) + 1 if user.size else 0

    # Drop duplicate pairs, keeping the first occurrence.
    if user.size:
        key = user * np.int64(max(n_items, 1)) + item
        _, first = np.unique(key, return_index=True)
        if first.size != key.size:
            keep = np.zeros(key.size, dtype=bool)
            keep[first] = True
            dup = int(np.flatnonzero(~keep)[0])
            warnings.warn(
                f"{fname}: dropped {key.size - first.size} duplicate (userID, itemID) pair(s), keeping "
                f"each pair's first occurrence (first duplicate: user {int(user[dup])}, item "
                f"{int(item[dup])} on line {int(line_no[dup])})",
                UserWarning,
                stacklevel=2,
            )
            user, item, label = user[keep], item[keep], label[keep]

    n_split = [int((label == k).sum()) for k in range(3)]
    if n_split[0] == 0:
        raise DataError(
            f"{fname}: column 'x_label' holds no training interaction (value 0); found "
            f"{n_split[1]} validation (1) and {n_split[2]} test (2) rows"
        )

    data = build_heterodata(user, item, label, n_users, n_items, features, inter_path.stem)
    check_known_statistics(data, folder.resolve().name)
    return data


# ----------------------------------------------------------------------------------------------
# Writing
# ----------------------------------------------------------------------------------------------
def _column_strings(values: np.ndarray) -> list[str]:
    if values.dtype.kind in "iub":
        return values.astype(np.int64).astype(str).tolist()
    if values.dtype.kind == "f":
        return [repr(v) for v in values.tolist()]
    return [str(v) for v in values.tolist()]


def _check_columns(columns: Mapping[str, np.ndarray]) -> int:
    """Check :func:`write_mmrec`'s columns (required ones present, 1-D, equally long, IDs and
    labels valid); their length."""
    n: int | None = None
    for col in REQUIRED_COLUMNS:
        if col not in columns:
            raise DataError(f"write_mmrec: missing column {col!r} (got {sorted(columns)})")
    for col, values in columns.items():
        if values.ndim != 1:
            raise DataError(f"write_mmrec: column {col!r} must be 1-D, found shape {values.shape}")
        if n is None:
            n = values.shape[0]
        elif values.shape[0] != n:
            raise DataError(f"write_mmrec: column {col!r} has {values.shape[0]} rows, expected {n}")
    for col in REQUIRED_COLUMNS:
        values = columns[col]
        if values.dtype.kind not in "iu":
            raise DataError(f"write_mmrec: column {col!r} must hold integers, found dtype {values.dtype}")
        if values.size and int(values.min()) < 0:
            raise DataError(f"write_mmrec: column {col!r} must be non-negative, found {int(values.min())}")
    if columns["x_label"].size and int(columns["x_label"].max()) > 2:
        raise DataError(f"write_mmrec: column 'x_label' must be 0, 1 or 2, found {int(columns['x_label'].max())}")
    return int(n or 0)


def _check_features(features: Mapping[str, np.ndarray | torch.Tensor], max_item: int) -> dict[str, np.ndarray]:
    """Check :func:`write_mmrec`'s feature matrices (names, 2-D numeric, a row for every item up
    to ``max_item``, equally many rows); them as numpy arrays."""
    feat_arrays: dict[str, np.ndarray] = {}
    for modality, x in features.items():
        if not MODALITY_NAME_RE.match(modality):
            raise DataError(f"write_mmrec: modality name {modality!r} must use only letters, digits, underscores")
        arr = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
        if arr.ndim != 2 or arr.dtype.kind not in "iuf":
            raise DataError(f"write_mmrec: features {modality!r} must be a 2-D numeric array, found {arr.dtype} {arr.shape}")
        if arr.shape[0] <= max_item:
            raise DataError(
                f"write_mmrec: features {modality!r} have {arr.shape[0]} rows but column 'itemID' holds {max_item}"
            )
        feat_arrays[modality] = arr
    if len({a.shape[0] for a in feat_arrays.values()}) > 1:
        raise DataError(
            "write_mmrec: feature matrices disagree on the number of items: "
            + ", ".join(f"{m} has {a.shape[0]} rows" for m, a in feat_arrays.items())
        )
    return feat_arrays


def write_mmrec(
    data: HeteroData | Mapping[str, np.ndarray],
    folder: str | Path,
    name: str | None = None,
    *,
    features: Mapping[str, np.ndarray | torch.Tensor] | None = None,
    overwrite: bool = False,
    edge_type: str | tuple[str, str, str] | None = None,
    user: str | None = None,
    item: str | None = None,
) -> Path:
    """Write interactions (and optional modality features) in the MMRec layout.

    Every file is written atomically (temporary file, then :func:`os.replace`).

    Args:
        data: either a :class:`HeteroData` as returned by :func:`load_mmrec` (its training,
            validation and test edges become rows with ``x_label`` 0, 1, 2 and its item attributes
            ``x_<m>`` become ``<m>_feat.npy``), or a mapping of columns: 1-D arrays ``userID``,
            ``itemID``, ``x_label`` and optionally further columns (e.g. ``timestamp``) that are
            written as they are.
        folder: the destination folder (created if needed).
        name: the dataset name (``NAME.inter``); defaults to ``data.name`` for a graph, else to the
            folder's base name.
        features: modality name -> ``[num_items, d]`` matrix; for a graph, defaults to its ``x_*``.
        overwrite: if the folder already holds ``.inter`` or ``*_feat.npy`` files, they are replaced
            (and stale ones removed) only when this is true; otherwise a :class:`DataError` is raised.
        edge_type, user, item: the schema of a graph with its own names (see
            :func:`~dhmrec_pyg.schema.as_interaction_graph`); default the canonical one.

    Returns:
        The path of the written ``.inter`` file.

    Note:
        The layout stores users and items only through the IDs that occur (and items through the
        feature rows): users or items without any interaction and, without features, item IDs above
        the largest one used, are not represented.
    """
    folder = Path(folder)
    if isinstance(data, HeteroData):
        data = as_interaction_graph(data, edge_type, user=user, item=item)
        parts = [(split_edge_index(data, split, missing_ok=True), k) for k, split in enumerate(("train", "val", "test"))]
        parts = [(ei.detach().cpu().numpy(), k) for ei, k in parts if ei is not None]
        columns: dict[str, np.ndarray] = {
            "userID": np.concatenate([ei[0] for ei, _ in parts]).astype(np.int64),
            "itemID": np.concatenate([ei[1] for ei, _ in parts]).astype(np.int64),
            "x_label": np.concatenate([np.full(ei.shape[1], k, dtype=np.int64) for ei, k in parts]),
        }
        if features is None:
            features = {m: data["item"][f"x_{m}"] for m in modalities(data)}
        if name is None:
            name = getattr(data, "name", None)
    else:
        columns = {k: np.asarray(v) for k, v in data.items()}
    if name is None:
        name = folder.resolve().name
    if not name or "/" in name or "\\" in name or name in (".", ".."):
        raise DataError(f"write_mmrec: dataset name {name!r} must be a plain file name")
    features = dict(features or {})

    n = _check_columns(columns)
    feat_arrays = _check_features(features, int(columns["itemID"].max()) if n else -1)

    folder.mkdir(parents=True, exist_ok=True)
    inter_path = folder / f"{name}.inter"
    existing = [p for p in folder.glob("*.inter")] + [p for p in folder.glob(f"*{_FEAT_SUFFIX}")]
    if existing and not overwrite:
        raise DataError(
            f"{folder}: already holds MMRec files ({', '.join(sorted(p.name for p in existing))}); "
            "pass overwrite=True to replace them"
        )

    names = list(REQUIRED_COLUMNS) + [c for c in columns if c not in REQUIRED_COLUMNS]
    str_cols = [_column_strings(columns[c]) for c in names]
    text = "\t".join(names) + "\n" + "".join("\t".join(row) + "\n" for row in zip(*str_cols))
    payload = text.encode("utf-8")
    atomic_write(inter_path, lambda f: f.write(payload))
    for modality, arr in sorted(feat_arrays.items()):
        atomic_write(folder / f"{modality}{_FEAT_SUFFIX}", lambda f, a=arr: np.save(f, a, allow_pickle=False))
    keep = {inter_path.name} | {f"{m}{_FEAT_SUFFIX}" for m in feat_arrays}
    for p in existing:
        if p.name not in keep:
            p.unlink()
    return inter_path
