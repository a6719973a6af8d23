"""Matrix factorisation trained with BPR (Rendle et al., 2009)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Optional, Tuple

from torch import Tensor, nn
from torch_geometric.data import HeteroData

from dhmrec_pyg.models.base import GraphConfig, ModelConfig, Recommender, bpr_loss_from_embeddings, l2_reg


@dataclass
class BPRConfig(ModelConfig):
    """BPR-MF hyper-parameters (MMRec's grid for ``reg_weight``: 2, 1, 1e-1 ... 1e-5)."""

    reg_weight: float = 1e-5


class BPRMF(Recommender):
    r"""BPR matrix factorisation: :math:`\hat{y}_{ui} = \mathbf{e}_u^\top \mathbf{e}_i`.

    Embeddings are Xavier-initialised; the loss is BPR plus ``reg_weight``
    times :func:`~dhmrec_pyg.models.base.l2_reg` of the batch's embeddings.
    """

    config_class = BPRConfig

    def __init__(self, data: HeteroData, config: BPRConfig, graph: Optional[GraphConfig] = None) -> None:
        super().__init__(data, config, graph)
        self.user_emb = nn.Embedding(self.num_users, config.embedding_dim)
        self.item_emb = nn.Embedding(self.num_items, config.embedding_dim)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Xavier-initialise both embedding tables."""
        nn.init.xavier_uniform_(self.user_emb.weight)
        nn.init.xavier_uniform_(self.item_emb.weight)

    def embeddings(self) -> Tuple[Tensor, Tensor]:
        """The embedding tables themselves."""
        return self.user_emb.weight, self.item_emb.weight

    def loss(self, users: Tensor, pos_items: Tensor, neg_items: Tensor) -> Dict[str, Tensor]:
        """BPR plus L2 on the batch's embeddings."""
        u, p, n = self.user_emb(users), self.item_emb(pos_items), self.item_emb(neg_items)
        bpr = bpr_loss_from_embeddings(u, p, n)
        reg = l2_reg(u, p, n)
        return {"loss": bpr + self.config.reg_weight * reg, "bpr": bpr, "reg": reg}
