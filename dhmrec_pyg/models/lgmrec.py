"""LGMRec (Guo et al., AAAI 2024): local and global graph learning for multimodal recommendation."""
from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Dict, List, NamedTuple, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch_geometric.data import HeteroData

from dhmrec_pyg.checks import at_least, in_range, positive
from dhmrec_pyg.models.base import EDGE, GraphConfig, ModelConfig, Recommender, bpr_loss_from_embeddings, item_modalities, l2_reg
from dhmrec_pyg.nn.graph import normalized_adjacency, sparse_matrix
from dhmrec_pyg.nn.hypergraph import HyperedgeMembership, HyperedgePropagation, info_nce
from dhmrec_pyg.nn.item_graph import ItemGraphPropagation, UserAggregation
from dhmrec_pyg.nn.propagation import LightGCNPropagation


@dataclass
class LGMRecConfig(ModelConfig):
    """LGMRec hyper-parameters (defaults: the public Baby configuration).

    Attributes:
        embedding_dim: size of ID embeddings and projected features (64).
        reg_weight: weight of the L2 term on the batch's final embeddings (1e-6).
        num_ui_layers: LightGCN hops of the collaborative embedding (``n_ui_layers`` 2).
        num_mm_layers: user-item hops of the modality embeddings (``n_mm_layers`` 2).
        num_hyper_layers: hypergraph layers (``n_hyper_layer`` 1; Clothing 2).
        num_hyperedges: hyperedges per modality (``hyper_num`` 4; Clothing 64).
        keep_rate: keep probability of the membership dropout (0.5; Sports 0.4).
        alpha: weight of the global embedding in the fusion (0.3; Sports 0.6).
        cl_weight: weight of the hypergraph contrastive loss (1e-4).
        temperature: :math:`\\tau` of both the Gumbel-softmax and the InfoNCE (0.2).
    """

    embedding_dim: int = 64
    reg_weight: float = 1e-6
    num_ui_layers: int = 2
    num_mm_layers: int = 2
    num_hyper_layers: int = 1
    num_hyperedges: int = 4
    keep_rate: float = 0.5
    alpha: float = 0.3
    cl_weight: float = 1e-4
    temperature: float = 0.2

    def check(self) -> None:
        """Ranges: ``keep_rate`` in (0, 1], ``temperature`` > 0, counts and weights not negative."""
        super().check()
        in_range(self, "keep_rate", 0.0, 1.0, low_open=True)
        positive(self, "temperature")
        at_least(self, 1, "num_hyper_layers", "num_hyperedges")
        at_least(self, 0, "num_ui_layers", "num_mm_layers", "cl_weight")


class LGMRecOutput(NamedTuple):
    """One forward pass of :class:`LGMRec`; all tensors are ``[U + I, d]`` (users first)
    unless stated.

    Attributes:
        user: ``[U, d]`` final user embeddings.
        item: ``[I, d]`` final item embeddings.
        collaborative: :math:`\\mathbf{E}_c` (LightGCN over IDs).
        modality: per modality, the propagated projected features :math:`\\mathbf{E}_m`
            (before the row normalisation).
        local: :math:`\\mathbf{E}_{loc} = \\mathbf{E}_c + \\sum_m \\operatorname{norm}(\\mathbf{E}_m)`.
        hyper_user, hyper_item: per modality, the global embeddings ``[U, d]`` and ``[I, d]``.
        global_: :math:`\\mathbf{E}_{glo} = \\sum_m [\\mathbf{G}_{u,m}; \\mathbf{G}_{i,m}]`.
    """

    user: Tensor
    item: Tensor
    collaborative: Tensor
    modality: List[Tensor]
    local: Tensor
    hyper_user: List[Tensor]
    hyper_item: List[Tensor]
    global_: Tensor


def _interaction_matrix(
    edge_index: Tensor, num_users: int, num_items: int, user_mean: bool, layout: str
) -> Tensor:
    """Sparse ``[U, I]`` interaction matrix: binary, or rows divided by the user's degree."""
    users = edge_index[0]
    weight = torch.ones(users.numel(), device=edge_index.device)
    if user_mean:
        deg = torch.zeros(num_users, device=edge_index.device).scatter_add_(0, users, weight)
        weight = weight / deg[users]
    return sparse_matrix(edge_index, weight, (num_users, num_items), layout)


class LGMRec(Recommender):
    r"""LGMRec: local and global graph learning for multimodal recommendation.

    Guo et al., *LGMRec: Local and Global Graph Learning for Multimodal
    Recommendation*, AAAI 2024. Built from the library's layers; readings
    follow the authors' public code where the paper leaves room.

    1. Collaborative graph embedding (local, IDs):
       :math:`\mathbf{E}_c = \frac{1}{L+1}\sum_{l=0}^{L}\tilde{A}^l
       [\mathbf{E}_u^{(0)}; \mathbf{E}_i^{(0)}]`
       (:class:`~dhmrec_pyg.nn.LightGCNPropagation`, layer mean including
       layer 0, :math:`L` = ``num_ui_layers``, full normalised user-item
       graph; LGMRec prunes nothing).
    2. Modality graph embedding (local, features), per modality :math:`m`:
       items start as :math:`\mathbf{X}^m \mathbf{W}_m` (a bias-free linear
       projection to :math:`d`, Xavier), users as the *mean* of their items'
       projections (:class:`~dhmrec_pyg.nn.item_graph.UserAggregation` over a
       row-normalised interaction matrix), then
       :math:`\mathbf{E}_m = \tilde{A}^{L_m}[\mathbf{E}_{u,m}^{(0)};
       \mathbf{E}_{i,m}^{(0)}]` keeping the *last* layer, :math:`L_m` =
       ``num_mm_layers`` (:class:`~dhmrec_pyg.nn.item_graph.ItemGraphPropagation`,
       a generic last-layer stack, here over the user-item graph). The local
       embedding sums the collaborative part and the row-L2-normalised
       modality parts:
       :math:`\mathbf{E}_{loc} = \mathbf{E}_c + \sum_m \operatorname{norm}(\mathbf{E}_m)`.
    3. Global hypergraph embedding, per modality:
       :class:`~dhmrec_pyg.nn.hypergraph.HyperedgeMembership` (learnable
       hyperedges in the raw feature space, Gumbel-softmax memberships,
       dropout with ``keep_rate``; deterministic in ``eval()``) and
       :class:`~dhmrec_pyg.nn.hypergraph.HyperedgePropagation` whose input is
       the *collaborative* item embeddings (the item rows of
       :math:`\mathbf{E}_c`, as in the public code), giving
       :math:`\mathbf{G}_{u,m}, \mathbf{G}_{i,m}`; then
       :math:`\mathbf{E}_{glo} = \sum_m [\mathbf{G}_{u,m}; \mathbf{G}_{i,m}]`.
    4. Fusion: :math:`\mathbf{E} = \mathbf{E}_{loc} + \alpha\,
       \operatorname{norm}(\mathbf{E}_{glo})` (the global part row-normalised).
    5. Loss, per batch of BPR triplets :math:`(u, i^+, i^-)`:

    .. math::
        \mathcal{L} = \mathcal{L}_{BPR} + \lambda_{cl}\,\mathcal{L}_{HCL}
        + \lambda_{reg}\frac{1}{|B|}\big\|[\mathbf{e}_u; \mathbf{e}_{i^+};
        \mathbf{e}_{i^-}]\big\|_2^2

    with the hypergraph contrastive loss, for a pair of modalities
    :math:`(a, b)`,
    :math:`\mathrm{InfoNCE}(\mathbf{G}_{u,a}[u], \mathbf{G}_{u,b}[u],
    \mathbf{G}_{u,b}) + \mathrm{InfoNCE}(\mathbf{G}_{i,a}[i^+],
    \mathbf{G}_{i,b}[i^+], \mathbf{G}_{i,b})`
    (:func:`~dhmrec_pyg.nn.hypergraph.info_nce`: cosine, temperature
    :math:`\tau`, *summed* over the batch as in the public code, to which
    ``cl_weight`` 1e-4 is tuned; duplicate batch users count once per
    triplet). Modalities are taken in sorted name order, the first of a pair
    being the anchor. With more than two modalities the pairs' losses are
    averaged; with one modality the term is zero.

    Departures from the public code, all small: the L2 term is the library's
    squared norm (:func:`~dhmrec_pyg.models.base.l2_reg`; the public code sums
    unsquared Frobenius norms, immaterial at ``reg_weight`` 1e-6); evaluation
    uses noise-free memberships; the public code falls back to the
    collaborative embedding alone unless there are exactly two modalities
    (image and text), whereas here every part is used for any number of
    modalities :math:`\geq 1`.

    Items without training interactions still get embeddings: their layer-0
    share of :math:`\mathbf{E}_c` and, through their feature-based hyperedge
    memberships, a global embedding.

    Args:
        data: the training graph with item features ``x_<modality>``.
        config: a :class:`LGMRecConfig`.

    Raises:
        ValueError: if ``data`` has no item features.
    """

    config_class = LGMRecConfig

    def __init__(self, data: HeteroData, config: LGMRecConfig, graph: Optional[GraphConfig] = None) -> None:
        super().__init__(data, config, graph)
        self.modalities = item_modalities(data, "lgmrec")
        d = config.embedding_dim
        num_u, num_i = self.num_users, self.num_items
        self.user_emb = nn.Embedding(num_u, d)
        self.item_emb = nn.Embedding(num_i, d)
        self.projections = nn.ModuleDict()
        self.memberships = nn.ModuleDict()
        for m in self.modalities:
            x = data["item"][f"x_{m}"]
            self.register_buffer(f"x_{m}", x.float(), persistent=False)
            self.projections[m] = nn.Linear(x.size(1), d, bias=False)
            self.memberships[m] = HyperedgeMembership(
                x.size(1), config.num_hyperedges, config.temperature, config.keep_rate
            )
        self.ui_propagation = LightGCNPropagation(config.num_ui_layers)
        self.mm_propagation = ItemGraphPropagation(config.num_mm_layers)
        self.user_aggregation = UserAggregation()
        self.hypergraph = HyperedgePropagation(config.num_hyper_layers)

        edge_index = data[EDGE].edge_index
        layout = self.graph_config.sparse_layout
        self.register_adjacency("adj", normalized_adjacency(edge_index, num_u, num_i, layout=layout), symmetric=True)
        self.register_adjacency("interactions", _interaction_matrix(edge_index, num_u, num_i, False, layout))
        self.register_adjacency("user_mean", _interaction_matrix(edge_index, num_u, num_i, True, layout))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Xavier-initialise embeddings, projections and hyperedges."""
        nn.init.xavier_uniform_(self.user_emb.weight)
        nn.init.xavier_uniform_(self.item_emb.weight)
        for proj in self.projections.values():
            nn.init.xavier_uniform_(proj.weight)
        for member in self.memberships.values():
            member.reset_parameters()

    def forward(self) -> LGMRecOutput:
        """All embeddings of one pass (memberships noisy in training, deterministic in eval)."""
        num_u = self.num_users
        collaborative = self.ui_propagation(torch.cat([self.user_emb.weight, self.item_emb.weight]), self.adj)
        item_collab = collaborative[num_u:]
        local = collaborative
        modality, hyper_user, hyper_item = [], [], []
        global_ = torch.zeros_like(collaborative)
        for m in self.modalities:
            x = getattr(self, f"x_{m}")
            items0 = self.projections[m](x)
            users0 = self.user_aggregation(items0, self.user_mean)
            e_m = self.mm_propagation(torch.cat([users0, items0]), self.adj)
            modality.append(e_m)
            local = local + F.normalize(e_m, dim=-1)
            h_user, h_item = self.memberships[m](x, self.interactions)
            g_user, g_item = self.hypergraph(item_collab, h_item, h_user)
            hyper_user.append(g_user)
            hyper_item.append(g_item)
            global_ = global_ + torch.cat([g_user, g_item])
        final = local + self.config.alpha * F.normalize(global_, dim=-1)
        return LGMRecOutput(
            user=final[:num_u], item=final[num_u:], collaborative=collaborative, modality=modality,
            local=local, hyper_user=hyper_user, hyper_item=hyper_item, global_=global_,
        )

    def contrastive_loss(self, out: LGMRecOutput, users: Tensor, pos_items: Tensor) -> Tensor:
        """Hypergraph contrastive loss between modalities, averaged over modality pairs."""
        pairs = list(itertools.combinations(range(len(self.modalities)), 2))
        if not pairs:
            return out.user.new_zeros(())
        tau = self.config.temperature
        total = out.user.new_zeros(())
        for a, b in pairs:
            ua, ub = out.hyper_user[a], out.hyper_user[b]
            ia, ib = out.hyper_item[a], out.hyper_item[b]
            total = total + info_nce(ua[users], ub[users], ub, tau) + info_nce(ia[pos_items], ib[pos_items], ib, tau)
        return total / len(pairs)

    def loss(self, users: Tensor, pos_items: Tensor, neg_items: Tensor) -> Dict[str, Tensor]:
        """BPR + ``cl_weight`` x contrastive + ``reg_weight`` x L2.

        Keys: ``loss`` (total), ``bpr``, ``cl``, ``reg``.
        """
        cfg = self.config
        out = self.forward()
        u, p, n = out.user[users], out.item[pos_items], out.item[neg_items]
        bpr = bpr_loss_from_embeddings(u, p, n)
        cl = self.contrastive_loss(out, users, pos_items)
        reg = l2_reg(u, p, n)
        return {"loss": bpr + cfg.cl_weight * cl + cfg.reg_weight * reg, "bpr": bpr, "cl": cl, "reg": reg}

    def __repr__(self) -> str:
        cfg = self.config
        return (
            f"{self.__class__.__name__}(users={self.num_users}, items={self.num_items}, "
            f"modalities={self.modalities}, dim={cfg.embedding_dim}, ui_layers={cfg.num_ui_layers}, "
            f"mm_layers={cfg.num_mm_layers}, hyper_layers={cfg.num_hyper_layers}, "
            f"hyperedges={cfg.num_hyperedges}, keep_rate={cfg.keep_rate}, alpha={cfg.alpha}, "
            f"cl_weight={cfg.cl_weight})"
        )
