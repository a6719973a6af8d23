"""Verified weights: every weights file of a run folder is checked against the SHA-256 recorded
when it was written.

A run folder's ``weights.json`` (the *manifest*) records, for ``best.pt`` and ``checkpoint.pt``,
the SHA-256 and the size of the file as written. :func:`save_weights` writes a file and its
entry together: the new digest is recorded (next to the one it replaces) before the complete
file is renamed into place, and the old one is dropped after, so at every moment of a kill the
manifest accepts the file on disk, and nothing else. :func:`load_weights` checks a file before
it is read; a changed, truncated or empty file is a :class:`WeightsError` naming it. A folder
written before the manifest existed (no ``weights.json``, or no entry for the file) is read
without a check.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, Optional

from dhmrec_pyg import files as dfiles

__all__ = [
    "MANIFEST_FORMAT", "MANIFEST_NAME", "WeightsError", "load_weights", "read_manifest", "save_weights",
    "verify_weights",
]

#: File name of the manifest inside a run folder.
MANIFEST_NAME = "weights.json"

#: Version tag of the manifest.
MANIFEST_FORMAT = "dhmrec_pyg.weights.v1"


class WeightsError(ValueError):
    """A weights file (``best.pt``, ``checkpoint.pt``) is empty, unreadable, or not the file its
    run folder recorded; the message names the file."""


def read_manifest(folder: str | Path) -> Dict[str, Dict[str, Any]]:
    """The entries of ``folder``'s manifest by file name (``{}`` without a manifest).

    Raises:
        WeightsError: naming the manifest, when it cannot be read.
    """
    path = Path(folder) / MANIFEST_NAME
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise WeightsError(f"{path}: unreadable weights manifest ({type(exc).__name__})") from None
    files = doc.get("files") if isinstance(doc, dict) else None
    if not isinstance(doc, dict) or doc.get("format") != MANIFEST_FORMAT or not isinstance(files, dict):
        raise WeightsError(f"{path}: not a {MANIFEST_FORMAT} manifest")
    return files


def _write_manifest(folder: Path, files: Dict[str, Dict[str, Any]]) -> None:
    """Atomically write ``folder``'s manifest with these entries."""
    dfiles.write_json(folder / MANIFEST_NAME, {"format": MANIFEST_FORMAT, "files": files})


def save_weights(path: str | Path, obj: Any) -> None:
    """Atomically ``torch.save`` ``obj`` (tensors and plain containers) at ``path`` and record its
    SHA-256 and size in the folder's manifest (see the module docstring for the order of steps)."""
    path = Path(path)
    written: Dict[str, Any] = {}

    def record(tmp: Path) -> None:
        """Name the complete temporary file in the manifest, beside the file it replaces."""
        files = read_manifest(path.parent)
        entry = {"sha256": dfiles.sha256_file(tmp), "bytes": tmp.stat().st_size}
        previous = files.get(path.name)
        if previous is not None and path.is_file():  # until the rename, the old file is the one on disk
            entry["replacing"] = {k: previous[k] for k in ("sha256", "bytes") if k in previous}
        _write_manifest(path.parent, {**files, path.name: entry})
        written.update(sha256=entry["sha256"], bytes=entry["bytes"])

    dfiles.save_tensors(path, obj, before_replace=record)
    _write_manifest(path.parent, {**read_manifest(path.parent), path.name: dict(written)})


def verify_weights(path: str | Path) -> Optional[str]:
    """Check ``path`` against its folder's manifest; its SHA-256, or ``None`` where nothing was
    recorded for it (a folder from before the manifest: not checked).

    Raises:
        WeightsError: naming the file, when it is missing, empty, or not the file recorded.
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{path}: no such file")
    size = path.stat().st_size
    if size == 0:
        raise WeightsError(f"{path}: empty file (0 bytes; a write was cut short or the file was truncated)")
    entry = read_manifest(path.parent).get(path.name)
    if entry is None:
        return None
    accepted = [entry, *([entry["replacing"]] if isinstance(entry.get("replacing"), dict) else [])]
    digest = dfiles.sha256_file(path)
    if any(digest == e.get("sha256") for e in accepted):
        return digest
    recorded = entry.get("bytes")
    sizes = f"; {size} bytes, {recorded} recorded" if recorded is not None and recorded != size else ""
    raise WeightsError(f"{path}: damaged or changed: its SHA-256 {digest[:16]}... is not the "
                       f"{str(entry.get('sha256'))[:16]}... recorded in {MANIFEST_NAME}{sizes}")


def load_weights(path: str | Path) -> Any:
    """:func:`verify_weights`, then load the file on the CPU with ``weights_only=True``.

    Raises:
        WeightsError: naming the file, when it is missing, empty, not the file recorded, or
            unreadable.
    """
    path = Path(path)
    verify_weights(path)
    try:
        return dfiles.load_tensors(path)
    except Exception as exc:  # truncated, corrupted or foreign file
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise WeightsError(f"{path}: unreadable weights file ({type(exc).__name__}: {first})") from None
