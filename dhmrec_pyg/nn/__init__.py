"""Reusable PyG layers of DHMRec and its baselines."""
from dhmrec_pyg.nn.graph import (
    bipartite_norm_weights,
    bipartite_to_homogeneous,
    is_torch_sparse,
    normalized_adjacency,
    sym_norm_weights,
    to_sparse_adjacency,
)
from dhmrec_pyg.nn.alignment import interaction_kl, kl_candidates, sampled_interaction_kl
from dhmrec_pyg.nn.attention import PosNegAttention
from dhmrec_pyg.nn.disentangle import (
    DisentangledCodes,
    ModalityDisentangler,
    StackedCodes,
    jensen_shannon_divergence,
    logit_pool,
    orthogonality_loss,
    pool_and_jsd,
)
from dhmrec_pyg.nn.item_graph import (
    ItemGraphPropagation,
    UserAggregation,
    build_item_graphs,
    common_view_weights,
    mix_item_graphs,
    user_item_adjacency,
)
from dhmrec_pyg.nn.hypergraph import HyperedgeMembership, HyperedgePropagation, info_nce
from dhmrec_pyg.nn.knn import knn_graph
from dhmrec_pyg.nn.lightgcn_conv import LightGCNConv
from dhmrec_pyg.nn.propagation import LightGCNPropagation
from dhmrec_pyg.nn.pruning import degree_sensitive_prune
from dhmrec_pyg.nn.sparse import SparseAdjacency

__all__ = [
    "DisentangledCodes",
    "HyperedgeMembership",
    "HyperedgePropagation",
    "ItemGraphPropagation",
    "ModalityDisentangler",
    "PosNegAttention",
    "SparseAdjacency",
    "StackedCodes",
    "UserAggregation",
    "build_item_graphs",
    "common_view_weights",
    "degree_sensitive_prune",
    "info_nce",
    "interaction_kl",
    "jensen_shannon_divergence",
    "kl_candidates",
    "knn_graph",
    "logit_pool",
    "mix_item_graphs",
    "orthogonality_loss",
    "pool_and_jsd",
    "sampled_interaction_kl",
    "user_item_adjacency",
    "LightGCNConv",
    "LightGCNPropagation",
    "bipartite_norm_weights",
    "bipartite_to_homogeneous",
    "is_torch_sparse",
    "normalized_adjacency",
    "sym_norm_weights",
    "to_sparse_adjacency",
]
