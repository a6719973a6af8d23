"""Models tuned with an equal budget on one dataset, in one table.

    python -m benchmarks.tune_compare --dataset tiktok --models dhmrec,freedom,lgmrec,lightgcn,bpr \
        --trials 30 --pruner median --seeds 0,1,2

Every model is searched with :func:`dhmrec_pyg.tuning.tune` over its default space (the grid
of its paper, :data:`~dhmrec_pyg.tuning.DEFAULT_SPACES`) with the same budget: the same number
of finished-or-pruned trials, the same pruner, sampler seed and epoch limit. The best point on
validation Recall@20 is rerun with ``--seeds`` and its test metrics (at the best validation
epoch) reported as mean ± std. Each model's study lives in ``--runs/tune_<dataset>/<model>``,
so an interrupted comparison continues where it stopped. The table goes to
``benchmarks/results/tune_<dataset>.{json,md}``, with the budget and what each model spent
(epochs trained and the seconds its trials took: pruning makes equal trial budgets cost
differently) and, when DHMRec and a baseline are both in it, a verdict line: tuned DHMRec's mean
test Recall@20 against the best tuned baseline's, and whether it is the project's goal of at
least +2% (:data:`GOAL`). ``--note`` adds a line on how the run went (load, pauses).
``--report-only`` tunes nothing: it draws the table from the models' tuning folders (their
``tune.json``), e.g. after the models were tuned by separate processes; a model whose study holds
fewer than ``--trials`` trials, or whose best point was not rerun with every seed, is shown with
its shortfall in its row (and in the verdict line when it is the baseline compared).
"""
from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

import torch

from benchmarks.reproduce import machine_line, write_result_files
from dhmrec_pyg.cli import without_option
from dhmrec_pyg.data import load_dataset
from dhmrec_pyg.data.synthetic import synthetic_profile_of
from dhmrec_pyg.models import MODELS
from dhmrec_pyg.training.config import TrainConfig
from dhmrec_pyg.training.trainer import environment
from dhmrec_pyg.tuning import tune

HERE = Path(__file__).resolve().parent
DEFAULT_DATA = HERE.parent.parent / "shared" / "data"
METRICS = ("recall@10", "recall@20", "ndcg@10", "ndcg@20")
#: The project's goal: tuned DHMRec at least 2% above the best tuned baseline on test Recall@20.
GOAL = 0.02


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dataset", required=True, help="dataset folder name under --data-root, or a synthetic profile")
    p.add_argument("--data-root", default=str(DEFAULT_DATA))
    p.add_argument("--models", default="dhmrec,freedom,lgmrec,lightgcn,bpr", help="comma-separated models")
    p.add_argument("--trials", type=int, required=True, help="finished-or-pruned trials per model (the budget)")
    p.add_argument("--timeout", type=float, default=None, help="seconds per model after which no trial starts")
    p.add_argument("--pruner", choices=["median", "halving", "none"], default="median")
    p.add_argument("--pruner-warmup", type=int, default=10, help="epochs before a trial may be pruned")
    p.add_argument("--sampler-seed", type=int, default=0)
    p.add_argument("--epochs", type=int, default=None, help="epoch limit of every trial (default: 1000)")
    p.add_argument("--seeds", default="0,1,2", help="seeds the best point of each model is rerun with")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                   help="option fixed for every model's trials (e.g. batch_size=2048)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    p.add_argument("--jobs", type=int, default=1, help="worker processes per study (cores // jobs threads each)")
    p.add_argument("--runs", default=str(HERE / "runs"), help="where the studies and their run folders go")
    p.add_argument("--results", default=str(HERE / "results"), help="where result files go")
    p.add_argument("--report-only", action="store_true",
                   help="no tuning: draw the table from the models' finished tuning folders (their tune.json)")
    p.add_argument("--note", default=None, help="how the run went (machine load, pauses), printed under the budget")
    return p


def _models(text: str) -> List[str]:
    names = [m.strip() for m in text.split(",") if m.strip()]
    unknown = [m for m in names if m not in MODELS]
    if not names or unknown:
        raise SystemExit(f"--models: unknown model {unknown[0] if unknown else text!r} (known: {', '.join(MODELS)})")
    return list(dict.fromkeys(names))


def _spent(report: Dict[str, Any]) -> Dict[str, Any]:
    """What a study cost: trials per state, epochs trained, seconds of trials (duplicates cost none)."""
    trials = report["trials"]
    trained = [t for t in trials if "duplicate_of" not in t]
    return {
        "states": report["states"],
        "epochs_trained": sum(t.get("epochs_run", t["epochs_reported"]) for t in trained),
        "trial_seconds": round(sum(t.get("seconds", 0.0) for t in trained), 1),
        "duplicates": len(trials) - len(trained),
    }


def row_of(model: str, report: Dict[str, Any], wall: float) -> Dict[str, Any]:
    """One model's row of the table from its ``tune.json``."""
    return {"model": model, "best_trial": report["best_trial"], "best_params": report["best_params"],
            "valid": report["best_value"], "test": report["best_test"], "seeds": report["best_seeds"],
            "space": report["space"], "wall_seconds": round(wall, 1), "short": report.get("short", ""),
            **_spent(report)}


def verdict(rows: List[Dict[str, Any]], goal: float = GOAL) -> Optional[Dict[str, Any]]:
    """Tuned DHMRec against the best tuned baseline on mean test Recall@20: the ratio, the relative
    gap and whether it reaches the project's goal (``goal``, +2%); ``None`` without both sides."""
    def recall(row: Dict[str, Any]) -> Optional[float]:
        test = row["test"].get("recall@20")
        return None if test is None else float(test["mean"])

    scored = [(r, value) for r in rows if (value := recall(r)) is not None]
    ours = [(r, value) for r, value in scored if r["model"] == "dhmrec"]
    others = [(r, value) for r, value in scored if r["model"] != "dhmrec"]
    if not ours or not others:
        return None
    mine, (best, theirs) = ours[0][1], max(others, key=lambda pair: pair[1])
    ratio = mine / theirs if theirs > 0 else float("inf")
    short = [f"{r['model']}: {r['short']}" for r, _ in [ours[0]] + others if r.get("short")]
    return {"baseline": best["model"], "dhmrec_recall@20": mine, "baseline_recall@20": theirs,
            "ratio": ratio, "gap": ratio - 1.0, "goal": goal, "met": ratio >= 1.0 + goal, "short": short}


def _verdict_line(v: Dict[str, Any]) -> str:
    gap = f"{abs(v['gap']) * 100:.1f}% {'above' if v['gap'] >= 0 else 'below'}"
    head = (f"**Tuned DHMRec against the best tuned baseline ({v['baseline']})**: test R@20 "
            f"{v['dhmrec_recall@20']:.4f} against {v['baseline_recall@20']:.4f}, {v['ratio']:.3f}x ({gap}); ")
    tail = f" Rows short of the budget: {'; '.join(v['short'])}." if v.get("short") else ""
    if v["met"]:
        return head + f"the goal of at least +{v['goal'] * 100:.0f}% is met." + tail
    short = (1.0 + v["goal"]) - v["ratio"]
    return (head + f"the goal of at least +{v['goal'] * 100:.0f}% is **not met** (short by {short * 100:.1f} points)."
            + tail)


def markdown(result: Dict[str, Any]) -> str:
    """The table of :func:`main`'s result, with the budget and the machine."""
    b = result["budget"]
    lines = [
        f"# Equal-budget tuning on {result['dataset']}",
        "",
        f"Command: `{result['command']}`",
        "",
        f"Budget per model: {b['trials']} finished-or-pruned trials"
        + (f" (or {b['timeout']} s)" if b["timeout"] else "")
        + f", pruner {b['pruner']}" + (f" from epoch {b['pruner_warmup']}" if b["pruner"] != "none" else "")
        + f", TPE seed {b['sampler_seed']}, at most {b['epochs']} epochs per trial, each model over the grid of "
        f"its paper (dhmrec_pyg.tuning.DEFAULT_SPACES); selected on validation {b['valid_metric']}; the best point "
        f"rerun over seeds {', '.join(map(str, result['seeds']))}: test at the best validation epoch, mean ± std.",
        "",
    ]
    if result.get("note"):
        lines += [result["note"], ""]
    if result.get("verdict"):
        lines += [_verdict_line(result["verdict"]), ""]
    lines += [
        "| model | best params | valid R@20 | " + " | ".join(METRICS) + " | trials | epochs trained | trial s |",
        "|" + "---|" * (len(METRICS) + 6),
    ]
    for row in result["rows"]:
        test = row["test"]
        cells = [f"{test[m]['mean']:.4f} ± {test[m]['std']:.4f}" if m in test else "" for m in METRICS]
        valid = f"{row['valid']:.4f}" if row["valid"] is not None else "none finished"
        model = row["model"] + (f" (**short of the budget**: {row['short']})" if row.get("short") else "")
        lines.append(f"| {model} | {row['best_params']} | {valid} | " + " | ".join(cells)
                     + f" | {row['states']}" + (f", {row['duplicates']} repeated points" if row["duplicates"] else "")
                     + f" | {row['epochs_trained']} | {row['trial_seconds']:.0f} |")
    lines += ["", f"Machine: {machine_line(result['environment'])}, {result['threads']} torch thread(s).", ""]
    return "\n".join(lines)


def _data_root(args: argparse.Namespace) -> Optional[str]:
    """Where the dataset is: the repository's data/ for a synthetic profile, else --data-root (if there)."""
    if synthetic_profile_of(args.dataset) is not None:
        return str(HERE.parent / "data")
    return args.data_root if (Path(args.data_root) / args.dataset).is_dir() else None


def finished_report(folder: Path, trials: int, seeds: List[int]) -> Dict[str, Any]:
    """A model's ``tune.json`` from an earlier tuning in ``folder``, with what it lacks of the budget.

    A study with fewer than ``trials`` finished-or-pruned trials, or a best point not rerun with
    every one of ``seeds``, is reported as it is, its shortfall in ``short`` (a row of the table
    says so); an empty string when it meets the budget.

    Raises:
        SystemExit: no ``tune.json`` in ``folder``.
    """
    path = folder / "tune.json"
    if not path.is_file():
        raise SystemExit(f"--report-only: {path} not found (tune the model first)")
    report = json.loads(path.read_text(encoding="utf-8"))
    short = []
    if report["n_trials"] < trials:
        short.append(f"{report['n_trials']} of {trials} trials")
    done = list(report.get("best_seeds") or [])
    if done != list(seeds):
        short.append(f"best point run with seeds {', '.join(map(str, done)) or 'none'} of "
                     f"{', '.join(map(str, seeds))}")
    report["short"] = "; ".join(short)
    return report


def main(argv: Optional[List[str]] = None) -> int:
    """Tune every model with the same budget and write the table."""
    args = _parser().parse_args(argv)
    models, seeds = _models(args.models), [int(s) for s in args.seeds.split(",") if s.strip()]
    root = _data_root(args)
    if root is None:
        print(f"skipped: {Path(args.data_root) / args.dataset} not found", file=sys.stderr)
        return 0
    torch.set_num_threads(args.threads)
    data = load_dataset(args.dataset, root=root) if args.jobs == 1 and not args.report_only else None
    rows, reports = [], {}
    for model in models:
        start = time.time()
        folder = Path(args.runs) / f"tune_{args.dataset}" / model
        if args.report_only:
            reports[model] = finished_report(folder, args.trials, seeds)
            rows.append(row_of(model, reports[model], 0.0))
            continue
        reports[model] = tune(
            model, args.dataset, args.trials, folder, timeout=args.timeout,
            jobs=args.jobs, seeds=seeds, data_root=root, overrides=args.sets, epochs=args.epochs, pruner=args.pruner,
            pruner_warmup=args.pruner_warmup, sampler_seed=args.sampler_seed, progress=True, data=data,
        )
        rows.append(row_of(model, reports[model], time.time() - start))
    epochs = args.epochs if args.epochs is not None else TrainConfig().epochs
    result = {
        "command": "python -m benchmarks.tune_compare "
                   + " ".join(shlex.quote(a) for a in without_option(argv or sys.argv[1:], "--note")),
        "dataset": args.dataset, "models": models, "seeds": seeds, "threads": args.threads, "sets": list(args.sets),
        "budget": {"trials": args.trials, "timeout": args.timeout, "pruner": args.pruner,
                   "pruner_warmup": args.pruner_warmup, "sampler_seed": args.sampler_seed, "epochs": epochs,
                   "valid_metric": reports[models[0]]["selected_on"].split()[-1]},
        "rows": rows, "verdict": verdict(rows), "environment": environment(),
    }
    if args.note:
        result["note"] = args.note
    text = markdown(result)
    write_result_files(Path(args.results), f"tune_{args.dataset}", result, text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
