"""A moving average of a model's weights (Polyak averaging, ``TrainConfig.ema_decay``).

After every optimiser step each averaged tensor moves ``1 - decay`` of the way to its
parameter: ``average <- average + (1 - decay) * (param - average)``. The trainer evaluates,
selects and saves the averages (:meth:`WeightAverage.swapped_in`) and trains on its own
parameters.
"""
from __future__ import annotations

import contextlib
from typing import Iterator, List, Optional, Sequence

import torch
from torch import nn

from dhmrec_pyg.training.checkpoint import CheckpointError

__all__ = ["WeightAverage"]


class WeightAverage:
    """Exponential moving averages of a model's floating-point parameters.

    Args:
        model: the model; its floating-point parameters are averaged, starting from their
            current values.
        decay: the weight of the old average, in ``(0, 1)``.

    Attributes:
        averages: one tensor per averaged parameter, in ``model.parameters()`` order.
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"decay must be in (0, 1), got {decay}")
        self.decay = decay
        self._params = [p for p in model.parameters() if p.is_floating_point()]
        self.averages: List[torch.Tensor] = [p.detach().clone() for p in self._params]

    @torch.no_grad()
    def update(self) -> None:
        """Move every average ``1 - decay`` of the way to its parameter (after an optimiser step)."""
        weight = 1.0 - self.decay
        for average, param in zip(self.averages, self._params):
            average.lerp_(param.detach(), weight)

    @contextlib.contextmanager
    def swapped_in(self) -> Iterator[None]:
        """Inside the block the model holds the averages; its trained parameters come back after."""
        with torch.no_grad():
            trained = [p.detach().clone() for p in self._params]
            for param, average in zip(self._params, self.averages):
                param.copy_(average)
        try:
            yield
        finally:
            with torch.no_grad():
                for param, value in zip(self._params, trained):
                    param.copy_(value)

    def load(self, saved: Optional[Sequence[torch.Tensor]], where: object) -> None:
        """Copy saved averages (a checkpoint's ``ema`` entry) into :attr:`averages`.

        Raises:
            CheckpointError: naming ``where`` (the checkpoint), when ``saved`` is missing or
                holds another number of tensors.
        """
        if saved is None or len(saved) != len(self.averages):
            raise CheckpointError(f"{where}: no moving averages of the parameters for ema_decay={self.decay}")
        for average, value in zip(self.averages, saved):
            average.copy_(value)
