"""Multi-layer LightGCN propagation with layer averaging."""
from __future__ import annotations

from typing import Optional, Tuple, Union

from torch import Tensor, nn
from torch_geometric.typing import Adj

from dhmrec_pyg.nn.lightgcn_conv import LightGCNConv
from dhmrec_pyg.nn.sparse import PairedSpMM, SparseAdjacency


class LightGCNPropagation(nn.Module):
    r"""Stack of :class:`LightGCNConv` hops, averaged over layers.

    Equations (7) and (8) of the DHMRec paper (and LightGCN's layer
    combination):

    .. math::
        \mathbf{E}^{(l)} = \tilde{A}\, \mathbf{E}^{(l-1)}, \qquad
        \mathbf{E} = \frac{1}{L+1} \sum_{l=0}^{L} \mathbf{E}^{(l)}

    where :math:`\tilde{A} = D^{-1/2} A D^{-1/2}` is passed in already
    normalised. With ``num_layers=0`` it returns its input.

    Args:
        num_layers: number of hops :math:`L`.

    Shapes:
        - **input:** node features :math:`(|\mathcal{V}|, F)` and an adjacency
          accepted by :class:`LightGCNConv`
        - **output:** node features :math:`(|\mathcal{V}|, F)`
    """

    def __init__(self, num_layers: int) -> None:
        super().__init__()
        if num_layers < 0:
            raise ValueError(f"num_layers must be >= 0, got {num_layers}")
        self.num_layers = num_layers
        self.conv = LightGCNConv()

    def forward(self, x: Tensor, adj: Union[Adj, SparseAdjacency], edge_weight: Optional[Tensor] = None) -> Tensor:
        """Average of the input and its ``num_layers`` propagated versions."""
        out = x
        h = x
        for _ in range(self.num_layers):
            h = self.conv(h, adj, edge_weight)
            out = out + h
        return out / (self.num_layers + 1)

    def from_items(
        self, items: Tensor, adj_ui: Tensor, adj_iu: Tensor, with_users: bool = True
    ) -> Tuple[Optional[Tensor], Tensor]:
        r"""The same layer average when the users start as the aggregate of their items.

        For the normalised bipartite graph :math:`\tilde{A} = \begin{pmatrix} 0 & R \\
        R^\top & 0 \end{pmatrix}` (:math:`R` = ``adj_ui``, the user-item block, and
        :math:`R^\top` = ``adj_iu``) and the start :math:`\mathbf{u}^{(0)} = R\,
        \mathbf{i}^{(0)}` (DHMRec's modality views: users "initialized by
        aggregating from interacted items"), one hop gives
        :math:`\mathbf{u}^{(l)} = R\,\mathbf{i}^{(l-1)}` and
        :math:`\mathbf{i}^{(l)} = R^\top \mathbf{u}^{(l-1)}`, so by induction
        :math:`\mathbf{u}^{(l)} = \mathbf{u}^{(l-1)}` for odd :math:`l` and
        :math:`\mathbf{i}^{(l)} = \mathbf{i}^{(l-1)}` for even :math:`l`. Every
        other product is a repeat: this computes the forward pass's average with
        one sparse product per layer (plus the start) instead of two, and skips
        the last user product when only the items are wanted. The values are
        those of ``forward(cat([R i, i]), A)``.

        Args:
            items: ``[I, F]`` layer-0 item features :math:`\mathbf{i}^{(0)}`.
            adj_ui: sparse ``[U, I]`` block :math:`R` of the normalised adjacency.
            adj_iu: its ``[I, U]`` transpose.
            with_users: also return the users' average (else ``None``).

        Returns:
            ``(users, items)``: the ``[U, F]`` and ``[I, F]`` layer averages.
        """
        user = PairedSpMM.apply(adj_ui, adj_iu, items)  # u^(0)
        item = items
        user_sum: Optional[Tensor] = user if with_users else None
        item_sum = items
        for layer in range(1, self.num_layers + 1):
            if layer % 2 == 1:  # u^(l) = u^(l-1)
                item = PairedSpMM.apply(adj_iu, adj_ui, user)
            elif with_users or layer < self.num_layers:  # i^(l) = i^(l-1)
                user = PairedSpMM.apply(adj_ui, adj_iu, item)
            item_sum = item_sum + item
            if user_sum is not None:
                user_sum = user_sum + user
        scale = 1.0 / (self.num_layers + 1)
        return (None if user_sum is None else user_sum * scale), item_sum * scale

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}(num_layers={self.num_layers})"
