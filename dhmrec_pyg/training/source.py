"""Where a run's data came from: the ``data`` section of its ``config.yaml``.

A run folder records its data so that :func:`~dhmrec_pyg.training.run.load_run` rebuilds the run
from any working directory:

- a dataset a :class:`~dhmrec_pyg.training.TrainConfig` names, loaded by
  :func:`~dhmrec_pyg.training.run.load_data`, is recorded with absolute paths
  (:func:`config_source`): ``dataset`` (a synthetic profile, a dataset name, or the dataset
  folder made absolute) and ``data_root`` (made absolute);
- any other graph, handed in from Python, is recorded as
  :data:`~dhmrec_pyg.training.config.IN_MEMORY` with the ``edge_type`` it was read with
  (:func:`graph_source`): rebuilding the run needs that graph again.

The graphs :func:`~dhmrec_pyg.training.run.load_data` returns are remembered (by identity, not
kept alive) with their source, which :func:`data_source` hands the
:class:`~dhmrec_pyg.training.Trainer` for the file.
"""
from __future__ import annotations

import os
import weakref
from pathlib import Path
from typing import Any, Dict, Optional, Sequence, Tuple, Union

from torch_geometric.data import HeteroData

from dhmrec_pyg.schema import _resolve_edge_type
from dhmrec_pyg.training.config import IN_MEMORY, TrainConfig

__all__ = ["cache_folder", "config_source", "data_source", "graph_source", "remember_source"]

#: id(graph) -> (a weak reference to the graph, its source, its cache folder or None).
_SOURCES: Dict[int, Tuple["weakref.ref[HeteroData]", Dict[str, Any], Optional[Path]]] = {}


def config_source(cfg: TrainConfig) -> Dict[str, Any]:
    """The source of the dataset ``cfg`` names, resolved from the working directory as
    :func:`~dhmrec_pyg.data.load_dataset` resolves it, with absolute paths.

    A synthetic profile or a dataset name stays as it is, with ``data_root`` made absolute; an
    existing folder becomes its absolute path.

    Raises:
        DataError: a plain name that is both a folder here and one under ``data_root``
            (:func:`~dhmrec_pyg.data.dataset.check_unambiguous`).
    """
    from dhmrec_pyg.data.dataset import check_unambiguous
    from dhmrec_pyg.data.synthetic import synthetic_profile_of

    check_unambiguous(cfg.dataset, cfg.data_root)
    name = cfg.dataset
    folder = Path(name).expanduser()
    if name and synthetic_profile_of(name) is None and folder.is_dir():
        name = os.path.abspath(folder)
    return {"dataset": name, "data_root": os.path.abspath(Path(cfg.data_root).expanduser())}


def graph_source(
    edge_type: Union[None, str, Sequence[str]] = None, *, user: Optional[str] = None, item: Optional[str] = None,
) -> Dict[str, Any]:
    """The source of a graph handed in from Python, read with these names (as in
    :func:`~dhmrec_pyg.schema.as_interaction_graph`): :data:`IN_MEMORY` and the full
    ``edge_type`` ``[user type, relation, item type]``.

    Raises:
        DataError: ``edge_type``, ``user`` and ``item`` contradict each other or are malformed.
    """
    return {"dataset": IN_MEMORY, "edge_type": list(_resolve_edge_type(edge_type, user, item))}


def remember_source(data: HeteroData, source: Dict[str, Any], cache_folder: Optional[Path] = None) -> HeteroData:
    """Record that ``data`` came from ``source`` (for :func:`data_source`), with the data set's
    cache folder (for :func:`cache_folder`); returns ``data``."""
    key = id(data)
    _SOURCES[key] = (weakref.ref(data, lambda _ref, key=key: _SOURCES.pop(key, None)), dict(source), cache_folder)
    return data


def _remembered(data: HeteroData) -> Optional[Tuple["weakref.ref[HeteroData]", Dict[str, Any], Optional[Path]]]:
    """What :func:`remember_source` recorded for this very graph, or ``None``."""
    entry = _SOURCES.get(id(data))
    return entry if entry is not None and entry[0]() is data else None


def cache_folder(data: HeteroData) -> Optional[Path]:
    """The cache folder recorded with ``data`` by :func:`remember_source` (``None``: none, or a
    graph handed in from Python)."""
    entry = _remembered(data)
    return None if entry is None else entry[2]


def data_source(
    data: HeteroData, edge_type: Union[None, str, Sequence[str]] = None, *,
    user: Optional[str] = None, item: Optional[str] = None,
) -> Dict[str, Any]:
    """Where ``data`` came from: the source :func:`remember_source` recorded for this very graph,
    else :func:`graph_source` of the names it is read with."""
    entry = _remembered(data)
    if entry is not None:
        return dict(entry[1])
    return graph_source(edge_type, user=user, item=item)
