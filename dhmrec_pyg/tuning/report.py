"""What a tuning leaves: ``tune.json``, ``tune.md`` and the Optuna plots."""
from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from dhmrec_pyg import files as dfiles

#: Test metrics shown in ``tune.md``.
SHOWN = ("recall@10", "recall@20", "ndcg@10", "ndcg@20")


def _finite(value: Any) -> Optional[float]:
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None


def trial_row(trial: Any) -> Dict[str, Any]:
    """One trial for ``tune.json``: number, state, params, best validation value and more.

    ``best_value`` is the objective of a finished trial, and the best validation value it
    reported before it was pruned or failed otherwise (``None`` without any epoch).
    """
    attrs = trial.user_attrs
    reported = [v for v in trial.intermediate_values.values() if _finite(v) is not None]
    best = trial.value if trial.state.name == "COMPLETE" else attrs.get("best_value", max(reported, default=None))
    row: Dict[str, Any] = {
        "number": trial.number,
        "state": trial.state.name,
        "params": dict(trial.params),
        "best_value": _finite(best),
        "epochs_reported": len(trial.intermediate_values),
        "run_dir": attrs.get("run_dir"),
    }
    for key in ("best_epoch", "epochs_run", "test", "error", "retry_of", "duplicate_of"):
        if key in attrs:
            row[key] = attrs[key]
    if trial.datetime_start and trial.datetime_complete:
        row["seconds"] = (trial.datetime_complete - trial.datetime_start).total_seconds()
    return row


def best_test(best: Dict[str, Any], summary: Optional[Dict[str, Any]]) -> Dict[str, Dict[str, float]]:
    """The best point's test metrics as ``{metric: {mean, std}}``: over the seeds of
    ``summary`` (:func:`~dhmrec_pyg.training.run.summarise`), or the best trial's own run."""
    if summary is not None:
        return {k: {"mean": v["mean"], "std": v["std"]} for k, v in summary["test"].items()}
    return {k: {"mean": float(v), "std": 0.0} for k, v in best.get("test", {}).items()}


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) >= 1e-3 or value == 0 else f"{value:g}"
    return "" if value is None else str(value)


def _trials_table(report: Dict[str, Any]) -> List[str]:
    names = list(report["space"])
    metric = report["selected_on"].split()[-1]
    head = ["trial", "state", *names, f"valid {metric}", "best epoch", "epochs", f"test {metric}", "note"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in report["trials"]:
        note = row.get("error") or (f"retry of trial {row['retry_of']}" if "retry_of" in row else "")
        note = note or (f"same point as trial {row['duplicate_of']}" if "duplicate_of" in row else "")
        cells = [row["number"], row["state"].lower(), *[row["params"].get(n) for n in names], row["best_value"],
                 row.get("best_epoch"), row.get("epochs_run", row["epochs_reported"]),
                 row.get("test", {}).get(metric), note.replace("|", "/").replace("\n", " ")]
        lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    return lines


def markdown(report: Dict[str, Any]) -> str:
    """``tune.md``: the budget, the space, the best point and its test metrics, every trial."""
    budget = report["budget"]
    lines = [
        f"# Tuning {report['model']} on {report['dataset']}",
        "",
        f"Study `{report['study']}` ({report['storage']}): {report['n_trials']} finished-or-pruned trials "
        f"({report['states'] or 'none'}); budget {budget['trials']} trials"
        + (f", timeout {budget['timeout']} s" if budget["timeout"] else "")
        + f", at most {budget['epochs']} epochs each. Sampler {report['sampler']}; pruner {report['pruner']}. "
        f"Selected on {report['selected_on']} only; test metrics at each run's best validation epoch.",
        "",
        "| option | searched values |",
        "|---|---|",
        *[f"| {k} | {v} |" for k, v in report["space"].items()],
        "",
    ]
    if report["best_params"] is None:
        lines += ["No trial finished: no best point.", ""]
    else:
        seeds = report["best_seeds"]
        test = report["best_test"]
        shown = [m for m in SHOWN if m in test]
        lines += [
            f"Best: trial {report['best_trial']} {report['best_params']}, valid {report['best_value']:.4f}.",
            "",
            f"Test at the best validation epoch ({'seeds ' + ', '.join(map(str, seeds)) if seeds else 'its own run'}): "
            + ", ".join(f"{m} {test[m]['mean']:.4f} ± {test[m]['std']:.4f}" for m in shown),
            "",
        ]
    lines += ["## Trials", "", *_trials_table(report), ""]
    if report.get("plots") or report.get("plot_notes"):
        lines += ["## Plots", "", *[f"- {p}" for p in report.get("plots", [])],
                  *[f"- {n}" for n in report.get("plot_notes", [])], ""]
    return "\n".join(lines)


def _save(axes: Any, path: Path) -> None:
    import matplotlib.pyplot as plt
    import numpy as np

    fig = np.asarray(axes, dtype=object).flat[0].figure
    fig.tight_layout()
    dfiles.atomic_write(path, lambda fh: fig.savefig(fh, format="png", dpi=110))
    plt.close(fig)


def write_plots(study: Any, out_dir: Path, params: List[str], target: str) -> Tuple[List[str], List[str]]:
    """Optimisation history, parameter importances and one slice per parameter, as PNGs in
    ``out_dir``; the file names written and notes on the plots left out.

    Importances need two completed trials and two parameters; without a completed trial
    nothing is drawn. Needs matplotlib (the ``plot`` extra); without it every plot is a note.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        from optuna.visualization import matplotlib as ovm
    except ImportError:
        return [], ["plots skipped: matplotlib is not installed (pip install 'dhmrec_pyg[plot]')"]
    completed = [t for t in study.get_trials(deepcopy=False) if t.state.name == "COMPLETE"]
    if not completed:
        return [], ["plots skipped: no completed trial"]
    written, notes = [], []
    plots: List[Tuple[str, Any]] = [("history.png", lambda: ovm.plot_optimization_history(study, target_name=target))]
    if len(completed) < 2 or len(params) < 2:
        notes.append(f"importances skipped: {len(completed)} completed trial(s), {len(params)} parameter(s) "
                     "(needs at least 2 of each)")
    else:
        plots.append(("importances.png", lambda: ovm.plot_param_importances(study, target_name=target)))
    plots += [(f"slice_{p}.png", lambda p=p: ovm.plot_slice(study, params=[p], target_name=target)) for p in params]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name, draw in plots:
            try:
                _save(draw(), out_dir / name)
                written.append(name)
            except (ValueError, RuntimeError, ZeroDivisionError) as exc:  # e.g. a parameter that never varied
                notes.append(f"{name} skipped: {exc}")
    return written, notes
