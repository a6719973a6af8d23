"""Equations (15)-(19): positive-negative attention over embedding dimensions."""
import math

import pytest
import torch
from torch.testing import assert_close
from torch.utils._python_dispatch import TorchDispatchMode

from dhmrec_pyg.nn import PosNegAttention


def dense_reference(layer, views):
    """Equations (15)-(19) written in the paper's d x N column convention."""
    n = views[0].size(0)
    cols = [v.t() for v in views]  # d x N
    fused = layer.fuse.weight @ torch.cat(cols, dim=0)  # W_3 [E_1; ...; E_M]
    total = 0
    for v, e in enumerate(cols):
        q = layer.query[v].weight @ fused
        k = layer.key[v].weight @ e
        val = layer.value[v].weight @ e
        a = torch.softmax(q @ k.t() / math.sqrt(n), dim=-1)  # d x d
        o_pos = a @ val  # (15)
        if layer.mode == "posneg":
            o_neg = (1 - a) @ val  # (16)
            o = layer.alpha_pos * o_pos + layer.alpha_neg * o_neg  # (17)
        else:
            o = o_pos
        inner = layer.inner_norm[v]((layer.out[v].weight @ o).t())
        total = total + layer.outer_norm[v](inner + e.t())  # (18), summed (19)
    return total


@pytest.mark.parametrize("mode", ["posneg", "standard"])
def test_matches_dense_equations(mode):
    torch.manual_seed(0)
    layer = PosNegAttention(4, num_views=3, mode=mode)
    with torch.no_grad():
        for norm in list(layer.inner_norm) + list(layer.outer_norm):
            norm.weight.normal_()
            norm.bias.normal_()
        if mode == "posneg":
            layer.alpha_pos.fill_(0.7)
            layer.alpha_neg.fill_(0.3)
    views = [torch.randn(10, 4) for _ in range(3)]
    assert_close(layer(views), dense_reference(layer, views))


def test_attention_map_is_d_by_d_and_independent_of_n():
    torch.manual_seed(1)
    layer = PosNegAttention(6, num_views=2)
    for n in (50, 100):
        views = [torch.randn(n, 6) for _ in range(2)]
        out, maps = layer(views, return_attention=True)
        assert out.shape == (n, 6)
        assert [tuple(m.shape) for m in maps] == [(6, 6), (6, 6)]
        assert_close(maps[0].sum(-1), torch.ones(6))


class ShapeRecorder(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.numels = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else [out]:
            if isinstance(t, torch.Tensor):
                self.numels.append(t.numel())
        return out


def test_memory_is_linear_in_nodes():
    torch.manual_seed(2)
    d, views_n, n = 4, 3, 400
    layer = PosNegAttention(d, num_views=views_n)
    views = [torch.randn(n, d, requires_grad=True) for _ in range(views_n)]
    with ShapeRecorder() as rec:
        layer(views).sum().backward()
    # The largest tensor is the concatenation of the views (N x 3d): nothing is N x N.
    assert max(rec.numels) <= n * d * views_n < n * n


def test_alphas_gradients_reset_and_repr():
    torch.manual_seed(3)
    layer = PosNegAttention(4, num_views=2)
    assert float(layer.alpha_pos) == 1.0 and float(layer.alpha_neg) == 0.0
    layer(([torch.randn(9, 4) for _ in range(2)])).pow(2).sum().backward()
    for name, p in layer.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    with torch.no_grad():
        layer.alpha_neg.fill_(5.0)
    layer.reset_parameters()
    assert float(layer.alpha_neg) == 0.0
    standard = PosNegAttention(4, num_views=2, mode="standard")
    assert not hasattr(standard, "alpha_pos")
    assert repr(standard) == "PosNegAttention(4, num_views=2, mode='standard')"
    with pytest.raises(ValueError, match="mode"):
        PosNegAttention(4, 2, mode="negative")
