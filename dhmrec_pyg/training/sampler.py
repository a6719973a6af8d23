"""Vectorised, seeded BPR triplet sampling."""
from __future__ import annotations

from typing import Iterator, Tuple

import torch
from torch import Tensor

from dhmrec_pyg.schema import check_edge_index

#: Where negatives are drawn from; see :class:`BPRSampler`.
NEGATIVE_POOLS = ("trained", "all")


class BPRSampler:
    """Yields ``(users, pos_items, neg_items)`` mini-batches for one epoch.

    Every training interaction appears once per epoch, in a random order, with
    one negative item drawn uniformly from the items the user has *not*
    interacted with in training. Negatives are drawn for a whole epoch at once
    and only the collisions are redrawn, so an epoch of the Amazon Baby data
    takes milliseconds.

    Args:
        edge_index: ``[2, E]`` training (user, item) pairs.
        num_items: number of items.
        batch_size: triplets per mini-batch.
        negatives: the pool negatives come from. ``"trained"`` (MMRec's
            protocol, the default): items with at least one training
            interaction, so an item seen only in validation or test (a
            cold item) is never pushed down as a negative. ``"all"``: every
            item, cold ones included.

    Raises:
        ValueError: a bad ``batch_size`` or ``negatives``; a user who has every item of
            the pool; (:class:`~dhmrec_pyg.errors.DataError`) a negative id or an item id
            ``>= num_items`` in ``edge_index``, named with its column.

    All randomness comes from the ``torch.Generator`` passed to
    :meth:`epoch`, so a seeded generator gives the same epochs.
    """

    def __init__(
        self, edge_index: Tensor, num_items: int, batch_size: int = 2048, negatives: str = "trained"
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if negatives not in NEGATIVE_POOLS:
            raise ValueError(f"negatives must be one of {', '.join(NEGATIVE_POOLS)}, got {negatives!r}")
        num_users = int(edge_index[0].max()) + 1 if edge_index.dim() == 2 and edge_index.numel() else 0
        check_edge_index(edge_index, "BPRSampler: edge_index", num_users, int(num_items))
        self.users = edge_index[0].cpu().long()
        self.items = edge_index[1].cpu().long()
        self.num_items = int(num_items)
        self.batch_size = int(batch_size)
        keys = self.users * self.num_items + self.items
        self._keys = torch.unique(keys)  # sorted
        self.negatives = negatives
        # None stands for "every item": draws need no lookup table.
        self._pool = torch.unique(self.items) if negatives == "trained" else None
        pool_size = self.num_items if self._pool is None else self._pool.numel()
        counts = torch.bincount(self.users)
        full = (counts >= pool_size).nonzero().flatten()
        if full.numel() > 0:
            raise ValueError(
                f"user {int(full[0])} has interacted with every item of the negative pool "
                f"(negatives={negatives!r}): no negative can be sampled"
            )

    def __len__(self) -> int:
        """Number of mini-batches per epoch."""
        return (self.users.numel() + self.batch_size - 1) // self.batch_size

    def is_positive(self, users: Tensor, items: Tensor) -> Tensor:
        """Whether each ``(user, item)`` pair is a training interaction."""
        keys = users * self.num_items + items
        pos = torch.searchsorted(self._keys, keys).clamp(max=self._keys.numel() - 1)
        return self._keys[pos] == keys

    def sample_negatives(self, users: Tensor, generator: torch.Generator) -> Tensor:
        """One uniform non-interacted item of the negative pool per user in ``users``."""
        neg = self._draw(users.shape, generator)
        bad = self.is_positive(users, neg).nonzero().flatten()
        while bad.numel() > 0:
            neg[bad] = self._draw(bad.shape, generator)
            bad = bad[self.is_positive(users[bad], neg[bad])]
        return neg

    def _draw(self, shape: torch.Size, generator: torch.Generator) -> Tensor:
        if self._pool is None:
            return torch.randint(0, self.num_items, shape, generator=generator)
        return self._pool[torch.randint(0, self._pool.numel(), shape, generator=generator)]

    def epoch(self, generator: torch.Generator) -> Iterator[Tuple[Tensor, Tensor, Tensor]]:
        """Shuffle the interactions, draw negatives, and yield mini-batches."""
        perm = torch.randperm(self.users.numel(), generator=generator)
        users, items = self.users[perm], self.items[perm]
        negs = self.sample_negatives(users, generator)
        for start in range(0, users.numel(), self.batch_size):
            end = start + self.batch_size
            yield users[start:end], items[start:end], negs[start:end]
