"""Build time, training speed and memory of FREEDOM, LightGCN and DHMRec on a million-item catalogue.

    python -m benchmarks.scale [--profile million] [--models freedom,lightgcn,dhmrec] \
        [--warmup 2] [--batches 5] [--threads 2] [--synthetic-root DIR] [--out benchmarks/results] \
        [--name scale_million] [--set-profile n_items=100000 ...] [--set recompute=false] [--no-share-knn]

Data: the ``synthetic-million`` profile of :mod:`dhmrec_pyg.data.synthetic` (1,000,000 users,
1,000,000 items, 10,000,000 interactions, 512-d image and 384-d text features), materialised
once under ``--synthetic-root`` (generation is not timed). ``--set-profile KEY=VALUE`` overrides
a profile field (a smaller run to check the benchmark; the overrides are in the result files).

For every model, in a fresh subprocess of its own (the worker of :mod:`benchmarks.speed`):

* **build s**: :func:`~dhmrec_pyg.training.trainer.build_model` from the training graph, KNN
  item-item graphs included; **KNN s** is the part spent in
  :func:`~dhmrec_pyg.nn.knn.knn_graph` (one graph per modality; above
  ``EXACT_MAX_ITEMS`` items it is the inverted-file index). With the KNN graphs shared (the
  default) the first multimodal model builds them into a fresh cache folder and the next ones
  (same features, same ``knn_k``) read them back: their build s then leaves out the KNN search,
  and the table adds the first model's KNN s to it, marked as such;
* **s per 1,000 steps**: the library's ``Trainer.train_epoch`` (the BPR sampler's draw of the
  epoch's triplets, then forward, loss, backward and Adam step per mini-batch of 2048) runs
  ``--warmup`` batches, then ``--batches`` timed batches of a new epoch; the first timed batch
  includes the epoch's draw. Seconds per step = mean of the timed batches after the first;
  **s/epoch** is extrapolated, not measured: the model's per-epoch hook (FREEDOM's graph pruning)
  + first batch + that mean x (batches per epoch - 1);
* **peak MiB**: peak resident memory of the subprocess (``ru_maxrss``: interpreter, torch, the
  data with its features, the model, Adam state).

DHMRec runs with ``kl_align=auto`` and ``recompute=auto``, its defaults, set explicitly so that
the row says so: above ``KL_AUTO_ITEMS`` items ``auto`` samples the KL (the exact KL,
``kl_align=True``, scores every one of a million items for each of the batch's users, on both
sides, each step), and above ``RECOMPUTE_AUTO_ITEMS`` items a training step recomputes the
insides of the disentangler and the fusion in its backward pass instead of keeping them.
FREEDOM runs with ``trainable_features=false``: its default fine-tunes the raw item features as
parameters (the public code's ``freeze=False``), which at a million items x 896 features adds a
gradient and two Adam moments of 3.6 GB each to the 3.6 GB copy, more than this 24 GB machine
holds next to the data. ``--max-memory-gib G`` caps each worker's data segment (``RLIMIT_DATA``),
so that a model that does not fit fails with a memory error rather than waking the kernel's
out-of-memory killer.
No full-ranking evaluation is run (a million users x a million items); the trainer's
evaluators are built but not used.

Writes ``<out>/<name>.json`` and ``<out>/<name>.md`` with the machine and the versions.
"""
from __future__ import annotations

import argparse
import json
import shlex
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
DEFAULT_MODELS = "freedom,lightgcn,dhmrec"

#: Options each model runs with, beyond its defaults (see the module docstring for why).
MODEL_SETS = {"dhmrec": ["kl_align=auto", "recompute=auto"], "freedom": ["trainable_features=false"]}


def _profile_overrides(pairs: List[str]) -> Dict[str, Any]:
    """``{field: value}`` from ``KEY=VALUE`` texts (values read as JSON when they parse, else text)."""
    out: Dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--set-profile expects KEY=VALUE, got {pair!r}")
        try:
            out[key.strip()] = json.loads(value)
        except ValueError:
            out[key.strip()] = value
    return out


def _model_sets(model: str, extra: List[str]) -> List[str]:
    """The options ``model`` runs with: :data:`MODEL_SETS`, then ``--set``; a later value of an option
    replaces an earlier one in its place."""
    merged: Dict[str, str] = {}
    for pair in MODEL_SETS.get(model, []) + list(extra):
        merged[pair.split("=", 1)[0].strip()] = pair
    return list(merged.values())


def _row(model: str, run: Dict[str, Any], shared_knn: Optional[float], sets: List[str]) -> Dict[str, Any]:
    """The summary row of one model's worker result; ``sets``: the options it was given (:func:`_model_sets`)."""
    if run.get("status") != "ok":
        tail = [line.replace(str(REPO) + "/", "") for line in run.get("stderr_tail") or []]
        return {"model": model, "status": run.get("status", "error"), "error": run.get("error"), "stderr_tail": tail}
    batches = run["batch_seconds"]
    per_step = sum(batches[1:]) / len(batches[1:]) if len(batches) > 1 else batches[0]
    knn = sum(run["knn_seconds"])
    own_knn = bool(run["knn_seconds"]) and shared_knn is None
    row = {
        "model": model, "status": "ok",
        "sets": [pair for pair in sets if pair not in run.get("ignored_sets", [])],
        "parameters": run["parameters"], "load_seconds": run["load_seconds"],
        "build_seconds": run["build_seconds"], "knn_seconds": knn, "knn_graphs": len(run["knn_seconds"]),
        "knn_from_cache": bool(run["knn_seconds"]) and not own_knn,
        "build_seconds_with_knn": run["build_seconds"] + (shared_knn or 0.0 if run["knn_seconds"] and not own_knn else 0.0),
        "epoch_hook_seconds": run["hook_seconds"],
        "timed_batches": len(batches), "batch_seconds": batches, "first_batch_seconds": batches[0],
        "seconds_per_step": per_step, "seconds_per_1000_steps": 1000.0 * per_step,
        "batches_per_epoch": run["batches_per_epoch"], "batch_size": run["batch_size"],
        "seconds_per_epoch_extrapolated": (run["hook_seconds"] + batches[0]
                                           + per_step * (run["batches_per_epoch"] - 1)),
        "peak_rss_mib": run["peak_rss_mib"], "base_rss_mib": run["base_rss_mib"],
        "loss": run["loss"], "wall_seconds": run.get("wall_seconds"), "model_config": run["model_config"],
    }
    return row


def _fmt(x: Optional[float]) -> str:
    if x is None:
        return "-"
    return f"{x:,.0f}" if x >= 100 else f"{x:.1f}" if x >= 10 else f"{x:.2f}"


def markdown(result: Dict[str, Any]) -> str:
    """The Markdown report of a ``scale_*.json`` result."""
    s, env, shape = result["settings"], result["environment"], result.get("shape") or {}
    feats = ", ".join(f"{m} {w}-d" for m, w in shape.get("features", {}).items())
    lines = [
        f"# Scale: {shape.get('items', 0):,} items", "", f"Command: `{result['command']}`", "",
        f"Data: synthetic profile `{s['profile']}` (seed 0{', overrides ' + json.dumps(s['profile_overrides']) if s['profile_overrides'] else ''}): "
        f"{shape.get('users', 0):,} users, {shape.get('items', 0):,} items, {shape.get('train_interactions', 0):,} "
        f"training interactions (of {s['interactions']:,}); features: {feats}. {s['threads']} torch/faiss thread(s), "
        f"batch {s['batch_size']}, one fresh process per model.", "",
        "| model | options | KNN s | build s (KNN incl.) | s/step | s per 1,000 steps (extrapolated) "
        "| steps/epoch | s/epoch (extrapolated) | peak MiB | parameters |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in result["rows"]:
        if r["status"] != "ok":
            cause = (r.get("stderr_tail") or [""])[-1].replace("|", "/")[:240]
            lines.append(f"| {r['model']} | {r['status']}: {r.get('error')}{': ' + cause if cause else ''} |" + " |" * 8)
            continue
        if not r["knn_graphs"]:
            knn = "none (no item graph)"
        elif r["knn_from_cache"]:
            knn = f"{_fmt(r['knn_seconds'])} (read from the shared cache)"
        else:
            knn = f"{_fmt(r['knn_seconds'])} ({r['knn_graphs']} graphs)"
        build = _fmt(r["build_seconds_with_knn"]) + (" (own build + the KNN s of the model that built them)"
                                                     if r["knn_from_cache"] else "")
        lines.append(f"| {r['model']} | {', '.join(r['sets']) or 'defaults'} | {knn} | {build} | "
                     f"{r['seconds_per_step']:.2f} | {_fmt(r['seconds_per_1000_steps'])} | "
                     f"{r['batches_per_epoch']:,} | {_fmt(r['seconds_per_epoch_extrapolated'])} | "
                     f"{r['peak_rss_mib']:,.0f} | {r['parameters']:,} |")
    lines += [
        "",
        f"s/step: mean of {s['batches']} timed training steps after the first (which also draws the epoch's "
        f"triplets), after {s['warmup']} warm-up step(s), through the library's `Trainer.train_epoch`; s per 1,000 "
        "steps = 1,000 x s/step and s/epoch = per-epoch hook + first step + s/step x (steps per epoch - 1) are "
        "extrapolated from "
        "those steps, not measured. Build: `build_model` (KNN item-item graphs included, no evaluation). "
        "Peak MiB: `ru_maxrss` of the model's process (interpreter, torch, data and features included). "
        "No full-ranking evaluation was run (users x items scores at this size are out of scope).",
        "",
        f"Machine: {env['cpu']}, {env['cores']} cores, GPU {env['gpu']}; python {env['python']}, torch "
        f"{env['torch']}, PyG {env['torch_geometric']}, faiss {env['faiss']}, numpy {env['numpy']}. "
        f"Data generation {result['generation_seconds']:.0f} s (not timed above; 0 when already on disk); "
        f"total wall time {result['wall_seconds']:.0f} s.",
    ]
    return "\n".join(lines) + "\n"


def main(argv: Optional[List[str]] = None) -> int:
    """Run the benchmark (one subprocess per model) and write its result files."""
    argv = list(sys.argv[1:] if argv is None else argv)
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--profile", default="million", help="synthetic profile (dhmrec_pyg.data.synthetic.PROFILES)")
    p.add_argument("--set-profile", dest="profile_sets", action="append", default=[], metavar="KEY=VALUE",
                   help="override a field of the profile (repeatable), e.g. n_items=100000")
    p.add_argument("--models", default=DEFAULT_MODELS, help="comma-separated")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                   help="an option for every model that has it, after the defaults above "
                        "(e.g. recompute=false); repeatable")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    p.add_argument("--batches", type=int, default=5, help="timed steps (at least 2)")
    p.add_argument("--threads", type=int, default=2, help="torch (and so faiss) threads per worker")
    p.add_argument("--no-share-knn", action="store_true",
                   help="every multimodal model builds its own KNN graphs (default: built once, then cached)")
    p.add_argument("--synthetic-root", default=str(REPO / "data"), help="where the profile is materialised")
    p.add_argument("--timeout", type=float, default=3600.0, help="seconds per model worker")
    p.add_argument("--max-memory-gib", type=float, default=0.0,
                   help="cap on each worker's data segment (RLIMIT_DATA), GiB; 0: none")
    p.add_argument("--out", default=str(HERE / "results"))
    p.add_argument("--name", default="scale_million", help="stem of the result files")
    args = p.parse_args(argv)
    if args.batches < 2 or args.warmup < 1 or args.threads < 1:
        p.error("--batches must be at least 2, --warmup and --threads at least 1")
    try:
        overrides = _profile_overrides(args.profile_sets)
    except ValueError as exc:
        p.error(str(exc))
    from benchmarks.reproduce import write_result_files
    from benchmarks.speed import _run_pair
    from dhmrec_pyg.data.synthetic import get_profile, materialise_synthetic
    from dhmrec_pyg.models import MODELS
    from dhmrec_pyg.training.trainer import environment

    models = [m.strip().lower() for m in args.models.split(",") if m.strip()]
    unknown = [m for m in models if m not in MODELS]
    if unknown:
        p.error(f"unknown model(s) {', '.join(unknown)}; choose from {', '.join(MODELS)}")
    key, profile = get_profile(args.profile, **overrides)
    if args.max_memory_gib > 0:  # inherited by the workers (this process stays small)
        import resource

        cap = int(args.max_memory_gib * 2**30)
        resource.setrlimit(resource.RLIMIT_DATA, (cap, resource.getrlimit(resource.RLIMIT_DATA)[1]))
    import torch

    torch.set_num_threads(args.threads)  # what environment() reports; each worker sets its own
    start = time.perf_counter()
    folder = materialise_synthetic(key, Path(args.synthetic_root), seed=0, **overrides)
    generation_s = time.perf_counter() - start
    rows: List[Dict[str, Any]] = []
    shape = None
    shared_knn: Optional[float] = None
    with tempfile.TemporaryDirectory(prefix="scale_knn_") as cache:
        for model in models:
            sets = ["knn_cache_dir=" + (cache if not args.no_share_knn else "none")]
            model_sets = _model_sets(model, args.sets)
            spec = {"dataset": folder.name, "model": model, "variant_sets": model_sets,
                    "folder": str(folder), "device": "cpu", "batches": args.batches, "warmup": args.warmup,
                    "threads": args.threads, "seed": 0, "sets": sets, "random_features": False,
                    "feature_dims": {}, "evaluate": False}
            print(f"{model} ...", file=sys.stderr, flush=True)
            run = _run_pair(spec, args.timeout)
            row = _row(model, run, shared_knn, model_sets)
            if row["status"] == "ok":
                shape = shape or run["shape"]
                if row["knn_graphs"] and shared_knn is None and not args.no_share_knn:
                    shared_knn = row["knn_seconds"]
                print(f"  build {row['build_seconds_with_knn']:.1f} s (KNN {row['knn_seconds']:.1f} s), "
                      f"{row['seconds_per_step']:.2f} s/step, peak {row['peak_rss_mib']:.0f} MiB",
                      file=sys.stderr, flush=True)
            else:
                print(f"  failed: {row.get('error')} {row.get('stderr_tail')}", file=sys.stderr, flush=True)
            rows.append(row)
    result = {
        "command": "python -m benchmarks.scale " + " ".join(shlex.quote(a) for a in argv),
        "settings": {"profile": key, "profile_overrides": overrides, "interactions": profile.n_interactions,
                     "warmup": args.warmup, "batches": args.batches, "threads": args.threads,
                     "share_knn": not args.no_share_knn, "evaluation": "none",
                     "max_memory_gib": args.max_memory_gib or None,
                     "batch_size": next((r["batch_size"] for r in rows if r["status"] == "ok"), None),
                     "s_per_step": "mean of the timed steps after the first (extrapolated to 1,000 steps)",
                     "s_per_epoch": "first timed step + s/step x (steps per epoch - 1), extrapolated"},
        "shape": shape,
        "rows": rows,
        "generation_seconds": generation_s,
        "wall_seconds": time.perf_counter() - start,
        "environment": environment(),
    }
    text = markdown(result)
    write_result_files(Path(args.out), args.name, result, text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
