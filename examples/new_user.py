"""A first session with dhmrec_pyg, as a new PyG user would write it (public API only).

The graph uses its own names: node types ``'customer'`` and ``'product'``, the relation
``('customer', 'rates', 'product')`` with its held-out splits ``('customer', 'rates_val',
'product')`` and ``('customer', 'rates_test', 'product')``, and product features ``x_image`` /
``x_text``. The script

1. builds that ``HeteroData`` (from the synthetic ``tiny`` profile, renamed);
2. trains LightGCN (and DHMRec with ``--dhmrec``) for two epochs with ``Trainer(...,
   edge_type=...)``;
3. asks the trained model for recommendations with ``model.recommend(users, k)``;
4. runs ``to_homogeneous()`` and checks that the validation and test edges survive it.

Run it (a few seconds on two CPU cores)::

    python examples/new_user.py [--dhmrec]
"""
from __future__ import annotations

import sys

import torch
from torch_geometric.data import HeteroData

from dhmrec_pyg.data import make_synthetic
from dhmrec_pyg.models import DHMRec, DHMRecConfig, LightGCN, LightGCNConfig
from dhmrec_pyg.training import TrainConfig, Trainer

RATES = ("customer", "rates", "product")
SPLIT_TYPES = {"train": RATES, "val": ("customer", "rates_val", "product"),
               "test": ("customer", "rates_test", "product")}


def build_graph(seed: int = 0) -> HeteroData:
    """A customer-product graph with the user's own names (the ``tiny`` synthetic data, renamed)."""
    src = make_synthetic("tiny", seed=seed)
    data = HeteroData()
    data["customer"].num_nodes = src["user"].num_nodes
    data["product"].num_nodes = src["item"].num_nodes
    data["product"].x_image = src["item"].x_image
    data["product"].x_text = src["item"].x_text
    for split, edge_type in SPLIT_TYPES.items():
        relation = "interacts" if split == "train" else f"interacts_{split}"
        data[edge_type].edge_index = src["user", relation, "item"].edge_index
    return data


def train(model_class, config, data: HeteroData, epochs: int = 2):
    """Train ``model_class`` on ``data`` for ``epochs`` epochs; return the model and its metrics."""
    model = model_class(data, config, edge_type=RATES)
    cfg = TrainConfig(model=model_class.__name__.lower(), epochs=epochs, batch_size=512,
                      ks=[10, 20], device="cpu", progress=False)
    metrics = Trainer(model, data, cfg, None, model.config, edge_type=RATES).fit()
    return model, metrics


def check_to_homogeneous(data: HeteroData) -> None:
    """``to_homogeneous()`` offsets every edge type, the splits included: their ids stay consistent."""
    homo = data.to_homogeneous()
    offset = {t: sum(int(data[s].num_nodes) for s in data.node_types[: data.node_types.index(t)])
              for t in data.node_types}
    for split, edge_type in SPLIT_TYPES.items():
        mask = homo.edge_type == data.edge_types.index(edge_type)
        back = homo.edge_index[:, mask] - torch.tensor([[offset["customer"]], [offset["product"]]])
        same = torch.equal(back, data[edge_type].edge_index)
        print(f"to_homogeneous: {split:5s} {tuple(edge_type)}: {int(mask.sum())} edges, "
              f"ids consistent: {same}")
        assert same, f"{split} edges changed under to_homogeneous()"


def main(dhmrec: bool = False) -> None:
    torch.manual_seed(0)
    data = build_graph()
    print(data)

    models = [(LightGCN, LightGCNConfig(embedding_dim=32))]
    if dhmrec:
        models.append((DHMRec, DHMRecConfig(embedding_dim=32)))
    for model_class, config in models:
        model, metrics = train(model_class, config, data)
        print(f"{model_class.__name__}: test recall@20 {metrics['test']['recall@20']:.4f}")
        top = model.recommend(torch.tensor([0, 1, 2]), k=5)
        for user, items in zip(top.users.tolist(), top.items.tolist()):
            print(f"{model_class.__name__}: customer {user} -> products {items}")

    check_to_homogeneous(data)


if __name__ == "__main__":
    main(dhmrec="--dhmrec" in sys.argv[1:])
