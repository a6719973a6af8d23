"""Modality item-item graphs and their propagation, equations (11)-(14) of the DHMRec paper."""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Dict, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor, nn
from torch_geometric.data import HeteroData
from torch_geometric.nn.conv import MessagePassing
from torch_geometric.utils import spmm

from dhmrec_pyg.nn.graph import bipartite_norm_weights, is_torch_sparse, sparse_matrix, sym_norm_weights
from dhmrec_pyg.nn.knn import EXACT_MAX_ITEMS, IVF_NPROBE, knn_graph
from dhmrec_pyg.nn.lightgcn_conv import LightGCNConv
from dhmrec_pyg.nn.sparse import PairedSpMM
from dhmrec_pyg.schema import check_edge_index, modality_names

#: Modality names read as "visual-like" by :func:`common_view_weights`.
VISUAL_MODALITIES = frozenset({"image", "images", "img", "visual", "vision", "v", "video", "photo"})
#: Name of the modality-common view.
COMMON_VIEW = "common"


def common_view_weights(
    modalities: Sequence[str], beta: float = 0.1, visual_modality: Optional[str] = None
) -> Dict[str, float]:
    r"""The weights :math:`\beta_m` of the modality-common item-item graph (12).

    Reading taken (``docs/readings.md``; FREEDOM's mixing rule): the visual-like modality
    gets :math:`\beta` and the remaining :math:`1 - \beta` is shared equally by
    the other modalities (for two modalities: :math:`\beta` and
    :math:`1-\beta`, FREEDOM's ``mm_image_weight``). The visual-like modality
    is ``visual_modality`` if given, else the one whose name is in
    :data:`VISUAL_MODALITIES` (``image``, ``visual``, ``v``, ...). Without a
    visual-like modality, or with one modality only, all weights are equal
    (:math:`1/|\mathcal{M}|`).

    Args:
        modalities: modality names.
        beta: weight of the visual-like modality, in ``[0, 1]``.
        visual_modality: name of the visual-like modality (``None``: by name).

    Returns:
        ``{modality: weight}``, weights summing to one.
    """
    modalities = list(modalities)
    if not modalities:
        raise ValueError("common_view_weights needs at least one modality")
    if not 0.0 <= beta <= 1.0:
        raise ValueError(f"beta must be in [0, 1], got {beta}")
    if visual_modality:
        if visual_modality not in modalities:
            raise ValueError(f"visual_modality {visual_modality!r} is not one of the modalities {modalities}")
        visual = visual_modality
    else:
        found = [m for m in modalities if m.lower() in VISUAL_MODALITIES]
        visual = found[0] if found else None
    if len(modalities) == 1 or visual is None:
        return {m: 1.0 / len(modalities) for m in modalities}
    rest = (1.0 - beta) / (len(modalities) - 1)
    return {m: (beta if m == visual else rest) for m in modalities}


def mix_item_graphs(
    graphs: Sequence[Tuple[Tensor, Tensor]], weights: Sequence[float], num_items: int
) -> Tuple[Tensor, Tensor]:
    r"""Weighted sum of normalised item-item graphs, equation (12).

    .. math::
        \tilde{I}^c = \sum_{m \in \mathcal{M}} \beta_m \tilde{I}^m

    Args:
        graphs: per modality, ``(edge_index, edge_weight)`` of :math:`\tilde{I}^m`.
        weights: :math:`\beta_m` per modality (see :func:`common_view_weights`).
        num_items: number of items.

    Returns:
        ``(edge_index, edge_weight)`` of :math:`\tilde{I}^c`, coalesced (an edge
        present in several graphs appears once with the summed weight).
    """
    if len(graphs) != len(weights) or not graphs:
        raise ValueError("mix_item_graphs needs one weight per graph and at least one graph")
    edge_index = torch.cat([ei for ei, _ in graphs], dim=1)
    edge_weight = torch.cat([float(b) * w for (_, w), b in zip(graphs, weights)])
    key = edge_index[1] * num_items + edge_index[0]
    unique, inverse = torch.unique(key, return_inverse=True)
    summed = torch.zeros(unique.numel(), dtype=edge_weight.dtype, device=edge_weight.device).scatter_add_(0, inverse, edge_weight)
    return torch.stack([unique % num_items, unique // num_items]), summed


def interleave_item_graphs(graphs: Sequence[Tuple[Tensor, Tensor]], num_items: int) -> Tuple[Tensor, Tensor]:
    r"""Several item-item graphs as one graph over :math:`|\mathcal{I}| \cdot V` nodes, views interleaved.

    Node :math:`i V + v` is item :math:`i` in graph :math:`v`; graph :math:`v`'s edge
    :math:`(j, i)` becomes :math:`(j V + v, i V + v)`. The matrix is block-diagonal up to
    that ordering, so the propagation (13) of every view over its own graph is one sparse
    product with the ``[I, V * d]`` matrix of the views side by side, read as
    ``[I * V, d]`` rows (a view, no copy).

    Args:
        graphs: per view, ``(edge_index, edge_weight)`` over ``num_items`` items.
        num_items: number of items.

    Returns:
        ``(edge_index, edge_weight)`` over ``num_items * len(graphs)`` nodes.
    """
    num_views = len(graphs)
    if not num_views:
        raise ValueError("interleave_item_graphs needs at least one graph")
    edge_index = torch.cat([ei * num_views + v for v, (ei, _) in enumerate(graphs)], dim=1)
    return edge_index, torch.cat([w for _, w in graphs])


def build_item_graphs(
    data: HeteroData,
    k: int = 10,
    beta: float = 0.1,
    visual_modality: Optional[str] = None,
    include_self: bool = True,
    method: str = "auto",
    exact_max_items: int = EXACT_MAX_ITEMS,
    cache_dir: Union[str, Path, None] = None,
    use_gpu: Union[bool, str] = "auto",
    hnsw_m: int = 32,
    ef_search: int = 128,
    ivf_nlist: int = 0,
    ivf_nprobe: int = IVF_NPROBE,
) -> HeteroData:
    r"""Add the modality item-item graphs of equations (9)-(12) to a ``HeteroData``.

    For every modality :math:`m` (item attribute ``x_<m>``) the binary top-:math:`k`
    cosine graph :math:`\hat{I}^m` is built with
    :func:`~dhmrec_pyg.nn.knn.knn_graph` and normalised (equation (11)):

    .. math::
        \tilde{I}^m = (D^{\hat{I}^m})^{-\frac{1}{2}} \hat{I}^m
        (D^{\hat{I}^m})^{-\frac{1}{2}}

    Reading taken for (11): :math:`D` holds the row degrees of
    :math:`\hat{I}^m` (the number of neighbours an item keeps, i.e. :math:`k`),
    as in FREEDOM, so every kept edge weighs :math:`1/k`. The modality-common
    graph :math:`\tilde{I}^c` is their :math:`\beta`-weighted sum (12, see
    :func:`common_view_weights` and :func:`mix_item_graphs`).

    Args:
        data: a dataset with ``data['item'].x_<m>`` features.
        k: neighbours per item (the paper's 10).
        beta: weight of the visual-like modality in the common graph (0.1).
        visual_modality: which modality is visual-like (``None``: by name).
        include_self: items are among their own neighbours (FREEDOM's choice).
        method: ``"auto"``, ``"exact"``, ``"ivf"`` or ``"hnsw"`` (see :func:`knn_graph`).
        exact_max_items: size threshold of ``"auto"``.
        cache_dir: folder caching the KNN searches; ``None`` disables it.
        use_gpu, hnsw_m, ef_search, ivf_nlist, ivf_nprobe: passed to
            :func:`~dhmrec_pyg.nn.knn.knn_graph` (faiss on a GPU; HNSW graph degree and search
            breadth; IVF lists and lists probed).

    Returns:
        A shallow copy of ``data`` with one edge type
        ``('item', 'similar_<view>', 'item')`` per modality and one for the
        view ``common``, each with ``edge_index`` (row 0 neighbour, row 1 item)
        and ``edge_weight``. ``data`` itself is not modified.

    Raises:
        ValueError: if ``data`` has no item features, or a modality is named
            ``common``.
    """
    names = modality_names(data)
    if not names:
        raise ValueError(
            f"build_item_graphs: dataset {getattr(data, 'name', '') or '<unnamed>'!r} has no item "
            "features (item attributes x_<modality>)"
        )
    if COMMON_VIEW in names:
        raise ValueError(f"a modality may not be named {COMMON_VIEW!r}: that name is the common view's")
    num_items = int(data["item"].num_nodes)
    out = copy.copy(data)
    graphs = []
    for m in names:
        edge_index = knn_graph(
            data["item"][f"x_{m}"], k, include_self=include_self, method=method,
            exact_max_items=exact_max_items, cache_dir=cache_dir, use_gpu=use_gpu, hnsw_m=hnsw_m,
            ef_search=ef_search, ivf_nlist=ivf_nlist, ivf_nprobe=ivf_nprobe,
        )
        edge_weight = sym_norm_weights(edge_index, num_items)
        graphs.append((edge_index, edge_weight))
        store = out["item", f"similar_{m}", "item"]
        store.edge_index, store.edge_weight = edge_index, edge_weight
    weights = common_view_weights(names, beta, visual_modality)
    edge_index, edge_weight = mix_item_graphs(graphs, [weights[m] for m in names], num_items)
    store = out["item", f"similar_{COMMON_VIEW}", "item"]
    store.edge_index, store.edge_weight = edge_index, edge_weight
    return out


class ItemGraphPropagation(nn.Module):
    r"""Item-item propagation keeping the last layer, equation (13).

    .. math::
        \hat{\mathbf{E}}^{(l)}_{i,\tilde{m}} = \tilde{I}^{\tilde{m}}
        \hat{\mathbf{E}}^{(l-1)}_{i,\tilde{m}}, \qquad
        \hat{\mathbf{E}}_{i,\tilde{m}} = \hat{\mathbf{E}}^{(l)}_{i,\tilde{m}}

    Reading taken (``docs/readings.md``): the output is the last layer, not a layer mean.
    With ``num_layers=0`` the input is returned.

    Args:
        num_layers: number of hops :math:`l`.

    Shapes:
        - **input:** item features :math:`(|\mathcal{I}|, F)` and an item-item
          adjacency accepted by :class:`~dhmrec_pyg.nn.LightGCNConv`
          (``edge_index`` + ``edge_weight``, or a sparse ``adj_t``)
        - **output:** :math:`(|\mathcal{I}|, F)`
    """

    def __init__(self, num_layers: int = 1) -> None:
        super().__init__()
        if num_layers < 0:
            raise ValueError(f"num_layers must be >= 0, got {num_layers}")
        self.num_layers = int(num_layers)
        self.conv = LightGCNConv()

    def forward(self, x: Tensor, adj, edge_weight: Optional[Tensor] = None) -> Tensor:
        """Propagate ``num_layers`` hops and return the last."""
        for _ in range(self.num_layers):
            x = self.conv(x, adj, edge_weight)
        return x

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}(num_layers={self.num_layers})"


def user_item_adjacency(edge_index: Tensor, num_users: int, num_items: int, layout: str = "csr") -> Tensor:
    r"""The sparse :math:`|\mathcal{U}| \times |\mathcal{I}|` matrix of equation (14).

    Entry :math:`(u, i)` is :math:`1/\sqrt{|\mathcal{N}_u||\mathcal{N}_i|}`
    for every training interaction; it is the user-item block of the
    normalised adjacency of equation (7). Feed it to :class:`UserAggregation`.

    Args:
        edge_index: ``[2, E]`` user and item indices (training interactions).
        num_users: number of users.
        num_items: number of items.
        layout: ``"csr"`` or ``"coo"``.

    Raises:
        DataError: (a ``ValueError``) naming the first user or item id out of range.
    """
    check_edge_index(edge_index, "edge_index", num_users, num_items)
    weight = bipartite_norm_weights(edge_index, num_users, num_items)
    return sparse_matrix(edge_index, weight, (num_users, num_items), layout)


class UserAggregation(MessagePassing):
    r"""Users as the normalised aggregate of their items, equation (14).

    .. math::
        \hat{\mathbf{e}}_{u,\tilde{m}} = \sum_{i \in \mathcal{N}_u}
        \frac{1}{\sqrt{|\mathcal{N}_u|}\sqrt{|\mathcal{N}_i|}}
        \hat{\mathbf{e}}_{i,\tilde{m}}

    over the training graph. DHMRec also uses it for the layer-0 user
    embeddings of the modality views of equation (7) ("initialized by
    aggregating from interacted items"). Users without a training interaction
    get zeros.

    The graph is either a sparse :math:`|\mathcal{U}| \times |\mathcal{I}|`
    matrix from :func:`user_item_adjacency` (fast path), or the raw
    ``edge_index`` (row 0 users, row 1 items) together with ``num_users``, in
    which case the weights are computed on the fly.

    Args:
        **kwargs (optional): Additional arguments of
            :class:`torch_geometric.nn.conv.MessagePassing`.

    Shapes:
        - **input:** item features :math:`(|\mathcal{I}|, F)` and a sparse
          :math:`(|\mathcal{U}|, |\mathcal{I}|)` matrix or an edge index
          :math:`(2, |\mathcal{E}|)`
        - **output:** user features :math:`(|\mathcal{U}|, F)`
    """

    def __init__(self, **kwargs) -> None:
        kwargs.setdefault("aggr", "add")
        super().__init__(**kwargs)

    def forward(self, x: Tensor, adj, num_users: Optional[int] = None, adj_t: Optional[Tensor] = None) -> Tensor:
        """Aggregate item features ``x`` into user features.

        ``adj_t``, the ``[I, U]`` transpose of a sparse ``adj``, makes the
        backward pass reuse it instead of transposing ``adj`` every time.
        """
        if adj_t is not None and is_torch_sparse(adj):
            return PairedSpMM.apply(adj, adj_t, x)
        if is_torch_sparse(adj) or not isinstance(adj, Tensor):
            return self.message_and_aggregate(adj, x)
        if num_users is None:
            raise ValueError("UserAggregation needs num_users when given an edge_index")
        users, items = adj[0], adj[1]
        weight = bipartite_norm_weights(adj, num_users, x.size(0))
        flow = torch.stack([items, users])  # messages go item -> user
        return self.propagate(flow, x=(x, None), edge_weight=weight, size=(x.size(0), num_users))

    @staticmethod
    def csr_parts(adj: Tensor) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
        """``(start, count, col, value)`` of a sparse ``[U, I]`` matrix (CSR or COO): each row's
        first entry and number of entries, and the entries' columns and ``[nnz, 1]`` values, in
        row order, as plain tensors for :meth:`rows` (computed once, reused every step)."""
        if adj.layout == torch.sparse_csr:
            crow, col, value = adj.crow_indices(), adj.col_indices(), adj.values()
        else:
            adj = adj.coalesce()
            index, value = adj.indices(), adj.values()
            counts = torch.bincount(index[0], minlength=adj.size(0))
            crow, col = torch.cat([counts.new_zeros(1), counts.cumsum(0)]), index[1]
        return crow[:-1], crow[1:] - crow[:-1], col, value.unsqueeze(1)

    @staticmethod
    @torch.compiler.disable  # data-dependent sizes: runs eagerly between compiled graphs
    def rows(x: Tensor, adj: Union[Tensor, Tuple[Tensor, Tensor, Tensor, Tensor]], users: Tensor) -> Tensor:
        """Equation (14) for some users only: the rows ``users`` of ``adj @ x``.

        Gathers those users' entries of the normalised ``[U, I]`` user-item matrix into a
        ``[n, I]`` CSR matrix and multiplies it with ``x``, so the cost follows those users'
        interactions, not the whole graph, and no ``[entries, F]`` message matrix is made (on
        TikTok a batch's users hold three quarters of the graph's entries: gathering their
        messages cost seven times the product). Differentiable in ``x``.

        Args:
            x: ``[I, F]`` item features.
            adj: the sparse matrix of :func:`user_item_adjacency` (CSR or COO), or its
                :meth:`csr_parts`.
            users: ``[n]`` user indices.

        Returns:
            ``[n, F]``: row ``k`` is user ``users[k]``'s aggregate.
        """
        row_start, row_count, col, value = UserAggregation.csr_parts(adj) if isinstance(adj, Tensor) else adj
        start, count = row_start[users], row_count[users]
        owner = torch.repeat_interleave(count)  # the position in users of each gathered entry
        ends = count.cumsum(0)
        entry = torch.arange(owner.numel(), device=x.device) + (start - ends + count)[owner]
        crow = torch.cat([ends.new_zeros(1), ends])
        block = torch.sparse_csr_tensor(
            crow, col[entry], value[entry].view(-1).to(x.dtype), (users.numel(), x.size(0)), check_invariants=False
        )
        return torch.sparse.mm(block, x)

    def message(self, x_j: Tensor, edge_weight: Tensor) -> Tensor:
        """Scale each item's features by :math:`1/\\sqrt{|\\mathcal{N}_u||\\mathcal{N}_i|}`."""
        return edge_weight.view(-1, 1) * x_j

    def message_and_aggregate(self, adj_t, x: Tensor) -> Tensor:
        """Sparse product with the ``[U, I]`` matrix."""
        return spmm(adj_t, x, reduce=self.aggr)

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}()"
