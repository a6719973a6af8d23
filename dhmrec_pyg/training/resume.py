"""Resuming a run exactly: what a checkpoint captures, how it is restored, and the run folder.

- :class:`TrainingState`: the progress a run makes (epoch, early stopping, best weights,
  history) next to the model, optimizer and weight averages it trains; captured into a
  checkpoint dict (:mod:`dhmrec_pyg.training.checkpoint` for the file format) and restored
  from one.
- :class:`ResumePoint`: a position inside an epoch (batches trained, their loss sums and
  seconds); a checkpoint written mid-epoch continues there.
- :class:`RunFolder`: the files of a run folder (``config.yaml``, ``history.csv``,
  ``best.pt``, ``checkpoint.pt``, ``metrics.json``, ``weights.json``), written by rank 0 only,
  atomically, losing nothing already there (:mod:`~dhmrec_pyg.training.folder`).
"""
from __future__ import annotations

import copy
import itertools
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterator, Optional, Tuple

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
from dhmrec_pyg.training.config import load_run_config
from dhmrec_pyg.training.ema import WeightAverage
from dhmrec_pyg.training.execution import load_optimizer_state
from dhmrec_pyg.training.fingerprint import DataChangedError, fingerprint_changes
from dhmrec_pyg.training.folder import BEST_NAME, set_aside, staging_folder, start_staging
from dhmrec_pyg.training.history import EarlyStopping, History
from dhmrec_pyg.training.weights import MANIFEST_NAME, save_weights

__all__ = ["RUN_FILES", "ResumePoint", "RunFolder", "TrainingState"]

#: The files a run writes in its folder.
RUN_FILES = ("config.yaml", "history.csv", "metrics.json", "best.pt", CHECKPOINT_NAME, MANIFEST_NAME)


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

    Nothing in the folder is lost (:mod:`~dhmrec_pyg.training.folder`): a fresh run in a folder
    that holds a run is built in a staging folder beside it, which replaces the folder once the
    first checkpoint is written (:attr:`path` is the staging folder until then); a resumed run
    without a checkpoint moves the results it finds to ``previous-<time>/`` before it starts over;
    the temporaries of writes a kill cut short (and the staging folder of a replacing run killed
    before its first checkpoint) are removed at the start. ``best.pt`` and
    ``checkpoint.pt`` are written with their SHA-256 in ``weights.json``
    (:mod:`~dhmrec_pyg.training.weights`).

    Args:
        path: the folder.
        config_text: the ``config.yaml`` text.
        config_sha256: the digest a checkpoint of this run carries
            (:func:`~dhmrec_pyg.training.checkpoint.config_digest`).
        is_main: whether this process writes (rank 0).
        fingerprint: the data set's fingerprint (:func:`~dhmrec_pyg.training.fingerprint.data_fingerprint`),
            compared with the one the folder recorded when a run is resumed; ``None``: not compared.

    Attributes:
        path: where the run's files are written now.
        final: the run folder.
    """

    def __init__(self, path: Path, config_text: str, config_sha256: str, is_main: bool = True,
                 fingerprint: Optional[Dict[str, Any]] = None) -> None:
        self.path = self.final = Path(path)
        self.config_text, self.config_sha256, self.is_main = config_text, config_sha256, is_main
        self.fingerprint = fingerprint
        self._staging: Optional[Path] = None

    @property
    def checkpoint_path(self) -> Path:
        """``checkpoint.pt`` in the folder."""
        return self.path / CHECKPOINT_NAME

    @property
    def finished(self) -> bool:
        """Whether the folder holds a finished run (its ``metrics.json``)."""
        return (self.final / "metrics.json").is_file()

    def open(self, resume: bool, allow_changed_data: bool = False) -> Optional[Dict[str, Any]]:
        """Prepare the folder for training; the checkpoint to continue from, if any.

        Without ``resume`` a new run starts (in a staging folder when the folder holds a run,
        :func:`~dhmrec_pyg.training.folder.start_staging`) and ``config.yaml`` is written. With
        ``resume`` the data set is compared with the one the folder recorded, then the checkpoint
        is read (on every process) when there is one; without one (a run killed before its first
        epoch ended) the results found are moved aside and the run starts over, keeping the
        folder's ``config.yaml``.

        Raises:
            CheckpointError: the checkpoint is damaged, unreadable or belongs to another config.
            DataChangedError: with ``resume``, the data set is not the one the folder recorded
                (unless ``allow_changed_data``).
            ConfigError: without ``resume``, the folder holds files but no run, or holds the
                working directory.
        """
        if self.is_main:
            dfiles.remove_temporaries(self.final)
            if resume:  # what a replacing run killed before its first checkpoint left beside the folder
                shutil.rmtree(staging_folder(self.final), ignore_errors=True)
        if not resume:
            if self.is_main:
                self._staging = start_staging(self.final)
                self.path = self._staging or self.final
                self.path.mkdir(parents=True, exist_ok=True)
                dfiles.write_text(self.path / "config.yaml", self.config_text)
            return None
        self._check_data(allow_changed_data)
        if self.checkpoint_path.is_file():
            return load_checkpoint(self.checkpoint_path, self.config_sha256)
        if self.is_main:
            self.path.mkdir(parents=True, exist_ok=True)
            aside = set_aside(self.path)
            if aside is not None:
                print(f"{self.path}: no checkpoint to continue from; the results found were moved to {aside}",
                      file=sys.stderr)
            if not (self.path / "config.yaml").is_file():
                dfiles.write_text(self.path / "config.yaml", self.config_text)
        return None

    def _check_data(self, allow_changed_data: bool) -> None:
        """Refuse (or, allowed, note) a data set other than the one the folder's config.yaml recorded."""
        config = self.final / "config.yaml"
        if self.fingerprint is None or not config.is_file():
            return
        recorded = (load_run_config(config)["data"] or {}).get("fingerprint")
        changes = fingerprint_changes(recorded, self.fingerprint) if recorded else []
        if changes and not allow_changed_data:
            raise DataChangedError(f"{config}: the data set is not the one this run was trained on: "
                                   f"{'; '.join(changes)}", changes)
        if changes and self.is_main:
            print(f"{config}: continuing on a changed data set ({'; '.join(changes)})", file=sys.stderr)

    def start(self, resume: bool, state: TrainingState, generator: torch.Generator,
              allow_changed_data: bool = False) -> Optional[ResumePoint]:
        """:meth:`open` the folder and restore its checkpoint, if any, into ``state`` and the
        sampling ``generator`` (:meth:`TrainingState.restore`); the position inside the epoch to
        continue from. Every process has read the checkpoint when this returns."""
        checkpoint = self.open(resume, allow_changed_data)
        point = None if checkpoint is None else state.restore(checkpoint, generator, self.checkpoint_path)
        ddist.barrier()  # every rank has read the checkpoint before rank 0 may write a new one
        return point

    def save_checkpoint(self, state: TrainingState, epoch: int, batch: int, generator_state: torch.Tensor,
                        point: Optional[ResumePoint] = None) -> None:
        """Write ``checkpoint.pt``: ``state`` at ``batch`` of ``epoch`` (:meth:`TrainingState.capture`);
        the first one of a run built in a staging folder puts that folder in the run folder's place."""
        if self.is_main:
            ck = state.capture(self.config_sha256, epoch, batch, generator_state, point)
            save_checkpoint(self.checkpoint_path, ck)
            if self._staging is not None:
                dfiles.replace_folder(self._staging, self.final)
                self.path, self._staging = self.final, None

    def abandon(self) -> None:
        """A run that fails before its first checkpoint: remove its staging folder (the folder
        it was to replace stays as it was)."""
        if self._staging is not None:
            shutil.rmtree(self._staging, ignore_errors=True)
            self.path, self._staging = self.final, None

    def save_epoch(self, state: TrainingState, improved: bool, generator_state: torch.Tensor) -> None:
        """After an epoch: ``best.pt`` when it ``improved``, ``history.csv``, and ``checkpoint.pt``
        at the start of the next epoch, ``state.epoch`` (``generator_state``: the sampling
        generator's state)."""
        if not self.is_main:
            return
        if improved:
            save_weights(self.path / BEST_NAME, state.best_state)
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


def open_run_folder(cfg: Any, model_config: Any, data: Any, out_dir: Optional[Path], is_main: bool,
                    edge_type: Any = None, *, user: Optional[str] = None, item: Optional[str] = None
                    ) -> Tuple[str, Optional["RunFolder"]]:
    """What a run writes about itself: the text of its ``config.yaml`` (the configs and where the
    data came from, with the data set's fingerprint when there is a run folder) and, with
    ``out_dir``, its :class:`RunFolder` (checkpoints tied to the configs' identity)."""
    from dhmrec_pyg.training.checkpoint import config_digest
    from dhmrec_pyg.training.config import dump_config, identity_text
    from dhmrec_pyg.training.fingerprint import data_fingerprint
    from dhmrec_pyg.training.source import data_source

    source = data_source(data, edge_type, user=user, item=item)
    fingerprint = None if out_dir is None else data_fingerprint(data)
    if fingerprint is not None:
        source["fingerprint"] = fingerprint
    text = dump_config(cfg, model_config, source)
    if out_dir is None:
        return text, None
    # A checkpoint is tied to what defines the run, not to how it is watched or where it runs.
    digest = config_digest(identity_text(cfg, model_config))
    return text, RunFolder(Path(out_dir), text, digest, is_main, fingerprint)


def finished_results(folder: "RunFolder", model: Any, state: "TrainingState", is_main: bool) -> Dict[str, Any]:
    """A finished run's ``metrics.json``, with ``model`` holding its best weights (checked, and
    restored from the checkpoint when damaged: :func:`~dhmrec_pyg.training.folder.finished_best`)."""
    import json

    from dhmrec_pyg.training.folder import finished_best

    weights, note = finished_best(folder.final, is_main)
    if note is not None and is_main:
        print(note, file=sys.stderr)
    model.load_state_dict(weights)
    state.best_state = weights
    return json.loads((folder.final / "metrics.json").read_text(encoding="utf-8"))
