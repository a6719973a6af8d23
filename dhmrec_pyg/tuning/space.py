"""Search spaces of ``dhmrec tune``: each model's published grid, or a YAML file of the user's.

A space maps option names to a :class:`Param`: a list of values (a categorical
distribution over a grid) or a ``{low, high, log}`` range (a float, or an integer for an
integer option). Names are the model's config options (:mod:`dhmrec_pyg.models`), the
other names those accept (FREEDOM's ``dropout``), or one of the training options of
:data:`TUNABLE_TRAIN_OPTIONS`; every value is checked by building the configuration it
gives before any trial runs.
"""
from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import yaml

from dhmrec_pyg.models import MODELS
from dhmrec_pyg.models.base import OPTION_ALIASES
from dhmrec_pyg.training.config import ConfigError, TrainConfig, apply_overrides

#: Training options a space may also search (the rest define the run, not a hyper-parameter).
TUNABLE_TRAIN_OPTIONS: Tuple[str, ...] = ("lr", "batch_size", "ema_decay", "negatives")

_REGS = [0.0, 1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1]

#: Each model's default space: the grid of its paper (or public configuration), as lists.
#: DHMRec: the paper's grid (gamma_dis, gamma_kl, gamma_reg = ``reg_weight``, alpha_mm);
#: FREEDOM: its public grid, dropout {0.8, 0.9} read as ``keep_ratio`` = 1 - dropout;
#: LightGCN: layers x reg_weight; LGMRec: the grid listed in its public model configuration
#: (ui / modality / hypergraph layers, hyperedges, keep rate, alpha, contrastive and L2 weights);
#: BPR: MMRec's ``reg_weight`` grid.
DEFAULT_SPACES: Dict[str, Dict[str, List[Any]]] = {
    "dhmrec": {
        "gamma_dis": [1e-3, 1e-2, 1e-1, 0.5, 1.0],
        "gamma_kl": [1e-3, 1e-2, 1e-1, 0.5, 1.0],
        "reg_weight": list(_REGS),
        "alpha_mm": [round(0.1 * i, 1) for i in range(16)],
    },
    "freedom": {"keep_ratio": [0.2, 0.1], "reg_weight": [0.0, 1e-5, 1e-4, 1e-3]},
    "lightgcn": {"num_layers": [1, 2, 3, 4], "reg_weight": [1e-5, 1e-4, 1e-3, 1e-2]},
    "lgmrec": {
        "num_ui_layers": [1, 2, 3, 4],
        "num_mm_layers": [1, 2, 3, 4],
        "num_hyper_layers": [1, 2, 3, 4],
        "num_hyperedges": [2, 4, 8, 16, 32, 64, 128, 256],
        "keep_rate": [round(0.1 * i, 1) for i in range(1, 11)],
        "alpha": [0.0, 0.01, 0.05] + [round(0.1 * i, 1) for i in range(1, 11)],
        "cl_weight": list(_REGS),
        "reg_weight": list(_REGS),
    },
    "bpr": {"reg_weight": [2.0, 1.0, 1e-1, 1e-2, 1e-3, 1e-4, 1e-5]},
}


@dataclass(frozen=True)
class Param:
    """One searched option: a categorical over ``choices``, or a ``[low, high]`` range.

    Attributes:
        name: the option (as :func:`~dhmrec_pyg.training.config.apply_overrides` takes it).
        choices: the values of a categorical distribution, or ``None`` for a range.
        low, high: the bounds of a range (inclusive).
        log: draw a range on a log scale.
        integer: the range is of integers.
    """

    name: str
    choices: Optional[Tuple[Any, ...]] = None
    low: Optional[float] = None
    high: Optional[float] = None
    log: bool = False
    integer: bool = False

    def suggest(self, trial: Any) -> Any:
        """The value an ``optuna.Trial`` draws for this option."""
        if self.choices is not None:
            return trial.suggest_categorical(self.name, list(self.choices))
        assert self.low is not None and self.high is not None
        if self.integer:
            return trial.suggest_int(self.name, int(self.low), int(self.high), log=self.log)
        return trial.suggest_float(self.name, float(self.low), float(self.high), log=self.log)

    def describe(self) -> str:
        """A short text of the distribution (``{1, 2, 3}`` or ``[1e-05, 0.01] log``)."""
        if self.choices is not None:
            return "{" + ", ".join(str(c) for c in self.choices) + "}"
        return f"[{self.low}, {self.high}]" + (" log" if self.log else "") + (" int" if self.integer else "")

    def edge_values(self) -> List[Any]:
        """The values whose configurations are checked up front (all choices, or both bounds)."""
        if self.choices is not None:
            return list(self.choices)
        return [int(self.low) if self.integer else self.low, int(self.high) if self.integer else self.high]


#: A search space: option name -> :class:`Param`, in the order options are drawn.
Space = Dict[str, Param]


def override_pair(name: str, value: Any) -> str:
    """``name=value`` as :func:`~dhmrec_pyg.training.config.apply_overrides` reads it back exactly."""
    if value is None:
        return f"{name}=null"
    if isinstance(value, float):
        return f"{name}={value!r}"
    return f"{name}={value}"


def _option_type(model: str, name: str) -> Any:
    """The declared type of option ``name`` (a model option, one of its aliases, or a tunable
    training option), or raise :class:`ConfigError` naming the known options."""
    config_class = MODELS[model].config_class
    hints = typing.get_type_hints(config_class)
    fields = {f.name for f in dataclasses.fields(config_class)}
    if name in fields:
        return hints[name]
    if name in OPTION_ALIASES and OPTION_ALIASES[name][0] in fields:
        return float
    if name in TUNABLE_TRAIN_OPTIONS:
        return typing.get_type_hints(TrainConfig)[name]
    known = sorted(fields | set(TUNABLE_TRAIN_OPTIONS))
    raise ConfigError(f"search space: {model} has no option {name!r}; its options are: {', '.join(known)}")


def _numeric_kind(typ: Any) -> Optional[type]:
    """``int`` or ``float`` for an (optionally ``Optional``) numeric type, else ``None``."""
    args = [a for a in typing.get_args(typ) if a is not type(None)]
    base = args[0] if typing.get_origin(typ) is typing.Union and len(args) == 1 else typ
    return base if base in (int, float) else None


def _scalar(value: Any) -> Any:
    """A YAML value as a number where it reads as one (PyYAML leaves ``1e-5`` a string)."""
    if isinstance(value, str):
        for conv in (int, float):
            try:
                return conv(value)
            except ValueError:
                pass
    return value


def make_param(model: str, name: str, spec: Any, where: str = "search space") -> Param:
    """The :class:`Param` of option ``name`` of ``model`` from a list of values or a
    ``{low, high, log}`` mapping (``{choices: [...]}`` is a list too).

    Raises:
        ConfigError: an unknown option, an empty list, or a malformed range (naming ``where``).
    """
    typ = _option_type(model, name)
    if isinstance(spec, Mapping) and set(spec) == {"choices"}:
        spec = spec["choices"]
    if isinstance(spec, (list, tuple)):
        choices = tuple(_scalar(v) for v in spec)
        if not choices or any(not isinstance(v, (bool, int, float, str, type(None))) for v in choices):
            raise ConfigError(f"{where}: {name!r} needs a non-empty list of numbers, strings or booleans, got {spec!r}")
        return Param(name, choices=tuple(dict.fromkeys(choices)))
    if not isinstance(spec, Mapping) or not {"low", "high"} <= set(spec) or set(spec) - {"low", "high", "log"}:
        raise ConfigError(f"{where}: {name!r} expects a list of values or {{low, high, log}}, got {spec!r}")
    kind = _numeric_kind(typ)
    low, high, log = _scalar(spec["low"]), _scalar(spec["high"]), spec.get("log", False)
    if kind is None or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (low, high)):
        raise ConfigError(f"{where}: a range needs a numeric option and numeric bounds, got {name!r}: {spec!r}")
    if not isinstance(log, bool) or not low < high or (log and low <= 0):
        raise ConfigError(f"{where}: {name!r} needs low < high (and low > 0 with log: true), got {spec!r}")
    if kind is int and not (float(low).is_integer() and float(high).is_integer()):
        raise ConfigError(f"{where}: {name!r} is an integer option; its bounds must be integers, got {spec!r}")
    return Param(name, low=low, high=high, log=log, integer=kind is int)


def default_space(model: str) -> Space:
    """The default space of ``model`` (:data:`DEFAULT_SPACES`).

    Raises:
        ConfigError: an unknown model.
    """
    if model not in DEFAULT_SPACES:
        raise ConfigError(f"model: no search space for {model!r}; known: {', '.join(sorted(DEFAULT_SPACES))}")
    return {name: make_param(model, name, values) for name, values in DEFAULT_SPACES[model].items()}


def load_space(model: str, path: str | Path) -> Space:
    """The space of a YAML file: a mapping option -> list of values or ``{low, high, log}``.

    Raises:
        ConfigError: an unreadable file, not a non-empty mapping, or a bad entry (naming the file).
    """
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read search space file {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})") from None
    if not isinstance(raw, dict) or not raw:
        raise ConfigError(f"{path}: expected a mapping of option -> list of values or {{low, high, log}}")
    return {str(name): make_param(model, str(name), spec, str(path)) for name, spec in raw.items()}


def as_space(model: str, space: Any) -> Space:
    """A space from ``None`` (the default), a YAML path, a mapping of specs or of :class:`Param`."""
    if space is None:
        return default_space(model)
    if isinstance(space, (str, Path)):
        return load_space(model, space)
    if not isinstance(space, Mapping) or not space:
        raise ConfigError(f"search space: expected a non-empty mapping or a YAML file, got {space!r}")
    return {name: spec if isinstance(spec, Param) else make_param(model, name, spec) for name, spec in space.items()}


def check_space(space: Space, cfg: TrainConfig, model_values: Dict[str, Any], overrides: Sequence[str]) -> None:
    """Build the configuration of every choice (or range bound) of every option on top of ``cfg``.

    Raises:
        ConfigError: ``option=value: <why>`` for the first value no configuration accepts.
    """
    config_class = MODELS[cfg.model].config_class
    for param in space.values():
        _option_type(cfg.model, param.name)
        for value in param.edge_values():
            pair = override_pair(param.name, value)
            try:
                apply_overrides(cfg, dict(model_values), config_class, list(overrides) + [pair])
            except ConfigError as exc:
                raise ConfigError(f"search space: {pair}: {exc}") from None
