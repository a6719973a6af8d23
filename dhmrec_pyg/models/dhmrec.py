"""DHMRec (Zhan et al., AAAI): multimodal disentanglement and hierarchical fusion for recommendation."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, NamedTuple, Optional, Tuple

import torch
from torch import Tensor, nn
from torch_geometric.data import HeteroData

from dhmrec_pyg.models.base import (
    EDGE,
    ItemGraphConfig,
    Recommender,
    accepts_aliases,
    bpr_loss_from_embeddings,
    item_modalities,
    l2_reg,
)
from dhmrec_pyg.nn.alignment import KL_GRADS, KL_SCORES, interaction_kl
from dhmrec_pyg.nn.attention import ATTENTION_AXES, ATTENTION_MODES, ATTENTION_SCALES, VIEW_NORMS, PosNegAttention
from dhmrec_pyg.nn.disentangle import DisentangledCodes, ModalityDisentangler, StackedCodes
from dhmrec_pyg.nn.graph import normalized_adjacency, to_sparse_adjacency
from dhmrec_pyg.nn.item_graph import (
    COMMON_VIEW,
    ItemGraphPropagation,
    UserAggregation,
    build_item_graphs,
    interleave_item_graphs,
    user_item_adjacency,
)
from dhmrec_pyg.nn.propagation import LightGCNPropagation
from dhmrec_pyg.nn.sparse import SparseAdjacency

FUSIONS = ("attention", "mean")
ATTENTION_SCOPES = ("all", "batch")
REG_TARGETS = ("final", "ego")

#: Named combinations of the readings the paper leaves open (``docs/readings.md``).
#: ``"paper"`` is the literal reading this library first shipped (the same model and losses, to float
#: tolerance since the views are computed stacked);
#: ``"default"`` is the combination selected on TikTok's validation split.
#: A field set explicitly wins over its preset.
PRESETS: Dict[str, Dict[str, Any]] = {
    "paper": dict(
        reg_weight=1e-2, ln_gain="unit", gamma_kl=1.0, kl_align=True, attention_scale="sqrt_n",
        attention_scope="all", view_norm="layernorm", reg_target="final", kl_grad="both", kl_scores="dot",
        kl_temperature=1.0, gate_detach=False, prune_views=False, view_dropout=0.0, attention_axis="dims",
        mm_center=False, alpha_mm=0.8,
    ),
    "default": dict(
        reg_weight=1e-4, ln_gain="0.015", gamma_kl=0.01, kl_align=True, attention_scale="l2",
        attention_scope="batch", view_norm="layernorm_nobias", reg_target="final", kl_grad="both",
        kl_scores="dot", kl_temperature=1.0, gate_detach=False, prune_views=False, view_dropout=0.0,
        attention_axis="dims", mm_center=False, alpha_mm=1.2,
    ),
}


@accepts_aliases
@dataclass
class DHMRecConfig(ItemGraphConfig):
    r"""DHMRec hyper-parameters: the paper's, and the readings it leaves open.

    Options shared with FREEDOM (layers, KNN graphs, cache, layout) are those of
    :class:`~dhmrec_pyg.models.base.ItemGraphConfig`. The options marked
    *(preset)* default to ``None`` / ``""``, which means "the value of
    ``preset``" (:data:`PRESETS`); the readings, their sentences of the paper
    and the measurements behind the default are in ``docs/readings.md``.

    Attributes:
        preset: ``"default"`` (selected on validation) or ``"paper"`` (the
            literal reading, this library's first behaviour).
        embedding_dim: :math:`d_k` (64).
        reg_weight: :math:`\gamma_{reg}` of equation (25) (see :attr:`gamma_reg`) *(preset)*.
        beta: weight of the visual-like modality in the common item-item graph (0.1).
        keep_ratio: share of edges the ID view keeps each epoch (degree-sensitive
            pruning; FREEDOM's ``dropout`` 0.8 is 0.2 here).
        alpha_mm: :math:`\alpha_{mm}` of equation (22) *(preset: 0.8, the paper's Baby value, in
            ``paper``; 1.2, in the paper's grid, selected on TikTok's validation split, in ``default``)*.
        gamma_dis: weight of JSD + orthogonality losses (0.1).
        gamma_kl: weight of the KL alignment *(preset)*.
        disentangle: ``False`` is the *w/o DIS* ablation.
        fusion: ``"attention"`` or ``"mean"`` (the *w/o AF* ablation).
        attention: ``"posneg"`` or ``"standard"`` (the *w/o PNF* ablation).
        kl_align: ``False`` is the *w/o KL* ablation *(preset)*.
        item_graphs: ``False`` is the *w/o II* ablation.
        ln_gain: initial gain of the layer norms of equation (18) *(preset)*:
            ``"unit"`` is :math:`1/\sqrt{d_k}`, so each view's rows start at
            unit norm; ``"one"`` is PyTorch's default (rows at norm
            :math:`\sqrt{d_k}`, far above the Xavier-initialised ID embeddings,
            ~0.1); a number sets the gain directly (0.015: rows at ~0.12, the
            scale of the ID embeddings).
        attention_scale: ``"sqrt_n"``, ``"centered"`` or ``"l2"``: how the
            :math:`d \times d` logits of (15) are scaled
            (:class:`~dhmrec_pyg.nn.PosNegAttention`) *(preset)*.
        attention_scope: ``"all"`` nodes or the training ``"batch"``'s users and
            items form the attention map *(preset)*.
        attention_axis: the attention of (15)-(16) runs over the embedding
            ``"dims"`` (a :math:`d \times d` map) or, node by node, over the
            ``"views"`` (:class:`~dhmrec_pyg.nn.PosNegAttention`) *(preset)*.
        mm_center: before (22), subtract the users' mean from the users' fused
            multimodal rows and the items' mean from the items' (over all users,
            all items), so the branch carries no user-independent item term *(preset)*.
        view_norm: ``"layernorm"``, ``"layernorm_plain"``, ``"layernorm_nobias"``
            or ``"l2"``: the normalisation of each view before (19) *(preset)*.
        reg_target: where the L2 of (25) applies: ``"final"`` embeddings of the
            batch (22) or the ``"ego"`` parameters (the ID embeddings of the
            batch's users and items, as the reference toolbox does) *(preset)*.
        kl_grad: which side of the KL (21) learns: ``"both"``, ``"mm"`` (ID
            side detached) or ``"id"`` *(preset)*.
        kl_scores: the softmaxes of (20) over ``"dot"`` products or ``"cosine"``
            similarities *(preset)*.
        kl_temperature: temperature of both softmaxes of (20) *(preset)*.
        gate_detach: the gate of (3) reads a detached ID table *(preset)*.
        prune_views: the modality views of (7)-(8) use the same degree-pruned
            graph as the ID view in training ("sharing identical structure") *(preset)*.
        view_dropout: dropout on each graph-encoded view before fusion *(preset)*.
    """

    preset: str = "default"
    embedding_dim: int = 64
    reg_weight: Optional[float] = None  # type: ignore[assignment]
    beta: float = 0.1
    keep_ratio: float = 0.2
    alpha_mm: Optional[float] = None  # type: ignore[assignment]
    gamma_dis: float = 0.1
    gamma_kl: Optional[float] = None
    disentangle: bool = True
    fusion: str = "attention"
    attention: str = "posneg"
    kl_align: Optional[bool] = None
    item_graphs: bool = True
    ln_gain: str = ""
    attention_scale: str = ""
    attention_scope: str = ""
    view_norm: str = ""
    reg_target: str = ""
    kl_grad: str = ""
    kl_scores: str = ""
    kl_temperature: Optional[float] = None
    gate_detach: Optional[bool] = None
    prune_views: Optional[bool] = None
    view_dropout: Optional[float] = None
    attention_axis: str = ""
    mm_center: Optional[bool] = None

    def __post_init__(self) -> None:
        if self.preset not in PRESETS:
            raise ValueError(f"preset must be one of {tuple(PRESETS)}, got {self.preset!r}")
        for name, value in PRESETS[self.preset].items():
            if getattr(self, name) in (None, ""):
                setattr(self, name, value)
        choices = {
            "fusion": FUSIONS, "attention": ATTENTION_MODES, "attention_scale": ATTENTION_SCALES,
            "attention_scope": ATTENTION_SCOPES, "view_norm": VIEW_NORMS, "reg_target": REG_TARGETS,
            "kl_grad": KL_GRADS, "kl_scores": KL_SCORES,
            "attention_axis": ATTENTION_AXES,
        }
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {getattr(self, name)!r}")
        if not 0.0 < self.keep_ratio <= 1.0:
            raise ValueError(f"keep_ratio must be in (0, 1], got {self.keep_ratio}")
        self.layer_norm_gain()  # validates ln_gain
        if not 0.0 <= self.beta <= 1.0:
            raise ValueError(f"beta must be in [0, 1], got {self.beta}")
        if not 0.0 <= self.view_dropout < 1.0:  # type: ignore[operator]
            raise ValueError(f"view_dropout must be in [0, 1), got {self.view_dropout}")
        if not self.kl_temperature > 0:  # type: ignore[operator]
            raise ValueError(f"kl_temperature must be positive, got {self.kl_temperature}")
        self.check_at_least(1, ("embedding_dim", "knn_k"))
        self.check_at_least(0, ("num_ui_layers", "num_ii_layers"))

    def layer_norm_gain(self) -> float:
        """The numeric initial gain ``ln_gain`` stands for."""
        if self.ln_gain == "unit":
            return 1.0 / self.embedding_dim ** 0.5
        if self.ln_gain == "one":
            return 1.0
        try:
            gain = float(self.ln_gain)
        except ValueError:
            raise ValueError(f"ln_gain must be 'unit', 'one' or a positive number, got {self.ln_gain!r}") from None
        if not gain > 0:
            raise ValueError(f"ln_gain must be positive, got {self.ln_gain!r}")
        return gain

    @property
    def gamma_reg(self) -> float:
        r""":math:`\gamma_{reg}` of equation (25), stored as ``reg_weight``."""
        return float(self.reg_weight)  # type: ignore[arg-type]


def item_term_share(scores: Tensor) -> float:
    """Share of the within-user variance of ``[users, items]`` scores that one
    user-independent term per item explains (0: none; 1: every user ranks alike).

    Each user's scores are centred; the item term is the mean centred score of
    each item over the users; the share is one minus the residual's sum of
    squares over the centred scores' sum of squares.
    """
    centred = scores - scores.mean(1, keepdim=True)
    residual = centred - centred.mean(0, keepdim=True)
    return float(1.0 - residual.pow(2).sum() / centred.pow(2).sum().clamp_min(1e-30))


class DHMRecOutput(NamedTuple):
    """Everything one forward pass of :class:`DHMRec` computes.

    Attributes:
        user: ``[U, d]`` final user embeddings (equation (22)).
        item: ``[I, d]`` final item embeddings.
        user_id, item_id: the ID view (LightGCN, equations (7)-(8)).
        user_mm, item_mm: the fused multimodal embeddings :math:`\\tilde{\\mathbf{E}}_{mm}`.
        views: per view (``common`` then the modalities), the ``[U + I, d]``
            graph-encoded embeddings :math:`\\hat{\\mathbf{E}}_{\\tilde{m}}`.
        codes: the disentangler's output (codes and losses).
    """

    user: Tensor
    item: Tensor
    user_id: Tensor
    item_id: Tensor
    user_mm: Tensor
    item_mm: Tensor
    views: List[Tensor]
    codes: DisentangledCodes


class DHMRec(Recommender):
    r"""DHMRec: collaboration-guided multimodal disentanglement and hierarchical fusion.

    Zhan et al., *DHMRec: Collaboration-Guided Multimodal Disentanglement and
    Hierarchical Fusion for Recommendation*, AAAI. One forward pass:

    1. :class:`~dhmrec_pyg.nn.disentangle.ModalityDisentangler` turns every
       modality's features into a gated specific code and a logit-pooled common
       code (equations (1)-(6)).
    2. User-item views (equations (7)-(8), :class:`~dhmrec_pyg.nn.LightGCNPropagation`):
       the ID view propagates the ID embeddings over the degree-pruned graph
       (:func:`~dhmrec_pyg.nn.pruning.degree_sensitive_prune`, resampled in
       :meth:`on_epoch_start`; the full graph in ``eval()`` mode); the common
       view and one view per modality propagate the codes over the full training
       graph, users starting from :class:`~dhmrec_pyg.nn.item_graph.UserAggregation`
       of their items' codes.
    3. Item-item views (equations (9)-(14)): each modality view's items are
       propagated over that modality's KNN graph, the common view's over the
       :math:`\beta`-mixed graph, keeping the last layer; users are re-aggregated
       from their items (14).
    4. Fusion: :class:`~dhmrec_pyg.nn.attention.PosNegAttention` (15)-(19),
       then the final embeddings

    .. math::
        \dot{\mathbf{E}} = \mathbf{E}_{id} + \alpha_{mm}\tilde{\mathbf{E}}_{mm} \;\; (22),
        \qquad \hat{y}_{ui} = \dot{\mathbf{e}}_u^\top \dot{\mathbf{e}}_i \;\; (23)

    and the objective, per mini-batch :math:`B` of BPR triplets,

    .. math::
        \mathcal{L} = \mathcal{L}_{BPR} + \gamma_{dis}\big(\mathcal{L}_{JSD}
        + \textstyle\sum_m \mathcal{L}_{orth_m}\big) + \gamma_{kl}\mathcal{L}_{KL}
        + \gamma_{reg}\frac{1}{|B|}\big\|\dot{\mathbf{E}}_B\big\|_2^2 \;\; (25)

    with :func:`~dhmrec_pyg.models.base.bpr_loss` (24, via
    :func:`~dhmrec_pyg.models.base.bpr_loss_from_embeddings`) and
    :func:`~dhmrec_pyg.nn.alignment.interaction_kl` (20)-(21) over the batch's
    distinct users. Readings of (25) (``reg_target``): :math:`\|\theta\|^2` is the
    squared L2 norm of the batch's final user, positive and negative item
    embeddings divided by the batch size (``"final"``, the literal reading), or
    of their ID (ego) embeddings (``"ego"``). The disentanglement losses are taken
    over all items (the codes of all items are computed anyway).

    All modalities of the data (item attributes ``x_<m>``) are used; any number
    :math:`\geq 1` works. Items without training interactions still get
    multimodal embeddings from their features (through their codes and the
    item-item graphs), so they can be recommended.

    Ablations (the paper's Table 2): ``disentangle=False`` (w/o DIS),
    ``fusion="mean"`` (w/o AF: the views are averaged), ``attention="standard"``
    (w/o PNF), ``kl_align=False`` (w/o KL), ``item_graphs=False`` (w/o II: the
    user-item views are used directly).

    Args:
        data: the training graph with item features.
        config: a :class:`DHMRecConfig`.

    Raises:
        ValueError: if ``data`` has no item features.
    """

    config_class = DHMRecConfig
    #: With ``attention_scope="batch"``, :meth:`loss` fuses only the batch's users (same values,
    #: less work; eager mode only); ``False`` fuses every user, as :meth:`forward` does.
    fuse_batch_users_only: bool = True

    def __init__(self, data: HeteroData, config: DHMRecConfig) -> None:
        super().__init__(data, config)
        self.modalities = item_modalities(data, "dhmrec")
        self.view_names = [COMMON_VIEW] + self.modalities
        d = config.embedding_dim
        num_u, num_i = self.num_users, self.num_items
        for m in self.modalities:
            x = data["item"][f"x_{m}"]
            self.register_buffer(f"x_{m}", x.float(), persistent=False)

        self.user_emb = nn.Embedding(num_u, d)
        self.item_emb = nn.Embedding(num_i, d)
        self.disentangler = ModalityDisentangler(
            [int(data["item"][f"x_{m}"].size(1)) for m in self.modalities], d, config.disentangle,
            detach_gate=bool(config.gate_detach),
        )
        self.ui_propagation = LightGCNPropagation(config.num_ui_layers)
        self.user_aggregation = UserAggregation()
        self.ii_propagation = ItemGraphPropagation(config.num_ii_layers)
        self.fusion = (
            PosNegAttention(
                d, len(self.view_names), mode=config.attention, norm_gain=config.layer_norm_gain(),
                scale=config.attention_scale, view_norm=config.view_norm, axis=config.attention_axis,
            )
            if config.fusion == "attention"
            else None
        )

        edge_index = data[EDGE].edge_index
        self._train_edges = edge_index.cpu()
        layout = config.sparse_layout
        self.register_adjacency("adj", normalized_adjacency(edge_index, num_u, num_i, layout=layout), symmetric=True)
        self._register_user_item_blocks(edge_index)
        if config.keep_ratio < 1.0:
            self._resample_pruned(torch.Generator().manual_seed(0))
        if config.item_graphs:
            graphs = build_item_graphs(
                data, k=config.knn_k, beta=config.beta, visual_modality=config.visual_modality or None,
                include_self=config.knn_self_loops, exact_max_items=config.knn_exact_max_items,
                cache_dir=config.knn_cache_path(data),
            )
            stores = [graphs["item", f"similar_{view}", "item"] for view in self.view_names]
            # All views' graphs as one [I * V, I * V] matrix (forward): one product per hop.
            # A view's own graph is a slice of it (item_graph), so it is not kept twice.
            edge_index, edge_weight = interleave_item_graphs(
                [(store.edge_index, store.edge_weight) for store in stores], num_i
            )
            self.ii_adj_views = SparseAdjacency(
                to_sparse_adjacency(edge_index, edge_weight, num_i * len(stores), layout=layout)
            )
        self.reset_parameters()

    def item_graph(self, view: str) -> Tensor:
        r"""The normalised item-item graph :math:`\tilde{I}^{\tilde{m}}` of one view, (11)-(12), as a
        ``[I, I]`` sparse COO matrix (row ``i``: the weights of the items ``i`` aggregates in (13)).

        It is read out of the interleaved matrix the forward pass multiplies, where item ``i`` of
        view ``v`` is node ``i * V + v``.

        Args:
            view: ``"common"`` or a modality's name (:attr:`view_names`).
        """
        if not self.config.item_graphs:
            raise ValueError("this model has no item-item graphs (item_graphs=False)")
        if view not in self.view_names:
            raise ValueError(f"view must be one of {self.view_names}, got {view!r}")
        v, num_views, num_i = self.view_names.index(view), len(self.view_names), self.num_items
        adj = self.ii_adj_views.to_torch_sparse()
        adj = adj.to_sparse_coo() if adj.layout != torch.sparse_coo else adj
        index, value = adj.indices(), adj.values()
        keep = index[0] % num_views == v
        return torch.sparse_coo_tensor(
            index[:, keep] // num_views, value[keep], (num_i, num_i), check_invariants=False
        ).coalesce()

    def reset_parameters(self) -> None:
        """Xavier-initialise the embeddings; reset every sub-module."""
        nn.init.xavier_uniform_(self.user_emb.weight)
        nn.init.xavier_uniform_(self.item_emb.weight)
        self.disentangler.reset_parameters()
        if self.fusion is not None:
            self.fusion.reset_parameters()

    def _register_user_item_blocks(self, edge_index: Tensor, suffix: str = "") -> None:
        """Register the normalised user-item block ``adj_ui<suffix>`` of ``edge_index`` (14) and its
        transpose ``adj_iu<suffix>``, built once: it serves the backward pass of every user aggregation."""
        layout = self.config.sparse_layout
        adj_ui = user_item_adjacency(edge_index, self.num_users, self.num_items, layout=layout)
        adj_iu = adj_ui.t()
        adj_iu = adj_iu.to_sparse_csr() if layout == "csr" else adj_iu.coalesce()
        device = self.user_emb.weight.device
        self.register_adjacency(f"adj_ui{suffix}", adj_ui.to(device))
        self.register_adjacency(f"adj_iu{suffix}", adj_iu.to(device))
        if not suffix:  # (14) for a batch's users reads the rows of the unpruned block
            for name, part in zip(("start", "count", "col", "value"), UserAggregation.csr_parts(adj_ui.to(device))):
                self.register_buffer(f"_ui_{name}", part, persistent=False)
            nodes = torch.arange(self.num_users, self.num_users + self.num_items, device=device)
            self.register_buffer("_item_nodes", nodes, persistent=False)

    def _resample_pruned(self, generator: torch.Generator) -> None:
        cfg = self.config
        kept = self.resample_pruned_graph(self._train_edges, cfg.keep_ratio, generator, cfg.sparse_layout)
        if kept is not None and cfg.prune_views:
            self._register_user_item_blocks(kept, suffix="_pruned")

    def on_epoch_start(self, epoch: int, generator: torch.Generator) -> None:
        """Resample the degree-pruned graph of the ID view (and, with ``prune_views``, of the views)."""
        self._resample_pruned(generator)

    def forward(self, rows: Optional[Tensor] = None) -> DHMRecOutput:
        """All embeddings of one pass (training mode: ID view on the pruned graph).

        Args:
            rows: with ``attention_scope="batch"``, the node indices (users, then
                ``num_users + item``) whose products form the attention maps;
                ``None``: all nodes.
        """
        num_u = self.num_users
        final, e_id, e_mm, stacked, codes = self._propagate(rows, None)
        return DHMRecOutput(
            user=final[:num_u], item=final[num_u:], user_id=e_id[:num_u], item_id=e_id[num_u:],
            user_mm=e_mm[:num_u], item_mm=e_mm[num_u:], views=list(stacked.unbind(1)), codes=codes.unstack(),
        )

    def _propagate(
        self, rows: Optional[Tensor], user_ids: Optional[Tensor]
    ) -> Tuple[Tensor, Tensor, Tensor, Tensor, StackedCodes]:
        """The pass of :meth:`forward`, users and items together: the ``[U + I, d]`` final (22),
        ID and fused multimodal embeddings, the ``[U + I, V, d]`` views side by side, and the
        disentangler's stacked codes.

        With ``user_ids`` (sorted, distinct), only those users' rows are fused and returned: the
        rows are ``user_ids`` then every item (``[len(user_ids) + I, ...]``), and ``rows``
        indexes these. Every row is computed as in the full pass (the graph products still run
        over all nodes); the steps after (14) that treat each node on its own (the fusion
        (15)-(19), whose maps come from ``rows`` alone, and (22)) skip the other users.
        """
        cfg = self.config
        num_u, num_i = self.num_users, self.num_items
        num_views, d = len(self.view_names), cfg.embedding_dim
        features = [getattr(self, f"x_{m}") for m in self.modalities]
        codes = self.disentangler.stacked(features, self.item_emb.weight)

        adj_id = self.adj_pruned if self.training and cfg.keep_ratio < 1.0 else self.adj
        ego = torch.cat([self.user_emb.weight, self.item_emb.weight])
        e_id = self.ui_propagation(ego, adj_id)

        pruned_views = self.training and cfg.prune_views and cfg.keep_ratio < 1.0
        adj_ui = self.adj_ui_pruned if pruned_views else self.adj_ui
        adj_iu = self.adj_iu_pruned if pruned_views else self.adj_iu
        # All views side by side, [I, V * d] (view v in columns v*d:(v+1)*d, common first): the
        # views share the user-item graph, so each hop is one sparse product for all of them.
        items = torch.cat([codes.common.unsqueeze(1), codes.specific.transpose(0, 1)], dim=1)
        # (7)-(8) from users aggregated from their items (equal to propagating
        # cat([user_aggregation(item_code), item_code]) over self.adj, in half the products).
        users, items = self.ui_propagation.from_items(
            items.view(num_i, num_views * d), adj_ui, adj_iu, with_users=not cfg.item_graphs
        )
        if cfg.item_graphs:
            # (13) per view over its own graph: read as [I * V, d] rows (item i, view v at row
            # i * V + v), the views' graphs form one block-diagonal matrix, one product per hop.
            items = self.ii_propagation(items.view(num_i * num_views, d), self.ii_adj_views)
            items = items.view(num_i, num_views * d)
            if user_ids is None:
                users = self.user_aggregation(items, self.adj_ui, adj_t=self.adj_iu)  # (14)
            else:
                rows_of_ui = (self._ui_start, self._ui_count, self._ui_col, self._ui_value)
                users = self.user_aggregation.rows(items, rows_of_ui, user_ids)  # (14), those users
        elif user_ids is not None:
            users = users[user_ids]  # type: ignore[index]
        if user_ids is not None:
            e_id = e_id[torch.cat([user_ids, self._item_nodes])]
        wide = torch.cat([users, items])  # type: ignore[list-item]
        if cfg.view_dropout > 0:  # type: ignore[operator]
            wide = nn.functional.dropout(wide, cfg.view_dropout, self.training)  # type: ignore[arg-type]
        stacked = wide.view(-1, num_views, d)

        if self.fusion is not None:
            e_mm = self.fusion(stacked, rows=rows if cfg.attention_scope == "batch" else None)
        else:
            e_mm = stacked.mean(1)
        if cfg.mm_center:  # the users' mean needs every user: loss() never passes user_ids here
            users_mm, items_mm = e_mm[:num_u], e_mm[num_u:]
            e_mm = torch.cat([users_mm - users_mm.mean(0), items_mm - items_mm.mean(0)])
        final = torch.add(e_id, e_mm, alpha=cfg.alpha_mm)  # (22)
        return final, e_id, e_mm, stacked, codes

    def loss(self, users: Tensor, pos_items: Tensor, neg_items: Tensor) -> Dict[str, Tensor]:
        """The objective of equation (25) and its terms.

        Keys: ``loss`` (total), ``bpr``, ``reg``, and, when their component is
        on, ``jsd`` and ``orth`` (disentanglement) and ``kl`` (alignment).
        """
        cfg = self.config
        batch = users.numel()
        batch_users, user_rows = torch.unique(users, return_inverse=True)
        batch_scope = cfg.attention_scope == "batch"
        batch_items = torch.unique(torch.cat([pos_items, neg_items])) if batch_scope else None
        restrict = batch_scope and not cfg.mm_center and not cfg.view_dropout
        # Compiled, the full pass runs: the batch's distinct users would give every step new shapes.
        if restrict and self.fuse_batch_users_only and not torch.compiler.is_compiling():
            # Only the batch's users are fused (the maps are formed from the batch anyway): the
            # pass returns their rows, then all items'; the values are those of the full pass.
            num_rows = batch_users.numel()
            rows: Optional[Tensor] = torch.cat([torch.arange(num_rows, device=users.device), num_rows + batch_items])
            final, e_id, e_mm, _, codes = self._propagate(rows, batch_users)
            first_item, kl_users = num_rows, slice(0, num_rows)
        else:
            rows = torch.cat([batch_users, self.num_users + batch_items]) if batch_scope else None
            final, e_id, e_mm, _, codes = self._propagate(rows, None)
            first_item, user_rows, kl_users = self.num_users, users, batch_users  # type: ignore[assignment]
        # The batch's users, positive and negative items in one gather, [B, 3, d].
        index = torch.stack([user_rows, pos_items + first_item, neg_items + first_item], dim=1).view(-1)
        triplets = final[index].view(batch, 3, -1)
        u, p, n = triplets.unbind(1)
        bpr = bpr_loss_from_embeddings(u, p, n)
        if cfg.reg_target == "ego":
            reg = l2_reg(self.user_emb.weight[users], self.item_emb.weight[pos_items], self.item_emb.weight[neg_items])
        else:
            reg = l2_reg(triplets.view(batch, -1))  # = l2_reg(u, p, n): one row of [u, p, n] per triplet
        terms: Dict[str, Tensor] = {"bpr": bpr, "reg": reg}
        total = bpr + cfg.gamma_reg * reg
        if cfg.disentangle:
            orth = codes.orth.sum()
            terms.update(jsd=codes.jsd, orth=orth)
            total = total + cfg.gamma_dis * (codes.jsd + orth)
        if cfg.kl_align:
            kl = interaction_kl(
                e_mm[kl_users], e_mm[first_item:], e_id[kl_users], e_id[first_item:],
                temperature=float(cfg.kl_temperature), grad=cfg.kl_grad, scores=cfg.kl_scores,  # type: ignore[arg-type]
            )
            terms["kl"] = kl
            total = total + float(cfg.gamma_kl) * kl  # type: ignore[arg-type]
        return {"loss": total, **terms}

    def diagnostics(self, generator: Optional[torch.Generator] = None, sample: int = 512) -> Dict[str, float]:
        r"""Health readings of the fusion and the multimodal branch (``diag_*`` in ``history.csv``).

        On the full graph, without gradients:

        - ``attn_entropy_<view>``: mean entropy (nats) of the rows of the view's
          :math:`d \times d` map (uniform rows: :math:`\ln d`; one-hot rows: 0).
        - ``alpha_pos``, ``alpha_neg``: the weights of (17).
        - ``mm_id_norm_ratio``: mean row norm of :math:`\alpha_{mm}\tilde{\mathbf{E}}_{mm}`
          over mean row norm of :math:`\mathbf{E}_{id}` (22).
        - ``user_mm_cosine``: mean pairwise cosine of ``sample`` users' fused
          multimodal vectors (near 1: the branch is the same for every user).
        - ``item_term_share``: for ``sample`` users, the share of the variance of
          their scores (23), centred per user, that one user-independent term
          per item explains (near 1: the model ranks every user alike).
        """
        gen = generator if generator is not None else torch.Generator().manual_seed(0)
        out = self.forward()
        diag: Dict[str, float] = {}
        if self.fusion is not None:
            _, maps = self.fusion(out.views, return_attention=True)
            for name, attn in zip(self.view_names, maps):
                entropy = -(attn * attn.clamp_min(1e-30).log()).sum(-1).mean()
                diag[f"attn_entropy_{name}"] = float(entropy)
            if self.fusion.mode == "posneg":
                diag["alpha_pos"] = float(self.fusion.alpha_pos)
                diag["alpha_neg"] = float(self.fusion.alpha_neg)
        mm = self.config.alpha_mm * torch.cat([out.user_mm, out.item_mm])
        e_id = torch.cat([out.user_id, out.item_id])
        diag["mm_id_norm_ratio"] = float(mm.norm(dim=-1).mean() / e_id.norm(dim=-1).mean().clamp_min(1e-30))
        picks = torch.randperm(self.num_users, generator=gen)[: min(sample, self.num_users)].to(mm.device)
        unit = nn.functional.normalize(out.user_mm[picks], dim=-1)
        k = unit.size(0)
        if k > 1:
            diag["user_mm_cosine"] = float(((unit @ unit.t()).sum() - k) / (k * (k - 1)))
        diag["item_term_share"] = item_term_share(out.user[picks] @ out.item.t())
        return diag

    def __repr__(self) -> str:
        cfg = self.config
        return (
            f"{self.__class__.__name__}(users={self.num_users}, items={self.num_items}, "
            f"modalities={self.modalities}, dim={cfg.embedding_dim}, fusion={cfg.fusion!r}, "
            f"attention={cfg.attention!r}, disentangle={cfg.disentangle}, kl_align={cfg.kl_align}, "
            f"item_graphs={cfg.item_graphs})"
        )
