"""Build your own recommender from DHMRec's PyG layers.

This model is *not* DHMRec: it shows how the layers compose in a model of your own.

* ``build_item_graphs`` adds faiss-built top-k item-item graphs to the ``HeteroData``
  (one ``('item', 'similar_<modality>', 'item')`` edge type per modality, plus ``similar_common``);
* ``LightGCNConv`` propagates ID embeddings over the user-item graph and projected item
  features over each item-item graph;
* ``UserAggregation`` gives users the normalised aggregate of their items' feature views;
* ``PosNegAttention`` fuses the ID view and the feature views over embedding dimensions.

Run it (about ten seconds on two CPU cores)::

    python examples/custom_pyg_model.py
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from dhmrec_pyg.data import make_synthetic, modalities, split_edge_index
from dhmrec_pyg.models import bpr_loss_from_embeddings
from dhmrec_pyg.nn import (
    LightGCNConv,
    PosNegAttention,
    UserAggregation,
    build_item_graphs,
    normalized_adjacency,
    user_item_adjacency,
)
from dhmrec_pyg.data import EDGE_TYPE as EDGE
from dhmrec_pyg.training import BPRSampler, FullRankingEvaluator


class FeatureGraphRec(nn.Module):
    """ID view (2-hop LightGCN) + one KNN-smoothed feature view per modality, fused by attention."""

    def __init__(self, data, dim: int = 32, k: int = 5) -> None:
        super().__init__()
        self.num_users = int(data["user"].num_nodes)
        self.num_items = int(data["item"].num_nodes)
        self.modalities = modalities(data)
        data = build_item_graphs(data, k=k)  # HeteroData with the item-item edge types added
        ei = data[EDGE].edge_index
        self.ui_adj = normalized_adjacency(ei, self.num_users, self.num_items)
        self.user_items = user_item_adjacency(ei, self.num_users, self.num_items)
        self.ii = {m: (data["item", f"similar_{m}", "item"].edge_index,
                       data["item", f"similar_{m}", "item"].edge_weight) for m in self.modalities}
        self.features = {m: data["item"][f"x_{m}"] for m in self.modalities}

        self.user_emb = nn.Embedding(self.num_users, dim)
        self.item_emb = nn.Embedding(self.num_items, dim)
        self.proj = nn.ModuleDict({m: nn.Linear(x.size(1), dim) for m, x in self.features.items()})
        self.conv = LightGCNConv()
        self.to_users = UserAggregation()
        self.fusion = PosNegAttention(dim, num_views=1 + len(self.modalities))
        nn.init.xavier_uniform_(self.user_emb.weight)
        nn.init.xavier_uniform_(self.item_emb.weight)

    def forward(self) -> tuple[Tensor, Tensor]:
        ego = torch.cat([self.user_emb.weight, self.item_emb.weight])
        h1 = self.conv(ego, self.ui_adj)
        id_view = (ego + h1 + self.conv(h1, self.ui_adj)) / 3
        views = [id_view]
        for m in self.modalities:
            items = self.conv(self.proj[m](self.features[m]), *self.ii[m])  # edge_index + edge_weight
            views.append(torch.cat([self.to_users(items, self.user_items), items]))
        out = self.fusion(views) / len(views)
        return out[: self.num_users], out[self.num_users :]


def main(steps: int = 30, seed: int = 0) -> float:
    torch.manual_seed(seed)
    data = make_synthetic("demo", seed=seed)
    model = FeatureGraphRec(data)
    optimizer = torch.optim.Adam(model.parameters(), lr=5e-3)
    sampler = BPRSampler(data[EDGE].edge_index, model.num_items, batch_size=1024)
    evaluator = FullRankingEvaluator(
        data[EDGE].edge_index, split_edge_index(data, "val"), model.num_users, model.num_items, ks=[20]
    )
    generator = torch.Generator().manual_seed(seed)
    step = 0
    while step < steps:
        for users, pos, neg in sampler.epoch(generator):
            user_emb, item_emb = model()
            u = user_emb[users]
            loss = bpr_loss_from_embeddings(u, item_emb[pos], item_emb[neg])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            step += 1
            if step % 10 == 0:
                print(f"step {step:3d}  bpr {loss.item():.4f}")
            if step == steps:
                break
    model.eval()
    with torch.no_grad():
        recall = evaluator.evaluate(*model())["recall@20"]
    print(f"validation recall@20 after {steps} steps: {recall:.4f}")
    return recall


if __name__ == "__main__":
    main()
