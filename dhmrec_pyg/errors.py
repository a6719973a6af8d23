"""The library's input-data error, shared by every layer that checks data where it enters."""

from __future__ import annotations

__all__ = ["ConfigError", "DataError"]


class DataError(ValueError):
    """Raised for any malformed, missing or inconsistent input data.

    Messages always name the file, the field (column or array) and an offending value, so that a
    user can find and fix the problem without reading a traceback, e.g.
    ``"tiktok.inter: column 'itemID' must hold non-negative integers, found '-3' on line 17"``.
    The command line prints it as a one-line error.
    """


class ConfigError(ValueError):
    """A configuration value or key is invalid; the message names the field (``TrainConfig.epochs``,
    a YAML key, a ``--set`` key) and the offending value, e.g.
    ``"TrainConfig.epochs must be >= 1, got -1"``."""
