"""The data package's error type (defined in :mod:`dhmrec_pyg.errors`, shared with the models)."""

from __future__ import annotations

from ..errors import DataError

__all__ = ["DataError"]
