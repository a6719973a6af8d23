"""DHMRec (Zhan et al., AAAI): multimodal disentanglement and hierarchical fusion for recommendation."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Literal, NamedTuple, Optional, Tuple, Union

import torch
import torch.utils.checkpoint
from torch import Tensor, nn
from torch_geometric.data import HeteroData

from dhmrec_pyg.checks import at_least, positive
from dhmrec_pyg.errors import ConfigError
from dhmrec_pyg.models.base import (
    EDGE,
    GraphConfig,
    ItemGraphConfig,
    Recommender,
    accepts_aliases,
    bpr_loss_from_embeddings,
    item_modalities,
    l2_reg,
)
from dhmrec_pyg.nn.alignment import interaction_kl, sampled_interaction_kl
from dhmrec_pyg.nn.attention import PosNegAttention
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

#: The paper-literal reading of the options the paper leaves open (:meth:`DHMRecConfig.paper`).
PAPER_READING: Dict[str, Any] = dict(
    reg_weight=1e-2, alpha_mm=0.8, gamma_kl=1.0, kl_align=True, ln_gain="unit", attention_scale="sqrt_n",
    attention_scope="all", view_norm="layernorm",
)

#: ``kl_align="auto"``: above this many items the KL of (20)-(21) is sampled
#: (:data:`KL_AUTO_SAMPLES` items besides the batch's positives), at or below it exact. The
#: sampled KL's softmaxes still run over the batch's distinct positive items (1,300-1,900 of a
#: 2,048 batch on TikTok and Baby), so with 1,024 samples they span 2,400-2,900 items: at the
#: catalogues of about 7,000 items of TikTok and Baby the exact KL costs 2.5-3x that (a quarter to
#: two fifths of a DHMRec step at one CPU thread), on Sports' 18,357 items over 6x (44% of a
#: step). Below 10,000 items the exact KL is kept; above, sampling saves most of the KL
#: (``benchmarks/results/speed_tiktok_kl.md``, ``breakdown_*.md``).
KL_AUTO_ITEMS = 10_000
#: ``kl_align="auto"``: the items drawn besides the batch's positives above :data:`KL_AUTO_ITEMS`.
KL_AUTO_SAMPLES = 1024


@accepts_aliases
@dataclass
class DHMRecConfig(ItemGraphConfig):
    r"""DHMRec hyper-parameters: the paper's, its five ablations, and four readings it leaves open.

    ``DHMRecConfig()`` is the library's default: the readings selected on TikTok's validation
    split; :meth:`paper` is the literal reading. Options shared with FREEDOM (layers, KNN
    neighbours) are those of :class:`~dhmrec_pyg.models.base.ItemGraphConfig`; how the graphs are
    built and stored is :class:`~dhmrec_pyg.models.base.GraphConfig`. The readings, the paper's
    sentences behind them, the measurements that chose the default, and the readings tried and
    dropped are in ``docs/readings.md``.

    Attributes:
        embedding_dim: :math:`d_k` (64).
        reg_weight: :math:`\gamma_{reg}` of equation (25) (1e-4; the paper's reading: 1e-2).
        beta: weight of the visual-like modality in the common item-item graph (0.1).
        keep_ratio: share of edges the ID view keeps each epoch (degree-sensitive
            pruning; FREEDOM's ``dropout`` 0.8 is 0.2 here).
        alpha_mm: :math:`\alpha_{mm}` of equation (22) (1.2, in the paper's grid, selected on
            TikTok's validation split; the paper's reading: 0.8, its Baby value).
        gamma_dis: :math:`\gamma_{dis}`, the weight of JSD + orthogonality losses (0.1).
        gamma_kl: :math:`\gamma_{kl}`, the weight of the KL alignment (0.01; paper: 1).
        disentangle: ``False`` is the *w/o DIS* ablation.
        fusion: ``"attention"`` or ``"mean"`` (the *w/o AF* ablation).
        attention: ``"posneg"`` or ``"standard"`` (the *w/o PNF* ablation).
        kl_align: the KL alignment (20)-(21): ``True``, exact, the softmaxes over all items (the
            paper); ``False``, none (the *w/o KL* ablation); an integer :math:`S \geq 2`, the
            softmaxes over the batch's positive items and :math:`S` others drawn uniformly, with
            the log-q correction (:func:`~dhmrec_pyg.nn.sampled_interaction_kl`, a departure
            from the paper, ``docs/readings.md``); ``"auto"`` (the default), exact up to
            :data:`KL_AUTO_ITEMS` items (TikTok, Baby), :data:`KL_AUTO_SAMPLES` samples above
            (Sports, Clothing, larger catalogues). The paper's reading is ``True``.
        item_graphs: ``False`` is the *w/o II* ablation.
        ln_gain: initial gain of the layer norms of equation (18): a positive number (0.015:
            rows start at ~0.12, the scale of the ID embeddings), ``"unit"`` (:math:`1/\sqrt{d_k}`,
            rows at unit norm; the paper's reading) or ``"one"`` (PyTorch's default).
        attention_scale: how the :math:`d \times d` logits of (15) are scaled: ``"l2"``
            (cosines times a learnable temperature) or ``"sqrt_n"`` (literal)
            (:class:`~dhmrec_pyg.nn.PosNegAttention`).
        attention_scope: the training ``"batch"``'s users and items (default) or ``"all"``
            nodes (literal) form the attention maps.
        view_norm: the outer layer norm of (18): ``"layernorm_nobias"`` (learnable gain, no
            bias) or ``"layernorm"`` (literal).
    """

    embedding_dim: int = 64
    reg_weight: float = 1e-4
    beta: float = 0.1
    keep_ratio: float = 0.2
    alpha_mm: float = 1.2
    gamma_dis: float = 0.1
    gamma_kl: float = 0.01
    disentangle: bool = True
    fusion: Literal["attention", "mean"] = "attention"
    attention: Literal["posneg", "standard"] = "posneg"
    kl_align: Union[bool, int, Literal["auto"]] = "auto"
    item_graphs: bool = True
    ln_gain: Union[float, Literal["unit", "one"]] = 0.015
    attention_scale: Literal["sqrt_n", "l2"] = "l2"
    attention_scope: Literal["all", "batch"] = "batch"
    view_norm: Literal["layernorm", "layernorm_nobias"] = "layernorm_nobias"

    @classmethod
    def paper(cls, **overrides: Any) -> "DHMRecConfig":
        """The paper's literal reading (:data:`PAPER_READING`), this library's first behaviour;
        ``overrides`` set any option on top of it."""
        return cls(**{**PAPER_READING, **overrides})

    @classmethod
    def presets(cls) -> Dict[str, Callable[..., "DHMRecConfig"]]:
        """The named constructors: ``"default"`` (``DHMRecConfig()``) and ``"paper"`` (:meth:`paper`);
        a YAML file or ``--set preset=paper`` picks one."""
        return {"default": cls, "paper": cls.paper}

    def check(self) -> None:
        """Ranges: ``keep_ratio`` in (0, 1], ``beta`` in [0, 1], weights not negative, a positive gain,
        at least two sampled items for the KL."""
        super().check()
        self.check_keep_ratio_and_beta()
        at_least(self, 0, "alpha_mm", "gamma_dis", "gamma_kl")
        if not isinstance(self.ln_gain, str):
            positive(self, "ln_gain")
        if not isinstance(self.kl_align, (bool, str)) and self.kl_align < 2:
            raise ConfigError(
                "DHMRecConfig.kl_align must be True, False, 'auto' or a number of sampled items >= 2, "
                f"got {self.kl_align!r}"
            )

    def kl_samples(self, num_items: int) -> Optional[int]:
        """How many items the KL of (20)-(21) draws besides the batch's positives on a catalogue of
        ``num_items`` (``kl_align``); ``None``: the exact KL over all items (or no KL)."""
        if isinstance(self.kl_align, bool):
            return None
        if self.kl_align == "auto":
            return KL_AUTO_SAMPLES if num_items > KL_AUTO_ITEMS else None
        return int(self.kl_align)

    def layer_norm_gain(self) -> float:
        """The numeric initial gain ``ln_gain`` stands for."""
        if self.ln_gain == "unit":
            return 1.0 / self.embedding_dim ** 0.5
        if self.ln_gain == "one":
            return 1.0
        return float(self.ln_gain)

    @property
    def gamma_reg(self) -> float:
        r""":math:`\gamma_{reg}` of equation (25), stored as ``reg_weight``."""
        return self.reg_weight


def _call(recompute: bool, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """``fn(*args, **kwargs)``; with ``recompute``, under activation checkpointing: autograd keeps
    the inputs and outputs only and runs ``fn`` again in the backward pass (no randomness inside,
    so the gradients are the same)."""
    if not recompute:
        return fn(*args, **kwargs)
    return torch.utils.checkpoint.checkpoint(fn, *args, use_reentrant=False, **kwargs)


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
    distinct users. :math:`\|\theta\|^2` of (25) is read as the squared L2 norm of the
    batch's final user, positive and negative item embeddings divided by the batch size.
    The disentanglement losses are taken over all items (the codes of all items are
    computed anyway).

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
        graph: how the graphs are built and stored (:class:`~dhmrec_pyg.models.base.GraphConfig`).

    Raises:
        DataError: if ``data`` has no item features.
    """

    config_class = DHMRecConfig

    def __init__(self, data: HeteroData, config: DHMRecConfig, graph: Optional[GraphConfig] = None) -> None:
        super().__init__(data, config, graph)
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
        )
        self.ui_propagation = LightGCNPropagation(config.num_ui_layers)
        self.user_aggregation = UserAggregation()
        self.ii_propagation = ItemGraphPropagation(config.num_ii_layers)
        self.fusion = (
            PosNegAttention(
                d, len(self.view_names), mode=config.attention, norm_gain=config.layer_norm_gain(),
                scale=config.attention_scale, view_norm=config.view_norm,
            )
            if config.fusion == "attention"
            else None
        )

        edge_index = data[EDGE].edge_index
        self._train_edges = edge_index.cpu()
        layout = self.graph_config.sparse_layout
        self.register_adjacency("adj", normalized_adjacency(edge_index, num_u, num_i, layout=layout), symmetric=True)
        self._register_user_item_blocks(edge_index)
        self.resample_pruned_graph(self._train_edges, config.keep_ratio, torch.Generator().manual_seed(0))
        if config.item_graphs:
            graph_config = self.graph_config
            graphs = build_item_graphs(
                data, k=config.knn_k, beta=config.beta, visual_modality=config.visual_modality or None,
                include_self=graph_config.knn_self_loops, exact_max_items=graph_config.knn_exact_max_items,
                cache_dir=graph_config.cache_path(),
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

    def _register_user_item_blocks(self, edge_index: Tensor) -> None:
        """Register the normalised user-item block ``adj_ui`` of ``edge_index`` (14), its transpose
        ``adj_iu`` (built once: it serves the backward pass of every user aggregation), the rows
        of ``adj_ui`` in CSR parts (for (14) of a batch's users) and the item nodes' indices."""
        adj_ui = user_item_adjacency(edge_index, self.num_users, self.num_items, layout=self.graph_config.sparse_layout)
        adj_iu = adj_ui.t()
        adj_iu = adj_iu.to_sparse_csr() if self.graph_config.sparse_layout == "csr" else adj_iu.coalesce()
        self.register_buffer("adj_ui", adj_ui, persistent=False)
        self.register_buffer("adj_iu", adj_iu, persistent=False)
        start, count, col, value = UserAggregation.csr_parts(adj_ui)
        self.register_buffer("_ui_start", start, persistent=False)
        self.register_buffer("_ui_count", count, persistent=False)
        self.register_buffer("_ui_col", col, persistent=False)
        self.register_buffer("_ui_value", value, persistent=False)
        nodes = torch.arange(self.num_users, self.num_users + self.num_items)
        self.register_buffer("_item_nodes", nodes, persistent=False)

    def on_epoch_start(self, epoch: int, generator: torch.Generator) -> None:
        """Resample the degree-pruned graph of the ID view."""
        self.resample_pruned_graph(self._train_edges, self.config.keep_ratio, generator)

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
        num_i, num_views, d = self.num_items, len(self.view_names), cfg.embedding_dim
        features = [getattr(self, f"x_{m}") for m in self.modalities]
        recompute = self.training and torch.is_grad_enabled() and self.graph_config.recomputes(num_i)
        codes = _call(recompute, self.disentangler.stacked, features, self.item_emb.weight)

        adj_id = self.adj_pruned if self.training and cfg.keep_ratio < 1.0 else self.adj
        ego = torch.cat([self.user_emb.weight, self.item_emb.weight])
        e_id = self.ui_propagation(ego, adj_id)

        # All views side by side, [I, V * d] (view v in columns v*d:(v+1)*d, common first): the
        # views share the user-item graph, so each hop is one sparse product for all of them.
        items = torch.cat([codes.common.unsqueeze(1), codes.specific.transpose(0, 1)], dim=1)
        # (7)-(8) from users aggregated from their items (equal to propagating
        # cat([user_aggregation(item_code), item_code]) over self.adj, in half the products).
        users, items = self.ui_propagation.from_items(
            items.view(num_i, num_views * d), self.adj_ui, self.adj_iu, with_users=not cfg.item_graphs
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
            users = users[user_ids]
        if user_ids is not None:
            e_id = e_id[torch.cat([user_ids, self._item_nodes])]
        stacked = torch.cat([users, items]).view(-1, num_views, d)

        if self.fusion is not None:
            e_mm = _call(recompute, self.fusion, stacked, rows=rows if cfg.attention_scope == "batch" else None)
        else:
            e_mm = stacked.mean(1)
        final = torch.add(e_id, e_mm, alpha=cfg.alpha_mm)  # (22)
        return final, e_id, e_mm, stacked, codes

    def loss(self, users: Tensor, pos_items: Tensor, neg_items: Tensor) -> Dict[str, Tensor]:
        """The objective of equation (25) and its terms.

        Keys: ``loss`` (total), ``bpr``, ``reg``, and, when their component is
        on, ``jsd`` and ``orth`` (disentanglement) and ``kl`` (alignment).

        With ``attention_scope="batch"`` the maps of (15) come from the batch's users and items,
        and only the batch's distinct users are fused (the rows of the full pass, less work);
        with ``"all"`` every node forms the maps, so every user is fused.
        """
        cfg = self.config
        batch = users.numel()
        batch_users, user_rows = torch.unique(users, return_inverse=True)
        # The pass returns the fused users' rows, then every item's, from row first_item on.
        first_item = batch_users.numel()
        if cfg.attention_scope == "batch":
            batch_items = torch.unique(torch.cat([pos_items, neg_items]))
            rows: Optional[Tensor] = torch.cat([torch.arange(first_item, device=users.device),
                                                first_item + batch_items])
            fused_users: Optional[Tensor] = batch_users
        else:  # every user is fused: its rows are the users' own ids
            rows, fused_users, user_rows, first_item = None, None, users, self.num_users
        final, e_id, e_mm, _, codes = self._propagate(rows, fused_users)
        kl_users = batch_users if fused_users is None else slice(0, first_item)
        # The batch's users, positive and negative items in one gather, [B, 3, d].
        index = torch.stack([user_rows, pos_items + first_item, neg_items + first_item], dim=1).view(-1)
        triplets = final[index].view(batch, 3, -1)
        u, p, n = triplets.unbind(1)
        bpr = bpr_loss_from_embeddings(u, p, n)
        reg = l2_reg(triplets.view(batch, -1))  # = l2_reg(u, p, n): one row of [u, p, n] per triplet
        terms: Dict[str, Tensor] = {"bpr": bpr, "reg": reg}
        total = bpr + cfg.gamma_reg * reg
        if cfg.disentangle:
            orth = codes.orth.sum()
            terms.update(jsd=codes.jsd, orth=orth)
            total = total + cfg.gamma_dis * (codes.jsd + orth)
        if cfg.kl_align:
            sides = (e_mm[kl_users], e_mm[first_item:], e_id[kl_users], e_id[first_item:])
            samples = cfg.kl_samples(self.num_items)
            kl = (interaction_kl(*sides) if samples is None  # (20)-(21)
                  else sampled_interaction_kl(*sides, torch.unique(pos_items), samples))
            terms["kl"] = kl
            total = total + cfg.gamma_kl * kl
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
