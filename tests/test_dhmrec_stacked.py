"""DHMRec's batched pass (views, modalities and KL sides stacked) against a per-view reference.

The model computes all views in one tensor (issue 13: fewer, larger kernels). These tests
recompute a pass and its loss one view and one modality at a time, with the library's
per-view layers and the direct formulas, and require the same values and gradients.
"""
import math

import pytest
import torch
import torch.nn.functional as F
from torch.testing import assert_close

from dhmrec_pyg.models import DHMRec, DHMRecConfig
from dhmrec_pyg.models.base import EDGE
from dhmrec_pyg.nn import LightGCNConv, PosNegAttention, SparseAdjacency, to_sparse_adjacency
from dhmrec_pyg.nn.disentangle import ModalityDisentangler, jensen_shannon_divergence, logit_pool
from dhmrec_pyg.nn.item_graph import interleave_item_graphs
from tests.test_dhmrec_model import batch, build, data  # noqa: F401  (the fixture)


def reference_pass(model: DHMRec, rows=None):
    """Equations (1)-(19) and (22), one modality and one view at a time."""
    cfg = model.config
    num_u = model.num_users
    dis = model.disentangler
    feats = [getattr(model, f"x_{m}") for m in model.modalities]
    z = [proj(x) for proj, x in zip(dis.projections, feats)]  # (1)
    if cfg.disentangle:
        commons = [enc(zm) for enc, zm in zip(dis.common_encoders, z)]  # (2)
        private = [enc(zm) for enc, zm in zip(dis.private_encoders, z)]
        specific = [pm * torch.sigmoid(g(model.item_emb.weight)) for pm, g in zip(private, dis.gates)]  # (3)
        common = logit_pool(commons)  # (5)
        jsd = jensen_shannon_divergence(commons)  # (4)
        orth = sum(F.cosine_similarity(c, s, dim=-1, eps=1e-8).abs().mean() for c, s in zip(commons, specific))  # (6)
    else:
        specific, common = z, torch.stack(z).mean(0)
        jsd = orth = None
    adj_id = model.adj_pruned if model.training and cfg.keep_ratio < 1.0 else model.adj
    e_id = model.ui_propagation(torch.cat([model.user_emb.weight, model.item_emb.weight]), adj_id)  # (7)-(8)
    conv, views = LightGCNConv(), []
    for name, code in zip(model.view_names, [common] + list(specific)):
        users0 = torch.sparse.mm(model.adj_ui, code)
        view = model.ui_propagation(torch.cat([users0, code]), model.adj)  # (7)-(8)
        if cfg.item_graphs:
            items = view[num_u:]
            for _ in range(cfg.num_ii_layers):
                items = conv(items, model.item_graph(name))  # (13)
            view = torch.cat([torch.sparse.mm(model.adj_ui, items), items])  # (14)
        views.append(view)
    if model.fusion is None:
        e_mm = torch.stack(views).mean(0)
    else:
        e_mm = reference_attention(model.fusion, views, rows)
    return e_id + cfg.alpha_mm * e_mm, e_id, e_mm, views, jsd, orth


def reference_attention(layer: PosNegAttention, views, rows=None):
    """(15)-(19) per view with explicit queries, keys and values (``[N, d]`` rows)."""
    fused = layer.fuse(torch.cat(views, -1))
    total = 0
    for v, view in enumerate(views):
        q = (fused if rows is None else fused[rows]) @ layer.query[v].weight.t()
        k = (view if rows is None else view[rows]) @ layer.key[v].weight.t()
        temperature = float(layer.temperature[v]) if layer.scale == "l2" else 1.0
        attn = PosNegAttention.attention_map(q, k, layer.scale, temperature)
        if layer.scale == "l2":  # keep the temperature's gradient path
            logits = F.normalize(q, dim=0).t() @ F.normalize(k, dim=0)
            attn = torch.softmax(logits * layer.temperature[v], dim=-1)
        value = view @ layer.value[v].weight.t()
        o = value @ attn.t()  # (15)
        if layer.mode == "posneg":
            o = layer.alpha_pos * o + layer.alpha_neg * (value @ (1 - attn).t())  # (16)-(17)
        e = layer.outer_norm[v](layer.inner_norm[v](o @ layer.out[v].weight.t()) + view)  # (18)
        total = total + e  # (19)
    return total


def reference_loss(model: DHMRec, users, pos, neg):
    """Equation (25) from :func:`reference_pass`, with the KL (20)-(21) from full softmaxes."""
    cfg = model.config
    num_u = model.num_users
    rows = None
    if cfg.attention_scope == "batch":
        rows = torch.cat([torch.unique(users), num_u + torch.unique(torch.cat([pos, neg]))])
    final, e_id, e_mm, _, jsd, orth = reference_pass(model, rows)
    u, p, n = final[users], final[num_u + pos], final[num_u + neg]
    total = -F.logsigmoid((u * p).sum(-1) - (u * n).sum(-1)).mean()
    total = total + cfg.gamma_reg * (u.pow(2).sum() + p.pow(2).sum() + n.pow(2).sum()) / users.numel()
    if cfg.disentangle:
        total = total + cfg.gamma_dis * (jsd + orth)
    if cfg.kl_align:
        bu = torch.unique(users)
        log_p = torch.log_softmax(e_mm[bu] @ e_mm[num_u:].t(), -1)
        log_q = torch.log_softmax(e_id[bu] @ e_id[num_u:].t(), -1)
        total = total + cfg.gamma_kl * (log_p.exp() * (log_p - log_q)).sum(-1).mean()
    return total


CONFIGS = [
    {},
    {"preset": "paper"},
    {"attention": "standard", "attention_scope": "all"},
    {"preset": "paper", "attention_scope": "batch", "view_norm": "layernorm_nobias"},
    {"fusion": "mean"},
    {"item_graphs": False, "disentangle": False},
    {"num_ii_layers": 2, "num_ui_layers": 3, "keep_ratio": 1.0},
]


@pytest.mark.parametrize("overrides", CONFIGS)
def test_stacked_pass_and_loss_equal_the_per_view_reference(data, overrides):  # noqa: F811
    model = build(data, **overrides)
    users, pos, neg = batch(data)
    for training in (True, False):
        model.train(training)
        out = model()
        final, e_id, e_mm, views, _, _ = reference_pass(model)
        assert_close(torch.cat([out.user, out.item]), final, rtol=1e-4, atol=1e-6)
        assert_close(torch.cat([out.user_mm, out.item_mm]), e_mm, rtol=1e-4, atol=1e-6)
        assert len(out.views) == len(views)
        for got, want in zip(out.views, views):
            assert_close(got, want, rtol=1e-4, atol=1e-6)
    model.train()
    got = model.loss(users, pos, neg)["loss"]
    got_grads = torch.autograd.grad(got, list(model.parameters()), allow_unused=True)
    want = reference_loss(model, users, pos, neg)
    want_grads = torch.autograd.grad(want, list(model.parameters()), allow_unused=True)
    assert_close(got, want, rtol=1e-4, atol=1e-6)
    for (name, _), g, w in zip(model.named_parameters(), got_grads, want_grads):
        assert (g is None) == (w is None), name
        if g is not None:
            assert_close(g, w, rtol=1e-3, atol=1e-6, msg=name)


def test_state_dict_keys_are_unchanged_by_the_stacking(data):  # noqa: F811
    """Checkpoints keep their per-view and per-modality parameter names (old ones load)."""
    model = build(data)
    keys = set(model.state_dict())
    for v in range(len(model.view_names)):
        for name in ("query", "key", "value", "out"):
            assert f"fusion.{name}.{v}.weight" in keys
    for m in range(len(model.modalities)):
        assert f"disentangler.gates.{m}.weight" in keys and f"disentangler.common_encoders.{m}.bias" in keys
    assert not any(k.startswith("ii_adj") for k in keys)
    other = build(data, seed=1)
    other.load_state_dict(model.state_dict())
    model.eval(), other.eval()
    assert_close(other().user, model().user)


def test_attention_takes_a_stacked_tensor_or_a_list():
    torch.manual_seed(0)
    layer = PosNegAttention(4, num_views=3, scale="l2")
    views = [torch.randn(11, 4) for _ in range(3)]
    assert_close(layer(torch.stack(views, 1)), layer(views))
    assert_close(layer(views), reference_attention(layer, views))
    with pytest.raises(ValueError, match="views"):
        layer(torch.randn(11, 2, 4))


def test_disentangler_stacked_codes_unstack_to_the_lists():
    torch.manual_seed(0)
    layer = ModalityDisentangler([5, 7], 4)
    xs, ids = [torch.randn(9, 5), torch.randn(9, 7)], torch.randn(9, 4)
    stacked, listed = layer.stacked(xs, ids), layer(xs, ids)
    assert stacked.specific.shape == (2, 9, 4) and stacked.orth.shape == (2,)
    for a, b in zip(stacked.unstack(), listed):
        if isinstance(a, list):
            for x, y in zip(a, b):
                assert_close(x, y)
        else:
            assert_close(a, b)


def test_interleaved_item_graphs_propagate_each_view_over_its_own_graph():
    torch.manual_seed(0)
    num_items, d = 6, 3
    graphs = []
    for _ in range(3):
        ei = torch.randint(0, num_items, (2, 12))
        graphs.append((ei, torch.rand(12)))
    ei, w = interleave_item_graphs(graphs, num_items)
    adj = SparseAdjacency(to_sparse_adjacency(ei, w, num_items * 3))
    x = torch.randn(num_items, 3 * d, requires_grad=True)
    out = adj @ x.view(num_items * 3, d)
    for v, (gi, gw) in enumerate(graphs):
        want = torch.sparse.mm(to_sparse_adjacency(gi, gw, num_items), x[:, v * d:(v + 1) * d])
        assert_close(out.view(num_items, 3 * d)[:, v * d:(v + 1) * d], want)
    out.pow(2).sum().backward()
    dense = adj.to_dense()
    assert_close(x.grad.view(num_items * 3, d), dense.t() @ (2 * (dense @ x.detach().view(-1, d))))


def test_sparse_adjacency_rebuilds_its_cached_matrices_when_buffers_change():
    ei = torch.tensor([[0, 1, 2], [1, 2, 0]])
    adj = SparseAdjacency(to_sparse_adjacency(ei, torch.tensor([1.0, 2.0, 3.0]), 3))
    x = torch.eye(3)
    first = adj @ x
    adj.value = adj.value * 2  # replaced buffer (as .to(device) or a reload does)
    assert_close(adj @ x, 2 * first)
    assert math.isclose(float((adj @ x).sum()), 12.0)


def test_kl_in_blocks_matches_the_definition(monkeypatch):
    """Both sides of (20)-(21) are stacked in blocks of users; values and gradients are the definition's."""
    import dhmrec_pyg.nn.blocks as blocks
    from dhmrec_pyg.nn import interaction_kl

    monkeypatch.setattr(blocks, "CPU_BLOCK_ELEMENTS", 3 * 6)  # blocks of 3 users: 3, 3, 3, 1
    torch.manual_seed(4)
    inputs = [torch.randn(s, 4, dtype=torch.float64, requires_grad=True) for s in (10, 6, 10, 6)]

    def definition(u_mm, i_mm, u_id, i_id):
        log_p = torch.log_softmax(u_mm @ i_mm.t(), -1)
        log_q = torch.log_softmax(u_id @ i_id.t(), -1)
        return (log_p.exp() * (log_p - log_q)).sum(-1).mean()

    got_value, want_value = interaction_kl(*inputs), definition(*inputs)
    assert_close(got_value, want_value)
    got = torch.autograd.grad(got_value, inputs)
    want = torch.autograd.grad(want_value, inputs)
    for g, w in zip(got, want):
        assert_close(g, w)
