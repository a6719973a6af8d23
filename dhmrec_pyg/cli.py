"""Command line ``dhmrec``, one subcommand per task:

* ``dhmrec train``: train a model and report its test metrics at the best validation epoch
  (``--resume RUN_FOLDER`` continues a run, ``--seeds`` repeats it, ``--grid`` searches
  hyper-parameters, ``--nproc`` spreads it over processes);
* ``dhmrec evaluate RUN_FOLDER``: validation and test metrics of a saved run's best checkpoint;
* ``dhmrec recommend RUN_FOLDER``: each user's top-K items, written as CSV or Parquet;
* ``dhmrec plot RUN_FOLDER``: a run's (or a grid's) figures as PNG files;
* ``dhmrec prepare INTERACTIONS OUT_FOLDER``: your own interactions and item features turned into a
  dataset folder that ``train`` reads;
* ``dhmrec tune``: an Optuna search of a model's hyper-parameters on validation, with pruning,
  resumable studies and parallel workers.

Without a subcommand, ``dhmrec`` runs ``train`` (DHMRec on the built-in demo data).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Sequence

import numpy as np

# Only light modules at the top: torch and the models load inside main(), where Ctrl-C during
# start-up is a one-line exit.
from dhmrec_pyg.errors import ConfigError

if TYPE_CHECKING:
    from dhmrec_pyg.training.config import TrainConfig

DEFAULT_MODEL = "dhmrec"

#: How ``dhmrec train`` finds a data set (also in the README).
DATASET_RULE = (
    "Where --dataset NAME is found: 'demo' and 'synthetic-<profile>' are generated data (written under "
    "--data-root once); a path (with a '/') is that folder; a plain NAME is the folder ./NAME in the working "
    "directory or DATA_ROOT/NAME, and when both exist (two different folders) the command stops and names "
    "both: give the path of the one you mean (./NAME or DATA_ROOT/NAME)."
)


def _parser() -> argparse.ArgumentParser:
    from dhmrec_pyg.tuning.command import add_parser as add_tune_parser

    parser = argparse.ArgumentParser(
        prog="dhmrec",
        description="Train and evaluate DHMRec and its baselines (PyTorch Geometric).",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    _add_train_parser(sub)
    _add_evaluate_parser(sub)
    _add_recommend_parser(sub)
    _add_plot_parser(sub)
    add_tune_parser(sub)
    _add_prepare_parser(sub)
    return parser


def _add_train_parser(sub: Any) -> None:
    """``dhmrec train``'s options."""
    from dhmrec_pyg.models import MODELS

    train = sub.add_parser(
        "train",
        help="train a model and evaluate it (default: DHMRec on the built-in demo data)",
        description="Train a model with BPR, validate every epoch, early-stop on validation "
        "Recall@20, and report test metrics at the best validation epoch. Writes a run folder "
        "with config.yaml, history.csv, metrics.json, best.pt and checkpoint.pt (written after "
        "every epoch; continue a killed or interrupted run with --resume RUN_FOLDER), with the SHA-256 of "
        "best.pt and checkpoint.pt in weights.json, checked whenever they are read, and a fingerprint of the "
        "data set in config.yaml: --resume, evaluate and recommend refuse a changed data set "
        "(--allow-changed-data). " + DATASET_RULE,
    )
    train.add_argument("--model", choices=sorted(MODELS), default=None,
                       help=f"model to train (default: {DEFAULT_MODEL})")
    train.add_argument("--dataset", default=None,
                       help="'demo' (built-in synthetic data), a synthetic profile "
                       "(synthetic-baby, synthetic-sports, synthetic-clothing), a dataset name "
                       "under --data-root, or a folder in MMRec layout (default: demo); a NAME that is both "
                       "./NAME and DATA_ROOT/NAME is an error (see above)")
    train.add_argument("--data-root", default=None,
                       help="folder holding datasets by name, and where synthetic data is written "
                       "(default: ./data)")
    train.add_argument("--epochs", type=int, default=None, help="maximum epochs (default: 1000)")
    train.add_argument("--seed", type=int, default=None, help="random seed (default: 0)")
    train.add_argument("--seeds", default=None,
                       help="comma-separated seeds: repeat the run for each and report mean ± std")
    train.add_argument("--out", default=None,
                       help="run folder (default: runs/<dataset>-<model>-<time>)")
    train.add_argument("--overwrite", action="store_true",
                       help="replace the run in --out: the new run is built beside it and takes its place once "
                       "it has written its first checkpoint (stopped before that, the old run stays as it was)")
    train.add_argument("--resume", default=None, metavar="RUN_FOLDER",
                       help="continue the run in RUN_FOLDER from its last checkpoint, with the "
                       "run's own config.yaml (only --quiet, --device, --compile and --logger may be given with it); "
                       "on the CPU the result is identical to an uninterrupted run; a finished run is left as "
                       "it is; a run without a checkpoint starts over after moving its results to "
                       "RUN_FOLDER/previous-<time>/")
    train.add_argument("--allow-changed-data", action="store_true",
                       help="with --resume: continue even though the data set is not the one the run recorded")
    train.add_argument("--config", default=None,
                       help="YAML file with 'train:' and 'model:' sections; command-line options win")
    train.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                       help="override any option, e.g. --set num_layers=3 --set lr=0.0005 "
                       "(qualify as model.KEY or train.KEY when needed)")
    train.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2",
                       help="hyper-parameter grid (repeatable); the best point on validation is kept")
    train.add_argument("--device", default=None, help="'auto' (default), 'cpu', 'cuda', 'cuda:1'")
    train.add_argument("--quiet", action="store_true", help="no progress bar")
    train.add_argument("--logger", choices=["csv", "tensorboard"], default=None,
                       help="'csv' (default): history.csv; 'tensorboard': also TensorBoard event files in "
                       "RUN_FOLDER/tensorboard (needs the 'tensorboard' extra); same as --set logger=...; "
                       "may be given with --resume")
    train.add_argument("--compile", nargs="?", const="default", default=None, metavar="MODE",
                       help="compile the loss and its backward with torch.compile: MODE 'default' (the "
                       "value without MODE), 'reduce-overhead' (CUDA graphs on a GPU), 'max-autotune', or "
                       "'none' (eager, the default); same as --set compile=MODE; may be given with --resume")
    train.add_argument("--nproc", type=int, default=None, metavar="N",
                       help="train with N processes (PyTorch DDP, launched with torchrun: NCCL on "
                       "GPUs, one per process, gloo on the CPU); same as 'torchrun "
                       "--nproc_per_node=N -m dhmrec_pyg.cli train ...'")


def _add_evaluate_parser(sub: Any) -> None:
    """``dhmrec evaluate``'s options."""
    ev = sub.add_parser("evaluate", help="evaluate a saved run's best checkpoint on its splits",
                        description="Rebuild the model of RUN_FOLDER from its config.yaml, load "
                        "best.pt and print validation and test metrics as JSON.")
    ev.add_argument("run_folder", help="a folder written by 'dhmrec train'")
    ev.add_argument("--split", choices=["val", "test", "both"], default="both",
                    help="which split to evaluate (default: both)")
    ev.add_argument("--allow-changed-data", action="store_true",
                    help="evaluate even though the data set is not the one the run recorded")


def _add_plot_parser(sub: Any) -> None:
    """``dhmrec plot``'s options."""
    pl = sub.add_parser("plot", help="draw a run's figures as PNG files",
                        description="Learning curves (loss, validation Recall@20); for DHMRec, t-SNE "
                        "maps of item embeddings (paper Fig. 7, 8); for a grid folder, Recall@20 "
                        "against alpha_mm (Fig. 4) and the gamma_dis x gamma_kl heat map (Fig. 5). "
                        "Needs the 'plot' extra.")
    pl.add_argument("run_folder", help="a run or grid folder written by 'dhmrec train'")
    pl.add_argument("--out", default=None, help="folder for the PNGs (default: RUN_FOLDER/plots)")
    pl.add_argument("--tsne-sample", type=int, default=1000,
                    help="items drawn for the t-SNE maps (default: 1000)")


def _add_prepare_parser(sub: Any) -> None:
    """``dhmrec prepare``'s options."""
    prep = sub.add_parser("prepare", help="turn your own interactions and features into a dataset folder",
                          description="Read interactions (CSV with , ; or tab, or Parquet) with any user "
                          "and item IDs, and per-modality item features keyed by item ID; map IDs to "
                          "dense integers, optionally k-core filter, split (MMRec's per-user rule or "
                          "chronological), and write an MMRec-layout folder that 'dhmrec train --dataset "
                          "FOLDER' reads. Prints what was kept, dropped and filled.")
    prep.add_argument("interactions", help="interactions file (.csv or .parquet)")
    prep.add_argument("out_folder", help="dataset folder to create (its name becomes the dataset name)")
    prep.add_argument("--user-col", default="user", help="user id column (default: user)")
    prep.add_argument("--item-col", default="item", help="item id column (default: item)")
    prep.add_argument("--timestamp-col", default=None, help="timestamp column (numbers or ISO 8601)")
    prep.add_argument("--features", action="append", default=[], metavar="MODALITY=PATH",
                      help="item features of one modality: .npz with arrays 'ids' and 'features', or a "
                      "CSV with the item id first (repeatable)")
    prep.add_argument("--feature-header", action=argparse.BooleanOptionalAction, default=None,
                      help="the CSV feature files' first line is a header (--feature-header) or data "
                      "(--no-feature-header); default: a header only when its first field names the item "
                      "column (id, item, item_id, itemid or --item-col)")
    prep.add_argument("--split", choices=["mmrec", "chronological"], default="mmrec",
                      help="split rule (default: mmrec; chronological needs --timestamp-col)")
    prep.add_argument("--seed", type=int, default=0, help="seed of the MMRec split (default: 0)")
    prep.add_argument("--k-core", type=int, default=0, help="keep users and items with >= K interactions (0: off)")
    prep.add_argument("--fill", choices=["mean", "zeros"], default="mean",
                      help="feature row for items that have none (default: mean)")
    prep.add_argument("--drop-cold-items", action="store_true",
                      help="drop items that have features but no interaction (default: keep them)")
    prep.add_argument("--text-file", default=None, help="CSV of item texts to encode as a modality")
    prep.add_argument("--text-col", default="text", help="text column of --text-file (default: text)")
    prep.add_argument("--text-model", default=None,
                      help="sentence-transformers model name or path (needs the 'text' extra)")
    prep.add_argument("--text-modality", default="text", help="modality name of encoded texts (default: text)")
    prep.add_argument("--overwrite", action="store_true", help="replace the dataset files of an existing folder")


def _fail(message: str) -> int:
    print(f"dhmrec: error: {message}", file=sys.stderr)
    return 2


def _resolve(args: argparse.Namespace) -> tuple[TrainConfig, Dict[str, Any], type, List[str]]:
    from dhmrec_pyg.models import MODELS
    from dhmrec_pyg.training.config import TrainConfig, load_yaml_config

    base = load_yaml_config(args.config) if args.config else {"train": {}, "model": {}}
    train_values = dict(base["train"])
    for key, attr in [("model", "model"), ("dataset", "dataset"), ("data_root", "data_root"),
                      ("epochs", "epochs"), ("seed", "seed"), ("device", "device"), ("compile", "compile"),
                      ("logger", "logger")]:
        value = getattr(args, attr)
        if value is not None:
            train_values[key] = value
    train_values.setdefault("model", DEFAULT_MODEL)
    if args.quiet:
        train_values["progress"] = False
    from dhmrec_pyg.training.config import build_dataclass

    cfg = build_dataclass(TrainConfig, train_values, "training")
    # --set may also change the model; resolve that first.
    for pair in args.sets:
        if pair.split("=", 1)[0].strip() in ("model", "train.model"):
            cfg = build_dataclass(TrainConfig, {**asdict(cfg), "model": pair.split("=", 1)[1].strip()}, "training")
    if cfg.model not in MODELS:
        raise ConfigError(f"model: unknown model {cfg.model!r}; choose one of {', '.join(sorted(MODELS))}")
    if cfg.epochs < 1:
        raise ConfigError(f"--epochs must be >= 1, got {cfg.epochs}")
    config_class = MODELS[cfg.model].config_class
    return cfg, dict(base["model"]), config_class, list(args.sets)


def _check_writable(folder: Path, option: str) -> None:
    """Create ``folder`` if needed and prove it writable (mode bits too: root ignores them)."""
    def writable(path: Path) -> bool:
        return bool(path.stat().st_mode & 0o222) and os.access(path, os.W_OK)

    try:
        existing = next(p for p in [folder, *folder.parents] if p.exists())
        if not writable(existing):
            raise PermissionError(13, "Permission denied")
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / ".write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise ConfigError(f"{option} {folder}: not writable ({exc.strerror or exc})") from None


def _on_main(check: Any, *args: Any) -> None:
    """Run a check that may write probes on rank 0 only; every rank raises its ConfigError.

    In a single process this is just ``check(*args)``.
    """
    from dhmrec_pyg.training import distributed as ddist

    if not ddist.current().enabled:
        check(*args)
        return
    message = None
    if ddist.is_main_process():
        try:
            check(*args)
        except ConfigError as exc:
            message = str(exc)
    message = ddist.broadcast_text(message)
    if message is not None:
        raise ConfigError(message)


def without_option(argv: Sequence[str], option: str) -> List[str]:
    """``argv`` without ``option VALUE`` / ``option=VALUE`` (e.g. ``--nproc``), the rest in order."""
    out: List[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg == option:
            skip = True
        elif not arg.startswith(f"{option}="):
            out.append(arg)
    return out


def _check_out(out: Path, overwrite: bool, single: bool = True) -> None:
    """One-line errors, before any work, for a run folder that cannot take a new run (``single``:
    ``out`` is one run's folder, not a --seeds/--grid folder of run folders)."""
    from dhmrec_pyg.training.folder import check_replaceable

    for parent in [out, *out.parents]:
        if parent.exists() and not parent.is_dir():
            raise ConfigError(f"--out {out}: a file is in the way ({parent} is not a folder)")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise ConfigError(
            f"--out {out}: folder already holds a run; pass --resume {out} to continue it "
            "or --overwrite to replace it"
        )
    if overwrite and single and check_replaceable(out):
        _check_writable(out.parent, "--out")  # where the new run is built before it takes the old one's place
    _check_writable(out, "--out")


#: ``dhmrec train`` options that define a run; ``--resume`` takes them from the run's config.yaml.
_RUN_DEFINING = ("model", "dataset", "data_root", "epochs", "seed", "seeds", "out", "config")


def _check_resume(args: argparse.Namespace) -> Path:
    """Validate ``--resume RUN_FOLDER`` and the options given with it."""
    given = [f"--{k.replace('_', '-')}" for k in _RUN_DEFINING if getattr(args, k) is not None]
    given += ["--set"] * bool(args.sets) + ["--grid"] * bool(args.grid) + ["--overwrite"] * args.overwrite
    if given:
        raise ConfigError(
            f"--resume continues a run with its own config.yaml; it cannot be combined with {given[0]}"
        )
    run = Path(args.resume)
    if not run.exists():
        raise ConfigError(f"--resume {run}: no such run folder")
    if not run.is_dir():
        raise ConfigError(f"--resume {run}: a file is in the way (expected a run folder)")
    if not (run / "config.yaml").is_file():
        hint = (" (a --seeds/--grid folder: resume its seed_*/grid_* runs one by one)"
                if any(run.glob("seed_*")) or any(run.glob("grid_*")) else "")
        raise ConfigError(f"--resume {run}: no config.yaml, not a run folder written by 'dhmrec train'{hint}")
    _check_writable(run, "--resume")
    return run


def _resume(args: argparse.Namespace) -> int:
    """``dhmrec train --resume RUN_FOLDER``."""
    from dhmrec_pyg.training.checkpoint import CHECKPOINT_NAME, CheckpointError, load_checkpoint
    from dhmrec_pyg.training.config import IN_MEMORY
    from dhmrec_pyg.training.fingerprint import check_fingerprint
    from dhmrec_pyg.training.run import build_run, read_run, run_data
    from dhmrec_pyg.training import distributed as ddist
    from dhmrec_pyg.training.trainer import Trainer

    _on_main(_check_resume, args)
    run = Path(args.resume)
    main_rank = ddist.is_main_process()
    overrides: Dict[str, Any] = {}
    if args.quiet:
        overrides["progress"] = False
    if args.device is not None:
        overrides["device"] = args.device
    if args.compile is not None:  # how the steps run, not what they compute: not part of the run's identity
        overrides["compile"] = args.compile
    if args.logger is not None:  # how the run is watched: not part of its identity either
        overrides["logger"] = args.logger
    cfg, model_cfg, source = read_run(run, **overrides)
    if source is not None and source["dataset"] == IN_MEMORY:
        raise ConfigError(f"--resume {run}: the run was trained on a graph handed in from Python; resume it "
                          "from Python: Trainer(model, graph, config, out_dir).fit(resume=True)")
    if (run / "metrics.json").is_file():
        return _finished(run, main_rank)
    if (run / CHECKPOINT_NAME).is_file():
        try:
            load_checkpoint(run / CHECKPOINT_NAME)  # a damaged checkpoint fails here, before data loading
        except CheckpointError as exc:
            raise CheckpointError(f"{exc}; to train the run again from its start, move {CHECKPOINT_NAME} out of "
                                  "the folder (--resume then keeps the results found in previous-<time>/)") from None
    elif main_rank:
        print(f"{run}: no checkpoint yet (stopped before its first epoch ended); starting it over",
              file=sys.stderr)
    if cfg.num_threads > 0:
        import torch

        torch.set_num_threads(cfg.num_threads)
    with ddist.main_first():  # rank 0 writes the data and KNN caches, the others read them
        graph = run_data(run, cfg, source)
        # Another data set fails here, before the model is built.
        check_fingerprint((source or {}).get("fingerprint"), graph, run / "config.yaml", args.allow_changed_data)
        data, model = build_run(cfg, model_cfg, graph)
    result = Trainer(model, data, cfg, run, model_cfg).fit(resume=True, allow_changed_data=args.allow_changed_data)
    if main_rank:
        _print_result(result, run)
    return 0


def _finished(run: Path, main_rank: bool) -> int:
    """``dhmrec train --resume`` of a finished run: check its ``best.pt`` (restored from the
    checkpoint when damaged, saying so), change nothing else, and report its results."""
    from dhmrec_pyg.training.folder import finished_best

    _, note = finished_best(run, write=main_rank)
    if main_rank:
        if note is not None:
            print(f"dhmrec: {note}", file=sys.stderr)
        kept = "" if note is not None else ", its results are left as they are"
        print(f"{run}: the run is finished (metrics.json); nothing to resume{kept}", file=sys.stderr)
        _print_result(json.loads((run / "metrics.json").read_text(encoding="utf-8")), run)
    return 0


def _print_result(result: Dict[str, Any], out: Path) -> None:
    test = result["test"]
    print(
        f"{result['model']} on {result['dataset']}: best epoch {result['best_epoch']} "
        f"(valid {result['valid_metric']} {result['valid'][result['valid_metric']]:.4f}); test "
        f"R@10 {test['recall@10']:.4f}  R@20 {test['recall@20']:.4f}  "
        f"N@10 {test['ndcg@10']:.4f}  N@20 {test['ndcg@20']:.4f}  "
        f"({result['seconds_per_epoch']:.2f} s/epoch)"
    )
    print(f"run folder: {out}")


def cmd_train(args: argparse.Namespace, argv: Sequence[str] = ("train",)) -> int:
    """``dhmrec train``; ``argv``: the command line (``train`` and its options), which ``--nproc``
    relaunches under torchrun."""
    from dhmrec_pyg.training import distributed as ddist
    from dhmrec_pyg.training.run import parse_grid, parse_seeds, run_grid, run_once, run_seeds

    if args.nproc is not None:
        if args.nproc < 1:
            raise ConfigError(f"--nproc must be >= 1, got {args.nproc}")
        if args.nproc > 1 and ddist.env_world_size() <= 1:
            return ddist.launch(args.nproc, without_option(argv, "--nproc"))
    if args.resume is not None:
        return _resume(args)
    if args.allow_changed_data:
        raise ConfigError("--allow-changed-data goes with --resume (a new run records the data it trains on)")
    from dhmrec_pyg.training.config import apply_overrides

    cfg, model_values, config_class, sets = _resolve(args)
    cfg, model_cfg = apply_overrides(cfg, model_values, config_class, sets)
    seeds = parse_seeds(args.seeds) if args.seeds else []
    grid = parse_grid(args.grid) if args.grid else {}
    out = Path(args.out) if args.out else Path("runs") / (
        f"{Path(cfg.dataset).name}-{cfg.model}-{time.strftime('%Y%m%d-%H%M%S')}"
    )
    out = Path(ddist.broadcast_text(str(out)) or out)  # rank 0's timestamp names the folder
    _on_main(_check_out, out, args.overwrite, not (grid or seeds))
    from dhmrec_pyg.training.run import load_data

    with ddist.main_first():
        data = load_data(cfg)
    if not ddist.is_main_process():  # rank > 0: train, write and print nothing
        if grid:
            run_grid(cfg, model_values, config_class, grid, out, sets, seeds, data)
        elif seeds:
            run_seeds(cfg, model_cfg, seeds, out, data)
        else:
            run_once(cfg, model_cfg, out, data)
        return 0
    if grid:
        report = run_grid(cfg, model_values, config_class, grid, out, sets, seeds, data)
        print(f"grid of {len(report['rows'])} points; best on valid {cfg.valid_metric}: "
              f"{report['best_run']} {report['best_params']}")
        for row in report["rows"]:
            print("  " + "  ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()))
        if "seeds_summary" in report:
            _print_summary(report["seeds_summary"])
        print(f"run folder: {out}")
    elif seeds:
        _print_summary(run_seeds(cfg, model_cfg, seeds, out, data))
        print(f"run folder: {out}")
    else:
        _print_result(run_once(cfg, model_cfg, out, data), out)
    return 0


def _print_summary(summary: Dict[str, Any]) -> None:
    test = summary["test"]
    cells = [f"{k} {test[k]['mean']:.4f} ± {test[k]['std']:.4f}"
             for k in ("recall@10", "recall@20", "ndcg@10", "ndcg@20")]
    print(f"test over seeds {summary['seeds']}: " + "  ".join(cells))


def cmd_evaluate(args: argparse.Namespace) -> int:
    """``dhmrec evaluate RUN_FOLDER``."""
    from dhmrec_pyg.training.run import load_run
    from dhmrec_pyg.training.trainer import evaluate_model, make_evaluators

    cfg, _, model, data = load_run(args.run_folder, allow_changed_data=args.allow_changed_data)
    evaluators = make_evaluators(data, cfg)
    splits = ["val", "test"] if args.split == "both" else [args.split]
    print(json.dumps({s: evaluate_model(model, evaluators[s]) for s in splits}, indent=2))
    return 0


def _add_recommend_parser(sub: Any) -> None:
    """The ``dhmrec recommend`` subcommand and its options, on the subparsers ``sub``."""
    rec = sub.add_parser("recommend", help="write top-K recommendations of a saved run",
                         description="Score all items for each user with the run's best checkpoint, "
                         "exclude the user's training items, and write the top K as CSV or Parquet, one "
                         "row per (user, rank): columns user, rank, item, score, and for a data set made "
                         "by 'dhmrec prepare' also original_user, original_item (its original ids). A "
                         "training item is never recommended: a user with fewer than K other items gets "
                         "all of them (fewer rows), with a warning. Items known only through their "
                         "features can be recommended when the model has a multimodal branch.")
    rec.add_argument("run_folder", help="a folder written by 'dhmrec train'")
    rec.add_argument("--k", type=int, default=20, help="items per user (default: 20)")
    rec.add_argument("--users", default=None,
                     help="file with one user id per line (default: all users). For a data set made by "
                     "'dhmrec prepare' the ids are its original ids (unless --internal-ids); ids that are "
                     "not users of the data set are skipped with a warning giving their count and the "
                     "first few (an error when none is known)")
    rec.add_argument("--users-header", action=argparse.BooleanOptionalAction, default=None,
                     help="the --users file has (or has not) a header line; default: its first line is a "
                     "header only when it is user, userID, user_id or original_id")
    rec.add_argument("--internal-ids", action="store_true",
                     help="the --users file holds the internal integer ids, also for a data set with "
                     "original ids")
    rec.add_argument("--output", default=None,
                     help="output .csv or .parquet (default: RUN_FOLDER/recommendations_top<K>.csv)")
    rec.add_argument("--faiss", choices=["auto", "yes", "no"], default="auto",
                     help="search a faiss inner-product index instead of a dense score matrix "
                     "(auto: for catalogues of 100,000 items or more)")
    rec.add_argument("--allow-changed-data", action="store_true",
                     help="recommend even though the data set is not the one the run recorded")


def cmd_recommend(args: argparse.Namespace) -> int:
    """``dhmrec recommend RUN_FOLDER``."""
    import warnings

    from dhmrec_pyg.recommend import ShortListWarning, dataset_original_ids, recommend, write_recommendations
    from dhmrec_pyg.training.run import load_run

    run = Path(args.run_folder)
    output = Path(args.output) if args.output else run / f"recommendations_top{args.k}.csv"
    if output.suffix not in (".csv", ".parquet"):
        raise ConfigError(f"--output {output}: use a .csv or .parquet file name")
    if args.k < 1:
        raise ConfigError(f"--k must be >= 1, got {args.k}")
    if args.users and not Path(args.users).is_file():
        raise ConfigError(f"--users {args.users}: no such file")
    loaded = load_run(run, allow_changed_data=args.allow_changed_data)
    model, original = loaded.model, dataset_original_ids(loaded.data)
    users = _recommend_users(args, original.user_index if original is not None else None)
    use_faiss = {"auto": None, "yes": True, "no": False}[args.faiss]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ShortListWarning)
        u, items, scores = recommend(model, model.train_edge_index, args.k, users, use_faiss=use_faiss)
    for w in caught:  # a short list is news for the user; anything else goes on as it came
        if issubclass(w.category, ShortListWarning):
            print(f"dhmrec: warning: {w.message}", file=sys.stderr)
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    write_recommendations(output, u, items, scores, original)
    rows = int((items >= 0).sum())
    print(f"top-{args.k} items for {len(u)} users written to {output} ({rows} rows)")
    return 0


def _recommend_users(args: argparse.Namespace, user_index: Optional[Dict[str, int]]) -> Optional[np.ndarray]:
    """The internal ids of the users of ``dhmrec recommend --users`` (``None``: all users); unknown
    original ids are reported on stderr, or are an error when no id of the file is known."""
    from dhmrec_pyg.recommend import read_user_file

    if not args.users:
        return None
    ids = None if args.internal_ids else user_index
    found = read_user_file(args.users, header=args.users_header, ids=ids)
    if found.unknown:
        first = ", ".join(repr(t) for t in found.unknown[:5])
        what = f"{len(found.unknown)} of {len(found.unknown) + found.users.size} ids are not users of the data set"
        if found.users.size == 0:
            raise ConfigError(f"--users {found.path}: {what} (first: {first}); to give internal integer ids "
                              "add --internal-ids")
        print(f"dhmrec: warning: --users {found.path}: {what}, skipped (first: {first})", file=sys.stderr)
    return found.users


def cmd_prepare(args: argparse.Namespace) -> int:
    """``dhmrec prepare INTERACTIONS OUT_FOLDER``."""
    from dhmrec_pyg.data import prepare_dataset

    features = {}
    for spec in args.features:
        name, sep, path = spec.partition("=")
        if not sep or not name.strip() or not path.strip():
            raise ConfigError(f"--features expects MODALITY=PATH, got {spec!r}")
        features[name.strip()] = path.strip()
    try:
        report = prepare_dataset(
            args.interactions, args.out_folder, user_col=args.user_col, item_col=args.item_col,
            timestamp_col=args.timestamp_col, features=features or None, split=args.split,
            seed=args.seed, k_core=args.k_core, fill=args.fill, keep_cold_items=not args.drop_cold_items,
            text_file=args.text_file, text_col=args.text_col, text_model=args.text_model,
            text_modality=args.text_modality, overwrite=args.overwrite, feature_header=args.feature_header,
        )
    except ImportError as exc:
        raise ConfigError(str(exc)) from None
    print(report)
    return 0


def cmd_plot(args: argparse.Namespace) -> int:
    """``dhmrec plot RUN_FOLDER``."""
    from dhmrec_pyg.plot import plot_run

    paths = plot_run(args.run_folder, args.out, tsne_sample=args.tsne_sample)
    for path in paths:
        print(path)
    return 0


def cmd_tune(args: argparse.Namespace) -> int:
    """``dhmrec tune`` (:mod:`dhmrec_pyg.tuning`)."""
    from dhmrec_pyg.tuning import command as tune_command

    return tune_command.run(args)


def main(argv: Optional[List[str]] = None) -> int:
    """Entry point of the ``dhmrec`` command."""
    try:
        return _main(argv)
    except KeyboardInterrupt:  # during start-up (loading torch, the data, the model), or a second Ctrl-C
        print("\ndhmrec: interrupted", file=sys.stderr)
        return 130


def _main(argv: Optional[List[str]]) -> int:
    """:func:`main`, but for Ctrl-C outside training."""
    parser = _parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv:
        argv = ["train"]
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    from dhmrec_pyg.data import DataError
    from dhmrec_pyg.training.fingerprint import DataChangedError
    from dhmrec_pyg.training.trainer import NonFiniteLossError, TrainingInterrupted
    from dhmrec_pyg.training.weights import WeightsError  # a CheckpointError is one

    from dhmrec_pyg.training import distributed as ddist

    try:
        if args.command == "train" and ddist.env_world_size() > 1:
            ddist.init_from_env(args.device or "auto")  # under torchrun
        if args.command == "train":
            return cmd_train(args, argv)
        commands = {"evaluate": cmd_evaluate, "recommend": cmd_recommend, "plot": cmd_plot, "prepare": cmd_prepare,
                    "tune": cmd_tune}
        return commands[args.command](args)
    except DataChangedError as exc:
        flag = "; pass --allow-changed-data to use it anyway" if hasattr(args, "allow_changed_data") else ""
        return _fail(f"{exc}{flag}")
    except (ConfigError, DataError, WeightsError) as exc:
        return _fail(str(exc))
    except NonFiniteLossError as exc:
        print(f"dhmrec: error: {exc}", file=sys.stderr)
        return 1
    except TrainingInterrupted as exc:
        print(f"dhmrec: {exc}", file=sys.stderr)
        print(f"resume with: dhmrec train --resume {exc.run_dir}", file=sys.stderr)
        return 130
    finally:
        ddist.shutdown()


if __name__ == "__main__":
    sys.exit(main())
