"""Equations (20)-(21): KL alignment of multimodal and ID interaction distributions."""
import torch
from torch.testing import assert_close

from dhmrec_pyg.nn import interaction_kl


def test_matches_dense_kl_over_all_items():
    torch.manual_seed(0)
    u_mm, i_mm, u_id, i_id = (torch.randn(s, 3, dtype=torch.float64) for s in (4, 7, 4, 7))
    p_mm = torch.softmax(u_mm @ i_mm.t(), dim=-1)
    p_id = torch.softmax(u_id @ i_id.t(), dim=-1)
    expected = (p_mm * torch.log(p_mm / p_id)).sum(-1).mean()
    assert_close(interaction_kl(u_mm, i_mm, u_id, i_id), expected)
    assert interaction_kl(u_mm, i_mm, u_id, i_id) > 0


def test_zero_when_distributions_agree_and_finite_when_peaked():
    torch.manual_seed(1)
    u, i = torch.randn(3, 4), torch.randn(6, 4)
    assert_close(interaction_kl(u, i, 2 * u, i / 2), torch.tensor(0.0), atol=1e-6, rtol=0)
    big = [t.clone().requires_grad_(True) for t in (1e3 * u, i, -u, 1e3 * i)]
    kl = interaction_kl(*big)
    kl.backward()
    assert torch.isfinite(kl) and all(torch.isfinite(t.grad).all() for t in big)


def test_closed_form_gradients_match_autograd_of_the_definition():
    torch.manual_seed(2)
    inputs = [torch.randn(s, 5, dtype=torch.float64, requires_grad=True) for s in (4, 9, 4, 9)]
    assert torch.autograd.gradcheck(interaction_kl, inputs)

    def definition(u_mm, i_mm, u_id, i_id):
        log_p = torch.log_softmax(u_mm @ i_mm.t(), -1)
        log_q = torch.log_softmax(u_id @ i_id.t(), -1)
        return (log_p.exp() * (log_p - log_q)).sum(-1).mean()

    got = torch.autograd.grad(3.0 * interaction_kl(*inputs), inputs)
    want = torch.autograd.grad(3.0 * definition(*inputs), inputs)
    for g, w in zip(got, want):
        assert_close(g, w)


def test_blocked_evaluation_matches_one_block(monkeypatch):
    import dhmrec_pyg.nn.blocks as blocks

    torch.manual_seed(3)
    inputs = [torch.randn(s, 4, dtype=torch.float64) for s in (10, 6, 10, 6)]

    def value_and_grads():
        leaves = [t.clone().requires_grad_(True) for t in inputs]
        kl = interaction_kl(*leaves)
        return [kl.detach()] + list(torch.autograd.grad(kl, leaves))

    whole = value_and_grads()
    monkeypatch.setattr(blocks, "CPU_BLOCK_ELEMENTS", 3 * 6)  # blocks of 3 users: 3, 3, 3, 1
    assert blocks.block_rows(10, 6, torch.device("cpu")) == 3
    blocked = value_and_grads()
    for b, w in zip(blocked, whole):
        assert_close(b, w)
    with torch.no_grad():  # no gradient wanted: the value alone, through the same blocks
        assert_close(interaction_kl(*inputs), whole[0])
