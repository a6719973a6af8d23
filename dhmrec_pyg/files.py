"""Atomic file writes: nothing already on disk is lost if a write fails halfway.

Every write goes to a temporary file ``.<name>.<random>.tmp`` in the destination's folder, which
is renamed over the destination once complete; a kill leaves at most such a temporary file
(:func:`remove_temporaries` clears them). :func:`replace_folder` puts a folder in another's place.
"""
from __future__ import annotations

import ctypes
import errno
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable, List, Optional

import torch


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: str | Path, write: Callable[[Any], object], mode: str = "wb",
                 before_replace: Optional[Callable[[Path], object]] = None) -> None:
    """Write ``path`` through a temporary file in the same folder, then rename it.

    The file gets the usual permissions (``0o666`` minus the umask), not the
    private ones of a temporary file.

    Args:
        path: destination.
        write: called with the open temporary file object.
        mode: ``"wb"`` for bytes (default), ``"w"`` for text.
        before_replace: called with the complete temporary file's path just before it is
            renamed to ``path`` (e.g. to record its digest); if it raises, ``path`` is untouched.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode) as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        if before_replace is not None:
            before_replace(Path(tmp))
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


def save_tensors(path: str | Path, obj: Any, before_replace: Optional[Callable[[Path], object]] = None) -> None:
    """Atomically ``torch.save`` an object made of tensors and plain containers
    (``before_replace``: as in :func:`atomic_write`)."""
    atomic_write(path, lambda fh: torch.save(obj, fh), before_replace=before_replace)


def load_tensors(path: str | Path, map_location: str | torch.device = "cpu") -> Any:
    """Load a file written by :func:`save_tensors`, refusing anything but tensors
    and plain containers (``weights_only=True``: no pickle code runs)."""
    return torch.load(path, map_location=map_location, weights_only=True)


def sha256_file(path: str | Path) -> str:
    """The SHA-256 of a file's bytes, as hex (read in 1 MiB blocks)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def remove_temporaries(folder: str | Path) -> List[str]:
    """Delete the temporary files (``.<name>.<random>.tmp``) that writes cut short by a kill left
    in ``folder``; the names removed."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    removed = []
    for entry in folder.iterdir():
        if entry.name.startswith(".") and entry.name.endswith(".tmp") and entry.is_file():
            entry.unlink(missing_ok=True)
            removed.append(entry.name)
    return sorted(removed)


#: ``renameat2``'s flag that swaps two paths in one step (Linux).
_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _exchange(a: Path, b: Path) -> bool:
    """Swap the paths ``a`` and ``b`` in one atomic step (Linux ``renameat2``); ``False`` where
    the system or the file system cannot."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP):
        return False
    raise OSError(code, os.strerror(code), str(a))


def replace_folder(new: str | Path, old: str | Path) -> None:
    """Put folder ``new`` in the place of folder ``old`` and delete the old folder's content.

    Where the system allows (Linux) the two folders swap in one atomic step, so ``old`` always
    names a complete folder; elsewhere ``old`` is renamed aside first. After a kill, ``new``'s
    path may still hold (part of) the old folder, which the caller clears on its next start.
    ``old`` need not exist.
    """
    new, old = Path(new), Path(old)
    if not old.exists():
        os.replace(new, old)
        return
    if not _exchange(new, old):
        aside = old.with_name(f".{old.name}.replaced")
        shutil.rmtree(aside, ignore_errors=True)
        os.replace(old, aside)
        os.replace(new, old)
        new = aside
    shutil.rmtree(new, ignore_errors=True)
