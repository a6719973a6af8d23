"""Top-K recommendations from a trained run, written as CSV or Parquet.

A data set made by ``dhmrec prepare`` keeps the original user and item ids in its ``user_map.csv``
and ``item_map.csv`` (:func:`~dhmrec_pyg.data.read_id_map`); :class:`OriginalIds` holds them, so
that a file of users can name original ids (:func:`read_user_file`) and the written
recommendations carry the original ids beside the internal ones (:func:`write_recommendations`).
"""
from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Mapping, NamedTuple, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch import Tensor
from torch_geometric.data import HeteroData

from dhmrec_pyg import files as dfiles
from dhmrec_pyg.errors import ConfigError, DataError
from dhmrec_pyg.models.base import Recommender
from dhmrec_pyg.ranking import FAISS_MIN_ITEMS, NO_ITEM, ShortListWarning, top_k
from dhmrec_pyg.schema import EDGE_TYPE, as_interaction_graph

__all__ = [
    "FAISS_MIN_ITEMS", "NO_ITEM", "USER_COLUMNS", "OriginalIds", "ShortListWarning", "UserFile",
    "dataset_original_ids", "read_original_ids", "read_user_file", "recommend", "write_recommendations",
]

#: Column names a first line of a users file may hold to be taken as its header
#: (``original_id`` is the original-id column of a ``user_map.csv``).
USER_COLUMNS: Tuple[str, ...] = ("user", "userID", "user_id", "original_id")

_INTEGER = re.compile(r"[+-]?[0-9]+")


@torch.no_grad()
def recommend(
    model: Recommender,
    train_edge_index: Union[Tensor, HeteroData],
    k: int = 20,
    users: Optional[Sequence[int]] = None,
    batch_size: int = 4096,
    use_faiss: Optional[bool] = None,
    *,
    edge_type: Union[None, str, Tuple[str, str, str]] = None,
) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Top-``k`` items per user, never an item the user interacted with in training.

    Items are ranked by the model's score (equation (23): the inner product of
    final embeddings) by :func:`dhmrec_pyg.ranking.top_k`. Items that have features
    but no training interaction are ranked like any other: a multimodal model gives
    them embeddings from their features.

    Args:
        model: a trained :class:`~dhmrec_pyg.models.Recommender`.
        train_edge_index: ``[2, E]`` training interactions (excluded), or the
            training graph (a ``HeteroData``, checked with
            :func:`~dhmrec_pyg.schema.as_interaction_graph`; its training edges).
        k: items per user.
        users: user ids (default: all users).
        batch_size: users scored at once on the dense path.
        use_faiss: search a faiss ``IndexFlatIP`` over the item embeddings
            instead of scoring densely; default: only for catalogues of at
            least :data:`~dhmrec_pyg.ranking.FAISS_MIN_ITEMS` items. Needs a model
            whose score is the plain inner product.
        edge_type: the interaction edge type of a graph with its own names
            (``(user type, relation, item type)``); only with a ``HeteroData``.

    Returns:
        ``(users [U], items [U, w], scores [U, w])`` as NumPy arrays, best first, ``w = min(k,
        number of items)``. A user with fewer than ``k`` items outside its training interactions
        gets all of them; its row goes on with item :data:`NO_ITEM` (-1) and score ``-inf``, and a
        :class:`ShortListWarning` says how many users are short (see
        :func:`dhmrec_pyg.ranking.top_k`).
    """
    if k < 1:
        raise ConfigError(f"k must be >= 1, got {k}")
    if isinstance(train_edge_index, HeteroData):
        train_edge_index = as_interaction_graph(train_edge_index, edge_type)[EDGE_TYPE].edge_index
    elif edge_type is not None:
        raise ConfigError("edge_type= needs the training graph (a HeteroData), not an edge_index tensor")
    inner_product = type(model).score is Recommender.score
    if use_faiss and not inner_product:
        raise ConfigError(f"{type(model).__name__} does not score by inner product: faiss search is not exact")
    model.eval()
    user_emb, item_emb = model.embeddings()
    return top_k(user_emb, item_emb, train_edge_index, k, users, batch_size,
                 score_fn=None if inner_product else model.score, use_faiss=use_faiss)


@dataclass(frozen=True)
class OriginalIds:
    """The original ids of a data set made by ``dhmrec prepare``.

    Attributes:
        users: ``[U]`` text; ``users[k]`` is the original id of user ``k``.
        items: ``[I]`` text; ``items[k]`` is the original id of item ``k``.
        user_index: original user id -> internal user id.
    """

    users: np.ndarray
    items: np.ndarray
    user_index: Dict[str, int]


def read_original_ids(folder: str | Path, num_users: int, num_items: int) -> Optional[OriginalIds]:
    """The id maps (``user_map.csv``, ``item_map.csv``) of a data set folder made by ``dhmrec prepare``.

    Args:
        folder: the data set folder.
        num_users, num_items: the data set's numbers of users and items, which the maps must cover.

    Returns:
        The :class:`OriginalIds`, or ``None`` when the folder has neither map.

    Raises:
        DataError: one map without the other, a malformed map, or a map that does not give every
            internal id ``0..n-1`` exactly one original id.
    """
    folder = Path(folder)
    paths = [folder / "user_map.csv", folder / "item_map.csv"]
    present = [p.is_file() for p in paths]
    if not any(present):
        return None
    if not all(present):
        raise DataError(f"{paths[present.index(False)]}: missing, but {paths[present.index(True)].name} is there")
    from dhmrec_pyg.data import read_id_map

    user_index = read_id_map(paths[0])
    users = _inverse(paths[0], user_index, num_users)
    items = _inverse(paths[1], read_id_map(paths[1]), num_items)
    return OriginalIds(users=users, items=items, user_index=user_index)


def _inverse(path: Path, index: Mapping[str, int], size: int) -> np.ndarray:
    """``out[k]``: the original id mapped to ``k``, for ``k`` in ``0..size-1``."""
    out = np.empty(size, dtype=object)
    filled = np.zeros(size, dtype=bool)
    for original, k in index.items():
        if k >= size or filled[k]:
            why = "out of range" if k >= size else "given twice"
            raise DataError(f"{path}: internal id {k} of {original!r} is {why} (the data set has {size})")
        out[k], filled[k] = original, True
    if not filled.all():
        raise DataError(f"{path}: no original id for internal id {int(np.argmin(filled))} (the data set has {size})")
    return out.astype(str)


def dataset_original_ids(data: HeteroData) -> Optional[OriginalIds]:
    """:func:`read_original_ids` of the data set folder a loaded graph came from (``None``: a
    graph with no recorded folder, a synthetic profile, or a folder without id maps)."""
    from dhmrec_pyg.data.synthetic import synthetic_profile_of
    from dhmrec_pyg.training.config import IN_MEMORY
    from dhmrec_pyg.training.source import data_source

    source = data_source(data)
    name = str(source.get("dataset") or "")
    if not name or name == IN_MEMORY or synthetic_profile_of(name) is not None:
        return None
    folder = Path(name) if Path(name).is_absolute() else Path(source.get("data_root") or ".") / name
    if not folder.is_dir():
        return None
    return read_original_ids(folder, int(data["user"].num_nodes), int(data["item"].num_nodes))


def write_recommendations(
    path: str | Path, users: np.ndarray, items: np.ndarray, scores: np.ndarray,
    original: Optional[OriginalIds] = None,
) -> Path:
    """Write long-format recommendations, one row per (user, rank), to CSV or Parquet.

    The columns are ``user, rank, item, score`` (internal ids), then, with ``original``, the
    original ids ``original_user, original_item``. Cells holding :data:`NO_ITEM` (a user with fewer
    items to recommend than the width of ``items``) are left out: that user has fewer rows. The
    format follows the file extension (``.csv`` or ``.parquet``); Parquet needs ``pyarrow``. The
    file is written atomically.
    """
    path = Path(path)
    if path.suffix not in (".csv", ".parquet"):
        raise ConfigError(f"{path}: the recommendations file must end in .csv or .parquet")
    keep = items != NO_ITEM
    row, col = np.nonzero(keep)
    cols = {"user": users[row], "rank": col + 1, "item": items[keep], "score": scores[keep]}
    if original is not None:
        cols["original_user"] = original.users[cols["user"]]
        cols["original_item"] = original.items[cols["item"]]
    if path.suffix == ".parquet":
        _write_parquet(path, cols)
        return path
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(cols)
    text_cols = [c.tolist() for c in cols.values()]
    text_cols[3] = [f"{s:.6g}" for s in text_cols[3]]
    writer.writerows(zip(*text_cols))
    dfiles.write_text(path, buf.getvalue())
    return path


def _write_parquet(path: Path, cols: Mapping[str, np.ndarray]) -> None:
    """Write the columns ``cols`` as a Parquet table, atomically."""
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise ConfigError(f"{path}: writing Parquet needs pyarrow (pip install pyarrow), or use .csv") from None
    table = pa.table({name: (c.tolist() if c.dtype.kind == "U" else c) for name, c in cols.items()})
    dfiles.atomic_write(path, lambda fh: pq.write_table(table, fh))


class UserFile(NamedTuple):
    """The users a users file names (:func:`read_user_file`).

    Attributes:
        users: ``[B]`` internal user ids, in the file's order (unknown original ids left out).
        unknown: the original ids that are no user of the data set, in the file's order.
        path: the file.
    """

    users: np.ndarray
    unknown: List[str]
    path: Path


def read_user_file(
    path: str | Path, header: Optional[bool] = None, ids: Optional[Mapping[str, int]] = None,
) -> UserFile:
    """The users named in a text file, one id per line (CSV quoting allowed; blank lines skipped).

    Args:
        path: the file.
        header: whether the first line is a header; ``None``: only when it is one of
            :data:`USER_COLUMNS` (never otherwise: a first line that is not an id is an error,
            not a header). With ``ids``, a first line that is both a column name and a user id
            must be declared.
        ids: original id -> internal id (:attr:`OriginalIds.user_index`): the lines are original
            ids, the unknown ones are collected in :attr:`UserFile.unknown`. ``None``: the lines
            are internal integer ids.

    Raises:
        ConfigError: the file cannot be read, names no user, has a line with more than one field,
            or (internal ids) a value that is not an integer; the message names the file and line.
    """
    path = Path(path)
    rows = _user_rows(path)
    column = "1"
    if rows and header is None:
        first = rows[0][1]
        header = first in USER_COLUMNS
        if header and ids is not None and first in ids:
            raise ConfigError(f"{path}, line {rows[0][0]}: {first!r} is both a column name and a user id; "
                              "declare whether the file has a header")
    if rows and header:
        column, rows = repr(rows[0][1]), rows[1:]
    if not rows:
        raise ConfigError(f"{path}: no user ids")
    if ids is None:
        for line, text in rows:
            if not _INTEGER.fullmatch(text):
                raise ConfigError(f"{path}, line {line}, column {column}: {text!r} is not an integer user id")
        return UserFile(np.asarray([int(t) for _, t in rows], dtype=np.int64), [], path)
    known = [ids[t] for _, t in rows if t in ids]
    return UserFile(np.asarray(known, dtype=np.int64), [t for _, t in rows if t not in ids], path)


def _user_rows(path: Path) -> List[Tuple[int, str]]:
    """``(line number, stripped value)`` of the non-blank lines of a one-column users file."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.reader(fh)
            rows = []
            for fields in reader:
                values = [f.strip() for f in fields]
                if not any(values):
                    continue
                if len(values) != 1:
                    raise ConfigError(f"{path}, line {reader.line_num}: expected one user id per line, "
                                      f"found {len(values)} fields {fields}")
                rows.append((reader.line_num, values[0]))
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the users file ({exc.strerror})") from None
    except (UnicodeDecodeError, csv.Error) as exc:
        raise ConfigError(f"{path}: not a text file of user ids ({exc})") from None
    return rows
