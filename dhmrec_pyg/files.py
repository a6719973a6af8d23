"""Atomic file writes: nothing already on disk is lost if a write fails halfway."""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable

import torch


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: str | Path, write: Callable[[Any], object], mode: str = "wb") -> None:
    """Write ``path`` through a temporary file in the same folder, then rename it.

    The file gets the usual permissions (``0o666`` minus the umask), not the
    private ones of a temporary file.

    Args:
        path: destination.
        write: called with the open temporary file object.
        mode: ``"wb"`` for bytes (default), ``"w"`` for text.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode) as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_text(path: str | Path, text: str) -> None:
    """Atomically write a text file."""
    atomic_write(path, lambda fh: fh.write(text), mode="w")


def write_json(path: str | Path, obj: Any) -> None:
    """Atomically write ``obj`` as indented JSON."""
    write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def save_tensors(path: str | Path, obj: Any) -> None:
    """Atomically ``torch.save`` an object made of tensors and plain containers."""
    atomic_write(path, lambda fh: torch.save(obj, fh))


def load_tensors(path: str | Path, map_location: str | torch.device = "cpu") -> Any:
    """Load a file written by :func:`save_tensors`, refusing anything but tensors
    and plain containers (``weights_only=True``: no pickle code runs)."""
    return torch.load(path, map_location=map_location, weights_only=True)
