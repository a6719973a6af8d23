"""One run, several seeds, or a grid: the experiment drivers behind the CLI."""
from __future__ import annotations

import csv
import io
import itertools
import json
import multiprocessing
import os
import statistics
import tempfile
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any, Dict, List, NamedTuple, Optional, Sequence, Tuple, Union

import torch
from torch_geometric.data import HeteroData

from dhmrec_pyg import files as dfiles
from dhmrec_pyg.schema import as_interaction_graph
from dhmrec_pyg.training import distributed as ddist
from dhmrec_pyg.training.config import (
    EXECUTION_DEFAULTS,
    IN_MEMORY,
    ConfigError,
    TrainConfig,
    apply_overrides,
    build_dataclass,
    load_run_config,
)
from dhmrec_pyg.training.checkpoint import CHECKPOINT_NAME
from dhmrec_pyg.training.fingerprint import check_fingerprint
from dhmrec_pyg.training.folder import BEST_NAME
from dhmrec_pyg.training.source import cache_folder, config_source, data_source, remember_source
from dhmrec_pyg.training.weights import WeightsError, load_weights, verify_weights
from dhmrec_pyg.training.trainer import Trainer, build_model, seed_everything

#: A source as :mod:`dhmrec_pyg.training.source` describes it (a ``config.yaml``'s ``data`` section).
Source = Dict[str, Any]


def load_data(cfg: TrainConfig) -> HeteroData:
    """Load the dataset a config names (a synthetic profile, a name under ``data_root``, or a folder).

    Relative paths are taken from the working directory; the graph is remembered with its
    absolute source (:func:`~dhmrec_pyg.training.source.config_source`), which a run trained on
    it records in its ``config.yaml``.
    """
    return load_source(config_source(cfg))


def load_source(source: Source) -> HeteroData:
    """Load the dataset a recorded source names (``dataset`` under ``data_root``), remembered with it."""
    return open_source(source)[0]


def open_source(source: Source) -> Tuple[HeteroData, Optional[Path]]:
    """:func:`load_source`, with the dataset's cache folder (where ``knn_cache_dir="auto"`` points;
    :func:`~dhmrec_pyg.data.open_dataset`)."""
    from dhmrec_pyg.data import open_dataset

    data, folder = open_dataset(source["dataset"], root=source["data_root"])
    return remember_source(data, source, folder), folder


def finished_run(
    cfg: TrainConfig, model_cfg: Any, out_dir: Path, source: Optional[Source] = None,
) -> Optional[Dict[str, Any]]:
    """The results of a finished run of exactly this configuration in ``out_dir``, else ``None``.

    Finished means ``metrics.json`` is there; the same configuration means the folder's
    ``config.yaml`` (of any format, read by :func:`~dhmrec_pyg.training.config.load_run_config`:
    options the folder predates at the value it used) holds this configuration, apart from how
    the run was watched (``progress``, ``logger``) and how its steps ran (the
    :data:`~dhmrec_pyg.training.config.EXECUTION_DEFAULTS` options: Adam's implementation,
    compilation), so a grid or seed series can be completed without retraining. With ``source``
    (where this run's data comes from), a folder that recorded another source does not count.
    """
    metrics, config = Path(out_dir) / "metrics.json", Path(out_dir) / "config.yaml"
    if not (metrics.is_file() and config.is_file()):
        return None
    try:
        stored = load_run_config(config)
        ran = build_dataclass(TrainConfig, stored["train"], "training")
        ran_model = build_dataclass(type(model_cfg), stored["model"], "model")
    except ConfigError:
        return None
    if _computed(ran) != _computed(cfg) or ran_model != model_cfg:
        return None
    if source is not None and stored["data"] is not None and _where(stored["data"]) != _where(source):
        return None
    return json.loads(metrics.read_text(encoding="utf-8"))


def _where(source: Source) -> Source:
    """``source`` without its ``fingerprint``: where the data came from, not what it was."""
    return {k: v for k, v in source.items() if k != "fingerprint"}


def _computed(cfg: TrainConfig) -> TrainConfig:
    """``cfg`` without how the run is watched and how its steps run (compared by :func:`finished_run`)."""
    return replace(cfg, progress=True, logger="csv", **EXECUTION_DEFAULTS)


def run_once(
    cfg: TrainConfig, model_cfg: Any, out_dir: Optional[Path], data: Optional[HeteroData] = None,
    reuse: bool = False, *, edge_type: Union[None, str, Tuple[str, str, str]] = None,
    user: Optional[str] = None, item: Optional[str] = None,
) -> Dict[str, Any]:
    """Train and evaluate one configuration; write the run folder if ``out_dir`` is given.

    With ``reuse``, a finished run of the same configuration already in ``out_dir``
    (:func:`finished_run`) is returned instead of trained again. A ``data`` graph
    with its own names is accepted with ``edge_type=`` (and ``user=`` / ``item=``),
    as in :func:`~dhmrec_pyg.schema.as_interaction_graph`; it needs validation
    and test interactions.
    """
    if reuse and out_dir is not None:
        source = config_source(cfg) if data is None else data_source(data, edge_type, user=user, item=item)
        done = finished_run(cfg, model_cfg, out_dir, source)
        if done is not None:
            return done
    if cfg.num_threads > 0:
        torch.set_num_threads(cfg.num_threads)
    with ddist.main_first():  # rank 0 writes the data and KNN caches, the others read them
        # A graph handed in is checked (and put in the canonical form) before the model sees it;
        # the canonical graph keeps the graph's source (its own names, for one from Python).
        if data is not None:
            given = data
            data = as_interaction_graph(given, edge_type, user=user, item=item, require_splits=True)
            remember_source(data, data_source(given, edge_type, user=user, item=item))
        data, model = build_run(cfg, model_cfg, data)
    return Trainer(model, data, cfg, out_dir, model_cfg).fit()


RunTask = Tuple[TrainConfig, Any, Path]


def _worker_init(threads: int) -> None:
    torch.set_num_threads(threads)


def _worker_run(cfg: TrainConfig, model_cfg: Any, out_dir: str, reuse: bool) -> Dict[str, Any]:
    return run_once(cfg, model_cfg, Path(out_dir), None, reuse)


def run_many(
    tasks: Sequence[RunTask], data: Optional[HeteroData] = None, reuse: bool = False, jobs: int = 1,
) -> List[Dict[str, Any]]:
    """Run independent ``(config, model config, run folder)`` tasks; their results in order.

    With ``jobs`` > 1, up to ``jobs`` runs train at once, each in a fresh process
    (``spawn``) that loads the dataset itself and uses as many torch threads as
    this process; results are the same as one after the other, since every run
    is seeded on its own. ``jobs`` = 1 runs them here, in order, on ``data``.

    Raises:
        ConfigError: ``jobs`` < 1, or ``jobs`` > 1 under ``torchrun``.
    """
    if jobs < 1:
        raise ConfigError(f"jobs must be >= 1, got {jobs}")
    if jobs == 1 or len(tasks) <= 1:
        return [run_once(c, m, o, data, reuse) for c, m, o in tasks]
    if ddist.current().enabled:
        raise ConfigError(f"jobs={jobs}: parallel runs cannot be combined with distributed training")
    with ProcessPoolExecutor(
        max_workers=min(jobs, len(tasks)), mp_context=multiprocessing.get_context("spawn"),
        initializer=_worker_init, initargs=(torch.get_num_threads(),),
    ) as pool:
        futures = [pool.submit(_worker_run, c, m, str(o), reuse) for c, m, o in tasks]
        return [f.result() for f in futures]


def summarise(results: Sequence[Dict[str, Any]]) -> Dict[str, Any]:
    """Mean and (sample) standard deviation of every valid/test metric over runs."""
    out: Dict[str, Any] = {"runs": len(results), "seeds": [r["seed"] for r in results]}
    for split in ("valid", "test"):
        out[split] = {}
        for key in results[0][split]:
            values = [r[split][key] for r in results]
            out[split][key] = {
                "mean": statistics.fmean(values),
                "std": statistics.stdev(values) if len(values) > 1 else 0.0,
            }
    out["best_epoch"] = [r["best_epoch"] for r in results]
    out["seconds_per_epoch"] = statistics.fmean(r["seconds_per_epoch"] for r in results)
    return out


def run_seeds(
    cfg: TrainConfig, model_cfg: Any, seeds: Sequence[int], out_dir: Path, data: Optional[HeteroData] = None,
    done: Optional[Dict[int, Dict[str, Any]]] = None, reuse: bool = False, jobs: int = 1,
) -> Dict[str, Any]:
    """Repeat a run for each seed (``out_dir/seed_<s>``) and write ``summary.json``.

    ``done`` maps seeds already trained with this exact configuration to their
    results (``metrics.json`` content); those are not trained again, nor, with
    ``reuse``, are finished seed folders of the same configuration. ``jobs``:
    seeds trained at once (:func:`run_many`).
    """
    done = dict(done or {})
    todo = [s for s in seeds if s not in done]
    if jobs == 1 and todo:
        data = load_data(cfg) if data is None else data
    trained = run_many([(replace(cfg, seed=s), model_cfg, out_dir / f"seed_{s}") for s in todo], data, reuse, jobs)
    done.update(zip(todo, trained))
    results = [done[s] for s in seeds]
    summary = summarise(results)
    if ddist.is_main_process():  # under torchrun only rank 0 writes
        dfiles.write_json(out_dir / "summary.json", summary)
    return summary


def parse_seeds(text: str) -> List[int]:
    """Parse a ``0,1,2`` list of seeds (``--seeds``), in the order given.

    Raises:
        ConfigError: a value is not an integer, or there is none.
    """
    try:
        seeds = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise ConfigError(f"--seeds expects comma-separated integers, got {text!r}") from None
    if not seeds:
        raise ConfigError(f"--seeds expects comma-separated integers, got {text!r}")
    return seeds


def parse_grid(specs: List[str]) -> Dict[str, List[str]]:
    """Parse ``key=v1,v2,...`` grid specifications."""
    grid: Dict[str, List[str]] = {}
    for spec in specs:
        if "=" not in spec:
            raise ConfigError(f"--grid expects key=v1,v2,..., got {spec!r}")
        key, values = spec.split("=", 1)
        items = [v.strip() for v in values.split(",") if v.strip()]
        if not key.strip() or not items:
            raise ConfigError(f"--grid expects key=v1,v2,..., got {spec!r}")
        grid[key.strip()] = items
    return grid


def run_grid(
    cfg: TrainConfig,
    model_values: Dict[str, Any],
    model_config_class: type,
    grid: Dict[str, List[str]],
    out_dir: Path,
    base_overrides: Sequence[str] = (),
    seeds: Sequence[int] = (),
    data: Optional[HeteroData] = None,
    reuse: bool = False,
    jobs: int = 1,
) -> Dict[str, Any]:
    """Run every point of a hyper-parameter grid and keep the best on validation.

    Each point runs in ``out_dir/grid_<n>``. The point with the best validation
    metric (``cfg.valid_metric``) is chosen; its test metrics are reported, but
    test never influences the choice. With ``seeds``, the chosen point is then
    re-run for each seed and ``summary.json`` gets mean and std.
    Writes ``grid.csv`` and ``grid.json``. With ``reuse``, finished runs of the same
    configuration already in their folders are read instead of trained again.
    With ``jobs`` > 1 the points, then the seeds, train up to ``jobs`` at a time
    (:func:`run_many`); a grid of one point trains its seeds alongside it.
    """
    if jobs == 1:
        data = load_data(cfg) if data is None else data
    keys = list(grid)
    rows: List[Dict[str, Any]] = []
    best: Optional[Tuple[float, int]] = None
    points = list(itertools.product(*(grid[k] for k in keys)))
    tasks: List[RunTask] = []
    for n, values in enumerate(points):
        pairs = list(base_overrides) + [f"{k}={v}" for k, v in zip(keys, values)]
        point_cfg, point_model = apply_overrides(cfg, model_values, model_config_class, pairs)
        tasks.append((point_cfg, point_model, out_dir / f"grid_{n}"))
    # One point is its own choice: its other seeds need not wait for it.
    early = [s for s in seeds if s != tasks[0][0].seed] if len(points) == 1 else []
    seed_tasks = [(replace(tasks[0][0], seed=s), tasks[0][1], out_dir / "best_seeds" / f"seed_{s}") for s in early]
    finished = run_many(tasks + seed_tasks, data, reuse, jobs)
    results, early_done = finished[: len(tasks)], dict(zip(early, finished[len(tasks):]))
    for n, (values, result) in enumerate(zip(points, results)):
        row = {"run": f"grid_{n}", **dict(zip(keys, values)), "best_epoch": result["best_epoch"],
               f"valid_{cfg.valid_metric}": result["valid"][cfg.valid_metric],
               "test_recall@20": result["test"]["recall@20"], "test_ndcg@20": result["test"]["ndcg@20"]}
        rows.append(row)
        score = result["valid"][cfg.valid_metric]
        if best is None or score > best[0]:
            best = (score, n)
    assert best is not None
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    if ddist.is_main_process():
        out_dir.mkdir(parents=True, exist_ok=True)
        dfiles.write_text(out_dir / "grid.csv", buf.getvalue())
    chosen = dict(zip(keys, points[best[1]]))
    report: Dict[str, Any] = {"selected_on": f"valid {cfg.valid_metric}", "best_run": f"grid_{best[1]}",
                              "best_params": chosen, "rows": rows}
    if seeds:
        pairs = list(base_overrides) + [f"{k}={v}" for k, v in chosen.items()]
        best_cfg, best_model = apply_overrides(cfg, model_values, model_config_class, pairs)
        # The chosen grid point already ran with its own seed (best_cfg.seed, also when the
        # grid is over seeds): that run counts for that seed.
        done = {**early_done, best_cfg.seed: results[best[1]]}
        report["seeds_summary"] = run_seeds(best_cfg, best_model, seeds, out_dir / "best_seeds", data, done,
                                            reuse, jobs)
    if ddist.is_main_process():
        dfiles.write_json(out_dir / "grid.json", report)
    return report


class LoadedRun(NamedTuple):
    """A saved run rebuilt by :func:`load_run` (also unpacks as a 4-tuple).

    Attributes:
        config: the run's :class:`~dhmrec_pyg.training.TrainConfig`.
        model_config: the model's config dataclass.
        model: the model with the best checkpoint's weights, in ``eval()`` mode;
            ``model.recommend(users, k)`` and ``model.embeddings()`` serve it.
        data: the dataset the run trained on (its training graph and splits).
    """

    config: TrainConfig
    model_config: Any
    model: Any
    data: HeteroData


def read_run(run_folder: str | Path, **train_overrides: Any) -> Tuple[TrainConfig, Any, Optional[Source]]:
    """A run folder's training and model configs, as the run used them, and its data's source.

    Reads ``config.yaml`` of any format with :func:`~dhmrec_pyg.training.config.load_run_config`
    (options the run predates at the value it used). ``train_overrides`` replace training options
    before the config is checked (e.g. ``device``, ``progress``). The source is the file's ``data``
    section (:mod:`dhmrec_pyg.training.source`), ``None`` where it has none (format 1). Shared by
    :func:`load_run` and ``dhmrec train --resume``.

    Raises:
        ConfigError: naming the file, for an unreadable or invalid config or an unknown model.
    """
    from dhmrec_pyg.models import MODELS

    path = Path(run_folder) / "config.yaml"
    raw = load_run_config(path)
    try:
        cfg = build_dataclass(TrainConfig, {**raw["train"], **train_overrides}, "training")
        if cfg.model not in MODELS:
            raise ConfigError(f"unknown model {cfg.model!r}; known models: {', '.join(sorted(MODELS))}")
        model_cfg = build_dataclass(MODELS[cfg.model].config_class, raw["model"], "model")
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    return cfg, model_cfg, raw["data"]


def read_run_config(run_folder: str | Path, **train_overrides: Any) -> Tuple[TrainConfig, Any]:
    """A run folder's training and model configs, as the run used them (:func:`read_run`)."""
    cfg, model_cfg, _ = read_run(run_folder, **train_overrides)
    return cfg, model_cfg


def build_run(cfg: TrainConfig, model_cfg: Any, data: Optional[HeteroData] = None) -> Tuple[HeteroData, Any]:
    """The data and the freshly built model of a run, exactly as training builds them.

    Loads the dataset the config names unless ``data`` is given, seeds every generator with the
    run's seed, then builds the model (so its initial weights are the run's). Shared by
    :func:`run_once`, :func:`load_run` and ``dhmrec train --resume``.
    """
    if data is None:
        data, folder = open_source(config_source(cfg))
    else:
        folder = cache_folder(data)  # a graph loaded by this module keeps its KNN cache
    seed_everything(cfg.seed)
    return data, build_model(cfg.model, data, model_cfg, cfg.graph.resolved(folder))


def run_data(
    run_folder: str | Path, cfg: TrainConfig, source: Optional[Source], data: Optional[HeteroData] = None,
    edge_type: Union[None, str, Sequence[str]] = None, *, user: Optional[str] = None, item: Optional[str] = None,
) -> HeteroData:
    """The graph a saved run trained on, in the canonical form, wherever the caller's working directory is.

    - ``data`` given: that graph, read with ``edge_type`` / ``user`` / ``item`` (by default the
      names the run recorded for a graph from Python), as in
      :func:`~dhmrec_pyg.schema.as_interaction_graph`;
    - a recorded dataset (``source``, absolute paths): loaded from there;
    - a run trained on a graph from Python (``source``: :data:`~dhmrec_pyg.training.config.IN_MEMORY`)
      needs ``data``;
    - no source (a format-1 ``config.yaml``): the dataset ``cfg`` names, looked for from the working
      directory, then from the run folder's parents (:func:`_format1_source`); a synthetic profile
      found nowhere is generated in a temporary folder (nothing is written in the working directory).

    Raises:
        ConfigError: a run trained on a graph from Python and no ``data``.
        DataError: a dataset found nowhere, or a malformed ``data``.
    """
    from dhmrec_pyg.data import DataError, load_dataset

    run = Path(run_folder)
    in_memory = source is not None and source["dataset"] == IN_MEMORY
    if data is not None:
        if in_memory and edge_type is None and user is None and item is None:
            edge_type = source["edge_type"]  # type: ignore[index]
        return as_interaction_graph(data, edge_type, user=user, item=item)
    if in_memory:
        raise ConfigError(
            f"{run}: the run was trained on a graph handed in from Python (edge type "
            f"{tuple(source['edge_type'])}); pass that graph: load_run({str(run)!r}, data=graph)"  # type: ignore[index]
        )
    if source is None:
        source = _format1_source(run, cfg)
    if source is not None:
        return load_source(source)
    if _synthetic(cfg.dataset):
        with tempfile.TemporaryDirectory() as tmp:  # a synthetic profile is a function of its name
            return load_dataset(cfg.dataset, root=tmp, cache=False)
    raise DataError(
        f"{run / 'config.yaml'}: dataset {cfg.dataset!r} (data_root {cfg.data_root!r}) not found from the "
        f"working directory nor from the run folder's parents; pass the graph: load_run({str(run)!r}, data=graph)"
    )


def _synthetic(name: str) -> bool:
    """Whether ``name`` is a synthetic profile (``demo``, ``synthetic-<profile>``)."""
    from dhmrec_pyg.data.synthetic import synthetic_profile_of

    return synthetic_profile_of(name) is not None


def _format1_source(run: Path, cfg: TrainConfig) -> Optional[Source]:
    """Where the dataset of a format-1 run (which did not record it) is, with absolute paths.

    The run's ``dataset`` and ``data_root`` are resolved as
    :func:`~dhmrec_pyg.data.load_dataset` resolves them, from the working directory first (where a
    run trained here finds its data), then from each parent of the run folder (a run in
    ``runs/NAME`` was usually trained two levels up); ``None`` when no such folder exists.
    """
    from dhmrec_pyg.data.synthetic import dataset_name, synthetic_profile_of

    name, profile = cfg.dataset, synthetic_profile_of(cfg.dataset)
    plain = bool(name) and "/" not in name and os.sep not in name and name not in (".", "..")
    for base in dict.fromkeys([Path.cwd(), *run.resolve().parents]):
        root = base / Path(cfg.data_root).expanduser()
        if profile is not None:
            if (root / dataset_name(profile)).is_dir():
                return {"dataset": name, "data_root": os.path.abspath(root)}
        elif name and (base / Path(name).expanduser()).is_dir():
            return {"dataset": os.path.abspath(base / Path(name).expanduser()), "data_root": os.path.abspath(root)}
        elif plain and (root / name).is_dir():
            return {"dataset": name, "data_root": os.path.abspath(root)}
    return None


def load_run(
    run_folder: str | Path, data: Optional[HeteroData] = None, *,
    edge_type: Union[None, str, Sequence[str]] = None, user: Optional[str] = None, item: Optional[str] = None,
    device: Optional[str] = None, allow_changed_data: bool = False,
) -> LoadedRun:
    """Rebuild a saved run: its config, its dataset and its model with the best weights.

    Works from any working directory, for every model and for runs of every ``config.yaml``
    format. Also exported as ``dhmrec_pyg.load_run`` and ``dhmrec_pyg.training.load_run``.

    Args:
        run_folder: a run folder (``config.yaml`` and ``best.pt``), written by ``dhmrec train``
            or by a :class:`~dhmrec_pyg.training.Trainer` with an output folder.
        data: the graph the run trained on; needed when it was handed in from Python, optional
            otherwise (it replaces the recorded dataset). See :func:`run_data`.
        edge_type, user, item: the graph's own names (default: the ones the run recorded).
        device: override the run's device (``"cpu"``, ``"cuda"``...).
        allow_changed_data: load the run on a data set other than the one it recorded (its
            ``config.yaml``'s ``data.fingerprint``); by default that is refused.

    Returns:
        A :class:`LoadedRun` ``(config, model_config, model, data)``; the model is in eval mode.

    Raises:
        ConfigError: the folder is missing or is not a run folder, names an unknown model, was
            trained on a graph from Python and no ``data`` is given, or its weights do not fit
            the model built on ``data``.
        WeightsError: ``best.pt`` is empty, unreadable, or not the file the run recorded in
            ``weights.json`` (:mod:`~dhmrec_pyg.training.weights`).
        DataChangedError: the data set is not the one the run recorded (naming what changed).
        DataError: the dataset is found nowhere, or ``data`` is malformed.
    """
    from dhmrec_pyg.training.trainer import resolve_device

    if data is not None and not isinstance(data, HeteroData):
        raise TypeError(f"load_run: data must be a torch_geometric HeteroData, got {type(data).__name__} "
                        "(give the device as device=...)")
    run = Path(run_folder)
    if not run.is_dir():
        raise ConfigError(f"{run}: no such run folder")
    for name in ("config.yaml", "best.pt"):
        if not (run / name).is_file():
            raise ConfigError(f"{run}: no {name} (is this a folder written by 'dhmrec train'?)")
    cfg, model_cfg, source = read_run(run, **({} if device is None else {"device": device}))
    weights = _best_weights(run)  # a damaged best.pt fails here, before the data is loaded
    graph = run_data(run, cfg, source, data, edge_type, user=user, item=item)
    check_fingerprint((source or {}).get("fingerprint"), graph, run / "config.yaml", allow_changed_data)
    graph, model = build_run(cfg, model_cfg, graph)
    try:
        model.load_state_dict(weights)
    except RuntimeError as exc:  # e.g. another graph's number of users or items
        first = str(exc).strip().splitlines()[-1].strip()
        raise ConfigError(f"{run / 'best.pt'}: the weights do not fit the {cfg.model} model built on this data "
                          f"({first})") from None
    model.to(resolve_device(cfg.device)).eval()
    return LoadedRun(cfg, model_cfg, model, graph)


def _best_weights(run: Path) -> Dict[str, Any]:
    """``run/best.pt``, checked (:func:`~dhmrec_pyg.training.weights.load_weights`); a damaged one's
    error says when the run's intact checkpoint can restore it."""
    try:
        return load_weights(run / BEST_NAME)
    except WeightsError as exc:
        checkpoint = run / CHECKPOINT_NAME
        restorable = checkpoint.is_file()
        if restorable:
            try:
                verify_weights(checkpoint)
            except WeightsError:
                restorable = False
        hint = f"; {checkpoint} carries the best weights: resuming the run restores {BEST_NAME}" if restorable else ""
        raise WeightsError(f"{exc}{hint}") from None
