"""Where one DHMRec training step goes, part by part, against FREEDOM's whole step.

    python -m benchmarks.breakdown [--dataset baby|sports|tiktok] [--steps 6] [--device cpu] \
        [--threads 1] [--set kl_align=1024] [--tag NAME] [--data-root ../shared/data] [--out benchmarks/results]

``benchmarks.speed`` says how long an epoch takes; this says why. Both models are built with
their defaults on the dataset (real interactions, seeded random features of the paper's shapes
where the data has none, as in ``benchmarks.speed``; TikTok has its own, 128-d image and audio
features) and trained for ``--warmup`` steps, then
``--steps`` training steps of each are timed one by one, the two models alternating step by step
(so that a change in the machine's load falls on both): the next 2048 triplets of the library's
sampler, ``model.loss`` (forward), ``zero_grad`` + ``backward``, and Adam as the trainer builds it.
Within DHMRec's forward pass the parts of the model are timed where they are called:

* features and disentangling, equations (1)-(6) (``disentangler.stacked``);
* the ID view, (7)-(8) (``ui_propagation``), and the modality views, (7)-(8) (``from_items``);
* the item-item graphs, (13), and the users' aggregation, (14);
* the attentive fusion, (15)-(19);
* the KL alignment, (20)-(21), exact or sampled (``--set kl_align=S``). Its gradients are computed
  during its forward pass (a custom autograd function), so this part is its whole cost, forward
  and backward (for the sampled KL, less the backward of the gather of the candidate items).

The rest of the forward pass (the gathers, (22), (24), (25)) is "other". Times are medians over
the timed steps. For the KL the result also gives its arithmetic: its matrix products do
``2 sides x 3 products x 2 B' |I| d`` floating-point operations (B' the batch's distinct users;
for the sampled KL, its candidate items in place of ``|I|``),
and the same machine's rate on a plain product of those shapes (``torch.mm``, measured in the same
run), so the file shows how far the KL is from the fastest it could run with the same math.
``--set key=value`` (repeatable) sets a DHMRec option (FREEDOM keeps its defaults).
Writes ``breakdown_<dataset>[_<tag>].{json,md}`` to ``--out`` with the command, machine and versions.
"""
from __future__ import annotations

import argparse
import functools
import shlex
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
DEFAULT_DATA = REPO.parent / "shared" / "data"
DEFAULT_SYNTHETIC = REPO / "data"

#: The timed parts of DHMRec's forward pass: (label, attribute path, method).
PARTS = (
    ("features and disentangling (1)-(6)", "disentangler", "stacked"),
    ("ID view (7)-(8)", "ui_propagation", "forward"),
    ("modality views (7)-(8)", "ui_propagation", "from_items"),
    ("item-item graphs (13)", "ii_propagation", "forward"),
    ("users' aggregation (14)", "user_aggregation", "rows"),
    ("attentive fusion (15)-(19)", "fusion", "forward"),
)
KL_PART = "KL (20)-(21), with its gradients"


class _Clock:
    """Seconds spent in wrapped callables during the current step, by label."""

    def __init__(self, sync: Callable[[], None]) -> None:
        self.sync = sync
        self.step: Dict[str, float] = {}
        self.kl_shapes: List[tuple] = []

    def wrap(self, label: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        """``fn``, timed under ``label`` (nested calls of other labels are not subtracted)."""

        @functools.wraps(fn)
        def timed(*args: Any, **kwargs: Any) -> Any:
            self.sync()
            t0 = time.perf_counter()
            out = fn(*args, **kwargs)
            self.sync()
            self.step[label] = self.step.get(label, 0.0) + time.perf_counter() - t0
            return out

        return timed


def gemm_rate(rows: int, cols: int, dim: int, device: Any, sync: Callable[[], None], repeats: int = 3) -> float:
    """FLOP/s of ``torch.mm`` on the KL's shapes: ``[rows, dim] @ [dim, cols]`` and
    ``[rows, cols] @ [cols, dim]`` (the score and the gradient products), best of ``repeats``."""
    import torch

    a = torch.randn(rows, dim, device=device)
    b = torch.randn(dim, cols, device=device)
    s = torch.empty(rows, cols, device=device)
    g = torch.empty(rows, dim, device=device)
    bt = b.t().contiguous()
    best = float("inf")
    for _ in range(repeats + 1):
        sync()
        t0 = time.perf_counter()
        torch.mm(a, b, out=s)
        torch.mm(s, bt, out=g)
        sync()
        best = min(best, time.perf_counter() - t0)
    return 2 * (2.0 * rows * cols * dim) / best


class _Stepper:
    """One model built with its defaults, its optimizer and its batches: :meth:`step` runs and times
    one training step (DHMRec's parts through the clock's wrappers)."""

    def __init__(self, name: str, data: Any, device: Any, seed: int, clock: _Clock, options: Sequence[str] = ()) -> None:
        import torch

        from benchmarks.opcount import build_default
        from dhmrec_pyg.training.trainer import build_optimizer, resolve_optimizer_impl

        model, sampler, train = build_default(name, data, seed=seed, options=options)
        self.name, self.device, self.clock = name, device, clock
        self.model = model.to(device)
        if name == "dhmrec":
            for label, attr, method in PARTS:
                module = getattr(self.model, attr)
                setattr(module, method, clock.wrap(label, getattr(module, method)))
        params = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer_impl = resolve_optimizer_impl(train.optimizer_impl, params)
        self.optimizer = build_optimizer(params, train.lr, self.optimizer_impl)
        generator = torch.Generator().manual_seed(seed)
        self.model.train()

        def triplets() -> Any:  # epoch after epoch, as the trainer draws them (small data sets run out)
            epoch = 0
            while True:
                self.model.on_epoch_start(epoch, generator)
                yield from sampler.epoch(generator)
                epoch += 1

        self.batches = triplets()
        self.records: List[Dict[str, float]] = []
        self.kl_shapes: List[tuple] = []  # the KL's (users, items, d, with gradients) of the last step

    def step(self, record: bool) -> None:
        """One training step; its times are kept when ``record``."""
        clock, sync = self.clock, self.clock.sync
        u, p, n = (t.to(self.device) for t in next(self.batches))
        clock.step, clock.kl_shapes = {}, []
        sync()
        t0 = time.perf_counter()
        loss = self.model.loss(u, p, n)["loss"]
        sync()
        t1 = time.perf_counter()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        sync()
        t2 = time.perf_counter()
        self.optimizer.step()
        sync()
        t3 = time.perf_counter()
        self.kl_shapes = list(clock.kl_shapes)
        if record:
            self.records.append({"forward": t1 - t0, "backward": t2 - t1, "optimizer": t3 - t2,
                                 "step": t3 - t0, **clock.step})

    def summary(self) -> Dict[str, Any]:
        """Per-part medians over the recorded steps (DHMRec: with its KL's arithmetic)."""
        median = {label: statistics.median(r.get(label, 0.0) for r in self.records) for label in self.records[0]}
        out: Dict[str, Any] = {"model": self.name, "optimizer_impl": self.optimizer_impl, "seconds": median,
                               "step_seconds": [r["step"] for r in self.records]}
        if self.name == "dhmrec":
            parts = sum(median.get(label, 0.0) for label, _, _ in PARTS) + median.get(KL_PART, 0.0)
            median["forward, other"] = max(median["forward"] - parts, 0.0)
            if self.kl_shapes:
                rows, cols, dim, grads = self.kl_shapes[-1]
                flop = 2 * (3 if grads else 1) * 2.0 * rows * cols * dim
                rate = gemm_rate(rows, cols, dim, self.device, self.clock.sync)
                out["kl"] = {"users": rows, "items": cols, "dim": dim, "gflop": flop / 1e9,
                             "gemm_gflops": rate / 1e9, "gemm_floor_seconds": flop / rate,
                             "achieved_gflops": flop / median[KL_PART] / 1e9}
        return out


def time_models(data: Any, steps: int, warmup: int, device: Any, seed: int,
                options: Sequence[str] = ()) -> Dict[str, Dict[str, Any]]:
    """DHMRec (with the ``key=value`` ``options``) and FREEDOM, each trained ``warmup`` steps, then
    ``steps`` steps of each, alternating (so that a change in the machine's load falls on both);
    their summaries, and the median over the step pairs of DHMRec's step over FREEDOM's
    (``paired_ratio``)."""
    import torch

    from dhmrec_pyg.models import dhmrec as dhmrec_module

    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)
    clock = _Clock(sync)
    original_kl, original_sampled = dhmrec_module.interaction_kl, dhmrec_module.sampled_interaction_kl

    def kl(user_mm: Any, item_mm: Any, *args: Any) -> Any:
        clock.kl_shapes.append((int(user_mm.size(0)), int(item_mm.size(0)), int(item_mm.size(1)),
                                torch.is_grad_enabled() and user_mm.requires_grad))
        return original_kl(user_mm, item_mm, *args)

    def sampled(user_mm: Any, item_mm: Any, user_id: Any, item_id: Any, positives: Any, samples: int) -> Any:
        num_positives = int(positives.numel())
        candidates = num_positives + min(samples, int(item_mm.size(0)) - num_positives)
        clock.kl_shapes.append((int(user_mm.size(0)), candidates, int(item_mm.size(1)),
                                torch.is_grad_enabled() and user_mm.requires_grad))
        return original_sampled(user_mm, item_mm, user_id, item_id, positives, samples)

    dhmrec_module.interaction_kl = clock.wrap(KL_PART, kl)  # type: ignore[assignment]
    dhmrec_module.sampled_interaction_kl = clock.wrap(KL_PART, sampled)  # type: ignore[assignment]
    try:
        steppers = [_Stepper(name, data, device, seed, clock, options if name == "dhmrec" else ())
                    for name in ("dhmrec", "freedom")]
        for k in range(warmup + steps):
            for stepper in steppers:
                stepper.step(record=k >= warmup)
        out = {s.name: s.summary() for s in steppers}
    finally:
        dhmrec_module.interaction_kl = original_kl  # type: ignore[assignment]
        dhmrec_module.sampled_interaction_kl = original_sampled  # type: ignore[assignment]
    pairs = zip(out["dhmrec"]["step_seconds"], out["freedom"]["step_seconds"])
    out["dhmrec"]["paired_ratio"] = statistics.median(a / b for a, b in pairs)
    return out


def markdown(result: Dict[str, Any]) -> str:
    """The ``breakdown_<dataset>.md`` text."""
    from benchmarks.reproduce import machine_line

    dh, fr = result["dhmrec"], result["freedom"]
    ds, fs = dh["seconds"], fr["seconds"]
    step = ds["step"]
    options = ", ".join(result.get("options", [])) or "its defaults"
    lines = [f"# Where a DHMRec training step goes ({result['dataset']})", "",
             f"Command: `{result['command']}`", "", f"DHMRec with {options}; FREEDOM with its defaults.", "",
             f"Device **{result['device']}**, {result['threads']} torch thread(s); batch {result['batch_size']}; "
             f"medians over {result['steps']} timed steps of each model after {result['warmup']} untimed "
             "ones, the two models' steps alternating (step by step: the median over the pairs of steps of "
             "DHMRec's time over FREEDOM's). "
             "Parts are timed where DHMRec calls them; the KL's gradients are computed in its forward "
             "pass, so its row is its whole cost.", "",
             "| part | ms per step | share of DHMRec's step |", "|---|---|---|"]
    rows = [label for label, _, _ in PARTS] + [KL_PART, "forward, other", "backward", "optimizer"]
    for label in rows:
        value = ds.get(label, 0.0)
        lines.append(f"| {label} | {value * 1e3:.1f} | {value / step:.0%} |")
    lines += [f"| **DHMRec step** | **{step * 1e3:.1f}** | 100% |",
              f"| FREEDOM step (forward {fs['forward'] * 1e3:.1f}, backward {fs['backward'] * 1e3:.1f}, "
              f"optimizer {fs['optimizer'] * 1e3:.1f}) | {fs['step'] * 1e3:.1f} | "
              f"DHMRec = {step / fs['step']:.2f}x FREEDOM (step by step: {dh['paired_ratio']:.2f}x) |", ""]
    kl = dh.get("kl")
    if kl:
        without = step - ds.get(KL_PART, 0.0)
        lines += [
            f"- KL: {kl['users']:,} distinct users x {kl['items']:,} items (all, or the sampled KL's "
            f"candidates) x d = {kl['dim']}: its six "
            f"matrix products (scores, user and item gradients, both sides) are {kl['gflop']:.2f} GFLOP per "
            f"step. This machine's `torch.mm` on those shapes runs at {kl['gemm_gflops']:.1f} GFLOP/s, so "
            f"the products alone need at least {kl['gemm_floor_seconds'] * 1e3:.1f} ms; the KL takes "
            f"{ds.get(KL_PART, 0.0) * 1e3:.1f} ms ({kl['achieved_gflops']:.1f} GFLOP/s over the whole "
            "part, softmaxes and other passes included).",
            f"- DHMRec's step without the KL: {without * 1e3:.0f} ms, {without / fs['step']:.2f}x FREEDOM's "
            f"step. With the KL's products at this machine's rate and nothing else: "
            f"{(without + kl['gemm_floor_seconds']) / fs['step']:.2f}x.",
        ]
    lines += ["", f"Machine: {machine_line(result['environment'])}; {result['threads']} torch thread(s).", ""]
    return "\n".join(lines)


def main(argv: Optional[List[str]] = None) -> int:
    """Time the parts of DHMRec's step and FREEDOM's step; write the result files."""
    argv = list(sys.argv[1:] if argv is None else argv)
    p = argparse.ArgumentParser(prog="python -m benchmarks.breakdown", description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", default="baby",
                   help="baby, sports, tiktok (real), clothing or synthetic-<profile>")
    p.add_argument("--steps", type=int, default=6, help="timed training steps per model")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=1, help="torch threads (0: torch's default)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data-root", default=str(DEFAULT_DATA))
    p.add_argument("--synthetic-root", default=str(DEFAULT_SYNTHETIC))
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                   help="a DHMRec option (e.g. kl_align=1024); repeatable")
    p.add_argument("--tag", default="", help="suffix of the result files' name (breakdown_<dataset>_<tag>)")
    p.add_argument("--out", default=str(HERE / "results"),
                   help="folder for breakdown_<dataset>[_<tag>].{json,md}")
    args = p.parse_args(argv)
    if args.steps < 1 or args.warmup < 1:
        p.error(f"--steps and --warmup must be >= 1, got {args.steps} and {args.warmup}")
    from dhmrec_pyg.errors import ConfigError
    from dhmrec_pyg.models import DHMRecConfig
    from dhmrec_pyg.training.config import TrainConfig, apply_overrides

    try:
        apply_overrides(TrainConfig(model="dhmrec"), {}, DHMRecConfig, args.sets)
    except ConfigError as exc:
        p.error(str(exc))

    import torch

    from benchmarks.reproduce import write_result_files
    from benchmarks.speed import PAPER_FEATURES, attach_random_features, prepare_dataset
    from dhmrec_pyg.data import load_mmrec
    from dhmrec_pyg.training.trainer import environment, resolve_device

    if args.threads > 0:
        torch.set_num_threads(args.threads)
    folder, note = prepare_dataset(args.dataset, Path(args.data_root), Path(args.synthetic_root))
    if folder is None:
        print(f"skipped: {note}")
        return 0
    data = load_mmrec(folder)
    attach_random_features(data, PAPER_FEATURES, args.seed)
    device = resolve_device(args.device)
    result: Dict[str, Any] = {
        "command": "python -m benchmarks.breakdown " + " ".join(shlex.quote(a) for a in argv),
        "dataset": args.dataset, "device": str(device), "threads": torch.get_num_threads(),
        "steps": args.steps, "warmup": args.warmup, "data": note, "batch_size": TrainConfig().batch_size,
        "options": list(args.sets),
    }
    result.update(time_models(data, args.steps, args.warmup, device, args.seed, args.sets))
    result["environment"] = environment()
    text = markdown(result)
    stem = f"breakdown_{args.dataset}" + (f"_{args.tag}" if args.tag else "")
    write_result_files(Path(args.out), stem, result, text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
