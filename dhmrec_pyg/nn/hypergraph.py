"""Learnable hypergraphs over items and users (LGMRec's global hypergraph embedding)."""
from __future__ import annotations

from typing import Any, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch_geometric.utils import spmm

from dhmrec_pyg.nn.blocks import block_rows
from dhmrec_pyg.nn.graph import is_torch_sparse


class HyperedgeMembership(nn.Module):
    r"""Soft memberships of items and users in learnable hyperedges.

    From LGMRec (Guo et al., *LGMRec: Local and Global Graph Learning for
    Multimodal Recommendation*, AAAI 2024), section "Global Hypergraph
    Embedding". A modality :math:`m` has :math:`A` learnable hyperedge
    embeddings :math:`\mathbf{V}^m \in \mathbb{R}^{A \times F}` living in the
    space of the item's raw modality features
    :math:`\mathbf{X}^m \in \mathbb{R}^{|\mathcal{I}| \times F}`:

    .. math::
        \mathbf{H}_i^m = \operatorname{GumbelSoftmax}_\tau\big(\mathbf{X}^m
        {\mathbf{V}^m}^\top\big), \qquad
        \mathbf{H}_u^m = \operatorname{GumbelSoftmax}_\tau\big(\mathbf{R}\,
        \mathbf{X}^m {\mathbf{V}^m}^\top\big)

    with :math:`\mathbf{R}` the binary user-item interaction matrix (a user's
    logits are the *sums* of its items' logits; readings of the public code),
    the soft (``hard=False``) Gumbel-softmax over the :math:`A` hyperedges of a
    node, and, in training mode, dropout with keep probability ``keep_rate``
    on both membership matrices (``torch.nn.Dropout`` semantics: kept entries
    are scaled by :math:`1/\text{keep\_rate}`).

    In ``eval()`` mode the memberships are deterministic: the noise-free
    relaxation :math:`\operatorname{softmax}(\text{logits}/\tau)` and no
    dropout. (LGMRec's public code also draws Gumbel noise at evaluation; this
    library keeps evaluation reproducible.) The noise and the dropout mask use
    the global ``torch`` random generator.

    Args:
        in_channels: size :math:`F` of the modality features.
        num_hyperedges: number :math:`A` of hyperedges (LGMRec's ``hyper_num``,
            4 on Baby).
        temperature: Gumbel-softmax temperature :math:`\tau` (0.2).
        keep_rate: probability to keep a membership entry in training (0.5);
            1 disables the dropout.

    Shapes:
        - **input:** item features :math:`(|\mathcal{I}|, F)` and a
          :math:`(|\mathcal{U}|, |\mathcal{I}|)` interaction matrix (sparse
          ``torch`` tensor or dense)
        - **output:** user memberships :math:`(|\mathcal{U}|, A)` and item
          memberships :math:`(|\mathcal{I}|, A)`
    """

    def __init__(
        self, in_channels: int, num_hyperedges: int = 4, temperature: float = 0.2, keep_rate: float = 0.5
    ) -> None:
        super().__init__()
        if in_channels < 1 or num_hyperedges < 1:
            raise ValueError(
                f"in_channels and num_hyperedges must be >= 1, got {in_channels} and {num_hyperedges}"
            )
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        if not 0.0 < keep_rate <= 1.0:
            raise ValueError(f"keep_rate must be in (0, 1], got {keep_rate}")
        self.in_channels = int(in_channels)
        self.num_hyperedges = int(num_hyperedges)
        self.temperature = float(temperature)
        self.keep_rate = float(keep_rate)
        self.hyperedges = nn.Parameter(torch.empty(self.num_hyperedges, self.in_channels))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Xavier-initialise the hyperedge embeddings (as LGMRec does)."""
        nn.init.xavier_uniform_(self.hyperedges)

    def logits(self, x: Tensor, interactions: Tensor) -> Tuple[Tensor, Tensor]:
        """Membership logits of users and items, before the (Gumbel-)softmax."""
        item_logits = x @ self.hyperedges.t()
        if is_torch_sparse(interactions):
            user_logits = spmm(interactions, item_logits, reduce="sum")
        else:
            user_logits = interactions @ item_logits
        return user_logits, item_logits

    def _relax(self, logits: Tensor) -> Tensor:
        if not self.training:
            return torch.softmax(logits / self.temperature, dim=-1)
        soft = F.gumbel_softmax(logits, tau=self.temperature, hard=False, dim=-1)
        return F.dropout(soft, p=1.0 - self.keep_rate, training=True) if self.keep_rate < 1.0 else soft

    def forward(self, x: Tensor, interactions: Tensor) -> Tuple[Tensor, Tensor]:
        """User and item membership matrices ``([U, A], [I, A])``."""
        user_logits, item_logits = self.logits(x, interactions)
        return self._relax(user_logits), self._relax(item_logits)

    def __repr__(self) -> str:
        return (
            f"{self.__class__.__name__}({self.in_channels}, num_hyperedges={self.num_hyperedges}, "
            f"temperature={self.temperature}, keep_rate={self.keep_rate})"
        )


class HyperedgePropagation(nn.Module):
    r"""Item -> hyperedge -> item/user message passing over soft memberships.

    LGMRec's hypergraph propagation (Guo et al., AAAI 2024, "Global Hypergraph
    Embedding"). With item memberships :math:`\mathbf{H}_i` and user
    memberships :math:`\mathbf{H}_u` (e.g. from :class:`HyperedgeMembership`),
    every layer gathers the items into the hyperedges and scatters the
    hyperedges back:

    .. math::
        \mathbf{Z}^{(l)} = \mathbf{H}_i^\top \mathbf{E}_i^{(l-1)}, \qquad
        \mathbf{E}_i^{(l)} = \mathbf{H}_i \mathbf{Z}^{(l)}, \qquad
        \mathbf{E}_u^{(l)} = \mathbf{H}_u \mathbf{Z}^{(l)}

    and the output is the last layer :math:`(\mathbf{E}_u^{(L)},
    \mathbf{E}_i^{(L)})`. Memberships are dense (there are few hyperedges), so
    a layer costs :math:`O((|\mathcal{U}| + |\mathcal{I}|) A F)`. Unlike
    :class:`torch_geometric.nn.conv.HypergraphConv` there is no degree
    normalisation, weight matrix or non-linearity: the soft memberships already
    sum to one per node.

    Args:
        num_layers: number of layers :math:`L \geq 1` (LGMRec's
            ``n_hyper_layer``, 1 on Baby).

    Shapes:
        - **input:** item embeddings :math:`(|\mathcal{I}|, F)`, item
          memberships :math:`(|\mathcal{I}|, A)`, user memberships
          :math:`(|\mathcal{U}|, A)`
        - **output:** user embeddings :math:`(|\mathcal{U}|, F)` and item
          embeddings :math:`(|\mathcal{I}|, F)`
    """

    def __init__(self, num_layers: int = 1) -> None:
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"num_layers must be >= 1, got {num_layers}")
        self.num_layers = int(num_layers)

    def forward(self, x: Tensor, item_membership: Tensor, user_membership: Tensor) -> Tuple[Tensor, Tensor]:
        """Global user and item embeddings ``([U, F], [I, F])``."""
        if item_membership.size(0) != x.size(0):
            raise ValueError(
                f"item_membership has {item_membership.size(0)} rows but x has {x.size(0)} items"
            )
        if user_membership.size(1) != item_membership.size(1):
            raise ValueError(
                f"user and item memberships disagree on the number of hyperedges: "
                f"{user_membership.size(1)} vs {item_membership.size(1)}"
            )
        items, users = x, x.new_zeros(0)
        for _ in range(self.num_layers):
            hyperedge_features = item_membership.t() @ items
            items = item_membership @ hyperedge_features
            users = user_membership @ hyperedge_features
        return users, items

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}(num_layers={self.num_layers})"


_MAX_EXP_RANGE = 80.0  # exp(-80) is still a normal float32


class _BoundedLogSumExpSum(torch.autograd.Function):
    r""":math:`w \sum_b \log\sum_j \exp(\mathbf{a}_b^\top\mathbf{c}_j)` for scores bounded by ``bound``.

    The output is a scalar, so its gradients are known up to the incoming factor
    once the forward pass has seen the exponentials: with
    :math:`E_{bj} = e^{\mathbf{a}_b^\top\mathbf{c}_j - \text{bound}}` and
    :math:`z_b = \sum_j E_{bj}`, :math:`\partial/\partial \mathbf{a}_b = w\,(E\,\mathbf{C})_b / z_b`
    and :math:`\partial/\partial \mathbf{C} = w\,E^\top (\mathbf{a} / z)`. The forward
    pass forms them block by block over the anchors
    (:func:`~dhmrec_pyg.nn.blocks.block_rows`), in one reused buffer, so no
    ``[B, N]`` matrix is ever held whole; ``backward`` only scales them.
    """

    @staticmethod
    def forward(ctx: Any, a: Tensor, c: Tensor, bound: float, weight: float) -> Tensor:  # type: ignore[override]
        need_a, need_c = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        num_rows, num_cols = a.size(0), c.size(0)
        step = block_rows(num_rows, num_cols, a.device)
        total = a.new_zeros(())
        grad_a = torch.empty_like(a) if need_a else None
        grad_c = torch.zeros_like(c) if need_c else None
        c_t = c.t().contiguous()
        work = a.new_empty(step, num_cols)
        for start in range(0, num_rows, step):
            sl = slice(start, min(start + step, num_rows))
            e = torch.mm(a[sl], c_t, out=work[: sl.stop - sl.start]).sub_(bound).exp_()
            z = e.sum(dim=-1)
            total += z.log().sum()
            if need_a or need_c:
                inv = z.reciprocal_().mul_(weight).unsqueeze(-1)  # w / z
                if need_a:
                    torch.mm(e, c, out=grad_a[sl]).mul_(inv)  # type: ignore[index]
                if need_c:
                    grad_c.addmm_(e.t(), a[sl] * inv)  # type: ignore[union-attr]
        ctx.grads = (grad_a, grad_c)
        return (total + bound * num_rows) * weight

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tuple[Optional[Tensor], Optional[Tensor], None, None]:  # type: ignore[override]
        grad_a, grad_c = ctx.grads
        return (
            None if grad_a is None else grad_a * grad,
            None if grad_c is None else grad_c * grad,
            None,
            None,
        )


def info_nce(
    anchor: Tensor, positive: Tensor, candidates: Tensor, temperature: float = 0.2, reduction: str = "sum"
) -> Tensor:
    r"""InfoNCE of anchors against their positives among all candidates (cosine similarity).

    .. math::
        \mathcal{L} = -\sum_{b} \log
        \frac{\exp(\cos(\mathbf{a}_b, \mathbf{p}_b)/\tau)}
        {\sum_{j} \exp(\cos(\mathbf{a}_b, \mathbf{c}_j)/\tau)}

    LGMRec's hypergraph contrastive loss (Guo et al., AAAI 2024) with the
    anchors from one modality, the positives the same nodes in another
    modality, and the candidates all nodes of that other modality (the
    positive is among them). Cosine scores lie in :math:`[-1/\tau, 1/\tau]`, so
    the log-sum-exp is shifted by the constant :math:`1/\tau` (no overflow, no
    row maximum to find) and its gradients are written out
    (:class:`_BoundedLogSumExpSum`, block by block); below :math:`\tau = 0.025`, where
    :math:`e^{-2/\tau}` would underflow, ``torch.logsumexp`` is used. ``reduction="sum"`` (LGMRec's public code,
    to which its ``cl_weight`` 1e-4 is tuned) or ``"mean"`` over the anchors.

    Shapes:
        - **input:** anchor :math:`(B, F)`, positive :math:`(B, F)`,
          candidates :math:`(N, F)`
        - **output:** scalar
    """
    if reduction not in ("sum", "mean"):
        raise ValueError(f"reduction must be 'sum' or 'mean', got {reduction!r}")
    # Scale the [B, F] anchors, not the [B, N] score matrix: one pass less over the big matrix.
    a = F.normalize(anchor, dim=-1) / temperature
    pos = (a * F.normalize(positive, dim=-1)).sum(-1)
    c = F.normalize(candidates, dim=-1)
    weight = 1.0 if reduction == "sum" else 1.0 / max(anchor.size(0), 1)
    if 2.0 / temperature <= _MAX_EXP_RANGE:
        lse_total = _BoundedLogSumExpSum.apply(a, c, 1.0 / temperature, weight)
    else:  # very small temperatures: exp(-2/tau) would underflow, take the general route
        lse_total = torch.logsumexp(a @ c.t(), dim=-1).sum() * weight
    return lse_total - pos.sum() * weight


__all__ = ["HyperedgeMembership", "HyperedgePropagation", "info_nce"]
