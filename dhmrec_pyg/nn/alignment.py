"""Interaction-distribution alignment of multimodal and ID embeddings, equations (20)-(21)."""
from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor


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
    Gradients reach both sides.

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
    log_p_mm = F.log_softmax(user_mm @ item_mm.t(), dim=-1)
    log_p_id = F.log_softmax(user_id @ item_id.t(), dim=-1)
    return (log_p_mm.exp() * (log_p_mm - log_p_id)).sum(dim=-1).mean()
