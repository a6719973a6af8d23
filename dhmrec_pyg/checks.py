"""Type and range checks shared by every config dataclass (models and training).

A config checks itself when it is made (``__post_init__``), so Python and the command line go
through the same door: :func:`check_types` compares every field with its annotation, and
:func:`at_least` / :func:`in_range` check numbers. Errors are :class:`~dhmrec_pyg.errors.ConfigError`
naming the class, the field and the value, e.g. ``"TrainConfig.epochs must be >= 1, got -1"``.
"""
from __future__ import annotations

import dataclasses
import math
import os
import typing
from typing import Any, Dict

from dhmrec_pyg.errors import ConfigError

__all__ = ["at_least", "check_types", "field_types", "in_range", "positive", "type_name"]


def field_types(cls: type) -> Dict[str, Any]:
    """The resolved type annotation of every field of the dataclass ``cls``."""
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def type_name(typ: Any) -> str:
    """A short human description of an annotation (``'an int'``, ``"one of 'a', 'b'"``)."""
    origin, args = typing.get_origin(typ), typing.get_args(typ)
    if origin is typing.Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    if origin is typing.Union:
        return " or ".join(type_name(a) for a in args)
    if origin in (list, typing.List):
        return f"a list of {type_name(args[0])}s" if args else "a list"
    if typ is type(None):
        return "None"
    names = {bool: "a boolean (True/False)", int: "an integer", float: "a number", str: "a string"}
    return names.get(typ, getattr(typ, "__name__", str(typ)))


def _conform(value: Any, typ: Any) -> Any:
    """``value`` as the annotation ``typ`` stores it (an int for a float field becomes a float),
    or raise ``TypeError`` when it does not fit."""
    origin, args = typing.get_origin(typ), typing.get_args(typ)
    if origin is typing.Union:
        for option in args:
            try:
                return _conform(value, option)
            except TypeError:
                continue
        raise TypeError
    if origin is typing.Literal:
        if isinstance(value, str) and value in args:
            return value
        raise TypeError
    if origin in (list, typing.List):
        if not isinstance(value, (list, tuple)):
            raise TypeError
        return [_conform(v, args[0]) for v in value] if args else list(value)
    if typ is type(None):
        if value is None:
            return None
        raise TypeError
    if typ is bool:
        if isinstance(value, bool):
            return value
        raise TypeError
    if typ is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise TypeError
    if typ is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if math.isnan(float(value)):
                raise TypeError
            return float(value)
        raise TypeError
    if typ is str:
        if isinstance(value, str):
            return value
        if isinstance(value, os.PathLike):
            return os.fspath(value)
        raise TypeError
    if dataclasses.is_dataclass(typ):
        if isinstance(value, typ):
            return value
        raise TypeError
    return value  # Any and other annotations are not checked


def check_types(obj: Any) -> None:
    """Check every field of the dataclass instance ``obj`` against its annotation.

    Booleans must be ``True``/``False`` (a string such as ``"no"`` is refused, not read as
    true), integers must be integers, numbers may be ints (stored as floats, NaN refused),
    ``Literal[...]`` fields must hold one of their values.

    Raises:
        ConfigError: naming ``Class.field``, what it expects and the value found.
    """
    cls = type(obj)
    for name, typ in field_types(cls).items():
        value = getattr(obj, name)
        try:
            conformed = _conform(value, typ)
        except TypeError:
            raise ConfigError(f"{cls.__name__}.{name} must be {type_name(typ)}, got {value!r}") from None
        if conformed is not value:
            object.__setattr__(obj, name, conformed)


def at_least(obj: Any, minimum: float, *names: str) -> None:
    """Raise a :class:`ConfigError` naming the first of ``names`` whose value is below ``minimum``."""
    for name in names:
        value = getattr(obj, name)
        if value < minimum:
            raise ConfigError(f"{type(obj).__name__}.{name} must be >= {minimum}, got {value!r}")


def in_range(obj: Any, name: str, low: float, high: float, *, low_open: bool = False,
             high_open: bool = False) -> None:
    """Raise a :class:`ConfigError` unless ``low <(=) obj.name <(=) high``."""
    value = getattr(obj, name)
    above = value > low if low_open else value >= low
    below = value < high if high_open else value <= high
    if not (above and below):
        interval = f"{'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"
        raise ConfigError(f"{type(obj).__name__}.{name} must be in {interval}, got {value!r}")


def positive(obj: Any, *names: str) -> None:
    """Raise a :class:`ConfigError` naming the first of ``names`` that is not > 0."""
    for name in names:
        value = getattr(obj, name)
        if not value > 0:
            raise ConfigError(f"{type(obj).__name__}.{name} must be > 0, got {value!r}")
