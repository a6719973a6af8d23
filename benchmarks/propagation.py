"""Speed of the propagation layer and the BPR sampler on the real Amazon Baby training graph.

    python -m benchmarks.propagation [--data-root ../shared/data] [--repeats 20]

Times a 2-layer LightGCN forward plus backward (64-d) through every sparse path
``LightGCNConv`` supports, side by side in one run, against a plain
``torch.sparse.mm`` over a COO adjacency (what the reference toolbox does), and
one epoch of BPR triplet sampling. Writes ``benchmarks/results/propagation.{json,md}``.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Callable, Dict

import torch

from dhmrec_pyg import files as dfiles
from dhmrec_pyg.data import load_mmrec
from dhmrec_pyg.nn import (
    LightGCNConv,
    SparseAdjacency,
    bipartite_to_homogeneous,
    normalized_adjacency,
    sym_norm_weights,
)
from dhmrec_pyg.training.sampler import BPRSampler
from dhmrec_pyg.training.trainer import environment

HERE = Path(__file__).resolve().parent


def _time(fn: Callable[[], None], repeats: int) -> float:
    fn()  # warm-up
    runs = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - start)
    return statistics.median(runs)


def _time_interleaved(paths: Dict[str, Callable[[], None]], repeats: int) -> Dict[str, float]:
    """Median seconds per call of each path, measured round-robin so that load on a
    shared machine affects every path alike."""
    runs: Dict[str, list] = {name: [] for name in paths}
    for fn in paths.values():
        fn()  # warm-up
    for _ in range(repeats):
        for name, fn in paths.items():
            start = time.perf_counter()
            fn()
            runs[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in runs.items()}


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and write its result files."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data-root", default=str(HERE.parent.parent / "shared" / "data"))
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = p.parse_args(argv)
    folder = Path(args.data_root) / "baby"
    if not folder.is_dir():
        print(f"skipped: {folder} not found (the real Baby interactions are needed)")
        return 0
    if args.threads:
        torch.set_num_threads(args.threads)
    data = load_mmrec(folder)
    ui = data["user", "interacts", "item"].edge_index
    n_u, n_i = int(data["user"].num_nodes), int(data["item"].num_nodes)
    n = n_u + n_i
    torch.manual_seed(0)
    x = torch.randn(n, 64, requires_grad=True)
    conv = LightGCNConv()
    full = bipartite_to_homogeneous(ui, n_u, n_i)
    weight = sym_norm_weights(full, n)
    coo_ref = torch.sparse_coo_tensor(torch.stack([full[1], full[0]]), weight, (n, n)).coalesce()
    adjs: Dict[str, object] = {
        "csr_symmetric (default)": SparseAdjacency(normalized_adjacency(ui, n_u, n_i, layout="csr"), symmetric=True),
        "csr": normalized_adjacency(ui, n_u, n_i, layout="csr"),
        "coo": normalized_adjacency(ui, n_u, n_i, layout="coo"),
    }
    try:
        from torch_sparse import SparseTensor  # type: ignore

        adjs["torch_sparse.SparseTensor"] = SparseTensor(row=full[1], col=full[0], value=weight,
                                                         sparse_sizes=(n, n))
    except ImportError:
        pass

    def two_layers(step: Callable[[torch.Tensor], torch.Tensor]) -> Callable[[], None]:
        def run() -> None:
            x.grad = None
            out = step(step(x))
            out.sum().backward()
        return run

    paths: Dict[str, Callable[[], None]] = {
        "reference: torch.sparse.mm on COO": two_layers(lambda h: torch.sparse.mm(coo_ref, h)),
        "edge_index (MessagePassing scatter)": two_layers(lambda h: conv(h, full, weight)),
    }
    for name, adj in adjs.items():
        paths[name] = two_layers(lambda h, a=adj: conv(h, a))
    timings = _time_interleaved(paths, args.repeats)
    ref = timings["reference: torch.sparse.mm on COO"]

    sampler = BPRSampler(ui, n_i, batch_size=2048)
    gen = torch.Generator().manual_seed(0)
    sample_s = _time(lambda: [None for _ in sampler.epoch(gen)], max(3, args.repeats // 4))

    env = environment()
    result = {
        "command": "python -m benchmarks.propagation " + " ".join(argv or sys.argv[1:]),
        "graph": {"users": n_u, "items": n_i, "train_interactions": int(ui.size(1))},
        "seconds_two_layer_forward_backward": timings,
        "ratio_to_reference": {k: v / ref for k, v in timings.items()},
        "sampler_seconds_per_epoch": sample_s,
        "environment": env,
    }
    dfiles.write_json(HERE / "results" / "propagation.json", result)
    lines = ["# Propagation layer on the real Baby training graph", "",
             f"Command: `{result['command']}`", "",
             f"{n_u} users, {n_i} items, {ui.size(1)} training interactions; 2 layers, 64-d, forward + backward, "
             f"median of {args.repeats} rounds, paths interleaved.", "", "| path | ms | time / reference |", "|---|---|---|"]
    for k, v in sorted(timings.items(), key=lambda kv: kv[1]):
        lines.append(f"| {k} | {v * 1000:.1f} | {v / ref:.2f} |")
    lines += ["", f"BPR sampler, one epoch of Baby triplets (batch 2048): {sample_s * 1000:.1f} ms.", "",
              f"Machine: {env['cpu']}, {env['cores']} cores ({env['torch_threads']} torch threads), GPU {env['gpu']}; "
              f"torch {env['torch']}, PyG {env['torch_geometric']}."]
    dfiles.write_text(HERE / "results" / "propagation.md", "\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
