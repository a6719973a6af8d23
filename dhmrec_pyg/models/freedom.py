"""FREEDOM (Zhou and Shen, ACM MM 2023): a frozen item-item graph and a denoised user-item graph."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, NamedTuple, Optional

import torch
from torch import Tensor, nn
from torch_geometric.data import HeteroData

from dhmrec_pyg.models.base import (
    EDGE,
    GraphConfig,
    ItemGraphConfig,
    Recommender,
    accepts_aliases,
    bpr_loss_from_embeddings,
    item_modalities,
)
from dhmrec_pyg.nn.graph import normalized_adjacency, to_sparse_adjacency
from dhmrec_pyg.nn.item_graph import COMMON_VIEW, ItemGraphPropagation, build_item_graphs
from dhmrec_pyg.nn.propagation import LightGCNPropagation


@accepts_aliases
@dataclass
class FREEDOMConfig(ItemGraphConfig):
    """FREEDOM hyper-parameters (defaults: the public code's ``FREEDOM.yaml``).

    Options shared with DHMRec (layers, KNN neighbours) are those of
    :class:`~dhmrec_pyg.models.base.ItemGraphConfig`; how the graphs are built and stored
    (cache, self loops, layout) is :class:`~dhmrec_pyg.models.base.GraphConfig`.

    Attributes:
        embedding_dim: size of ID embeddings and of the projected features (64).
        reg_weight: weight of the modality BPR terms (FREEDOM's ``reg_weight``,
            grid {0, 1e-5, 1e-4, 1e-3}; the public config fixes no single
            value, 1e-4 here; tune it on validation).
        beta: weight of the visual-like modality in the mixed item-item graph
            (0.1; DHMRec's name); see :func:`~dhmrec_pyg.nn.item_graph.common_view_weights`.
            Also accepted as ``image_weight`` (FREEDOM's ``mm_image_weight``).
        keep_ratio: share of user-item edges kept each epoch (0.2); 1 disables the
            pruning. Also accepted as FREEDOM's ``dropout``, the share pruned
            (``keep_ratio = 1 - dropout``: FREEDOM's 0.8, grid {0.8, 0.9}, is 0.2,
            {0.2, 0.1}); :attr:`dropout` reads it back.
        trainable_features: fine-tune the raw item features through the modality
            BPR terms (the public code loads them with ``freeze=False``).

    Both names of a knob are accepted wherever a config is given
    (:data:`~dhmrec_pyg.models.base.OPTION_ALIASES`): ``FREEDOMConfig(dropout=0.9)``,
    ``--set dropout=0.9``, a YAML file, and the ``config.yaml`` of a run written
    before the knobs were renamed.
    """

    embedding_dim: int = 64
    reg_weight: float = 1e-4
    beta: float = 0.1
    keep_ratio: float = 0.2
    trainable_features: bool = True

    @property
    def dropout(self) -> float:
        """FREEDOM's name of the pruning: the share of edges dropped, ``1 - keep_ratio``."""
        return round(1.0 - self.keep_ratio, 12)

    @property
    def image_weight(self) -> float:
        """FREEDOM's name of :attr:`beta`."""
        return self.beta

    def check(self) -> None:
        """Ranges: ``keep_ratio`` in (0, 1] (``dropout`` in [0, 1)), ``beta`` in [0, 1]."""
        super().check()
        self.check_keep_ratio_and_beta()


class FREEDOMOutput(NamedTuple):
    """One forward pass of :class:`FREEDOM`.

    Attributes:
        user: ``[U, d]`` final user embeddings :math:`\\bar{\\mathbf{E}}_u`.
        item: ``[I, d]`` final item embeddings :math:`\\bar{\\mathbf{E}}_i + \\mathbf{H}`.
        item_ui: ``[I, d]`` the LightGCN part :math:`\\bar{\\mathbf{E}}_i`.
        item_ii: ``[I, d]`` the item-item part :math:`\\mathbf{H}`.
    """

    user: Tensor
    item: Tensor
    item_ui: Tensor
    item_ii: Tensor


class FREEDOM(Recommender):
    r"""FREEDOM: freezing and denoising graph structures for multimodal recommendation.

    Zhou and Shen, *A Tale of Two Graphs: Freezing and Denoising Graph
    Structures for Multimodal Recommendation*, ACM MM 2023. Built from the
    library's layers:

    1. Frozen item-item graph, built once before training
       (:func:`~dhmrec_pyg.nn.item_graph.build_item_graphs`): per modality
       :math:`m` the binary cosine top-:math:`k` graph of the raw features,
       symmetrically normalised, :math:`\tilde{S}^m = D^{-1/2} S^m D^{-1/2}`
       (every edge weighs :math:`1/k`), mixed as
       :math:`\tilde{S} = \sum_m \beta_m \tilde{S}^m` with :math:`\beta = 0.1`
       for the visual-like modality and :math:`1-\beta` shared by the others
       (:func:`~dhmrec_pyg.nn.item_graph.common_view_weights`; for image + text
       this is FREEDOM's ``0.1 * image + 0.9 * text``).
    2. Denoised user-item graph: before every training epoch,
       :func:`~dhmrec_pyg.nn.pruning.degree_sensitive_prune` keeps
       :math:`\rho|\mathcal{E}|` edges (:math:`\rho` = ``keep_ratio``, FREEDOM's
       :math:`1 - \text{dropout}`) drawn with probability
       :math:`\propto 1/\sqrt{d_u d_i}` (full-graph degrees), and the kept graph
       is re-normalised, :math:`\tilde{A}_\rho`. Evaluation (``eval()`` mode)
       uses the full normalised graph :math:`\tilde{A}`.
    3. Embeddings, with ID tables :math:`\mathbf{E}^{(0)}` (Xavier):

    .. math::
        \mathbf{H} = \tilde{S}^{L_i} \mathbf{E}_i^{(0)}, \qquad
        \bar{\mathbf{E}} = \frac{1}{L+1}\sum_{l=0}^{L} \tilde{A}_\rho^{\,l}\,
        \mathbf{E}^{(0)}, \qquad
        \mathbf{e}_u = \bar{\mathbf{e}}_u, \quad
        \mathbf{e}_i = \bar{\mathbf{e}}_i + \mathbf{h}_i

    (:class:`~dhmrec_pyg.nn.item_graph.ItemGraphPropagation` with
    :math:`L_i` = ``num_ii_layers`` hops, last layer;
    :class:`~dhmrec_pyg.nn.LightGCNPropagation` with :math:`L` =
    ``num_ui_layers``, layer mean including layer 0).

    4. Loss, per batch of BPR triplets, with one linear projection
       :math:`f_m(\mathbf{x}) = \mathbf{W}_m \mathbf{x}` (feature size
       :math:`\to d`) per modality:

    .. math::
        \mathcal{L} = \mathcal{L}_{BPR}(\mathbf{e}_u, \mathbf{e}_{i^+},
        \mathbf{e}_{i^-}) + \lambda \sum_{m} \mathcal{L}_{BPR}\big(\mathbf{e}_u,
        f_m(\mathbf{x}^m_{i^+}), f_m(\mathbf{x}^m_{i^-})\big)

    with :math:`\lambda` = ``reg_weight`` and
    :func:`~dhmrec_pyg.models.base.bpr_loss` (mean over the batch). The
    modality terms only shape the user embeddings: the projected features do
    not enter the scores. Readings taken from the public code: the raw
    features are fine-tuned by these terms (``trainable_features``), while the
    item-item graph stays the one built from the initial features; the pruned
    edge count is rounded (the public code truncates). The projections have no
    bias: the public code's ``nn.Linear`` bias cancels in
    :math:`f_m(\mathbf{x}_{i^+}) - f_m(\mathbf{x}_{i^-})` and never receives
    a gradient. Any number of
    modalities :math:`\geq 1` works (one projection and one BPR term each).

    Items without training interactions still get embeddings: their
    layer-0 share of :math:`\bar{\mathbf{E}}` and their item-item part
    :math:`\mathbf{h}_i`, which draws on their feature neighbours' IDs.

    Args:
        data: the training graph with item features ``x_<modality>``.
        config: a :class:`FREEDOMConfig`.

    Raises:
        ValueError: if ``data`` has no item features.
    """

    config_class = FREEDOMConfig

    def __init__(self, data: HeteroData, config: FREEDOMConfig, graph: Optional[GraphConfig] = None) -> None:
        super().__init__(data, config, graph)
        self.modalities = item_modalities(data, "freedom")
        d = config.embedding_dim
        num_u, num_i = self.num_users, self.num_items
        self.user_emb = nn.Embedding(num_u, d)
        self.item_emb = nn.Embedding(num_i, d)
        self.features = nn.ParameterDict()
        self.projections = nn.ModuleDict()
        for m in self.modalities:
            x = data["item"][f"x_{m}"]
            self.features[m] = nn.Parameter(x.detach().float().clone(), requires_grad=config.trainable_features)
            self.projections[m] = nn.Linear(x.size(1), d, bias=False)
        self.ui_propagation = LightGCNPropagation(config.num_ui_layers)
        self.ii_propagation = ItemGraphPropagation(config.num_ii_layers)

        edge_index = data[EDGE].edge_index
        self._train_edges = edge_index.cpu()
        layout = self.graph_config.sparse_layout
        self.register_adjacency("adj", normalized_adjacency(edge_index, num_u, num_i, layout=layout), symmetric=True)
        self.resample_pruned_graph(self._train_edges, config.keep_ratio, torch.Generator().manual_seed(0))
        graphs = build_item_graphs(
            data, k=config.knn_k, beta=config.beta, visual_modality=config.visual_modality or None,
            include_self=self.graph_config.knn_self_loops, exact_max_items=self.graph_config.knn_exact_max_items,
            cache_dir=self.graph_config.cache_path(),
        )
        store = graphs["item", f"similar_{COMMON_VIEW}", "item"]
        self.register_adjacency(
            "ii_adj", to_sparse_adjacency(store.edge_index, store.edge_weight, num_i, layout=layout)
        )
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Xavier-initialise the ID embeddings; reset the projections.

        The feature tables keep their current values (they start as the raw
        features and are only changed by training).
        """
        nn.init.xavier_uniform_(self.user_emb.weight)
        nn.init.xavier_uniform_(self.item_emb.weight)
        for proj in self.projections.values():
            proj.reset_parameters()

    def on_epoch_start(self, epoch: int, generator: torch.Generator) -> None:
        """Resample the degree-pruned user-item graph (FREEDOM's ``pre_epoch_processing``)."""
        self.resample_pruned_graph(self._train_edges, self.config.keep_ratio, generator)

    def forward(self) -> FREEDOMOutput:
        """All embeddings (training mode: pruned user-item graph; eval: full graph)."""
        adj = self.adj_pruned if self.training and self.config.keep_ratio < 1.0 else self.adj
        item_ii = self.ii_propagation(self.item_emb.weight, self.ii_adj)
        e = self.ui_propagation(torch.cat([self.user_emb.weight, self.item_emb.weight]), adj)
        user, item_ui = e[: self.num_users], e[self.num_users :]
        return FREEDOMOutput(user=user, item=item_ui + item_ii, item_ui=item_ui, item_ii=item_ii)

    def projected_features(self, modality: str, items: Tensor) -> Tensor:
        """:math:`f_m(\\mathbf{x}^m_i)` for the given items."""
        return self.projections[modality](self.features[modality][items])

    def loss(self, users: Tensor, pos_items: Tensor, neg_items: Tensor) -> Dict[str, Tensor]:
        """BPR plus ``reg_weight`` times the modality BPR terms.

        Keys: ``loss`` (total), ``bpr``, and ``bpr_<modality>`` per modality.
        """
        out = self.forward()
        u, p, n = out.user[users], out.item[pos_items], out.item[neg_items]
        bpr = bpr_loss_from_embeddings(u, p, n)
        terms: Dict[str, Tensor] = {"bpr": bpr}
        modality_total = bpr.new_zeros(())
        for m in self.modalities:
            fp, fn = self.projected_features(m, pos_items), self.projected_features(m, neg_items)
            term = bpr_loss_from_embeddings(u, fp, fn)
            terms[f"bpr_{m}"] = term
            modality_total = modality_total + term
        return {"loss": bpr + self.config.reg_weight * modality_total, **terms}

    def __repr__(self) -> str:
        cfg = self.config
        return (
            f"{self.__class__.__name__}(users={self.num_users}, items={self.num_items}, "
            f"modalities={self.modalities}, dim={cfg.embedding_dim}, ui_layers={cfg.num_ui_layers}, "
            f"ii_layers={cfg.num_ii_layers}, knn_k={cfg.knn_k}, beta={cfg.beta}, "
            f"keep_ratio={cfg.keep_ratio}, reg_weight={cfg.reg_weight})"
        )
