"""Equations (1)-(6): disentangler, JSD, logit pooling and orthogonality loss vs dense formulas."""
import math

import pytest
import torch
from torch.testing import assert_close

from dhmrec_pyg.nn import (
    ModalityDisentangler,
    jensen_shannon_divergence,
    logit_pool,
    orthogonality_loss,
)
from dhmrec_pyg.nn.disentangle import pool_and_jsd


def kl_dense(p, m):
    return (p * torch.log(p / m)).sum(-1).mean()


def test_logit_pool_equals_paper_closed_form_for_small_codes():
    torch.manual_seed(0)
    a, b = torch.randn(7, 5, dtype=torch.float64), torch.randn(7, 5, dtype=torch.float64)
    closed = torch.log((2 * torch.exp(a + b) + torch.exp(a) + torch.exp(b)) / (2 + torch.exp(a) + torch.exp(b)))
    assert_close(logit_pool([a, b]), closed)


def test_logit_pool_is_logit_of_mean_sigmoid_for_three_modalities():
    torch.manual_seed(1)
    codes = [torch.randn(4, 6, dtype=torch.float64) for _ in range(3)]
    expected = torch.logit(torch.stack([torch.sigmoid(c) for c in codes]).mean(0))
    assert_close(logit_pool(codes), expected)
    assert logit_pool(codes[:1]) is codes[0]


def test_logit_pool_is_finite_for_large_codes():
    a = torch.tensor([[100.0, -100.0, 100.0, 95.0]])
    b = torch.tensor([[100.0, 100.0, -100.0, 90.0]])
    out = logit_pool([a, b])
    assert torch.isfinite(out).all()
    # Equal codes pool to themselves; opposite codes average to probability 1/2 (logit 0).
    assert_close(out[0, :3], torch.tensor([100.0, 0.0, 0.0]))
    # logit((s(95) + s(90)) / 2) = log(mean s) - log(mean s(-x)) = 90 + log 2 - log(1 + e^-5) + O(e^-90).
    expected = 90.0 + math.log(2.0) - math.log1p(math.exp(-5.0))
    assert_close(out[0, 3], torch.tensor(expected), atol=1e-4, rtol=0)
    a.requires_grad_(True)
    logit_pool([a, b]).sum().backward()
    assert torch.isfinite(a.grad).all()


def test_jsd_matches_dense_two_modalities_and_is_symmetric():
    torch.manual_seed(2)
    c1, c2 = torch.randn(9, 4, dtype=torch.float64), torch.randn(9, 4, dtype=torch.float64)
    p, q = torch.sigmoid(c1), torch.sigmoid(c2)
    m = (p + q) / 2
    expected = 0.5 * (kl_dense(p, m) + kl_dense(q, m))
    assert_close(jensen_shannon_divergence([c1, c2]), expected)
    assert_close(jensen_shannon_divergence([c2, c1]), expected)
    assert jensen_shannon_divergence([c1, c2]) > 0


def test_jsd_generalised_for_three_and_zero_for_equal_or_single():
    torch.manual_seed(3)
    cs = [torch.randn(5, 3, dtype=torch.float64) for _ in range(3)]
    ps = [torch.sigmoid(c) for c in cs]
    m = sum(ps) / 3
    expected = sum(kl_dense(p, m) for p in ps) / 3
    assert_close(jensen_shannon_divergence(cs), expected)
    assert_close(jensen_shannon_divergence([cs[0], cs[0].clone()]), torch.tensor(0.0, dtype=torch.float64))
    assert float(jensen_shannon_divergence(cs[:1])) == 0.0
    big = [torch.full((2, 3), 200.0), torch.full((2, 3), -200.0)]
    assert torch.isfinite(jensen_shannon_divergence(big))


def test_orthogonality_loss():
    c = torch.tensor([[1.0, 0.0, 0.0], [0.0, 2.0, 0.0]])
    s = torch.tensor([[0.0, 3.0, 1.0], [5.0, 0.0, 0.0]])
    assert float(orthogonality_loss(c, s)) == 0.0
    assert_close(orthogonality_loss(c, -2 * c), torch.tensor(1.0))
    torch.manual_seed(4)
    a, b = torch.randn(6, 5), torch.randn(6, 5)
    dense = ((a * b).sum(-1).abs() / (a.norm(dim=-1) * b.norm(dim=-1))).mean()
    assert_close(orthogonality_loss(a, b), dense)


def test_disentangler_matches_equations_1_to_3():
    torch.manual_seed(5)
    layer = ModalityDisentangler([6, 4], 3)
    for p in layer.parameters():  # non-zero biases too
        torch.nn.init.normal_(p)
    xs = [torch.randn(8, 6), torch.randn(8, 4)]
    e_id = torch.randn(8, 3)
    out = layer(xs, e_id)
    commons, specifics = [], []
    for m, x in enumerate(xs):
        z = x @ layer.projections[m].weight.t()  # (1), no bias
        ce, pe, g = layer.common_encoders[m], layer.private_encoders[m], layer.gates[m]
        commons.append(z @ ce.weight.t() + ce.bias)  # (2)
        p = z @ pe.weight.t() + pe.bias
        specifics.append(p * torch.sigmoid(e_id @ g.weight.t() + g.bias))  # (3)
    for got, want in zip(out.commons, commons):
        assert_close(got, want)
    for got, want in zip(out.specific, specifics):
        assert_close(got, want)
    assert_close(out.common, logit_pool(commons))
    assert_close(out.jsd, jensen_shannon_divergence(commons))
    assert_close(torch.stack(out.orth), torch.stack([orthogonality_loss(c, s) for c, s in zip(commons, specifics)]))


def test_disentangler_without_disentanglement_uses_projections():
    torch.manual_seed(6)
    layer = ModalityDisentangler([6, 4, 2], 3, disentangle=False)
    assert not hasattr(layer, "gates")
    xs = [torch.randn(5, 6), torch.randn(5, 4), torch.randn(5, 2)]
    out = layer(xs, torch.randn(5, 3))
    zs = [x @ proj.weight.t() for x, proj in zip(xs, layer.projections)]
    for got, want in zip(out.specific, zs):
        assert_close(got, want)
    assert_close(out.common, torch.stack(zs).mean(0))
    assert float(out.jsd) == 0.0 and all(float(o) == 0.0 for o in out.orth)


def test_disentangler_one_modality_repr_and_reset():
    layer = ModalityDisentangler([4], 3)
    out = layer([torch.randn(5, 4)], torch.randn(5, 3))
    assert float(out.jsd) == 0.0
    assert_close(out.common, out.commons[0])
    assert "in_channels=[4]" in repr(layer)
    before = layer.gates[0].weight.detach().clone()
    layer.reset_parameters()
    assert not torch.equal(before, layer.gates[0].weight)
    with pytest.raises(ValueError, match="at least one modality"):
        ModalityDisentangler([], 3)
    with pytest.raises(ValueError, match="expected 1 feature"):
        layer([torch.randn(5, 4)] * 2, torch.randn(5, 3))


def _dense_pool_and_jsd(c):
    """(5) and (4) by their definitions, for autograd to differentiate."""
    p = torch.sigmoid(c)
    mix = p.mean(0)
    return torch.logit(mix), (p * torch.log(p / mix)).sum(-1).mean()


@pytest.mark.parametrize("num_m", [2, 3])
@pytest.mark.parametrize("use", ["both", "pool", "jsd"])
def test_written_out_gradients_of_pooling_and_jsd_match_autograd_of_the_definitions(num_m, use):
    torch.manual_seed(7)
    codes = torch.randn(num_m, 6, 5, dtype=torch.float64) * 2
    weight = torch.randn(6, 5, dtype=torch.float64)

    def objective(pooled, jsd):
        return {"both": (pooled * weight).sum() + 3.0 * jsd, "pool": (pooled * weight).sum(), "jsd": 3.0 * jsd}[use]

    got_c = codes.clone().requires_grad_(True)
    want_c = codes.clone().requires_grad_(True)
    (got_grad,) = torch.autograd.grad(objective(logit_pool(got_c), jensen_shannon_divergence(got_c)), got_c)
    (want_grad,) = torch.autograd.grad(objective(*_dense_pool_and_jsd(want_c)), want_c)
    assert_close(got_grad, want_grad)
    assert want_grad.abs().max() > 1e-3
    assert torch.autograd.gradcheck(lambda c: tuple(pool_and_jsd(c)), (codes.clone().requires_grad_(True),))


def test_orthogonality_loss_matches_cosine_similarity_with_gradients_and_eps():
    torch.manual_seed(8)
    a = torch.randn(2, 7, 5, dtype=torch.float64, requires_grad=True)
    b = torch.randn(2, 7, 5, dtype=torch.float64, requires_grad=True)
    got = orthogonality_loss(a, b)
    want = torch.nn.functional.cosine_similarity(a, b, dim=-1, eps=1e-8).abs().mean(-1)
    assert_close(got, want)
    weights = torch.tensor([0.7, -1.3], dtype=torch.float64)
    for x, gx, gw in zip((a, b), torch.autograd.grad((got * weights).sum(), (a, b)),
                         torch.autograd.grad((want * weights).sum(), (a, b))):
        assert_close(gx, gw)
    tiny, zero = torch.full((1, 3), 1e-5), torch.zeros(1, 3)  # each norm is bounded by eps, as in torch
    assert_close(orthogonality_loss(tiny, tiny), torch.nn.functional.cosine_similarity(tiny, tiny, dim=-1).mean())
    assert float(orthogonality_loss(zero, tiny)) == 0.0
