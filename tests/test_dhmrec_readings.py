"""The readings of the paper's loose points, one option each: what every option computes."""
import math

import pytest
import torch
import yaml
from torch.testing import assert_close

from dhmrec_pyg.data import make_synthetic
from dhmrec_pyg.models import DHMRecConfig, l2_reg
from dhmrec_pyg.models.dhmrec import PRESETS, item_term_share
from dhmrec_pyg.nn import PosNegAttention, interaction_kl
from dhmrec_pyg.training.config import (
    FORMAT1_IMPLICIT_MODEL,
    TrainConfig,
    build_dataclass,
    dump_config,
    identity_text,
    load_run_config,
)
from test_dhmrec_model import batch, build  # the same small DHMRec and triplet batch


@pytest.fixture(scope="module")
def data():
    return make_synthetic("tiny", seed=0, n_users=50, n_items=30, n_interactions=320)


# ---------------------------------------------------------------- presets
def test_presets_fill_only_the_options_left_unset():
    paper = DHMRecConfig(preset="paper")
    for name, value in PRESETS["paper"].items():
        assert getattr(paper, name) == value, name
    mixed = DHMRecConfig(preset="paper", attention_scale="l2", reg_weight=0.5)
    assert mixed.attention_scale == "l2" and mixed.reg_weight == 0.5 and mixed.view_norm == "layernorm"
    default = DHMRecConfig()
    for name, value in PRESETS["default"].items():
        assert getattr(default, name) == value, name
    with pytest.raises(ValueError, match="preset"):
        DHMRecConfig(preset="literal")
    for bad in ({"attention_scale": "cosine"}, {"view_norm": "batch"}, {"reg_target": "all"},
                {"kl_grad": "none"}, {"kl_scores": "l1"}, {"attention_scope": "users"},
                {"kl_temperature": 0.0}, {"view_dropout": 1.0}, {"attention_axis": "nodes"}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            DHMRecConfig(**bad)


def test_options_from_the_command_line_and_yaml_round_trip():
    cfg = build_dataclass(DHMRecConfig, {"preset": "paper", "gate_detach": "true", "kl_temperature": "0.5"}, "model")
    assert cfg.gate_detach is True and cfg.kl_temperature == 0.5 and cfg.reg_weight == 1e-2
    again = build_dataclass(DHMRecConfig, yaml.safe_load(dump_config(TrainConfig(), cfg))["model"], "model")
    assert again == cfg


def test_a_run_written_before_the_readings_existed_reloads_as_the_paper_preset(tmp_path):
    cfg = DHMRecConfig(preset="paper")
    text = identity_text(TrainConfig(model="dhmrec"), cfg)
    model_section = yaml.safe_load(text)["model"]
    assert not set(FORMAT1_IMPLICIT_MODEL["dhmrec"]) & set(model_section)  # written as an old run was
    path = tmp_path / "config.yaml"
    path.write_text(text)
    loaded = load_run_config(path)
    assert build_dataclass(DHMRecConfig, loaded["model"], "model") == cfg


# ---------------------------------------------------------------- attention (15)-(18)
@pytest.mark.parametrize("scale", ["sqrt_n", "centered", "l2"])
def test_attention_scales_match_explicit_queries_and_keys(scale):
    torch.manual_seed(0)
    layer = PosNegAttention(5, num_views=2, scale=scale)
    if scale == "l2":
        with torch.no_grad():
            layer.temperature.copy_(torch.tensor([0.7, 3.0]))
    views = [torch.randn(40, 5) + 2.0 for _ in range(2)]  # un-centred, as real embeddings are
    _, maps = layer(views, return_attention=True)
    fused = layer.fuse(torch.cat(views, -1))
    for v, view in enumerate(views):
        q, k = fused @ layer.query[v].weight.t(), view @ layer.key[v].weight.t()
        if scale == "sqrt_n":
            want = torch.softmax(q.t() @ k / math.sqrt(40), -1)
        elif scale == "centered":
            qc, kc = q - q.mean(0), k - k.mean(0)
            want = torch.softmax(qc.t() @ kc / math.sqrt(40), -1)
        else:
            cos = (q / q.norm(dim=0)).t() @ (k / k.norm(dim=0))
            assert cos.abs().max() <= 1 + 1e-5
            want = torch.softmax(cos * layer.temperature[v], -1)
        assert_close(maps[v], want, rtol=1e-4, atol=1e-5)
        assert_close(maps[v], PosNegAttention.attention_map(q, k, scale, float(layer.temperature[v])
                                                            if scale == "l2" else 1.0), rtol=1e-4, atol=1e-5)


def test_l2_attention_keeps_maps_soft_where_the_literal_scaling_is_one_hot():
    torch.manual_seed(1)
    views = [torch.randn(5000, 8) + 3.0 for _ in range(3)]  # many un-centred nodes
    entropy = {}
    for scale in ("sqrt_n", "l2"):
        torch.manual_seed(2)
        _, maps = PosNegAttention(8, 3, scale=scale)(views, return_attention=True)
        entropy[scale] = float(torch.stack([-(m * m.clamp_min(1e-30).log()).sum(-1).mean() for m in maps]).mean())
    assert entropy["sqrt_n"] < 0.5 < 1.5 < entropy["l2"] <= math.log(8) + 1e-6, entropy


def test_batch_rows_form_the_map_and_every_node_is_mapped():
    torch.manual_seed(3)
    layer = PosNegAttention(4, num_views=2)
    views = [torch.randn(30, 4) for _ in range(2)]
    rows = torch.tensor([0, 3, 7, 8, 20])
    out, maps = layer(views, return_attention=True, rows=rows)
    sub_out, sub_maps = layer([v[rows] for v in views], return_attention=True)
    for a, b in zip(maps, sub_maps):
        assert_close(a, b)
    assert out.shape == (30, 4)
    assert_close(out[rows], sub_out)


@pytest.mark.parametrize("mode", ["posneg", "standard"])
def test_view_axis_attention_matches_a_per_node_loop(mode):
    torch.manual_seed(5)
    num_views, n, d = 3, 12, 4
    layer = PosNegAttention(d, num_views=num_views, mode=mode, axis="views")
    if mode == "posneg":
        with torch.no_grad():
            layer.alpha_pos.fill_(0.7)
            layer.alpha_neg.fill_(0.4)
    views = [torch.randn(n, d) + 1.0 for _ in range(num_views)]
    out, maps = layer(views, return_attention=True)
    fused = layer.fuse(torch.cat(views, -1))
    want = torch.zeros(n, d)
    for v in range(num_views):
        rows = []
        for node in range(n):
            q = layer.query[v].weight @ fused[node]
            keys = torch.stack([layer.key[m].weight @ views[m][node] for m in range(num_views)])
            values = torch.stack([layer.value[m].weight @ views[m][node] for m in range(num_views)])
            a = torch.softmax(keys @ q / math.sqrt(d), 0)  # over the views
            assert_close(maps[v][node], a)
            o = a @ values  # (15)
            if mode == "posneg":
                o = layer.alpha_pos * o + layer.alpha_neg * ((1 - a) @ values)  # (16)-(17)
            rows.append(layer.out[v].weight @ o)
        inner = layer.inner_norm[v](torch.stack(rows))
        want = want + layer.outer_norm[v](inner + views[v])  # (18), summed (19)
    assert_close(out, want)
    assert not hasattr(PosNegAttention(d, num_views=2, scale="l2", axis="views"), "temperature")  # unused there
    with pytest.raises(ValueError, match="axis"):
        PosNegAttention(d, num_views=2, axis="nodes")


def test_view_axis_in_the_model_trains_and_reports_its_maps(data):
    model = build(data, attention_axis="views", attention_scope="batch")
    users, pos, neg = batch(data)
    model.loss(users, pos, neg)["loss"].backward()
    assert model.fusion.key[2].weight.grad.abs().sum() > 0
    diag = model.diagnostics()
    for name in model.view_names:  # entropy of a softmax over the 3 views
        assert 0.0 <= diag[f"attn_entropy_{name}"] <= math.log(3) + 1e-6


def test_mm_center_removes_the_mean_user_and_item_of_the_branch(data):
    plain, centred = build(data, seed=2), build(data, seed=2, mm_center=True)
    with torch.no_grad():
        a, b = plain.eval()(), centred.eval()()
    assert_close(b.user_mm, a.user_mm - a.user_mm.mean(0))
    assert_close(b.item_mm, a.item_mm - a.item_mm.mean(0))
    assert_close(b.user_id, a.user_id)
    assert_close(b.user, b.user_id + centred.config.alpha_mm * b.user_mm)  # (22) on the centred branch
    assert_close(b.item_mm.mean(0), torch.zeros(b.item_mm.size(1)), atol=1e-6, rtol=0)


@pytest.mark.parametrize("view_norm", ["layernorm_plain", "l2"])
def test_view_norms_fix_the_row_scale(view_norm):
    torch.manual_seed(4)
    gain = 0.05
    layer = PosNegAttention(16, num_views=2, norm_gain=gain, view_norm=view_norm)
    views = [5 * torch.randn(20, 16) + 1 for _ in range(2)]
    per_view = [layer._normalize_view(v, views[v]) for v in range(2)]
    for e in per_view:
        assert_close(e.norm(dim=-1), torch.full((20,), gain * 4.0), rtol=1e-3, atol=1e-4)
        if view_norm == "layernorm_plain":
            assert_close(e.mean(-1), torch.zeros(20), atol=1e-6, rtol=0)
    names = [n for n, _ in layer.named_parameters()]
    assert not any(n.startswith("outer_norm") for n in names)
    assert ("outer_scale" in names) == (view_norm == "l2")


def test_view_norm_without_bias_keeps_the_learnable_gain_and_adds_no_shared_vector():
    torch.manual_seed(5)
    with_bias = PosNegAttention(16, num_views=2, norm_gain=0.05, view_norm="layernorm")
    no_bias = PosNegAttention(16, num_views=2, norm_gain=0.05, view_norm="layernorm_nobias")
    no_bias.load_state_dict(with_bias.state_dict(), strict=False)  # all but the outer biases
    names = {n for n, _ in no_bias.named_parameters()}
    assert "outer_norm.0.weight" in names and "outer_norm.0.bias" not in names
    with torch.no_grad():
        for v in range(2):
            with_bias.outer_norm[v].weight.uniform_(0.5, 2.0)
            with_bias.outer_norm[v].bias.normal_()
            no_bias.outer_norm[v].weight.copy_(with_bias.outer_norm[v].weight)
    views = [torch.randn(20, 16) for _ in range(2)]
    for v in range(2):
        # the layer norm with bias is this one plus one vector shared by every node
        shift = with_bias._normalize_view(v, views[v]) - no_bias._normalize_view(v, views[v])
        assert_close(shift, with_bias.outer_norm[v].bias.detach().expand(20, 16))
        centred = views[v] - views[v].mean(-1, keepdim=True)
        expected = centred / (centred.pow(2).mean(-1, keepdim=True) + 1e-5).sqrt() * no_bias.outer_norm[v].weight
        assert_close(no_bias._normalize_view(v, views[v]), expected.detach())
    out = no_bias(views)
    out.sum().backward()
    assert no_bias.outer_norm[0].weight.grad is not None  # the gain still learns


def test_default_layer_norm_gain_starts_rows_at_unit_norm():
    layer = PosNegAttention(16, num_views=1)
    assert layer.norm_gain == pytest.approx(0.25)


# ---------------------------------------------------------------- the model's options
def test_reg_target_ego_penalises_the_id_embeddings_of_the_batch(data):
    model = build(data, reg_target="ego")
    users, pos, neg = batch(data)
    terms = model.loss(users, pos, neg)
    assert_close(terms["reg"], l2_reg(model.user_emb.weight[users], model.item_emb.weight[pos],
                                      model.item_emb.weight[neg]))


@pytest.mark.parametrize("grad", ["mm", "id", "both"])
def test_kl_grad_side(grad):
    torch.manual_seed(5)
    inputs = [torch.randn(s, 4, requires_grad=True) for s in (3, 6, 3, 6)]
    interaction_kl(*inputs, grad=grad).backward()
    mm_has = all(t.grad is not None and t.grad.abs().sum() > 0 for t in inputs[:2])
    id_has = all(t.grad is not None and t.grad.abs().sum() > 0 for t in inputs[2:])
    assert (mm_has, id_has) == {"mm": (True, False), "id": (False, True), "both": (True, True)}[grad]


def test_kl_cosine_scores_and_temperature():
    torch.manual_seed(6)
    u_mm, i_mm, u_id, i_id = (torch.randn(s, 4, dtype=torch.float64) for s in (3, 6, 3, 6))
    # cosine: invariant to the scale of either branch
    base = interaction_kl(u_mm, i_mm, u_id, i_id, scores="cosine", temperature=0.2)
    assert_close(interaction_kl(7 * u_mm, 0.1 * i_mm, u_id, 30 * i_id, scores="cosine", temperature=0.2), base)
    norm = [torch.nn.functional.normalize(t, dim=-1) for t in (u_mm, i_mm, u_id, i_id)]
    assert_close(base, interaction_kl(norm[0] / 0.2, norm[1], norm[2] / 0.2, norm[3]))
    # temperature divides both sides' scores
    assert_close(interaction_kl(u_mm, i_mm, u_id, i_id, temperature=4.0),
                 interaction_kl(u_mm / 4, i_mm, u_id / 4, i_id))


def test_detached_gate_keeps_multimodal_losses_out_of_the_id_table(data):
    for detach in (False, True):
        model = build(data, gate_detach=detach)
        codes = model.disentangler([getattr(model, f"x_{m}") for m in model.modalities], model.item_emb.weight)
        sum(c.sum() for c in codes.specific).backward()
        grad = model.item_emb.weight.grad
        assert (grad is None or grad.abs().sum() == 0) == detach


def test_prune_views_uses_the_pruned_graph_in_training_only(data):
    shared = build(data, prune_views=False)
    pruned = build(data, prune_views=True)
    pruned.load_state_dict(shared.state_dict())
    assert pruned.adj_ui_pruned._nnz() < pruned.adj_ui._nnz()
    with torch.no_grad():
        a, b = shared.train()(), pruned.train()()
        assert_close(a.user_id, b.user_id)  # the ID view is pruned in both
        assert not torch.allclose(a.views[1], b.views[1])
        a, b = shared.eval()(), pruned.eval()()
        for va, vb in zip(a.views, b.views):
            assert_close(va, vb)


def test_view_dropout_in_training_only(data):
    model = build(data, view_dropout=0.5)
    with torch.no_grad():
        model.eval()
        assert_close(model().item_mm, model().item_mm)
        model.train()
        torch.manual_seed(0)
        first = model().item_mm
        torch.manual_seed(1)
        assert not torch.allclose(first, model().item_mm)


def test_batch_attention_scope_in_the_loss(data):
    model = build(data, attention_scope="batch")
    users, pos, neg = batch(data)
    terms = model.loss(users, pos, neg)
    assert torch.isfinite(terms["loss"])
    terms["loss"].backward()
    assert model.fusion.query[0].weight.grad.abs().sum() > 0


# ---------------------------------------------------------------- diagnostics
def test_diagnostics_are_bounded_and_detect_a_user_independent_branch(data):
    model = build(data).eval()
    with torch.no_grad():
        diag = model.diagnostics(torch.Generator().manual_seed(0))
    for view in model.view_names:
        assert 0.0 <= diag[f"attn_entropy_{view}"] <= math.log(8) + 1e-5
    assert {"alpha_pos", "alpha_neg", "mm_id_norm_ratio", "user_mm_cosine", "item_term_share"} <= set(diag)
    assert 0.0 <= diag["item_term_share"] <= 1.0
    assert -1.0 <= diag["user_mm_cosine"] <= 1.0
    torch.manual_seed(0)
    items = torch.randn(1, 30)
    per_user = torch.randn(40, 1)
    assert item_term_share(per_user + 2 * items) == pytest.approx(1.0, abs=1e-5)
    assert item_term_share(torch.randn(40, 30)) < 0.1
    assert 0.4 < item_term_share(torch.randn(40, 30) + items) < 0.7
