"""Accuracy of DHMRec and its baselines on one dataset, each selected on validation, in one table.

    python -m benchmarks.accuracy --dataset tiktok --models dhmrec,freedom,lgmrec,lightgcn,bpr

Every model runs its grid (below; ``--grid-size small`` takes a documented
subset, ``none`` the defaults) through :mod:`benchmarks.reproduce`, one fresh
subprocess per model, so that peak memory is per model. The point with the best
validation Recall@20 is re-run with ``--seeds`` (mean ± std over seeds); test
metrics are those at the best validation epoch. ``lgmrec`` brings two rows: the
public Baby defaults and ``lgmrec-tuned`` over a grid spanning the published
per-dataset settings, so that DHMRec is not compared with a baseline left at
another dataset's defaults.

Per-model result files go to ``benchmarks/results/<dataset>_<model>_acc[_tuned].{json,md}``;
with ``--reuse`` a model whose file already records the same grid, overrides and
seeds is not re-run (so a long comparison can be assembled from separate runs).
The table goes to ``benchmarks/results/accuracy_<dataset>.{json,md}``.
"""
from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional

from dhmrec_pyg import files as dfiles
from dhmrec_pyg.training.trainer import environment

from benchmarks.reproduce import machine_line

HERE = Path(__file__).resolve().parent
DEFAULT_DATA = HERE.parent.parent / "shared" / "data"
METRICS = ("recall@10", "recall@20", "ndcg@10", "ndcg@20")


@dataclass(frozen=True)
class Variant:
    """One row of the table: a model, its grid (full and small) and fixed overrides."""

    model: str
    grid: Dict[str, List[str]] = field(default_factory=dict)
    small: Optional[Dict[str, List[str]]] = None
    sets: List[str] = field(default_factory=list)
    note: str = ""

    def grid_for(self, size: str) -> Dict[str, List[str]]:
        """The grid of ``size`` (``full``, ``small`` or ``none``)."""
        if size == "none":
            return {}
        if size == "small" and self.small is not None:
            return self.small
        return self.grid


VARIANTS: Dict[str, Variant] = {
    "bpr": Variant("bpr", {"reg_weight": ["1e-3", "1e-4", "1e-5"]}, {"reg_weight": ["1e-4"]}),
    "lightgcn": Variant(
        "lightgcn", {"num_layers": ["2", "3", "4"]}, {"num_layers": ["2"]}, ["reg_weight=1e-4"],
        "the reference toolbox's grid of layers, reg 1e-4",
    ),
    "freedom": Variant(
        "freedom", {"dropout": ["0.8", "0.9"], "reg_weight": ["0", "1e-5", "1e-4", "1e-3"]},
        {"dropout": ["0.8"], "reg_weight": ["0", "1e-4"]},
        note="FREEDOM's public grid (dropout x reg_weight)",
    ),
    "lgmrec": Variant("lgmrec", note="LGMRec's public Baby defaults"),
    "lgmrec-tuned": Variant(
        "lgmrec",
        {"num_hyper_layers": ["1", "2"], "num_hyperedges": ["4", "64"], "keep_rate": ["0.2", "0.5"],
         "alpha": ["0.2", "0.6"]},
        {"num_hyper_layers": ["2"], "num_hyperedges": ["64"], "keep_rate": ["0.2"], "alpha": ["0.2"]},
        note="LGMRec over its published per-dataset settings (Baby 1/4/0.5/0.3, Sports 1/4/0.4/0.6, "
             "Clothing 2/64/0.2/0.2 for layers/hyperedges/keep/alpha); the small grid is the Clothing "
             "setting (the sparsest data set, like TikTok), to be compared with the Baby row on validation",
    ),
    "dhmrec": Variant(
        "dhmrec", {"alpha_mm": ["0.8", "1.2"], "gamma_kl": ["0.01", "0.1", "1.0"]}, {},
        note="the default preset (the readings selected on TikTok validation, docs/readings.md; probes in "
             "tiktok_dhmrec_readings); the full grid adds the paper's alpha_mm x gamma_kl",
    ),
    "dhmrec-paper": Variant(
        "dhmrec", {"ln_gain": ["one", "unit"], "alpha_mm": ["0.8", "1.2"], "gamma_kl": ["0.1", "1.0"]},
        {"ln_gain": ["one", "unit"]},
        ["preset=paper", "reg_weight=1e-2"],
        note="the paper-literal preset; a subset of the paper's grid (alpha_mm x gamma_kl) and the "
             "layer-norm gain the paper leaves open; the small grid varies the gain at the paper's Baby "
             "alpha_mm 0.8, gamma_kl 1 and reg 1e-2",
    ),
}
# Test figures of the reference implementations on the same split and protocol (the issues' tables).
REFERENCE: Dict[str, Dict[str, Dict[str, float]]] = {
    "tiktok": {
        "lightgcn": {"recall@20": 0.0922, "ndcg@20": 0.0419},
        "freedom": {"recall@20": 0.0883, "ndcg@20": 0.0387, "recall@10": 0.0545, "ndcg@10": 0.0302},
        "lgmrec": {"recall@20": 0.0558, "ndcg@20": 0.0266, "recall@10": 0.0393, "ndcg@10": 0.0225},
    },
}


def expand(names: List[str], tuned: bool = True) -> List[str]:
    """Variant names in order; ``lgmrec`` brings ``lgmrec-tuned`` along when ``tuned``."""
    out: List[str] = []
    for name in names:
        if name not in VARIANTS:
            raise SystemExit(f"--models: unknown model {name!r} (known: {', '.join(VARIANTS)})")
        out.append(name)
        for base, extra in (("lgmrec", "lgmrec-tuned"), ("dhmrec", "dhmrec-paper")):
            if tuned and name == base and extra not in names:
                out.append(extra)
    return list(dict.fromkeys(out))


def result_tag(variant: str) -> str:
    """The ``benchmarks.reproduce --tag`` of a variant."""
    if variant.endswith("-tuned"):
        return "acc_tuned"
    return "acc_paper" if variant.endswith("-paper") else "acc"


def result_stem(dataset: str, variant: str) -> str:
    """File stem of a variant's per-model result under ``benchmarks/results``."""
    return f"{dataset}_{VARIANTS[variant].model}_{result_tag(variant)}"


def reproduce_args(args: argparse.Namespace, variant: str) -> List[str]:
    """The :mod:`benchmarks.reproduce` command line of one variant."""
    v = VARIANTS[variant]
    out = ["--dataset", args.dataset, "--data-root", args.data_root, "--model", v.model,
           "--threads", str(args.threads), "--runs", args.runs,
           "--tag", result_tag(variant)]
    if getattr(args, "jobs", 1) > 1:
        out += ["--jobs", str(args.jobs)]
    for key, values in v.grid_for(args.grid_size).items():
        out += ["--grid", f"{key}={','.join(values)}"]
    for pair in v.sets + list(args.sets):
        out += ["--set", pair]
    if args.seeds:
        out += ["--seeds", args.seeds]
    return out


def matches(report: Dict[str, Any], args: argparse.Namespace, variant: str) -> bool:
    """Whether a saved per-model report was made with this variant's grid, overrides and seeds."""
    v = VARIANTS[variant]
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    return (report.get("grid") == v.grid_for(args.grid_size)
            and report.get("sets") == v.sets + list(args.sets)
            and report.get("seeds") == seeds)


def row_for(variant: str, report: Dict[str, Any], dataset: str) -> Dict[str, Any]:
    """One table row from a per-model report."""
    row: Dict[str, Any] = {"model": variant, "selected": report["best_params"],
                           "machine": machine_line(report.get("environment", {})),
                           "negatives": report.get("negatives", "all"),
                           "best_epoch": report["selected_best_epoch"],
                           "seconds_per_epoch": report["selected_seconds_per_epoch"],
                           "peak_rss_mib": report.get("peak_rss_mib"), "grid_points": len(report["rows"])}
    summary = report.get("seeds_summary")
    chosen = next(r for r in report["rows"] if r["run"] == report["best_run"])
    row["valid_recall@20"] = (summary["valid"]["recall@20"]["mean"] if summary
                              else chosen.get("valid_recall@20"))
    for key in METRICS:
        if summary:
            row[key] = {"mean": summary["test"][key]["mean"], "std": summary["test"][key]["std"]}
        else:
            row[key] = {"mean": report["selected_test"][key], "std": None}
    if summary:
        row["seeds"] = summary["seeds"]
        row["best_epoch"] = summary["best_epoch"]
    ref = REFERENCE.get(dataset, {}).get(VARIANTS[variant].model) if not variant.endswith("-tuned") else None
    if ref:
        row["reference"] = ref
        row["relative_to_reference"] = {k: row[k]["mean"] / ref[k] - 1.0 for k in ref}
    return row


#: How the table names each BPR negative pool (``train.negatives``).
NEGATIVES_TEXT = {
    "trained": "drawn from the items with at least one training interaction (MMRec's pool, `negatives=trained`)",
    "all": "drawn from every item, cold items included (`negatives=all`)",
}


def _cell(value: Dict[str, Any]) -> str:
    return f"{value['mean']:.4f}" + (f" ± {value['std']:.4f}" if value.get("std") is not None else "")


def markdown(report: Dict[str, Any]) -> str:
    """The Markdown table of an accuracy report."""
    rows = report["rows"]
    lines = [f"# Accuracy on {report['dataset']} (test, at the best validation epoch)", "",
             f"Command: `{report['command']}`", "",
             "Each model selected on validation Recall@20 over its grid (listed below); the selected "
             "point run with the seeds shown (mean ± std over them; one seed: no std). "
             "s/epoch: mean training time per epoch of the selected run; peak MiB: peak RSS of the "
               "model's process (all its grid points).", "",
             "| model | selected | seeds | valid R@20 | R@10 | R@20 | N@10 | N@20 | best epoch | s/epoch | peak MiB | vs reference R@20 / N@20 |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        sel = ", ".join(f"{k}={v}" for k, v in r["selected"].items() if k != "seed") or "defaults"
        rel = r.get("relative_to_reference")
        ref = (f"{rel['recall@20']:+.1%} / {rel['ndcg@20']:+.1%}" if rel else "")
        peak = f"{r['peak_rss_mib']:.0f}" if r.get("peak_rss_mib") else "n/a"
        seeds = ",".join(str(x) for x in r.get("seeds", [])) or "0"
        valid = f"{r['valid_recall@20']:.4f}" if r.get("valid_recall@20") is not None else "n/a"
        lines.append(f"| {r['model']} | {sel} | {seeds} | {valid} | " + " | ".join(_cell(r[k]) for k in METRICS)
                     + f" | {r['best_epoch']} | {r['seconds_per_epoch']:.1f} | {peak} | {ref} |")
    lines += ["", "Grids:", ""]
    for r in rows:
        v = VARIANTS[r["model"]]
        grid = report["grids"][r["model"]]
        lines.append(f"- **{r['model']}** ({r['grid_points']} points): "
                     + (", ".join(f"{k} in {{{', '.join(vals)}}}" for k, vals in grid.items()) or "defaults")
                     + (f"; fixed {', '.join(v.sets)}" if v.sets else "") + (f" ({v.note})" if v.note else ""))
    refs = REFERENCE.get(report["dataset"])
    if refs:
        lines += ["", "Reference implementations on the same split (test): "
                  + "; ".join(f"{m} R@20 {r['recall@20']:.4f} / N@20 {r['ndcg@20']:.4f}" for m, r in refs.items())
                  + "."]
    pools = {r["negatives"] for r in rows}
    lines += ["", "BPR negatives: " + ("; ".join(f"{r['model']}: {r['negatives']}" for r in rows)
                                       if len(pools) > 1 else NEGATIVES_TEXT[next(iter(pools))])]
    # Each row was trained where its own result file says; rows made on one machine share a line.
    machines: Dict[str, List[str]] = {}
    for r in rows:
        machines.setdefault(r["machine"], []).append(r["model"])
    if len(machines) == 1:
        lines += ["", f"Machine: {next(iter(machines))}; {report['threads']} torch thread(s) per run."]
    else:
        lines += ["", "Machines (s/epoch compares only rows of one machine):", ""]
        lines += [f"- {', '.join(models)}: {machine}" for machine, models in machines.items()]
        lines += ["", f"{report['threads']} torch thread(s) per run."]
    return "\n".join(lines) + "\n"


def main(argv: Optional[List[str]] = None) -> int:
    """Run (or reuse) every model's selection and write the table."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dataset", default="tiktok")
    p.add_argument("--data-root", default=str(DEFAULT_DATA))
    p.add_argument("--models", default="dhmrec,freedom,lgmrec,lightgcn,bpr",
                   help=f"comma-separated, from {', '.join(VARIANTS)}")
    p.add_argument("--grid-size", choices=("full", "small", "none"), default="full")
    p.add_argument("--seeds", default="0,1,2", help="seeds for the selected point ('' for none)")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                   help="override for every model (e.g. epochs=5 for a smoke run)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--jobs", type=int, default=1,
                   help="runs of one model trained at once (benchmarks.reproduce --jobs)")
    p.add_argument("--runs", default=str(HERE / "runs"))
    p.add_argument("--results", default=str(HERE / "results"))
    p.add_argument("--reuse", action="store_true", help="skip models whose result file matches")
    p.add_argument("--assemble", action="store_true",
                   help="run nothing: build the table from the per-model files there are (each row "
                        "states its own grid and seeds)")
    args = p.parse_args(argv)

    folder = Path(args.data_root) / args.dataset
    if not folder.is_dir() and not args.dataset.startswith("synthetic"):
        print(f"skipped: {folder} not found", file=sys.stderr)
        return 0
    results = Path(args.results)
    variants = expand([m.strip() for m in args.models.split(",") if m.strip()], args.grid_size != "none")
    start = time.time()
    rows, grids, failed = [], {}, []
    for variant in variants:
        stem = result_stem(args.dataset, variant)
        path = results / f"{stem}.json"
        report = json.loads(path.read_text()) if path.is_file() else None
        if args.assemble and report is None:
            print(f"[accuracy] {variant}: no {path.name}, left out", file=sys.stderr)
            continue
        if not args.assemble and not (args.reuse and report is not None and matches(report, args, variant)):
            cmd = [sys.executable, "-m", "benchmarks.reproduce", *reproduce_args(args, variant),
                   "--results", str(results)]
            print(f"[accuracy] {variant}: {' '.join(shlex.quote(c) for c in cmd[1:])}", flush=True)
            code = subprocess.run(cmd, cwd=HERE.parent).returncode
            if code != 0 or not path.is_file():
                print(f"[accuracy] {variant} failed (exit {code})", file=sys.stderr)
                failed.append(variant)
                continue
            report = json.loads(path.read_text())
        grids[variant] = report.get("grid", {})
        rows.append(row_for(variant, report, args.dataset))
    if not rows:
        print("no model finished", file=sys.stderr)
        return 1
    out = {"dataset": args.dataset, "grid_size": args.grid_size,
           "seeds": [int(s) for s in args.seeds.split(",") if s.strip()], "threads": args.threads,
           "command": "python -m benchmarks.accuracy " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:])),
           "wall_seconds": round(time.time() - start, 1), "environment": environment(),
           "rows": rows, "grids": grids, "failed": failed}
    results.mkdir(parents=True, exist_ok=True)
    dfiles.write_json(results / f"accuracy_{args.dataset}.json", out)
    text = markdown(out)
    dfiles.write_text(results / f"accuracy_{args.dataset}.md", text)
    print(text)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
