"""Typed run configuration: dataclasses, YAML, and ``--set key=value`` overrides."""
from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Dict, List, Literal, Optional, Tuple

import yaml

from dhmrec_pyg.checks import at_least, check_types, in_range, positive
from dhmrec_pyg.errors import ConfigError
from dhmrec_pyg.models.base import OPTION_ALIASES, GraphConfig, resolve_aliases
from dhmrec_pyg.training.sampler import NEGATIVE_POOLS

__all__ = ["ConfigError", "GraphConfig", "TrainConfig"]


@dataclass
class TrainConfig:
    """Everything about a run that is not a model hyper-parameter.

    Defaults follow MMRec's protocol (README, *Protocol*; docs/readings.md): batch 2048, Adam with
    learning rate 1e-3, up to 1000 epochs, early stopping after 20 epochs
    without a better validation Recall@20, BPR negatives drawn from the items
    that have a training interaction (``negatives``, see
    :class:`~dhmrec_pyg.training.sampler.BPRSampler`).

    Three options say how a step runs, not what it computes (same values to float
    tolerance; README, *Speed options*), so they are no part of a run's identity
    (:func:`identity_text`; their defaults: :data:`EXECUTION_DEFAULTS`):

    - ``optimizer_impl``: how Adam updates the parameter tensors, one of
      :data:`OPTIMIZER_IMPLS`: ``loop`` (one tensor at a time, PyTorch's CPU default),
      ``foreach`` (multi-tensor kernels), ``fused`` (one fused kernel per device and dtype),
      ``auto`` (``fused`` where the device has the fused kernel: CPU and CUDA; else
      ``foreach`` where it has multi-tensor kernels; else ``loop``).
    - ``compile``: ``none`` (eager, the default) or a ``torch.compile`` mode of
      :data:`COMPILE_MODES` (``default``, ``reduce-overhead``: CUDA graphs on CUDA, ...)
      for the loss computation and its backward; ``true`` / ``false`` mean ``default`` /
      ``none``.
    - ``compile_backend``: the ``torch.compile`` backend (``inductor``; ``aot_eager``
      captures the same graphs without generating code, to check a model quickly).

    ``ema_decay`` (0, the default: off) makes the run evaluate, select and save an
    exponential moving average of the parameters instead of the last step's (Polyak
    averaging): after every optimiser step each averaged tensor moves ``1 - ema_decay`` of
    the way to its parameter, so 0.99 averages over roughly the last 100 steps. Gradients
    and the optimiser are unchanged; what is evaluated changes, so it is part of a run's
    identity.

    ``logger`` says how the run is watched, like ``progress`` (so it is no part of a run's
    identity either): ``csv`` (the default) writes ``history.csv`` only; ``tensorboard`` writes
    TensorBoard event files to the run folder's ``tensorboard/`` as well (needs the
    ``tensorboard`` extra; :mod:`~dhmrec_pyg.training.logging_tb`).

    ``graph`` (a :class:`~dhmrec_pyg.models.base.GraphConfig`) says how the run builds and
    stores its model's graphs (KNN cache, self loops, exact search limit, sparse layout); its
    fields are set like any other (``--set knn_cache_dir=none``).

    Every field is checked when the config is made (types, then ranges), with an error naming
    ``TrainConfig.<field>`` and the value.
    """

    model: str = "dhmrec"
    dataset: str = "demo"
    data_root: str = "data"
    epochs: int = 1000
    batch_size: int = 2048
    lr: float = 1e-3
    patience: int = 20
    seed: int = 0
    eval_batch_size: int = 4096
    ks: List[int] = field(default_factory=lambda: [5, 10, 20, 50])
    valid_metric: str = "recall@20"
    device: str = "auto"
    num_threads: int = 0
    progress: bool = True
    logger: Literal["csv", "tensorboard"] = "csv"
    negatives: str = "trained"
    optimizer_impl: str = "auto"
    compile: str = "none"
    compile_backend: str = "inductor"
    ema_decay: float = 0.0
    graph: GraphConfig = field(default_factory=GraphConfig)

    def __post_init__(self) -> None:
        if isinstance(self.graph, dict):
            self.graph = GraphConfig(**self.graph)
        self.compile = compile_mode(self.compile)
        check_types(self)
        at_least(self, 1, "epochs", "batch_size", "patience", "eval_batch_size")
        at_least(self, 0, "num_threads")
        positive(self, "lr")
        in_range(self, "ema_decay", 0.0, 1.0, high_open=True)
        if not self.ks or any(k < 1 for k in self.ks):
            raise ConfigError(f"TrainConfig.ks must be a non-empty list of cut-offs >= 1, got {self.ks!r}")
        for name in ("model", "dataset", "device", "valid_metric"):
            if not getattr(self, name).strip():
                raise ConfigError(f"TrainConfig.{name} must not be empty, got {getattr(self, name)!r}")
        if self.negatives not in NEGATIVE_POOLS:
            raise ConfigError(f"TrainConfig.negatives must be one of {', '.join(NEGATIVE_POOLS)}, "
                              f"got {self.negatives!r}")
        if self.optimizer_impl not in OPTIMIZER_IMPLS:
            raise ConfigError(f"TrainConfig.optimizer_impl must be one of {', '.join(OPTIMIZER_IMPLS)}, "
                              f"got {self.optimizer_impl!r}")
        if not self.compile_backend.strip():
            raise ConfigError(f"TrainConfig.compile_backend must be a torch.compile backend name, "
                              f"got {self.compile_backend!r}")


#: Values of ``TrainConfig.optimizer_impl`` (see :func:`~dhmrec_pyg.training.trainer.build_optimizer`).
OPTIMIZER_IMPLS: Tuple[str, ...] = ("auto", "loop", "foreach", "fused")

#: Values of ``TrainConfig.compile``: ``none`` (eager) or a ``torch.compile`` mode.
COMPILE_MODES: Tuple[str, ...] = ("none", "default", "reduce-overhead", "max-autotune",
                                  "max-autotune-no-cudagraphs")

_COMPILE_WORDS = {"true": "default", "yes": "default", "on": "default", "1": "default",
                  "false": "none", "no": "none", "off": "none", "0": "none", "": "none"}


def compile_mode(value: Any) -> str:
    """The :data:`COMPILE_MODES` value of a ``compile`` option (``True``/``"true"`` mean
    ``"default"``, ``False``/``"false"``/``None`` mean ``"none"``).

    Raises:
        ValueError: naming the accepted values.
    """
    text = "none" if value is None else str(value).strip().lower()
    text = _COMPILE_WORDS.get(text, text)
    if text not in COMPILE_MODES:
        raise ConfigError(f"TrainConfig.compile must be true, false or one of {', '.join(COMPILE_MODES)}, got {value!r}")
    return text


#: Training options that say how a step runs, not what it computes, at their defaults:
#: :func:`identity_text` ignores them, a finished run counts whatever values it ran with, and
#: format-1 files (:func:`format1_text`) leave them out at these values.
EXECUTION_DEFAULTS: Dict[str, Any] = {"optimizer_impl": "auto", "compile": "none", "compile_backend": "inductor"}


#: :class:`~dhmrec_pyg.models.base.GraphConfig` options that say how a step runs, not what it
#: computes (``recompute``: memory against time, the same values). They came after format 1, so
#: :func:`format1_text`, and with it :func:`identity_text`, leaves them out: a checkpoint resumes
#: with any value, and checkpoints written before them keep their identity.
GRAPH_EXECUTION_OPTIONS: Tuple[str, ...] = ("recompute",)


def _field_types(cls: type) -> Dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in fields(cls)}


def _parse_scalar(text: str) -> Any:
    """Parse a command-line value: numbers (``1e-4`` included), booleans, lists."""
    for conv in (int, float):
        try:
            return conv(text)
        except ValueError:
            pass
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    if isinstance(value, list):
        return [_parse_scalar(v) if isinstance(v, str) else v for v in value]
    return value


def coerce(value: Any, typ: Any, key: str) -> Any:
    """Convert ``value`` (parsed YAML or a string) to the field type ``typ``.

    Raises:
        ConfigError: naming ``key`` and the offending value.
    """
    origin = typing.get_origin(typ)
    args = typing.get_args(typ)
    if dataclasses.is_dataclass(typ):
        if isinstance(value, typ):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"{key!r} expects a mapping of {typ.__name__} options, got {value!r}")
        return build_dataclass(typ, value, key)
    if origin is typing.Literal:  # the config's own check names the choices
        return value
    if origin is typing.Union and type(None) not in args:  # e.g. a number or a word: parse the text
        return _parse_scalar(value) if isinstance(value, str) else value
    if isinstance(value, str) and typ is not str:
        value = _parse_scalar(value)
    if origin is typing.Union and type(None) in args:  # Optional[T]: None, or a T
        if value is None or (isinstance(value, str) and value.lower() in ("", "none", "null")):
            return None
        inner = [a for a in args if a is not type(None)]
        return coerce(value, inner[0], key)
    try:
        if typ is bool:
            if isinstance(value, bool):
                return value
            raise TypeError
        if typ is int:
            if isinstance(value, bool) or not isinstance(value, int):
                if isinstance(value, float) and value.is_integer():
                    return int(value)
                raise TypeError
            return value
        if typ is float:
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise TypeError
            return float(value)
        if typ is str:
            return str(value)
        if origin in (list, List, tuple, Tuple):
            (inner, *_) = typing.get_args(typ) or (Any,)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                value = [value]
            if not isinstance(value, (list, tuple)):
                raise TypeError
            return [coerce(v, inner, key) for v in value]
    except TypeError:
        name = getattr(typ, "__name__", str(typ))
        raise ConfigError(f"{key!r} expects a value of type {name}, got {value!r}") from None
    return value


def build_dataclass(cls: type, values: Dict[str, Any], where: str) -> Any:
    """Instantiate the dataclass ``cls`` from a dict, checking keys and types.

    A ``preset`` key picks one of the named constructors of a config that has them
    (``DHMRecConfig.presets()``: ``default``, ``paper``); the other keys set options on top of it.
    """
    types = _field_types(cls)
    try:
        values = resolve_aliases(cls, values)  # e.g. FREEDOM's dropout -> keep_ratio
    except ValueError as exc:
        raise ConfigError(f"{where} option: {exc}") from None
    presets = getattr(cls, "presets", None)
    if presets is not None and "preset" in values:
        values = dict(values)
        name = values.pop("preset")
        if name not in presets():
            raise ConfigError(f"{where} option 'preset' must be one of {', '.join(presets())}, got {name!r}")
        values = {**dataclasses.asdict(presets()[name]()), **values}
    unknown = sorted(set(values) - set(types))
    if unknown:
        raise ConfigError(
            f"unknown {where} option {unknown[0]!r}; known options: {', '.join(sorted(types))}"
        )
    try:
        return cls(**{k: coerce(v, types[k], k) for k, v in values.items()})
    except (ValueError, TypeError) as exc:  # a dataclass's own validation (__post_init__)
        if isinstance(exc, ConfigError):
            raise
        raise ConfigError(f"{where} option: {exc}") from None


def split_overrides(pairs: List[str]) -> List[Tuple[str, str]]:
    """Parse ``key=value`` strings, rejecting anything else with a clear message."""
    out = []
    for pair in pairs:
        if "=" not in pair or not pair.split("=", 1)[0].strip():
            raise ConfigError(f"--set expects key=value, got {pair!r}")
        key, value = pair.split("=", 1)
        out.append((key.strip(), value.strip()))
    return out


def apply_overrides(
    train: TrainConfig, model_values: Dict[str, Any], model_cls_config: type, pairs: List[str]
) -> Tuple[TrainConfig, Any]:
    """Apply ``key=value`` overrides to a train config and a model config.

    A key may be qualified (``train.lr``, ``model.num_layers``, ``graph.knn_cache_dir``) or bare;
    a bare key is looked up in the model's options first, then the graph options
    (:class:`~dhmrec_pyg.models.base.GraphConfig`, kept in ``TrainConfig.graph``), then the
    training options.

    Returns:
        The new ``TrainConfig`` and the model config dataclass instance.
    """
    train_types = _field_types(TrainConfig)
    model_types = _field_types(model_cls_config)
    graph_types = _field_types(GraphConfig)
    train_values = dataclasses.asdict(train)
    try:
        model_values = resolve_aliases(model_cls_config, model_values)
    except ValueError as exc:
        raise ConfigError(f"model option: {exc}") from None
    for key, value in split_overrides(pairs):
        section, _, name = key.rpartition(".")
        if section not in ("", "train", "model", "graph"):
            raise ConfigError(f"--set {key}: section must be 'train', 'model' or 'graph', got {section!r}")
        if section in ("", "model") and name not in model_types and name in OPTION_ALIASES:
            target, convert = OPTION_ALIASES[name]
            if target in model_types:  # another name of a model option: set that option
                name, value = target, convert(coerce(value, float, name))
        if name == "preset" and section in ("", "model") and hasattr(model_cls_config, "presets"):
            model_values["preset"] = value  # a named constructor (build_dataclass), the rest on top
            continue
        if section == "model" or (section == "" and name in model_types):
            if name not in model_types:
                raise ConfigError(
                    f"--set {key}: the model has no option {name!r}; "
                    f"its options are: {', '.join(sorted(model_types))}"
                )
            model_values[name] = coerce(value, model_types[name], name)
        elif name in graph_types and section in ("", "graph", "train"):
            train_values["graph"][name] = coerce(value, graph_types[name], name)
        elif name in train_types and section != "graph":
            train_values[name] = coerce(value, train_types[name], name)
        else:
            known = sorted((set(train_types) - {"graph"}) | set(model_types) | set(graph_types))
            raise ConfigError(f"--set {key}: unknown option {name!r}; known: {', '.join(known)}")
    return (
        build_dataclass(TrainConfig, train_values, "training"),
        build_dataclass(model_cls_config, model_values, "model"),
    )


def _read_yaml(path: Path) -> Dict[str, Any]:
    """A YAML mapping from ``path``, its ``train`` / ``model`` sections checked to be mappings."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})") from None
    if not isinstance(raw, dict) or set(raw) - {"train", "model", "format", "data"}:
        raise ConfigError(f"{path}: expected a mapping with 'train' and/or 'model' sections")
    for section in ("train", "model"):
        if not isinstance(raw.get(section, {}), dict):
            raise ConfigError(f"{path}: section {section!r} must be a mapping")
    return raw


def load_yaml_config(path: str | Path) -> Dict[str, Dict[str, Any]]:
    """Read a run config YAML with optional ``train:`` and ``model:`` sections.

    A run folder's ``config.yaml`` is accepted as well; its ``format`` and ``data`` entries are
    not used (read a run's configuration with :func:`load_run_config`).
    """
    raw = _read_yaml(Path(path))
    return {"train": raw.get("train", {}), "model": raw.get("model", {})}


# ---------------------------------------------------------------------- run folders' config.yaml
#: The format of the ``config.yaml`` a run folder gets (its top-level ``format`` key). Format 1,
#: a file without the key, is what runs written before the key existed have; :func:`load_run_config`
#: reads every format through :data:`MIGRATIONS`.
RUN_FORMAT: int = 2

#: ``data.dataset`` of a run trained on a graph handed in from Python (see
#: :mod:`dhmrec_pyg.training.source`): rebuilding the run needs that graph.
IN_MEMORY: str = "<in-memory graph>"

#: Model options this library no longer has, per model, with the one value it kept: a stored run
#: that has one at that value loads without it; at any other value it is refused
#: (:func:`drop_retired`).
RETIRED_MODEL_OPTIONS: Dict[str, Dict[str, Any]] = {
    "dhmrec": {
        "reg_target": "final", "kl_grad": "both", "kl_scores": "dot", "kl_temperature": 1.0,
        "gate_detach": False, "prune_views": False, "view_dropout": 0.0, "attention_axis": "dims",
        "mm_center": False,
    },
}

_ABSENT = object()

#: Format 1: training options such files may lack (they were added later), with the value the
#: runs that lack them used.
FORMAT1_IMPLICIT_TRAIN: Dict[str, Any] = {"negatives": "all"}

#: Format 1: model options such files may lack, per model, with the value the runs that lack
#: them used (DHMRec: the paper-literal readings of :data:`~dhmrec_pyg.models.dhmrec.PRESETS`).
FORMAT1_IMPLICIT_MODEL: Dict[str, Dict[str, Any]] = {
    "dhmrec": {
        "preset": "paper", "attention_scale": "sqrt_n", "attention_scope": "all", "view_norm": "layernorm",
        "reg_target": "final", "kl_grad": "both", "kl_scores": "dot", "kl_temperature": 1.0, "gate_detach": False,
        "prune_views": False, "view_dropout": 0.0, "attention_axis": "dims", "mm_center": False,
    },
}

#: Format 1: model options such files may store under an earlier name, per model: option ->
#: (the earlier name, how the value converts to it), read off the one alias table,
#: :data:`~dhmrec_pyg.models.base.OPTION_ALIASES` (each conversion is its own inverse: ``float``
#: and ``1 - v``).
FORMAT1_OLD_NAMES: Dict[str, Dict[str, Tuple[str, Any]]] = {
    "freedom": {target: (alias, convert) for alias, (target, convert) in OPTION_ALIASES.items()},
}

#: Format 1: training options left out of such files at these values.
_FORMAT1_UNWRITTEN: Dict[str, Any] = {**EXECUTION_DEFAULTS, "ema_decay": 0.0, "logger": "csv"}


def format1_text(train: TrainConfig, model: Any, legacy: bool = False) -> str:
    """The ``config.yaml`` text a format-1 run of this configuration has (no ``format`` key).

    The execution options (:data:`EXECUTION_DEFAULTS`), ``ema_decay`` and ``logger`` are left out
    at their defaults, the graph's execution options (:data:`GRAPH_EXECUTION_OPTIONS`) always.
    With ``legacy``, options at their :data:`FORMAT1_IMPLICIT_TRAIN` /
    :data:`FORMAT1_IMPLICIT_MODEL` value are left out too and renamed options carry their earlier
    name (:data:`FORMAT1_OLD_NAMES`), as a run written before those options existed has them.
    Kept for :func:`identity_text`, which every checkpoint is tied to.
    """
    values = {k: v for k, v in dataclasses.asdict(train).items() if _FORMAT1_UNWRITTEN.get(k, _ABSENT) != v}
    values["graph"] = {k: v for k, v in values["graph"].items() if k not in GRAPH_EXECUTION_OPTIONS}
    model_values = dataclasses.asdict(model)
    if legacy:
        values = {k: v for k, v in values.items() if FORMAT1_IMPLICIT_TRAIN.get(k, _ABSENT) != v}
        implicit = FORMAT1_IMPLICIT_MODEL.get(train.model, {})
        model_values = {k: v for k, v in model_values.items() if implicit.get(k, _ABSENT) != v}
        renamed = FORMAT1_OLD_NAMES.get(train.model, {})
        model_values = {
            renamed[k][0] if k in renamed else k: renamed[k][1](v) if k in renamed else v
            for k, v in model_values.items()
        }
    return yaml.safe_dump({"train": values, "model": model_values}, sort_keys=False)


def drop_retired(model_name: str, values: Dict[str, Any], where: str | Path) -> Dict[str, Any]:
    """``values`` (a stored model section) without the model's :data:`RETIRED_MODEL_OPTIONS`.

    An option that is not stored, or stored as null / empty (its preset's value), or at the value
    the library kept, is simply left out.

    Raises:
        ConfigError: naming ``where``, the option and its value, when it holds another value.
    """
    retired = RETIRED_MODEL_OPTIONS.get(model_name, {})
    for name, kept in retired.items():
        value = values.get(name, kept)
        if value not in (None, "") and (value != kept or isinstance(value, bool) != isinstance(kept, bool)):
            raise ConfigError(
                f"{where}: model option {name}={value!r}: this version of dhmrec_pyg only has "
                f"{name}={kept!r} (the option was removed), so the run cannot be rebuilt"
            )
    return {k: v for k, v in values.items() if k not in retired}


def _migrate_format_1(doc: Dict[str, Any], where: Path) -> Dict[str, Any]:
    """Format 1 to 2: options the file predates get the value its run used
    (:data:`FORMAT1_IMPLICIT_TRAIN`, :data:`FORMAT1_IMPLICIT_MODEL`), options stored under an
    earlier name (:data:`FORMAT1_OLD_NAMES`) get their name, retired options go
    (:func:`drop_retired`), the graph options (KNN cache, self loops, exact search limit,
    layout) move from the model section to ``train.graph``; where the data came from was not
    recorded (``data``: ``None``)."""
    train = {**FORMAT1_IMPLICIT_TRAIN, **doc["train"]}
    name = str(train.get("model", TrainConfig.model))
    model = {**FORMAT1_IMPLICIT_MODEL.get(name, {}), **doc["model"]}
    for new, (old, _) in FORMAT1_OLD_NAMES.get(name, {}).items():
        if old not in model:
            continue
        if new in model:
            raise ConfigError(f"{where}: model options {old!r} and {new!r} are one option; the file has both")
        value = model.pop(old)
        try:
            model[new] = OPTION_ALIASES[old][1](float(value))
        except (TypeError, ValueError):
            raise ConfigError(f"{where}: model option {old!r} expects a number, got {value!r}") from None
    model = drop_retired(name, model, where)
    # How graphs are built and stored moved from the model's options to TrainConfig.graph.
    graph_keys = [f.name for f in dataclasses.fields(GraphConfig)]
    graph = {key: model.pop(key) for key in graph_keys if key in model}
    if graph:
        train["graph"] = {**graph, **(train.get("graph") or {})}
    return {"format": 2, "train": train, "model": model, "data": None}


#: How to read ``config.yaml`` of an earlier format: format -> the function that turns such a file
#: (``{"format", "train", "model", "data"}``, and the file's path for messages) into the next format.
MIGRATIONS: Dict[int, Any] = {1: _migrate_format_1}


def _check_data_section(data: Any, where: Path) -> None:
    """Raise :class:`ConfigError` naming ``where`` unless ``data`` is a valid ``data`` section."""
    if data is None:
        return
    if not isinstance(data, dict) or not isinstance(data.get("dataset"), str) or not data["dataset"]:
        raise ConfigError(f"{where}: section 'data' must be a mapping with a 'dataset' name, got {data!r}")
    if data["dataset"] == IN_MEMORY:
        edge_type = data.get("edge_type")
        names = edge_type if isinstance(edge_type, list) else []
        if len(names) != 3 or not all(isinstance(n, str) and n for n in names):
            raise ConfigError(f"{where}: data.edge_type must be a list of three names, got {edge_type!r}")
    elif not isinstance(data.get("data_root"), str):
        raise ConfigError(f"{where}: data.data_root must be a folder path, got {data.get('data_root')!r}")
    fingerprint = data.get("fingerprint")
    if fingerprint is not None and not (isinstance(fingerprint, dict) and all(
            isinstance(k, str) and isinstance(v, (str, int)) and not isinstance(v, bool)
            for k, v in fingerprint.items())):
        raise ConfigError(f"{where}: data.fingerprint must map parts of the data set to their digests, "
                          f"got {fingerprint!r}")


def load_run_config(path: str | Path) -> Dict[str, Any]:
    """A run folder's ``config.yaml``, of any format, as format :data:`RUN_FORMAT`.

    Returns:
        ``{"format", "train", "model", "data"}``: the training and model options (those the file
        predates at the value its run used, see :data:`MIGRATIONS`) and where the run's data came
        from (``None`` when the file does not say: format 1).

    Raises:
        ConfigError: naming the file, for an unreadable file, an unknown format or a bad section.
    """
    path = Path(path)
    raw = _read_yaml(path)
    version = raw.get("format", 1)
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise ConfigError(f"{path}: format must be a positive integer, got {version!r}")
    if version > RUN_FORMAT:
        raise ConfigError(f"{path}: format {version} is newer than this version of dhmrec_pyg reads "
                          f"(up to {RUN_FORMAT}); upgrade dhmrec_pyg")
    if version == 1 and "data" in raw:
        raise ConfigError(f"{path}: a 'data' section needs 'format: {RUN_FORMAT}'")
    doc = {"format": version, "train": raw.get("train", {}), "model": raw.get("model", {}), "data": raw.get("data")}
    while doc["format"] < RUN_FORMAT:
        doc = MIGRATIONS[doc["format"]](doc, path)
    _check_data_section(doc["data"], path)
    return doc


def dump_config(train: TrainConfig, model: Any, data: Optional[Dict[str, Any]] = None) -> str:
    """The ``config.yaml`` text of a run (format :data:`RUN_FORMAT`).

    ``format``, then every training and model option, then, with ``data``, where the run's data
    came from (:func:`~dhmrec_pyg.training.source.data_source`): ``dataset`` and ``data_root``
    with absolute paths, or :data:`IN_MEMORY` and the ``edge_type`` of a graph from Python; and
    what it was, its ``fingerprint`` (:func:`~dhmrec_pyg.training.fingerprint.data_fingerprint`).
    """
    doc: Dict[str, Any] = {"format": RUN_FORMAT, "train": dataclasses.asdict(train),
                           "model": dataclasses.asdict(model)}
    if data is not None:
        doc["data"] = dict(data)
    return yaml.safe_dump(doc, sort_keys=False)


def identity_text(train: TrainConfig, model: Any) -> str:
    """The config text that identifies a run for its checkpoints.

    :func:`format1_text` (``legacy``) of the config without how the run is watched or where and
    how it runs (``progress``, ``logger``, ``device``, the :data:`EXECUTION_DEFAULTS` options: a checkpoint
    written eagerly resumes compiled, or with another Adam implementation). Every run, of either
    format, is identified by this text, so the checkpoints of format-1 runs stay resumable; where
    the data came from is no part of it.
    """
    plain = dataclasses.replace(train, progress=True, logger="csv", device="auto", **EXECUTION_DEFAULTS)
    return format1_text(plain, model, legacy=True)
