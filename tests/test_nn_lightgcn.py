"""LightGCNConv and LightGCNPropagation against dense computations."""
import pytest
import torch
from torch.testing import assert_close

from dhmrec_pyg.nn import (
    LightGCNConv,
    LightGCNPropagation,
    SparseAdjacency,
    bipartite_to_homogeneous,
    normalized_adjacency,
    sym_norm_weights,
    to_sparse_adjacency,
)


def _toy():
    # 3 users, 4 items
    ui = torch.tensor([[0, 0, 1, 2, 2, 2], [0, 1, 1, 1, 2, 3]])
    return ui, 3, 4


def _dense_norm_adj(ui, n_u, n_i):
    n = n_u + n_i
    a = torch.zeros(n, n)
    a[ui[0], ui[1] + n_u] = 1.0
    a[ui[1] + n_u, ui[0]] = 1.0
    d = a.sum(1)
    inv = torch.where(d > 0, d.pow(-0.5), torch.zeros_like(d))
    return inv[:, None] * a * inv[None, :]


def test_normalized_adjacency_matches_dense():
    ui, n_u, n_i = _toy()
    dense = _dense_norm_adj(ui, n_u, n_i)
    for layout in ("csr", "coo"):
        adj = normalized_adjacency(ui, n_u, n_i, layout=layout)
        assert_close(adj.to_dense(), dense)


@pytest.mark.parametrize("fmt", ["edge_index", "csr", "coo", "module_csr_sym", "module_coo_sym", "module_csr",
                                 "module_coo"])
def test_conv_matches_dense_all_formats(fmt):
    torch.manual_seed(0)
    ui, n_u, n_i = _toy()
    n = n_u + n_i
    dense = _dense_norm_adj(ui, n_u, n_i)
    x = torch.randn(n, 5, requires_grad=True)
    conv = LightGCNConv()
    full = bipartite_to_homogeneous(ui, n_u, n_i)
    w = sym_norm_weights(full, n)
    if fmt == "edge_index":
        out = conv(x, full, w)
    else:
        adj = to_sparse_adjacency(full, w, n, layout="csr" if "csr" in fmt else "coo")
        if fmt.startswith("module"):
            adj = SparseAdjacency(adj, symmetric=fmt.endswith("_sym"))
        out = conv(x, adj)
    assert_close(out, dense @ x)
    # gradients agree with the dense product too
    g = torch.randn_like(out)
    (gx,) = torch.autograd.grad(out, x, g)
    assert_close(gx, dense.t() @ g)


def test_conv_directed_weights_edge_index():
    # a directed edge 0 -> 1 with weight 2 only reaches node 1
    conv = LightGCNConv()
    x = torch.tensor([[1.0], [10.0]])
    out = conv(x, torch.tensor([[0], [1]]), torch.tensor([2.0]))
    assert_close(out, torch.tensor([[0.0], [2.0]]))
    adj = to_sparse_adjacency(torch.tensor([[0], [1]]), torch.tensor([2.0]), 2)
    assert_close(conv(x, adj), out)


def test_propagation_is_layer_mean():
    torch.manual_seed(1)
    ui, n_u, n_i = _toy()
    dense = _dense_norm_adj(ui, n_u, n_i)
    x = torch.randn(n_u + n_i, 3)
    adj = normalized_adjacency(ui, n_u, n_i)
    for layers in range(4):
        expected = sum(torch.linalg.matrix_power(dense, l) @ x for l in range(layers + 1)) / (layers + 1)
        assert_close(LightGCNPropagation(layers)(x, adj), expected)
    with pytest.raises(ValueError, match="num_layers"):
        LightGCNPropagation(-1)


def test_sparse_adjacency_backward_uses_its_transpose():
    # A directed graph: the backward pass must use A^T, which SparseAdjacency builds once;
    # declaring a non-symmetric matrix symmetric would give A's gradient instead (and is refused
    # for a non-square one).
    torch.manual_seed(2)
    a = torch.tensor([[0.0, 2.0, 0.0], [0.0, 0.0, 3.0], [0.5, 0.0, 0.0]])
    x = torch.randn(3, 4, requires_grad=True)
    g = torch.randn(3, 4)
    for layout in ("csr", "coo"):
        adj = SparseAdjacency(a.to_sparse_csr() if layout == "csr" else a.to_sparse())
        out = LightGCNConv()(x, adj)
        assert_close(out, a @ x)
        assert_close(torch.autograd.grad(out, x, g)[0], a.t() @ g)
        assert_close(adj.to_dense(), a)
    with pytest.raises(ValueError, match="square"):
        SparseAdjacency(torch.ones(2, 3).to_sparse(), symmetric=True)
    with pytest.raises(TypeError, match="torch.sparse"):
        SparseAdjacency(a)


def test_model_adjacency_moves_with_the_model_and_stays_out_of_checkpoints():
    from dhmrec_pyg.models import LightGCN, LightGCNConfig
    from torch_geometric.data import HeteroData

    ui, n_u, n_i = _toy()
    data = HeteroData()
    data["user"].num_nodes, data["item"].num_nodes = n_u, n_i
    data["user", "interacts", "item"].edge_index = ui
    model = LightGCN(data, LightGCNConfig()).to("cpu").double()
    assert isinstance(model.adj, SparseAdjacency) and model.adj.symmetric  # an attribute, not a tensor mark
    assert model.adj.value.dtype == torch.float64  # the module's dtype cast reached the graph
    assert not any(key.startswith("adj") for key in model.state_dict())
    assert_close(model.adj.to_dense(), _dense_norm_adj(ui, n_u, n_i).double())
    # registering again replaces the graph, symmetric or not
    model.register_adjacency("adj", normalized_adjacency(ui, n_u, n_i))
    assert model.adj.layout == torch.sparse_csr and "adj" not in model._modules
    model.register_adjacency("adj", normalized_adjacency(ui, n_u, n_i), symmetric=True)
    assert isinstance(model.adj, SparseAdjacency) and "adj" not in model._buffers


def test_repr():
    assert repr(LightGCNConv()) == "LightGCNConv()"
    assert repr(LightGCNPropagation(2)) == "LightGCNPropagation(num_layers=2)"


@pytest.mark.parametrize("num_layers", [0, 1, 2, 3, 4])
@pytest.mark.parametrize("with_users", [True, False])
def test_from_items_equals_propagating_aggregated_users(num_layers, with_users):
    from dhmrec_pyg.nn.item_graph import user_item_adjacency

    torch.manual_seed(num_layers)
    num_u, num_i = 7, 5
    users = torch.tensor([0, 0, 1, 2, 3, 3, 3, 4, 5, 6, 6])
    items = torch.tensor([0, 1, 1, 2, 0, 3, 4, 4, 2, 1, 3])
    edge_index = torch.stack([users, items])
    adj = normalized_adjacency(edge_index, num_u, num_i)
    adj_ui = user_item_adjacency(edge_index, num_u, num_i)
    adj_iu = adj_ui.t().to_sparse_csr()
    x = torch.randn(num_i, 3, requires_grad=True)
    prop = LightGCNPropagation(num_layers)

    want = prop(torch.cat([torch.sparse.mm(adj_ui, x), x]), adj)
    got_u, got_i = prop.from_items(x, adj_ui, adj_iu, with_users=with_users)
    assert_close(got_i, want[num_u:])
    if with_users:
        assert_close(got_u, want[:num_u])
    else:
        assert got_u is None
    weights = torch.randn(num_i, 3)
    (g_want,) = torch.autograd.grad((want[num_u:] * weights).sum(), x)
    (g_got,) = torch.autograd.grad((got_i * weights).sum(), x)
    assert_close(g_got, g_want)
