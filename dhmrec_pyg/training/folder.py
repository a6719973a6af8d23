"""Nothing lost: how a run folder keeps the results already in it.

- A new run in a folder that holds a run is built beside it, in a staging folder
  (:func:`staging_folder`), which takes the old folder's place only once the new run has written
  its first checkpoint (:func:`~dhmrec_pyg.files.replace_folder`): a kill before that leaves the
  old run as it was, and none of its files (recommendations, plots) linger after.
- A run resumed without a checkpoint to continue from starts over only after the results it
  holds are moved to ``previous-<time>/`` inside it (:func:`set_aside`).
- A finished run's ``best.pt`` is checked before it is used; when it is damaged and the
  checkpoint (which carries the best weights) is intact, it is restored from there
  (:func:`finished_best`).
"""
from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from dhmrec_pyg.errors import ConfigError
from dhmrec_pyg.training.checkpoint import CHECKPOINT_NAME, CheckpointError, load_checkpoint
from dhmrec_pyg.training.weights import MANIFEST_NAME, WeightsError, load_weights, save_weights

__all__ = [
    "BEST_NAME", "RESULT_FILES", "check_replaceable", "finished_best", "set_aside", "staging_folder", "start_staging",
]

#: File name of the best epoch's weights inside a run folder.
BEST_NAME = "best.pt"

#: The files holding a run's results (besides its ``config.yaml``).
RESULT_FILES = ("history.csv", "metrics.json", BEST_NAME, CHECKPOINT_NAME, MANIFEST_NAME)


def staging_folder(final: Path) -> Path:
    """The folder a new run is built in before it replaces ``final``: ``.<name>.new`` beside it."""
    return final.parent / f".{final.name}.new"


def _holds_anything(folder: Path) -> bool:
    """Whether ``folder`` exists and holds an entry other than the temporaries of cut-short writes."""
    return folder.is_dir() and any(not (p.name.startswith(".") and p.name.endswith(".tmp")) for p in folder.iterdir())


def check_replaceable(final: Path) -> bool:
    """Whether a new run in ``final`` replaces a run there (``False``: the folder is new or empty).

    Raises:
        ConfigError: naming ``final``, when it holds files but no run (no ``config.yaml``), or
            holds the working directory: neither is replaced.
    """
    if not _holds_anything(final):
        return False
    if not (final / "config.yaml").is_file():
        raise ConfigError(f"{final}: the folder holds files but no run (no config.yaml); "
                          "a new run replaces only a run folder: choose an empty or new folder")
    here, target = Path.cwd().resolve(), final.resolve()
    if here == target or target in here.parents:
        raise ConfigError(f"{final}: the run folder holds the working directory; run from elsewhere to replace it")
    return True


def start_staging(final: Path) -> Optional[Path]:
    """Prepare a new run in ``final``: ``None`` when the folder is new or empty (the run writes in
    it), else the emptied staging folder to build the run in (a staging folder a killed run left
    is cleared first).

    Raises:
        ConfigError: naming ``final``, when it holds files but no run (no ``config.yaml``), or
            holds the working directory: neither is replaced.
    """
    if not check_replaceable(final):
        return None
    staging = staging_folder(final)
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    return staging


def set_aside(folder: Path) -> Optional[Path]:
    """Move the results in ``folder`` (:data:`RESULT_FILES` present) to a new
    ``folder/previous-<time>/``; that folder, or ``None`` when there was nothing to move."""
    present: List[str] = [name for name in RESULT_FILES if (folder / name).exists()]
    if not present:
        return None
    stamp = time.strftime("%Y%m%d-%H%M%S")
    target, n = folder / f"previous-{stamp}", 1
    while target.exists():
        n += 1
        target = folder / f"previous-{stamp}-{n}"
    target.mkdir()
    # The manifest goes last: until then it still vouches for the files not yet moved.
    for name in sorted(present, key=lambda name: name == MANIFEST_NAME):
        os.replace(folder / name, target / name)
    return target


def finished_best(folder: Path, write: bool = True) -> Tuple[Dict[str, Any], Optional[str]]:
    """The best weights of a finished run, checked (:func:`~dhmrec_pyg.training.weights.load_weights`),
    and a note of what was done to them (``None``: nothing).

    A damaged, empty or missing ``best.pt`` is restored (with ``write``) from the best weights its
    intact ``checkpoint.pt`` carries; the note says so.

    Raises:
        WeightsError: naming ``best.pt``, when it is damaged and no intact checkpoint carries the
            best weights.
    """
    best = folder / BEST_NAME
    try:
        return load_weights(best), None
    except WeightsError as exc:
        problem = str(exc)
    try:
        weights = load_checkpoint(folder / CHECKPOINT_NAME).get("best_model")
    except CheckpointError as exc:
        weights, problem = None, f"{problem} (and {exc})"
    if weights is None:
        raise WeightsError(f"{problem}; no intact {CHECKPOINT_NAME} carries the best weights: "
                           "the run must be trained again") from None
    if write:
        save_weights(best, weights)
    return weights, f"{problem}; restored {best} from the best weights {folder / CHECKPOINT_NAME} carries"
