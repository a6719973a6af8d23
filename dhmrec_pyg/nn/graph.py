"""Graph construction helpers: bipartite adjacencies and their normalisation."""
from __future__ import annotations

import warnings
from typing import Optional

import torch
from torch import Tensor

from dhmrec_pyg.schema import check_edge_index


def is_torch_sparse(adj: object) -> bool:
    """Whether ``adj`` is a ``torch.sparse`` tensor (COO or CSR layout)."""
    return isinstance(adj, Tensor) and adj.layout in (torch.sparse_coo, torch.sparse_csr)


def bipartite_to_homogeneous(edge_index: Tensor, num_users: int, num_items: int) -> Tensor:
    r"""Turn user->item edges into an undirected graph over ``num_users + num_items`` nodes.

    Item ``i`` becomes node ``num_users + i``; both directions of every edge are
    returned, so the adjacency is the block matrix
    :math:`A = \begin{bmatrix} 0 & R \\ R^\top & 0 \end{bmatrix}` of equation (7).

    Args:
        edge_index: ``[2, E]`` user and item indices.
        num_users: number of user nodes.
        num_items: number of item nodes.

    Raises:
        DataError: (a ``ValueError``) naming the first user or item id out of range (the
            user-item id, not its index in the homogeneous graph).
    """
    check_edge_index(edge_index, "edge_index", num_users, num_items)
    users, items = edge_index[0], edge_index[1] + num_users
    return torch.stack([torch.cat([users, items]), torch.cat([items, users])])


def sym_norm_weights(
    edge_index: Tensor, num_nodes: int, edge_weight: Optional[Tensor] = None
) -> Tensor:
    r"""Edge weights of :math:`D^{-1/2} A D^{-1/2}` for the graph ``edge_index``.

    Degrees are the (weighted) column sums of :math:`A`; nodes of degree 0 get
    weight 0 rather than a division by zero.
    """
    if edge_weight is None:
        edge_weight = torch.ones(edge_index.size(1), device=edge_index.device)
    deg = torch.zeros(num_nodes, device=edge_index.device, dtype=edge_weight.dtype)
    deg.scatter_add_(0, edge_index[1], edge_weight)
    inv_sqrt = deg.pow(-0.5)
    inv_sqrt[torch.isinf(inv_sqrt)] = 0.0
    return inv_sqrt[edge_index[0]] * edge_weight * inv_sqrt[edge_index[1]]


def bipartite_norm_weights(edge_index: Tensor, num_users: int, num_items: int) -> Tensor:
    r"""Weights :math:`1/\sqrt{d_u d_i}` of the user-item edges ``edge_index``.

    :math:`d_u, d_i` are the degrees (interaction counts) of the user and the item in
    ``edge_index`` itself; entry :math:`(u, i)` of the user-item block of the
    normalised adjacency of equation (7), used by
    :func:`~dhmrec_pyg.nn.user_item_adjacency`, :class:`~dhmrec_pyg.nn.UserAggregation`
    and :func:`~dhmrec_pyg.nn.degree_sensitive_prune`.

    Args:
        edge_index: ``[2, E]`` user and item indices (row 0 users, row 1 items).
        num_users: number of users.
        num_items: number of items.

    Returns:
        ``[E]`` float32 weights on ``edge_index``'s device.
    """
    users, items = edge_index[0], edge_index[1]
    ones = torch.ones(users.numel(), device=edge_index.device)
    deg_u = torch.zeros(num_users, device=edge_index.device).scatter_add_(0, users, ones)
    deg_i = torch.zeros(num_items, device=edge_index.device).scatter_add_(0, items, ones)
    return deg_u[users].rsqrt() * deg_i[items].rsqrt()


def sparse_matrix(index: Tensor, value: Tensor, shape: tuple, layout: str = "csr") -> Tensor:
    """A coalesced ``torch.sparse`` matrix of the given ``shape`` from ``[2, E]`` indices.

    Args:
        index: ``[2, E]`` row and column indices.
        value: ``[E]`` entries (duplicates are summed).
        shape: ``(rows, cols)``.
        layout: ``"csr"`` (fastest for products on CPU) or ``"coo"``.
    """
    if layout not in ("csr", "coo"):
        raise ValueError(f"layout must be 'csr' or 'coo', got {layout!r}")
    mat = torch.sparse_coo_tensor(index, value, tuple(shape), check_invariants=False).coalesce()
    if layout == "csr":
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
            mat = mat.to_sparse_csr()
    return mat


def to_sparse_adjacency(
    edge_index: Tensor,
    edge_weight: Tensor,
    num_nodes: int,
    layout: str = "csr",
) -> Tensor:
    """Build a ``torch.sparse`` adjacency (``adj_t`` orientation) from weighted edges.

    Args:
        edge_index: ``[2, E]`` source and target nodes.
        edge_weight: ``[E]`` weights.
        num_nodes: number of nodes.
        layout: ``"csr"`` (default, fastest for products on CPU) or ``"coo"``.
    """
    # adj_t[target, source] = weight: row i collects the messages i receives.
    return sparse_matrix(torch.stack([edge_index[1], edge_index[0]]), edge_weight, (num_nodes, num_nodes), layout)


def normalized_adjacency(
    edge_index: Tensor,
    num_users: int,
    num_items: int,
    layout: str = "csr",
    edge_weight: Optional[Tensor] = None,
) -> Tensor:
    r"""The normalised user-item adjacency :math:`D^{-1/2} A D^{-1/2}` of equation (7).

    Args:
        edge_index: ``[2, E]`` user->item training interactions.
        num_users: number of users.
        num_items: number of items.
        layout: ``"csr"`` or ``"coo"``.
        edge_weight: optional ``[E]`` weights of the interactions.

    Returns:
        A symmetric ``(U + I) x (U + I)`` sparse tensor. Wrapped as
        ``SparseAdjacency(adj, symmetric=True)`` (:class:`~dhmrec_pyg.nn.SparseAdjacency`)
        it is propagated without a transpose in the backward pass, and compiles.
    """
    full = bipartite_to_homogeneous(edge_index, num_users, num_items)
    weight = None if edge_weight is None else torch.cat([edge_weight, edge_weight])
    n = num_users + num_items
    w = sym_norm_weights(full, n, weight)
    return to_sparse_adjacency(full, w, n, layout=layout)
