"""Operators per training step of every model, counted with ``torch.profiler`` (device-independent).

    python -m benchmarks.opcount [--dataset tiktok] [--models dhmrec,freedom,lgmrec,lightgcn,bpr] \
        [--data-root ../shared/data] [--out benchmarks/results]

On a GPU the aten operators a training step issues are a kernel launch each (views and
other metadata operators aside), so a model whose step is made of many small operators is
launch-bound there whatever its arithmetic. This counts them on the CPU, where the count does not depend on any GPU.

For every model, built with its default configuration on the dataset, one training step
is what :class:`~dhmrec_pyg.training.trainer.Trainer` runs per mini-batch: the next
batch of 2048 triplets from the library's
:class:`~dhmrec_pyg.training.sampler.BPRSampler` moved to the device (batch: the
same few operators for every model, recorded apart, not in the totals), ``model.loss``
on it (forward), ``zero_grad`` and
``backward`` (backward), and the step of ``torch.optim.Adam`` built as the trainer builds
it (optimizer: :func:`~dhmrec_pyg.training.trainer.build_optimizer` with the default
``optimizer_impl``, ``auto``: fused Adam on the CPU and on CUDA). The model's per-epoch hook ``on_epoch_start`` runs once before, as in an
epoch, and is not counted. One step is run first as a warm-up (Adam creates its state on
its first step), then the next batch's step is profiled:

* **top-level aten ops**: ``aten::`` events with no ``aten::`` event above them (the
  operators called from Python or by the autograd engine, not the ones they call
  internally) in the forward, backward and optimizer phases, also split by phase;
* **aten events**: every ``aten::`` event of those phases, nested ones included;
* **parameter tensors**: the tensors Adam updates (one set of optimizer operators each
  with the per-tensor loop, PyTorch's own default on the CPU).

For comparison the step is also counted with Adam's per-tensor loop (``Adam(foreach=False)``,
what the trainer built before ``optimizer_impl`` existed and PyTorch's default on the CPU)
and with the multi-tensor ``Adam(foreach=True)`` (PyTorch's default on CUDA): the last two
columns are those steps' top-level counts. View and metadata operators (``aten::view``,
``aten::t``, ...) are counted too, although they launch no kernel.

Data: ``tiktok`` (default) is the real data set under ``--data-root`` (``../shared/data``;
skipped with a message when absent), loaded in place (nothing written there, no KNN
cache); ``demo`` or any ``synthetic-<profile>`` is generated once under
``--synthetic-root``. Writes ``opcount_<dataset>.json`` and ``opcount_<dataset>.md`` to
``--out`` with the command, the machine and the library versions.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import shlex
import sys
import time
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
DEFAULT_DATA = REPO.parent / "shared" / "data"
DEFAULT_SYNTHETIC = REPO / "data"
DEFAULT_MODELS = "dhmrec,freedom,lgmrec,lightgcn,bpr"

#: Profiler labels of the three phases of a step.
PHASES = ("batch", "forward", "backward", "optimizer")
#: The phases that make up the step's count (``batch`` is shown apart: it is the same for every model).
STEP_PHASES = ("forward", "backward", "optimizer")
_LABEL = "opcount::"


@dataclasses.dataclass
class StepCount:
    """Operator counts of one profiled training step.

    Attributes:
        top_level: top-level ``aten::`` operators (no ``aten::`` event above them) of the
            forward, backward and optimizer phases.
        aten_events: all ``aten::`` events of those phases, nested ones included.
        by_phase: top-level counts per phase: ``batch`` (slicing the sampler's epoch and moving the
            batch to the model's device; not in ``top_level``), ``forward``, ``backward``, ``optimizer``.
        events_by_phase: all ``aten::`` events per phase.
        parameter_tensors: tensors the optimizer updates.
        top_ops: the most frequent top-level operators of the step, ``{name: count}`` (at most 15).
    """

    top_level: int
    aten_events: int
    by_phase: Dict[str, int]
    events_by_phase: Dict[str, int]
    parameter_tensors: int
    top_ops: Dict[str, int]


def count_events(events: Any) -> Dict[str, Any]:
    """Top-level and all ``aten::`` events of a profiler's event list, by phase label.

    An event is top-level when no ancestor (``cpu_parent`` chain) is an ``aten::`` event;
    its phase is the nearest ancestor labelled ``opcount::<phase>`` (``"other"`` if none).

    Args:
        events: ``prof.events()`` of a :class:`torch.profiler.profile`.

    Returns:
        ``{"top_level": int, "aten_events": int, "by_phase": {phase: int}, "events_by_phase":
        {phase: int}, "names": {phase: {name: int}}}``: totals over all phases, top-level and all
        events per phase, and the top-level operators by name per phase.
    """
    top, total = 0, 0
    by_phase: Dict[str, int] = {p: 0 for p in PHASES}
    events_by_phase: Dict[str, int] = {p: 0 for p in PHASES}
    names: Dict[str, Dict[str, int]] = {}
    for ev in events:
        if not ev.name.startswith("aten::"):
            continue
        parent, phase, nested = ev.cpu_parent, None, False
        while parent is not None:
            nested = nested or parent.name.startswith("aten::")
            if phase is None and parent.name.startswith(_LABEL):
                phase = parent.name[len(_LABEL):]
            parent = parent.cpu_parent
        phase = phase or "other"
        total += 1
        events_by_phase[phase] = events_by_phase.get(phase, 0) + 1
        if nested:
            continue
        top += 1
        by_phase[phase] = by_phase.get(phase, 0) + 1
        per = names.setdefault(phase, {})
        per[ev.name] = per.get(ev.name, 0) + 1
    return {"top_level": top, "aten_events": total, "by_phase": by_phase, "events_by_phase": events_by_phase,
            "names": names}


def count_step(model: Any, sampler: Any, lr: float = 1e-3, seed: int = 0, foreach: Optional[bool] = None,
               warmup: int = 1, impl: str = "auto") -> StepCount:
    """Count the aten operators of one training step of ``model`` (on its current device).

    Runs ``model.on_epoch_start`` once, ``warmup`` uncounted steps, then profiles one
    step: the next batch of ``sampler``'s seeded epoch, moved to the model's device
    (batch), ``model.loss(users, pos, neg)`` (forward), ``zero_grad`` + ``backward``
    (backward), ``Adam.step`` (optimizer), with Adam built as the trainer builds it
    (:func:`~dhmrec_pyg.training.trainer.build_optimizer` with ``impl``).
    The model's parameters change (it is trained for ``warmup + 1`` steps).

    Args:
        model: a :class:`~dhmrec_pyg.models.Recommender`.
        sampler: a :class:`~dhmrec_pyg.training.sampler.BPRSampler` over the training edges.
        lr: Adam's learning rate.
        seed: seed of the sampler's generator.
        foreach: ``True``: the multi-tensor Adam, ``False``: the per-tensor loop (either
            overrides ``impl``); ``None``: ``impl`` decides.
        warmup: uncounted steps before the counted one (at least 1: Adam's first step
            creates its state).
        impl: the trainer's ``optimizer_impl`` (``auto``, ``loop``, ``foreach``, ``fused``).

    Returns:
        The :class:`StepCount` of the profiled step.
    """
    import torch
    from torch.profiler import ProfilerActivity, profile, record_function

    if warmup < 1:
        raise ValueError(f"warmup must be >= 1, got {warmup}")
    device = next(model.parameters()).device
    params = [p for p in model.parameters() if p.requires_grad]
    from dhmrec_pyg.training.trainer import build_optimizer

    if foreach is not None:
        impl = "foreach" if foreach else "loop"
    optimizer = build_optimizer(params, lr, impl)
    generator = torch.Generator().manual_seed(seed)
    model.train()
    model.on_epoch_start(0, generator)
    batches = sampler.epoch(generator)

    def step() -> None:
        with record_function(_LABEL + "batch"):
            u, p, n = (t.to(device) for t in next(batches))
        with record_function(_LABEL + "forward"):
            loss = model.loss(u, p, n)["loss"]
        with record_function(_LABEL + "backward"):
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
        with record_function(_LABEL + "optimizer"):
            optimizer.step()

    for _ in range(warmup):
        step()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        step()
    counts = count_events(prof.events())
    names: Dict[str, int] = {}
    for phase in STEP_PHASES:
        for name, k in counts["names"].get(phase, {}).items():
            names[name] = names.get(name, 0) + k
    top_ops = dict(sorted(names.items(), key=lambda kv: (-kv[1], kv[0]))[:15])
    return StepCount(sum(counts["by_phase"][p] for p in STEP_PHASES),
                     sum(counts["events_by_phase"][p] for p in STEP_PHASES),
                     counts["by_phase"], counts["events_by_phase"], len(params), top_ops)


def source_state() -> Dict[str, Any]:
    """The library code counted: ``{"commit": HEAD or None, "modified": [paths]}``, where
    ``modified`` lists the files under ``dhmrec_pyg/`` that differ from that commit (git's view of
    the checkout this module runs from; both empty outside a git checkout)."""
    import subprocess

    def git(*args: str) -> Optional[str]:
        try:
            out = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.SubprocessError):
            return None
        return out.stdout if out.returncode == 0 else None

    head = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--", "dhmrec_pyg") or ""
    return {"commit": head.strip() if head else None,
            "modified": sorted(line[3:] for line in status.splitlines() if line[3:].endswith(".py"))}


def load_data(name: str, data_root: Path, synthetic_root: Path) -> Any:
    """The dataset ``name``: a synthetic profile (generated once under ``synthetic_root``) or the
    folder ``data_root/name`` read in place; ``None`` when that folder does not exist."""
    from dhmrec_pyg.data import load_dataset, load_mmrec
    from dhmrec_pyg.data.synthetic import synthetic_profile_of

    if synthetic_profile_of(name) is not None:
        return load_dataset(name, root=synthetic_root)
    folder = data_root / name
    if not folder.is_dir():
        return None
    return load_mmrec(folder)


@contextlib.contextmanager
def accelerator_blocks() -> Iterator[None]:
    """Within the block, losses over a ``B x |I|`` score matrix split it into rows as they do on an
    accelerator (:data:`~dhmrec_pyg.nn.blocks.DEVICE_BLOCK_ELEMENTS`) instead of the CPU's cache-sized
    blocks, so the count is the operator sequence a GPU step issues."""
    from dhmrec_pyg.nn import blocks

    saved = blocks.CPU_BLOCK_ELEMENTS
    blocks.CPU_BLOCK_ELEMENTS = blocks.DEVICE_BLOCK_ELEMENTS
    try:
        yield
    finally:
        blocks.CPU_BLOCK_ELEMENTS = saved


def build_default(name: str, data: Any, batch_size: Optional[int] = None, seed: int = 0,
                  options: Sequence[str] = ()) -> Any:
    """Model ``name`` with its default configuration (no KNN cache), or that configuration with the
    ``key=value`` ``options`` of ``--set`` (``kl_align=1024``), built on ``data`` after
    ``seed_everything(seed)``, the trainer's default :class:`TrainConfig` for it, and a
    :class:`BPRSampler` over the training edges (batch ``batch_size``, else the config's):
    ``(model, sampler, train_config)``."""
    from dhmrec_pyg.models import MODELS
    from dhmrec_pyg.models.base import EDGE
    from dhmrec_pyg.training.config import TrainConfig, apply_overrides
    from dhmrec_pyg.training.sampler import BPRSampler
    from dhmrec_pyg.training.trainer import build_model, seed_everything

    cls = MODELS[name]
    train, config = apply_overrides(TrainConfig(model=name), {}, cls.config_class, list(options))
    seed_everything(seed)
    model = build_model(name, data, config)
    sampler = BPRSampler(data[EDGE].edge_index, int(data["item"].num_nodes), batch_size or train.batch_size,
                         negatives=train.negatives)
    return model, sampler, train


def count_model(name: str, data: Any, batch_size: int = 2048, seed: int = 0) -> Dict[str, Any]:
    """Build model ``name`` with its default configuration (no KNN cache) on ``data`` and count a
    step with Adam as the trainer builds it (``TrainConfig().optimizer_impl``), with the per-tensor
    loop and with ``Adam(foreach=True)``; one result row."""
    import torch

    from dhmrec_pyg.training.trainer import resolve_optimizer_impl

    t0 = time.perf_counter()
    model, sampler, train = build_default(name, data, batch_size, seed)
    params = [p for p in model.parameters() if p.requires_grad]
    impl = resolve_optimizer_impl(train.optimizer_impl, params)
    default = count_step(model, sampler, lr=train.lr, seed=seed, impl=impl)
    loop = count_step(model, sampler, lr=train.lr, seed=seed, impl="loop")
    grouped = count_step(model, sampler, lr=train.lr, seed=seed, impl="foreach")
    with accelerator_blocks():
        device_step = count_step(model, sampler, lr=train.lr, seed=seed, impl=impl)
    return {"model": name, "status": "ok", "parameter_tensors": default.parameter_tensors,
            "parameters": int(sum(p.numel() for p in params)), "optimizer_impl": impl,
            "top_level": default.top_level, "aten_events": default.aten_events, "by_phase": default.by_phase,
            "events_by_phase": default.events_by_phase,
            "top_ops": default.top_ops, "loop_top_level": loop.top_level, "loop_by_phase": loop.by_phase,
            "foreach_top_level": grouped.top_level,
            "foreach_by_phase": grouped.by_phase, "device_top_level": device_step.top_level,
            "device_by_phase": device_step.by_phase, "seconds": time.perf_counter() - t0,
            "torch_threads": torch.get_num_threads()}


def markdown(result: Dict[str, Any]) -> str:
    """The ``opcount_<dataset>.md`` text."""
    from benchmarks.reproduce import machine_line

    env = result["environment"]
    impls = sorted({r.get("optimizer_impl", "loop") for r in result["rows"] if r["status"] == "ok"})
    lines = [f"# Operators per training step on {result['dataset']}", "",
             f"Command: `{result['command']}`", "",
             f"One training step (batch {result['batch_size']} from the library's BPR sampler, forward + "
             "backward + Adam step, after one warm-up step), counted with `torch.profiler` on the CPU. "
             "Top-level: `aten::` operators with no `aten::` operator above them (each at least one kernel "
             "launch on a GPU, views aside); aten events: all of them, nested ones included. The phase "
             "columns are top-level counts. Adam is built as the trainer builds it (`optimizer_impl` "
             f"auto: {' / '.join(impls) or '-'} Adam here); the last two columns are the step's top-level count "
             "with Adam's per-tensor loop (PyTorch's default on the CPU, and the trainer's before "
             "`optimizer_impl`) and with `Adam(foreach=True)` (PyTorch's default on CUDA). On the CPU a "
             "loss over a batch x items score matrix (DHMRec's KL) runs in cache-sized row blocks, one "
             "set of operators per block; on an accelerator the whole batch is one block. The column "
             "*as on a GPU* counts the step with the accelerator's blocks and the trainer's Adam (fused on "
             "CUDA too): the kernel launches a GPU step issues.", "",
             "| model | parameter tensors | top-level aten ops | aten events | forward | backward | optimizer "
             "| top-level, loop Adam | top-level, foreach Adam | top-level, as on a GPU |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    batch = set()
    for r in result["rows"]:
        if r["status"] != "ok":
            lines.append(f"| {r['model']} | {r['status']}: {r.get('error', '')} |" + "  |" * 8)
            continue
        ph = r["by_phase"]
        batch.add((ph["batch"], r["events_by_phase"]["batch"]))
        lines.append(f"| {r['model']} | {r['parameter_tensors']} | {r['top_level']:,} | {r['aten_events']:,} "
                     f"| {ph['forward']:,} | {ph['backward']:,} | {ph['optimizer']:,} "
                     f"| {r.get('loop_top_level', r['top_level']):,} | {r['foreach_top_level']:,} "
                     f"| {r.get('device_top_level', r['top_level']):,} |")
    if batch:
        lines += ["", "Not in these counts: taking the batch from the sampler's epoch and moving it to the device, "
                  + " / ".join(f"{t} top-level ops ({e} aten events)" for t, e in sorted(batch))
                  + " per step for every model."]
    lines.append("")
    shape = result.get("shape")
    if shape:
        feats = ", ".join(f"{m} {w}-d" for m, w in shape["features"].items()) or "none"
        lines += [f"Data: {result['dataset']}, {shape['users']:,} users, {shape['items']:,} items, "
                  f"{shape['train_interactions']:,} training interactions; features: {feats}. Models at "
                  "their default configurations.", ""]
    src = result.get("source") or {}
    if src.get("commit"):
        lines += [f"Library code: commit `{src['commit'][:12]}`" + (
            f", with uncommitted changes to {', '.join(f'`{m}`' for m in src['modified'])}."
            if src.get("modified") else ", no uncommitted changes."), ""]
    ok = [r for r in result["rows"] if r["status"] == "ok"]
    if ok:
        lines += ["Most frequent top-level operators per model:", ""]
        for r in ok:
            lines.append(f"- **{r['model']}**: " + ", ".join(f"`{k}` {v}" for k, v in r["top_ops"].items()))
        lines.append("")
    lines.append(f"Machine: {machine_line(env)}; python {env.get('python', '?')}, numpy {env.get('numpy', '?')}, "
                 f"{env.get('torch_threads', '?')} torch thread(s). Total wall time {result['wall_seconds']:.0f} s.")
    return "\n".join(lines) + "\n"


def main(argv: Optional[List[str]] = None) -> int:
    """Count every model's operators per step and write the result files."""
    argv = list(sys.argv[1:] if argv is None else argv)
    from dhmrec_pyg.models import MODELS

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dataset", default="tiktok",
                   help="a folder name under --data-root (tiktok), 'demo' or 'synthetic-<profile>'")
    p.add_argument("--models", default=DEFAULT_MODELS, help=f"comma-separated, of: {', '.join(MODELS)}")
    p.add_argument("--batch-size", type=int, default=2048)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="torch threads (counts do not depend on it)")
    p.add_argument("--data-root", default=str(DEFAULT_DATA), help="folder of the real datasets")
    p.add_argument("--synthetic-root", default=str(DEFAULT_SYNTHETIC),
                   help="where synthetic profiles (demo) are generated (once)")
    p.add_argument("--out", default=str(HERE / "results"), help="folder for opcount_<dataset>.{json,md}")
    args = p.parse_args(argv)
    models = [m.strip().lower() for m in args.models.split(",") if m.strip()]
    unknown = [m for m in models if m not in MODELS]
    if unknown:
        p.error(f"unknown model(s) {', '.join(unknown)}; choose from {', '.join(MODELS)}")
    import torch

    from benchmarks.reproduce import write_result_files
    from dhmrec_pyg.models.base import EDGE
    from dhmrec_pyg.schema import modality_names
    from dhmrec_pyg.training.trainer import environment

    if args.threads > 0:
        torch.set_num_threads(args.threads)
    start = time.perf_counter()
    data = load_data(args.dataset, Path(args.data_root), Path(args.synthetic_root))
    if data is None:
        print(f"opcount: skipped: {Path(args.data_root) / args.dataset} not found (the real {args.dataset} data "
              "is needed; --data-root points elsewhere, or --dataset demo runs on synthetic data)", file=sys.stderr)
        return 0
    shape = {"users": int(data["user"].num_nodes), "items": int(data["item"].num_nodes),
             "train_interactions": int(data[EDGE].edge_index.size(1)),
             "features": {m: int(data["item"][f"x_{m}"].size(1)) for m in modality_names(data)}}
    rows = []
    for name in models:
        print(f"{args.dataset} / {name} ...", file=sys.stderr, flush=True)
        try:
            row = count_model(name, data, args.batch_size, args.seed)
        except Exception as exc:  # one model failing (e.g. no features) is a row, not the end
            row = {"model": name, "status": "error", "error": f"{type(exc).__name__}: {exc}"}
            print(f"  failed: {row['error']}", file=sys.stderr, flush=True)
        else:
            print(f"  {row['top_level']} top-level aten ops, {row['aten_events']} aten events, "
                  f"{row['parameter_tensors']} parameter tensors", file=sys.stderr, flush=True)
        rows.append(row)
    result = {"command": " ".join(["python -m benchmarks.opcount", *(shlex.quote(a) for a in argv)]),
              "dataset": args.dataset, "batch_size": args.batch_size, "seed": args.seed, "shape": shape,
              "rows": rows, "source": source_state(), "wall_seconds": time.perf_counter() - start,
              "environment": environment()}
    text = markdown(result)
    write_result_files(Path(args.out), f"opcount_{args.dataset}", result, text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
