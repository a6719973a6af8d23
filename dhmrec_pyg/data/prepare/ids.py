"""ID maps: original user and item IDs (text) to dense 0-based integers, and the map files."""

from __future__ import annotations

import csv
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ...files import atomic_write
from ..errors import DataError
from .read import Interactions, check_file

__all__ = ["IdMaps", "id_maps", "read_id_map", "sorted_ids", "write_id_map"]


@dataclass
class IdMaps:
    """Dense user and item IDs, and the kept interactions in them.

    Attributes:
        user_ids: original user IDs; ``user_ids[k]`` becomes user ``k``.
        warm_ids: original IDs of the items with interactions (the first item IDs).
        cold_ids: original IDs of the items kept for their features only (the IDs after them).
        cold_dropped: items with features but no interaction left out.
        item_ids: ``warm_ids`` then ``cold_ids``; ``item_ids[k]`` becomes item ``k``.
        item_pos: original item ID -> dense ID.
        user_new: dense user ID of each kept interaction.
        item_new: dense item ID of each kept interaction.
    """

    user_ids: np.ndarray
    warm_ids: np.ndarray
    cold_ids: np.ndarray
    cold_dropped: int
    item_ids: np.ndarray
    item_pos: dict[str, int]
    user_new: np.ndarray
    item_new: np.ndarray


def sorted_ids(ids: np.ndarray) -> np.ndarray:
    """Sort unique text IDs: numerically when all are digit strings, else as text."""
    values = ids.tolist()
    if values and all(v.isdigit() for v in values):
        return np.array(sorted(values, key=lambda v: (int(v), v)), dtype=ids.dtype)
    return np.sort(ids)


def id_maps(
    table: Interactions, warm_u: np.ndarray, warm_i: np.ndarray, feature_ids: Iterable[str], keep_cold_items: bool,
) -> IdMaps:
    """Users sorted; items with interactions (sorted), then cold items (sorted) unless left out.

    Args:
        table: the filtered interactions.
        warm_u: codes (into ``table.uniq_u``) of the users left.
        warm_i: codes (into ``table.uniq_i``) of the items left.
        feature_ids: the item IDs of every feature (and text) row; those in no interaction row
            are the cold items. Items removed by the filters are not cold items.
        keep_cold_items: keep the cold items (else they are left out and counted).
    """
    uniq_u, uniq_i = table.uniq_u, table.uniq_i
    user_ids = sorted_ids(uniq_u[warm_u])
    warm_ids = sorted_ids(uniq_i[warm_i])
    cold_set = set(feature_ids) - set(uniq_i.tolist())
    cold_ids = sorted_ids(np.array(sorted(cold_set), dtype=str)) if cold_set else np.zeros(0, dtype=str)
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
    return IdMaps(
        user_ids=user_ids, warm_ids=warm_ids, cold_ids=cold_ids, cold_dropped=cold_dropped, item_ids=item_ids,
        item_pos=item_pos, user_new=code_to_user[table.u_code], item_new=code_to_item[table.i_code],
    )


def write_id_map(path: Path, ids: np.ndarray, new_name: str) -> None:
    """Atomically write ``original_id,<new_name>`` rows: ``ids[k]`` maps to ``k``."""
    def write(fh: Any) -> None:
        """Write the header and one row per ID to the open file ``fh``."""
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(["original_id", new_name])
        w.writerows((s, k) for k, s in enumerate(ids.tolist()))

    atomic_write(path, write, mode="w")


def read_id_map(path: str | Path) -> dict[str, int]:
    """Read a ``user_map.csv`` / ``item_map.csv`` written by :func:`~dhmrec_pyg.data.prepare.prepare_dataset`.

    Args:
        path: the map file (columns ``original_id`` and ``userID`` or ``itemID``).

    Returns:
        original ID (text) -> dense 0-based ID.

    Raises:
        DataError: if the file is missing or malformed.
    """
    path = Path(path)
    check_file(path, "ID map")
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
