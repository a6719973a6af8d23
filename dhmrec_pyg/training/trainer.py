"""The training loop: BPR mini-batches, per-epoch validation, early stopping, exact resume.

Each collaborator has its own module: ``execution`` (device, optimizer, compile), ``ema``,
``resume`` (checkpoint state, the run folder), ``history`` (``history.csv``, early stopping,
``metrics.json``), ``interrupt``, ``distributed`` (DDP), ``registry`` (building, naming).
"""
from __future__ import annotations

import contextlib
import itertools
import sys
import time
from pathlib import Path
from typing import Any, Callable, ContextManager, Dict, Iterator, List, Optional, Sequence, Tuple, Union

import torch
from torch_geometric.data import HeteroData
from tqdm.auto import tqdm

from dhmrec_pyg.models import Recommender
from dhmrec_pyg.schema import EDGE_TYPE, ITEM, as_interaction_graph
from dhmrec_pyg.training import distributed as ddist
from dhmrec_pyg.training.config import ConfigError, TrainConfig
from dhmrec_pyg.training.ema import WeightAverage
from dhmrec_pyg.training.evaluate import evaluate_model, make_evaluators, model_diagnostics
# The noqa names are imported from here by tests, benchmarks and the CLI (kept importable).
from dhmrec_pyg.training.execution import adam_flags, adam_impl, build_optimizer, compile_loss  # noqa: F401
from dhmrec_pyg.training.execution import resolve_device, resolve_optimizer_impl  # noqa: F401
from dhmrec_pyg.training.history import EarlyStopping, epoch_row, run_summary  # noqa: F401
from dhmrec_pyg.training.interrupt import NonFiniteLossError, StopRequest, TrainingInterrupted  # noqa: F401
from dhmrec_pyg.training.interrupt import non_finite_error
from dhmrec_pyg.training.logging_tb import tensorboard_logger
from dhmrec_pyg.training.provenance import environment
from dhmrec_pyg.training.registry import build_model, named_config, seed_everything  # noqa: F401
from dhmrec_pyg.training.resume import RUN_FILES, ResumePoint, RunFolder, TrainingState  # noqa: F401
from dhmrec_pyg.training.resume import finished_results, open_run_folder
from dhmrec_pyg.training.sampler import BPRSampler

Batch = Tuple[torch.Tensor, torch.Tensor, torch.Tensor]


class Trainer:
    """Fits a model with BPR, validates every epoch, keeps the best epoch.

    With ``out_dir`` the run folder gets ``config.yaml`` (with the data's fingerprint),
    ``history.csv``, ``best.pt``, ``checkpoint.pt`` (every epoch; on Ctrl-C after the batch),
    ``weights.json`` (their SHA-256) and ``metrics.json``, all atomically; ``fit(resume=True)``
    continues exactly (on the CPU). Ctrl-C raises :class:`TrainingInterrupted` once the
    checkpoint is written; a NaN or infinite loss term, :class:`NonFiniteLossError`.

    The run records the model's registered name, whatever ``cfg.model`` says (``named_config``).

    With ``cfg.ema_decay`` > 0, validation, ``best.pt`` and the test read a moving average of the
    parameters (:attr:`ema`, :meth:`averaged_weights`). Under ``torch.distributed`` each rank
    trains on its share of every mini-batch with DDP and only rank 0 writes
    (:mod:`~dhmrec_pyg.training.distributed`). Adam runs in ``cfg.optimizer_impl``
    (:func:`build_optimizer`), the loss through ``torch.compile`` with ``cfg.compile``.

    Callbacks: after every epoch of :meth:`fit`, once its row is in :attr:`history` and the run
    folder's files are written, ``callback.on_epoch_end(trainer, epoch, row)`` runs for each
    callback that has it (``row``: a copy of the history row, ``row["valid_recall@20"]``); an
    exception raised there propagates out of :meth:`fit` (a tuner stops a trial so) and the
    checkpoint continues the next epoch. With ``cfg.logger == "tensorboard"`` the trainer's own
    :class:`~dhmrec_pyg.training.logging_tb.TensorBoardLogger` comes first.

    Args:
        model: a :class:`~dhmrec_pyg.models.Recommender`.
        data: the dataset (training edges, validation and test edges).
        cfg: the training configuration.
        out_dir: run folder; ``None``: nothing written (Ctrl-C is a plain ``KeyboardInterrupt``).
        model_config: the model's config, written to ``config.yaml``.
        edge_type, user, item: the graph's own names for the interaction edge type and the
            node types (:func:`~dhmrec_pyg.data.as_interaction_graph`), checked up front.
        callbacks: objects with an ``on_epoch_end(trainer, epoch, row)`` method.
    """

    def __init__(self, model: Recommender, data: HeteroData, cfg: TrainConfig, out_dir: Optional[Path] = None,
                 model_config: Any = None, *, edge_type: Union[None, str, Sequence[str]] = None,
                 user: Optional[str] = None, item: Optional[str] = None, callbacks: Sequence[Any] = ()) -> None:
        self.data = data = as_interaction_graph(data, edge_type, user=user, item=item, require_splits=True)
        self.cfg = cfg = named_config(cfg, model)
        self.dist = ddist.current()
        self.device = ddist.rank_device(resolve_device(cfg.device), cfg.device)
        self.model = model.to(self.device)
        # DDP wraps the loss computation; None for a single process.
        self._ddp = ddist.wrap_ddp(self.model, self.device) if self.dist.enabled else None
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.model_config = model_config if model_config is not None else model.config
        self.sampler = BPRSampler(data[EDGE_TYPE].edge_index, int(data[ITEM].num_nodes), cfg.batch_size,
                                  negatives=cfg.negatives)
        self.evaluators = make_evaluators(data, cfg)
        computed = self.evaluators["val"].metric_names()
        if cfg.valid_metric not in computed:
            raise ConfigError(f"valid_metric: {cfg.valid_metric!r} is not computed; "
                              f"choose one of {', '.join(computed)}")
        self.optimizer = build_optimizer(self.model.parameters(), cfg.lr, cfg.optimizer_impl)
        #: The Adam implementation in use (``cfg.optimizer_impl`` resolved for the device).
        self.optimizer_impl = adam_impl(self.optimizer)
        self._loss = compile_loss(self.model.loss if self._ddp is None else self._ddp, cfg.compile,
                                  cfg.compile_backend)
        self._ema = WeightAverage(self.model, cfg.ema_decay) if cfg.ema_decay > 0 else None
        #: Epoch, early stopping, best weights and history: what ``checkpoint.pt`` carries.
        self.state = TrainingState(self.model, self.optimizer, self._ema, cfg.patience)
        self.config_text, self._folder = open_run_folder(cfg, self.model_config, data, self.out_dir,
                                                         self.dist.is_main, edge_type, user=user, item=item)
        # How the run is watched: cfg.logger's event files (main process, run folder only), first.
        self._logger = tensorboard_logger(cfg, self.model_config, self.out_dir, self.config_text,
                                          self.dist.is_main)
        self.callbacks = ([] if self._logger is None else [self._logger]) + list(callbacks)
        self._stop = StopRequest()

    @property
    def history(self) -> List[Dict[str, float]]:
        """The rows of ``history.csv``, one per epoch trained."""
        return self.state.history.rows

    @property
    def ema(self) -> Optional[List[torch.Tensor]]:
        """The moving averages of the parameters (``cfg.ema_decay`` > 0), else ``None``."""
        return None if self._ema is None else self._ema.averages

    @property
    def checkpoint_path(self) -> Optional[Path]:
        """``out_dir/checkpoint.pt``, or ``None`` without a run folder."""
        return None if self._folder is None else self._folder.checkpoint_path

    def averaged_weights(self) -> ContextManager[None]:
        """Inside the block the model holds the moving averages of its parameters
        (``cfg.ema_decay`` > 0; evaluation, diagnostics and the best state use them); the
        trained parameters come back afterwards. Without averaging it changes nothing."""
        return contextlib.nullcontext() if self._ema is None else self._ema.swapped_in()

    def request_stop(self) -> None:
        """Ask the running :meth:`fit` to stop as Ctrl-C does (after the current batch)."""
        self._stop.request()

    def fit(self, resume: bool = False, *, allow_changed_data: bool = False) -> Dict[str, Any]:
        """Train until early stopping or ``cfg.epochs``; return ``metrics.json``'s content.

        Without ``resume``, a folder holding a run is replaced once this run's first checkpoint
        is written (:class:`~dhmrec_pyg.training.resume.RunFolder`).

        Args:
            resume: continue from ``out_dir/checkpoint.pt``. A finished run is not trained again
                (its results are returned, the model gets its checked best weights); without a
                checkpoint the results found move to ``previous-<time>/`` and the run restarts.
            allow_changed_data: with ``resume``, continue on a data set other than the recorded one.

        Raises:
            CheckpointError: the checkpoint is damaged, unreadable or belongs to another config.
            DataChangedError: with ``resume``, the data set changed (naming what changed).
            WeightsError: a finished run's ``best.pt`` is damaged and no checkpoint restores it.
            NonFiniteLossError: a loss term became NaN or infinite.
            TrainingInterrupted: Ctrl-C (or :meth:`request_stop`); a checkpoint was written.
            Exception: whatever a callback's ``on_epoch_end`` raises.
        """
        if resume and self._folder is not None and self._folder.finished:
            return finished_results(self._folder, self.model, self.state, self.dist.is_main)
        generator = torch.Generator().manual_seed(self.cfg.seed)
        try:
            point = None if self._folder is None else self._folder.start(resume, self.state, generator,
                                                                          allow_changed_data)
            with self._stop.catching_sigint(self._folder is not None):
                self._epoch_loop(generator, point)
            return self._finish()
        except BaseException:
            if self._folder is not None:
                self._folder.abandon()  # a run that wrote no checkpoint replaces nothing
            raise
        finally:
            if self._logger is not None:
                self._logger.close()

    def _epoch_loop(self, generator: torch.Generator, point: Optional[ResumePoint]) -> None:
        """Train, validate, record and call back epoch by epoch until the last or early stopping."""
        cfg, state = self.cfg, self.state
        bar = tqdm(total=cfg.epochs, initial=state.epoch, desc=cfg.model,
                   disable=not (cfg.progress and self.dist.is_main), file=sys.stderr)
        with contextlib.closing(bar):
            while state.epoch < cfg.epochs and not state.early.stopped:
                epoch = state.epoch
                losses, train_seconds = self._train_epoch(epoch, generator, point)
                point = None
                row, value, improved = self._validate(epoch, losses, train_seconds)
                state.epoch = epoch + 1
                if self._folder is not None:
                    self._folder.save_epoch(state, improved, generator.get_state())
                bar.update(1)
                bar.set_postfix(loss=f"{losses['loss']:.4f}", **{cfg.valid_metric: f"{value:.4f}"},
                                best=f"{state.early.best_value:.4f}@{state.early.best_epoch}")
                for callback in self.callbacks:
                    if hasattr(callback, "on_epoch_end"):
                        callback.on_epoch_end(self, epoch, dict(row))
                more = state.epoch < cfg.epochs and not state.early.stopped
                if ddist.any_rank(self._stop.requested) and self._folder is not None and more:
                    raise TrainingInterrupted(self._folder.path, state.epoch, 0)

    def _validate(self, epoch: int, losses: Dict[str, float], train_seconds: float
                  ) -> Tuple[Dict[str, float], float, bool]:
        """Validate and record an epoch; its history row, validation value, and whether it is the best."""
        with self.averaged_weights():
            start = time.perf_counter()
            valid = evaluate_model(self.model, self.evaluators["val"])
            eval_seconds = time.perf_counter() - start
            row = epoch_row(epoch, losses, train_seconds, eval_seconds, valid, model_diagnostics(self.model, epoch))
            value = valid[self.cfg.valid_metric]
            return row, value, self.state.record(epoch, row, value, valid)

    def train_epoch(self, epoch: int, generator: torch.Generator, *, max_batches: Optional[int] = None,
                    on_batch_end: Optional[Callable[[int, float], None]] = None) -> Tuple[Dict[str, float], float]:
        """Train one epoch exactly as :meth:`fit` does (without validation, checkpoints or history):
        the model's ``on_epoch_start`` hook, the epoch's BPR triplets drawn with ``generator``, then
        loss, backward and Adam step per mini-batch (a NaN or infinite term raises
        :class:`NonFiniteLossError` before its step). With one generator seeded with ``cfg.seed``,
        a loop of calls trains the epochs :meth:`fit` trains.

        Args:
            epoch: the epoch number (0-based), passed to the model's hook and named in errors.
            generator: the generator the sampler and the hook draw from.
            max_batches: stop after this many mini-batches (``None``: the whole epoch).
            on_batch_end: called after every step with the batch's index and the epoch's training
                seconds so far (the first batch's share includes drawing the triplets).

        Returns:
            The mean of every loss term and the epoch's training seconds (``train_seconds`` of
            ``history.csv``: from drawing the triplets to the last step, the hook not included).
        """
        if max_batches is not None and max_batches < 1:
            raise ValueError(f"max_batches must be >= 1 or None, got {max_batches}")
        return self._train_epoch(epoch, generator, max_batches=max_batches, on_batch_end=on_batch_end)

    def _train_epoch(self, epoch: int, generator: torch.Generator, resume_point: Optional[ResumePoint] = None,
                     max_batches: Optional[int] = None, on_batch_end: Optional[Callable[[int, float], None]] = None
                     ) -> Tuple[Dict[str, float], float]:
        """:meth:`train_epoch`; with ``resume_point`` (from a mid-epoch checkpoint), continue that
        epoch. On a stop request (with a run folder) write a checkpoint after the batch and raise
        :class:`TrainingInterrupted`."""
        epoch_state = generator.get_state()
        self.model.train()
        self.model.on_epoch_start(epoch, generator)
        batches: Iterator[Batch] = self.sampler.epoch(generator)
        done = resume_point or ResumePoint()  # a fresh epoch: nothing done, nothing to skip
        sums, n, seconds, skip = dict(done.sums), done.n, done.train_seconds, done.batch
        done.skip(batches)
        if max_batches is not None:
            batches = itertools.islice(batches, max(max_batches - skip, 0))
        start = time.perf_counter()
        for index, batch in enumerate(batches, start=skip):
            values, stop = self._step(batch, epoch, index)
            for name, value in values.items():
                sums[name] = sums.get(name, 0.0) + value
            n += 1
            if stop and self._folder is not None:
                done = ResumePoint(index + 1, sums, n, seconds + time.perf_counter() - start)
                self._folder.save_checkpoint(self.state, epoch, index + 1, epoch_state, done)
                raise TrainingInterrupted(self._folder.path, epoch, index + 1)
            if on_batch_end is not None:
                on_batch_end(index, seconds + time.perf_counter() - start)
        seconds += time.perf_counter() - start
        return {name: value / max(n, 1) for name, value in sums.items()}, seconds

    def _step(self, batch: Batch, epoch: int, index: int) -> Tuple[Dict[str, float], bool]:
        """One mini-batch: loss terms (this rank's share under DDP), the non-finite guard, backward,
        Adam step, weight averages; the batch's loss values and whether to stop after it."""
        if self._ddp is not None:
            terms = ddist.shard_loss(self._loss, *batch, self.device)
            bad, stop, values = ddist.agree_on_batch(terms, self._stop.requested)
        else:
            terms = self._loss(*(t.to(self.device) for t in batch))
            bad, stop, values = [name for name, value in terms.items() if not torch.isfinite(value).all()], False, {}
        if bad:
            note = "" if self._folder is None else self._folder.intact_note(epoch)
            raise non_finite_error(terms, bad, epoch, index, self.dist.enabled, note)
        self.optimizer.zero_grad(set_to_none=True)
        terms["loss"].backward()
        self.optimizer.step()
        if self._ema is not None:
            self._ema.update()
        if self._ddp is None:
            values, stop = {name: float(value.detach()) for name, value in terms.items()}, self._stop.requested
        return values, stop

    def _finish(self) -> Dict[str, Any]:
        """Test the best epoch's weights (test is read once, at that epoch); ``metrics.json``."""
        state = self.state
        identical = ddist.params_identical(self.model)
        if state.best_state is not None:
            self.model.load_state_dict(state.best_state)
        test = evaluate_model(self.model, self.evaluators["test"])
        execution = {"optimizer_impl": self.optimizer_impl, "compile": self.cfg.compile}  # the speed options
        result = run_summary(self.cfg, state.early, state.history, test, execution, environment())
        if self.dist.enabled:
            seconds = result["seconds_per_epoch"]
            triplets = self.sampler.users.numel() / seconds if seconds else 0.0
            result["distributed"] = ddist.run_summary(identical, triplets)
        if self._folder is not None:
            self._folder.write_metrics(result)
        ddist.barrier()
        return result
