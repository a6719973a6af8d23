"""Epoch time and throughput of multi-process (DDP) training against one process.

    python -m benchmarks.distributed [--dataset demo] [--models lightgcn,lgmrec] [--epochs 4] [--nproc 1,2]

Trains the same configuration with 1, 2 (and, on a GPU machine, every visible
GPU) processes through ``dhmrec train --nproc N`` (torchrun; gloo on the CPU,
NCCL on GPUs) and reads each run's ``history.csv``: the median training
seconds per epoch over the epochs after the first (warm-up), and triplets per
second (training interactions / epoch seconds; the global batch is the same
for every process count). On the CPU every process gets ``--threads`` torch
threads (default 1), so N processes use N cores. Writes
``benchmarks/results/distributed.{json,md}`` with the machine description.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Dict, List

import torch

from dhmrec_pyg import files as dfiles
from dhmrec_pyg.training.trainer import environment

HERE = Path(__file__).resolve().parent


def _one(model: str, nproc: int, args: argparse.Namespace, work: Path) -> Dict[str, Any]:
    out = work / f"{model}_n{nproc}"
    cmd = [sys.executable, "-m", "dhmrec_pyg.cli", "train", "--model", model, "--dataset", args.dataset,
           "--data-root", args.data_root, "--epochs", str(args.epochs), "--out", str(out), "--quiet",
           "--set", "train.patience=1000", "--set", f"train.batch_size={args.batch_size}"]
    if args.device != "auto":
        cmd += ["--device", args.device]
    if args.threads > 0:
        cmd += ["--set", f"train.num_threads={args.threads}"]
    if nproc > 1:
        cmd += ["--nproc", str(nproc)]
    env = dict(os.environ)
    if args.threads > 0:
        env["OMP_NUM_THREADS"] = str(args.threads)
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL)
    rows = list(csv.DictReader((out / "history.csv").open()))
    metrics = json.loads((out / "metrics.json").read_text())
    seconds = [float(r["train_seconds"]) for r in rows[1:]] or [float(rows[0]["train_seconds"])]
    from dhmrec_pyg.data import load_dataset
    from dhmrec_pyg.models.base import EDGE

    triplets = int(load_dataset(args.dataset, root=args.data_root)[EDGE].edge_index.size(1))
    epoch = statistics.median(seconds)
    return {
        "model": model,
        "processes": nproc,
        "epoch_seconds": epoch,
        "triplets_per_second": triplets / epoch,
        "eval_seconds": statistics.median(float(r["eval_seconds"]) for r in rows),
        "triplets_per_epoch": triplets,
        "valid_recall@20": metrics["valid"]["recall@20"],
        "test_recall@20": metrics["test"]["recall@20"],
        "distributed": metrics.get("distributed"),
    }


def main(argv: List[str] | None = None) -> int:
    """Run the benchmark and write its result files."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dataset", default="demo")
    p.add_argument("--data-root", default=str(HERE.parent / "data"))
    p.add_argument("--models", default="lightgcn,lgmrec", help="comma-separated models")
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--batch-size", type=int, default=2048)
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=1, help="torch threads per process (0: torch's default)")
    p.add_argument("--note", default="", help="a sentence on the conditions (e.g. other load), added to the .md")
    p.add_argument("--nproc", default=None,
                   help="comma-separated process counts (default: 1,2 and, with GPUs, their number)")
    args = p.parse_args(argv)
    if args.nproc:
        counts = [int(n) for n in args.nproc.split(",")]
    else:
        counts = [1, 2]
        gpus = torch.cuda.device_count() if args.device != "cpu" else 0
        if gpus > 2:
            counts.append(gpus)
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    rows: List[Dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for model in models:
            runs = [_one(model, n, args, Path(tmp)) for n in counts]
            for row in runs:
                row["speedup"] = runs[0]["epoch_seconds"] / row["epoch_seconds"]
            rows += runs
    result = {
        "dataset": args.dataset, "models": models, "epochs": args.epochs, "batch_size": args.batch_size,
        "threads_per_process": args.threads, "device": args.device, "rows": rows, "environment": environment(),
    }
    (HERE / "results").mkdir(exist_ok=True)
    dfiles.write_json(HERE / "results" / "distributed.json", result)
    env = result["environment"]
    lines = [
        f"# Multi-process (DDP) training on {args.dataset}",
        "",
        f"Machine: {env['cpu']}, {env['cores']} cores, GPU: {env['gpu']}; torch {env['torch']}, "
        f"PyG {env['torch_geometric']}. {args.threads or 'default'} torch thread(s) per process, "
        f"global batch {args.batch_size}, {args.epochs} epochs (median over epochs after the first).",
        "",
        "| model | processes | epoch s | triplets/s | speed-up | eval s | valid R@20 | test R@20 |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(f"| {r['model']} | {r['processes']} | {r['epoch_seconds']:.3f} | {r['triplets_per_second']:,.0f} | "
                     f"{r['speedup']:.2f}x | {r['eval_seconds']:.3f} | {r['valid_recall@20']:.4f} | "
                     f"{r['test_recall@20']:.4f} |")
    if args.note:
        lines += ["", args.note]
    result["note"] = args.note
    dfiles.write_json(HERE / "results" / "distributed.json", result)
    dfiles.write_text(HERE / "results" / "distributed.md", "\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
