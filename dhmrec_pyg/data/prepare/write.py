"""Writing the prepared folder: checking the destination, then writing all files or none."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ...files import write_json
from ..errors import DataError
from ..io import write_mmrec
from .ids import IdMaps, write_id_map

__all__ = ["check_out", "write_dataset", "write_files"]


def check_out(out: Path, overwrite: bool) -> bool:
    """Validate the output folder; return whether it exists with content (so files are replaced).

    Raises:
        DataError: a file is in the way, the folder is not empty and ``overwrite`` is false, or
            the folder has no base name.
    """
    for parent in [out, *out.parents]:
        if parent.exists() and not parent.is_dir():
            raise DataError(f"{out}: cannot write the dataset folder, {parent} is a file")
    if out.is_dir():
        entries = sorted(p.name for p in out.iterdir())
        if entries:
            if not overwrite:
                shown = ", ".join(entries[:5]) + (", ..." if len(entries) > 5 else "")
                raise DataError(
                    f"{out}: output folder is not empty ({shown}); choose a new folder or pass "
                    "overwrite=True (--overwrite) to replace the dataset files in it"
                )
            return True
    name = out.resolve().name
    if not name or name in (".", ".."):
        raise DataError(f"{out}: the output folder needs a base name (it becomes the dataset name)")
    return False


def write_files(
    folder: Path, name: str, replace_existing: bool, columns: Mapping[str, np.ndarray],
    matrices: Mapping[str, np.ndarray], ids: IdMaps, record: Mapping[str, Any],
) -> None:
    """Write every output file into ``folder``: ``NAME.inter``, the features, the ID maps, ``prepare.json``."""
    write_mmrec(dict(columns), folder, name, features=dict(matrices), overwrite=replace_existing)
    write_id_map(folder / "user_map.csv", ids.user_ids, "userID")
    write_id_map(folder / "item_map.csv", ids.item_ids, "itemID")
    write_json(folder / "prepare.json", record)


def write_dataset(out: Path, name: str, replace: bool, write_all: Callable[[Path, bool], None]) -> None:
    """Write into the existing folder (``replace``), else build beside it and rename into place.

    ``write_all(folder, replace_existing)`` writes the files; a failure while building a new
    folder leaves nothing behind.
    """
    if replace:
        write_all(out, True)
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{name}.", suffix=".tmp"))
    try:
        mask = os.umask(0)
        os.umask(mask)
        os.chmod(tmp, 0o777 & ~mask)
        write_all(tmp, False)
        if out.is_dir():
            out.rmdir()  # empty (checked above); os.replace onto a folder is not portable
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
