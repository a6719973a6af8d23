"""Speed and memory of every model at the paper's Baby, Sports and Clothing scales.

    python -m benchmarks.speed --datasets baby,sports,clothing,tiktok \
        --models dhmrec,freedom,lgmrec,lightgcn,bpr [--device cpu|cuda] [--batches 0] [--out DIR] \
        [--variant dhmrec_s256=dhmrec:kl_align=256 --models dhmrec,dhmrec_s256,freedom] [--name speed]

For every (dataset, model) pair, in a fresh subprocess of its own (so that peak
memory does not mix between pairs and a crash of one is reported, not fatal):

* **build s**: building the model from the training graph, with its KNN item-item
  graphs for the multimodal models (one-off, before training; no KNN cache);
* **s/epoch**: one full training epoch run by the library's own
  :meth:`~dhmrec_pyg.training.trainer.Trainer.train_epoch` (the BPR sampler's draw
  of the epoch, then forward, loss, backward and Adam step per mini-batch of 2048
  triplets), after a warm-up epoch of ``--warmup`` batches: its training seconds,
  the ``train_seconds`` a user sees in ``history.csv`` (the model's per-epoch hook
  ``on_epoch_start`` is timed apart, as ``hook_seconds``: milliseconds). With
  ``--batches N`` only the first ``N`` batches are trained and s/epoch is
  extrapolated: first batch (which includes the draw) + mean of the others x
  (batches per epoch - 1);
* **estimate from the first 10 batches**: the same extrapolation from the timed
  epoch's first ``EXTRAPOLATION_CHECK`` batches (what ``--batches 10``, the former
  default, reported), next to the full epoch it tries to predict, with its own ratio
  to FREEDOM;
  What that estimate leaves out (Baby, DHMRec and FREEDOM at their defaults, a
  2-core CPU shared with other jobs, 1 thread, per-batch times from
  ``train_epoch``'s callback): no cost that we could find. The per-epoch hook and
  the epoch's draw take milliseconds, no parameter, gradient or Adam state holds
  denormal floats, and epochs with an evaluation before them (as in ``fit``) take
  no longer beyond the noise. But per-batch times swing by +-20% over stretches of several
  batches with the load of other jobs, and 10 batches (about 9 s) sample one such
  stretch where a full epoch (about 50 s) averages over several. Over 9 DHMRec
  epochs the estimate was 6% short of the epoch in the median (from 17% short to 6%
  over), over 7 FREEDOM epochs 2% over (from 4% short to 15% over), so the estimated
  DHMRec/FREEDOM ratio ran low: in one run of 2 rounds it gave 1.04 (0.89-1.19) where
  the same epochs timed in full gave 1.30 (1.03-1.56). FREEDOM also maps about
  145,000 fresh pages (570 MiB) per batch against DHMRec's 1,000-3,000, so its time
  depends more on the kernel's page zeroing and on memory bandwidth, which other
  jobs share. Hence full epochs by default, and ``--repeats`` rounds to pair the
  models in time;
* **s/eval**: one full-ranking evaluation over the validation users with the
  library's :class:`~dhmrec_pyg.training.evaluate.FullRankingEvaluator`
  (final embeddings + scoring all items + top-50 metrics), as the trainer runs it
  after each epoch;
* **peak MiB**: peak resident memory of the subprocess (``ru_maxrss``; it includes
  the Python interpreter, torch, the data and the features); with ``--device cuda``
  also ``torch.cuda.max_memory_allocated``.

Data: ``baby`` and ``sports`` are the real interactions under ``--data-root``
(``../shared/data``; skipped with a message when absent) with seeded random float32
item features of the paper's shapes (``x_image`` 4096-d, ``x_text`` 384-d);
``clothing`` is the ``synthetic-clothing`` profile (the paper's users, items,
interactions and feature widths), materialised once under ``--synthetic-root``.
Any ``synthetic-<profile>`` name (e.g. ``synthetic-tiny``, for tests) is accepted, and any other
name is a real folder under ``--data-root`` (``tiktok``: its own 128-d image and audio features).

``--variant LABEL=MODEL:KEY=VALUE[:KEY=VALUE...]`` names a model with options of its own (e.g.
``dhmrec_s256=dhmrec:kl_align=256``, DHMRec's sampled KL); ``--models`` lists it by its label,
and it is timed like any model, in the same rounds.

Writes ``<name>.json`` and ``<name>.md`` (``--name``, default ``speed``) to ``--out`` (default
``benchmarks/results``), with the machine (CPU, cores, GPU) and the versions of torch, PyG and faiss.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
DEFAULT_DATA = REPO.parent / "shared" / "data"
DEFAULT_SYNTHETIC = REPO / "data"
DEFAULT_DATASETS = "baby,sports,clothing"
DEFAULT_MODELS = "dhmrec,freedom,lgmrec,lightgcn,bpr"

#: Where each paper dataset comes from: real interactions, or a synthetic profile.
SOURCES = {"baby": "real", "sports": "real", "clothing": "synthetic-clothing"}

#: Batches of the timed epoch that the estimate checked against the full epoch extrapolates from.
EXTRAPOLATION_CHECK = 10

#: Random item features attached to real datasets without features (the paper's shapes).
PAPER_FEATURES = {"image": 4096, "text": 384}


# ---------------------------------------------------------------------------- helpers
def dataset_source(name: str) -> Tuple[str, str]:
    """``("real", name)`` or ``("synthetic", profile)`` for a dataset name."""
    from dhmrec_pyg.data.synthetic import synthetic_profile_of

    src = SOURCES.get(name.lower(), "real")
    if src != "real":
        name = src
    profile = synthetic_profile_of(name)
    if profile is not None and name.lower() != "demo":
        return "synthetic", profile
    return "real", name


def prepare_dataset(name: str, data_root: Path, synthetic_root: Path) -> Tuple[Optional[Path], str]:
    """The folder a worker loads for ``name`` (materialising a synthetic profile once), and a note.

    Returns ``(None, reason)`` when the dataset is not available.
    """
    kind, what = dataset_source(name)
    if kind == "synthetic":
        from dhmrec_pyg.data.synthetic import materialise_synthetic

        synthetic_root.mkdir(parents=True, exist_ok=True)
        folder = materialise_synthetic(what, synthetic_root, seed=0)
        return folder, f"synthetic profile '{what}' (seed 0), its own features"
    folder = data_root / what
    if not folder.is_dir():
        return None, f"{folder} not found (the real {what} interactions are needed)"
    return folder, "real interactions"


def attach_random_features(data: Any, dims: Dict[str, int], seed: int) -> List[str]:
    """Attach seeded random float32 ``x_<m>`` item features when the data has none; their names."""
    import numpy as np
    import torch

    from dhmrec_pyg.schema import modality_names

    if modality_names(data):
        return []
    n = int(data["item"].num_nodes)
    rng = np.random.default_rng(seed)
    for m in sorted(dims):
        data["item"][f"x_{m}"] = torch.from_numpy(rng.standard_normal((n, int(dims[m])), dtype=np.float32))
    return sorted(dims)


def extrapolate(batch_seconds: List[float], batches_per_epoch: int) -> float:
    """An epoch's seconds predicted from its first batches' seconds: the first batch (which also
    draws the epoch's triplets) + the mean of the others x the remaining batches."""
    if not batch_seconds:
        raise ValueError("no batch was timed")
    rest = batch_seconds[1:] or batch_seconds[:1]
    return batch_seconds[0] + statistics.fmean(rest) * (batches_per_epoch - 1)


# ---------------------------------------------------------------------------- worker
def time_knn_graphs() -> List[float]:
    """Time every KNN graph the models build from now on in this process: the list of their seconds.

    Wraps :func:`~dhmrec_pyg.nn.knn.knn_graph` where :func:`~dhmrec_pyg.nn.item_graph.build_item_graphs`
    (the models' only caller) looks it up.
    """
    import dhmrec_pyg.nn.item_graph as item_graph

    seconds: List[float] = []
    real = item_graph.knn_graph

    def timed(*args: Any, **kwargs: Any) -> Any:
        t = time.perf_counter()
        try:
            return real(*args, **kwargs)
        finally:
            seconds.append(time.perf_counter() - t)

    item_graph.knn_graph = timed
    return seconds


def run_worker(spec: Dict[str, Any]) -> Dict[str, Any]:
    """Build one model on one dataset, train a warm-up and a timed epoch, evaluate it; the measurements."""
    import torch

    threads = int(spec["threads"])
    if threads > 0:
        torch.set_num_threads(threads)
    from dhmrec_pyg.data import load_mmrec
    from dhmrec_pyg.models import MODELS
    from dhmrec_pyg.models.base import EDGE, GraphConfig
    from dhmrec_pyg.schema import modality_names
    from dhmrec_pyg.training.config import TrainConfig, apply_overrides
    from dhmrec_pyg.training.trainer import Trainer, build_model, evaluate_model, resolve_device, seed_everything
    from benchmarks.reproduce import peak_rss_mib

    base_rss = peak_rss_mib()
    device = resolve_device(spec["device"])
    cuda = device.type == "cuda"
    model_name = spec["model"]
    cls = MODELS[model_name]
    train_cfg = TrainConfig(model=model_name, dataset=spec["dataset"], device=str(device), progress=False,
                            seed=int(spec["seed"]))
    model_fields = set(getattr(cls.config_class, "__dataclass_fields__", {}))
    train_fields = set(TrainConfig.__dataclass_fields__)
    train_fields |= {f.name for f in dataclasses.fields(GraphConfig)}  # graph options too (knn_cache_dir=...)
    sets, ignored = [], []
    for pair in spec.get("sets", []) + spec.get("variant_sets", []):  # options of the models that have them
        section, _, key = pair.split("=", 1)[0].strip().rpartition(".")
        known = key in model_fields or (section != "model" and key in train_fields)
        (sets if known else ignored).append(pair)
    if not any(s.split("=", 1)[0].strip().endswith("knn_cache_dir") for s in sets):
        sets.insert(0, "knn_cache_dir=none")  # time the KNN build, never read or write a cache
    train_cfg, model_cfg = apply_overrides(train_cfg, {}, cls.config_class, sets)

    t0 = time.perf_counter()
    data = load_mmrec(Path(spec["folder"]))
    random_features = attach_random_features(data, spec["feature_dims"], int(spec["seed"])) \
        if spec["random_features"] else []
    load_s = time.perf_counter() - t0
    store = data[EDGE]
    shape = {"users": int(data["user"].num_nodes), "items": int(data["item"].num_nodes),
             "train_interactions": int(store.edge_index.size(1)),
             "features": {m: int(data["item"][f"x_{m}"].size(1)) for m in modality_names(data)}}

    seed_everything(train_cfg.seed)
    knn_s = time_knn_graphs()
    t0 = time.perf_counter()
    model = build_model(model_name, data, model_cfg, train_cfg.graph)
    build_s = time.perf_counter() - t0
    params = sum(p.numel() for p in model.parameters())
    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
    trainer = Trainer(model, data, train_cfg, out_dir=None, model_config=model_cfg)
    generator = torch.Generator().manual_seed(train_cfg.seed)
    trainer.train_epoch(0, generator, max_batches=int(spec["warmup"]))  # warm-up: hook + `warmup` batches
    timed = int(spec["batches"])  # 0: the whole epoch
    marks: List[float] = []
    if cuda:
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    losses, train_s = trainer.train_epoch(1, generator, max_batches=timed or None,
                                          on_batch_end=lambda _, elapsed: marks.append(elapsed))
    wall_s = time.perf_counter() - t0
    batch_s = [b - a for a, b in zip([0.0] + marks[:-1], marks)]  # the first includes drawing the epoch
    n_batches = len(trainer.sampler)
    epoch_s = extrapolate(batch_s, n_batches) if len(batch_s) < n_batches else train_s
    extrapolated = extrapolate(batch_s[:EXTRAPOLATION_CHECK], n_batches)

    evaluator = trainer.evaluators["val"]
    eval_s: Optional[float] = None
    valid: Dict[str, float] = {}
    if spec.get("evaluate", True):
        if cuda:
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        valid = evaluate_model(trainer.model, evaluator)
        if cuda:
            torch.cuda.synchronize()
        eval_s = time.perf_counter() - t0

    out: Dict[str, Any] = {
        "status": "ok",
        "shape": shape,
        "random_features": random_features,
        "model_config": dataclasses.asdict(model_cfg),
        "graph_config": dataclasses.asdict(train_cfg.graph),
        "batch_size": int(train_cfg.batch_size),
        "ignored_sets": ignored,
        "parameters": int(params),
        "load_seconds": load_s,
        "build_seconds": build_s,
        "knn_seconds": list(knn_s),
        "full_epoch": len(batch_s) == n_batches,
        "train_seconds": train_s,
        "hook_seconds": max(wall_s - train_s, 0.0),
        "batch_seconds": batch_s,
        "timed_batches": len(batch_s),
        "seconds_per_batch": epoch_s / n_batches,
        "batches_per_epoch": n_batches,
        "seconds_per_epoch": epoch_s,
        "extrapolated_from_first": min(len(batch_s), EXTRAPOLATION_CHECK),
        "extrapolated_seconds_per_epoch": extrapolated,
        "eval_seconds": eval_s,
        "eval_users": int(evaluator.users.numel()),
        "loss": float(losses.get("loss", float("nan"))),
        "valid_recall@20": float(valid.get("recall@20", float("nan"))),
        "base_rss_mib": base_rss,
        "peak_rss_mib": peak_rss_mib(),
    }
    if cuda:
        out["peak_cuda_mib"] = torch.cuda.max_memory_allocated(device) / 2**20
    return out


# ---------------------------------------------------------------------------- driver
def parse_variants(texts: List[str], models: Any) -> Any:
    """``{label: (model, ["key=value", ...])}`` from ``--variant LABEL=MODEL:KEY=VALUE[:...]`` texts, or
    the message of the first bad one (a string)."""
    from dhmrec_pyg.errors import ConfigError
    from dhmrec_pyg.training.config import TrainConfig, apply_overrides

    out: Dict[str, Tuple[str, List[str]]] = {}
    for text in texts:
        label, _, rest = text.partition("=")
        model, *sets = rest.split(":")
        label, model = label.strip().lower(), model.strip().lower()
        if not label or model not in models or label in models:
            return (f"--variant expects LABEL=MODEL:KEY=VALUE with a new label and a model of "
                    f"{', '.join(models)}, got {text!r}")
        try:
            apply_overrides(TrainConfig(model=model), {}, models[model].config_class, sets)
        except ConfigError as exc:
            return f"--variant {text!r}: {exc}"
        out[label] = (model, sets)
    return out



#: Per-run measurements summarised over the rounds (median; peak memory: maximum).
_MEDIAN_FIELDS = ("seconds_per_batch", "seconds_per_epoch", "train_seconds", "extrapolated_seconds_per_epoch",
                  "eval_seconds", "build_seconds", "hook_seconds")


def combine_runs(runs: List[Dict[str, Any]], freedom: Optional[List[Dict[str, Any]]]) -> Dict[str, Any]:
    """One row from a model's rounds: medians over its successful runs, ratios to FREEDOM by round.

    ``ratio_to_freedom`` is the median over rounds of (this run's s/epoch / FREEDOM's s/epoch in the
    same round), so drift of a shared machine between rounds cancels; ``ratio_range`` is its min and max;
    ``extrapolated_ratio_to_freedom`` and ``extrapolated_ratio_range`` the same for the estimate from the
    first batches.
    A model with no successful run gives its first failure.
    """
    ok = [r for r in runs if r.get("status") == "ok"]
    if not ok:
        return dict(runs[0])
    row = dict(ok[0])
    row.pop("batch_seconds", None)
    for key in _MEDIAN_FIELDS:
        row[key] = statistics.median(r[key] for r in ok)
    row["peak_rss_mib"] = max(r["peak_rss_mib"] for r in ok)
    row["base_rss_mib"] = min(r["base_rss_mib"] for r in ok)
    if "peak_cuda_mib" in row:
        row["peak_cuda_mib"] = max(r.get("peak_cuda_mib", 0.0) for r in ok)
    row["rounds"] = [{k: r.get(k) for k in ("status", "error", *_MEDIAN_FIELDS, "peak_rss_mib", "wall_seconds",
                                            "batch_seconds")} for r in runs]
    for key, name in (("seconds_per_epoch", "ratio"), ("extrapolated_seconds_per_epoch", "extrapolated_ratio")):
        ratios = [r[key] / f[key] for r, f in zip(runs, freedom or [])
                  if r.get("status") == "ok" and f.get("status") == "ok"]
        if ratios:
            row[f"{name}_to_freedom"] = statistics.median(ratios)
            row[f"{name}_range"] = [min(ratios), max(ratios)]
    return row


def _run_pair(spec: Dict[str, Any], timeout: float) -> Dict[str, Any]:
    """Run one worker subprocess; its measurements, or an error row."""
    env = dict(os.environ)
    threads = int(spec["threads"])
    if threads > 0:
        for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
            env[var] = str(threads)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    with tempfile.TemporaryDirectory(prefix="speed_") as tmp:
        spec_path, result_path = Path(tmp) / "spec.json", Path(tmp) / "result.json"
        spec_path.write_text(json.dumps(spec))
        cmd = [sys.executable, "-m", "benchmarks.speed", "--worker", str(spec_path), str(result_path)]
        start = time.perf_counter()
        try:
            proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            return {"status": "error", "error": f"timed out after {timeout:.0f} s",
                    "wall_seconds": time.perf_counter() - start}
        wall = time.perf_counter() - start
        if proc.returncode == 0 and result_path.is_file():
            out = json.loads(result_path.read_text())
            out["wall_seconds"] = wall
            return out
        tail = (proc.stderr or proc.stdout or "").strip().splitlines()[-15:]
        return {"status": "error", "error": f"exit code {proc.returncode}", "stderr_tail": tail,
                "wall_seconds": wall}


def _fmt(value: Optional[float], digits: int = 2) -> str:
    if value is None:
        return "-"
    if value >= 100:
        return f"{value:.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.{digits}f}" if value >= 0.01 else f"{value:.4f}"


def _span(values: List[float]) -> str:
    lo, hi = f"{min(values):.0f}", f"{max(values):.0f}"
    return lo if lo == hi else f"{lo}-{hi}"


def markdown(result: Dict[str, Any]) -> str:
    """The ``speed.md`` table."""
    env = result["environment"]
    s = result["settings"]
    cuda = s["device"].startswith("cuda")
    lines = [
        "# Training and evaluation speed at the paper's scales", "",
        f"Command: `{result['command']}`", "",
        f"Device **{s['device']}**, {s['threads'] or 'default'} torch thread(s). " + (
            f"s/epoch: one full training epoch (batch {s['batch_size']}) through the library's "
            f"`Trainer.train_epoch`, after a warm-up epoch of {s['warmup']} batches: its training seconds, "
            "the `train_seconds` of `history.csv` (the model's per-epoch hook, milliseconds, apart). "
            if not s["batches"] else
            f"s/epoch: extrapolated from the first {s['batches']} batches (batch {s['batch_size']}) of an epoch "
            f"through the library's `Trainer.train_epoch`, after a warm-up epoch of {s['warmup']} batches: "
            "first batch (with the epoch's draw) + mean of the others x (batches per epoch - 1); not a full "
            "epoch. ")
        + f"Estimate: the same extrapolation from the timed epoch's first {EXTRAPOLATION_CHECK} batches, with "
        "its ratio to FREEDOM's estimate. s/eval: one full-ranking evaluation over the validation users "
        "(embeddings, scores for all items, top-50 metrics). Build: model construction incl. the KNN item-item "
        "graphs (one-off, not in s/epoch, no KNN cache). Peak MiB: peak RSS of a fresh process per row "
        "(interpreter, torch, data and features included)" + ("; GPU MiB: torch.cuda.max_memory_allocated."
                                                            if cuda else "."),
        "",
    ]
    if s.get("repeats", 1) > 1:
        lines += [f"{s['repeats']} rounds, each timing every model once in a fresh process, one after the "
                  "other: times are medians over the rounds, peak MiB the maximum; x FREEDOM is the median "
                  "(and range) over rounds of the ratio to FREEDOM's s/epoch in the same round.", ""]
    head = ("| dataset | model | s/epoch | x FREEDOM | s/batch | batches/epoch | estimate s/epoch "
            "| estimate x FREEDOM | s/eval | peak MiB |")
    sep = "|---|---|---|---|---|---|---|---|---|---|"
    if cuda:
        head += " GPU MiB |"
        sep += "---|"
    lines += [head + " build s |", sep + "---|"]
    multi = s.get("repeats", 1) > 1

    def ratio_cell(r: Dict[str, Any], name: str) -> str:
        ratio = r.get(f"{name}_to_freedom")
        if not ratio:
            return "-"
        lo, hi = r.get(f"{name}_range", [ratio, ratio])
        return _fmt(ratio) + (f" ({_fmt(lo)}-{_fmt(hi)})" if multi else "")

    for r in result["rows"]:
        if r["status"] != "ok":
            msg = r.get("error", r["status"])
            cells = [r["dataset"], r.get("label", r["model"]), f"{r['status']}: {msg}"] + [""] * (8 + cuda)
            lines.append("| " + " | ".join(cells) + " |")
            continue
        cells = [r["dataset"], r.get("label", r["model"]), _fmt(r["seconds_per_epoch"]), ratio_cell(r, "ratio"),
                 _fmt(r["seconds_per_batch"], 3), str(r["batches_per_epoch"]),
                 _fmt(r.get("extrapolated_seconds_per_epoch")), ratio_cell(r, "extrapolated_ratio"),
                 _fmt(r["eval_seconds"]), f"{r['peak_rss_mib']:.0f}"]
        if cuda:
            cells.append(f"{r.get('peak_cuda_mib', 0):.0f}")
        cells.append(_fmt(r["build_seconds"]))
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    for label, (model, sets) in result.get("variants", {}).items():
        lines.append(f"- **{label}**: {model} with {', '.join(sets)}")
    if result.get("variants"):
        lines.append("")
    base = [r["base_rss_mib"] for r in result["rows"] if r["status"] == "ok"]
    if base:
        lines += [f"Peak MiB includes {_span(base)} MiB of the interpreter with torch and PyG "
                  "loaded (before any data), and the item features, which ID-only models load but do not use.",
                  ""]
    for name, d in result["datasets"].items():
        shape = d.get("shape")
        desc = f"- **{name}**: {d['note']}"
        if shape:
            feats = ", ".join(f"{m} {w}-d" for m, w in shape["features"].items()) or "none"
            desc += (f"; {shape['users']:,} users, {shape['items']:,} items, {shape['train_interactions']:,} "
                     f"training interactions; features: {feats}")
        lines.append(desc)
    lines += ["", f"Machine: {env['cpu']}, {env['cores']} cores, GPU {env['gpu']}; python {env['python']}, "
              f"torch {env['torch']}, PyG {env['torch_geometric']}, faiss {env['faiss']}, numpy {env['numpy']}. "
              f"Total wall time {result['wall_seconds']:.0f} s."]
    return "\n".join(lines) + "\n"


def main(argv: Optional[List[str]] = None) -> int:
    """Run the benchmark (one subprocess per dataset and model) and write its result files."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--worker"]:
        spec = json.loads(Path(argv[1]).read_text())
        out = run_worker(spec)
        Path(argv[2]).write_text(json.dumps(out))
        return 0
    from dhmrec_pyg.models import MODELS

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--datasets", default=DEFAULT_DATASETS,
                   help="comma-separated: baby, sports (real), clothing (synthetic), synthetic-<profile>")
    p.add_argument("--models", default=DEFAULT_MODELS,
                   help=f"comma-separated, of: {', '.join(MODELS)}, or a --variant's label")
    p.add_argument("--variant", dest="variants", action="append", default=[], metavar="LABEL=MODEL:KEY=VALUE",
                   help="a model with options of its own, listed in --models by LABEL (repeatable)")
    p.add_argument("--name", default="speed", help="stem of the result files (<name>.json, <name>.md)")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    p.add_argument("--batches", type=int, default=0,
                   help="0 (default): time full epochs; N: train only the first N batches and extrapolate")
    p.add_argument("--warmup", type=int, default=2, help="warm-up mini-batches before timing")
    p.add_argument("--repeats", type=int, default=1,
                   help="rounds over the models (fresh process each); medians, ratios paired by round")
    p.add_argument("--threads", type=int, default=1, help="torch/OpenMP threads per worker (0: defaults)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                   help="model or training option for every model that has it (e.g. batch_size=4096)")
    p.add_argument("--data-root", default=str(DEFAULT_DATA), help="folder of the real datasets")
    p.add_argument("--synthetic-root", default=str(DEFAULT_SYNTHETIC),
                   help="where synthetic profiles are materialised (once)")
    p.add_argument("--timeout", type=float, default=3600.0, help="seconds per (dataset, model) worker")
    p.add_argument("--out", default=str(HERE / "results"), help="folder for speed.json and speed.md")
    args = p.parse_args(argv)
    if args.batches < 0 or args.warmup < 1 or args.repeats < 1:
        p.error("--warmup and --repeats must be at least 1, --batches at least 0")
    datasets = [d.strip() for d in args.datasets.split(",") if d.strip()]
    models = [m.strip().lower() for m in args.models.split(",") if m.strip()]
    variants = parse_variants(args.variants, MODELS)
    if isinstance(variants, str):
        p.error(variants)
    unknown = [m for m in models if m not in MODELS and m not in variants]
    if unknown:
        p.error(f"unknown model(s) {', '.join(unknown)}; choose from {', '.join(MODELS)}")
    if args.device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            p.error(f"--device {args.device}: CUDA is not available")
    from dhmrec_pyg.training.config import split_overrides
    from dhmrec_pyg.training.trainer import environment

    split_overrides(args.sets)  # reject malformed --set early
    if args.threads > 0:
        import torch

        torch.set_num_threads(args.threads)  # what environment() reports; each worker sets its own
    start = time.perf_counter()
    rows: List[Dict[str, Any]] = []
    ds_info: Dict[str, Dict[str, Any]] = {}
    for name in datasets:
        folder, note = prepare_dataset(name, Path(args.data_root), Path(args.synthetic_root))
        kind, _ = dataset_source(name)
        random_features = kind == "real"
        if random_features and folder is not None:
            note += (" + seeded random float32 features of the paper's shapes ("
                     + ", ".join(f"{m} {d}-d" for m, d in PAPER_FEATURES.items()) + ") when it has none")
        ds_info[name] = {"folder": str(folder) if folder else None,
                         "note": note if folder is not None else f"skipped: {note}"}
        if folder is None:
            print(f"{name}: skipped: {note}", file=sys.stderr, flush=True)
            rows += [{"dataset": name, "model": m, "status": "skipped", "error": note} for m in models]
            continue
        runs: Dict[str, List[Dict[str, Any]]] = {m: [] for m in models}
        for rep in range(args.repeats):  # round-robin: every round times all models back to back
            for model in models:
                base, variant_sets = variants.get(model, (model, []))
                spec = {"dataset": name, "model": base, "variant_sets": variant_sets, "folder": str(folder),
                        "device": args.device,
                        "batches": args.batches, "warmup": args.warmup, "threads": args.threads,
                        "seed": args.seed, "sets": args.sets, "random_features": random_features,
                        "feature_dims": PAPER_FEATURES}
                label = f" (round {rep + 1}/{args.repeats})" if args.repeats > 1 else ""
                print(f"{name} / {model}{label} ...", file=sys.stderr, flush=True)
                out = _run_pair(spec, args.timeout)
                if out["status"] == "ok":
                    ds_info[name].setdefault("shape", out["shape"])
                    print(f"  {out['seconds_per_epoch']:.2f} s/epoch, {out['eval_seconds']:.2f} s/eval, "
                          f"build {out['build_seconds']:.2f} s, peak {out['peak_rss_mib']:.0f} MiB "
                          f"({out['wall_seconds']:.0f} s wall)", file=sys.stderr, flush=True)
                else:
                    print(f"  failed: {out.get('error')}\n    " + "\n    ".join(out.get("stderr_tail", [])),
                          file=sys.stderr, flush=True)
                runs[model].append(out)
        rows += [{"dataset": name, "model": variants.get(model, (model,))[0], "label": model,
                  **combine_runs(runs[model], runs.get("freedom"))} for model in models]
    result = {
        "command": "python -m benchmarks.speed " + " ".join(shlex.quote(a) for a in argv),
        "settings": {"device": args.device, "batches": args.batches, "warmup": args.warmup,
                     "repeats": args.repeats,
                     "threads": args.threads, "seed": args.seed, "sets": args.sets,
                     "batch_size": next((r["batch_size"] for r in rows if r["status"] == "ok"), None),
                     "s_per_epoch": ("train_seconds of one full epoch (Trainer.train_epoch)" if not args.batches
                                     else "first batch + mean of the other timed batches x (batches per epoch - 1)"),
                     "estimate_from_batches": EXTRAPOLATION_CHECK},
        "datasets": ds_info,
        "variants": variants,
        "rows": rows,
        "wall_seconds": time.perf_counter() - start,
        "environment": environment(),
    }
    from benchmarks.reproduce import write_result_files

    text = markdown(result)
    write_result_files(Path(args.out), args.name, result, text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
