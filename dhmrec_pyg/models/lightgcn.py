"""LightGCN (He et al., SIGIR 2020) on :class:`~dhmrec_pyg.nn.LightGCNPropagation`."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Optional, Tuple

import torch
from torch import Tensor, nn
from torch_geometric.data import HeteroData

from dhmrec_pyg.checks import at_least
from dhmrec_pyg.models.base import EDGE, GraphConfig, ModelConfig, Recommender, bpr_loss_from_embeddings, l2_reg
from dhmrec_pyg.nn import LightGCNPropagation, normalized_adjacency


@dataclass
class LightGCNConfig(ModelConfig):
    """LightGCN hyper-parameters (MMRec's grid: layers {1..4} x reg {1e-2 ... 1e-6}).

    Attributes:
        num_layers: propagation hops over the user-item graph.
    """

    num_layers: int = 2
    reg_weight: float = 1e-4

    def check(self) -> None:
        """:meth:`ModelConfig.check`, and no negative number of layers."""
        super().check()
        at_least(self, 0, "num_layers")


class LightGCN(Recommender):
    r"""LightGCN: ID embeddings smoothed over the normalised user-item graph.

    .. math::
        \mathbf{E} = \frac{1}{L+1}\sum_{l=0}^{L} \tilde{A}^l \mathbf{E}^{(0)}

    The loss is BPR on the propagated embeddings plus ``reg_weight`` times the
    L2 norm of the batch's *ego* (layer-0) embeddings, as in the LightGCN paper.
    The graph is propagated once per mini-batch, as the protocol asks.
    """

    config_class = LightGCNConfig

    def __init__(self, data: HeteroData, config: LightGCNConfig, graph: Optional[GraphConfig] = None) -> None:
        super().__init__(data, config, graph)
        self.user_emb = nn.Embedding(self.num_users, config.embedding_dim)
        self.item_emb = nn.Embedding(self.num_items, config.embedding_dim)
        self.propagation = LightGCNPropagation(config.num_layers)
        adj = normalized_adjacency(
            data[EDGE].edge_index, self.num_users, self.num_items, layout=self.graph_config.sparse_layout
        )
        self.register_adjacency("adj", adj, symmetric=True)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Xavier-initialise both embedding tables."""
        nn.init.xavier_uniform_(self.user_emb.weight)
        nn.init.xavier_uniform_(self.item_emb.weight)

    def embeddings(self) -> Tuple[Tensor, Tensor]:
        """Layer-averaged propagated embeddings of users and items."""
        x = torch.cat([self.user_emb.weight, self.item_emb.weight])
        out = self.propagation(x, self.adj)
        return out[: self.num_users], out[self.num_users :]

    def loss(self, users: Tensor, pos_items: Tensor, neg_items: Tensor) -> Dict[str, Tensor]:
        """BPR on propagated embeddings plus L2 on the batch's ego embeddings."""
        user_all, item_all = self.embeddings()
        u, p, n = user_all[users], item_all[pos_items], item_all[neg_items]
        bpr = bpr_loss_from_embeddings(u, p, n)
        reg = l2_reg(self.user_emb(users), self.item_emb(pos_items), self.item_emb(neg_items))
        return {"loss": bpr + self.config.reg_weight * reg, "bpr": bpr, "reg": reg}
