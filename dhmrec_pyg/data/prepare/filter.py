"""Filtering the interactions: duplicate ``(user, item)`` pairs and the ``k``-core."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import DataError
from .read import Interactions

__all__ = ["drop_duplicates", "k_core", "k_core_filter"]


def drop_duplicates(table: Interactions) -> None:
    """Keep one row of each repeated ``(user, item)`` pair of ``table`` (in place).

    The earliest is kept when there are timestamps, else the first in the file; the kept rows stay
    in file order and ``table.duplicates`` counts the rows dropped.
    """
    ts = table.ts
    key = table.u_code.astype(np.int64) * len(table.uniq_i) + table.i_code
    order = np.lexsort((np.arange(key.size), ts)) if ts is not None else np.arange(key.size)
    _, first = np.unique(key[order], return_index=True)
    keep = np.sort(order[first])
    table.u_code, table.i_code = table.u_code[keep], table.i_code[keep]
    table.ts = None if ts is None else ts[keep]
    table.duplicates = int(key.size - keep.size)


def k_core(u: np.ndarray, i: np.ndarray, k: int) -> tuple[np.ndarray, int]:
    """Boolean mask of the interactions in the ``k``-core and the number of rounds it took.

    Users and items with fewer than ``k`` interactions are removed, round after round, until every
    remaining user and item has at least ``k``; ``k <= 1`` keeps everything (0 rounds).
    """
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


def k_core_filter(table: Interactions, k: int, src: Path) -> tuple[np.ndarray, np.ndarray]:
    """Keep the ``k``-core of ``table`` (in place); return the codes of the users and items left.

    Raises:
        DataError: naming ``src`` when no interaction is left.
    """
    core, table.k_core_rounds = k_core(table.u_code, table.i_code, k)
    table.users_before_core = np.unique(table.u_code).size
    table.items_before_core = np.unique(table.i_code).size
    table.u_code, table.i_code = table.u_code[core], table.i_code[core]
    if table.ts is not None:
        table.ts = table.ts[core]
    table.k_core_dropped = int((~core).sum())
    if table.u_code.size == 0:
        raise DataError(
            f"{src}: no interaction left after the {k}-core filter ({int(core.size)} before it); lower k_core"
        )
    return np.unique(table.u_code), np.unique(table.i_code)
