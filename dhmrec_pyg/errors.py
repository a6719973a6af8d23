"""The library's error types, shared by every layer: bad input data and bad settings.

They sit at the bottom of the package (they import nothing of it), so that any module can
raise them without importing a layer above its own.
"""

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
