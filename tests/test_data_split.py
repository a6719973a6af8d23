"""Tests of the MMRec splitters."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dhmrec_pyg.data import DataError, chronological_split, mmrec_split, split_counts


@pytest.mark.parametrize(
    "n, expected",
    [(1, (1, 0, 0)), (2, (2, 0, 0)), (3, (1, 1, 1)), (5, (3, 1, 1)), (9, (7, 1, 1)), (10, (8, 1, 1)),
     (14, (12, 1, 1)), (15, (12, 2, 1)), (19, (16, 2, 1)), (20, (16, 2, 2)), (25, (20, 3, 2)), (100, (80, 10, 10))],
)
def test_split_counts(n: int, expected: tuple[int, int, int]) -> None:
    assert tuple(int(v) for v in split_counts(n)) == expected


def _per_user(user: np.ndarray, label: np.ndarray) -> dict[int, tuple[int, int, int]]:
    return {int(u): tuple(int((label[user == u] == k).sum()) for k in range(3)) for u in np.unique(user)}


def test_mmrec_split_proportions_and_determinism() -> None:
    rng = np.random.default_rng(1)
    sizes = [1, 2, 3, 4, 9, 10, 11, 15, 20, 37]
    user = np.concatenate([np.full(n, u) for u, n in enumerate(sizes)])
    item = np.concatenate([rng.choice(1000, n, replace=False) for n in sizes])
    label = mmrec_split(user, item, seed=3)
    assert label.dtype == np.int64 and set(np.unique(label)) <= {0, 1, 2}
    for u, counts in _per_user(user, label).items():
        assert counts == tuple(int(v) for v in split_counts(sizes[u]))
    # Same seed -> same labels, whatever the row order; another seed -> another shuffle.
    perm = rng.permutation(user.size)
    np.testing.assert_array_equal(mmrec_split(user[perm], item[perm], seed=3), label[perm])
    assert not np.array_equal(mmrec_split(user, item, seed=4), label)


def test_mmrec_split_is_random_within_user() -> None:
    user = np.zeros(100, dtype=np.int64)
    item = np.arange(100)
    label = mmrec_split(user, item, seed=0)
    assert not np.array_equal(np.sort(np.flatnonzero(label == 2)), np.arange(90, 100))


@settings(max_examples=30, deadline=None)
@given(st.lists(st.integers(0, 30), min_size=0, max_size=200), st.integers(0, 2**32 - 1))
def test_mmrec_split_property(users: list[int], seed: int) -> None:
    user = np.asarray(users, dtype=np.int64)
    item = np.arange(user.size, dtype=np.int64)
    label = mmrec_split(user, item, seed=seed)
    assert label.shape == user.shape
    for u in np.unique(user):
        n = int((user == u).sum())
        assert tuple(int((label[user == u] == k).sum()) for k in range(3)) == tuple(int(v) for v in split_counts(n))


def test_chronological_split() -> None:
    user = np.array([0] * 10 + [1] * 3 + [2] * 2)
    ts = np.array(list(range(9, -1, -1)) + [5, 5, 1] + [0, 1])
    label = chronological_split(user, ts)
    # User 0: times run backwards, so the first row (ts 9) is the latest -> test, ts 8 -> valid.
    assert label[:10].tolist() == [2, 1] + [0] * 8
    # User 1: ties broken by row order: earliest is ts 1 (row 12) -> train, then rows 10, 11.
    assert label[10:13].tolist() == [1, 2, 0]
    assert label[13:].tolist() == [0, 0]


def test_split_input_errors() -> None:
    with pytest.raises(DataError, match=r"user: IDs must be non-negative, found -1 at index 1"):
        mmrec_split(np.array([0, -1]), np.array([0, 1]))
    with pytest.raises(DataError, match=r"item: expected 2 entries"):
        mmrec_split(np.array([0, 1]), np.array([0]))
    with pytest.raises(DataError, match=r"user: expected integer IDs, found dtype float64"):
        mmrec_split(np.array([0.5]), np.array([0]))
    with pytest.raises(DataError, match=r"timestamp: values must be finite, found nan at index 0"):
        chronological_split(np.array([0]), np.array([np.nan]))
