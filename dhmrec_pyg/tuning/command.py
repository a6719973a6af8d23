"""``dhmrec tune``: its arguments and its handler (the command line of :func:`~dhmrec_pyg.tuning.tune`)."""
from __future__ import annotations

import argparse
import sys
from typing import Any, List

from dhmrec_pyg.training.config import ConfigError

DESCRIPTION = (
    "Search a model's hyper-parameters with Optuna: a seeded TPE sampler over the model's published grid "
    "(or --space FILE), a pruner fed every epoch's validation Recall@20, selection on validation only. "
    "Every trial is a run folder OUT/trials/trial_<n>; the study is kept in OUT/study.db (or --storage), "
    "so running the same command again continues it (--trials N: N finished-or-pruned trials in all). "
    "The best point is rerun with --seeds (OUT/best/seed_<s>); OUT/tune.json, tune.md and the plots "
    "report every trial and the best point's test metrics. Needs the 'tune' extra."
)


def add_parser(sub: Any) -> argparse.ArgumentParser:
    """Add ``dhmrec tune`` to the subcommands ``sub`` (``ArgumentParser.add_subparsers()``)."""
    parser = sub.add_parser("tune", help="search a model's hyper-parameters with Optuna", description=DESCRIPTION)
    add_arguments(parser)
    return parser


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``dhmrec tune``."""
    from dhmrec_pyg.models import MODELS

    parser.add_argument("--model", required=True, choices=sorted(MODELS), help="model to tune")
    parser.add_argument("--dataset", required=True, help="dataset, as 'dhmrec train --dataset' takes it")
    parser.add_argument("--trials", type=int, required=True, metavar="N",
                        help="finished-or-pruned trials the study ends with (counting earlier runs)")
    parser.add_argument("--timeout", type=float, default=None, metavar="S", help="start no trial after S seconds")
    parser.add_argument("--out", default=None, metavar="DIR",
                        help="tuning folder (default: runs/tune-<dataset>-<model>)")
    parser.add_argument("--storage", default=None, metavar="URL",
                        help="Optuna storage URL shared by processes working one study (default: sqlite DIR/study.db)")
    parser.add_argument("--study", default=None, metavar="NAME", help="study name (default: <model>-<dataset>)")
    parser.add_argument("--jobs", type=int, default=1, metavar="J",
                        help="worker processes on this machine, cores // J torch threads each (default 1)")
    parser.add_argument("--space", default=None, metavar="FILE",
                        help="YAML search space: option -> list of values, or {low, high, log}")
    parser.add_argument("--seeds", default=None, help="comma-separated seeds to rerun the best point with")
    parser.add_argument("--data-root", default=None, help="folder holding datasets by name (default: ./data)")
    parser.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                        help="fix an option for every trial (repeatable)")
    parser.add_argument("--epochs", type=int, default=None, help="maximum epochs of each trial (default: 1000)")
    parser.add_argument("--pruner", choices=["median", "halving", "none"], default="median",
                        help="prune trials on validation Recall@20 per epoch (default: median)")
    parser.add_argument("--pruner-warmup", type=int, default=10, metavar="E",
                        help="epochs before a trial may be pruned (default: 10)")
    parser.add_argument("--sampler-seed", type=int, default=0, help="seed of the TPE sampler (default: 0)")
    parser.add_argument("--no-plots", action="store_true", help="do not draw the plots")


def _seeds(text: str) -> List[int]:
    """The distinct seeds of ``--seeds``, in order (:func:`~dhmrec_pyg.training.run.parse_seeds`)."""
    from dhmrec_pyg.training.run import parse_seeds

    return list(dict.fromkeys(parse_seeds(text)))


def run(args: argparse.Namespace) -> int:
    """Handle ``dhmrec tune``: tune, then print the best point and where the report is."""
    from pathlib import Path

    from dhmrec_pyg.tuning.search import tune

    out = Path(args.out) if args.out else Path("runs") / f"tune-{Path(args.dataset).name}-{args.model}"
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out}: a file is in the way (expected a folder)")
    try:
        report = tune(
            args.model, args.dataset, args.trials, out, timeout=args.timeout, storage=args.storage,
            study_name=args.study, jobs=args.jobs, space=args.space, seeds=_seeds(args.seeds) if args.seeds else (),
            data_root=args.data_root, overrides=args.sets, epochs=args.epochs, pruner=args.pruner,
            pruner_warmup=args.pruner_warmup, sampler_seed=args.sampler_seed, plots=not args.no_plots,
            progress=True,
        )
    except KeyboardInterrupt:
        print(f"\ndhmrec: interrupted; finished trials are kept in the study: run the same command to continue",
              file=sys.stderr)
        return 130
    print(f"{report['n_trials']} trials ({report['states']})")
    if report["best_params"] is not None:
        test = report["best_test"]
        cells = "  ".join(f"{k} {test[k]['mean']:.4f} ± {test[k]['std']:.4f}" for k in ("recall@20", "ndcg@20")
                          if k in test)
        print(f"best: trial {report['best_trial']} {report['best_params']} "
              f"({report['selected_on']} {report['best_value']:.4f}); test {cells}")
    print(f"report: {out / 'tune.md'}")
    return 0
