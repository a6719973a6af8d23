"""How much LGMRec's test figures move when evaluation draws Gumbel noise, as its public code does.

    python -m benchmarks.eval_noise --run benchmarks/runs/tiktok_lgmrec_acc/grid_0 --draws 5

The library evaluates LGMRec with the noise-free softmax of the hyperedge
memberships. LGMRec's public code keeps drawing Gumbel noise and membership
dropout at evaluation, so each of its reported figures is one draw. This loads
a finished run's best weights, evaluates it once deterministically and
``--draws`` times with the membership modules in training mode (everything else
in eval mode), and writes ``eval_noise_<run>.{json,md}`` to ``--out``.
"""
from __future__ import annotations

import argparse
import shlex
import statistics
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional

HERE = Path(__file__).resolve().parent
METRICS = ("recall@10", "recall@20", "ndcg@10", "ndcg@20")


def evaluate_draws(run: Path, draws: int, seed: int = 0) -> Dict[str, Any]:
    """Deterministic and ``draws`` noisy evaluations of the run's best weights."""
    import torch

    from dhmrec_pyg.nn.hypergraph import HyperedgeMembership
    from dhmrec_pyg.training.run import load_run
    from dhmrec_pyg.training.trainer import make_evaluators

    cfg, _, model, data = load_run(run, device="cpu")
    memberships = [m for m in model.modules() if isinstance(m, HyperedgeMembership)]
    if not memberships:
        raise SystemExit(f"{run}: model {cfg.model!r} has no hyperedge memberships (LGMRec runs only)")
    evaluators = make_evaluators(data, cfg)

    @torch.no_grad()
    def once(noisy: bool) -> Dict[str, Dict[str, float]]:
        model.eval()
        for m in memberships:
            m.train(noisy)
        users, items = model.embeddings()
        return {s: {k: float(v) for k, v in evaluators[s].evaluate(users, items, score_fn=model.score).items()
                    if k in METRICS} for s in ("val", "test")}

    torch.manual_seed(seed)
    noisy = [once(True) for _ in range(draws)]
    return {"run": str(run), "model": cfg.model, "dataset": cfg.dataset, "draws": draws, "seed": seed,
            "deterministic": once(False), "noisy": noisy}


def markdown(result: Dict[str, Any]) -> str:
    """The result as a Markdown table (test split)."""
    det, noisy = result["deterministic"]["test"], [d["test"] for d in result["noisy"]]
    lines = [f"# {result['model']} on {result['dataset']}: evaluation with and without Gumbel noise", "",
             f"Command: `{result['command']}`", "",
             f"Run `{result['run']}`, best weights; {result['draws']} noisy draws (torch seed "
             f"{result['seed']}). Test split.", "",
             "| evaluation | " + " | ".join(METRICS) + " |", "|---|" + "---|" * len(METRICS)]
    lines.append("| deterministic (this library) | " + " | ".join(f"{det[k]:.4f}" for k in METRICS) + " |")
    for n, d in enumerate(noisy):
        lines.append(f"| noisy draw {n} | " + " | ".join(f"{d[k]:.4f}" for k in METRICS) + " |")
    lines.append("| noisy min-max | " + " | ".join(
        f"{min(d[k] for d in noisy):.4f}-{max(d[k] for d in noisy):.4f}" for k in METRICS) + " |")
    if len(noisy) > 1:
        lines.append("| noisy mean ± std | " + " | ".join(
            f"{statistics.fmean(d[k] for d in noisy):.4f} ± {statistics.stdev(d[k] for d in noisy):.4f}"
            for k in METRICS) + " |")
    env = result.get("environment")
    if env:
        from benchmarks.reproduce import machine_line

        lines += ["", f"Machine: {machine_line(env)}."]
    return "\n".join(lines) + "\n"


def main(argv: Optional[List[str]] = None) -> int:
    """Evaluate a finished LGMRec run with and without evaluation noise; write the result files."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--run", required=True, help="a finished LGMRec run folder (config.yaml, best.pt)")
    p.add_argument("--draws", type=int, default=5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=str(HERE / "results"))
    args = p.parse_args(argv)
    if args.draws < 1:
        p.error(f"--draws must be at least 1, got {args.draws}")
    from benchmarks.reproduce import write_result_files
    from dhmrec_pyg.training.trainer import environment

    result = evaluate_draws(Path(args.run), args.draws, args.seed)
    result["environment"] = environment()
    result["command"] = "python -m benchmarks.eval_noise " + " ".join(shlex.quote(a) for a in
                                                                       (sys.argv[1:] if argv is None else argv))
    name = f"eval_noise_{Path(args.run).parent.name}_{Path(args.run).name}"
    text = markdown(result)
    write_result_files(Path(args.out), name, result, text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
