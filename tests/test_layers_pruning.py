"""Degree-sensitive edge pruning (FREEDOM's rule, used by the ID view of eq. (7))."""
import pytest
import torch

from dhmrec_pyg.nn import degree_sensitive_prune


def toy_graph():
    # User 0 interacts with items 0..9 (high degree); users 1..10 each with their own item 10..19.
    hub = torch.stack([torch.zeros(10, dtype=torch.long), torch.arange(10)])
    leaves = torch.stack([torch.arange(1, 11), torch.arange(10, 20)])
    # Item 0 is popular: users 1..10 also interact with it.
    pop = torch.stack([torch.arange(1, 11), torch.zeros(10, dtype=torch.long)])
    return torch.cat([hub, leaves, pop], dim=1), 11, 20


def test_keeps_requested_share_of_distinct_original_edges():
    ei, nu, ni = toy_graph()
    g = torch.Generator().manual_seed(0)
    kept = degree_sensitive_prune(ei, nu, ni, 0.2, g)
    assert kept.shape == (2, round(0.2 * ei.size(1)))
    keys = set(map(tuple, ei.t().tolist()))
    kept_keys = list(map(tuple, kept.t().tolist()))
    assert len(set(kept_keys)) == len(kept_keys) and set(kept_keys) <= keys
    again = degree_sensitive_prune(ei, nu, ni, 0.2, torch.Generator().manual_seed(0))
    assert torch.equal(kept, again)
    assert torch.equal(degree_sensitive_prune(ei, nu, ni, 1.0, g), ei)
    with pytest.raises(ValueError, match="keep_ratio"):
        degree_sensitive_prune(ei, nu, ni, 0.0, g)


def test_favours_low_degree_pairs():
    ei, nu, ni = toy_graph()
    g = torch.Generator().manual_seed(1)
    counts = torch.zeros(ei.size(1))
    index = {tuple(e): n for n, e in enumerate(ei.t().tolist())}
    for _ in range(400):
        for e in degree_sensitive_prune(ei, nu, ni, 0.3, g).t().tolist():
            counts[index[tuple(e)]] += 1
    deg_u = torch.bincount(ei[0], minlength=nu).float()
    deg_i = torch.bincount(ei[1], minlength=ni).float()
    weight = (deg_u[ei[0]] * deg_i[ei[1]]).rsqrt()
    low = weight > weight.median()
    assert counts[low].mean() > 2 * counts[~low].mean()
    # the leaf edges (degree 2 user, degree 1 item) are the most favoured
    assert counts[10:20].mean() > counts[:10].mean()


def test_single_draw_probabilities_follow_weights():
    # Keeping one edge out of three: P(edge) = w / sum(w) (FREEDOM's multinomial).
    ei = torch.tensor([[0, 0, 1], [0, 1, 1]])  # d_u = (2, 1), d_i = (1, 2)
    w = torch.tensor([1 / 2 ** 0.5, 1 / 2, 1 / 2 ** 0.5])
    g = torch.Generator().manual_seed(2)
    hits = torch.zeros(3)
    trials = 3000
    for _ in range(trials):
        e = degree_sensitive_prune(ei, 2, 2, 1 / 3, g)
        hits[(ei.t() == e.t()).all(-1).nonzero()[0, 0]] += 1
    assert torch.allclose(hits / trials, w / w.sum(), atol=0.03)


def test_bipartite_norm_weights_is_inverse_sqrt_degree_product():
    """One home for 1/sqrt(d_u d_i): user_item_adjacency's entries are these weights."""
    from dhmrec_pyg.nn import bipartite_norm_weights, user_item_adjacency

    edges = torch.tensor([[0, 0, 1, 2], [0, 1, 1, 1]])
    w = bipartite_norm_weights(edges, 3, 2)
    expected = torch.tensor([1 / (2 * 1) ** 0.5, 1 / (2 * 3) ** 0.5, 1 / 3 ** 0.5, 1 / 3 ** 0.5])
    torch.testing.assert_close(w, expected)
    dense = user_item_adjacency(edges, 3, 2, layout="coo").to_dense()
    torch.testing.assert_close(dense[edges[0], edges[1]], w)
