"""The training loop: BPR mini-batches, per-epoch validation, early stopping, exact resume.

With a run folder, the trainer writes ``checkpoint.pt`` atomically after every
epoch (see :mod:`dhmrec_pyg.training.checkpoint`), keeps the best epoch's
weights in ``best.pt``, and ``Trainer.fit(resume=True)`` continues a run from
its checkpoint with exactly the metrics and history of an uninterrupted run
(on the CPU). Ctrl-C (SIGINT) finishes the current mini-batch, writes a
checkpoint and raises :class:`TrainingInterrupted`; a NaN or infinite loss
term raises :class:`NonFiniteLossError` and leaves the last checkpoint alone.
"""
from __future__ import annotations

import contextlib
import copy
import csv
import io
import itertools
import math
import random
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch_geometric.data import HeteroData
from tqdm.auto import tqdm

from dhmrec_pyg import files as dfiles
from dhmrec_pyg.models import MODELS, Recommender
from dhmrec_pyg.models.base import EDGE
from dhmrec_pyg.schema import as_interaction_graph, split_edge_index
from dhmrec_pyg.training.checkpoint import (
    CHECKPOINT_NAME,
    CheckpointError,
    capture_rng_state,
    config_digest,
    load_checkpoint,
    restore_rng_state,
    save_checkpoint,
)
from dhmrec_pyg.training import distributed as ddist
from dhmrec_pyg.training.config import ConfigError, TrainConfig, dump_config, identity_text
from dhmrec_pyg.training.evaluate import FullRankingEvaluator
from dhmrec_pyg.training.sampler import BPRSampler


#: Files of a run folder that a fresh (not resumed) run replaces.
RUN_FILES = ("config.yaml", "history.csv", "metrics.json", "best.pt", CHECKPOINT_NAME)


class NonFiniteLossError(RuntimeError):
    """A loss term became NaN or infinite; the message names epoch, batch and term.

    Raised before the optimizer step, so the weights stay finite, and nothing is
    written: the last checkpoint on disk (from the previous epoch) stays intact.

    Attributes:
        epoch: the epoch (0-based).
        batch: the mini-batch of that epoch (0-based).
        term: the name of the loss term (a key of the model's ``loss`` dict).
    """

    def __init__(self, message: str, epoch: int = -1, batch: int = -1, term: str = "") -> None:
        super().__init__(message)
        self.epoch, self.batch, self.term = epoch, batch, term


class TrainingInterrupted(RuntimeError):
    """Training stopped on SIGINT (Ctrl-C) after writing a checkpoint.

    Attributes:
        run_dir: the run folder, to pass to ``dhmrec train --resume``.
        epoch: the epoch the checkpoint continues (0-based).
        batch: mini-batches of that epoch already trained.
    """

    def __init__(self, run_dir: Path, epoch: int, batch: int) -> None:
        where = f"epoch {epoch}, batch {batch}" if batch else f"the start of epoch {epoch}"
        super().__init__(
            f"interrupted: checkpoint written at {where} ({Path(run_dir) / CHECKPOINT_NAME})"
        )
        self.run_dir, self.epoch, self.batch = Path(run_dir), epoch, batch


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch, and return a torch generator for sampling."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def resolve_device(name: str) -> torch.device:
    """``"auto"`` picks CUDA when available, else the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"device: unknown device {name!r}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device: {name!r} requested but CUDA is not available")
    return dev


def _supported_devices(kind: str) -> Tuple[str, ...]:
    """Device types with PyTorch's ``fused`` or ``foreach`` optimizer kernels."""
    try:
        from torch.utils import _foreach_utils as fu

        get = fu._get_fused_kernels_supported_devices if kind == "fused" else fu._get_foreach_kernels_supported_devices
        return tuple(get())
    except (ImportError, AttributeError):  # pragma: no cover - a PyTorch without the private helpers
        return ("cuda", "cpu") if kind == "fused" else ("cuda",)


def resolve_optimizer_impl(impl: str, params: Sequence[torch.Tensor]) -> str:
    """The Adam implementation that ``impl`` (a :data:`~dhmrec_pyg.training.config.OPTIMIZER_IMPLS`
    value) means for ``params``: ``"loop"``, ``"foreach"`` or ``"fused"``.

    ``auto`` picks ``fused`` when every tensor is a floating-point tensor on a device with
    PyTorch's fused Adam kernel (CUDA and, since PyTorch 2.4, the CPU), else ``foreach`` when
    every tensor is on a device with multi-tensor kernels (CUDA), else ``loop``. On TikTok at one
    CPU thread the fused step was the fastest of the three (README, *Speed options*).

    Raises:
        ConfigError: ``fused`` asked for tensors that the fused kernel does not support, or an
            unknown ``impl``.
    """
    fused_ok = all(p.is_floating_point() and p.device.type in _supported_devices("fused") for p in params)
    if impl == "auto":
        if fused_ok:
            return "fused"
        return "foreach" if all(p.device.type in _supported_devices("foreach") for p in params) else "loop"
    if impl == "fused" and not fused_ok:
        devices = sorted({p.device.type for p in params})
        raise ConfigError(f"optimizer_impl: fused Adam is not available for {', '.join(devices)} parameters "
                          f"(it runs on {', '.join(_supported_devices('fused'))}, floating point only); "
                          "use foreach, loop or auto")
    if impl not in ("loop", "foreach", "fused"):
        raise ConfigError(f"optimizer_impl: unknown implementation {impl!r}; choose auto, loop, foreach or fused")
    return impl


def build_optimizer(params: Sequence[torch.nn.Parameter], lr: float, impl: str = "auto") -> torch.optim.Adam:
    """The trainer's Adam over ``params`` with learning rate ``lr``, in the implementation ``impl``
    (:func:`resolve_optimizer_impl`): the same update to float tolerance, in fewer launches.

    Args:
        params: the tensors to optimise (all on one device).
        lr: the learning rate.
        impl: ``"auto"``, ``"loop"`` (one tensor at a time), ``"foreach"`` (multi-tensor
            kernels) or ``"fused"`` (one fused kernel).

    Returns:
        A ``torch.optim.Adam`` with its ``foreach`` and ``fused`` flags set explicitly.
    """
    params = list(params)
    return torch.optim.Adam(params, lr=lr, **adam_flags(resolve_optimizer_impl(impl, params)))


def adam_flags(resolved: str) -> Dict[str, bool]:
    """``torch.optim.Adam``'s ``foreach`` / ``fused`` keywords for a resolved implementation
    (``"loop"``, ``"foreach"`` or ``"fused"``)."""
    return {"foreach": resolved == "foreach", "fused": resolved == "fused"}


def build_model(name: str, data: HeteroData, model_config: Any) -> Recommender:
    """Instantiate the registered model ``name`` on ``data``."""
    if name not in MODELS:
        raise ConfigError(f"model: unknown model {name!r}; choose one of {', '.join(MODELS)}")
    return MODELS[name](data, model_config)


@dataclass
class EarlyStopping:
    """Early stopping on a validation metric (higher is better).

    Attributes:
        patience: epochs without a better value after which training stops.
        best_value: the best validation value so far (``-inf`` before the first epoch).
        best_epoch: its epoch (``-1`` before the first epoch).
        best_valid: every validation metric at that epoch.
        stale: epochs since the best one.
    """

    patience: int
    best_value: float = -math.inf
    best_epoch: int = -1
    best_valid: Dict[str, float] = field(default_factory=dict)
    stale: int = 0

    @property
    def stopped(self) -> bool:
        """Whether ``patience`` epochs have passed without a better value."""
        return self.stale >= self.patience

    def step(self, epoch: int, value: float, valid: Dict[str, float]) -> bool:
        """Record an epoch's validation ``value`` (and all its metrics); whether it is the new best."""
        if value > self.best_value:
            self.best_value, self.best_epoch, self.best_valid, self.stale = value, epoch, dict(valid), 0
            return True
        self.stale += 1
        return False

    def state_dict(self) -> Dict[str, Any]:
        """The state a checkpoint keeps (``best_value``, ``best_epoch``, ``best_valid``, ``stale``)."""
        return {"best_value": self.best_value, "best_epoch": self.best_epoch,
                "best_valid": dict(self.best_valid), "stale": self.stale}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        """Restore the state of :meth:`state_dict`."""
        self.best_value, self.best_epoch = state["best_value"], state["best_epoch"]
        self.best_valid, self.stale = dict(state["best_valid"]), state["stale"]


def make_evaluators(data: HeteroData, cfg: TrainConfig) -> Dict[str, FullRankingEvaluator]:
    """Validation and test evaluators of a dataset (a graph in the canonical form)."""
    store = data[EDGE]
    n_u, n_i = int(data["user"].num_nodes), int(data["item"].num_nodes)
    return {
        split: FullRankingEvaluator(
            store.edge_index, split_edge_index(data, split), n_u, n_i, cfg.ks, cfg.eval_batch_size
        )
        for split in ("val", "test")
    }


@torch.no_grad()
def evaluate_model(model: Recommender, evaluator: FullRankingEvaluator) -> Dict[str, float]:
    """Evaluate ``model`` (switched to eval mode) with ``evaluator``."""
    was_training = model.training
    model.eval()
    user_emb, item_emb = model.embeddings()
    out = evaluator.evaluate(user_emb, item_emb, score_fn=model.score)
    model.train(was_training)
    return out


class Trainer:
    """Fits a model with BPR, validates every epoch, keeps the best epoch.

    With ``out_dir``, the run folder receives ``config.yaml``, ``history.csv``
    (after every epoch), ``best.pt`` (the best epoch's weights, whenever the
    validation metric improves), ``checkpoint.pt`` (after every epoch, and on
    Ctrl-C after the current mini-batch) and ``metrics.json`` (at the end). All
    writes are atomic. ``fit(resume=True)`` continues from ``checkpoint.pt``.

    With ``cfg.ema_decay`` > 0 the trainer also keeps a moving average of the parameters
    (:attr:`ema`, updated after every optimiser step); validation, the diagnostics, ``best.pt``
    and the test read the averaged weights (:meth:`averaged_weights`), training continues from
    its own, and ``checkpoint.pt`` carries both.

    Under ``torch.distributed`` (torchrun, see :mod:`dhmrec_pyg.training.distributed`)
    the model is trained with DistributedDataParallel: every rank draws the
    same epoch from the shared seeded generator and trains on its share of each
    global mini-batch, evaluation is sharded by users, and only rank 0 writes
    the run folder. ``metrics.json`` then gains a ``distributed`` entry.

    The optimizer is Adam in the implementation ``cfg.optimizer_impl`` (:func:`build_optimizer`;
    ``auto``: fused where the device has the kernel), and with ``cfg.compile`` the loss of every
    mini-batch is computed by ``torch.compile(model.loss)`` (its backward through the compiled
    graphs); both give the eager loop's values to float tolerance (README, *Speed options*).

    Args:
        model: a :class:`~dhmrec_pyg.models.Recommender`.
        data: the dataset (training edges, validation and test edges).
        cfg: the training configuration.
        out_dir: run folder; ``None`` keeps everything in memory (no checkpoints,
            and Ctrl-C raises ``KeyboardInterrupt`` as usual).
        model_config: the model's config, written to ``config.yaml``.
        edge_type, user, item: the graph's own names for the interaction edge
            type and the node types (see :func:`~dhmrec_pyg.data.as_interaction_graph`);
            checked up front, with an error listing what was expected and found.
        callbacks: objects with ``on_epoch_end(trainer, epoch, row)``, called after every
            epoch once its ``row`` (the history dict, e.g. ``row["valid_recall@20"]``) is
            appended and ``history.csv`` / ``checkpoint.pt`` are written; an exception raised
            there (e.g. ``optuna.TrialPruned``) propagates out of :meth:`fit`.
    """

    def __init__(
        self,
        model: Recommender,
        data: HeteroData,
        cfg: TrainConfig,
        out_dir: Optional[Path] = None,
        model_config: Any = None,
        *,
        edge_type: Union[None, str, Sequence[str]] = None,
        user: Optional[str] = None,
        item: Optional[str] = None,
        callbacks: Sequence[Any] = (),
    ) -> None:
        data = as_interaction_graph(data, edge_type, user=user, item=item, require_splits=True)
        self.cfg = cfg
        self.dist = ddist.current()
        self.device = resolve_device(cfg.device)
        if self.dist.enabled and self.device.type == "cuda" and self.device.index is None:
            # One GPU per local rank; "auto" with fewer GPUs than ranks trains on the CPU.
            use_cuda = ddist.ranks_use_cuda(cfg.device)
            self.device = torch.device("cuda", self.dist.local_rank) if use_cuda else torch.device("cpu")
        self.model = model.to(self.device)
        # DDP wraps the loss computation; None for a single process (today's path, untouched).
        self._ddp = ddist.wrap_ddp(self.model, self.device) if self.dist.enabled else None
        self.data = data
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.model_config = model_config if model_config is not None else model.config
        store = data[EDGE]
        self.sampler = BPRSampler(
            store.edge_index, int(data["item"].num_nodes), cfg.batch_size, negatives=cfg.negatives
        )
        self.evaluators = make_evaluators(data, cfg)
        if cfg.valid_metric not in self.evaluators["val"].metric_names():
            raise ConfigError(
                f"valid_metric: {cfg.valid_metric!r} is not computed; "
                f"choose one of {', '.join(self.evaluators['val'].metric_names())}"
            )
        params = list(self.model.parameters())
        #: The Adam implementation in use (``cfg.optimizer_impl`` resolved for the device).
        self.optimizer_impl = resolve_optimizer_impl(cfg.optimizer_impl, params)
        self.optimizer = torch.optim.Adam(params, lr=cfg.lr, **adam_flags(self.optimizer_impl))
        self._loss = self._loss_function()
        self.history: List[Dict[str, float]] = []
        self.config_text = dump_config(cfg, self.model_config)
        # A checkpoint is tied to what defines the run, not to how it is watched or where it runs.
        self._config_sha256 = config_digest(identity_text(cfg, self.model_config))
        self._interrupt = False
        self._epoch = 0
        self._early = EarlyStopping(cfg.patience)
        self._best_state: Optional[Dict[str, torch.Tensor]] = None
        #: Objects whose ``on_epoch_end(trainer, epoch, row)`` runs after every epoch (see ``callbacks``).
        self.callbacks: List[Any] = list(callbacks)
        self._ema_params = [p for p in self.model.parameters() if p.is_floating_point()]
        #: The moving averages of the parameters (``cfg.ema_decay`` > 0), else ``None``.
        self.ema: Optional[List[torch.Tensor]] = (
            [p.detach().clone() for p in self._ema_params] if cfg.ema_decay > 0 else None
        )

    # ------------------------------------------------------------------ checkpoints
    @property
    def checkpoint_path(self) -> Optional[Path]:
        """``out_dir/checkpoint.pt``, or ``None`` without a run folder."""
        return None if self.out_dir is None else self.out_dir / CHECKPOINT_NAME

    def _checkpoint_state(
        self, epoch: int, batch: int, epoch_generator_state: torch.Tensor, partial: Dict[str, Any]
    ) -> Dict[str, Any]:
        return {
            "config_sha256": self._config_sha256,
            "epoch": int(epoch),
            "batch": int(batch),
            "epoch_generator_state": epoch_generator_state.clone(),
            "partial": partial,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "rng": capture_rng_state(),
            "early_stopping": self._early.state_dict(),
            "best_model": self._best_state,
            "history": [dict(r) for r in self.history],
            "ema": self.ema,
        }

    def _save_checkpoint(
        self, epoch: int, batch: int, epoch_generator_state: torch.Tensor, partial: Optional[Dict[str, Any]] = None
    ) -> None:
        path = self.checkpoint_path
        if path is None or not self.dist.is_main:
            return
        partial = partial if partial is not None else {"sums": {}, "n": 0, "train_seconds": 0.0}
        save_checkpoint(path, self._checkpoint_state(epoch, batch, epoch_generator_state, partial))

    def _loss_function(self) -> Callable[..., Dict[str, torch.Tensor]]:
        """The function computing a batch's loss terms: ``model.loss`` (with several processes,
        the DDP-wrapped loss), or its ``torch.compile``d version with ``cfg.compile`` (autograd
        runs the backward through the compiled graphs; under DDP the compiler splits its graph
        at the gradient buckets, so the all-reduces still overlap the backward)."""
        cfg = self.cfg
        step: Callable[..., Dict[str, torch.Tensor]] = self.model.loss if self._ddp is None else self._ddp
        if cfg.compile == "none":
            return step
        import torch._dynamo

        if cfg.compile_backend not in torch._dynamo.list_backends(exclude_tags=()):
            raise ConfigError(f"compile_backend: unknown torch.compile backend {cfg.compile_backend!r}; "
                              f"choose one of {', '.join(torch._dynamo.list_backends(exclude_tags=()))}")
        # Sparse products the compiler cannot trace run eagerly between graphs (graph breaks);
        # SparseAdjacency's products are custom operators it keeps in the graph.
        mode = None if cfg.compile == "default" else cfg.compile
        return torch.compile(step, mode=mode, backend=cfg.compile_backend)

    def _restore(self, ck: Dict[str, Any]) -> None:
        self.model.load_state_dict(ck["model"])
        self.optimizer.load_state_dict(ck["optimizer"])
        # A checkpoint's param groups carry the foreach/fused flags it was written with: keep ours.
        flags = adam_flags(self.optimizer_impl)
        for group in self.optimizer.param_groups:
            group.update(flags)
        if flags["fused"]:  # the fused kernel keeps the step count as float32 on the parameter's device
            for param, state in self.optimizer.state.items():
                if torch.is_tensor(state.get("step")):
                    state["step"] = state["step"].to(dtype=torch.float32, device=param.device)
        self.history = [dict(r) for r in ck["history"]]
        self._early.load_state_dict(ck["early_stopping"])
        self._best_state = ck["best_model"]
        self._epoch = int(ck["epoch"])
        if self.ema is not None:
            saved = ck.get("ema")
            if saved is None or len(saved) != len(self.ema):
                raise CheckpointError(f"{self.checkpoint_path}: no moving averages of the parameters "
                                      f"for ema_decay={self.cfg.ema_decay}")
            for average, value in zip(self.ema, saved):
                average.copy_(value)

    def _start_fresh(self) -> None:
        assert self.out_dir is not None
        if not self.dist.is_main:
            return
        self.out_dir.mkdir(parents=True, exist_ok=True)
        for name in RUN_FILES:  # a stale checkpoint must never be resumed with a new config
            (self.out_dir / name).unlink(missing_ok=True)
        dfiles.write_text(self.out_dir / "config.yaml", self.config_text)

    # ------------------------------------------------------------------ Ctrl-C
    def _on_sigint(self, signum: int, frame: Any) -> None:
        if self._interrupt:  # second Ctrl-C: stop at once
            signal.signal(signal.SIGINT, signal.default_int_handler)
            raise KeyboardInterrupt
        self._interrupt = True
        print("\ndhmrec: interrupt received: finishing the current batch and writing a checkpoint "
              "(Ctrl-C again to abort at once)", file=sys.stderr, flush=True)

    def request_stop(self) -> None:
        """Ask the running :meth:`fit` to stop as Ctrl-C does (after the current batch)."""
        self._interrupt = True

    # ------------------------------------------------------------------ training
    def train_epoch(
        self,
        epoch: int,
        generator: torch.Generator,
        *,
        max_batches: Optional[int] = None,
        on_batch_end: Optional[Callable[[int, float], None]] = None,
    ) -> Tuple[Dict[str, float], float]:
        """Train one epoch exactly as :meth:`fit` does (without validation, checkpoints or history).

        Puts the model in training mode, runs its ``on_epoch_start(epoch, generator)``
        hook, draws the epoch's BPR triplets from :attr:`sampler` with ``generator``, and
        for every mini-batch computes the model's loss terms, back-propagates the total and
        takes an optimizer step (under ``torch.distributed``, each rank its share of the
        batch). A NaN or infinite loss term raises :class:`NonFiniteLossError` before its step.

        :meth:`fit` calls this with one generator seeded with ``cfg.seed`` and advanced by
        every epoch, so a loop of ``train_epoch`` calls with such a generator trains the
        same epochs as :meth:`fit` does.

        Args:
            epoch: the epoch number (0-based), passed to the model's hook and named in errors.
            generator: the generator the sampler and the hook draw from.
            max_batches: stop after this many mini-batches (``None``: the whole epoch). The
                sampler still draws the whole epoch's triplets, up front, as it always does.
            on_batch_end: called after every optimizer step with the batch's index and the
                training seconds of the epoch so far (the clock of the returned seconds;
                the first batch's share includes drawing the epoch's triplets). Time spent in
                the callback counts in the epoch's seconds.

        Returns:
            The mean of every loss term over the batches trained, and the epoch's training
            seconds: the ``train_seconds`` of ``history.csv``, from drawing the triplets to
            the last optimizer step (the model's ``on_epoch_start`` hook not included).
        """
        if max_batches is not None and max_batches < 1:
            raise ValueError(f"max_batches must be >= 1 or None, got {max_batches}")
        return self._train_epoch(epoch, generator, max_batches=max_batches, on_batch_end=on_batch_end)

    def _train_epoch(
        self,
        epoch: int,
        generator: torch.Generator,
        resume_point: Optional[Dict[str, Any]] = None,
        max_batches: Optional[int] = None,
        on_batch_end: Optional[Callable[[int, float], None]] = None,
    ) -> Tuple[Dict[str, float], float]:
        """:meth:`train_epoch`; with ``resume_point`` (a mid-epoch checkpoint), continue that epoch.

        Returns:
            Mean loss terms over the epoch's batches, and the epoch's training seconds.
        """
        epoch_state = generator.get_state()
        self.model.train()
        self.model.on_epoch_start(epoch, generator)
        batches: Iterator[Tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = self.sampler.epoch(generator)
        sums: Dict[str, float] = {}
        n, seconds, skip = 0, 0.0, 0
        if resume_point is not None:
            partial = resume_point["partial"]
            sums = {k: float(v) for k, v in partial["sums"].items()}
            n, seconds, skip = int(partial["n"]), float(partial["train_seconds"]), int(resume_point["batch"])
            for _ in itertools.islice(batches, skip):  # the sampler draws the whole epoch up front
                pass
            restore_rng_state(resume_point["rng"])
        if max_batches is not None:
            batches = itertools.islice(batches, max(max_batches - skip, 0))
        start = time.perf_counter()
        for batch_idx, (u, p, ng) in enumerate(batches, start=skip):
            if self._ddp is not None:
                terms, share = self._distributed_terms(u, p, ng)
                bad, stop = self._agree(terms, share, sums)
            else:
                u, p, ng = u.to(self.device), p.to(self.device), ng.to(self.device)
                terms = self._loss(u, p, ng)
                bad = [name for name, value in terms.items() if not torch.isfinite(value).all()]
            if bad:
                # Name the component that broke, not the total it spoiled.
                name = next((b for b in bad if b != "loss"), bad[0])
                value = float(terms[name].detach().float().sum())
                if self.dist.enabled and math.isfinite(value):
                    value = math.nan  # broke on another rank
                also = [b for b in bad if b != name]
                others = f" (also non-finite: {', '.join(map(repr, also))})" if also else ""
                raise NonFiniteLossError(
                    f"loss term {name!r} is {value} at epoch {epoch}, batch {batch_idx}{others}; "
                    f"training stopped{self._intact_note(epoch)}",
                    epoch, batch_idx, name,
                )
            self.optimizer.zero_grad(set_to_none=True)
            terms["loss"].backward()
            self.optimizer.step()
            self._update_averages()
            if self._ddp is None:
                for name, value in terms.items():
                    sums[name] = sums.get(name, 0.0) + float(value.detach())
                stop = self._interrupt
            n += 1
            if stop and self.out_dir is not None:
                partial = {"sums": dict(sums), "n": n,
                           "train_seconds": seconds + time.perf_counter() - start}
                self._save_checkpoint(epoch, batch_idx + 1, epoch_state, partial)
                raise TrainingInterrupted(self.out_dir, epoch, batch_idx + 1)
            if on_batch_end is not None:
                on_batch_end(batch_idx, seconds + time.perf_counter() - start)
        seconds += time.perf_counter() - start
        return {name: value / max(n, 1) for name, value in sums.items()}, seconds

    @torch.no_grad()
    def _update_averages(self) -> None:
        """Move every moving average ``1 - ema_decay`` of the way to its parameter (no-op when off)."""
        if self.ema is None:
            return
        weight = 1.0 - self.cfg.ema_decay
        for average, param in zip(self.ema, self._ema_params):
            average.lerp_(param.detach(), weight)

    @contextlib.contextmanager
    def averaged_weights(self) -> Iterator[None]:
        """Inside the block the model holds the moving averages of its parameters
        (``cfg.ema_decay`` > 0; evaluation, diagnostics and the best state use them); the
        trained parameters come back afterwards. Without averaging it changes nothing."""
        if self.ema is None:
            yield
            return
        with torch.no_grad():
            trained = [p.detach().clone() for p in self._ema_params]
            for param, average in zip(self._ema_params, self.ema):
                param.copy_(average)
        try:
            yield
        finally:
            with torch.no_grad():
                for param, value in zip(self._ema_params, trained):
                    param.copy_(value)

    def _distributed_terms(self, u: torch.Tensor, p: torch.Tensor, ng: torch.Tensor
                           ) -> Tuple[Dict[str, torch.Tensor], float]:
        """This rank's loss terms on its contiguous share of a global batch, and that share.

        The terms are scaled by ``world_size * share`` so that DDP's gradient
        average over ranks equals the gradient of the global batch mean. A rank
        whose share of a tiny last batch is empty runs the first triplet with
        weight 0, so that it still joins the gradient all-reduce.
        """
        assert self._ddp is not None
        world = self.dist.world_size
        lo, hi = ddist.shard_bounds(u.numel(), self.dist.rank, world)
        share = (hi - lo) / max(u.numel(), 1)
        if hi == lo:
            lo, hi = 0, 1
        u, p, ng = (t[lo:hi].to(self.device) for t in (u, p, ng))
        terms = self._loss(u, p, ng)  # the DDP-wrapped loss, compiled with cfg.compile
        return {name: value * (world * share) for name, value in terms.items()}, share

    def _agree(self, terms: Dict[str, torch.Tensor], share: float, sums: Dict[str, float]
               ) -> Tuple[List[str], bool]:
        """One all-reduce per batch: the global batch's loss terms, non-finite terms, stop requests.

        Adds the global batch means (``sum over ranks of share * term``) to
        ``sums``, and returns the names of terms non-finite on any rank and
        whether any rank asked to stop, so that all ranks take the same branch.
        """
        world = self.dist.world_size
        names = list(terms)
        local = [float(terms[k].detach()) / world for k in names]  # = share * unscaled term
        finite = [math.isfinite(v) for v in local]
        vec = torch.tensor([v if f else 0.0 for v, f in zip(local, finite)]
                           + [0.0 if f else 1.0 for f in finite] + [float(self._interrupt)],
                           dtype=torch.float64)
        vec = ddist.all_reduce_sum(vec.to(ddist.collective_device())).cpu()
        k = len(names)
        bad = [name for name, flag in zip(names, vec[k:2 * k].tolist()) if flag > 0]
        if not bad:
            for name, value in zip(names, vec[:k].tolist()):
                sums[name] = sums.get(name, 0.0) + value
        return bad, bool(vec[-1] > 0)

    def _stop_requested(self) -> bool:
        """Whether Ctrl-C (or :meth:`request_stop`) came, on any rank."""
        if not self.dist.enabled:
            return self._interrupt
        flag = torch.tensor([float(self._interrupt)], dtype=torch.float64)
        return bool(ddist.all_reduce_sum(flag.to(ddist.collective_device())).cpu()[0] > 0)

    def _intact_note(self, epoch: int) -> str:
        if self.out_dir is None:
            return ""
        path = self.checkpoint_path
        assert path is not None
        if path.is_file():
            return f"; the last good checkpoint {path} (from before epoch {epoch}) is intact"
        return "; no checkpoint was written yet (the failure came in the first epoch)"

    def fit(self, resume: bool = False) -> Dict[str, Any]:
        """Train until early stopping or ``cfg.epochs``; return ``metrics.json``'s content.

        Args:
            resume: continue from ``out_dir/checkpoint.pt`` (model, optimizer, RNG
                states, sampler position, early-stopping state, history). Without a
                checkpoint there (a run killed before its first epoch ended) the run
                starts from the beginning, keeping the folder's ``config.yaml``.

        Raises:
            CheckpointError: the checkpoint is unreadable or belongs to another config.
            NonFiniteLossError: a loss term became NaN or infinite.
            TrainingInterrupted: Ctrl-C (or :meth:`request_stop`); a checkpoint was written.
        """
        cfg = self.cfg
        generator = torch.Generator().manual_seed(cfg.seed)
        resume_point: Optional[Dict[str, Any]] = None
        if self.out_dir is not None:
            path = self.checkpoint_path
            assert path is not None
            if resume and path.is_file():
                ck = load_checkpoint(path, self._config_sha256)
                self._restore(ck)
                generator.set_state(ck["epoch_generator_state"])
                if int(ck["batch"]) > 0:
                    resume_point = ck
                else:
                    restore_rng_state(ck["rng"])
            elif resume:
                if self.dist.is_main:
                    self.out_dir.mkdir(parents=True, exist_ok=True)
                    for name in RUN_FILES[1:]:
                        (self.out_dir / name).unlink(missing_ok=True)
                    if not (self.out_dir / "config.yaml").is_file():
                        dfiles.write_text(self.out_dir / "config.yaml", self.config_text)
            else:
                self._start_fresh()
            # Every rank has read the checkpoint before rank 0 may write a new one.
            ddist.barrier()
        handler_installed = False
        previous_handler: Any = None
        if self.out_dir is not None and threading.current_thread() is threading.main_thread():
            previous_handler = signal.signal(signal.SIGINT, self._on_sigint)
            handler_installed = True
        try:
            self._run_epochs(generator, resume_point)
        finally:
            if handler_installed:
                signal.signal(signal.SIGINT, previous_handler)
        return self._finish()

    def _run_epochs(self, generator: torch.Generator, resume_point: Optional[Dict[str, Any]]) -> None:
        cfg = self.cfg
        bar = tqdm(total=cfg.epochs, initial=self._epoch, desc=f"{cfg.model}",
                   disable=not (cfg.progress and self.dist.is_main), file=sys.stderr)
        try:
            self._epoch_loop(generator, resume_point, bar)
        finally:
            bar.close()

    def _epoch_loop(self, generator: torch.Generator, resume_point: Optional[Dict[str, Any]], bar: Any) -> None:
        cfg = self.cfg
        early = self._early
        while self._epoch < cfg.epochs and not early.stopped:
            epoch = self._epoch
            losses, train_seconds = self._train_epoch(epoch, generator, resume_point)
            resume_point = None
            with self.averaged_weights():
                start = time.perf_counter()
                valid = evaluate_model(self.model, self.evaluators["val"])
                value = valid[cfg.valid_metric]
                row = {"epoch": epoch, **losses, "train_seconds": train_seconds,
                       "eval_seconds": time.perf_counter() - start}
                row.update({f"valid_{k}": v for k, v in valid.items() if k.endswith("@20") or k.endswith("@10")})
                row.update({f"diag_{k}": v for k, v in self._diagnostics(epoch).items()})
                improved = early.step(epoch, value, valid)
                if improved:
                    self._best_state = copy.deepcopy(self.model.state_dict())
            self.history.append(row)
            if improved and self.out_dir is not None and self.dist.is_main:
                dfiles.save_tensors(self.out_dir / "best.pt", self._best_state)
            self._epoch = epoch + 1
            if self.out_dir is not None and self.dist.is_main:
                self._write_history()
                self._save_checkpoint(self._epoch, 0, generator.get_state())
            for callback in self.callbacks:  # an exception raised here propagates out of fit()
                callback.on_epoch_end(self, epoch, row)
            bar.update(1)
            bar.set_postfix(loss=f"{losses['loss']:.4f}", **{cfg.valid_metric: f"{value:.4f}"},
                            best=f"{early.best_value:.4f}@{early.best_epoch}")
            more = self._epoch < cfg.epochs and not early.stopped
            if self._stop_requested() and self.out_dir is not None and more:
                raise TrainingInterrupted(self.out_dir, self._epoch, 0)

    def _diagnostics(self, epoch: int) -> Dict[str, float]:
        """The model's :meth:`~dhmrec_pyg.models.base.Recommender.diagnostics` after an epoch.

        Seeded by the epoch, from a generator of its own, so recording them changes
        no random stream of training (a resumed run records the same values).
        """
        model = self.model
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad():
                values = model.diagnostics(torch.Generator().manual_seed(epoch))
        finally:
            model.train(was_training)
        return {k: float(v) for k, v in values.items()}

    def _finish(self) -> Dict[str, Any]:
        cfg = self.cfg
        identical = ddist.params_identical(self.model) if self.dist.enabled else True
        if self._best_state is not None:
            self.model.load_state_dict(self._best_state)
        # Test is read once, at the epoch chosen on validation.
        test = evaluate_model(self.model, self.evaluators["test"])
        seconds = [r["train_seconds"] for r in self.history]
        result = {
            "model": cfg.model,
            "dataset": cfg.dataset,
            "seed": cfg.seed,
            "best_epoch": self._early.best_epoch,
            "epochs_run": len(self.history),
            "valid_metric": cfg.valid_metric,
            "valid": self._early.best_valid,
            "test": test,
            "seconds_per_epoch": float(np.mean(seconds)) if seconds else 0.0,
            "eval_seconds": float(np.mean([r["eval_seconds"] for r in self.history])) if seconds else 0.0,
            # how the steps ran (the speed options): Adam's implementation as resolved, the compile mode
            "execution": {"optimizer_impl": self.optimizer_impl, "compile": cfg.compile},
            "environment": environment(),
        }
        if self.dist.enabled:
            result["distributed"] = {
                "world_size": self.dist.world_size,
                "backend": torch.distributed.get_backend(),
                "params_identical_across_ranks": bool(identical),
                "triplets_per_second": float(self.sampler.users.numel() / np.mean(seconds)) if seconds else 0.0,
            }
        if self.out_dir is not None and self.dist.is_main:
            dfiles.write_json(self.out_dir / "metrics.json", result)
        ddist.barrier()
        return result

    def _write_history(self) -> None:
        keys: List[str] = []
        for row in self.history:
            keys += [k for k in row if k not in keys]
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=keys)
        writer.writeheader()
        writer.writerows(self.history)
        dfiles.write_text(self.out_dir / "history.csv", buf.getvalue())  # type: ignore[operator]


def environment() -> Dict[str, str]:
    """Versions and machine description stored with every result."""
    import os
    import platform

    import torch_geometric

    try:
        import faiss  # noqa: F401

        faiss_version = getattr(faiss, "__version__", "unknown")
    except ImportError:  # pragma: no cover - faiss is a required dependency
        faiss_version = "missing"
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_geometric": torch_geometric.__version__,
        "faiss": faiss_version,
        "numpy": np.__version__,
        "cpu": cpu,
        "cores": str(os.cpu_count()),
        "torch_threads": str(torch.get_num_threads()),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none",
    }
