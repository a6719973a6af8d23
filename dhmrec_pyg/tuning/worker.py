"""The study and its workers: opening it, handing out trials, running one through the Trainer.

Every worker (this process, or one of ``jobs`` spawned ones, or a process on another machine
working the same storage) loops: under a lock file in the output folder it marks the trials
of dead workers on this machine failed (:func:`reclaim_stale`), counts the finished and
pruned trials against the budget and asks the study for a new trial; it then trains that
trial in ``trials/trial_<n>`` with the library's :class:`~dhmrec_pyg.training.trainer.Trainer`,
reporting each epoch's validation metric to the pruner (:class:`PruningReporter`), and tells
the study the outcome. Every finished trial is in the storage when it ends, so Ctrl-C or a
SIGKILL loses only the trials then running.
"""
from __future__ import annotations

import contextlib
import math
import os
import shutil
import socket
import sys
import time
import warnings
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple, Union

import torch

from dhmrec_pyg.models import MODELS
from dhmrec_pyg.training.config import ConfigError, TrainConfig, apply_overrides
from dhmrec_pyg.tuning.space import Space, override_pair

#: How often a worker that waits for others' last trials looks again (seconds).
POLL_SECONDS = 0.5
#: A running trial that never recorded its worker is taken as abandoned after this long (seconds).
ORPHAN_SECONDS = 120.0
#: Pruners by name (``--pruner``).
PRUNERS: Tuple[str, ...] = ("median", "halving", "none")


@dataclass
class TuneSettings:
    """Everything a worker needs (picklable, for spawned workers).

    Attributes:
        cfg: the training configuration every trial starts from.
        model_values: model options every trial starts from.
        overrides: ``key=value`` pairs applied to every trial before its parameters.
        space: the search space.
        out_dir: the tuning folder (``trials/``, the lock file, the default storage).
        storage: an Optuna storage URL.
        study_name: the study's name in the storage.
        n_trials: the finished-or-pruned trials the study ends with.
        timeout: seconds after which a worker starts no new trial (``None``: no limit).
        pruner: a name of :data:`PRUNERS` or an ``optuna.pruners.BasePruner``.
        pruner_warmup: epochs before a trial may be pruned (the first rung of ``halving``).
        sampler_seed: seed of the TPE sampler (each new trial draws with this seed plus the
            number of trials before it, so a continued study does not repeat its first draws).
        progress: print a line per finished trial to stderr.
    """

    cfg: TrainConfig
    model_values: Dict[str, Any]
    overrides: List[str]
    space: Space
    out_dir: str
    storage: str
    study_name: str
    n_trials: int
    timeout: Optional[float] = None
    pruner: Any = "median"
    pruner_warmup: int = 10
    sampler_seed: int = 0
    progress: bool = False
    setup: Dict[str, Any] = field(default_factory=dict)


def trial_config(settings: TuneSettings, params: Dict[str, Any]) -> Tuple[TrainConfig, Any]:
    """The training and model configs of a point of the space (``params``)."""
    pairs = list(settings.overrides) + [override_pair(k, v) for k, v in params.items()]
    config_class = MODELS[settings.cfg.model].config_class
    return apply_overrides(settings.cfg, dict(settings.model_values), config_class, pairs)


def trial_dir(out_dir: Union[str, Path], number: int) -> Path:
    """The run folder of trial ``number``: ``out_dir/trials/trial_<number>``."""
    return Path(out_dir) / "trials" / f"trial_{number}"


def _optuna() -> Any:
    try:
        import optuna
    except ImportError:
        raise ConfigError("tuning needs Optuna: pip install 'dhmrec_pyg[tune]'") from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    return optuna


def make_pruner(pruner: Any, warmup: int) -> Any:
    """An Optuna pruner: ``median`` (median of earlier trials at the same epoch, after 5 trials
    and ``warmup`` epochs), ``halving`` (successive halving, first rung at ``warmup`` epochs,
    a third going on at each rung), ``none``, or a pruner object, returned as is.

    Raises:
        ConfigError: an unknown name.
    """
    optuna = _optuna()
    if not isinstance(pruner, str):
        return pruner
    if pruner == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=warmup)
    if pruner == "halving":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=max(1, warmup), reduction_factor=3)
    if pruner == "none":
        return optuna.pruners.NopPruner()
    raise ConfigError(f"pruner: unknown pruner {pruner!r}; choose one of {', '.join(PRUNERS)}")


def storage_for(url: str) -> Any:
    """The Optuna storage of ``url``; SQLite waits up to a minute for a lock held by another worker."""
    optuna = _optuna()
    kwargs = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {}
    try:
        return optuna.storages.RDBStorage(url, engine_kwargs=kwargs)
    except Exception as exc:  # SQLAlchemy's errors for an unreachable or malformed URL
        raise ConfigError(f"storage {hide_password(url)}: cannot open ({type(exc).__name__}: {exc})") from None


def hide_password(url: str) -> str:
    """``url`` with a password (``scheme://user:password@host``) replaced by ``***``."""
    head, sep, rest = url.partition("://")
    creds, at, host = rest.partition("@")
    if sep and at and ":" in creds:
        return f"{head}://{creds.split(':', 1)[0]}:***@{host}"
    return url


def open_study(settings: TuneSettings) -> Any:
    """Create the study, or load it (its setup must be this one: model, data, epochs, space...).

    Raises:
        ConfigError: the stored study was made for another setup, or for minimisation.
    """
    optuna = _optuna()
    storage = storage_for(settings.storage)
    pruner = make_pruner(settings.pruner, settings.pruner_warmup)
    try:
        study = optuna.create_study(storage=storage, study_name=settings.study_name, direction="maximize",
                                    pruner=pruner, load_if_exists=True)
    except optuna.exceptions.DuplicatedStudyError:  # another worker created it meanwhile
        study = optuna.load_study(storage=storage, study_name=settings.study_name, pruner=pruner)
    stored = study.user_attrs.get("setup")
    if stored is None:
        study.set_user_attr("setup", settings.setup)
    elif stored != settings.setup:
        diff = sorted(k for k in set(stored) | set(settings.setup) if stored.get(k) != settings.setup.get(k))
        raise ConfigError(f"study {settings.study_name!r} in {hide_password(settings.storage)} was made with "
                          f"another {diff[0]} ({stored.get(diff[0])!r}, now {settings.setup.get(diff[0])!r}); "
                          "use another output folder or study name")
    if study.direction != optuna.study.StudyDirection.MAXIMIZE:
        raise ConfigError(f"study {settings.study_name!r}: direction must be maximize")
    return study


def _proc_stat(pid: int) -> List[str]:
    """The fields of ``/proc/<pid>/stat`` after the command name (state first), or ``[]``."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return []


def worker_tag(pid: Optional[int] = None) -> str:
    """``host:pid:start`` of a process (start: its start time, so that a reused pid is told apart)."""
    pid = os.getpid() if pid is None else pid
    stat = _proc_stat(pid)
    return f"{socket.gethostname()}:{pid}:{stat[19] if len(stat) > 19 else ''}"


def worker_alive(tag: str) -> Optional[bool]:
    """Whether the process of a :func:`worker_tag` still runs (``None``: it ran on another machine)."""
    host, pid_text, start = tag.rsplit(":", 2)
    if host != socket.gethostname() or not pid_text.isdigit():
        return None
    pid = int(pid_text)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    stat = _proc_stat(pid)
    if stat and stat[0] in ("Z", "X"):  # killed, not yet reaped by its parent
        return False
    return not (stat and start and stat[19] != start)


def _is_stale(trial: Any) -> bool:
    tag = trial.user_attrs.get("worker")
    if tag is None:  # died between creating the trial and recording its worker
        start = trial.datetime_start or datetime.now()
        return datetime.now() - start > timedelta(seconds=ORPHAN_SECONDS)
    return worker_alive(str(tag)) is False


def reclaim_stale(study: Any, out_dir: Union[str, Path]) -> List[int]:
    """Mark running trials whose worker died (on this machine) failed, remove their run folders,
    and queue their parameters again so that the point is retried; the trials' numbers.

    Trials run by another machine are left alone (their workers cannot be checked from here).
    """
    optuna = _optuna()
    storage = study._storage
    reclaimed = []
    for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        if not _is_stale(trial):
            continue
        try:
            storage.set_trial_user_attr(trial._trial_id, "error", "its worker died (killed) during the trial")
            study.tell(trial.number, state=optuna.trial.TrialState.FAIL)
        except (RuntimeError, ValueError):  # another worker reclaimed it first
            continue
        shutil.rmtree(trial_dir(out_dir, trial.number), ignore_errors=True)
        if trial.params:
            study.enqueue_trial(dict(trial.params), user_attrs={"retry_of": trial.number})
        reclaimed.append(trial.number)
    return reclaimed


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (created if missing) for the block."""
    import fcntl

    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


#: :func:`next_trial`'s answer when the budget is taken by trials still running elsewhere.
WAIT = "wait"


def count_states(study: Any) -> Dict[str, int]:
    """Trials of the study per state name (``COMPLETE``, ``PRUNED``, ``FAIL``, ``RUNNING``...)."""
    counts: Dict[str, int] = {}
    for trial in study.get_trials(deepcopy=False):
        counts[trial.state.name] = counts.get(trial.state.name, 0) + 1
    return counts


def next_trial(study: Any, settings: TuneSettings) -> Any:
    """A new trial, :data:`WAIT`, or ``None`` once ``n_trials`` trials finished or were pruned.

    Runs under the output folder's lock, so that workers on this machine never start more
    trials than the budget leaves.
    """
    optuna = _optuna()
    with locked(Path(settings.out_dir) / ".tune.lock"):
        reclaim_stale(study, settings.out_dir)
        counts = count_states(study)
        done = counts.get("COMPLETE", 0) + counts.get("PRUNED", 0)
        if done >= settings.n_trials:
            return None
        if done + counts.get("RUNNING", 0) >= settings.n_trials:
            return WAIT
        before = sum(counts.values()) - counts.get("WAITING", 0)
        study.sampler = optuna.samplers.TPESampler(seed=settings.sampler_seed + before, constant_liar=True)
        trial = study.ask()
        trial.set_user_attr("worker", worker_tag())
        return trial


class PruningReporter:
    """Trainer callback: reports each epoch's validation metric to the trial and prunes.

    Attributes:
        trial: the ``optuna.Trial``.
        key: the history column reported (``valid_recall@20``).
        best: the best value reported so far (``-inf`` before the first epoch).
    """

    def __init__(self, trial: Any, key: str) -> None:
        self.trial, self.key, self.best = trial, key, -math.inf

    def on_epoch_end(self, trainer: Any, epoch: int, row: Dict[str, Any]) -> None:
        """Report ``row[key]`` at step ``epoch``; raise ``optuna.TrialPruned`` when the pruner says so."""
        optuna = _optuna()
        if self.key not in row:
            raise ConfigError(f"valid_metric: history has no column {self.key!r} to report to the pruner")
        value = float(row[self.key])
        self.best = max(self.best, value)
        self.trial.report(value, epoch)
        if self.trial.should_prune():
            raise optuna.TrialPruned(f"pruned after epoch {epoch} ({self.key} {value:.4f})")


def same_point(study: Any, params: Dict[str, Any]) -> Any:
    """The first completed trial of ``study`` with exactly ``params`` (a duplicate draw), else ``None``."""
    optuna = _optuna()
    for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)):
        if trial.params == params:
            return trial
    return None


def run_trial(trial: Any, settings: TuneSettings, data: Any, reporter: PruningReporter) -> float:
    """Train one trial in its run folder; its best validation value (the objective).

    A point a completed trial already ran (a categorical grid drawn again) is not trained
    again: the trial takes that trial's result and records ``duplicate_of``.
    """
    from dhmrec_pyg.training.run import build_run
    from dhmrec_pyg.training.trainer import Trainer

    params = {name: param.suggest(trial) for name, param in settings.space.items()}
    cfg, model_cfg = trial_config(settings, params)
    earlier = same_point(trial.study, params)
    if earlier is not None:  # a grid point drawn again: its result, without training it again
        trial.set_user_attr("duplicate_of", earlier.number)
        for key in ("run_dir", "best_epoch", "epochs_run", "test"):
            if key in earlier.user_attrs:
                trial.set_user_attr(key, earlier.user_attrs[key])
        return float(earlier.value)
    run = trial_dir(settings.out_dir, trial.number)
    shutil.rmtree(run, ignore_errors=True)  # a folder left by an abandoned trial of this number
    trial.set_user_attr("run_dir", str(run.relative_to(settings.out_dir)))
    if cfg.num_threads > 0:
        torch.set_num_threads(cfg.num_threads)
    data, model = build_run(cfg, model_cfg, data)
    result = Trainer(model, data, cfg, run, model_cfg, callbacks=[reporter]).fit()
    trial.set_user_attr("best_epoch", int(result["best_epoch"]))
    trial.set_user_attr("epochs_run", int(result["epochs_run"]))
    trial.set_user_attr("test", {k: float(v) for k, v in result["test"].items()})
    return float(result["valid"][cfg.valid_metric])


def execute(study: Any, trial: Any, settings: TuneSettings, data: Any) -> str:
    """Run a trial and tell the study its outcome; the state's name.

    A pruned trial is ``PRUNED``; one that raises is ``FAIL`` with its error in the user
    attribute ``error`` (the study goes on); Ctrl-C fails the trial, queues its point again
    and raises ``KeyboardInterrupt``.
    """
    optuna = _optuna()
    from dhmrec_pyg.training.trainer import TrainingInterrupted

    state, value = optuna.trial.TrialState.COMPLETE, None
    reporter = PruningReporter(trial, f"valid_{settings.cfg.valid_metric}")
    try:
        value = run_trial(trial, settings, data, reporter)
    except optuna.TrialPruned:
        state = optuna.trial.TrialState.PRUNED
    except (KeyboardInterrupt, TrainingInterrupted) as exc:
        trial.set_user_attr("error", "interrupted (Ctrl-C)")
        study.tell(trial, state=optuna.trial.TrialState.FAIL)
        if trial.params:
            study.enqueue_trial(dict(trial.params), user_attrs={"retry_of": trial.number})
        raise KeyboardInterrupt from exc
    except Exception as exc:  # any failure of a trial is recorded; the study goes on
        state = optuna.trial.TrialState.FAIL
        trial.set_user_attr("error", f"{type(exc).__name__}: {exc}")
    if math.isfinite(reporter.best):
        trial.set_user_attr("best_value", reporter.best)
    study.tell(trial, value if state == optuna.trial.TrialState.COMPLETE else None, state=state)
    if settings.progress:
        shown = f" value {value:.4f}" if value is not None else ""
        error = f" ({trial.user_attrs.get('error')})" if "error" in trial.user_attrs else ""
        print(f"trial {trial.number} {state.name.lower()}{shown} {trial.params}{error}", file=sys.stderr)
    return state.name


def run_worker(settings: TuneSettings, data: Any = None) -> None:
    """Work the study until it holds ``n_trials`` finished-or-pruned trials, the timeout passes,
    or this worker saw ``n_trials`` trials fail (a space whose every point fails stops)."""
    from dhmrec_pyg.training.run import load_data

    start = time.monotonic()
    study = open_study(settings)
    data = load_data(settings.cfg) if data is None else data
    failures = 0
    while failures < settings.n_trials:
        if settings.timeout is not None and time.monotonic() - start >= settings.timeout:
            return
        trial = next_trial(study, settings)
        if trial is None:
            return
        if isinstance(trial, str):  # WAIT: others run the last trials of the budget
            time.sleep(POLL_SECONDS)
            continue
        failures += execute(study, trial, settings, data) == "FAIL"


def _worker_main(settings: TuneSettings, threads: int) -> None:
    """Entry point of a spawned worker: ``threads`` torch threads, then :func:`run_worker`."""
    torch.set_num_threads(threads)
    try:
        run_worker(settings)
    except KeyboardInterrupt:
        sys.exit(130)


def run_workers(settings: TuneSettings, jobs: int, data: Any = None) -> List[int]:
    """Work the study with ``jobs`` workers: this process when 1, else ``jobs`` spawned processes
    with ``max(1, cores // jobs)`` torch threads each; the workers' exit codes.

    Ctrl-C reaches every worker (they fail their running trial and stop); it is raised here
    once all have stopped.
    """
    if jobs == 1:
        run_worker(settings, data)
        return [0]
    import multiprocessing

    threads = max(1, (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)
                  // jobs)
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_worker_main, args=(settings, threads), daemon=False) for _ in range(jobs)]
    for proc in procs:
        proc.start()
    interrupted = False
    for proc in procs:
        while proc.is_alive():
            try:
                proc.join()
            except KeyboardInterrupt:
                interrupted = True
    if interrupted:
        raise KeyboardInterrupt
    return [int(proc.exitcode or 0) for proc in procs]


__all__: Sequence[str] = (
    "TuneSettings", "PruningReporter", "run_workers", "run_worker", "open_study", "make_pruner",
    "reclaim_stale", "trial_config", "trial_dir", "worker_tag", "worker_alive", "count_states",
)
