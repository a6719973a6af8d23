"""Splitting the prepared interactions into training, validation and test (the ``x_label`` column)."""

from __future__ import annotations

import numpy as np

from ..split import chronological_split, mmrec_split
from .ids import IdMaps

__all__ = ["SPLITS", "split_columns"]

#: The split rules :func:`~dhmrec_pyg.data.prepare.prepare_dataset` knows.
SPLITS: tuple[str, ...] = ("mmrec", "chronological")


def split_columns(split: str, seed: int, ids: IdMaps, ts: np.ndarray | None) -> dict[str, np.ndarray]:
    """The ``.inter`` columns, with each interaction's split label (``x_label``: 0, 1 or 2).

    Args:
        split: ``'mmrec'`` (:func:`~dhmrec_pyg.data.split.mmrec_split`, seeded by ``seed``) or
            ``'chronological'`` (:func:`~dhmrec_pyg.data.split.chronological_split`, needs ``ts``).
        seed: seed of the ``'mmrec'`` split.
        ids: the kept interactions in dense IDs.
        ts: their timestamps, written as a ``timestamp`` column (integers when all are integral).
    """
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
