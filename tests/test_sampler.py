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
    sampler = BPRSampler(ei, n_i, batch_size=8, negatives="all")
    negs = torch.cat([b[2] for b in sampler.epoch(torch.Generator().manual_seed(1))])
    assert negs.unique().tolist() == [19]
    # with MMRec's pool, item 19 (no training interaction) is no candidate at all
    with pytest.raises(ValueError, match="user 0 .*negative pool"):
        BPRSampler(ei, n_i, batch_size=8)


def test_trained_pool_never_draws_cold_items_and_is_uniform_over_the_rest():
    # items 40..49 have no training interaction: MMRec never draws them as negatives
    ei, _ = _graph(n_i=40)
    n_i = 50
    gen = torch.Generator().manual_seed(5)
    trained = BPRSampler(ei, n_i, batch_size=4096)
    users = torch.randint(0, 200, (200_000,), generator=gen)
    negs = trained.sample_negatives(users, gen)
    assert int(negs.max()) < 40
    assert not trained.is_positive(users, negs).any()
    # uniform over the non-interacted trained items: for one user, every candidate is hit
    u0 = users == 0
    candidates = set(range(40)) - set(ei[1][ei[0] == 0].tolist())
    assert set(negs[u0].tolist()) == candidates
    counts = torch.bincount(negs[u0], minlength=40).float()[sorted(candidates)]
    assert counts.std() / counts.mean() < 0.3
    every = BPRSampler(ei, n_i, batch_size=4096, negatives="all")
    assert int(every.sample_negatives(users, gen).max()) >= 40
    with pytest.raises(ValueError, match="negatives must be one of"):
        BPRSampler(ei, n_i, negatives="cold")


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
