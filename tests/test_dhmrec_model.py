"""The DHMRec model: equations (22)-(25), ablation switches, gradients, training through the Trainer."""

import pytest

from dhmrec_pyg.training.config import build_dataclass
import torch
from torch.testing import assert_close

from dhmrec_pyg.data import make_synthetic
from dhmrec_pyg.models import MODELS, DHMRec, DHMRecConfig, bpr_loss_from_embeddings, l2_reg
from dhmrec_pyg.models.base import EDGE, GraphConfig
from dhmrec_pyg.nn import LightGCNPropagation, build_item_graphs, interaction_kl, to_sparse_adjacency
from dhmrec_pyg.training import Trainer, TrainConfig
from dhmrec_pyg.training.config import apply_overrides

COLD_ITEM = 3


@pytest.fixture(scope="module")
def data():
    d = make_synthetic("tiny", seed=0, n_users=60, n_items=40, n_interactions=600)
    store = d[EDGE]
    keep = store.edge_index[1] != COLD_ITEM  # an item with features but no training interaction
    store.edge_index = store.edge_index[:, keep]
    return d


def build(data, seed=0, preset="default", **overrides):
    torch.manual_seed(seed)
    return DHMRec(data, DHMRecConfig.presets()[preset](embedding_dim=8, knn_k=4, **overrides))


def batch(data, seed=0, size=32):
    g = torch.Generator().manual_seed(seed)
    ei = data[EDGE].edge_index
    idx = torch.randint(0, ei.size(1), (size,), generator=g)
    return ei[0, idx], ei[1, idx], torch.randint(0, int(data["item"].num_nodes), (size,), generator=g)


def test_registered_and_configurable():
    assert MODELS["dhmrec"] is DHMRec
    _, cfg = apply_overrides(TrainConfig(), {}, DHMRecConfig, ["fusion=mean", "reg_weight=0.01"])
    assert cfg.fusion == "mean" and cfg.gamma_reg == 0.01
    for bad in ({"fusion": "sum"}, {"attention": "neg"}, {"keep_ratio": 0.0}, {"beta": 2.0},
                {"knn_k": 0}, {"num_ii_layers": -1}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            DHMRecConfig(**bad)


def test_every_parameter_gets_a_gradient(data):
    model = build(data)
    model.loss(*batch(data))["loss"].backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_loss_is_equation_25_and_fusion_is_equation_22(data):
    model = build(data, preset="paper", gamma_dis=0.3, gamma_kl=0.7, reg_weight=0.01, alpha_mm=0.5)
    users, pos, neg = batch(data)
    terms = model.loss(users, pos, neg)
    out = model()
    assert_close(out.user, out.user_id + 0.5 * out.user_mm)
    assert_close(out.item, out.item_id + 0.5 * out.item_mm)
    u, p, n = out.user[users], out.item[pos], out.item[neg]
    assert_close(terms["bpr"], bpr_loss_from_embeddings(u, p, n))
    assert_close(terms["reg"], l2_reg(u, p, n))
    bu = torch.unique(users)
    assert_close(terms["kl"], interaction_kl(out.user_mm[bu], out.item_mm, out.user_id[bu], out.item_id))
    assert_close(terms["orth"], sum(out.codes.orth))
    expected = terms["bpr"] + 0.3 * (terms["jsd"] + terms["orth"]) + 0.7 * terms["kl"] + 0.01 * terms["reg"]
    assert_close(terms["loss"], expected)


def test_id_view_pruned_in_training_full_in_eval(data):
    model = build(data)
    ei = data[EDGE].edge_index
    nnz = model.adj_pruned.nnz
    assert nnz == 2 * round(0.2 * ei.size(1))
    model.on_epoch_start(1, torch.Generator().manual_seed(5))
    assert model.adj_pruned.nnz == nnz
    ego = torch.cat([model.user_emb.weight, model.item_emb.weight])
    prop = LightGCNPropagation(2)
    model.eval()
    with torch.no_grad():
        out = model()
        assert_close(torch.cat([out.user_id, out.item_id]), prop(ego, model.adj))
        model.train()
        assert_close(torch.cat([model().user_id, model().item_id]), prop(ego, model.adj_pruned))
    full = build(data, keep_ratio=1.0)
    assert not hasattr(full, "adj_pruned")


def test_cold_start_items_get_multimodal_embeddings(data):
    model = build(data).eval()
    with torch.no_grad():
        out = model()
    assert torch.isfinite(out.item).all()
    assert out.item_mm[COLD_ITEM].abs().sum() > 0
    assert not torch.allclose(out.item[COLD_ITEM], out.item_id[COLD_ITEM])


def views_and_id(model):
    with torch.no_grad():
        out = model.eval()()
    return out


@pytest.mark.parametrize(
    "switch", [{"kl_align": False}, {"fusion": "mean"}, {"attention": "standard"}, {"item_graphs": False},
               {"disentangle": False}],
)
def test_ablation_switch_changes_only_its_part(data, switch):
    base, ablated = build(data), build(data, **switch)
    with torch.no_grad():  # alpha_neg starts at 0, where pos-neg equals standard attention
        base.fusion.alpha_neg.fill_(0.5)
    ablated.load_state_dict(base.state_dict(), strict=False)  # same values for the shared parameters
    ob, oa = views_and_id(base), views_and_id(ablated)
    assert_close(oa.user_id, ob.user_id)  # the ID view never changes
    assert_close(oa.item_id, ob.item_id)
    terms = ablated.loss(*batch(data))
    key = next(iter(switch))
    if key == "kl_align":
        assert "kl" not in terms
        assert_close(oa.item, ob.item)
        assert_close(oa.user, ob.user)
    elif key in ("fusion", "attention"):
        for va, vb in zip(oa.views, ob.views):
            assert_close(va, vb)
        assert not torch.allclose(oa.item_mm, ob.item_mm)
        if key == "fusion":
            assert ablated.fusion is None
            assert_close(torch.cat([oa.user_mm, oa.item_mm]), torch.stack(oa.views).mean(0))
        else:
            assert not hasattr(ablated.fusion, "alpha_pos")
    elif key == "item_graphs":
        assert not any(name.startswith("ii_adj") for name, _ in ablated.named_buffers())
        codes = [ob.codes.common] + list(ob.codes.specific)
        for view, code in zip(oa.views, codes):
            user0 = ablated.user_aggregation(code, ablated.adj_ui)
            assert_close(view, ablated.ui_propagation(torch.cat([user0, code]), ablated.adj))
    else:
        assert "jsd" not in terms and "orth" not in terms
        assert not hasattr(ablated.disentangler, "gates")
        feats = [getattr(ablated, f"x_{m}") for m in ablated.modalities]
        zs = [proj(x) for proj, x in zip(ablated.disentangler.projections, feats)]
        for got, want in zip(oa.codes.specific, zs):
            assert_close(got, want)


def test_item_graph_is_each_views_knn_graph(data):
    """``item_graph(view)`` reads (11)-(12) of one view back out of the interleaved matrix."""
    model = build(data)
    graphs = build_item_graphs(data, k=4, beta=model.config.beta, cache_dir=None)
    num_i = int(data["item"].num_nodes)
    for view in model.view_names:
        store = graphs["item", f"similar_{view}", "item"]
        expected = to_sparse_adjacency(store.edge_index, store.edge_weight, num_i, layout="coo").to_dense()
        assert_close(model.item_graph(view).to_dense(), expected)
    with pytest.raises(ValueError, match="view must be one of"):
        model.item_graph("nope")
    with pytest.raises(ValueError, match="item_graphs=False"):
        build(data, item_graphs=False).item_graph("common")


@pytest.mark.parametrize("mods", [{"image": 6}, {"image": 6, "text": 5, "audio": 4}])
def test_any_number_of_modalities(mods):
    d = make_synthetic("tiny", seed=1, n_users=40, n_items=30, n_interactions=250, modalities=mods)
    model = build(d)
    assert len(model.view_names) == len(mods) + 1
    terms = model.loss(*batch(d))
    assert all(torch.isfinite(v) for v in terms.values())
    if len(mods) == 1:
        assert float(terms["jsd"]) == 0.0


def test_ln_gain_sets_the_initial_scale_of_the_multimodal_rows(data):
    unit = build(data, ln_gain="unit").eval()
    one = build(data, ln_gain="one").eval()
    with torch.no_grad():
        n_unit = unit().user_mm.norm(dim=-1).mean()
        n_one = one().user_mm.norm(dim=-1).mean()
    # 3 views, each row normalised: about 3 * sqrt(8) with gain one, 3 with gain 1/sqrt(8).
    assert_close(n_one / n_unit, torch.tensor(8 ** 0.5), rtol=0.05, atol=0)
    assert DHMRecConfig(ln_gain=0.5).layer_norm_gain() == 0.5
    assert build_dataclass(DHMRecConfig, {"ln_gain": "0.5"}, "model").ln_gain == 0.5  # YAML / --set text
    for bad in ("zero", "0.5", -1.0, 0.0):  # in Python a number is a number, not its text
        with pytest.raises(ValueError, match="ln_gain"):
            DHMRecConfig(ln_gain=bad)


def test_dhmrec_beats_lightgcn_on_the_demo_at_equal_budget(tmp_path):
    """The demo's features carry signal: with the same 10 epochs, DHMRec ranks better on validation
    (mean over seeds 0 and 1; with the default preset, seed 0 alone gives 1.06x, seed 1 1.16x)."""
    from dhmrec_pyg.data import load_dataset

    demo = load_dataset("demo", root=tmp_path)
    valid = {"dhmrec": [], "lightgcn": []}
    for seed in (0, 1):
        for name in ("dhmrec", "lightgcn"):
            cfg = TrainConfig(model=name, dataset="demo", epochs=10, progress=False, seed=seed)
            torch.manual_seed(seed)
            model_cfg = MODELS[name].config_class()
            model = MODELS[name](demo, model_cfg)
            valid[name].append(Trainer(model, demo, cfg, None, model_cfg).fit()["valid"]["recall@20"])
    assert sum(valid["dhmrec"]) > 1.1 * sum(valid["lightgcn"]), valid


@pytest.mark.parametrize("preset", ["default", "paper"])
def test_recompute_gives_the_same_losses_and_gradients_with_less_kept(data, preset):
    """Activation checkpointing of the disentangler and the fusion changes memory, not the step."""
    def step(recompute):
        torch.manual_seed(0)
        config = DHMRecConfig.presets()[preset](embedding_dim=8, knn_k=4)
        model = DHMRec(data, config, GraphConfig(recompute=recompute))
        kept = []
        with torch.autograd.graph.saved_tensors_hooks(lambda t: kept.append(t.numel()) or t, lambda t: t):
            terms = model.loss(*batch(data))
        terms["loss"].backward()
        return terms, {n: p.grad for n, p in model.named_parameters()}, sum(kept)

    plain, grads, kept_plain = step(False)
    again, grads_again, kept_recompute = step(True)
    for key in plain:
        assert_close(again[key], plain[key], rtol=1e-6, atol=1e-7)
    for name, grad in grads.items():
        assert_close(grads_again[name], grad, rtol=1e-5, atol=1e-7, msg=name)
    assert kept_recompute < 0.8 * kept_plain  # the two parts' insides were not kept


def test_recompute_auto_follows_the_catalogue_size():
    import dhmrec_pyg.models.base as base_module

    limit = base_module.RECOMPUTE_AUTO_ITEMS
    graph = GraphConfig()
    assert not graph.recomputes(limit) and graph.recomputes(limit + 1)
    assert GraphConfig(recompute=True).recomputes(10) and not GraphConfig(recompute=False).recomputes(10 ** 7)
    train, _ = apply_overrides(TrainConfig(), {}, DHMRecConfig, ["recompute=true"])
    assert train.graph.recompute is True
    with pytest.raises(ValueError, match="recompute"):
        GraphConfig(recompute="sometimes")
