"""Reusable PyG layers of DHMRec and its baselines."""
from dhmrec_pyg.nn.graph import (
    bipartite_to_homogeneous,
    is_torch_sparse,
    normalized_adjacency,
    sym_norm_weights,
    to_sparse_adjacency,
)
from dhmrec_pyg.nn.lightgcn_conv import LightGCNConv
from dhmrec_pyg.nn.propagation import LightGCNPropagation

__all__ = [
    "LightGCNConv",
    "LightGCNPropagation",
    "bipartite_to_homogeneous",
    "is_torch_sparse",
    "normalized_adjacency",
    "sym_norm_weights",
    "to_sparse_adjacency",
]
