"""Resuming a run exactly: what a checkpoint captures, how it is restored, and the run folder.

- :class:`TrainingState`: the progress a run makes (epoch, early stopping, best weights,
  history) next to the model, optimizer and weight averages it trains; captured into a
  checkpoint dict (:mod:`dhmrec_pyg.training.checkpoint` for the file format) and restored
  from one.
- :class:`ResumePoint`: a position inside an epoch (batches trained, their loss sums and
  seconds); a checkpoint written mid-epoch continues there.
- :class:`RunFolder`: the files of a run folder (``config.yaml``, ``history.csv``,
  ``best.pt``, ``checkpoint.pt``, ``metrics.json``), written by rank 0 only, atomically.
"""
from __future__ import annotations

import copy
import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterator, Optional

import torch
from torch import nn

from dhmrec_pyg import files as dfiles
from dhmrec_pyg.training import distributed as ddist
from dhmrec_pyg.training.checkpoint import (
    CHECKPOINT_NAME,
    capture_rng_state,
    load_checkpoint,
    restore_rng_state,
    save_checkpoint,
)
from dhmrec_pyg.training.ema import WeightAverage
from dhmrec_pyg.training.execution import load_optimizer_state
from dhmrec_pyg.training.history import EarlyStopping, History

__all__ = ["RUN_FILES", "ResumePoint", "RunFolder", "TrainingState"]

#: Files of a run folder that a fresh (not resumed) run replaces.
RUN_FILES = ("config.yaml", "history.csv", "metrics.json", "best.pt", CHECKPOINT_NAME)


@dataclass
class ResumePoint:
    """A position inside an epoch: where a mid-epoch checkpoint continues.

    Attributes:
        batch: mini-batches of the epoch already trained (0: the epoch's start).
        sums: the sums of every loss term over those batches.
        n: how many batches the sums cover.
        train_seconds: the epoch's training seconds so far.
        rng: the global RNG states when the checkpoint was written (``None``: not restored).
    """

    batch: int = 0
    sums: Dict[str, float] = field(default_factory=dict)
    n: int = 0
    train_seconds: float = 0.0
    rng: Optional[Dict[str, Any]] = None

    @classmethod
    def from_checkpoint(cls, ck: Dict[str, Any]) -> "ResumePoint":
        """The position a checkpoint stopped at (its ``batch``, ``partial`` and ``rng``)."""
        partial = ck["partial"]
        return cls(int(ck["batch"]), {k: float(v) for k, v in partial["sums"].items()},
                   int(partial["n"]), float(partial["train_seconds"]), ck["rng"])

    def partial(self) -> Dict[str, Any]:
        """The checkpoint's ``partial`` entry: ``sums``, ``n`` and ``train_seconds``."""
        return {"sums": dict(self.sums), "n": self.n, "train_seconds": self.train_seconds}

    def skip(self, batches: Iterator[Any]) -> None:
        """Consume the batches already trained from an epoch's batches (the sampler draws the
        whole epoch up front), then restore the global RNG states of the checkpoint."""
        for _ in itertools.islice(batches, self.batch):
            pass
        if self.rng is not None:
            restore_rng_state(self.rng)


class TrainingState:
    """What a checkpoint carries about a run, besides the sampler's position.

    Args:
        model, optimizer: the model and its optimizer (their state dicts are captured).
        ema: the weight averages, or ``None`` without averaging.
        patience: early stopping's patience.

    Attributes:
        epoch: the next epoch to train (0-based).
        early: the early-stopping state.
        best_state: the best epoch's weights (a state dict), ``None`` before the first epoch.
        history: the rows of ``history.csv``.
    """

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer, ema: Optional[WeightAverage],
                 patience: int) -> None:
        self.model, self.optimizer, self.ema = model, optimizer, ema
        self.epoch = 0
        self.early = EarlyStopping(patience)
        self.best_state: Optional[Dict[str, torch.Tensor]] = None
        self.history = History()

    def record(self, epoch: int, row: Dict[str, float], value: float, valid: Dict[str, float]) -> bool:
        """Record an epoch: its validation ``value`` for early stopping (copying the model's
        weights when it is the best so far) and its history ``row``; whether it improved."""
        improved = self.early.step(epoch, value, valid)
        if improved:
            self.best_state = copy.deepcopy(self.model.state_dict())
        self.history.append(row)
        return improved

    def capture(self, config_sha256: str, epoch: int, batch: int, generator_state: torch.Tensor,
                point: Optional[ResumePoint] = None) -> Dict[str, Any]:
        """The checkpoint dict at ``batch`` of ``epoch`` (``point``: the partial epoch's sums;
        ``generator_state``: the sampling generator at the epoch's start)."""
        return {
            "config_sha256": config_sha256,
            "epoch": int(epoch),
            "batch": int(batch),
            "epoch_generator_state": generator_state.clone(),
            "partial": (point or ResumePoint()).partial(),
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "rng": capture_rng_state(),
            "early_stopping": self.early.state_dict(),
            "best_model": self.best_state,
            "history": [dict(r) for r in self.history.rows],
            "ema": None if self.ema is None else self.ema.averages,
        }

    def restore(self, ck: Dict[str, Any], generator: torch.Generator, where: Path) -> Optional[ResumePoint]:
        """Restore a checkpoint (from :meth:`capture`) and the sampling ``generator``; the
        position inside the epoch to continue from, or ``None`` at an epoch's start (the
        global RNG states are then restored here).

        Raises:
            CheckpointError: naming ``where``, when the run averages weights and the checkpoint
                holds no averages.
        """
        self.model.load_state_dict(ck["model"])
        load_optimizer_state(self.optimizer, ck["optimizer"])
        self.history = History(ck["history"])
        self.early.load_state_dict(ck["early_stopping"])
        self.best_state = ck["best_model"]
        self.epoch = int(ck["epoch"])
        if self.ema is not None:
            self.ema.load(ck.get("ema"), where)
        generator.set_state(ck["epoch_generator_state"])
        if int(ck["batch"]) > 0:
            return ResumePoint.from_checkpoint(ck)
        restore_rng_state(ck["rng"])
        return None


class RunFolder:
    """The files of a run folder; only the main process (``is_main``) writes.

    Args:
        path: the folder.
        config_text: the ``config.yaml`` text.
        config_sha256: the digest a checkpoint of this run carries
            (:func:`~dhmrec_pyg.training.checkpoint.config_digest`).
        is_main: whether this process writes (rank 0).
    """

    def __init__(self, path: Path, config_text: str, config_sha256: str, is_main: bool = True) -> None:
        self.path, self.config_text, self.config_sha256, self.is_main = Path(path), config_text, config_sha256, is_main

    @property
    def checkpoint_path(self) -> Path:
        """``checkpoint.pt`` in the folder."""
        return self.path / CHECKPOINT_NAME

    def open(self, resume: bool) -> Optional[Dict[str, Any]]:
        """Prepare the folder for training; the checkpoint to continue from, if any.

        Without ``resume`` every file of :data:`RUN_FILES` goes (a stale checkpoint must never
        be resumed with a new config) and ``config.yaml`` is written. With ``resume`` the
        checkpoint is read (on every process) when there is one; without one (a run killed
        before its first epoch ended) the folder starts over, keeping its ``config.yaml``.

        Raises:
            CheckpointError: the checkpoint is unreadable or belongs to another config.
        """
        if resume and self.checkpoint_path.is_file():
            return load_checkpoint(self.checkpoint_path, self.config_sha256)
        if self.is_main:
            self.path.mkdir(parents=True, exist_ok=True)
            for name in RUN_FILES[1:] if resume else RUN_FILES:
                (self.path / name).unlink(missing_ok=True)
            if not resume or not (self.path / "config.yaml").is_file():
                dfiles.write_text(self.path / "config.yaml", self.config_text)
        return None

    def start(self, resume: bool, state: TrainingState, generator: torch.Generator) -> Optional[ResumePoint]:
        """:meth:`open` the folder and restore its checkpoint, if any, into ``state`` and the
        sampling ``generator`` (:meth:`TrainingState.restore`); the position inside the epoch to
        continue from. Every process has read the checkpoint when this returns."""
        checkpoint = self.open(resume)
        point = None if checkpoint is None else state.restore(checkpoint, generator, self.checkpoint_path)
        ddist.barrier()  # every rank has read the checkpoint before rank 0 may write a new one
        return point

    def save_checkpoint(self, state: TrainingState, epoch: int, batch: int, generator_state: torch.Tensor,
                        point: Optional[ResumePoint] = None) -> None:
        """Write ``checkpoint.pt``: ``state`` at ``batch`` of ``epoch`` (:meth:`TrainingState.capture`)."""
        if self.is_main:
            ck = state.capture(self.config_sha256, epoch, batch, generator_state, point)
            save_checkpoint(self.checkpoint_path, ck)

    def save_epoch(self, state: TrainingState, improved: bool, generator_state: torch.Tensor) -> None:
        """After an epoch: ``best.pt`` when it ``improved``, ``history.csv``, and ``checkpoint.pt``
        at the start of the next epoch, ``state.epoch`` (``generator_state``: the sampling
        generator's state)."""
        if not self.is_main:
            return
        if improved:
            dfiles.save_tensors(self.path / "best.pt", state.best_state)
        state.history.write(self.path / "history.csv")
        self.save_checkpoint(state, state.epoch, 0, generator_state)

    def write_metrics(self, result: Dict[str, Any]) -> None:
        """Write ``metrics.json``."""
        if self.is_main:
            dfiles.write_json(self.path / "metrics.json", result)

    def intact_note(self, epoch: int) -> str:
        """What a failure in ``epoch`` leaves: the last good checkpoint, or none yet."""
        if self.checkpoint_path.is_file():
            return f"; the last good checkpoint {self.checkpoint_path} (from before epoch {epoch}) is intact"
        return "; no checkpoint was written yet (the failure came in the first epoch)"
