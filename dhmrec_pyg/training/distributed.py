"""Multi-process training with ``torch.distributed`` (DistributedDataParallel).

Launch with ``torchrun --nproc_per_node=N -m dhmrec_pyg.cli train ...`` or
``dhmrec train --nproc N`` (which runs ``torch.distributed.run`` for you).
torchrun sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and
``MASTER_PORT``; :func:`init_from_env` reads them and opens the process group
(NCCL on CUDA, gloo on the CPU). Without them (or with ``WORLD_SIZE=1``)
nothing here changes the single-process behaviour.

The scheme, in short:

- every rank builds the same model from the same seed, and DDP broadcasts
  rank 0's parameters once at wrap time;
- every rank draws the *same* epoch (permutation and negatives) from the same
  seeded generator, so generator-driven pre-epoch work (DHMRec's and FREEDOM's
  degree-sensitive pruning) gives every rank the same graph, and then trains on
  its contiguous share of each global mini-batch (:func:`shard_bounds`); the
  global batch size is unchanged;
- each rank's loss is scaled by ``world_size * n_rank / batch`` so that DDP's
  gradient *average* equals the gradient of the single-process batch mean,
  also for the uneven last batch (exact for per-triplet terms such as BPR and
  the L2 penalty; batch-level terms such as a contrastive loss over the batch
  become the size-weighted mean of the shards' values);
- evaluation shards the evaluated users over ranks and all-reduces the metric
  sums (:meth:`FullRankingEvaluator.evaluate`), so metrics equal the
  single-process computation up to floating-point summation order;
- only rank 0 writes files.
"""
from __future__ import annotations

import math
import os
import subprocess
import sys
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

import torch
import torch.distributed as dist
from torch import Tensor, nn

from dhmrec_pyg.errors import ConfigError


@dataclass(frozen=True)
class DistInfo:
    """Where this process stands: ``rank`` of ``world_size`` (``0`` of ``1`` when not distributed)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        """Whether more than one process takes part."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that writes files and prints."""
        return self.rank == 0


def env_world_size() -> int:
    """``WORLD_SIZE`` from the environment (1 when unset)."""
    try:
        return int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        return 1


def current() -> DistInfo:
    """The process group's rank and size, or ``DistInfo()`` when no group is open."""
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        return DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))
    return DistInfo()


def is_main_process() -> bool:
    """True on rank 0 and in single-process runs."""
    return current().is_main


def local_world_size() -> int:
    """Processes on this machine: ``LOCAL_WORLD_SIZE`` (torchrun sets it), else ``WORLD_SIZE``."""
    try:
        return int(os.environ.get("LOCAL_WORLD_SIZE", str(env_world_size())))
    except ValueError:
        return env_world_size()


def ranks_use_cuda(device: str) -> bool:
    """Whether the ranks of a run with this device setting train on GPUs, one GPU per local rank.

    ``"auto"`` takes the GPUs only when there is one for every local rank and the
    CPU (gloo) otherwise, e.g. two processes on a machine with one GPU; a CUDA
    device asked for by name with too few GPUs is an error.

    Raises:
        ConfigError: ``device`` names CUDA and the machine has fewer GPUs than local ranks.
    """
    if str(device).startswith("cpu") or not torch.cuda.is_available():
        return False
    count, local = torch.cuda.device_count(), local_world_size()
    if count >= local:
        return True
    if device == "auto":
        return False
    raise ConfigError(
        f"device {device!r} with {local} processes on this machine needs {local} GPUs, and it has {count}; "
        "use --device cpu, or fewer processes"
    )


def init_from_env(device: str = "auto") -> DistInfo:
    """Open the default process group when torchrun's variables ask for more than one process.

    Args:
        device: the run's device setting; ``"cpu"`` forces gloo even where CUDA exists, and so
            does ``"auto"`` with fewer GPUs than processes (:func:`ranks_use_cuda`).

    Returns:
        This process's :class:`DistInfo` (``DistInfo()`` for a single process).
    """
    if env_world_size() <= 1:
        return DistInfo()
    if not dist.is_initialized():
        use_cuda = ranks_use_cuda(device)
        if use_cuda:
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return current()


def shutdown() -> None:
    """Close the default process group if this module (or anyone) opened one."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    """Wait for every rank (no-op for a single process)."""
    if current().enabled:
        dist.barrier()


@contextmanager
def main_first() -> Iterator[None]:
    """Run the block on rank 0 first, then on the other ranks.

    For pre-training work that writes caches (generated demo data, processed
    datasets, KNN item graphs): rank 0 builds and caches them, the other ranks
    then read rank 0's files, so every rank sees the same graph and no two
    processes write the same cache at once. A no-op for a single process.
    """
    info = current()
    if info.enabled and not info.is_main:
        dist.barrier()
    try:
        yield
    finally:
        if info.enabled and info.is_main:
            dist.barrier()


def broadcast_text(text: Optional[str], src: int = 0) -> Optional[str]:
    """Rank ``src``'s ``text`` (or ``None``) on every rank; unchanged for a single process.

    Sent as UTF-8 bytes in a tensor, not with ``broadcast_object_list`` (which pickles).
    """
    if not current().enabled:
        return text
    dev = collective_device()
    data = b"" if text is None else text.encode("utf-8")
    head = torch.tensor([-1 if text is None else len(data)], dtype=torch.long, device=dev)
    dist.broadcast(head, src=src)
    size = int(head.item())
    if size <= 0:
        return None if size < 0 else ""
    buf = (torch.tensor(list(data), dtype=torch.uint8, device=dev) if current().rank == src
           else torch.empty(size, dtype=torch.uint8, device=dev))
    dist.broadcast(buf, src=src)
    return bytes(buf.cpu().tolist()).decode("utf-8")


def all_reduce_sum(tensor: Tensor) -> Tensor:
    """Sum ``tensor`` over ranks in place (no-op for a single process); returns it."""
    if current().enabled:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def collective_device() -> torch.device:
    """Device for tensors passed to collectives: the local GPU under NCCL, else the CPU."""
    if current().enabled and dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def shard_bounds(n: int, rank: int, world_size: int) -> Tuple[int, int]:
    """``[start, end)`` of rank's contiguous share of ``n`` items (sizes differ by at most one)."""
    base, extra = divmod(n, world_size)
    start = rank * base + min(rank, extra)
    return start, start + base + (1 if rank < extra else 0)


def rank_device(device: torch.device, setting: str) -> torch.device:
    """The device this rank trains on: one GPU per local rank when ``device`` (resolved from the
    run's ``setting``) is CUDA without an index and the ranks use GPUs (:func:`ranks_use_cuda`),
    the CPU when they do not (``"auto"`` with fewer GPUs than ranks); else ``device`` unchanged.
    """
    info = current()
    if not info.enabled or device.type != "cuda" or device.index is not None:
        return device
    return torch.device("cuda", info.local_rank) if ranks_use_cuda(setting) else torch.device("cpu")


def shard_loss(loss: Any, users: Tensor, pos_items: Tensor, neg_items: Tensor, device: torch.device
               ) -> Dict[str, Tensor]:
    """This rank's loss terms on its contiguous share of a global batch.

    The terms are scaled by ``world_size * share`` so that DDP's gradient average over ranks
    equals the gradient of the global batch mean. A rank whose share of a tiny last batch is
    empty runs the first triplet with weight 0, so that it still joins the gradient all-reduce.

    Args:
        loss: the DDP-wrapped loss function (:func:`wrap_ddp`, compiled or not).
        users, pos_items, neg_items: the global batch.
        device: this rank's device.
    """
    info = current()
    lo, hi = shard_bounds(users.numel(), info.rank, info.world_size)
    share = (hi - lo) / max(users.numel(), 1)
    if hi == lo:
        lo, hi = 0, 1
    u, p, n = (t[lo:hi].to(device) for t in (users, pos_items, neg_items))
    terms = loss(u, p, n)
    return {name: value * (info.world_size * share) for name, value in terms.items()}


def agree_on_batch(terms: Dict[str, Tensor], stop: bool) -> Tuple[List[str], bool, Dict[str, float]]:
    """One all-reduce per batch: the global batch's loss terms, non-finite terms, stop requests.

    Args:
        terms: this rank's scaled terms (:func:`shard_loss`).
        stop: whether this rank was asked to stop.

    Returns:
        The names of the terms non-finite on any rank, whether any rank asked to stop (so that
        all ranks take the same branch), and the global batch means of the terms (the sum over
        ranks of ``share * term``; empty when a term is not finite).
    """
    world = current().world_size
    names = list(terms)
    local = [float(terms[k].detach()) / world for k in names]  # = share * unscaled term
    finite = [math.isfinite(v) for v in local]
    vec = torch.tensor([v if f else 0.0 for v, f in zip(local, finite)]
                       + [0.0 if f else 1.0 for f in finite] + [float(stop)],
                       dtype=torch.float64)
    vec = all_reduce_sum(vec.to(collective_device())).cpu()
    k = len(names)
    bad = [name for name, flag in zip(names, vec[k:2 * k].tolist()) if flag > 0]
    means = {} if bad else dict(zip(names, vec[:k].tolist()))
    return bad, bool(vec[-1] > 0), means


def any_rank(flag: bool) -> bool:
    """Whether ``flag`` is set on any rank (one all-reduce; ``flag`` itself for one process)."""
    if not current().enabled:
        return flag
    vec = torch.tensor([float(flag)], dtype=torch.float64)
    return bool(all_reduce_sum(vec.to(collective_device())).cpu()[0] > 0)


class LossModule(nn.Module):
    """Wraps a recommender so that DDP sees its loss computation as ``forward``.

    DDP only hooks the gradients of what runs inside the wrapped module's
    ``forward``; a model's :meth:`~dhmrec_pyg.models.Recommender.loss` is that
    computation (the full-graph propagation plus the batch's loss terms).
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, users: Tensor, pos_items: Tensor, neg_items: Tensor) -> Dict[str, Tensor]:  # noqa: D102
        return self.model.loss(users, pos_items, neg_items)


def wrap_ddp(model: nn.Module, device: torch.device) -> nn.Module:
    """``DistributedDataParallel(LossModule(model))`` for the current process group.

    ``broadcast_buffers=False``: buffers (sparse adjacencies, pruned graphs) are
    rebuilt identically on every rank from the data and the shared generator,
    and sparse tensors cannot be broadcast. ``find_unused_parameters=True``:
    some models leave parameters without gradient on some steps (ablations,
    frozen branches).
    """
    from torch.nn.parallel import DistributedDataParallel

    kwargs: Dict[str, Any] = {"broadcast_buffers": False, "find_unused_parameters": True}
    if device.type == "cuda":
        kwargs.update(device_ids=[device.index], output_device=device.index)
    with warnings.catch_warnings():
        # Newer torch deprecates broadcast_buffers, but its replacement still syncs buffers at init.
        warnings.simplefilter("ignore", FutureWarning)
        return DistributedDataParallel(LossModule(model), **kwargs)


def params_identical(model: nn.Module) -> bool:
    """Whether every rank holds bit-identical parameters (all-gathers them; True for one process)."""
    info = current()
    if not info.enabled:
        return True
    dev = collective_device()
    flat = torch.cat([p.detach().reshape(-1).float() for p in model.parameters()]).to(dev)
    gathered = [torch.empty_like(flat) for _ in range(info.world_size)]
    dist.all_gather(gathered, flat)
    return all(torch.equal(gathered[0], g) for g in gathered[1:])


def run_summary(params_identical_across_ranks: bool, triplets_per_second: float) -> Dict[str, Any]:
    """The ``distributed`` entry of a multi-process run's ``metrics.json``: world size, backend,
    whether the ranks ended with identical parameters (:func:`params_identical`), and the
    training triplets per second."""
    return {
        "world_size": current().world_size,
        "backend": dist.get_backend(),
        "params_identical_across_ranks": bool(params_identical_across_ranks),
        "triplets_per_second": float(triplets_per_second),
    }


def torchrun_command(nproc: int, argv: Sequence[str]) -> List[str]:
    """The ``python -m torch.distributed.run`` command that runs ``dhmrec <argv>`` on ``nproc`` processes.

    ``--standalone`` rendezvous picks a free local port, so concurrent runs do not clash.
    """
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={int(nproc)}",
            "-m", "dhmrec_pyg.cli", *argv]


def launch(nproc: int, argv: Sequence[str], env: Optional[Dict[str, str]] = None) -> int:
    """Run ``dhmrec <argv>`` on ``nproc`` local processes under torchrun; return its exit code."""
    return subprocess.call(torchrun_command(nproc, argv), env=env)
