"""Multi-layer LightGCN propagation with layer averaging."""
from __future__ import annotations

from torch import Tensor, nn

from dhmrec_pyg.nn.lightgcn_conv import LightGCNConv


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

    def forward(self, x: Tensor, adj, edge_weight: Tensor | None = None) -> Tensor:
        """Average of the input and its ``num_layers`` propagated versions."""
        out = x
        h = x
        for _ in range(self.num_layers):
            h = self.conv(h, adj, edge_weight)
            out = out + h
        return out / (self.num_layers + 1)

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}(num_layers={self.num_layers})"
