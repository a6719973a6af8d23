"""The FREEDOM baseline: frozen mixed item-item graph, degree-pruned LightGCN, modality BPR terms."""

import pytest
import torch
import torch.nn.functional as F
from torch.testing import assert_close

from dhmrec_pyg.data import make_synthetic
from dhmrec_pyg.models import FREEDOM, MODELS, FREEDOMConfig, bpr_loss_from_embeddings
from dhmrec_pyg.models.base import EDGE
from dhmrec_pyg.training import TrainConfig
from dhmrec_pyg.training.config import apply_overrides

COLD_ITEM = 3
K = 4


@pytest.fixture(scope="module")
def data():
    d = make_synthetic("tiny", seed=0, n_users=60, n_items=40, n_interactions=600)
    store = d[EDGE]
    store.edge_index = store.edge_index[:, store.edge_index[1] != COLD_ITEM]  # features, no interactions
    return d


def build(data, seed=0, **overrides):
    torch.manual_seed(seed)
    return FREEDOM(data, FREEDOMConfig(embedding_dim=8, knn_k=K, **overrides))


def batch(data, seed=0, size=32):
    g = torch.Generator().manual_seed(seed)
    ei = data[EDGE].edge_index
    idx = torch.randint(0, ei.size(1), (size,), generator=g)
    return ei[0, idx], ei[1, idx], torch.randint(0, int(data["item"].num_nodes), (size,), generator=g)


def dense_norm_adj(edge_index, num_users, num_items):
    n = num_users + num_items
    a = torch.zeros(n, n)
    a[edge_index[0], edge_index[1] + num_users] = 1.0
    a = a + a.t()
    d = a.sum(1).pow(-0.5)
    d[torch.isinf(d)] = 0
    return d[:, None] * a * d[None, :]


def dense_knn(x, k):
    """Binary cosine top-k (the item itself included), symmetrically normalised by row sums."""
    xn = F.normalize(x, dim=-1)
    idx = (xn @ xn.t()).topk(k, dim=-1).indices
    s = torch.zeros(x.size(0), x.size(0)).scatter_(1, idx, 1.0)
    d = s.sum(1).pow(-0.5)
    return d[:, None] * s * d[None, :]


def test_registered_and_configurable():
    assert MODELS["freedom"] is FREEDOM
    _, cfg = apply_overrides(TrainConfig(), {}, FREEDOMConfig, ["dropout=0.9", "reg_weight=0"])
    assert cfg.dropout == 0.9 and cfg.reg_weight == 0.0
    for bad in ({"dropout": 1.0}, {"image_weight": 1.5}, {"knn_k": 0}, {"num_ui_layers": -1}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            FREEDOMConfig(**bad)


def test_knob_aliases_keep_ratio_dropout_beta_image_weight(tmp_path):
    """One stored name per knob (keep_ratio, beta, as DHMRec); FREEDOM's dropout / image_weight accepted."""
    from dhmrec_pyg.models import DHMRecConfig
    from dhmrec_pyg.training.config import build_dataclass, dump_config, format1_text, load_run_config

    assert FREEDOMConfig(dropout=0.9, image_weight=0.3) == FREEDOMConfig(keep_ratio=0.1, beta=0.3)
    cfg = FREEDOMConfig()
    assert (cfg.keep_ratio, cfg.beta, cfg.dropout, cfg.image_weight) == (0.2, 0.1, 0.8, 0.1)
    with pytest.raises(ValueError, match="another name"):
        FREEDOMConfig(dropout=0.9, keep_ratio=0.1)
    for config_class in (FREEDOMConfig, DHMRecConfig):  # --set and --grid take either name, for either model
        _, got = apply_overrides(TrainConfig(), {}, config_class, ["dropout=0.9", "image_weight=0.25"])
        assert (got.keep_ratio, got.beta) == (0.1, 0.25)
        assert build_dataclass(config_class, {"dropout": "0.9"}, "model").keep_ratio == 0.1
    # A run written with the old names (format 1) loads, and its legacy text (checkpoint identity) is unchanged.
    train = TrainConfig(model="freedom")
    old = format1_text(train, FREEDOMConfig()).replace("beta: 0.1", "image_weight: 0.1").replace(
        "keep_ratio: 0.2", "dropout: 0.8")
    (tmp_path / "config.yaml").write_text(old)
    raw = load_run_config(tmp_path / "config.yaml")
    assert raw["model"]["keep_ratio"] == 0.2 and "dropout" not in raw["model"]  # the migration renames
    loaded = build_dataclass(FREEDOMConfig, raw["model"], "model")
    assert loaded == FREEDOMConfig()
    assert format1_text(train, loaded, legacy=True) == old
    assert "keep_ratio: 0.2" in dump_config(train, loaded) and "dropout" not in dump_config(train, loaded)


def test_shapes_and_finite_loss_terms(data):
    model = build(data)
    user, item = model.eval().embeddings()
    assert user.shape == (60, 8) and item.shape == (40, 8)
    terms = model.train().loss(*batch(data))
    assert set(terms) == {"loss", "bpr", "bpr_image", "bpr_text"}
    assert all(torch.isfinite(v) for v in terms.values())


def test_every_parameter_gets_a_gradient(data):
    model = build(data, reg_weight=1e-3)
    model.loss(*batch(data))["loss"].backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    frozen = build(data, trainable_features=False)
    assert not any(p.requires_grad for p in frozen.features.values())


def test_final_item_embedding_is_lightgcn_plus_item_graph_dense(data):
    model = build(data, num_ii_layers=2).eval()
    ei = data[EDGE].edge_index
    a = dense_norm_adj(ei, 60, 40)
    s = 0.1 * dense_knn(data["item"].x_image, K) + 0.9 * dense_knn(data["item"].x_text, K)
    e0 = torch.cat([model.user_emb.weight, model.item_emb.weight]).detach()
    e_bar = (e0 + a @ e0 + a @ a @ e0) / 3
    h = s @ s @ model.item_emb.weight.detach()
    with torch.no_grad():
        out = model()
    assert_close(out.item_ii, h)
    assert_close(out.item_ui, e_bar[60:])
    assert_close(out.item, e_bar[60:] + h)
    assert_close(out.user, e_bar[:60])


def test_pruned_in_training_full_in_eval_and_reproducible(data):
    model = build(data, dropout=0.8)
    ei = data[EDGE].edge_index
    assert model.adj_pruned.nnz == 2 * round(0.2 * ei.size(1))
    assert model.adj_pruned.symmetric and model.adj.symmetric  # propagated without a transpose
    model.on_epoch_start(1, torch.Generator().manual_seed(5))
    first = model.adj_pruned.to_dense()
    model.on_epoch_start(1, torch.Generator().manual_seed(5))
    assert torch.equal(first, model.adj_pruned.to_dense())
    model.on_epoch_start(2, torch.Generator().manual_seed(6))
    assert not torch.equal(first, model.adj_pruned.to_dense())

    e0 = torch.cat([model.user_emb.weight, model.item_emb.weight])
    with torch.no_grad():
        model.eval()
        a, b = model(), model()
        assert_close(a.item, b.item, rtol=0, atol=0)
        assert_close(a.item_ui, model.ui_propagation(e0, model.adj)[60:])
        model.train()
        assert_close(model().item_ui, model.ui_propagation(e0, model.adj_pruned)[60:])
        assert not torch.allclose(model().item_ui, a.item_ui)
    assert not hasattr(build(data, dropout=0.0), "adj_pruned")


def test_loss_is_bpr_plus_weighted_modality_bpr(data):
    model = build(data, reg_weight=0.3)
    users, pos, neg = batch(data)
    terms = model.loss(users, pos, neg)
    out = model()
    u, p, n = out.user[users], out.item[pos], out.item[neg]
    assert_close(terms["bpr"], bpr_loss_from_embeddings(u, p, n))
    for m in ("image", "text"):
        w = model.projections[m].weight
        fp, fn = data["item"][f"x_{m}"][pos] @ w.t(), data["item"][f"x_{m}"][neg] @ w.t()
        assert_close(terms[f"bpr_{m}"], bpr_loss_from_embeddings(u, fp, fn))
    assert_close(terms["loss"], terms["bpr"] + 0.3 * (terms["bpr_image"] + terms["bpr_text"]))


def test_cold_item_gets_an_embedding(data):
    with torch.no_grad():
        out = build(data).eval()()
    assert torch.isfinite(out.item).all()
    assert out.item_ii[COLD_ITEM].abs().sum() > 0


@pytest.mark.parametrize("mods", [{"image": 6}, {"image": 6, "text": 5, "audio": 4}])
def test_any_number_of_modalities(mods):
    d = make_synthetic("tiny", seed=1, n_users=40, n_items=30, n_interactions=250, modalities=mods)
    model = build(d)
    terms = model.loss(*batch(d))
    assert {f"bpr_{m}" for m in mods} <= set(terms)
    assert all(torch.isfinite(v) for v in terms.values())
