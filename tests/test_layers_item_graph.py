"""Equations (11)-(14): item-item graphs as HeteroData, item-item propagation, user aggregation."""
import copy

import pytest
import torch
from torch.testing import assert_close
from torch_geometric.data import HeteroData

from dhmrec_pyg.nn import (
    ItemGraphPropagation,
    UserAggregation,
    build_item_graphs,
    common_view_weights,
    knn_graph,
    to_sparse_adjacency,
    user_item_adjacency,
)


def toy_data(modalities=("audio", "image"), num_items=12):
    g = torch.Generator().manual_seed(0)
    data = HeteroData()
    data.name = "toy"
    data["user"].num_nodes = 5
    data["item"].num_nodes = num_items
    data["user", "interacts", "item"].edge_index = torch.tensor([[0, 0, 1, 2, 2, 2, 3], [0, 1, 1, 2, 3, 4, 0]])
    for n, m in enumerate(modalities):
        data["item"][f"x_{m}"] = torch.randn(num_items, 3 + n, generator=g)
    return data


def dense_binary(edge_index, n):
    a = torch.zeros(n, n)
    a[edge_index[1], edge_index[0]] = 1.0  # row i: the neighbours item i keeps
    return a


def test_common_view_weights_rules():
    assert common_view_weights(["audio", "image"], 0.1) == pytest.approx({"audio": 0.9, "image": 0.1})
    assert common_view_weights(["image", "text", "video_x"], 0.1) == pytest.approx(
        {"image": 0.1, "text": 0.45, "video_x": 0.45}
    )
    assert common_view_weights(["a", "b"], 0.1) == pytest.approx({"a": 0.5, "b": 0.5})
    assert common_view_weights(["text"], 0.1) == {"text": 1.0}
    assert common_view_weights(["a", "b"], 0.3, visual_modality="b") == pytest.approx({"a": 0.7, "b": 0.3})
    with pytest.raises(ValueError, match="visual_modality"):
        common_view_weights(["a"], 0.1, visual_modality="c")


def test_build_item_graphs_matches_dense_equations_11_12():
    data = toy_data()
    before = copy.copy(data.edge_types)
    out = build_item_graphs(data, k=3, beta=0.1)
    assert data.edge_types == before  # input untouched
    n = 12
    dense = {}
    for m in ("audio", "image"):
        store = out["item", f"similar_{m}", "item"]
        assert torch.equal(store.edge_index, knn_graph(data["item"][f"x_{m}"], 3))
        a = dense_binary(store.edge_index, n)
        deg = a.sum(1)  # row degrees (= k)
        norm = deg.rsqrt()[:, None] * a * deg.rsqrt()[None, :]
        got = torch.sparse_coo_tensor(store.edge_index.flip(0), store.edge_weight, (n, n)).to_dense()
        assert_close(got, norm)
        dense[m] = norm
    common = out["item", "similar_common", "item"]
    got = torch.sparse_coo_tensor(common.edge_index.flip(0), common.edge_weight, (n, n)).to_dense()
    assert_close(got, 0.1 * dense["image"] + 0.9 * dense["audio"])


def test_build_item_graphs_hands_its_search_settings_to_knn_graph(monkeypatch):
    import dhmrec_pyg.nn.item_graph as item_graph

    seen = []
    real = item_graph.knn_graph

    def recording(x, k, **kwargs):
        seen.append(kwargs)
        return real(x, k, **kwargs)

    monkeypatch.setattr(item_graph, "knn_graph", recording)
    hnsw = build_item_graphs(toy_data(), k=3, method="hnsw", hnsw_m=8, ef_search=16, use_gpu=False)
    settings = [(s["method"], s["hnsw_m"], s["ef_search"], s["use_gpu"]) for s in seen]
    assert settings == [("hnsw", 8, 16, False)] * 2
    # on 12 items the approximate search finds the exact neighbours
    exact = build_item_graphs(toy_data(), k=3)
    for m in ("audio", "image", "common"):
        key = ("item", f"similar_{m}", "item")
        assert torch.equal(hnsw[key].edge_index, exact[key].edge_index)


def test_build_item_graphs_needs_features():
    data = toy_data(modalities=())
    with pytest.raises(ValueError, match="'toy' has no item features"):
        build_item_graphs(data)


def test_item_graph_propagation_takes_last_layer_both_formats():
    torch.manual_seed(1)
    n = 7
    ei = knn_graph(torch.randn(n, 4), 3)
    w = torch.rand(ei.size(1))
    dense = torch.zeros(n, n)
    dense[ei[1], ei[0]] = w
    x = torch.randn(n, 5)
    layer = ItemGraphPropagation(2)
    expected = dense @ (dense @ x)
    assert_close(layer(x, ei, w), expected)
    assert_close(layer(x, to_sparse_adjacency(ei, w, n)), expected)
    assert_close(layer(x, to_sparse_adjacency(ei, w, n, layout="coo")), expected)
    assert torch.equal(ItemGraphPropagation(0)(x, ei, w), x)
    assert repr(layer) == "ItemGraphPropagation(num_layers=2)"


def test_user_aggregation_matches_equation_14():
    data = toy_data()
    ei = data["user", "interacts", "item"].edge_index
    r = torch.zeros(5, 12)
    r[ei[0], ei[1]] = 1.0
    norm = r.sum(1).clamp(min=1).rsqrt()[:, None] * r * r.sum(0).clamp(min=1).rsqrt()[None, :]
    x = torch.randn(12, 4, requires_grad=True)
    layer = UserAggregation()
    out = layer(x, user_item_adjacency(ei, 5, 12))
    assert_close(out, norm @ x)
    assert_close(layer(x, ei, num_users=5), norm @ x)
    assert_close(layer(x, user_item_adjacency(ei, 5, 12, layout="coo")), norm @ x)
    assert float(out[4].abs().sum()) == 0.0  # user 4 has no training interaction
    out.sum().backward()
    assert_close(x.grad, norm.sum(0)[:, None].expand(12, 4))


@pytest.mark.parametrize("layout", ["csr", "coo"])
def test_user_aggregation_rows_are_those_rows_of_the_full_aggregate(layout):
    """(14) for a subset of users (repeats, unsorted, and a user without items) equals the full product's rows."""
    data = toy_data()
    ei = data["user", "interacts", "item"].edge_index
    adj = user_item_adjacency(ei, 5, 12, layout=layout)
    x = torch.randn(12, 4, requires_grad=True)
    users = torch.tensor([3, 0, 4, 2, 0])
    weight = torch.randn(5, 4)
    got = UserAggregation.rows(x, adj, users)
    (grad_got,) = torch.autograd.grad((got * weight).sum(), x)
    want = UserAggregation()(x, user_item_adjacency(ei, 5, 12))[users]
    (grad_want,) = torch.autograd.grad((want * weight).sum(), x)
    assert_close(got, want)
    assert_close(grad_got, grad_want)
    assert float(got[2].abs().sum()) == 0.0  # user 4 has no training interaction


def test_user_aggregation_with_a_prebuilt_transpose_has_the_same_values_and_gradients():
    from dhmrec_pyg.nn import UserAggregation, user_item_adjacency

    edge_index = torch.tensor([[0, 0, 1, 2, 2, 3], [0, 2, 1, 0, 3, 3]])
    adj = user_item_adjacency(edge_index, 4, 4, layout="csr")
    adj_t = adj.t().to_sparse_csr()
    agg = UserAggregation()
    x1 = torch.randn(4, 3, dtype=torch.float64).float().requires_grad_()
    x2 = x1.detach().clone().requires_grad_()
    w = torch.randn(4, 3)
    (agg(x1, adj) * w).sum().backward()
    (agg(x2, adj, adj_t=adj_t) * w).sum().backward()
    torch.testing.assert_close(agg(x2, adj, adj_t=adj_t), agg(x1, adj))
    torch.testing.assert_close(x2.grad, x1.grad)
