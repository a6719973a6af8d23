"""The LGMRec baseline and its hypergraph layers: memberships, propagation, contrastive loss, fusion."""

import pytest
import torch
import torch.nn.functional as F
from torch.testing import assert_close

from dhmrec_pyg.data import make_synthetic
from dhmrec_pyg.models import MODELS, LGMRec, LGMRecConfig, bpr_loss_from_embeddings, l2_reg
from dhmrec_pyg.models.base import EDGE
from dhmrec_pyg.nn import HyperedgeMembership, HyperedgePropagation, LightGCNPropagation, info_nce
from dhmrec_pyg.training import TrainConfig
from dhmrec_pyg.training.config import apply_overrides

COLD_ITEM = 3


@pytest.fixture(scope="module")
def data():
    d = make_synthetic("tiny", seed=0, n_users=60, n_items=40, n_interactions=600)
    store = d[EDGE]
    store.edge_index = store.edge_index[:, store.edge_index[1] != COLD_ITEM]  # features, no interactions
    return d


def build(data, seed=0, **overrides):
    torch.manual_seed(seed)
    return LGMRec(data, LGMRecConfig(embedding_dim=8, **overrides))


def batch(data, seed=0, size=32):
    g = torch.Generator().manual_seed(seed)
    ei = data[EDGE].edge_index
    idx = torch.randint(0, ei.size(1), (size,), generator=g)
    return ei[0, idx], ei[1, idx], torch.randint(0, int(data["item"].num_nodes), (size,), generator=g)


def dense_interactions(edge_index, num_users, num_items):
    r = torch.zeros(num_users, num_items)
    r[edge_index[0], edge_index[1]] = 1.0
    return r


def dense_norm_adj(edge_index, num_users, num_items):
    r = dense_interactions(edge_index, num_users, num_items)
    a = torch.zeros(num_users + num_items, num_users + num_items)
    a[:num_users, num_users:], a[num_users:, :num_users] = r, r.t()
    d = a.sum(1).pow(-0.5)
    d[torch.isinf(d)] = 0
    return d[:, None] * a * d[None, :]


# ---- layers ---------------------------------------------------------------------------------


@pytest.mark.parametrize("num_layers", [1, 2])
def test_hyperedge_propagation_matches_dense(num_layers):
    torch.manual_seed(0)
    x, h_i, h_u = torch.randn(7, 5), torch.rand(7, 3), torch.rand(4, 3)
    users, items = HyperedgePropagation(num_layers)(x, h_i, h_u)
    e = x
    for _ in range(num_layers):
        z = h_i.t() @ e
        e, u = h_i @ z, h_u @ z
    assert_close(items, e)
    assert_close(users, u)
    with pytest.raises(ValueError, match="num_layers"):
        HyperedgePropagation(0)
    with pytest.raises(ValueError, match="hyperedges"):
        HyperedgePropagation()(x, h_i, torch.rand(4, 2))


def test_membership_is_deterministic_softmax_in_eval_and_noisy_in_training():
    torch.manual_seed(0)
    layer = HyperedgeMembership(5, num_hyperedges=3, temperature=0.2, keep_rate=0.5)
    x = torch.randn(6, 5)
    r = (torch.rand(4, 6) < 0.5).float()
    layer.eval()
    h_u, h_i = layer(x, r.to_sparse())
    assert_close(h_i, torch.softmax(x @ layer.hyperedges.t() / 0.2, -1))
    assert_close(h_u, torch.softmax(r @ x @ layer.hyperedges.t() / 0.2, -1))
    assert_close(layer(x, r)[0], h_u)  # dense interactions give the same
    layer.train()
    a, b = layer(x, r)[1], layer(x, r)[1]
    assert not torch.allclose(a, b)
    kept = a[a > 0]
    assert (a == 0).any() and (kept <= 2.0 + 1e-6).all()  # dropped entries, kept ones scaled by 1/0.5
    no_drop = HyperedgeMembership(5, 3, keep_rate=1.0).train()
    assert_close(no_drop(x, r)[1].sum(-1), torch.ones(6))
    assert "num_hyperedges=3" in repr(layer)


def test_info_nce_matches_the_direct_formula():
    torch.manual_seed(0)
    a, c = torch.randn(5, 4), torch.randn(9, 4)
    idx = torch.tensor([0, 3, 3, 8, 1])
    an, cn = F.normalize(a, dim=-1), F.normalize(c, dim=-1)
    direct = -torch.log(torch.exp((an * cn[idx]).sum(-1) / 0.2) / torch.exp(an @ cn.t() / 0.2).sum(-1))
    assert_close(info_nce(a, c[idx], c, 0.2), direct.sum())
    assert_close(info_nce(a, c[idx], c, 0.2, reduction="mean"), direct.mean())
    assert torch.isfinite(info_nce(a * 1e4, c[idx], c, 1e-3))


# ---- model ----------------------------------------------------------------------------------


def test_registered_and_configurable():
    assert MODELS["lgmrec"] is LGMRec
    _, cfg = apply_overrides(TrainConfig(), {}, LGMRecConfig, ["alpha=0.6", "keep_rate=0.4"])
    assert cfg.alpha == 0.6 and cfg.keep_rate == 0.4
    for bad in ({"keep_rate": 0.0}, {"temperature": 0.0}, {"num_hyperedges": 0}, {"cl_weight": -1.0}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            LGMRecConfig(**bad)


def test_shapes_finite_terms_and_gradients(data):
    model = build(data)
    user, item = model.eval().embeddings()
    assert user.shape == (60, 8) and item.shape == (40, 8)
    terms = model.train().loss(*batch(data))
    assert set(terms) == {"loss", "bpr", "cl", "reg"}
    assert all(torch.isfinite(v) for v in terms.values())
    terms["loss"].backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_eval_is_deterministic_training_is_not(data):
    model = build(data).eval()
    with torch.no_grad():
        a, b = model(), model()
        assert_close(a.user, b.user, rtol=0, atol=0)
        assert_close(a.item, b.item, rtol=0, atol=0)
        model.train()
        assert not torch.allclose(model().item, model().item)


def test_forward_matches_a_dense_computation(data):
    model = build(data, num_hyper_layers=2).eval()
    ei = data[EDGE].edge_index
    a = dense_norm_adj(ei, 60, 40)
    r = dense_interactions(ei, 60, 40)
    e0 = torch.cat([model.user_emb.weight, model.item_emb.weight]).detach()
    collab = (e0 + a @ e0 + a @ a @ e0) / 3
    local, glob = collab.clone(), torch.zeros_like(collab)
    for m in ("image", "text"):
        x = data["item"][f"x_{m}"]
        items0 = x @ model.projections[m].weight.detach().t()
        users0 = (r @ items0) / r.sum(1, keepdim=True).clamp_min(1)
        local += F.normalize(a @ a @ torch.cat([users0, items0]), dim=-1)
        logits = x @ model.memberships[m].hyperedges.detach().t()
        h_i, h_u = torch.softmax(logits / 0.2, -1), torch.softmax(r @ logits / 0.2, -1)
        e = collab[60:]
        for _ in range(2):
            z = h_i.t() @ e
            e, u = h_i @ z, h_u @ z
        glob += torch.cat([u, e])
    final = local + 0.3 * F.normalize(glob, dim=-1)
    with torch.no_grad():
        out = model()
    assert_close(out.collaborative, collab)
    assert_close(out.collaborative, LightGCNPropagation(2)(e0, model.adj))
    assert_close(out.local, local)
    assert_close(out.global_, glob)
    assert_close(torch.cat([out.user, out.item]), final)


def test_loss_is_bpr_plus_contrastive_plus_l2(data):
    model = build(data, cl_weight=0.01, reg_weight=0.1).eval()  # eval: the same memberships twice
    users, pos, neg = batch(data)
    terms = model.loss(users, pos, neg)
    with torch.no_grad():
        out = model()
    u, p, n = out.user[users], out.item[pos], out.item[neg]
    assert_close(terms["bpr"], bpr_loss_from_embeddings(u, p, n))
    assert_close(terms["reg"], l2_reg(u, p, n))
    (ua, ub), (ia, ib) = out.hyper_user, out.hyper_item
    cl = info_nce(ua[users], ub[users], ub, 0.2) + info_nce(ia[pos], ib[pos], ib, 0.2)
    assert_close(terms["cl"], cl)
    assert_close(terms["loss"], terms["bpr"] + 0.01 * terms["cl"] + 0.1 * terms["reg"])


def test_cold_item_gets_a_global_embedding(data):
    with torch.no_grad():
        out = build(data).eval()()
    assert torch.isfinite(out.item).all()
    assert out.global_[60 + COLD_ITEM].abs().sum() > 0


@pytest.mark.parametrize("mods", [{"image": 6}, {"image": 6, "text": 5, "audio": 4}])
def test_any_number_of_modalities(mods):
    d = make_synthetic("tiny", seed=1, n_users=40, n_items=30, n_interactions=250, modalities=mods)
    model = build(d).eval()  # eval: the same memberships in loss() and below
    users, pos, neg = batch(d)
    terms = model.loss(users, pos, neg)
    assert all(torch.isfinite(v) for v in terms.values())
    if len(mods) == 1:
        assert float(terms["cl"]) == 0.0
        return
    with torch.no_grad():
        out = model()
    pairs = [(0, 1), (0, 2), (1, 2)]  # sorted names: audio, image, text; the first is the anchor
    expected = sum(
        info_nce(out.hyper_user[a][users], out.hyper_user[b][users], out.hyper_user[b], 0.2)
        + info_nce(out.hyper_item[a][pos], out.hyper_item[b][pos], out.hyper_item[b], 0.2)
        for a, b in pairs
    ) / 3
    assert model.modalities == ["audio", "image", "text"]
    assert_close(terms["cl"].detach(), expected)


def test_info_nce_bounded_path_matches_logsumexp_and_its_gradients():
    from dhmrec_pyg.nn.hypergraph import info_nce

    torch.manual_seed(3)
    tensors = [torch.randn(s, 6, dtype=torch.float64, requires_grad=True) for s in (5, 5, 9)]

    def direct(anchor, positive, candidates, tau):
        a = torch.nn.functional.normalize(anchor, dim=-1)
        c = torch.nn.functional.normalize(candidates, dim=-1)
        pos = (a * torch.nn.functional.normalize(positive, dim=-1)).sum(-1) / tau
        return (torch.logsumexp(a @ c.t() / tau, dim=-1) - pos).sum()

    for tau in (0.2, 0.05, 0.01):  # 0.01 takes the general logsumexp route
        got = info_nce(*tensors, temperature=tau)
        want = direct(*tensors, tau)
        torch.testing.assert_close(got, want)
        for g, w in zip(torch.autograd.grad(got, tensors), torch.autograd.grad(want, tensors)):
            torch.testing.assert_close(g, w)
    assert torch.autograd.gradcheck(lambda *t: info_nce(*t, temperature=0.2), tensors)


def test_info_nce_blocks_match_one_block(monkeypatch):
    import dhmrec_pyg.nn.blocks as blocks
    from dhmrec_pyg.nn.hypergraph import info_nce

    torch.manual_seed(4)
    base = [torch.randn(s, 6, dtype=torch.float64) for s in (7, 7, 9)]

    def value_and_grads(reduction):
        leaves = [t.clone().requires_grad_(True) for t in base]
        loss = info_nce(*leaves, temperature=0.2, reduction=reduction)
        return [loss.detach()] + list(torch.autograd.grad(2.5 * loss, leaves))

    whole = {r: value_and_grads(r) for r in ("sum", "mean")}
    monkeypatch.setattr(blocks, "CPU_BLOCK_ELEMENTS", 2 * 9)  # blocks of 2 anchors: 2, 2, 2, 1
    for reduction, want in whole.items():
        for got, w in zip(value_and_grads(reduction), want):
            torch.testing.assert_close(got, w)


def test_info_nce_skips_its_gradient_work_under_no_grad(monkeypatch):
    import dhmrec_pyg.nn.hypergraph as hg

    asked = []
    forward = hg._BoundedLogSumExpSum.forward

    def recording(ctx, a, c, bound, weight):
        asked.append(tuple(ctx.needs_input_grad[:2]))
        return forward(ctx, a, c, bound, weight)

    monkeypatch.setattr(hg._BoundedLogSumExpSum, "forward", staticmethod(recording))
    x = torch.randn(8, 4, requires_grad=True)
    y = torch.randn(8, 4, requires_grad=True)
    with_grad = hg.info_nce(x, y, y)
    with torch.no_grad():
        without = hg.info_nce(x, y, y)
    assert asked == [(True, True), (False, False)]  # normalised inside: no grad mode, no gradients formed
    assert torch.allclose(with_grad.detach(), without)
