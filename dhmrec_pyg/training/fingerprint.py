"""What a run's data was: a fingerprint of the graph, recorded in ``config.yaml``'s ``data`` section.

The fingerprint holds the number of users and items and the SHA-256 of each part of the loaded
graph (in the canonical form): the training, validation and test interactions and every
modality's item features. A part's digest covers its dtype, its shape and its bytes, so hashing
costs one pass over the tensors (a fraction of a second for TikTok's). A run resumed, evaluated or
reloaded on data whose fingerprint differs is refused with a :class:`DataChangedError` that names
what changed (:func:`check_fingerprint`).
"""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional

import torch
from torch_geometric.data import HeteroData

from dhmrec_pyg.errors import DataError
from dhmrec_pyg.schema import FEATURE_PREFIX, ITEM, USER, modality_names, split_edge_index

__all__ = ["DataChangedError", "check_fingerprint", "data_fingerprint", "fingerprint_changes"]

#: How each split's interactions are named in a fingerprint and in messages.
_SPLIT_PARTS = {"train": "training", "val": "validation", "test": "test"}


class DataChangedError(DataError):
    """The data set differs from the one a run was trained on.

    Attributes:
        changes: what changed, one phrase each (``"training interactions changed"``, ...).
    """

    def __init__(self, message: str, changes: List[str]) -> None:
        super().__init__(message)
        self.changes = list(changes)


def tensor_sha256(tensor: torch.Tensor) -> str:
    """SHA-256 of a tensor's dtype, shape and bytes (as stored, on the CPU)."""
    flat = tensor.detach().cpu().contiguous().reshape(-1)
    digest = hashlib.sha256(f"{flat.dtype}|{tuple(tensor.shape)}|".encode())
    if flat.numel():
        digest.update(flat.view(torch.uint8).numpy())
    return digest.hexdigest()


def data_fingerprint(data: HeteroData) -> Dict[str, Any]:
    """The fingerprint of a graph in the canonical form: ``users``, ``items`` (counts), then
    ``train_interactions``, ``val_interactions``, ``test_interactions`` and
    ``<modality>_features`` (SHA-256 hex digests, :func:`tensor_sha256`)."""
    out: Dict[str, Any] = {"users": int(data[USER].num_nodes), "items": int(data[ITEM].num_nodes)}
    for split in _SPLIT_PARTS:
        edges = split_edge_index(data, split, missing_ok=True)
        if edges is not None:
            out[f"{split}_interactions"] = tensor_sha256(edges)
    for name in modality_names(data):
        out[f"{name}_features"] = tensor_sha256(data[ITEM][FEATURE_PREFIX + name])
    return out


def _part_name(key: str) -> str:
    """How a fingerprint key reads in a message (``train_interactions``: training interactions)."""
    if key.endswith("_interactions"):
        return f"{_SPLIT_PARTS.get(key[: -len('_interactions')], key)} interactions"
    if key.endswith("_features"):
        return f"{key[: -len('_features')]} features"
    return f"number of {key}"


def fingerprint_changes(recorded: Mapping[str, Any], current: Mapping[str, Any]) -> List[str]:
    """What differs between two fingerprints, one phrase per part (``[]``: the same data)."""
    changes = []
    for key in dict.fromkeys([*recorded, *current]):
        before, now = recorded.get(key), current.get(key)
        if before == now:
            continue
        if key in ("users", "items"):
            changes.append(f"{_part_name(key)} changed ({before} -> {now})")
        elif now is None:
            changes.append(f"{_part_name(key)} are gone")
        elif before is None:
            changes.append(f"{_part_name(key)} are new")
        else:
            changes.append(f"{_part_name(key)} changed")
    return changes


def check_fingerprint(recorded: Optional[Mapping[str, Any]], data: HeteroData, where: str | Path,
                      allow_changed: bool = False) -> List[str]:
    """Compare ``data`` with the fingerprint a run recorded; what changed (``[]`` when nothing did,
    or when nothing was recorded: a run from before fingerprints).

    Args:
        recorded: the run's fingerprint (``config.yaml``'s ``data.fingerprint``), or ``None``.
        data: the graph, in the canonical form.
        where: the run folder or file, named in the message.
        allow_changed: return the changes instead of raising.

    Raises:
        DataChangedError: naming ``where`` and what changed, unless ``allow_changed``.
    """
    if not recorded:
        return []
    changes = fingerprint_changes(recorded, data_fingerprint(data))
    if changes and not allow_changed:
        raise DataChangedError(f"{where}: the data set is not the one this run was trained on: "
                               f"{'; '.join(changes)}", changes)
    return changes
