"""Positive-negative attention over embedding dimensions: equations (15)-(19) of the DHMRec paper."""
from __future__ import annotations

import math
from typing import List, Sequence, Tuple, Union

import torch
from torch import Tensor, nn

ATTENTION_MODES = ("posneg", "standard")


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

    Reading taken (SPEC.md): the attention is over embedding dimensions. The
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

    Args:
        channels: embedding width :math:`d`.
        num_views: number of views :math:`|\{\tilde{m}\}|` (e.g. common + one
            per modality).
        mode: ``"posneg"`` (equations (15)-(17)) or ``"standard"``.
        alpha_pos: initial :math:`\alpha_{pos}`.
        alpha_neg: initial :math:`\alpha_{neg}`.
        norm_gain: initial gain (elementwise weight) of the layer norms of
            (18); 1 is PyTorch's default, :math:`1/\sqrt{d}` starts every
            output row at unit norm instead of :math:`\sqrt{d}`.

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
        norm_gain: float = 1.0,
    ) -> None:
        super().__init__()
        if mode not in ATTENTION_MODES:
            raise ValueError(f"mode must be one of {ATTENTION_MODES}, got {mode!r}")
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
        self.outer_norm = per_view(lambda: nn.LayerNorm(d))
        if mode == "posneg":
            self.alpha_pos = nn.Parameter(torch.empty(()))
            self.alpha_neg = nn.Parameter(torch.empty(()))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Xavier-uniform projections, layer norms with gain ``norm_gain`` and zero bias, initial alphas."""
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
            elif isinstance(module, nn.LayerNorm):
                module.reset_parameters()
                module.weight.data.fill_(self.norm_gain)
        if self.mode == "posneg":
            with torch.no_grad():
                self.alpha_pos.fill_(self._alpha_init[0])
                self.alpha_neg.fill_(self._alpha_init[1])

    @staticmethod
    def attention_map(query: Tensor, key: Tensor) -> Tensor:
        r""":math:`\operatorname{softmax}(\mathbf{Q}^\top\mathbf{K}/\sqrt{N})`, a
        :math:`d \times d` map, each row summing to one."""
        return torch.softmax(query.t() @ key / math.sqrt(query.size(0)), dim=-1)

    def forward(
        self, views: Sequence[Tensor], return_attention: bool = False
    ) -> Union[Tensor, Tuple[Tensor, List[Tensor]]]:
        """Fuse the views (equation (19)); optionally return each view's map."""
        if len(views) != self.num_views:
            raise ValueError(f"expected {self.num_views} views, got {len(views)}")
        fused = self.fuse(torch.cat(list(views), dim=-1))
        scale = math.sqrt(fused.size(0))
        total, maps = None, []
        for v, view in enumerate(views):
            w_q, w_k = self.query[v].weight, self.key[v].weight
            w_v, w_o = self.value[v].weight, self.out[v].weight
            # Q^T K = W_q (E_fus^T E_m) W_k^T: one pass over the N nodes instead of two.
            attn = torch.softmax(w_q @ (fused.t() @ view) @ w_k.t() / scale, dim=-1)
            # O W_o^T = E_m T with a d x d matrix T, so no N x d intermediate exists:
            # (15) V A^T W_o^T = E_m W_v^T A^T W_o^T, and by (16) V (1 - A)^T W_o^T =
            # (E_m W_v^T 1)(W_o 1)^T - V A^T W_o^T.
            mix = w_v.t() @ attn.t() @ w_o.t()
            if self.mode == "posneg":
                mix = (self.alpha_pos - self.alpha_neg) * mix + self.alpha_neg * torch.outer(
                    w_v.sum(0), w_o.sum(1)
                )  # (17)
            e = self.outer_norm[v](self.inner_norm[v](view @ mix) + view)  # (18)
            total = e if total is None else total + e
            maps.append(attn)
        return (total, maps) if return_attention else total

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}({self.channels}, num_views={self.num_views}, mode={self.mode!r})"
