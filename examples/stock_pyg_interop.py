"""dhmrec_pyg next to stock PyG: a model built on ``torch_geometric.nn.LGConv``, trained by the
library's ``Trainer``, evaluated by the library's evaluator and by ``torch_geometric.metrics``.

* ``StockLightGCN`` subclasses the public :class:`dhmrec_pyg.models.Recommender` and propagates
  with stock ``LGConv`` over the homogeneous user+item graph. The graph is a buffer
  (``register_buffer``), so ``model.to(device)`` moves it with the parameters.
* ``Trainer`` fits it like any model of the library (BPR, validation every epoch).
* ``FullRankingEvaluator`` (the library's MMRec protocol) and PyG's ``LinkPredRecall`` /
  ``LinkPredNDCG`` (fed with ``model.recommend``'s top-k) score the same validation split; the
  two recalls agree.

Run it (a few seconds on two CPU cores)::

    python examples/stock_pyg_interop.py
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Tuple

import torch
from torch import Tensor, nn
from torch_geometric.metrics import LinkPredNDCG, LinkPredRecall
from torch_geometric.nn import LGConv
from torch_geometric.utils import to_undirected

from dhmrec_pyg.data import EDGE_TYPE, make_synthetic, split_edge_index
from dhmrec_pyg.models import ModelConfig, Recommender, bpr_loss_from_embeddings, l2_reg
from dhmrec_pyg.training import FullRankingEvaluator, TrainConfig, Trainer, evaluation_users


@dataclass
class StockLightGCNConfig(ModelConfig):
    num_layers: int = 2
    reg_weight: float = 1e-4


class StockLightGCN(Recommender):
    """LightGCN written with stock PyG layers, trainable by the library's ``Trainer``."""

    config_class = StockLightGCNConfig

    def __init__(self, data, config: StockLightGCNConfig) -> None:
        super().__init__(data, config)  # checks the graph, keeps train_edge_index for recommend()
        ui = data[EDGE_TYPE].edge_index
        homogeneous = torch.stack([ui[0], ui[1] + self.num_users])  # items after users
        self.register_buffer("edge_index", to_undirected(homogeneous), persistent=False)
        self.user_emb = nn.Embedding(self.num_users, config.embedding_dim)
        self.item_emb = nn.Embedding(self.num_items, config.embedding_dim)
        self.convs = nn.ModuleList(LGConv() for _ in range(config.num_layers))  # gcn-normalised
        nn.init.xavier_uniform_(self.user_emb.weight)
        nn.init.xavier_uniform_(self.item_emb.weight)

    def embeddings(self) -> Tuple[Tensor, Tensor]:
        x = torch.cat([self.user_emb.weight, self.item_emb.weight])
        out = x
        for conv in self.convs:
            x = conv(x, self.edge_index)
            out = out + x
        out = out / (len(self.convs) + 1)
        return out[: self.num_users], out[self.num_users :]

    def loss(self, users: Tensor, pos_items: Tensor, neg_items: Tensor) -> Dict[str, Tensor]:
        user_all, item_all = self.embeddings()
        bpr = bpr_loss_from_embeddings(user_all[users], item_all[pos_items], item_all[neg_items])
        reg = l2_reg(self.user_emb(users), self.item_emb(pos_items), self.item_emb(neg_items))
        return {"loss": bpr + self.config.reg_weight * reg, "bpr": bpr, "reg": reg}


def pyg_metrics(model: Recommender, train: Tensor, target: Tensor, k: int) -> Dict[str, float]:
    """PyG's link-prediction metrics on ``model.recommend``'s top-k (training items left out)."""
    users = evaluation_users(train, target, model.num_users)  # users with a target interaction
    top = model.recommend(users, k=k)
    row = torch.full((model.num_users,), -1, dtype=torch.long)
    row[users] = torch.arange(users.numel())  # user id -> row of the top-k matrix
    label_index = torch.stack([row[target[0]], target[1]])
    label_index = label_index[:, label_index[0] >= 0]
    recall, ndcg = LinkPredRecall(k), LinkPredNDCG(k)
    for metric in (recall, ndcg):
        metric.update(top.items, label_index)
    return {f"recall@{k}": float(recall.compute()), f"ndcg@{k}": float(ndcg.compute())}


def main(profile: str = "tiny", epochs: int = 3, k: int = 20, seed: int = 0) -> Dict[str, Dict[str, float]]:
    torch.manual_seed(seed)
    data = make_synthetic(profile, seed=seed)
    model = StockLightGCN(data, StockLightGCNConfig(embedding_dim=32))
    cfg = TrainConfig(model="stock-lightgcn", epochs=epochs, batch_size=512, ks=[k], device="cpu",
                      progress=False, seed=seed)
    Trainer(model, data, cfg, None, model.config).fit()

    device = "cuda" if torch.cuda.is_available() else "cpu"
    model.to(device)  # the graph buffer moves with the parameters
    print(f"model on {device}: edge_index on {model.edge_index.device}, "
          f"train_edge_index on {model.train_edge_index.device}")

    train, val = split_edge_index(data, "train"), split_edge_index(data, "val")
    evaluator = FullRankingEvaluator(train, val, model.num_users, model.num_items, ks=[k])
    model.eval()
    with torch.no_grad():
        ours = evaluator.evaluate(*(e.cpu() for e in model.embeddings()))
    stock = pyg_metrics(model, train, val, k)
    print(f"dhmrec_pyg FullRankingEvaluator: recall@{k} {ours[f'recall@{k}']:.4f}  "
          f"ndcg@{k} {ours[f'ndcg@{k}']:.4f}")
    print(f"torch_geometric.metrics:         recall@{k} {stock[f'recall@{k}']:.4f}  "
          f"ndcg@{k} {stock[f'ndcg@{k}']:.4f}")
    return {"dhmrec_pyg": ours, "torch_geometric": stock}


if __name__ == "__main__":
    main()
