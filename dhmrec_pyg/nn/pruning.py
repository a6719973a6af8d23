"""Degree-sensitive edge pruning of the user-item graph (FREEDOM's rule)."""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from dhmrec_pyg.nn.graph import bipartite_norm_weights


def degree_sensitive_prune(
    edge_index: Tensor,
    num_users: int,
    num_items: int,
    keep_ratio: float,
    generator: Optional[torch.Generator] = None,
) -> Tensor:
    r"""Sample the user-item edges that the ID view keeps for one epoch.

    The denoising step of the DHMRec paper's user-item graph (section
    "Denoising User-Item Graph", before equation (7)), taken from FREEDOM
    (Zhou and Shen, ACM MM 2023). Each edge :math:`(u, i)` gets the weight

    .. math::
        p_{ui} \propto \frac{1}{\sqrt{d_u}\,\sqrt{d_i}}

    where :math:`d_u, d_i` are degrees in the full training graph, and
    :math:`\operatorname{round}(\rho |\mathcal{E}|)` edges are drawn *without
    replacement* with these weights (:math:`\rho` = ``keep_ratio``; FREEDOM's
    ``dropout`` is :math:`1 - \rho`, 0.8 by default there, so
    :math:`\rho = 0.2`). Edges between low-degree nodes are kept more often.
    The caller re-normalises the kept graph (e.g. with
    :func:`~dhmrec_pyg.nn.normalized_adjacency`), as FREEDOM does.

    The draw uses exponential keys (:math:`\log U / p`, largest kept; Efraimidis
    and Spirakis 2006), which gives the same distribution as successive
    weighted draws without replacement (``torch.multinomial``, FREEDOM's way)
    but has no :math:`2^{24}`-category limit, so it scales to graphs with
    millions of interactions.

    Args:
        edge_index: ``[2, E]`` user and item indices of the training graph
            (one entry per interaction).
        num_users: number of users.
        num_items: number of items.
        keep_ratio: share :math:`\rho \in (0, 1]` of the edges to keep.
        generator: random source (CPU); the same seed gives the same edges.

    Returns:
        ``[2, round(keep_ratio * E)]`` kept edges (at least one when ``E > 0``),
        in their original order.

    Shapes:
        - **input:** :math:`(2, |\mathcal{E}|)`
        - **output:** :math:`(2, \lfloor \rho |\mathcal{E}| \rceil)`
    """
    if not 0.0 < float(keep_ratio) <= 1.0:
        raise ValueError(f"keep_ratio must be in (0, 1], got {keep_ratio}")
    num_edges = edge_index.size(1)
    if keep_ratio >= 1.0 or num_edges == 0:
        return edge_index
    num_keep = max(1, int(round(keep_ratio * num_edges)))
    weight = bipartite_norm_weights(edge_index, num_users, num_items)
    uniform = torch.rand(num_edges, generator=generator).to(edge_index.device)
    # key = log(U) / w: the largest keys are a weighted sample without replacement.
    keys = torch.log(uniform.clamp_min(torch.finfo(uniform.dtype).tiny)) / weight
    kept = torch.topk(keys, num_keep, sorted=False).indices.sort().values
    return edge_index[:, kept]
