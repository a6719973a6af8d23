"""What a run records: the rows of ``history.csv``, early stopping on them, and the summary
that ``metrics.json`` holds."""
from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterable, List, Mapping

import numpy as np

from dhmrec_pyg import files as dfiles

__all__ = ["EarlyStopping", "History", "epoch_row", "run_summary"]


def epoch_row(epoch: int, losses: Mapping[str, float], train_seconds: float, eval_seconds: float,
              valid: Mapping[str, float], diagnostics: Mapping[str, float]) -> Dict[str, float]:
    """One epoch's ``history.csv`` row, its columns in this order: ``epoch``, the mean loss terms,
    ``train_seconds``, ``eval_seconds``, the validation metrics at 10 and 20 (``valid_recall@20``,
    ...), the model's diagnostics (``diag_...``)."""
    row: Dict[str, float] = {"epoch": epoch, **losses, "train_seconds": train_seconds,
                             "eval_seconds": eval_seconds}
    row.update({f"valid_{k}": v for k, v in valid.items() if k.endswith("@20") or k.endswith("@10")})
    row.update({f"diag_{k}": v for k, v in diagnostics.items()})
    return row


class History:
    """The rows of a run's ``history.csv``, one per epoch trained.

    Args:
        rows: rows to start from (copied), e.g. a checkpoint's history.

    Attributes:
        rows: the rows, a list of dicts (the trainer's ``history``).
    """

    def __init__(self, rows: Iterable[Mapping[str, float]] = ()) -> None:
        self.rows: List[Dict[str, float]] = [dict(r) for r in rows]

    def append(self, row: Mapping[str, float]) -> None:
        """Add an epoch's row."""
        self.rows.append(dict(row))

    def csv_text(self) -> str:
        """The CSV text: a header with every column in order of first appearance, then the rows
        (a column a row lacks is left empty)."""
        keys: List[str] = []
        for row in self.rows:
            keys += [k for k in row if k not in keys]
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=keys)
        writer.writeheader()
        writer.writerows(self.rows)
        return buf.getvalue()

    def write(self, path: Path) -> None:
        """Write :meth:`csv_text` to ``path`` atomically."""
        dfiles.write_text(path, self.csv_text())

    def mean(self, key: str) -> float:
        """The mean of a column over the rows (0.0 without rows)."""
        return float(np.mean([r[key] for r in self.rows])) if self.rows else 0.0


@dataclass
class EarlyStopping:
    """Early stopping on a validation metric (higher is better).

    Attributes:
        patience: epochs without a better value after which training stops.
        best_value: the best validation value so far (``-inf`` before the first epoch).
        best_epoch: its epoch (``-1`` before the first epoch).
        best_valid: every validation metric at that epoch.
        stale: epochs since the best one.
    """

    patience: int
    best_value: float = -math.inf
    best_epoch: int = -1
    best_valid: Dict[str, float] = field(default_factory=dict)
    stale: int = 0

    @property
    def stopped(self) -> bool:
        """Whether ``patience`` epochs have passed without a better value."""
        return self.stale >= self.patience

    def step(self, epoch: int, value: float, valid: Dict[str, float]) -> bool:
        """Record an epoch's validation ``value`` (and all its metrics); whether it is the new best."""
        if value > self.best_value:
            self.best_value, self.best_epoch, self.best_valid, self.stale = value, epoch, dict(valid), 0
            return True
        self.stale += 1
        return False

    def state_dict(self) -> Dict[str, Any]:
        """The state a checkpoint keeps (``best_value``, ``best_epoch``, ``best_valid``, ``stale``)."""
        return {"best_value": self.best_value, "best_epoch": self.best_epoch,
                "best_valid": dict(self.best_valid), "stale": self.stale}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        """Restore the state of :meth:`state_dict`."""
        self.best_value, self.best_epoch = state["best_value"], state["best_epoch"]
        self.best_valid, self.stale = dict(state["best_valid"]), state["stale"]


def run_summary(cfg: Any, early: EarlyStopping, history: History, test: Dict[str, float],
                execution: Dict[str, str], environment: Dict[str, str]) -> Dict[str, Any]:
    """``metrics.json``'s content: the run (``cfg``'s model, dataset, seed), the best epoch and its
    validation metrics, the ``test`` metrics, the mean seconds per epoch (training, evaluation),
    how the steps ran (``execution``) and where (``environment``)."""
    return {
        "model": cfg.model,
        "dataset": cfg.dataset,
        "seed": cfg.seed,
        "best_epoch": early.best_epoch,
        "epochs_run": len(history.rows),
        "valid_metric": cfg.valid_metric,
        "valid": early.best_valid,
        "test": test,
        "seconds_per_epoch": history.mean("train_seconds"),
        "eval_seconds": history.mean("eval_seconds"),
        "execution": execution,
        "environment": environment,
    }
