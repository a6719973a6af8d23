"""Summarise probe runs of one model into one result file: settings, curves' best points, diagnostics.

A probe is a run folder written by ``dhmrec train`` or ``benchmarks.reproduce`` (``config.yaml``,
``history.csv``, and ``metrics.json`` when it finished). Probes stopped by hand have no
``metrics.json``: their row gives the best validation point reached and says where it stopped
(no test figure: test is read only at the end of a finished run). Example::

    python -m benchmarks.probes --name tiktok_dhmrec_readings runs/tiktok_dhmrec_p_*/grid_0

Each row names the options that differ from the model's defaults, so the file says what was
probed whatever the defaults were when the probe ran.

Each row also says how much the best epoch stands out from its neighbours: the mean validation
Recall@20 over the epochs within :data:`WINDOW` of it (its local level), and the standard deviation
of the epoch-to-epoch changes there. Early stopping picks the highest point of the curve, so on a
curve that jumps from epoch to epoch the best point sits above the level the model holds, and the
test figure read there follows the level more than the jump.
"""
from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import shlex
import statistics
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional

from dhmrec_pyg import files as dfiles
from dhmrec_pyg.models import MODELS
from dhmrec_pyg.training.config import TrainConfig, build_dataclass, load_run_config
from dhmrec_pyg.training.trainer import environment

from benchmarks.reproduce import machine_line

HERE = Path(__file__).resolve().parent
WINDOW = 10  # epochs either side of the best one for its local level and the curve's jitter


#: Training options that change what a run computes, listed with the model's when off their defaults.
TRAIN_OPTIONS = ("lr", "batch_size", "patience", "negatives", "ema_decay")


def _mean(values: List[float]) -> Optional[float]:
    return sum(values) / len(values) if values else None


def curve_near_best(values: List[float], best: int, window: int = WINDOW) -> Dict[str, Optional[float]]:
    """The local level and jitter of a validation curve around its best epoch.

    Args:
        values: the metric per epoch.
        best: the index of the best epoch.
        window: epochs either side of ``best`` that count (fewer at the curve's ends).

    Returns:
        ``level``: the mean of ``values`` over the window; ``step_sd``: the population standard
        deviation of the differences between consecutive epochs in it (``None`` for a window of
        one epoch).
    """
    part = values[max(0, best - window): best + window + 1]
    steps = [b - a for a, b in zip(part, part[1:])]
    return {"level": _mean(part), "step_sd": statistics.pstdev(steps) if steps else None}


def summarise_run(run: Path, max_epochs: Optional[int] = None) -> Dict[str, Any]:
    """One probe's row: options off the defaults, epochs, best validation point, test, diagnostics.

    With ``max_epochs``, only the first ``max_epochs`` epochs count (to compare runs capped
    at different lengths); the test figure is kept only when that window holds the run's
    own best epoch.

    Raises:
        FileNotFoundError: naming the run folder, when it has no ``config.yaml`` or ``history.csv``.
    """
    for name in ("config.yaml", "history.csv"):
        if not (run / name).is_file():
            raise FileNotFoundError(f"{run}: no {name} (not a run folder)")
    config = load_run_config(run / "config.yaml")
    model_name = str(config["train"].get("model", ""))
    cls = MODELS[model_name].config_class
    resolved = dataclasses.asdict(build_dataclass(cls, config["model"], "model"))
    defaults = dataclasses.asdict(cls())
    skip = {"knn_cache_dir"}
    changed = {k: v for k, v in resolved.items() if k not in skip and defaults.get(k) != v}
    train = dataclasses.asdict(build_dataclass(TrainConfig, config["train"], "training"))
    train_defaults = dataclasses.asdict(TrainConfig())
    changed.update({k: train[k] for k in TRAIN_OPTIONS if train[k] != train_defaults[k]})
    rows = list(csv.DictReader((run / "history.csv").open()))
    if max_epochs is not None:
        rows = rows[:max_epochs]
    if not rows:
        raise ValueError(f"{run / 'history.csv'}: no epochs recorded")
    key = "valid_recall@20"
    best = max(rows, key=lambda r: float(r[key]))
    near = curve_near_best([float(r[key]) for r in rows], rows.index(best))
    diag = {k[len("diag_"):]: float(v) for k, v in best.items() if k.startswith("diag_") and v not in ("", None)}
    entropies = [v for k, v in diag.items() if k.startswith("attn_entropy_")]
    metrics_path = run / "metrics.json"
    metrics = json.loads(metrics_path.read_text()) if metrics_path.is_file() else None
    if metrics is not None and int(metrics.get("best_epoch", -1)) != int(best["epoch"]):
        metrics = None  # the window misses the run's own best epoch: its test figure is not this point's
    return {
        "run": str(run),
        "model": model_name,
        "seed": config["train"].get("seed"),
        "changed_from_defaults": changed,
        "epochs_run": len(rows),
        "epoch_cap": config["train"].get("epochs"),
        "finished": metrics_path.is_file(),
        "best_epoch": int(best["epoch"]),
        "best_valid_recall@20": float(best[key]),
        "valid_recall@20_near_best": near["level"],
        "valid_recall@20_step_sd": near["step_sd"],
        "test": None if metrics is None else {k: metrics["test"][k] for k in ("recall@20", "ndcg@20")},
        "diagnostics_at_best": diag,
        "mean_attention_entropy": _mean(entropies),
        "train_seconds_per_epoch": _mean([float(r["train_seconds"]) for r in rows]),
    }


def run_label(row: Dict[str, Any]) -> str:
    """A summarised run's short name in tables: its folder's parent and name."""
    run = Path(row["run"])
    return f"{run.parent.name}/{run.name}"


def options_text(row: Dict[str, Any]) -> str:
    """A summarised run's options off the defaults, ``key=value, ...`` (empty when none)."""
    return ", ".join(f"{k}={v}" for k, v in sorted(row["changed_from_defaults"].items()))


def _fmt(value: Optional[float], digits: int = 4) -> str:
    return "" if value is None else f"{value:.{digits}f}"


def render(rows: List[Dict[str, Any]], command: str, env: Dict[str, Any]) -> str:
    """The markdown of a probe summary."""
    lines = [
        "# Probe runs", "",
        f"Command: `{command}`", "",
        "Options are listed where they differ from the defaults of the library this file was "
        "written with. Probes stopped by hand have no test figure. Near best: the mean validation "
        f"R@20 over the epochs within {WINDOW} of the best one; step sd: the standard deviation of "
        "its epoch-to-epoch changes there (how far the best point can sit above the level the "
        "model holds).", "",
        "| run | options off the defaults | seed | epochs (cap) | finished | best epoch | valid R@20 "
        "| near best | step sd | test R@20 | test N@20 | attn entropy | mm/id norm | user mm cos "
        "| item-term share |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    mixed = len({r["model"] for r in rows}) > 1
    for r in rows:
        d = r["diagnostics_at_best"]
        test = r["test"] or {}
        label = f"{r['model']}: {run_label(r)}" if mixed else run_label(r)
        lines.append(
            f"| {label} | {options_text(r) or 'defaults'} | {r['seed']} | {r['epochs_run']} "
            f"({r['epoch_cap']}) | {'yes' if r['finished'] else 'stopped by hand'} | {r['best_epoch']} "
            f"| {_fmt(r['best_valid_recall@20'])} | {_fmt(r.get('valid_recall@20_near_best'))} "
            f"| {_fmt(r.get('valid_recall@20_step_sd'))} | {_fmt(test.get('recall@20'))} | {_fmt(test.get('ndcg@20'))} "
            f"| {_fmt(r['mean_attention_entropy'], 2)} | {_fmt(d.get('mm_id_norm_ratio'), 2)} "
            f"| {_fmt(d.get('user_mm_cosine'), 2)} | {_fmt(d.get('item_term_share'), 2)} |"
        )
    lines += ["", f"Machine: {machine_line(env)}.", ""]
    return "\n".join(lines)


def main(argv: Optional[List[str]] = None) -> int:
    """Command line: ``python -m benchmarks.probes --name NAME RUN [RUN ...]``."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+", type=Path, help="run folders (config.yaml, history.csv)")
    p.add_argument("--name", required=True, help="result file name, without extension")
    p.add_argument("--max-epochs", type=int, default=None,
                   help="count only each run's first N epochs (compare runs capped at different lengths)")
    p.add_argument("--results", type=Path, default=HERE / "results", help="where the result files go")
    args = p.parse_args(argv)
    try:
        rows = [summarise_run(run, args.max_epochs) for run in args.runs]
    except (FileNotFoundError, ValueError, KeyError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    command = "python -m benchmarks.probes " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:]))
    env = environment()
    args.results.mkdir(parents=True, exist_ok=True)
    dfiles.write_json(args.results / f"{args.name}.json", {"command": command, "environment": env, "rows": rows})
    dfiles.write_text(args.results / f"{args.name}.md", render(rows, command, env))
    print(f"wrote {args.results / (args.name + '.md')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
