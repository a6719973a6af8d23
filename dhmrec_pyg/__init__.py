"""dhmrec_pyg: DHMRec and its baselines on PyTorch Geometric.

``dhmrec_pyg.load_run(folder)`` rebuilds a run saved by ``dhmrec train``
(:func:`dhmrec_pyg.training.run.load_run`); the models are in
:mod:`dhmrec_pyg.models`, the layers in :mod:`dhmrec_pyg.nn`, the data in
:mod:`dhmrec_pyg.data`.
"""
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # for type checkers and the API docs; at run time ``__getattr__`` imports it
    from dhmrec_pyg.training.run import load_run

__version__ = "0.1.0"
__all__ = ["load_run"]


def __getattr__(name: str) -> Any:
    # Imported on first use, so that ``import dhmrec_pyg`` (and the CLI's start) stays light.
    if name == "load_run":
        from dhmrec_pyg.training.run import load_run

        return load_run
    raise AttributeError(f"module 'dhmrec_pyg' has no attribute {name!r}")
