"""Interaction-distribution alignment of multimodal and ID embeddings, equations (20)-(21)."""
from __future__ import annotations

import math
from typing import Any, List, Optional, Tuple

import torch
from torch import Tensor

from dhmrec_pyg.nn.blocks import block_rows


def _softmax_and_log_(scores: Tensor, probs: Tensor) -> None:
    r"""Row-wise softmax of ``scores`` into ``probs``; ``scores`` becomes its logarithm.

    One exponential per element: the log-normaliser is recovered from the
    largest probability, :math:`\log Z = \max_j s_j - \log \max_j p_j`
    (:math:`\max_j p_j \geq 1/|\mathcal{I}|`, so its logarithm is exact to
    float precision).
    """
    torch.softmax(scores, dim=-1, out=probs)
    log_norm = scores.amax(dim=-1, keepdim=True).sub_(probs.amax(dim=-1, keepdim=True).log_())
    scores.sub_(log_norm)


def _kl_blocks(
    user_mm: Tensor, item_mm: Tensor, user_id: Tensor, item_id: Tensor, grads: List[bool],
    offset: Optional[Tensor] = None,
) -> Tuple[Tensor, List[Optional[Tensor]]]:
    r"""Row-summed KL of every user and the *unscaled* gradients of their sum.

    ``offset`` (``[I]``, no gradient) is added to every score of its item on both sides
    (the log-weights of :func:`sampled_interaction_kl`).

    Works through the users in blocks, in two reused ``2 x rows x |I|`` buffers,
    so that each block's matrices are made, used and overwritten while they are
    in cache. The multimodal and the ID side are stacked (``[2, ...]``), so each
    step is one batched operator for both. For a block with :math:`\log p`,
    :math:`\log q` and row divergences :math:`k`:
    :math:`\partial/\partial s = p \odot (\log p - \log q) - k\,p`
    and :math:`\partial/\partial t = q - p`; each embedding's gradient is one
    product with the other side.
    """
    num_rows, num_items = user_mm.size(0), item_mm.size(0)
    step = block_rows(num_rows, num_items, user_mm.device)
    users = torch.stack([user_mm, user_id])  # [2, B, d]
    items = torch.stack([item_mm, item_id])  # [2, I, d]
    # Contiguous d x |I| right-hand sides: the block products read them row by row.
    items_t = items.transpose(1, 2).contiguous()
    want = any(grads)
    user_grad = torch.empty_like(users) if want and not all(grads) else None
    item_grad = torch.zeros_like(items) if want else None
    log_pq, pq = users.new_empty(2, step, num_items), users.new_empty(2, step, num_items)
    # The buffers, their sides and their transpose for full blocks; the blocks of users, as views.
    full = (log_pq, pq, *log_pq.unbind(0), *pq.unbind(0), log_pq.transpose(1, 2))
    row_blocks, user_blocks = [], []
    for start, block in zip(range(0, num_rows, step), users.split(step, dim=1)):
        n = block.size(1)
        logs, probs, log_p, log_q, p, q, logs_t = full if n == step else (
            log_pq[:, :n], pq[:, :n], log_pq[0, :n], log_pq[1, :n], pq[0, :n], pq[1, :n],
            log_pq[:, :n].transpose(1, 2),
        )
        torch.bmm(block, items_t, out=logs)  # scores of both sides
        if offset is not None:
            logs.add_(offset)
        _softmax_and_log_(logs, probs)
        weighted = log_p.sub_(log_q).mul_(p)  # p (log p - log q), in log_p's buffer
        row = weighted.sum(dim=-1, keepdim=True)
        row_blocks.append(row)
        if not want:
            continue
        weighted.addcmul_(p, row, value=-1.0)  # p (log p - log q - k)
        torch.sub(q, p, out=log_q)  # q - p: the buffer holds both sides' score gradients
        if all(grads):
            user_blocks.append(torch.bmm(logs, items))
            item_grad.baddbmm_(logs_t, block)  # type: ignore[union-attr]
            continue
        for side, (g_user, g_item) in enumerate(((0, 1), (2, 3))):
            if grads[g_user]:
                torch.mm(logs[side], items[side], out=user_grad[side, start:start + n])  # type: ignore[index]
            if grads[g_item]:
                item_grad[side].addmm_(logs[side].t(), block[side])  # type: ignore[index]
    if want and all(grads):
        user_grad = torch.cat(user_blocks, dim=1) if user_blocks else torch.empty_like(users)
    rows = torch.cat(row_blocks).view(-1) if row_blocks else users.new_zeros(0)
    out: List[Optional[Tensor]] = [None] * 4
    if want:
        for k in range(4):
            if grads[k]:
                out[k] = (user_grad if k % 2 == 0 else item_grad)[k // 2]  # type: ignore[index]
    return rows, out


class _InteractionKL(torch.autograd.Function):
    r"""Equations (20)-(21) with their gradients written out.

    The loss is a scalar, so its gradients are known up to the incoming factor
    once the forward pass has seen the score matrices: they are computed there,
    block by block (:func:`_kl_blocks`), and ``backward`` only scales them by
    ``grad / B``. No :math:`B \times |\mathcal{I}|` matrix outlives its block.
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any, user_mm: Tensor, item_mm: Tensor, user_id: Tensor, item_id: Tensor, offset: Optional[Tensor]
    ) -> Tensor:
        rows, grads = _kl_blocks(user_mm, item_mm, user_id, item_id, list(ctx.needs_input_grad[:4]), offset)
        ctx.grads, ctx.num_rows = grads, user_mm.size(0)
        return rows.mean()

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tuple[Optional[Tensor], ...]:  # type: ignore[override]
        grads: List[Optional[Tensor]] = ctx.grads
        scale = grad / ctx.num_rows
        return tuple(None if g is None else g * scale for g in grads) + (None,)


def interaction_kl(
    user_mm: Tensor,
    item_mm: Tensor,
    user_id: Tensor,
    item_id: Tensor,
) -> Tensor:
    r"""KL divergence between multimodal and ID interaction distributions, equations (20)-(21).

    From the DHMRec paper (Zhan et al., AAAI). For each user :math:`u` of the
    batch,

    .. math::
        \mathbf{P}_{mm}(u, \cdot) = \operatorname{softmax}_{i \in \mathcal{I}}
        \big(\tilde{\mathbf{e}}_{u,mm}^\top \tilde{\mathbf{e}}_{i,mm}\big)
        \;\; (20), \qquad
        \mathcal{L}_{KL} = KL(\mathbf{P}_{mm} \,\|\, \mathbf{P}_{id}) \;\; (21)

    with :math:`\mathbf{P}_{id}` defined alike from the ID embeddings.
    Reading taken: the softmax runs over *all* items, the KL is
    summed over items and averaged over the given users; its cost is
    :math:`O(B |\mathcal{I}| d)`. Both distributions are kept in log space
    (scores minus their log-normaliser), so it is finite however peaked the scores are.
    Gradients reach both sides; they are computed in closed form during the
    forward pass (a custom autograd function), block by block over the users,
    so the :math:`B \times |\mathcal{I}|` score matrices are never held whole
    (on CPU a block is about 2 MiB and stays in cache).

    Readings the library tried and dropped (a temperature, cosine scores, gradients to one
    side only) are recorded in the repository's ``docs/readings.md``.

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
    return _kl(user_mm, item_mm, user_id, item_id, None)


def _kl(user_mm: Tensor, item_mm: Tensor, user_id: Tensor, item_id: Tensor, offset: Optional[Tensor]) -> Tensor:
    """The mean row KL through :class:`_InteractionKL`, or without gradients when none is wanted."""
    inputs = (user_mm, item_mm, user_id, item_id)
    if torch.is_grad_enabled() and any(t.requires_grad for t in inputs):
        return _InteractionKL.apply(*inputs, offset)
    rows, _ = _kl_blocks(*inputs, grads=[False] * 4, offset=offset)  # no gradient wanted: skip computing it
    return rows.mean()


def kl_candidates(positives: Tensor, num_items: int, samples: int) -> Tuple[Tensor, Tensor]:
    r"""The items of :func:`sampled_interaction_kl`: ``positives`` (distinct) and ``samples`` others,
    with the logarithm of how many items each stands for.

    The others are drawn uniformly without replacement from the items not in ``positives``, with
    torch's global random generator (on ``positives``' device), so a seeded run draws the same
    items again. Each positive stands for itself (log-weight 0); each drawn item for
    :math:`(|\mathcal{I}| - |P|) / S` items (its log-weight, the log-q correction). When
    ``samples`` covers every other item, all items are returned, each with log-weight 0.

    Args:
        positives: ``[n]`` distinct item indices (the batch's positive items).
        num_items: :math:`|\mathcal{I}|`.
        samples: :math:`S \geq 1`, the number of other items to draw.

    Returns:
        ``(items, log_weight)``: ``[|P| + S']`` item indices (``S' = min(S, |I| - |P|)``) and
        their ``[|P| + S']`` float log-weights.
    """
    if samples < 1:
        raise ValueError(f"samples must be >= 1, got {samples}")
    device = positives.device
    others = torch.ones(num_items, dtype=torch.bool, device=device)
    others[positives] = False
    others = others.nonzero().view(-1)
    if samples < others.numel():
        drawn = others[torch.randperm(others.numel(), device=device)[:samples]]
        weight = others.numel() / samples
    else:
        drawn, weight = others, 1.0
    log_weight = torch.zeros(positives.numel() + drawn.numel(), device=device)
    log_weight[positives.numel():] = math.log(weight)
    return torch.cat([positives, drawn]), log_weight


def sampled_interaction_kl(
    user_mm: Tensor,
    item_mm: Tensor,
    user_id: Tensor,
    item_id: Tensor,
    positives: Tensor,
    samples: int,
) -> Tensor:
    r""":func:`interaction_kl` with the softmaxes of (20) over the batch's positive items and
    ``samples`` other items drawn uniformly (sampled softmax with the log-q correction): a
    departure from the paper, cheaper on large catalogues, :math:`O(B (|P| + S) d)` instead of
    :math:`O(B |\mathcal{I}| d)`.

    The items are those of :func:`kl_candidates`; each item's score gets its log-weight
    :math:`\log w_c` on both sides, so the two softmaxes over the candidates are
    self-normalised importance-sampling estimates of (20), and their KL,
    :math:`\sum_c \hat{p}_c (s_c - t_c) - \log \hat{Z}_{mm} + \log \hat{Z}_{id}`, estimates (21).
    When ``samples`` covers every item outside ``positives``, it is (21) exactly (the items in
    another order). Gradients reach both sides' embeddings of the users and the candidate items.

    Args:
        user_mm, item_mm, user_id, item_id: as in :func:`interaction_kl`.
        positives: ``[n]`` distinct indices of the batch's positive items.
        samples: how many other items to draw (:math:`S \geq 1`).

    Returns:
        A scalar tensor.
    """
    items, log_weight = kl_candidates(positives, item_mm.size(0), samples)
    offset = log_weight.to(item_mm.dtype)
    return _kl(user_mm, item_mm.index_select(0, items), user_id, item_id.index_select(0, items), offset)
