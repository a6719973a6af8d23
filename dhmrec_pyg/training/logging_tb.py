"""TensorBoard logging of a run (``TrainConfig.logger = "tensorboard"``).

:class:`TensorBoardLogger` is a :class:`~dhmrec_pyg.training.trainer.Trainer` callback: after every
epoch it writes that epoch's ``history.csv`` row as scalars to ``RUN/tensorboard/`` (global step:
the 0-based epoch), under these tags:

- ``train/<term>``: the mean loss terms (``train/loss``, ``train/bpr``, ``train/reg``, ...);
- ``valid/<metric>``: the validation metrics (``valid/recall@20``, ...);
- ``diag/<name>``: the model's diagnostics (DHMRec's ``diag_*`` columns);
- ``time/train_seconds``, ``time/eval_seconds``.

The run's hyper-parameters go in once, when the event folder starts: as TensorBoard's HParams
(every training and model option, lists and ``None`` as text) and as the text ``config`` (the
run's ``config.yaml``). ``history.csv`` is written as always; this adds the event files.

A resumed run appends a new event file to the same folder and writes each epoch once: it reads
which epochs the folder already holds (the ``train/loss`` tag, written last for every epoch),
writes from the first missing one (an epoch whose checkpoint was written before its scalars
were), and purges anything at or after that step left by the interrupted process (a partly
written epoch) so that TensorBoard shows one value per epoch. A run that starts over (no
checkpoint, or a new run in the folder) removes the folder's earlier event files first.

Needs the ``tensorboard`` extra (``pip install 'dhmrec_pyg[tensorboard]'``).
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional

from dhmrec_pyg.errors import ConfigError

__all__ = ["TENSORBOARD_DIR", "TensorBoardLogger", "hparam_values", "scalar_tag", "tensorboard_logger"]

#: The folder of a run folder that holds the event files.
TENSORBOARD_DIR: str = "tensorboard"

#: The tag written last for every epoch: an epoch whose marker is in the folder is complete.
_MARKER: str = "train/loss"

_NOT_SCALARS = ("epoch",)


def _summary_writer() -> Any:
    """``torch.utils.tensorboard.SummaryWriter``, or a one-line error naming the extra."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise ConfigError("TrainConfig.logger='tensorboard' needs the 'tensorboard' extra: "
                          "pip install 'dhmrec_pyg[tensorboard]'") from None
    return SummaryWriter


def scalar_tag(column: str) -> str:
    """The TensorBoard tag of a ``history.csv`` column: ``valid_recall@20`` -> ``valid/recall@20``,
    ``diag_user_mm_cosine`` -> ``diag/user_mm_cosine``, ``train_seconds`` -> ``time/train_seconds``,
    a loss term ``bpr`` -> ``train/bpr``."""
    for prefix, section in (("valid_", "valid"), ("diag_", "diag")):
        if column.startswith(prefix):
            return f"{section}/{column[len(prefix):]}"
    if column.endswith("_seconds"):
        return f"time/{column}"
    return f"train/{column}"


def hparam_values(train: Any, model: Any) -> Dict[str, Any]:
    """The run's options as HParams values (numbers, strings, booleans): training options
    ``train.<name>`` (the graph options ``train.graph.<name>``), model options ``model.<name>``;
    lists and ``None`` become text."""
    out: Dict[str, Any] = {}

    def put(prefix: str, values: Mapping[str, Any]) -> None:
        for name, value in values.items():
            if isinstance(value, Mapping):
                put(f"{prefix}{name}.", value)
            elif isinstance(value, (bool, int, float, str)):
                out[f"{prefix}{name}"] = value
            else:
                out[f"{prefix}{name}"] = str(value)

    put("train.", dataclasses.asdict(train))
    if model is not None and dataclasses.is_dataclass(model):
        put("model.", dataclasses.asdict(model))
    return out


def _event_files(folder: Path) -> List[Path]:
    return sorted(folder.glob("events.out.tfevents.*")) if folder.is_dir() else []


def _logged_epochs(folder: Path) -> List[int]:
    """The epochs whose :data:`_MARKER` scalar the folder's event files hold."""
    from tensorboard.backend.event_processing.event_accumulator import SCALARS, EventAccumulator

    events = EventAccumulator(str(folder), size_guidance={SCALARS: 0})
    events.Reload()
    return [int(e.step) for e in events.Scalars(_MARKER)] if _MARKER in events.Tags()["scalars"] else []


class TensorBoardLogger:
    """Trainer callback writing every epoch's row of ``history.csv`` to TensorBoard event files.

    The :class:`~dhmrec_pyg.training.trainer.Trainer` makes one when ``cfg.logger`` is
    ``"tensorboard"``, on the main process, for a run with a folder; see the module's docstring
    for the tags and how a resumed run continues the folder.

    Args:
        folder: the event folder (``RUN/tensorboard``).
        config_text: the run's ``config.yaml``, written as the text ``config``.
        hparams: the run's options (:func:`hparam_values`).
        metric: the validation metric the run selects on (the HParams metric), e.g. ``recall@20``.

    Raises:
        ConfigError: the ``tensorboard`` package is missing.
    """

    def __init__(self, folder: Path, config_text: str = "", hparams: Optional[Dict[str, Any]] = None,
                 metric: str = "recall@20") -> None:
        self._writer_class = _summary_writer()  # fails here, before training, without the package
        self.folder = Path(folder)
        self.config_text = config_text
        self.hparams = dict(hparams or {})
        self.metric = metric
        self._writer: Any = None

    def on_epoch_end(self, trainer: Any, epoch: int, row: Dict[str, float]) -> None:
        """Write ``row`` (the epoch just trained) and flush; the first call of a resumed run also
        writes the restored epochs the folder lacks (from ``trainer.history``)."""
        if self._writer is None:
            self._open(epoch, trainer.history)
        self._write_row(epoch, row)
        self._writer.flush()
        if trainer.state.epoch >= trainer.cfg.epochs or trainer.state.early.stopped:
            self.close()

    def close(self) -> None:
        """Flush and close the event file (the next epoch, if any, opens a new one)."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def _open(self, epoch: int, history: List[Dict[str, float]]) -> None:
        """Open a writer for a run whose first epoch to write now is ``epoch``."""
        existing = _event_files(self.folder)
        if epoch == 0:  # the run starts (over): the folder's earlier events are not this run's
            for path in existing:
                path.unlink()
            existing = []
        done = _logged_epochs(self.folder) if existing else []
        start = min(max(done, default=-1) + 1, epoch)
        self.folder.mkdir(parents=True, exist_ok=True)
        self._writer = self._writer_class(log_dir=str(self.folder), purge_step=start if existing else None)
        if start == 0:  # nothing of this run is kept: the run's options too
            self._write_options()
        for restored in history:
            if start <= int(restored["epoch"]) < epoch:
                self._write_row(int(restored["epoch"]), restored)

    def _write_options(self) -> None:
        """The run's config as text and its options as HParams, at step 0."""
        from torch.utils.tensorboard.summary import hparams

        if self.config_text:
            self._writer.add_text("config", "```\n" + self.config_text + "\n```", 0)
        if self.hparams:
            for summary in hparams(self.hparams, {f"valid/{self.metric}": 0.0}):
                self._writer.file_writer.add_summary(summary)

    def _write_row(self, epoch: int, row: Mapping[str, float]) -> None:
        """The row's numbers as scalars at step ``epoch``, :data:`_MARKER` last."""
        columns = [c for c in row if c not in _NOT_SCALARS and scalar_tag(c) != _MARKER]
        for column in columns + [c for c in row if scalar_tag(c) == _MARKER]:
            value = row[column]
            if value is None or value == "":
                continue
            self._writer.add_scalar(scalar_tag(column), float(value), epoch)


def tensorboard_logger(cfg: Any, model_config: Any, out_dir: Optional[Path], config_text: str,
                       is_main: bool = True) -> Optional[TensorBoardLogger]:
    """The logger ``cfg.logger`` asks for: a :class:`TensorBoardLogger` writing to
    ``out_dir/tensorboard`` on the main process for ``"tensorboard"`` with a run folder, else
    ``None`` (``"csv"``: ``history.csv`` only; no run folder: nothing is written).

    Raises:
        ConfigError: ``"tensorboard"`` with a run folder and the package missing (on every process,
            so that none of them starts training).
    """
    if cfg.logger != "tensorboard" or out_dir is None:
        return None
    _summary_writer()
    if not is_main:
        return None
    return TensorBoardLogger(Path(out_dir) / TENSORBOARD_DIR, config_text, hparam_values(cfg, model_config),
                             cfg.valid_metric)
