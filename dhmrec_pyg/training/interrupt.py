"""How training stops before its end.

- Ctrl-C (SIGINT), or :meth:`StopRequest.request`, asks the trainer to stop after the current
  mini-batch; it writes a checkpoint and raises :class:`TrainingInterrupted`. A second Ctrl-C
  aborts at once (``KeyboardInterrupt``).
- A NaN or infinite loss term raises :class:`NonFiniteLossError` before the optimizer step,
  and writes nothing.
"""
from __future__ import annotations

import contextlib
import math
import signal
import sys
import threading
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import torch

from dhmrec_pyg.training.checkpoint import CHECKPOINT_NAME

__all__ = ["NonFiniteLossError", "StopRequest", "TrainingInterrupted", "non_finite_error"]


class TrainingInterrupted(RuntimeError):
    """Training stopped on SIGINT (Ctrl-C) after writing a checkpoint.

    Attributes:
        run_dir: the run folder, to pass to ``dhmrec train --resume``.
        epoch: the epoch the checkpoint continues (0-based).
        batch: mini-batches of that epoch already trained.
    """

    def __init__(self, run_dir: Path, epoch: int, batch: int) -> None:
        where = f"epoch {epoch}, batch {batch}" if batch else f"the start of epoch {epoch}"
        super().__init__(
            f"interrupted: checkpoint written at {where} ({Path(run_dir) / CHECKPOINT_NAME})"
        )
        self.run_dir, self.epoch, self.batch = Path(run_dir), epoch, batch


class NonFiniteLossError(RuntimeError):
    """A loss term became NaN or infinite; the message names epoch, batch and term.

    Raised before the optimizer step, so the weights stay finite, and nothing is
    written: the last checkpoint on disk (from the previous epoch) stays intact.

    Attributes:
        epoch: the epoch (0-based).
        batch: the mini-batch of that epoch (0-based).
        term: the name of the loss term (a key of the model's ``loss`` dict).
    """

    def __init__(self, message: str, epoch: int = -1, batch: int = -1, term: str = "") -> None:
        super().__init__(message)
        self.epoch, self.batch, self.term = epoch, batch, term


def non_finite_error(terms: Mapping[str, torch.Tensor], bad: Sequence[str], epoch: int, batch: int,
                     distributed: bool = False, note: str = "") -> NonFiniteLossError:
    """The error for a batch whose loss terms ``bad`` are not finite (on this or, with
    ``distributed``, another rank). It names the component that broke, not the total it
    spoiled, and ends with ``note`` (what happened to the checkpoint)."""
    name = next((b for b in bad if b != "loss"), bad[0])
    value = float(terms[name].detach().float().sum())
    if distributed and math.isfinite(value):
        value = math.nan  # broke on another rank
    also = [b for b in bad if b != name]
    others = f" (also non-finite: {', '.join(map(repr, also))})" if also else ""
    return NonFiniteLossError(
        f"loss term {name!r} is {value} at epoch {epoch}, batch {batch}{others}; training stopped{note}",
        epoch, batch, name,
    )


class StopRequest:
    """A request to stop training after the current mini-batch.

    Set by :meth:`request`, or by Ctrl-C while :meth:`catching_sigint` is active.

    Attributes:
        requested: whether a stop was asked for.
    """

    def __init__(self) -> None:
        self.requested = False

    def request(self) -> None:
        """Ask for a stop (as Ctrl-C does)."""
        self.requested = True

    @contextlib.contextmanager
    def catching_sigint(self, enabled: bool = True) -> Iterator[None]:
        """Inside the block, the first Ctrl-C sets :attr:`requested` (with a note on stderr)
        and a second one raises ``KeyboardInterrupt``; the previous handler comes back after.

        Nothing is installed unless ``enabled`` and on the main thread (Python delivers signals
        there only); Ctrl-C then raises ``KeyboardInterrupt`` as usual.
        """
        if not enabled or threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = signal.signal(signal.SIGINT, self._on_sigint)
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, previous)

    def _on_sigint(self, signum: int, frame: Any) -> None:
        if self.requested:  # second Ctrl-C: stop at once
            signal.signal(signal.SIGINT, signal.default_int_handler)
            raise KeyboardInterrupt
        self.requested = True
        print("\ndhmrec: interrupt received: finishing the current batch and writing a checkpoint "
              "(Ctrl-C again to abort at once)", file=sys.stderr, flush=True)
