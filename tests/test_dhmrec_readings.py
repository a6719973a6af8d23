"""The readings of the paper's loose points that a preset uses, one option each: what every option computes."""
import math

import pytest
import torch
import yaml
from torch.testing import assert_close

from dhmrec_pyg.data import make_synthetic
from dhmrec_pyg.errors import ConfigError
from dhmrec_pyg.models import DHMRecConfig
from dhmrec_pyg.models.dhmrec import PAPER_READING, item_term_share
from dhmrec_pyg.nn import PosNegAttention
from dhmrec_pyg.training.config import TrainConfig, build_dataclass, dump_config
from test_dhmrec_model import batch, build  # the same small DHMRec and triplet batch


@pytest.fixture(scope="module")
def data():
    return make_synthetic("tiny", seed=0, n_users=50, n_items=30, n_interactions=320)


# ---------------------------------------------------------------- presets
def test_presets_are_constructors_with_typed_defaults():
    paper = DHMRecConfig.paper()
    for name, value in PAPER_READING.items():
        assert getattr(paper, name) == value, name
    mixed = DHMRecConfig.paper(attention_scale="l2", reg_weight=0.5)
    assert mixed.attention_scale == "l2" and mixed.reg_weight == 0.5 and mixed.view_norm == "layernorm"
    default = DHMRecConfig()
    assert (default.reg_weight, default.alpha_mm, default.gamma_kl, default.ln_gain) == (1e-4, 1.2, 0.01, 0.015)
    assert (default.attention_scale, default.attention_scope, default.view_norm) == ("l2", "batch", "layernorm_nobias")
    assert DHMRecConfig.presets()["default"]() == default
    for bad, shown in (({"attention_scale": "cosine"}, "'cosine'"), ({"view_norm": "batch"}, "'batch'"),
                       ({"attention_scope": "users"}, "'users'"), ({"fusion": "sum"}, "'sum'")):
        with pytest.raises(ConfigError, match=f"DHMRecConfig.{next(iter(bad))} must be one of .*got {shown}"):
            DHMRecConfig(**bad)


def test_options_from_the_command_line_and_yaml_round_trip():
    cfg = build_dataclass(DHMRecConfig, {"preset": "paper", "disentangle": "false", "ln_gain": "0.5"}, "model")
    assert cfg.disentangle is False and cfg.ln_gain == 0.5 and cfg.reg_weight == 1e-2
    assert cfg.attention_scope == "all"  # the rest of the paper's reading
    again = build_dataclass(DHMRecConfig, yaml.safe_load(dump_config(TrainConfig(), cfg))["model"], "model")
    assert again == cfg
    with pytest.raises(ConfigError, match="preset.*'literal'"):
        build_dataclass(DHMRecConfig, {"preset": "literal"}, "model")


# ---------------------------------------------------------------- attention (15)-(18)
@pytest.mark.parametrize("scale", ["sqrt_n", "l2"])
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
        shift = with_bias.outer_norm[v](views[v]) - no_bias.outer_norm[v](views[v])
        assert_close(shift, with_bias.outer_norm[v].bias.detach().expand(20, 16))
        centred = views[v] - views[v].mean(-1, keepdim=True)
        expected = centred / (centred.pow(2).mean(-1, keepdim=True) + 1e-5).sqrt() * no_bias.outer_norm[v].weight
        assert_close(no_bias.outer_norm[v](views[v]), expected.detach())
    out = no_bias(views)
    out.sum().backward()
    assert no_bias.outer_norm[0].weight.grad is not None  # the gain still learns


def test_default_layer_norm_gain_starts_rows_at_unit_norm():
    layer = PosNegAttention(16, num_views=1)
    assert layer.norm_gain == pytest.approx(0.25)


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
