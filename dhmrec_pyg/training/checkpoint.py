"""Training checkpoints that survive a kill, and load without pickle.

A run folder holds ``checkpoint.pt``: everything needed to continue a run
exactly where it stopped (model, optimizer, every RNG state, the sampler's
position, early-stopping state, epoch and history). It is written atomically
(temporary file in the same folder, flush, fsync, rename) through
:mod:`dhmrec_pyg.files`, so a kill at any moment leaves either the previous
checkpoint or the new one, never a torn file. Every value in it is a tensor,
a number, a string, ``None`` or a plain container, so it loads with
``torch.load(weights_only=True)``: no pickled code can run. Its SHA-256 is recorded in the
folder's ``weights.json`` as it is written, and checked before it is read
(:mod:`dhmrec_pyg.training.weights`).

The sampler's position is stored as the state of the sampling generator at the
*start* of the current epoch plus the number of mini-batches of that epoch
already trained. The sampler draws an epoch's permutation and negatives at the
epoch's start, so restoring that state, replaying the model's
``on_epoch_start`` hook and skipping the consumed batches reproduces the epoch
bit for bit.
"""
from __future__ import annotations

import hashlib
import random
from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np
import torch

from dhmrec_pyg.training.weights import WeightsError, load_weights, save_weights

__all__ = [
    "CHECKPOINT_FORMAT",
    "CHECKPOINT_NAME",
    "CheckpointError",
    "capture_rng_state",
    "config_digest",
    "load_checkpoint",
    "restore_rng_state",
    "save_checkpoint",
]

#: Version tag stored in every checkpoint; a file with another tag is refused.
CHECKPOINT_FORMAT = "dhmrec_pyg.checkpoint.v1"

#: File name of the resumable checkpoint inside a run folder.
CHECKPOINT_NAME = "checkpoint.pt"

_REQUIRED = (
    "format", "config_sha256", "epoch", "batch", "epoch_generator_state", "partial", "model",
    "optimizer", "rng", "early_stopping", "best_model", "history",
)


class CheckpointError(WeightsError):
    """A checkpoint is missing, damaged (not the file recorded), unreadable, of another format or
    of another run's config."""


def config_digest(config_text: str) -> str:
    """SHA-256 of a run's resolved ``config.yaml`` text (ties a checkpoint to its config)."""
    return hashlib.sha256(config_text.encode("utf-8")).hexdigest()


def capture_rng_state() -> Dict[str, Any]:
    """Python's, NumPy's and torch's global RNG states as tensors and plain values.

    Returns:
        A dict loadable with ``torch.load(weights_only=True)``: Python's Mersenne
        Twister words and NumPy's key array as int64 tensors, torch's CPU state
        (a ``ByteTensor``) and, when CUDA is initialised, every device's state.
    """
    version, words, gauss = random.getstate()
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state(legacy=True)  # type: ignore[misc]
    state: Dict[str, Any] = {
        "python": {
            "version": int(version),
            "state": torch.tensor(list(words), dtype=torch.int64),
            "gauss_next": None if gauss is None else float(gauss),
        },
        "numpy": {
            "name": str(np_name),
            "keys": torch.from_numpy(np.asarray(np_keys, dtype=np.int64).copy()),
            "pos": int(np_pos),
            "has_gauss": int(np_has_gauss),
            "cached_gaussian": float(np_gauss),
        },
        "torch": torch.get_rng_state(),
        "cuda": [],
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = [s.cpu() for s in torch.cuda.get_rng_state_all()]
    return state


def restore_rng_state(state: Dict[str, Any]) -> None:
    """Set Python's, NumPy's and torch's global RNGs to a :func:`capture_rng_state` result."""
    py = state["python"]
    random.setstate(
        (int(py["version"]), tuple(int(w) for w in py["state"].tolist()), py["gauss_next"])
    )
    nps = state["numpy"]
    np.random.set_state(
        (
            nps["name"],
            nps["keys"].numpy().astype(np.uint32),
            int(nps["pos"]),
            int(nps["has_gauss"]),
            float(nps["cached_gaussian"]),
        )
    )
    torch.set_rng_state(state["torch"].to(torch.uint8).cpu())
    cuda = state.get("cuda") or []
    if cuda and torch.cuda.is_available():
        n = min(len(cuda), torch.cuda.device_count())
        torch.cuda.set_rng_state_all([s.to(torch.uint8).cpu() for s in cuda[:n]])


def save_checkpoint(path: str | Path, state: Dict[str, Any]) -> None:
    """Atomically write a checkpoint dict (see the module docstring for its keys), its SHA-256
    recorded in the folder's ``weights.json``.

    Args:
        path: destination, normally ``RUN/checkpoint.pt``.
        state: the checkpoint; ``format`` is filled in.
    """
    save_weights(path, {**state, "format": CHECKPOINT_FORMAT})


def load_checkpoint(path: str | Path, expected_config_sha256: Optional[str] = None) -> Dict[str, Any]:
    """Read and check a checkpoint written by :func:`save_checkpoint`.

    Loaded with ``weights_only=True``, on the CPU, after checking it against the SHA-256 its
    folder's ``weights.json`` recorded (where one was recorded).

    Args:
        path: the checkpoint file.
        expected_config_sha256: when given, the :func:`config_digest` of the run's
            ``config.yaml``; a checkpoint of another configuration is refused.

    Returns:
        The checkpoint dict.

    Raises:
        CheckpointError: naming the file, if it is not the file recorded, cannot be read, is
            not a checkpoint of this format, lacks a key, or belongs to another configuration.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no checkpoint")
    try:
        obj = load_weights(path)
    except WeightsError as exc:  # damaged, truncated, corrupted or foreign file
        raise CheckpointError(str(exc).replace("weights file", "checkpoint")) from None
    if not isinstance(obj, dict) or obj.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path}: not a {CHECKPOINT_FORMAT} checkpoint")
    missing: List[str] = [k for k in _REQUIRED if k not in obj]
    if missing:
        raise CheckpointError(f"{path}: checkpoint lacks {', '.join(missing)}")
    if expected_config_sha256 is not None and obj["config_sha256"] != expected_config_sha256:
        raise CheckpointError(
            f"{path}: checkpoint was written for another config.yaml (was the config edited?)"
        )
    return obj
