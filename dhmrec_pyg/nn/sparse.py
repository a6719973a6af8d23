"""A fixed sparse adjacency held as plain tensors, so that ``torch.compile`` can trace its products.

``torch.compile`` cannot take a ``torch.sparse`` tensor as an input or a buffer (dynamo:
"Attempted to wrap sparse Tensor"), so a model whose graphs are ``torch.sparse`` buffers runs
eagerly. :class:`SparseAdjacency` keeps the same matrix as its index and value tensors
(non-persistent buffers: they move with ``.to(device)`` and are not saved in checkpoints) and
multiplies through two custom operators, ``torch.ops.dhmrec_pyg.csr_mm`` and
``torch.ops.dhmrec_pyg.coo_mm``, which build the ``torch.sparse`` view inside and call
``torch.sparse.mm``: the compiler sees one opaque node with dense inputs, eager mode runs the
same kernel as before. The transpose needed by the backward pass is built once with the graph;
for a symmetric matrix (``symmetric=True``) it is the matrix itself and costs nothing.
"""
from __future__ import annotations

import warnings
from typing import Any, Dict, Optional, Tuple

import torch
from torch import Tensor, nn

_CSR_BETA = "Sparse CSR tensor support is in beta"


def _csr_product(crow: Tensor, col: Tensor, value: Tensor, x: Tensor) -> Tensor:
    adj = torch.sparse_csr_tensor(crow, col, value, (crow.numel() - 1, x.size(0)), check_invariants=False)
    return torch.sparse.mm(adj, x)


def _coo_product(index: Tensor, value: Tensor, x: Tensor, num_rows: int) -> Tensor:
    adj = torch.sparse_coo_tensor(index, value, (num_rows, x.size(0)), is_coalesced=True, check_invariants=False)
    return torch.sparse.mm(adj, x)


class PairedSpMM(torch.autograd.Function):
    """``A @ X`` for a sparse ``A`` whose transpose ``A_t`` is kept alongside it.

    The backward pass is ``A_t @ grad``: the transpose is built once (when the
    graph is), not converted from ``A`` on every backward pass as
    ``torch.sparse.mm`` does (for a CSR tensor, a conversion each time). A
    normalised user-item or item-item adjacency is symmetric: pass it as both
    ``A`` and ``A_t``. One operator forward and one backward; :class:`SparseAdjacency`
    runs its eager products through it, and so do the propagations that hold a
    ``torch.sparse`` pair themselves.
    """

    @staticmethod
    def forward(ctx: Any, adj: Tensor, adj_t: Tensor, x: Tensor) -> Tensor:  # type: ignore[override]
        """``adj @ x``; keeps ``adj_t`` for the backward pass."""
        ctx.save_for_backward(adj_t)
        return torch.sparse.mm(adj, x)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tuple[Optional[Tensor], ...]:  # type: ignore[override]
        """``adj_t @ grad`` for ``x``; no gradient for the matrices."""
        (adj_t,) = ctx.saved_tensors
        return None, None, torch.sparse.mm(adj_t, grad)


@torch.library.custom_op("dhmrec_pyg::csr_mm", mutates_args=())
def csr_mm(crow: Tensor, col: Tensor, value: Tensor, crow_t: Tensor, col_t: Tensor, value_t: Tensor,
           x: Tensor) -> Tensor:
    """``A @ x`` for ``A`` in CSR (``crow``, ``col``, ``value``; ``x.size(0)`` columns).

    ``crow_t``, ``col_t``, ``value_t`` are ``A``'s transpose in CSR, used by the backward
    pass (pass the same tensors again for a symmetric ``A``). No gradient reaches the values.
    """
    return _csr_product(crow, col, value, x)


@csr_mm.register_fake
def _csr_mm_fake(crow: Tensor, col: Tensor, value: Tensor, crow_t: Tensor, col_t: Tensor, value_t: Tensor,
                 x: Tensor) -> Tensor:
    return x.new_empty((crow.size(0) - 1, x.size(1)))


def _csr_mm_setup(ctx: Any, inputs: Tuple[Tensor, ...], output: Tensor) -> None:
    ctx.save_for_backward(*inputs[:6])


def _csr_mm_backward(ctx: Any, grad: Tensor) -> Tuple[Optional[Tensor], ...]:
    crow, col, value, crow_t, col_t, value_t = ctx.saved_tensors
    return None, None, None, None, None, None, csr_mm(crow_t, col_t, value_t, crow, col, value, grad)


csr_mm.register_autograd(_csr_mm_backward, setup_context=_csr_mm_setup)


@torch.library.custom_op("dhmrec_pyg::coo_mm", mutates_args=())
def coo_mm(index: Tensor, value: Tensor, index_t: Tensor, value_t: Tensor, x: Tensor, num_rows: int) -> Tensor:
    """``A @ x`` for a coalesced COO ``A`` (``[2, nnz]`` ``index``, ``value``) with ``num_rows`` rows.

    ``index_t``, ``value_t``: ``A``'s transpose, coalesced, for the backward pass (the same
    tensors again for a symmetric ``A``). No gradient reaches the values.
    """
    return _coo_product(index, value, x, num_rows)


@coo_mm.register_fake
def _coo_mm_fake(index: Tensor, value: Tensor, index_t: Tensor, value_t: Tensor, x: Tensor,
                 num_rows: int) -> Tensor:
    return x.new_empty((num_rows, x.size(1)))


def _coo_mm_setup(ctx: Any, inputs: Tuple[Any, ...], output: Tensor) -> None:
    ctx.save_for_backward(*inputs[:4])
    ctx.num_cols = inputs[4].size(0)


def _coo_mm_backward(ctx: Any, grad: Tensor) -> Tuple[Optional[Tensor], ...]:
    index, value, index_t, value_t = ctx.saved_tensors
    return None, None, None, None, coo_mm(index_t, value_t, index, value, grad, ctx.num_cols), None


coo_mm.register_autograd(_coo_mm_backward, setup_context=_coo_mm_setup)


class SparseAdjacency(nn.Module):
    r"""A fixed weighted adjacency ``adj_t`` (row ``i``: the messages node ``i`` receives) that
    :class:`~dhmrec_pyg.nn.LightGCNConv` multiplies without converting it on every backward
    pass, and that ``torch.compile(..., fullgraph=True)`` traces.

    It holds the matrix in CSR (or COO) form as plain tensors, registered as non-persistent
    buffers, together with its transpose for the backward pass: built once here, or, for a
    ``symmetric`` matrix (a normalised user-item adjacency :math:`D^{-1/2} A D^{-1/2}` of an
    undirected graph), the matrix itself. Gradients flow to the dense operand only; the
    weights are constants.

    Args:
        adj: a ``torch.sparse`` matrix, COO or CSR (e.g. from
            :func:`~dhmrec_pyg.nn.normalized_adjacency` or
            :func:`~dhmrec_pyg.nn.to_sparse_adjacency`); its layout is kept.
        symmetric: ``adj`` equals its transpose; only set it when it does (the backward pass
            would otherwise be wrong).

    Example:
        >>> adj = SparseAdjacency(normalized_adjacency(edge_index, num_users, num_items), symmetric=True)
        >>> out = LightGCNConv()(x, adj)            # or adj @ x
    """

    def __init__(self, adj: Tensor, symmetric: bool = False) -> None:
        super().__init__()
        if not isinstance(adj, Tensor) or adj.layout not in (torch.sparse_csr, torch.sparse_coo):
            raise TypeError(f"SparseAdjacency needs a torch.sparse COO or CSR matrix, got {type(adj).__name__}")
        if adj.dim() != 2:
            raise ValueError(f"SparseAdjacency needs a 2-d matrix, got shape {tuple(adj.shape)}")
        if symmetric and adj.size(0) != adj.size(1):
            raise ValueError(f"a symmetric adjacency must be square, got shape {tuple(adj.shape)}")
        self.symmetric = bool(symmetric)
        self.layout = "csr" if adj.layout == torch.sparse_csr else "coo"
        self.shape = (int(adj.size(0)), int(adj.size(1)))
        transposed = None if symmetric else _transpose(adj)
        for suffix, matrix in (("", adj), ("_t", transposed)):
            if matrix is not None:
                for name, part in _components(matrix).items():
                    self.register_buffer(name + suffix, part, persistent=False)

    @property
    def nnz(self) -> int:
        """Number of stored entries."""
        return int(self.value.numel())

    def matmul(self, x: Tensor) -> Tensor:
        """``adj @ x`` for a dense ``[num_cols, F]`` matrix ``x``; differentiable in ``x``."""
        if x.size(0) != self.shape[1]:
            raise ValueError(f"adjacency of shape {self.shape} cannot multiply {x.size(0)} rows")
        # The custom operators are what the compiler traces; eagerly, the same products
        # run on torch.sparse views of the buffers, built once (per device move), through a
        # plain autograd function: one operator forward and one backward.
        if torch.compiler.is_compiling():
            if self.layout == "csr":
                t = (self.crow, self.col, self.value) if self.symmetric else (self.crow_t, self.col_t, self.value_t)
                return csr_mm(self.crow, self.col, self.value, *t, x)
            t = (self.index, self.value) if self.symmetric else (self.index_t, self.value_t)
            return coo_mm(self.index, self.value, *t, x, self.shape[0])
        return PairedSpMM.apply(*self._eager_matrices(), x)

    def _eager_matrices(self) -> Tuple[Tensor, Tensor]:
        """The matrix and its transpose as ``torch.sparse`` tensors over the current buffers
        (cached; rebuilt when the buffers are replaced, e.g. by ``.to(device)``)."""
        cache = self.__dict__.get("_eager_cache")
        if cache is None or cache[0] is not self.value:
            adj = self.to_torch_sparse()
            adj_t = adj if self.symmetric else self._transpose_sparse()
            cache = self.__dict__["_eager_cache"] = (self.value, adj, adj_t)
        return cache[1], cache[2]

    def _transpose_sparse(self) -> Tensor:
        """The transpose, from its buffers, as a ``torch.sparse`` tensor of the layout."""
        shape = (self.shape[1], self.shape[0])
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=_CSR_BETA)
            if self.layout == "csr":
                return torch.sparse_csr_tensor(self.crow_t, self.col_t, self.value_t, shape, check_invariants=False)
            return torch.sparse_coo_tensor(self.index_t, self.value_t, shape, is_coalesced=True,
                                           check_invariants=False)

    def forward(self, x: Tensor) -> Tensor:
        """Same as :meth:`matmul`."""
        return self.matmul(x)

    def __matmul__(self, x: Tensor) -> Tensor:
        return self.matmul(x)

    def to_torch_sparse(self) -> Tensor:
        """The matrix as a ``torch.sparse`` tensor of its layout (sharing the buffers)."""
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=_CSR_BETA)
            if self.layout == "csr":
                return torch.sparse_csr_tensor(self.crow, self.col, self.value, self.shape, check_invariants=False)
            return torch.sparse_coo_tensor(self.index, self.value, self.shape, is_coalesced=True,
                                           check_invariants=False)

    def to_dense(self) -> Tensor:
        """The matrix as a dense tensor (for tests and small graphs)."""
        return self.to_torch_sparse().to_dense()

    def extra_repr(self) -> str:
        return f"shape={self.shape}, nnz={self.nnz}, layout={self.layout}, symmetric={self.symmetric}"


def _components(adj: Tensor) -> Dict[str, Tensor]:
    """Index and value tensors of a CSR (``crow``, ``col``, ``value``) or COO (``index``, ``value``)
    matrix, as tensors of their own: the compiler cannot trace views of a sparse tensor."""
    if adj.layout == torch.sparse_csr:
        return {"crow": adj.crow_indices().clone(), "col": adj.col_indices().clone(), "value": adj.values().clone()}
    adj = adj.coalesce()
    return {"index": adj.indices().clone(), "value": adj.values().clone()}


def _transpose(adj: Tensor) -> Tensor:
    """The transpose of a CSR or COO matrix, in the same layout."""
    if adj.layout == torch.sparse_csr:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=_CSR_BETA)
            return adj.t().to_sparse_csr()
    return adj.t().coalesce()
