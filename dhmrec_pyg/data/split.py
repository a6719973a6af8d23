"""Train / validation / test splitters that produce MMRec's ``x_label`` column.

``x_label`` is 0 for training, 1 for validation and 2 for test interactions.

Both splitters apply MMRec's per-user proportions. For a user with ``n`` interactions:

* ``n < 3``: all ``n`` go to training;
* ``3 <= n < 10``: ``n - 2`` training, 1 validation, 1 test;
* ``n >= 10``: ``ceil(0.8 n)`` training, ``floor(0.1 n)`` test and the remaining
  ``n - ceil(0.8 n) - floor(0.1 n)`` (``floor(0.1 n)`` or one more) validation.

The rounding (training rounded up, test rounded down, validation takes the rest) is computed with
exact integer arithmetic and reproduces the per-user counts of the Amazon Baby and Sports files
distributed with MMRec (e.g. ``n = 15`` gives 12 / 2 / 1 and ``n = 20`` gives 16 / 2 / 2).
"""

from __future__ import annotations

import numpy as np

from .errors import DataError

__all__ = ["split_counts", "mmrec_split", "chronological_split"]


def split_counts(n: np.ndarray | int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return the ``(train, valid, test)`` counts of MMRec's rule for users with ``n`` interactions.

    Args:
        n: one count or an integer array of per-user interaction counts.

    Returns:
        Three int64 arrays of the same shape as ``n`` that sum to ``n``.
    """
    n = np.asarray(n, dtype=np.int64)
    large = n >= 10
    small = (n >= 3) & ~large
    test = np.where(large, n // 10, np.where(small, 1, 0))
    train = np.where(large, (8 * n + 9) // 10, np.where(small, n - 2, n))
    valid = n - train - test
    return train, valid, test


def _check_1d(arr: np.ndarray, field: str, integer: bool) -> np.ndarray:
    out = np.asarray(arr)
    if out.ndim != 1:
        raise DataError(f"{field}: expected a 1-D array, found shape {out.shape}")
    if integer:
        if out.dtype.kind not in "iu":
            raise DataError(f"{field}: expected integer IDs, found dtype {out.dtype}")
        if out.size and int(out.min()) < 0:
            bad = int(np.flatnonzero(out < 0)[0])
            raise DataError(f"{field}: IDs must be non-negative, found {int(out[bad])} at index {bad}")
    elif out.dtype.kind not in "iuf":
        raise DataError(f"{field}: expected numeric values, found dtype {out.dtype}")
    return out


def _labels_from_order(user: np.ndarray, order: np.ndarray) -> np.ndarray:
    """Assign labels given ``order``: interaction indices grouped by user, each group in split order."""
    n_total = user.shape[0]
    label = np.zeros(n_total, dtype=np.int64)
    if n_total == 0:
        return label
    sorted_user = user[order]
    starts = np.flatnonzero(np.r_[True, sorted_user[1:] != sorted_user[:-1]])
    counts = np.diff(np.r_[starts, n_total])
    rank = np.arange(n_total, dtype=np.int64) - np.repeat(starts, counts)
    n_train, n_valid, _ = split_counts(counts)
    n_train = np.repeat(n_train, counts)
    n_valid = np.repeat(n_valid, counts)
    lab_sorted = np.where(rank < n_train, 0, np.where(rank < n_train + n_valid, 1, 2))
    label[order] = lab_sorted
    return label


def mmrec_split(user: np.ndarray, item: np.ndarray, seed: int = 0) -> np.ndarray:
    """Split interactions per user at random, following MMRec's rule (see the module docstring).

    Each user's interactions are shuffled with a generator seeded by ``seed``, then the first
    ``train`` get label 0, the next ``valid`` label 1 and the last ``test`` label 2. The result depends
    only on the multiset of ``(user, item)`` pairs and the seed, not on the order of the input rows.

    Args:
        user: int array ``[E]`` of user IDs.
        item: int array ``[E]`` of item IDs (same length as ``user``).
        seed: seed of the shuffle.

    Returns:
        int64 array ``[E]`` of ``x_label`` values in ``{0, 1, 2}``.
    """
    user = _check_1d(user, "user", integer=True)
    item = _check_1d(item, "item", integer=True)
    if user.shape != item.shape:
        raise DataError(f"item: expected {user.shape[0]} entries like 'user', found {item.shape[0]}")
    # Canonical order first (by user, then item, then position), so that the split does not depend
    # on how the rows happened to be ordered.
    canon = np.lexsort((item, user))
    rng = np.random.default_rng(seed)
    keys = rng.random(user.shape[0])
    # Within each user, order by the random keys.
    order = canon[np.lexsort((keys, user[canon]))]
    return _labels_from_order(user, order)


def chronological_split(user: np.ndarray, timestamp: np.ndarray) -> np.ndarray:
    """Split interactions per user by time, with MMRec's proportions (see the module docstring).

    Each user's earliest interactions go to training, the next ones to validation and the latest to
    test. Ties in ``timestamp`` are broken by the input order (stable).

    Args:
        user: int array ``[E]`` of user IDs.
        timestamp: numeric array ``[E]`` of interaction times.

    Returns:
        int64 array ``[E]`` of ``x_label`` values in ``{0, 1, 2}``.
    """
    user = _check_1d(user, "user", integer=True)
    timestamp = _check_1d(timestamp, "timestamp", integer=False)
    if user.shape != timestamp.shape:
        raise DataError(
            f"timestamp: expected {user.shape[0]} entries like 'user', found {timestamp.shape[0]}"
        )
    if timestamp.dtype.kind == "f" and not np.isfinite(timestamp).all():
        bad = int(np.flatnonzero(~np.isfinite(timestamp))[0])
        raise DataError(f"timestamp: values must be finite, found {timestamp[bad]} at index {bad}")
    order = np.lexsort((np.arange(user.shape[0]), timestamp, user))
    return _labels_from_order(user, order)
