"""Weighted LightGCN propagation as a PyG ``MessagePassing`` operator."""
from __future__ import annotations

from typing import Optional, Union

from torch import Tensor
from torch_geometric.nn.conv import MessagePassing
from torch_geometric.typing import Adj, OptTensor
from torch_geometric.utils import is_torch_sparse_tensor, spmm

from dhmrec_pyg.nn.sparse import SparseAdjacency


class LightGCNConv(MessagePassing):
    r"""One hop of light graph convolution with pre-computed edge weights.

    The operator of LightGCN (He et al., SIGIR 2020) and of equations (7), (13)
    and (14) of the DHMRec paper, without feature transformation or
    non-linearity:

    .. math::
        \mathbf{x}^{\prime}_i = \sum_{j \in \mathcal{N}(i)} w_{j,i}\,
        \mathbf{x}_j

    Unlike :class:`torch_geometric.nn.conv.LGConv`, the weights :math:`w_{j,i}`
    are taken as given: compute the symmetric normalisation
    :math:`1/\sqrt{d_i d_j}` once with
    :func:`dhmrec_pyg.nn.graph.normalized_adjacency` (or
    :func:`~dhmrec_pyg.nn.graph.sym_norm_weights`) instead of on every call,
    which is what a recommender needs when it propagates the same graph for
    every mini-batch.

    The adjacency may be an ``edge_index`` (with optional ``edge_weight``), a
    ``torch.sparse`` tensor (COO or CSR) holding the weights, a
    :class:`~dhmrec_pyg.nn.SparseAdjacency`, or a ``torch_sparse.SparseTensor``
    when that optional package is installed; all give the same result. For
    sparse inputs the adjacency is read as ``adj_t``: row ``i`` lists the
    neighbours whose messages ``i`` receives.

    :class:`~dhmrec_pyg.nn.SparseAdjacency` is the fast path the library's
    models use: its backward pass reuses a transpose built once (or, with
    ``symmetric=True``, the matrix itself) instead of converting the matrix on
    every call, and ``torch.compile(conv, fullgraph=True)`` traces it (a
    ``torch.sparse`` input cannot be compiled: dynamo falls back to eager).
    ``edge_index`` inputs compile too, and ``torch.jit.script(LightGCNConv())``
    scripts the ``edge_index``, ``torch.sparse`` and ``SparseTensor`` paths.

    Args:
        **kwargs (optional): Additional arguments of
            :class:`torch_geometric.nn.conv.MessagePassing`.

    Shapes:
        - **input:** node features :math:`(|\mathcal{V}|, F)`,
          edge indices :math:`(2, |\mathcal{E}|)` or a sparse
          :math:`(|\mathcal{V}|, |\mathcal{V}|)` adjacency,
          edge weights :math:`(|\mathcal{E}|)` *(optional)*
        - **output:** node features :math:`(|\mathcal{V}|, F)`
    """

    def __init__(self, **kwargs) -> None:
        kwargs.setdefault("aggr", "add")
        super().__init__(**kwargs)

    def forward(self, x: Tensor, edge_index: Union[Adj, SparseAdjacency],
                edge_weight: Optional[Tensor] = None) -> Tensor:
        """Propagate ``x`` one hop over the (weighted) adjacency."""
        if isinstance(edge_index, SparseAdjacency):
            return edge_index.matmul(x)
        if is_torch_sparse_tensor(edge_index):
            return self.message_and_aggregate(edge_index, x)
        # propagate_type: (x: Tensor, edge_weight: OptTensor)
        return self.propagate(edge_index, x=x, edge_weight=edge_weight)

    def message(self, x_j: Tensor, edge_weight: OptTensor) -> Tensor:
        """Scale each neighbour's features by its edge weight."""
        return x_j if edge_weight is None else edge_weight.view(-1, 1) * x_j

    def message_and_aggregate(self, adj_t: Adj, x: Tensor) -> Tensor:
        """Fused sparse-dense product used for sparse adjacencies."""
        return spmm(adj_t, x, reduce=self.aggr)

    def __prepare_scriptable__(self) -> "LightGCNConv":
        """What ``torch.jit.script`` compiles: the same layer without the
        :class:`~dhmrec_pyg.nn.SparseAdjacency` path (TorchScript cannot take a module as an
        argument)."""
        return _ScriptableLightGCNConv(aggr=self.aggr, flow=self.flow, node_dim=self.node_dim)

    def __repr__(self) -> str:
        return "LightGCNConv()"


class _ScriptableLightGCNConv(LightGCNConv):
    """:class:`LightGCNConv` for TorchScript: ``edge_index``, ``torch.sparse`` or ``SparseTensor``."""

    def forward(self, x: Tensor, edge_index: Adj, edge_weight: Optional[Tensor] = None) -> Tensor:
        """Propagate ``x`` one hop over the (weighted) adjacency."""
        if is_torch_sparse_tensor(edge_index):
            return self.message_and_aggregate(edge_index, x)
        if edge_weight is None and isinstance(edge_index, Tensor):
            edge_weight = x.new_ones(edge_index.size(1))  # scripted propagate needs a weight tensor
        # propagate_type: (x: Tensor, edge_weight: OptTensor)
        return self.propagate(edge_index, x=x, edge_weight=edge_weight)

    def __prepare_scriptable__(self) -> "_ScriptableLightGCNConv":
        return self

