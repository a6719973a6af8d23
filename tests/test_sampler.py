"""The BPR sampler: coverage, valid negatives, determinism."""
import pytest
import torch

from dhmrec_pyg.training.sampler import BPRSampler


def _graph(seed=0, n_u=200, n_i=50, e=3000):
    g = torch.Generator().manual_seed(seed)
    users = torch.randint(0, n_u, (e,), generator=g)
    items = torch.randint(0, n_i, (e,), generator=g)
    keys = torch.unique(users * n_i + items)
    return torch.stack([keys // n_i, keys % n_i]), n_i


def test_epoch_covers_every_interaction_once_with_valid_negatives():
    ei, n_i = _graph()
    sampler = BPRSampler(ei, n_i, batch_size=256)
    batches = list(sampler.epoch(torch.Generator().manual_seed(0)))
    assert len(batches) == len(sampler)
    u = torch.cat([b[0] for b in batches])
    p = torch.cat([b[1] for b in batches])
    n = torch.cat([b[2] for b in batches])
    assert sorted((u * n_i + p).tolist()) == sorted((ei[0] * n_i + ei[1]).tolist())
    train = set((ei[0] * n_i + ei[1]).tolist())
    assert not any(k in train for k in (u * n_i + n).tolist())
    assert all(b[0].numel() <= 256 for b in batches)


def test_dense_users_still_get_negatives():
    # user 0 has all items but one: its negative must always be that one
    n_i = 20
    ei = torch.stack([torch.zeros(19, dtype=torch.long), torch.arange(19)])
    sampler = BPRSampler(ei, n_i, batch_size=8)
    negs = torch.cat([b[2] for b in sampler.epoch(torch.Generator().manual_seed(1))])
    assert negs.unique().tolist() == [19]


def test_seeded_and_deterministic():
    ei, n_i = _graph()
    s = BPRSampler(ei, n_i, batch_size=512)
    a = [torch.cat(b) for b in s.epoch(torch.Generator().manual_seed(3))]
    b = [torch.cat(b) for b in s.epoch(torch.Generator().manual_seed(3))]
    c = [torch.cat(b) for b in s.epoch(torch.Generator().manual_seed(4))]
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not all(torch.equal(x, y) for x, y in zip(a, c))


def test_user_with_every_item_is_an_error():
    ei = torch.stack([torch.zeros(3, dtype=torch.long), torch.arange(3)])
    with pytest.raises(ValueError, match="user 0"):
        BPRSampler(ei, 3)
    with pytest.raises(ValueError, match="batch_size"):
        BPRSampler(ei, 4, batch_size=0)
