"""``tune()``: a hyper-parameter search over a model's space with Optuna, then the best point.

The search works a persistent study (:mod:`dhmrec_pyg.tuning.worker`); the report
(:mod:`dhmrec_pyg.tuning.report`) is rebuilt from the study's storage at the end of every
call, so a continued, interrupted or shared study is always reported whole.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import torch

from dhmrec_pyg import files as dfiles
from dhmrec_pyg.models import MODELS
from dhmrec_pyg.training.config import ConfigError, TrainConfig, apply_overrides, build_dataclass, split_overrides
from dhmrec_pyg.tuning import report as treport
from dhmrec_pyg.tuning.space import as_space, check_space
from dhmrec_pyg.tuning.worker import (
    PRUNERS,
    TuneSettings,
    count_states,
    hide_password,
    open_study,
    run_workers,
    trial_config,
    trial_dir,
)

#: Options a tuning takes as arguments, not as overrides.
_FIXED = ("model", "dataset", "data_root", "epochs")


def _check_arguments(n_trials: int, jobs: int, timeout: Optional[float], epochs: Optional[int], pruner: Any,
                     model: str) -> None:
    if model not in MODELS:
        raise ConfigError(f"model: unknown model {model!r}; choose one of {', '.join(sorted(MODELS))}")
    if not isinstance(n_trials, int) or n_trials < 1:
        raise ConfigError(f"n_trials must be an integer >= 1, got {n_trials!r}")
    if not isinstance(jobs, int) or jobs < 1:
        raise ConfigError(f"jobs must be an integer >= 1, got {jobs!r}")
    if timeout is not None and not timeout > 0:
        raise ConfigError(f"timeout must be > 0 seconds, got {timeout!r}")
    if epochs is not None and epochs < 1:
        raise ConfigError(f"epochs must be >= 1, got {epochs!r}")
    if isinstance(pruner, str) and pruner not in PRUNERS:
        raise ConfigError(f"pruner: unknown pruner {pruner!r}; choose one of {', '.join(PRUNERS)}")


def make_settings(
    model: str, dataset: str, n_trials: int, out_dir: str | Path, *, timeout: Optional[float] = None,
    storage: Optional[str] = None, study_name: Optional[str] = None, jobs: int = 1, space: Any = None,
    data_root: Optional[str] = None, overrides: Sequence[str] = (), epochs: Optional[int] = None,
    pruner: Any = "median", pruner_warmup: int = 10, sampler_seed: int = 0, progress: bool = False,
) -> TuneSettings:
    """Check the arguments of :func:`tune` and build its :class:`~dhmrec_pyg.tuning.worker.TuneSettings`.

    Raises:
        ConfigError: a bad argument, an override of an argument or of a searched option, or a
            search space with an unknown option or a value no configuration accepts.
    """
    _check_arguments(n_trials, jobs, timeout, epochs, pruner, model)
    values: Dict[str, Any] = {"model": model, "dataset": dataset, "progress": False}
    values.update({k: v for k, v in (("data_root", data_root), ("epochs", epochs)) if v is not None})
    cfg = build_dataclass(TrainConfig, values, "training")
    keys = [key.rpartition(".")[2] for key, _ in split_overrides(list(overrides))]
    fixed = [k for k in keys if k in _FIXED]
    if fixed:
        raise ConfigError(f"overrides: {fixed[0]!r} is an argument of the tuning, not an override")
    cfg, _ = apply_overrides(cfg, {}, MODELS[model].config_class, list(overrides))
    searched = as_space(model, space)
    both = [k for k in keys if k in searched]
    if both:
        raise ConfigError(f"overrides: {both[0]!r} is searched; remove it from the overrides or the space")
    check_space(searched, cfg, {}, overrides)
    out = Path(out_dir).resolve()
    setup = {"model": model, "dataset": str(dataset), "epochs": cfg.epochs, "valid_metric": cfg.valid_metric,
             "overrides": sorted(overrides), "space": {k: p.describe() for k, p in searched.items()}}
    return TuneSettings(
        cfg=cfg, model_values={}, overrides=list(overrides), space=searched, out_dir=str(out),
        storage=storage or f"sqlite:///{out / 'study.db'}", study_name=study_name or f"{model}-{Path(dataset).name}",
        n_trials=n_trials, timeout=timeout, pruner=pruner, pruner_warmup=pruner_warmup,
        sampler_seed=sampler_seed, progress=progress, setup=setup,
    )


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def rerun_best(settings: TuneSettings, best: Dict[str, Any], seeds: Sequence[int], jobs: int = 1,
               data: Any = None) -> Dict[str, Any]:
    """Run the best point with every seed in ``out_dir/best/seed_<s>``; the seeds' summary.

    The trial's own run counts for its seed (copied there); finished seed runs of the same
    configuration are read, not trained again, so a rerun of the tuning adds only new seeds.
    """
    from dhmrec_pyg.training.run import run_seeds

    cfg, model_cfg = trial_config(settings, best["params"])
    out = Path(settings.out_dir) / "best"
    own, target = trial_dir(settings.out_dir, best["number"]), out / f"seed_{cfg.seed}"
    if cfg.seed in seeds and (own / "metrics.json").is_file() and not target.exists():
        tmp = out / f".seed_{cfg.seed}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(own, tmp)
        os.replace(tmp, target)
    jobs = max(1, min(jobs, len(seeds)))
    threads = torch.get_num_threads()
    if jobs > 1:
        torch.set_num_threads(max(1, _cores() // jobs))  # each spawned seed run takes this many
    try:
        return run_seeds(cfg, model_cfg, list(seeds), out, data, reuse=True, jobs=jobs)
    finally:
        torch.set_num_threads(threads)


def _describe_storage(settings: TuneSettings) -> str:
    """``study.db`` for the default SQLite file in the tuning folder, else the URL without its password."""
    if settings.storage == f"sqlite:///{Path(settings.out_dir) / 'study.db'}":
        return "study.db"
    return hide_password(settings.storage)


def _describe_pruner(settings: TuneSettings) -> str:
    if not isinstance(settings.pruner, str):
        return type(settings.pruner).__name__
    if settings.pruner == "none":
        return "none"
    return f"{settings.pruner} (from epoch {settings.pruner_warmup})"


def build_report(settings: TuneSettings, study: Any, seeds: Sequence[int], jobs: int, data: Any) -> Dict[str, Any]:
    """``tune.json``'s content: the budget, every trial, the best point and its test metrics
    (over ``seeds``, rerun with :func:`rerun_best`, or the best trial's own run)."""
    rows = [treport.trial_row(t) for t in study.get_trials(deepcopy=False) if t.state.name != "WAITING"]
    counts = count_states(study)
    completed = [r for r in rows if r["state"] == "COMPLETE" and r["best_value"] is not None]
    best = max(completed, key=lambda r: (r["best_value"], -r["number"])) if completed else None
    summary = rerun_best(settings, best, seeds, jobs, data) if best is not None and seeds else None
    cfg = settings.cfg
    return {
        "model": cfg.model, "dataset": cfg.dataset, "study": settings.study_name,
        "storage": _describe_storage(settings),
        "n_trials": counts.get("COMPLETE", 0) + counts.get("PRUNED", 0),
        "states": ", ".join(f"{v} {k.lower()}" for k, v in sorted(counts.items()) if k != "WAITING"),
        "budget": {"trials": settings.n_trials, "timeout": settings.timeout, "epochs": cfg.epochs},
        "selected_on": f"valid {cfg.valid_metric}",
        "sampler": f"TPE (seed {settings.sampler_seed})", "pruner": _describe_pruner(settings),
        "overrides": list(settings.overrides),
        "space": {k: p.describe() for k, p in settings.space.items()},
        "best_trial": None if best is None else best["number"],
        "best_params": None if best is None else best["params"],
        "best_value": None if best is None else best["best_value"],
        "best_run": None if best is None else best["run_dir"],
        "best_seeds": list(seeds) if summary is not None else [],
        "best_test": {} if best is None else treport.best_test(best, summary),
        "best_seeds_summary": summary,
        "trials": rows,
    }


def tune(
    model: str, dataset: str, n_trials: int, out_dir: str | Path, *, timeout: Optional[float] = None,
    storage: Optional[str] = None, study_name: Optional[str] = None, jobs: int = 1, space: Any = None,
    seeds: Sequence[int] = (), data_root: Optional[str] = None, overrides: Sequence[str] = (),
    epochs: Optional[int] = None, pruner: Any = "median", pruner_warmup: int = 10, sampler_seed: int = 0,
    plots: bool = True, progress: bool = False, data: Any = None,
) -> Dict[str, Any]:
    """Tune ``model`` on ``dataset`` with Optuna (TPE + a pruner) and report the best point.

    Every trial is an ordinary run folder ``out_dir/trials/trial_<n>``; the study lives in
    ``storage`` (default: the SQLite file ``out_dir/study.db``), so calling again continues it
    until it holds ``n_trials`` finished-or-pruned trials in all. Selection is on the
    validation metric only. Writes ``out_dir/tune.json`` (returned), ``tune.md`` and the plots.

    Args:
        model, dataset: as ``dhmrec train`` takes them; ``data_root`` where datasets live.
        n_trials: finished-or-pruned trials the study ends with (failed ones do not count).
        out_dir: the tuning folder.
        timeout: seconds after which no new trial starts.
        storage, study_name: an Optuna storage URL (shared by processes that work one study)
            and the study's name (default ``<model>-<dataset>``).
        jobs: worker processes on this machine, ``max(1, cores // jobs)`` torch threads each.
        space: ``None`` (the model's grid, :data:`~dhmrec_pyg.tuning.space.DEFAULT_SPACES`),
            a YAML file, or a mapping option -> list of values or ``{low, high, log}``.
        seeds: rerun the best point with these seeds (``out_dir/best/seed_<s>``); test mean ± std.
        overrides: ``key=value`` options fixed for every trial; ``epochs`` the epoch limit.
        pruner: ``"median"``, ``"halving"``, ``"none"`` or an ``optuna.pruners`` object, fed each
            epoch's validation metric; ``pruner_warmup``: epochs before pruning may start.
        sampler_seed: seed of the TPE sampler.
        plots: draw the Optuna plots (matplotlib); ``progress``: a line per trial on stderr.
        data: a loaded dataset to use instead of loading ``dataset`` (``jobs`` = 1 only).

    Raises:
        ConfigError: a bad argument or space, or a study stored with another setup.
        KeyboardInterrupt: Ctrl-C; finished trials are kept and a new call continues.
    """
    from dhmrec_pyg.training.run import load_data

    settings = make_settings(model, dataset, n_trials, out_dir, timeout=timeout, storage=storage,
                             study_name=study_name, jobs=jobs, space=space, data_root=data_root,
                             overrides=overrides, epochs=epochs, pruner=pruner, pruner_warmup=pruner_warmup,
                             sampler_seed=sampler_seed, progress=progress)
    out = Path(settings.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    open_study(settings)  # a study of another setup fails here, before any data is loaded
    data = load_data(settings.cfg) if data is None else data  # also writes caches before workers start
    run_workers(settings, jobs, data if jobs == 1 else None)
    return write_report(settings, seeds, jobs, data, plots)


def write_report(settings: TuneSettings, seeds: Sequence[int] = (), jobs: int = 1, data: Any = None,
                 plots: bool = True) -> Dict[str, Any]:
    """Rerun the best point with ``seeds``, then write ``tune.json``, ``tune.md`` and the plots."""
    study = open_study(settings)
    result = build_report(settings, study, seeds, jobs, data)
    out = Path(settings.out_dir)
    names: List[str] = []
    notes: List[str] = []
    if plots:
        names, notes = treport.write_plots(study, out, list(settings.space), result["selected_on"])
    result["plots"], result["plot_notes"] = names, notes
    dfiles.write_json(out / "tune.json", result)
    dfiles.write_text(out / "tune.md", treport.markdown(result))
    return result
