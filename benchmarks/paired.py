"""Compare finished runs user by user: each run's metrics with their standard errors, and its
paired difference with the first run, on the validation and the test users.

    python -m benchmarks.paired --name NAME RUN_A RUN_B [RUN_C ...] [--k 20]

A run is a folder written by ``dhmrec train`` or ``benchmarks.reproduce`` with ``best.pt``. Each
run is reloaded at its best epoch (:func:`~dhmrec_pyg.training.run.load_run`) and ranks every
item for the split's users exactly as the library's evaluation does
(:meth:`~dhmrec_pyg.training.evaluate.FullRankingEvaluator.per_user`). For one run, the standard
error of Recall@K is the standard deviation over users divided by the square root of their number;
for two runs scored on the same users, the standard error of the mean of their per-user
differences, which is much smaller (the users' difficulty cancels). A difference of less than
about twice its paired standard error is not told apart from the noise of the split's users;
seed-to-seed spread comes on top of it and needs several seeds.

Writes ``NAME.json`` and ``NAME.md`` to ``--results``.
"""
from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional

import torch

from dhmrec_pyg import files as dfiles
from dhmrec_pyg.training.trainer import environment, make_evaluators

from benchmarks.probes import options_text, run_label, summarise_run
from benchmarks.reproduce import machine_line

HERE = Path(__file__).resolve().parent
SPLITS = ("val", "test")


def per_user_metrics(run: Path, k: int) -> Dict[str, Dict[str, torch.Tensor]]:
    """``{split: {"users", "recall", "ndcg"}}`` of a run's best checkpoint.

    Raises:
        FileNotFoundError: naming the folder, when it has no ``best.pt``.
    """
    from dhmrec_pyg.training.run import load_run

    if not (run / "best.pt").is_file():
        raise FileNotFoundError(f"{run}: no best.pt (not a finished run folder)")
    loaded = load_run(run)
    model = loaded.model.eval()
    evaluators = make_evaluators(loaded.data, loaded.config)
    with torch.no_grad():
        user_emb, item_emb = model.embeddings()
        return {split: evaluators[split].per_user(user_emb, item_emb, k, score_fn=model.score) for split in SPLITS}


def _mean_se(values: torch.Tensor) -> Dict[str, float]:
    n = values.numel()
    se = float(values.std(unbiased=True) / n ** 0.5) if n > 1 else float("nan")
    return {"mean": float(values.mean()) if n else float("nan"), "se": se, "users": n}


def compare(per_run: List[Dict[str, Dict[str, torch.Tensor]]]) -> List[Dict[str, Any]]:
    """Per run and split: mean and standard error of each metric, and the paired difference with
    the first run (same users, required).

    Raises:
        ValueError: when two runs were evaluated on different users (different data or splits).
    """
    base = per_run[0]
    out = []
    for index, run in enumerate(per_run):
        row: Dict[str, Any] = {}
        for split in SPLITS:
            if not torch.equal(run[split]["users"], base[split]["users"]):
                raise ValueError(f"run {index} was evaluated on other {split} users than the first run")
            entry: Dict[str, Any] = {}
            for metric in ("recall", "ndcg"):
                entry[metric] = _mean_se(run[split][metric])
                if index:
                    entry[f"{metric}_diff"] = _mean_se(run[split][metric] - base[split][metric])
            row[split] = entry
        out.append(row)
    return out


def _cell(stat: Optional[Dict[str, float]], signed: bool = False) -> str:
    if stat is None:
        return ""
    return f"{stat['mean']:{'+' if signed else ''}.4f} ± {stat['se']:.4f}"


def render(rows: List[Dict[str, Any]], k: int, command: str, env: Dict[str, Any]) -> str:
    """The markdown result file."""
    users = rows[0]["comparison"]
    lines = [
        f"# Runs compared user by user (Recall@{k}, NDCG@{k})", "",
        f"Command: `{command}`", "",
        f"Each run at its best validation epoch, scored on the {users['val']['recall']['users']:,} validation "
        f"and {users['test']['recall']['users']:,} test users. Metric: mean ± standard error over users. "
        "Difference: the run minus the first run, user by user, mean ± standard error of the paired "
        "differences (less than about twice it: not told apart from the noise of the split's users; "
        "seed-to-seed spread comes on top).", "",
        f"| run | options off the defaults | seed | best epoch | valid R@{k} | valid N@{k} | test R@{k} | "
        f"test N@{k} | valid R@{k} diff | test R@{k} diff | test N@{k} diff |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        c = row["comparison"]
        lines.append(
            f"| {row['run']} | {row['options'] or 'defaults'} | {row['seed']} | {row['best_epoch']} | "
            f"{_cell(c['val']['recall'])} | {_cell(c['val']['ndcg'])} | {_cell(c['test']['recall'])} | "
            f"{_cell(c['test']['ndcg'])} | {_cell(c['val'].get('recall_diff'), True)} | "
            f"{_cell(c['test'].get('recall_diff'), True)} | {_cell(c['test'].get('ndcg_diff'), True)} |"
        )
    lines += ["", f"Machine: {machine_line(env)}.", ""]
    return "\n".join(lines)


def main(argv: Optional[List[str]] = None) -> int:
    """Command line: ``python -m benchmarks.paired --name NAME RUN [RUN ...]``."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+", type=Path, help="finished run folders (best.pt); the first is the reference")
    p.add_argument("--name", required=True, help="result file name, without extension")
    p.add_argument("--k", type=int, default=20, help="the cut-off (20)")
    p.add_argument("--results", type=Path, default=HERE / "results", help="where the result files go")
    args = p.parse_args(argv)
    if args.k < 1:
        p.error(f"--k must be >= 1, got {args.k}")
    try:
        summaries = [summarise_run(run) for run in args.runs]
        per_run = [per_user_metrics(run, args.k) for run in args.runs]
        comparison = compare(per_run)
    except (FileNotFoundError, ValueError, KeyError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    rows = [
        {"run": run_label(s), "options": options_text(s), "seed": s["seed"], "best_epoch": s["best_epoch"],
         "comparison": c}
        for s, c in zip(summaries, comparison)
    ]
    command = "python -m benchmarks.paired " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:]))
    env = environment()
    args.results.mkdir(parents=True, exist_ok=True)
    dfiles.write_json(args.results / f"{args.name}.json", {"command": command, "k": args.k, "environment": env,
                                                           "rows": rows})
    dfiles.write_text(args.results / f"{args.name}.md", render(rows, args.k, command, env))
    print(f"wrote {args.results / (args.name + '.md')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
