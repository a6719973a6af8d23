"""LightGCNConv under torch.compile(fullgraph=True) and torch.jit.script, on the CPU."""
import torch
import torch._dynamo
from torch.testing import assert_close
from torch_geometric.data import HeteroData

from dhmrec_pyg.models import LightGCN, LightGCNConfig
from dhmrec_pyg.nn import (
    LightGCNConv,
    SparseAdjacency,
    bipartite_to_homogeneous,
    normalized_adjacency,
    sym_norm_weights,
)


def _graph(seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    n_u, n_i, e = 30, 20, 120
    ui = torch.stack([torch.randint(0, n_u, (e,), generator=gen), torch.randint(0, n_i, (e,), generator=gen)])
    return ui.unique(dim=1), n_u, n_i


def test_conv_compiles_fullgraph_on_the_models_default_adjacency():
    torch._dynamo.reset()
    ui, n_u, n_i = _graph()
    adj = SparseAdjacency(normalized_adjacency(ui, n_u, n_i), symmetric=True)  # what the models hold
    conv = LightGCNConv()
    compiled = torch.compile(conv, fullgraph=True)  # a graph break would raise
    x = torch.randn(n_u + n_i, 8, requires_grad=True)
    out = compiled(compiled(x, adj), adj)
    ref = conv(conv(x, adj), adj)
    assert_close(out, ref)
    dense = normalized_adjacency(ui, n_u, n_i).to_dense()
    assert_close(out, dense @ (dense @ x))
    g = torch.randn_like(out)
    (gx,) = torch.autograd.grad(out, x, g)
    assert_close(gx, dense.t() @ (dense.t() @ g))
    explained = torch._dynamo.explain(conv)(x, adj)
    assert explained.graph_count == 1 and explained.graph_break_count == 0


def test_lightgcn_model_embeddings_compile_fullgraph():
    torch._dynamo.reset()
    ui, n_u, n_i = _graph(1)
    data = HeteroData()
    data["user"].num_nodes, data["item"].num_nodes = n_u, n_i
    data["user", "interacts", "item"].edge_index = ui
    torch.manual_seed(0)
    model = LightGCN(data, LightGCNConfig(embedding_dim=8))
    # aot_eager: the same capture as the default backend (dynamo, whole graph, autograd), without
    # generating C++ for every kernel, which takes half a minute on two cores
    users, items = torch.compile(model.embeddings, fullgraph=True, backend="aot_eager")()
    ref_users, ref_items = model.embeddings()
    assert_close(users, ref_users)
    assert_close(items, ref_items)


def test_conv_scripts_and_matches_eager():
    ui, n_u, n_i = _graph(2)
    n = n_u + n_i
    full = bipartite_to_homogeneous(ui, n_u, n_i)
    weight = sym_norm_weights(full, n)
    scripted = torch.jit.script(LightGCNConv())
    assert isinstance(scripted, torch.jit.ScriptModule)
    x = torch.randn(n, 4)
    eager = LightGCNConv()(x, full, weight)
    assert_close(scripted(x, full, weight), eager)
    assert_close(scripted(x, normalized_adjacency(ui, n_u, n_i)), eager)
    assert_close(scripted(x, normalized_adjacency(ui, n_u, n_i, layout="coo")), eager)
    assert not torch.equal(scripted(x, full), eager)  # without weights: a plain sum of neighbours


def test_lightgcn_loss_compiles_fullgraph_with_the_same_gradients():
    torch._dynamo.reset()
    ui, n_u, n_i = _graph(3)
    data = HeteroData()
    data["user"].num_nodes, data["item"].num_nodes = n_u, n_i
    data["user", "interacts", "item"].edge_index = ui
    torch.manual_seed(0)
    model = LightGCN(data, LightGCNConfig(embedding_dim=8))
    users, pos, neg = ui[0, :16], ui[1, :16], torch.randint(0, n_i, (16,))
    compiled = torch.compile(model.loss, fullgraph=True, backend="aot_eager")
    compiled(users, pos, neg)["loss"].backward()
    grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    model.loss(users, pos, neg)["loss"].backward()
    for got, want in zip(grads, model.parameters()):
        assert_close(got, want.grad)
        assert want.grad.abs().sum() > 0
