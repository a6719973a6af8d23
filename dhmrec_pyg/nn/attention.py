"""Positive-negative attention over embedding dimensions: equations (15)-(19) of the DHMRec paper."""
from __future__ import annotations

import math
from typing import List, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor, nn

ATTENTION_MODES = ("posneg", "standard")
#: How the d x d logits of (15) are scaled (see :class:`PosNegAttention`).
ATTENTION_SCALES = ("sqrt_n", "l2")
#: The outer layer norm of (18), before the sum (19): with or without its bias.
VIEW_NORMS = ("layernorm", "layernorm_nobias")


class PosNegAttention(nn.Module):
    r"""Positive-negative attention-aware fusion of modality views, equations (15)-(19).

    From the paper *DHMRec: Collaboration-Guided Multimodal Disentanglement
    and Hierarchical Fusion for Recommendation* (Zhan et al., AAAI). Given the
    graph-encoded views :math:`\hat{\mathbf{E}}_{\tilde{m}}` (users and items
    stacked, :math:`N = |\mathcal{U}| + |\mathcal{I}|` rows), the query of every
    view comes from their projected concatenation
    :math:`\hat{\mathbf{E}}_{fus} = [\hat{\mathbf{E}}_{\tilde{m}_1}, \dots]
    \mathbf{W}_3^\top`, and, in row-per-node form,

    .. math::
        \mathbf{Q}_{\tilde{m}} = \hat{\mathbf{E}}_{fus}\mathbf{W}_q^{\tilde{m}\top},\;
        \mathbf{K}_{\tilde{m}} = \hat{\mathbf{E}}_{\tilde{m}}\mathbf{W}_k^{\tilde{m}\top},\;
        \mathbf{V}_{\tilde{m}} = \hat{\mathbf{E}}_{\tilde{m}}\mathbf{W}_v^{\tilde{m}\top},\;
        \mathbf{A}_{\tilde{m}} = \operatorname{softmax}\Big(
        \frac{\mathbf{Q}_{\tilde{m}}^\top \mathbf{K}_{\tilde{m}}}{\sqrt{N}}\Big)
        \in \mathbb{R}^{d \times d}

        \mathbf{O}^{pos}_{\tilde{m}} = \mathbf{V}_{\tilde{m}} \mathbf{A}_{\tilde{m}}^\top
        \;\; (15), \qquad
        \mathbf{O}^{neg}_{\tilde{m}} = \mathbf{V}_{\tilde{m}}
        (\mathbf{1} - \mathbf{A}_{\tilde{m}})^\top \;\; (16)

        \mathbf{O}_{\tilde{m}} = \alpha_{pos}\mathbf{O}^{pos}_{\tilde{m}}
        + \alpha_{neg}\mathbf{O}^{neg}_{\tilde{m}} \;\; (17), \qquad
        \tilde{\mathbf{E}}_{\tilde{m}} = LN\big(LN(\mathbf{O}_{\tilde{m}}
        \mathbf{W}_o^{\tilde{m}\top}) + \hat{\mathbf{E}}_{\tilde{m}}\big) \;\; (18)

        \tilde{\mathbf{E}}_{mm} = \sum_{\tilde{m}} \tilde{\mathbf{E}}_{\tilde{m}} \;\; (19)

    Reading taken: the attention is over embedding dimensions. The
    paper's matrices are :math:`d \times N`, so its
    :math:`\mathbf{Q}\mathbf{K}^\top` is the :math:`d \times d` map
    :math:`\mathbf{A}` above, normalised over its last axis (the key
    dimension), and :math:`\mathbf{A}\mathbf{V}` is, with one row per node,
    :math:`\mathbf{V}\mathbf{A}^\top`: output dimension :math:`a` of a node is
    :math:`\sum_b A_{ab} V_{b}`. Cost and memory are linear in :math:`N`; no
    :math:`N \times N` tensor exists. :math:`\alpha_{pos}, \alpha_{neg}` are
    learnable scalars shared by the views (the paper writes them without a view
    index), initialised to 1 and 0: since the rows of :math:`\mathbf{A}` sum to
    one, :math:`\mathbf{O}^{neg} = (\mathbf{V}\mathbf{1})\mathbf{1}^\top -
    \mathbf{O}^{pos}`, and equal weights would make :math:`\mathbf{O}` the same
    number in every dimension; starting from standard attention avoids that.
    The linear maps have no bias, as written. Everything before the inner layer
    norm is linear in :math:`\hat{\mathbf{E}}_{\tilde{m}}`, so the layer
    computes :math:`\mathbf{Q}^\top\mathbf{K}` as
    :math:`\mathbf{W}_q(\hat{\mathbf{E}}_{fus}^\top\hat{\mathbf{E}}_{\tilde{m}})\mathbf{W}_k^\top`
    and (15)-(17) followed by :math:`\mathbf{W}_o` as one product
    :math:`\hat{\mathbf{E}}_{\tilde{m}}\mathbf{T}` with a :math:`d \times d`
    matrix :math:`\mathbf{T}`: the same values in two passes over the nodes per
    view instead of six. With ``mode="standard"`` (the
    paper's *w/o PNF* ablation) :math:`\mathbf{O} = \mathbf{O}^{pos}` and there
    are no :math:`\alpha` parameters.

    Readings of the paper's loose points (``docs/readings.md`` of the
    repository lists them, with the measurements that chose the defaults and the
    readings tried and dropped):

    - ``scale`` -- how the logits :math:`\mathbf{Q}^\top\mathbf{K}` are
      scaled. The paper writes "softmax(QK^T / sqrt(d))"-style attention
      computed "under each dimension"; ``"sqrt_n"`` is the literal reading
      above: un-centred products summed over the :math:`N` nodes, divided by
      :math:`\sqrt{N}`. Their standard deviation grows like :math:`\sqrt{N}`
      times the mean product, and on real data (16k nodes) the rows of
      :math:`\mathbf{A}` are one-hot from the first step on: the fusion
      is then a frozen low-rank projection. ``"l2"`` is the transposed
      (channel) attention of XCiT's cross-covariance attention and
      Restormer's MDTA, which compute the same :math:`d \times d`
      :math:`\mathbf{Q}^\top\mathbf{K}` over tokens: every column of
      :math:`\mathbf{Q}` and :math:`\mathbf{K}` is L2-normalised over the
      nodes, so the logits are cosines in :math:`[-1, 1]`, times a learnable
      temperature :math:`\tau_{\tilde{m}}` per view (initialised to 1).
    - ``rows`` (an argument of :meth:`forward`) -- the nodes whose products
      form :math:`\mathbf{Q}^\top\mathbf{K}`: all of them (default), or only
      a mini-batch's (the authors' appendix costs the attention at
      :math:`O(B d_k^2)`, :math:`B` the batch size); :math:`N` is then the
      number of rows given. The map is applied to every node either way.
    - ``view_norm`` -- the outer normalisation of (18), which sets the scale
      of each view before the sum (19) and so of :math:`\tilde{\mathbf{E}}_{mm}`
      in (22): ``"layernorm"`` (literal: learnable gain and bias) or
      ``"layernorm_nobias"`` (learnable gain, no bias: a bias is one vector added
      to every node, users and items alike, so its product with the items is a
      score term that is the same for every user and moves every user's ranking at once).

    Args:
        channels: embedding width :math:`d`.
        num_views: number of views :math:`|\{\tilde{m}\}|` (e.g. common + one
            per modality).
        mode: ``"posneg"`` (equations (15)-(17)) or ``"standard"``.
        alpha_pos: initial :math:`\alpha_{pos}`.
        alpha_neg: initial :math:`\alpha_{neg}`.
        norm_gain: initial gain (elementwise weight) of the layer norms of
            (18); 1 is PyTorch's default, :math:`1/\sqrt{d}` (the default
            here) starts every output row at unit norm instead of
            :math:`\sqrt{d}`.
        scale: ``"sqrt_n"`` or ``"l2"`` (above).
        view_norm: ``"layernorm"`` or ``"layernorm_nobias"`` (above).

    Shapes:
        - **input:** ``num_views`` tensors :math:`(N, d)`
        - **output:** :math:`(N, d)`; with ``return_attention=True`` also one
          :math:`(d, d)` map per view
    """

    def __init__(
        self,
        channels: int,
        num_views: int,
        mode: str = "posneg",
        alpha_pos: float = 1.0,
        alpha_neg: float = 0.0,
        norm_gain: Optional[float] = None,
        scale: str = "sqrt_n",
        view_norm: str = "layernorm",
    ) -> None:
        super().__init__()
        if mode not in ATTENTION_MODES:
            raise ValueError(f"mode must be one of {ATTENTION_MODES}, got {mode!r}")
        if scale not in ATTENTION_SCALES:
            raise ValueError(f"scale must be one of {ATTENTION_SCALES}, got {scale!r}")
        if view_norm not in VIEW_NORMS:
            raise ValueError(f"view_norm must be one of {VIEW_NORMS}, got {view_norm!r}")
        self.scale, self.view_norm = scale, view_norm
        if norm_gain is None:
            norm_gain = 1.0 / float(channels) ** 0.5 if channels >= 1 else 1.0
        if channels < 1 or num_views < 1:
            raise ValueError(f"channels and num_views must be positive, got {channels}, {num_views}")
        self.channels, self.num_views, self.mode = int(channels), int(num_views), mode
        self._alpha_init = (float(alpha_pos), float(alpha_neg))
        if norm_gain <= 0:
            raise ValueError(f"norm_gain must be positive, got {norm_gain}")
        self.norm_gain = float(norm_gain)
        d = self.channels

        def per_view(make):
            return nn.ModuleList(make() for _ in range(num_views))

        self.fuse = nn.Linear(num_views * d, d, bias=False)  # W_3
        self.query = per_view(lambda: nn.Linear(d, d, bias=False))
        self.key = per_view(lambda: nn.Linear(d, d, bias=False))
        self.value = per_view(lambda: nn.Linear(d, d, bias=False))
        self.out = per_view(lambda: nn.Linear(d, d, bias=False))  # W_o
        self.inner_norm = per_view(lambda: nn.LayerNorm(d))
        self.outer_norm = per_view(lambda: nn.LayerNorm(d, bias=view_norm == "layernorm"))
        if scale == "l2":
            self.temperature = nn.Parameter(torch.empty(num_views))
        if mode == "posneg":
            self.alpha_pos = nn.Parameter(torch.empty(()))
            self.alpha_neg = nn.Parameter(torch.empty(()))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Xavier-uniform projections, layer norms with gain ``norm_gain`` and zero bias, initial alphas."""
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
            elif isinstance(module, nn.LayerNorm) and module.elementwise_affine:
                module.reset_parameters()
                module.weight.data.fill_(self.norm_gain)
        with torch.no_grad():
            if self.scale == "l2":
                self.temperature.fill_(1.0)
        if self.mode == "posneg":
            with torch.no_grad():
                self.alpha_pos.fill_(self._alpha_init[0])
                self.alpha_neg.fill_(self._alpha_init[1])

    @staticmethod
    def attention_map(query: Tensor, key: Tensor, scale: str = "sqrt_n", temperature: float = 1.0) -> Tensor:
        r"""The :math:`d \times d` map of (15) from explicit ``[N, d]`` queries and keys,
        each row summing to one (``scale`` as in the class; a reference for the
        fused computation in :meth:`forward`)."""
        if scale == "l2":
            logits = nn.functional.normalize(query, dim=0).t() @ nn.functional.normalize(key, dim=0)
            return torch.softmax(logits * temperature, dim=-1)
        return torch.softmax(query.t() @ key / math.sqrt(query.size(0)), dim=-1)

    def _stacked(self, name: str, attr: str = "weight") -> Tensor:
        """The ``attr`` tensors of the per-view modules ``name``, stacked: ``[V, ...]`` (one operator)."""
        return torch.stack([getattr(m, attr) for m in getattr(self, name)])

    def _logits(self, fused: Tensor, wide: Tensor, by_view: Tensor, w_q: Tensor, w_k: Tensor) -> Tensor:
        r"""The logits of every view's map, ``[V, d, d]``, from the ``[n, d]`` fused rows and the
        view rows that form them, side by side (``wide``, ``[n, V * d]``) and stacked
        (``by_view``, ``[V, n, d]``).

        :math:`\mathbf{Q}^\top\mathbf{K} = \mathbf{W}_q(\hat{\mathbf{E}}_{fus}^\top
        \hat{\mathbf{E}}_{\tilde{m}})\mathbf{W}_k^\top`: one pass over the nodes for all views
        (:math:`\hat{\mathbf{E}}_{fus}^\top [\hat{\mathbf{E}}_{\tilde{m}_1}, \dots]` is one
        product), no :math:`n \times d` query or key; the column norms of
        :math:`\mathbf{Q}, \mathbf{K}` come from :math:`d \times d` Gram matrices too.
        """
        num_views, n, d = by_view.shape
        cross = (fused.t() @ wide).view(d, num_views, d).transpose(0, 1)
        logits = torch.bmm(torch.bmm(w_q, cross), w_k.transpose(1, 2))
        if self.scale != "l2":
            return logits / math.sqrt(n)
        # ||Q[:, a]||^2 = (W_q E_fus^T E_fus W_q^T)_aa, likewise for K (one d x d Gram per view).
        q_norm = ((w_q @ (fused.t() @ fused)) * w_q).sum(-1).clamp_min(1e-24).sqrt()
        k_norm = ((torch.bmm(w_k, torch.bmm(by_view.transpose(1, 2), by_view))) * w_k).sum(-1)
        k_norm = k_norm.clamp_min(1e-24).sqrt()
        scale = self.temperature.view(-1, 1, 1) / (q_norm.unsqueeze(2) * k_norm.unsqueeze(1))
        return logits * scale

    def forward(
        self, views: Union[Sequence[Tensor], Tensor], return_attention: bool = False, rows: Optional[Tensor] = None
    ) -> Union[Tensor, Tuple[Tensor, List[Tensor]]]:
        """Fuse the views (equation (19)); optionally return each view's map.

        All views go through each step together (batched products over a ``[V, ...]``
        stack of the per-view weights), so the number of operators does not grow with
        the number of views.

        Args:
            views: ``num_views`` tensors ``[N, d]``, or one ``[N, num_views, d]`` tensor
                holding them side by side (``torch.stack(views, 1)``; a ``[N, V * d]``
                matrix of concatenated views viewed as ``[N, V, d]``), which saves a copy.
            return_attention: also return the ``[d, d]`` map of every view.
            rows: indices of the nodes whose products form the maps (e.g. a
                mini-batch's users and items); ``None``: all ``N``.
        """
        if isinstance(views, Tensor):
            if views.dim() != 3 or views.size(1) != self.num_views or views.size(2) != self.channels:
                raise ValueError(
                    f"expected a [N, {self.num_views}, {self.channels}] tensor of views, got {tuple(views.shape)}"
                )
            wide = views.reshape(views.size(0), -1)
            by_view = views.transpose(0, 1).contiguous()  # [V, N, d]
        else:
            if len(views) != self.num_views:
                raise ValueError(f"expected {self.num_views} views, got {len(views)}")
            wide, by_view = torch.cat(list(views), dim=-1), torch.stack(list(views))
        fused = self.fuse(wide)
        if rows is not None:
            fused_rows, wide_rows, by_view_rows = fused[rows], wide[rows], by_view[:, rows]
        else:
            fused_rows, wide_rows, by_view_rows = fused, wide, by_view
        w_q, w_k, w_v, w_o = (self._stacked(name) for name in ("query", "key", "value", "out"))
        attn = torch.softmax(self._logits(fused_rows, wide_rows, by_view_rows, w_q, w_k), dim=-1)  # [V, d, d]
        # O W_o^T = E_m T with a d x d matrix T, so no N x d intermediate exists:
        # (15) V A^T W_o^T = E_m W_v^T A^T W_o^T, and by (16) V (1 - A)^T W_o^T =
        # (E_m W_v^T 1)(W_o 1)^T - V A^T W_o^T.
        mix = torch.bmm(torch.bmm(w_v.transpose(1, 2), attn.transpose(1, 2)), w_o.transpose(1, 2))
        if self.mode == "posneg":
            mix = (self.alpha_pos - self.alpha_neg) * mix + self.alpha_neg * (
                w_v.sum(1).unsqueeze(2) * w_o.sum(2).unsqueeze(1)
            )  # (17)
        total = self._residual_sum(by_view, torch.bmm(by_view, mix))
        return (total, list(attn.unbind(0))) if return_attention else total

    def _residual_sum(self, by_view: Tensor, out: Tensor) -> Tensor:
        """(18) for every view from its ``[V, N, d]`` rows and attention outputs ``O W_o^T``,
        summed (19). Each view's layer norms are fused kernels, forward and backward."""
        total: Optional[Tensor] = None
        for v, (view, o) in enumerate(zip(by_view.unbind(0), out.unbind(0))):
            e = self.outer_norm[v](self.inner_norm[v](o) + view)
            total = e if total is None else total + e
        assert total is not None
        return total

    def __repr__(self) -> str:
        extra = "" if (self.scale, self.view_norm) == ("sqrt_n", "layernorm") else (
            f", scale={self.scale!r}, view_norm={self.view_norm!r}"
        )
        return f"{self.__class__.__name__}({self.channels}, num_views={self.num_views}, mode={self.mode!r}{extra})"
