"""Reproduce a row of the paper's Table 1 (or a reference figure) with a validation-selected grid.

Example (the runs recorded in ``benchmarks/results/``)::

    python -m benchmarks.reproduce --dataset baby --model lightgcn \
        --grid num_layers=2,3 --grid reg_weight=1e-3,1e-4

Each grid point is trained with the README's protocol (early stopping on validation
Recall@20); the point with the best validation Recall@20 is selected and its
test metrics reported. Results go to ``benchmarks/results/<dataset>_<model>.json``
and ``.md`` together with the command, the machine and library versions.
"""
from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path
from typing import Any, Dict

import torch

from dhmrec_pyg import files as dfiles
from dhmrec_pyg.data import load_dataset, load_mmrec
from dhmrec_pyg.data.synthetic import synthetic_profile_of
from dhmrec_pyg.models import MODELS
from dhmrec_pyg.training.config import TrainConfig, apply_overrides, load_run_config
from dhmrec_pyg.training.run import parse_grid, run_grid
from dhmrec_pyg.training.trainer import environment

HERE = Path(__file__).resolve().parent
DEFAULT_DATA = HERE.parent.parent / "shared" / "data"


def peak_rss_mib() -> float:
    """Peak resident memory so far, in MiB (``ru_maxrss``): of this process, or of the
    largest finished worker process where runs trained in parallel (``--jobs``)."""
    import resource

    peak = max(resource.getrusage(who).ru_maxrss for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024.0


def run_negatives(run: Path) -> str:
    """The BPR negative pool a run folder trained with (``train.negatives`` of its ``config.yaml``,
    read with :func:`~dhmrec_pyg.training.config.load_run_config`)."""
    return str(load_run_config(run / "config.yaml")["train"]["negatives"])


def machine_line(env: Dict[str, Any]) -> str:
    """The machine and versions of a result's ``environment``, in one line."""
    if not env:
        return "unknown machine"
    return (f"{env.get('cpu', '?')}, {env.get('cores', '?')} cores, GPU {env.get('gpu', 'none')}; "
            f"torch {env.get('torch', '?')}, PyG {env.get('torch_geometric', '?')}, faiss {env.get('faiss', '?')}")


def write_result_files(folder: Path, name: str, result: Dict[str, Any], text: str) -> None:
    """Write a benchmark's ``<name>.json`` (``result``) and ``<name>.md`` (``text``) into ``folder``
    (made if missing), each atomically."""
    folder.mkdir(parents=True, exist_ok=True)
    dfiles.write_json(folder / f"{name}.json", result)
    dfiles.write_text(folder / f"{name}.md", text)


def main(argv: list[str] | None = None) -> int:
    """Run the grid and write the result files."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dataset", required=True, help="dataset folder name under --data-root")
    p.add_argument("--data-root", default=str(DEFAULT_DATA))
    p.add_argument("--model", required=True, choices=sorted(MODELS))
    p.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--seeds", default="", help="re-run the selected point with these seeds")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    p.add_argument("--runs", default=str(HERE / "runs"), help="where run folders go")
    p.add_argument("--tag", default="", help="suffix of the result file names")
    p.add_argument("--reuse-runs", action="store_true",
                   help="read finished runs of the same configuration in their folders instead of retraining "
                        "(peak memory: the larger of this process's and the earlier result file's)")
    p.add_argument("--results", default=str(HERE / "results"), help="where result files go")
    p.add_argument("--jobs", type=int, default=1,
                   help="runs trained at once, each in its own process with --threads threads: grid points, "
                        "then seeds (a one-point grid trains its seeds alongside it); default 1")
    args = p.parse_args(argv)
    if args.jobs < 1:
        p.error(f"--jobs must be >= 1, got {args.jobs}")

    torch.set_num_threads(args.threads)
    if synthetic_profile_of(args.dataset) is not None:  # generated (once) into the repository's data/
        data_root = str(HERE.parent / "data")
        data = load_dataset(args.dataset, root=data_root)
    else:
        folder = Path(args.data_root) / args.dataset
        if not folder.is_dir():
            print(f"skipped: {folder} not found", file=sys.stderr)
            return 0
        data_root = args.data_root
        data = load_mmrec(folder)
    cfg = TrainConfig(model=args.model, dataset=args.dataset, data_root=data_root, progress=False)
    # Without --grid the one point is the configuration itself, seed included (--set seed=N).
    point_seed = apply_overrides(cfg, {}, MODELS[args.model].config_class, args.sets)[0].seed
    grid = parse_grid(args.grid) if args.grid else {"seed": [str(point_seed)]}
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    name = f"{args.dataset}_{args.model}{('_' + args.tag) if args.tag else ''}"
    start = time.time()
    report = run_grid(cfg, {}, MODELS[args.model].config_class, grid, Path(args.runs) / name,
                      args.sets, seeds, data, reuse=args.reuse_runs, jobs=args.jobs)
    report.update(
        command="python -m benchmarks.reproduce " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:])),
        wall_seconds=round(time.time() - start, 1),
        environment=environment(),
        dataset=args.dataset,
        model=args.model,
        grid=grid if args.grid else {},
        sets=list(args.sets),
        seeds=seeds,
        peak_rss_mib=round(peak_rss_mib(), 1),
    )
    previous = Path(args.results) / f"{name}.json"
    if args.reuse_runs and previous.is_file():
        # Reused runs were trained (and measured) by an earlier process: keep its peak if higher.
        earlier = json.loads(previous.read_text()).get("peak_rss_mib")
        if isinstance(earlier, (int, float)) and earlier > report["peak_rss_mib"]:
            report["peak_rss_mib"] = earlier
            report["peak_rss_note"] = "from the earlier result file (runs reused)"
    with open(Path(args.runs) / name / report["best_run"] / "metrics.json") as fh:
        chosen = json.load(fh)
    report["selected_test"] = chosen["test"]
    report["selected_best_epoch"] = chosen["best_epoch"]
    report["selected_seconds_per_epoch"] = chosen["seconds_per_epoch"]
    report["negatives"] = run_negatives(Path(args.runs) / name / report["best_run"])
    results = Path(args.results)
    results.mkdir(parents=True, exist_ok=True)
    dfiles.write_json(results / f"{name}.json", report)
    t = chosen["test"]
    lines = [
        f"# {args.model} on {args.dataset}",
        "",
        f"Command: `{report['command']}`",
        "",
        f"Selected on validation Recall@20: {report['best_params']} (best epoch {chosen['best_epoch']}, "
        f"{chosen['seconds_per_epoch']:.2f} s/epoch, {report['wall_seconds']:.0f} s wall for the grid).",
        "",
        "| R@10 | R@20 | N@10 | N@20 | P@20 | MAP@20 |",
        "|---|---|---|---|---|---|",
        f"| {t['recall@10']:.4f} | {t['recall@20']:.4f} | {t['ndcg@10']:.4f} | {t['ndcg@20']:.4f} "
        f"| {t['precision@20']:.4f} | {t['map@20']:.4f} |",
        "",
        "Grid (test shown for reference only; selection used validation):",
        "",
        "| " + " | ".join(report["rows"][0]) + " |",
        "|" + "---|" * len(report["rows"][0]),
    ]
    for row in report["rows"]:
        lines.append("| " + " | ".join(f"{v:.4f}" if isinstance(v, float) else str(v) for v in row.values()) + " |")
    if "seeds_summary" in report:
        s = report["seeds_summary"]["test"]
        lines += ["", f"Selected point over seeds {report['seeds_summary']['seeds']} (mean ± std, test):", "",
                  "| R@10 | R@20 | N@10 | N@20 |", "|---|---|---|---|",
                  "| " + " | ".join(f"{s[k]['mean']:.4f} ± {s[k]['std']:.4f}"
                                    for k in ("recall@10", "recall@20", "ndcg@10", "ndcg@20")) + " |"]
    env = report["environment"]
    lines += ["", f"Machine: {machine_line(env)}, {args.threads} torch thread(s)."]
    dfiles.write_text(results / f"{name}.md", "\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
