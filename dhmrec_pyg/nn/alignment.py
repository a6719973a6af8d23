"""Interaction-distribution alignment of multimodal and ID embeddings, equations (20)-(21)."""
from __future__ import annotations

from typing import Any, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor


class _ScoreKL(torch.autograd.Function):
    """Mean over rows of KL(softmax(s) || softmax(t)) for score matrices ``s``, ``t``.

    The gradients are written out, so no ``B x |I|`` intermediate of autograd's
    chain (exp, difference, product) is kept or replayed:
    with :math:`p = \operatorname{softmax}(s)`, :math:`q = \operatorname{softmax}(t)`
    and the row's divergence :math:`k`, :math:`\partial/\partial s = p \odot
    (\log p - \log q - k) / B` and :math:`\partial/\partial t = (q - p) / B`.
    """

    @staticmethod
    def forward(ctx: Any, s: Tensor, t: Tensor) -> Tensor:  # type: ignore[override]
        diff = F.log_softmax(s, dim=-1) - F.log_softmax(t, dim=-1)
        p, q = F.softmax(s, dim=-1), F.softmax(t, dim=-1)
        row = (p * diff).sum(dim=-1, keepdim=True)
        ctx.save_for_backward(p, q, diff, row)
        return row.mean()

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tuple[Tensor, Tensor]:  # type: ignore[override]
        p, q, diff, row = ctx.saved_tensors
        scale = grad / p.size(0)
        grad_t = (q - p).mul_(scale)
        grad_s = (diff - row).mul_(p).mul_(scale)
        return grad_s, grad_t


def interaction_kl(user_mm: Tensor, item_mm: Tensor, user_id: Tensor, item_id: Tensor) -> Tensor:
    r"""KL divergence between multimodal and ID interaction distributions, equations (20)-(21).

    From the DHMRec paper (Zhan et al., AAAI). For each user :math:`u` of the
    batch,

    .. math::
        \mathbf{P}_{mm}(u, \cdot) = \operatorname{softmax}_{i \in \mathcal{I}}
        \big(\tilde{\mathbf{e}}_{u,mm}^\top \tilde{\mathbf{e}}_{i,mm}\big)
        \;\; (20), \qquad
        \mathcal{L}_{KL} = KL(\mathbf{P}_{mm} \,\|\, \mathbf{P}_{id}) \;\; (21)

    with :math:`\mathbf{P}_{id}` defined alike from the ID embeddings.
    Reading taken (SPEC.md): the softmax runs over *all* items, the KL is
    summed over items and averaged over the given users; its cost is
    :math:`O(B |\mathcal{I}| d)`. Both distributions are kept in log space
    (``log_softmax``), so it is finite however peaked the scores are.
    Gradients reach both sides; they are computed in closed form (a custom
    autograd function), which halves the passes over the :math:`B \times |\mathcal{I}|`
    score matrices compared with autograd's chain.

    Args:
        user_mm: ``[B, d]`` multimodal embeddings of the batch's users.
        item_mm: ``[I, d]`` multimodal embeddings of all items.
        user_id: ``[B, d]`` ID embeddings of the same users.
        item_id: ``[I, d]`` ID embeddings of all items.

    Returns:
        A scalar tensor.

    Shapes:
        - **input:** :math:`(B, d), (|\mathcal{I}|, d), (B, d), (|\mathcal{I}|, d)`
        - **output:** :math:`()`
    """
    return _ScoreKL.apply(user_mm @ item_mm.t(), user_id @ item_id.t())
