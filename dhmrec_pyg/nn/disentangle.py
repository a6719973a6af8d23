"""Collaboration-guided modality disentanglement: equations (1)-(6) of the DHMRec paper."""
from __future__ import annotations

import math
from typing import Any, List, NamedTuple, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.autograd.function import once_differentiable


def logit_pool(codes: Union[Sequence[Tensor], Tensor]) -> Tensor:
    r"""Logit pooling of modality-common codes, equation (5) of the DHMRec paper.

    .. math::
        \mathbf{C}_i = \sigma^{-1}\Big(\frac{1}{|\mathcal{M}|}
        \sum_{m \in \mathcal{M}} \sigma(\mathbf{C}_{i,m})\Big)

    The paper's closed form for two modalities,
    :math:`\log \frac{2e^{a+b} + e^a + e^b}{2 + e^a + e^b}`, overflows for
    codes of magnitude around 90 in float32. This function evaluates the same
    quantity for any number of modalities as

    .. math::
        \log \frac{\bar{p}}{1 - \bar{p}}
        = \operatorname{logsumexp}_m \log\sigma(\mathbf{C}_{i,m})
        - \operatorname{logsumexp}_m \log\sigma(-\mathbf{C}_{i,m})

    (the :math:`\log |\mathcal{M}|` of the two means cancels), which is finite
    for any finite input. With one modality it returns the code unchanged.
    The computation, and its gradient written out, is :func:`pool_and_jsd`'s (shared with (4)).

    Args:
        codes: one ``[I, d]`` tensor per modality (or one ``[M, I, d]`` stack of them).

    Shapes:
        - **input:** :math:`|\mathcal{M}|` tensors of shape :math:`(I, d)`
        - **output:** :math:`(I, d)`
    """
    if len(codes) == 0:
        raise ValueError("logit_pool needs at least one code tensor")
    if len(codes) == 1:
        return codes[0]
    return pool_and_jsd(_stack(codes))[0]


def _stack(codes: Union[Sequence[Tensor], Tensor]) -> Tensor:
    """``[M, I, d]``: the codes as one tensor (a tensor is taken as already stacked)."""
    return codes if isinstance(codes, Tensor) else torch.stack(list(codes), dim=0)


class _PoolAndJSD(torch.autograd.Function):
    r"""Equations (5) and (4) of stacked ``[M, I, d]`` codes :math:`c`, with their gradients
    written out: the backward pass is a few passes over the codes instead of one per operator
    of the forward pass. With :math:`p = \sigma(c)`, :math:`q = 1 - p` and their means
    :math:`\bar{p}, \bar{q}` over the modalities,

    .. math::
        \frac{\partial \mathbf{C}}{\partial c_m} = \frac{p_m q_m}{|\mathcal{M}|\,\bar{p}\,\bar{q}},
        \qquad
        \frac{\partial \mathcal{L}_{JSD}}{\partial c_m}
        = \frac{p_m q_m (\log p_m - \log \bar{p})}{|\mathcal{M}|\,|\mathcal{I}|}

    (the second because :math:`\sum_k p_k / (|\mathcal{M}|\bar{p}) = 1`), both evaluated from
    :math:`\log p`, :math:`\log q` and their logsumexps, so that large codes stay finite.
    """

    @staticmethod
    def forward(ctx: Any, c: Tensor) -> Tuple[Tensor, Tensor]:  # type: ignore[override]
        ctx.set_materialize_grads(False)
        log_p = F.logsigmoid(c)
        log_q = log_p - c  # log sigma(-c)
        lse_p, lse_q = torch.logsumexp(log_p, dim=0), torch.logsumexp(log_q, dim=0)
        log_mix = lse_p - math.log(c.size(0))  # log of the mean sigmoid, [I, d]
        jsd = (log_p.exp() * (log_p - log_mix)).sum(dim=-1).mean()  # (4): the [M, I] KLs, averaged
        ctx.save_for_backward(log_p, log_q, lse_p, lse_q)
        return lse_p - lse_q, jsd  # (5): the log |M| of the two means cancels

    @staticmethod
    @once_differentiable
    def backward(  # type: ignore[override]
        ctx: Any, grad_pool: Optional[Tensor], grad_jsd: Optional[Tensor]
    ) -> Optional[Tensor]:
        log_p, log_q, lse_p, lse_q = ctx.saved_tensors
        num_m = log_p.size(0)
        log_pq = log_p + log_q
        grad: Optional[Tensor] = None
        if grad_pool is not None:  # p q / (M mean(p) mean(q)) = M exp(log p q - lse_p - lse_q), exponent <= 0
            grad = (log_pq - (lse_p + lse_q)).exp_().mul_(grad_pool * num_m)
        if grad_jsd is not None:
            rows = log_p[..., 0].numel()  # the [M, I] KLs the mean runs over
            jsd = (log_p - (lse_p - math.log(num_m))).mul_(log_pq.exp_()).mul_(grad_jsd / rows)
            grad = jsd if grad is None else grad.add_(jsd)
        return grad


def pool_and_jsd(codes: Tensor) -> Tuple[Tensor, Tensor]:
    """The pooled code of equation (5) and the JSD of equation (4) of stacked ``[M, I, d]`` codes
    (``M >= 2``), in one pass that shares their logarithms, with gradients written out
    (:func:`logit_pool`, :func:`jensen_shannon_divergence`).

    Returns:
        ``(pooled, jsd)``: the ``[I, d]`` pooled code and a scalar.
    """
    return _PoolAndJSD.apply(codes)


def jensen_shannon_divergence(codes: Union[Sequence[Tensor], Tensor]) -> Tensor:
    r"""Jensen-Shannon divergence of modality-common codes, equation (4) of the DHMRec paper.

    .. math::
        \mathcal{L}_{JSD} = \frac{1}{|\mathcal{M}|} \sum_{m \in \mathcal{M}}
        KL(\mathbf{P}_m \,\|\, \mathbf{M}), \qquad
        \mathbf{P}_m = \sigma(\mathbf{C}_{i,m}), \quad
        \mathbf{M} = \frac{1}{|\mathcal{M}|} \sum_m \mathbf{P}_m

    For two modalities this is the paper's
    :math:`\frac{1}{2}(KL(\mathbf{P}\|\mathbf{M}) + KL(\mathbf{Q}\|\mathbf{M}))`;
    for more it is the generalised JSD against the mean (this library's reading, ``docs/readings.md``),
    and with one modality it is zero.

    Reading taken: the sigmoid of each code is used as written, without
    renormalisation, so :math:`KL(\mathbf{P}\|\mathbf{M}) = \sum_{k=1}^{d}
    p_k \log (p_k / m_k)` per item (the form of DrFuse, Yao et al. 2024, from
    which the paper takes its logit pooling and its orthogonality loss). By the
    log-sum inequality every element's contribution is non-negative and zero
    only where all modalities agree. The per-item sums over the ``d``
    dimensions are averaged over items. Logarithms are taken with
    ``logsigmoid`` and ``logsumexp``, so large codes cannot give ``log(0)``.

    Args:
        codes: one ``[I, d]`` modality-common code tensor per modality (or one
            ``[M, I, d]`` stack of them).

    Returns:
        A scalar tensor.

    Shapes:
        - **input:** :math:`|\mathcal{M}|` tensors of shape :math:`(I, d)`
        - **output:** :math:`()`
    """
    if len(codes) == 0:
        raise ValueError("jensen_shannon_divergence needs at least one code tensor")
    if len(codes) == 1:
        return codes[0].new_zeros(())
    return pool_and_jsd(_stack(codes))[1]


def orthogonality_loss(common: Tensor, specific: Tensor, eps: float = 1e-8) -> Tensor:
    r"""Orthogonality constraint of one modality, equation (6) of the DHMRec paper.

    .. math::
        \mathcal{L}_{orth_m} = \frac{1}{|\mathcal{I}|} \sum_{i \in \mathcal{I}}
        \frac{|\langle \mathbf{c}_{i,m}, \mathbf{s}_{i,m} \rangle|}
        {\|\mathbf{c}_{i,m}\|_2 \, \|\mathbf{s}_{i,m}\|_2}

    Reading taken (``docs/readings.md``): the absolute cosine similarity per item between
    its modality-common code and its (gated) modality-specific code, averaged
    over items. ``eps`` bounds the norms away from zero.

    Args:
        common: ``[I, d]`` modality-common codes :math:`\mathbf{C}_{i,m}`.
        specific: ``[I, d]`` modality-specific codes :math:`\mathbf{S}_{i,m}`.
        eps: lower bound of the norms.

    Shapes:
        - **input:** :math:`(I, d)`, :math:`(I, d)`; or :math:`(M, I, d)` stacks of
          several modalities
        - **output:** :math:`()`; :math:`(M)` for stacks (one loss per modality)
    """
    # F.cosine_similarity's value (each norm bounded by eps), in fewer passes over the codes.
    norms = torch.linalg.vector_norm(common, dim=-1).clamp_min(eps) * torch.linalg.vector_norm(
        specific, dim=-1).clamp_min(eps)
    return (torch.linalg.vecdot(common, specific, dim=-1) / norms).abs().mean(-1)


class DisentangledCodes(NamedTuple):
    """Output of :class:`ModalityDisentangler`.

    Attributes:
        specific: per modality, the ``[I, d]`` modality-specific codes
            :math:`\\mathbf{S}_{i,m}` (equation (3)).
        common: the ``[I, d]`` pooled modality-common code :math:`\\mathbf{C}_i`
            (equation (5)).
        commons: per modality, the ``[I, d]`` common codes :math:`\\mathbf{C}_{i,m}`.
        jsd: :math:`\\mathcal{L}_{JSD}` (equation (4)), a scalar.
        orth: per modality, :math:`\\mathcal{L}_{orth_m}` (equation (6)).
    """

    specific: List[Tensor]
    common: Tensor
    commons: List[Tensor]
    jsd: Tensor
    orth: List[Tensor]


class StackedCodes(NamedTuple):
    r""":class:`DisentangledCodes` with the per-modality tensors stacked along a first axis,
    as :meth:`ModalityDisentangler.stacked` computes them.

    Attributes:
        specific: ``[M, I, d]`` modality-specific codes.
        common: ``[I, d]`` pooled common code.
        commons: ``[M, I, d]`` per-modality common codes.
        jsd: scalar :math:`\mathcal{L}_{JSD}`.
        orth: ``[M]`` orthogonality losses.
    """

    specific: Tensor
    common: Tensor
    commons: Tensor
    jsd: Tensor
    orth: Tensor

    def unstack(self) -> DisentangledCodes:
        """The same codes as a :class:`DisentangledCodes` of per-modality lists (views, no copy)."""
        return DisentangledCodes(
            list(self.specific.unbind(0)), self.common, list(self.commons.unbind(0)), self.jsd,
            list(self.orth.unbind(0)),
        )


class ModalityDisentangler(nn.Module):
    r"""Modality disentanglement with a collaborative-signal gate, equations (1)-(3).

    From the paper *DHMRec: Collaboration-Guided Multimodal Disentanglement
    and Hierarchical Fusion for Recommendation* (Zhan et al., AAAI). For each
    modality :math:`m` with raw item features :math:`\mathbf{X}_m`:

    .. math::
        \mathbf{Z}_m &= \mathbf{X}_m \mathbf{W}_1^{m\top}
        \qquad\qquad\qquad\qquad\qquad\qquad\;\; (1)

        \mathbf{C}_{i,m} &= E_{C_m}(\mathbf{Z}_m), \quad
        \mathbf{P}_{i,m} = E_{P_m}(\mathbf{Z}_m)
        \qquad\qquad\quad\;\; (2)

        \mathbf{S}_{i,m} &= \mathbf{P}_{i,m} \odot
        \sigma(\mathbf{E}_{i,id} \mathbf{W}_2^{m\top} + \mathbf{b}_2^m)
        \qquad\qquad (3)

    (row-per-item convention: the paper's :math:`\mathbf{W}\mathbf{X}` on
    :math:`d \times |\mathcal{I}|` matrices). :math:`\mathbf{W}_1^m` has no
    bias, as written in (1); the encoders :math:`E_{C_m}, E_{P_m}` are
    "simple linear networks" (``nn.Linear`` with bias). Reading taken for (3):
    the gate reads the item ID embedding table itself, before any
    graph propagation. The forward pass also returns the pooled common code
    (:func:`logit_pool`, equation (5)) and the losses
    :func:`jensen_shannon_divergence` (4) and :func:`orthogonality_loss` (6).

    Works for any number of modalities :math:`\geq 1`. With
    ``disentangle=False`` (the paper's *w/o DIS* ablation) the module keeps only
    the projections (1): every modality-specific code is :math:`\mathbf{Z}_m`,
    the common code is the mean of the :math:`\mathbf{Z}_m`, and there is no
    gate and no JSD or orthogonality loss (both returned as zeros).

    Args:
        in_channels: feature width :math:`d_m` of each modality, in order.
        out_channels: code width :math:`d_k`.
        disentangle: ``False`` for the *w/o DIS* ablation.

    Shapes:
        - **input:** :math:`|\mathcal{M}|` feature tensors :math:`(I, d_m)`
          and ID embeddings :math:`(I, d_k)`
        - **output:** :class:`DisentangledCodes` of :math:`(I, d_k)` codes
    """

    def __init__(
        self, in_channels: Sequence[int], out_channels: int, disentangle: bool = True
    ) -> None:
        super().__init__()
        in_channels = [int(c) for c in in_channels]
        if not in_channels:
            raise ValueError("ModalityDisentangler needs at least one modality (in_channels is empty)")
        if any(c < 1 for c in in_channels) or out_channels < 1:
            raise ValueError(
                f"channel sizes must be positive, got in_channels={in_channels}, out_channels={out_channels}"
            )
        self.in_channels = in_channels
        self.out_channels = int(out_channels)
        self.disentangle = bool(disentangle)
        d = self.out_channels
        self.projections = nn.ModuleList(nn.Linear(c, d, bias=False) for c in in_channels)
        if self.disentangle:
            self.common_encoders = nn.ModuleList(nn.Linear(d, d) for _ in in_channels)
            self.private_encoders = nn.ModuleList(nn.Linear(d, d) for _ in in_channels)
            self.gates = nn.ModuleList(nn.Linear(d, d) for _ in in_channels)
        self.reset_parameters()

    @property
    def num_modalities(self) -> int:
        """Number of modalities :math:`|\\mathcal{M}|`."""
        return len(self.in_channels)

    def reset_parameters(self) -> None:
        """Xavier-uniform weights (the paper's initialisation), zero biases."""
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    def forward(self, features: Sequence[Tensor], item_id_emb: Tensor) -> DisentangledCodes:
        """Disentangle the item features of every modality.

        Args:
            features: one ``[I, d_m]`` raw feature matrix per modality, in the
                order of ``in_channels``.
            item_id_emb: ``[I, d_k]`` item ID embedding table (the gate's guide).
        """
        return self.stacked(features, item_id_emb).unstack()

    def stacked(self, features: Sequence[Tensor], item_id_emb: Tensor) -> StackedCodes:
        """:meth:`forward` with the modalities stacked (:class:`StackedCodes`).

        The modalities go through each step together: one batched product for all
        encoders :math:`E_{C_m}, E_{P_m}` of (2), one product for all gates of (3), and
        the losses (4)-(6) in one pass each over the stack.
        """
        if len(features) != self.num_modalities:
            raise ValueError(f"expected {self.num_modalities} feature tensors, got {len(features)}")
        z = torch.stack([proj(x) for proj, x in zip(self.projections, features)])  # (1), [M, I, d]
        num_m, d = z.size(0), self.out_channels
        if not self.disentangle:
            zero = item_id_emb.new_zeros(())
            common = z[0] if num_m == 1 else z.mean(0)
            return StackedCodes(z, common, z, zero, item_id_emb.new_zeros(num_m))
        # (2): per modality one d -> 2d map, [E_C; E_P] (weights [M, 2d, d], biases [M, 1, 2d]).
        pairs = [enc for m in range(num_m) for enc in (self.common_encoders[m], self.private_encoders[m])]
        weight = torch.stack([enc.weight for enc in pairs]).view(num_m, 2 * d, d)
        bias = torch.stack([enc.bias for enc in pairs]).view(num_m, 1, 2 * d)
        encoded = torch.baddbmm(bias, z, weight.transpose(1, 2))
        commons, private = encoded[..., :d], encoded[..., d:]
        # (3): all gates read the same guide, so they are one [I, M * d] product.
        gate = torch.sigmoid(F.linear(item_id_emb, torch.cat([g.weight for g in self.gates]),
                                      torch.cat([g.bias for g in self.gates])))
        specific = private * gate.view(-1, num_m, d).transpose(0, 1)
        orth = orthogonality_loss(commons, specific)  # (6), [M]
        if num_m == 1:
            return StackedCodes(specific, commons[0], commons, commons.new_zeros(()), orth)
        common, jsd = pool_and_jsd(commons)  # (5), (4)
        return StackedCodes(specific, common, commons, jsd, orth)

    def __repr__(self) -> str:
        return (
            f"{self.__class__.__name__}(in_channels={self.in_channels}, "
            f"out_channels={self.out_channels}, disentangle={self.disentangle})"
        )
