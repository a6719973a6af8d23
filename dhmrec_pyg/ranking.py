"""Top-K ranking over final embeddings, with each user's known items left out.

The ranking shared by :meth:`dhmrec_pyg.models.Recommender.recommend`, ``dhmrec recommend``
(:func:`dhmrec_pyg.recommend.recommend`) and the evaluator's masking
(:class:`~dhmrec_pyg.training.evaluate.FullRankingEvaluator`): a CSR index of the
interactions to leave out (:func:`csr_index`, :func:`gather_rows`) and a batched top-K
(:func:`top_k`). It sits below the models and imports nothing of the package but its errors.
"""
from __future__ import annotations

import warnings
from typing import Callable, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch import Tensor

from dhmrec_pyg.errors import ConfigError

__all__ = ["FAISS_MIN_ITEMS", "NO_ITEM", "ShortListWarning", "csr_index", "gather_rows", "top_k"]

#: Above this many items, top-K search goes through a faiss inner-product index
#: instead of a dense users x items score matrix.
FAISS_MIN_ITEMS = 100_000

#: The item id that fills a user's row of :func:`top_k` past its last candidate (score ``-inf``).
NO_ITEM = -1


class ShortListWarning(UserWarning):
    """Some users have fewer items to recommend (items outside their training interactions) than
    the ``k`` asked for: their lists are shorter."""


#: ``f(user_emb_batch [B, d], item_emb [I, d]) -> [B, I]`` preference scores.
ScoreFn = Callable[[Tensor, Tensor], Tensor]


def csr_index(edge_index: Tensor, num_rows: int) -> Tuple[Tensor, Tensor]:
    """Row pointer and sorted columns of a ``[2, E]`` index."""
    order = torch.argsort(edge_index[0], stable=True)
    rows, cols = edge_index[0][order], edge_index[1][order]
    rowptr = torch.zeros(num_rows + 1, dtype=torch.long)
    rowptr[1:] = torch.cumsum(torch.bincount(rows, minlength=num_rows), 0)
    return rowptr, cols


def gather_rows(rowptr: Tensor, cols: Tensor, rows: Tensor) -> Tuple[Tensor, Tensor]:
    """``(local_row, col)`` pairs of the given rows of a CSR index."""
    starts, ends = rowptr[rows], rowptr[rows + 1]
    counts = ends - starts
    local = torch.repeat_interleave(torch.arange(rows.numel()), counts)
    offsets = torch.arange(int(counts.sum())) - torch.repeat_interleave(
        torch.cumsum(counts, 0) - counts, counts
    )
    return local, cols[torch.repeat_interleave(starts, counts) + offsets]


@torch.no_grad()
def top_k(
    user_emb: Tensor,
    item_emb: Tensor,
    exclude: Tensor,
    k: int = 20,
    users: Union[Tensor, Sequence[int], None] = None,
    batch_size: int = 4096,
    score_fn: Optional[ScoreFn] = None,
    use_faiss: Optional[bool] = None,
) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The ``k`` best-scored items of each user, never one of the user's ``exclude`` items.

    A user's candidates are the items outside its ``exclude`` pairs. A user with fewer than ``k``
    candidates gets all of them, and its row ends with :data:`NO_ITEM` (score ``-inf``) where the
    candidates run out; one :class:`ShortListWarning` then says how many users that concerns.

    Args:
        user_emb: ``[U, d]`` final user embeddings.
        item_emb: ``[I, d]`` final item embeddings.
        exclude: ``[2, E]`` (user, item) pairs left out of the ranking (the training interactions).
        k: items per user.
        users: user ids (default: all users).
        batch_size: users scored at once on the dense path.
        score_fn: the scores of a batch of users for all items; default: the inner product
            (equation (23)).
        use_faiss: search a faiss ``IndexFlatIP`` over the item embeddings instead of scoring
            densely (inner-product scores only); default: for catalogues of at least
            :data:`FAISS_MIN_ITEMS` items when ``score_fn`` is ``None``.

    Returns:
        ``(users [B], items [B, w], scores [B, w])`` as NumPy arrays, best first, with
        ``w = min(k, I)``. Row ``b`` holds ``min(w, c_b)`` real items, ``c_b`` being the number of
        candidates of user ``users[b]``; the cells after them are item :data:`NO_ITEM` with score
        ``-inf``.

    Raises:
        ConfigError: ``k`` < 1, a user id out of range, or faiss asked for with a ``score_fn``.
    """
    num_users, num_items = user_emb.size(0), item_emb.size(0)
    if k < 1:
        raise ConfigError(f"k must be >= 1, got {k}")
    if isinstance(users, Tensor):
        users = users.flatten().tolist()
    all_users = np.arange(num_users) if users is None else np.asarray(list(users), dtype=np.int64)
    bad = all_users[(all_users < 0) | (all_users >= num_users)]
    if bad.size:
        raise ConfigError(f"user id {int(bad[0])} is out of range (0..{num_users - 1})")
    if use_faiss and score_fn is not None:
        raise ConfigError("use_faiss=True needs inner-product scores (score_fn=None): faiss search is not exact")
    rowptr, seen = csr_index(_distinct_pairs(exclude.cpu(), num_items), num_users)
    candidates = num_items - (rowptr[1:] - rowptr[:-1]).numpy()[all_users]
    _warn_short_lists(k, candidates)
    width = min(k, num_items)
    if use_faiss is None:
        use_faiss = score_fn is None and num_items >= FAISS_MIN_ITEMS
    if use_faiss:
        out_items, out_scores = _top_k_faiss(user_emb, item_emb, all_users, rowptr.numpy(), seen.numpy(), width)
    else:
        out_items, out_scores = _top_k_dense(user_emb, item_emb, all_users, rowptr, seen, width,
                                             batch_size, score_fn or _inner_product)
    past_end = np.arange(width)[None, :] >= candidates[:, None]
    out_items[past_end] = NO_ITEM
    out_scores[past_end] = -np.inf
    return all_users, out_items, out_scores


def _distinct_pairs(pairs: Tensor, num_items: int) -> Tensor:
    """The distinct columns of a ``[2, E]`` (user, item) index, sorted by user."""
    if pairs.numel() == 0:
        return pairs.long().reshape(2, 0)
    key = torch.unique(pairs[0].long() * num_items + pairs[1].long())
    return torch.stack([key // num_items, key % num_items])


def _warn_short_lists(k: int, candidates: np.ndarray) -> None:
    """One :class:`ShortListWarning` when some users have fewer than ``k`` candidates."""
    short = candidates < k
    if short.any():
        warnings.warn(
            f"k={k} is more than the items left to recommend to {int(short.sum())} of {candidates.size} users "
            f"(items outside their training interactions; fewest: {int(candidates.min())}): their lists are "
            "shorter", ShortListWarning, stacklevel=4,
        )


def _top_k_dense(user_emb: Tensor, item_emb: Tensor, users: np.ndarray, rowptr: Tensor, seen: Tensor, k: int,
                 batch_size: int, score_fn: ScoreFn) -> Tuple[np.ndarray, np.ndarray]:
    """:func:`top_k` by scoring ``batch_size`` users against all items at once, seen items at ``-inf``."""
    out_items = np.empty((users.size, k), dtype=np.int64)
    out_scores = np.empty((users.size, k), dtype=np.float32)
    for start in range(0, users.size, batch_size):
        batch = users[start : start + batch_size]
        scores = score_fn(user_emb[torch.from_numpy(batch).to(user_emb.device)], item_emb)
        rows, cols = gather_rows(rowptr, seen, torch.from_numpy(batch))
        scores[rows.to(scores.device), cols.to(scores.device)] = -float("inf")
        top = torch.topk(scores, k, dim=1)
        out_items[start : start + batch.size] = top.indices.cpu().numpy()
        out_scores[start : start + batch.size] = top.values.float().cpu().numpy()
    return out_items, out_scores


def _inner_product(user_emb: Tensor, item_emb: Tensor) -> Tensor:
    """Equation (23): the inner product of final embeddings."""
    return user_emb @ item_emb.t()


def _top_k_faiss(user_emb: Tensor, item_emb: Tensor, users: np.ndarray, rowptr: np.ndarray,
                 seen: np.ndarray, k: int) -> Tuple[np.ndarray, np.ndarray]:
    """:func:`top_k` through an exact faiss inner-product index, searched deep enough that
    ``k`` items remain once each user's seen items are dropped (fewer where the catalogue ends)."""
    import faiss

    items = np.ascontiguousarray(item_emb.float().cpu().numpy())
    index = faiss.IndexFlatIP(items.shape[1])
    index.add(items)
    queries = np.ascontiguousarray(user_emb.float().cpu().numpy()[users])
    degree = rowptr[users + 1] - rowptr[users]
    depth = int(min(items.shape[0], k + (degree.max() if degree.size else 0)))
    scores, cand = index.search(queries, depth)
    out_items = np.full((users.size, k), NO_ITEM, dtype=np.int64)
    out_scores = np.full((users.size, k), -np.inf, dtype=np.float32)
    for row, u in enumerate(users):
        keep = ~np.isin(cand[row], seen[rowptr[u] : rowptr[u + 1]])
        found = cand[row][keep][:k]
        out_items[row, : found.size] = found
        out_scores[row, : found.size] = scores[row][keep][:k]
    return out_items, out_scores
