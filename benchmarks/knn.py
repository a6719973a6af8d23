"""Build time, memory and recall of the item-item KNN graphs (``dhmrec_pyg.nn.knn_graph``).

    python -m benchmarks.knn [--sizes 10000,100000,1000000] [--dim 384] [--k 10] \
        [--methods exact,hnsw,ivf] [--sample 1000] [--threads 1] [--max-seconds 600] \
        [--out benchmarks/results] [--name knn]

For every catalogue size the library's own :func:`~dhmrec_pyg.nn.knn.knn_graph`
builds the full top-``k`` graph (every item queried) once per method of ``--methods``:
``method="exact"`` (faiss ``IndexFlatIP``), ``method="ivf"`` (the inverted-file
``IndexIVFFlat`` that ``method="auto"`` picks above ``EXACT_MAX_ITEMS``) and
``method="hnsw"`` (``IndexHNSWFlat``), all other arguments at the library's defaults.
The IVF build is always run in full, whatever its predicted time (it is the one
meant for large catalogues); its row names the lists, the lists probed and the
k-means training sample that the library chose for that size. Each build runs in a fresh Python
process that first generates the features; its wall time and its peak resident
memory *growth* over the process's size after data generation are recorded
(the peak is read from ``VmHWM`` after resetting it through
``/proc/self/clear_refs``; ``ru_maxrss`` elsewhere). The recall of the approximate
neighbours is measured against exact ones on a random sample of ``--sample``
items, whose exact neighbours are found by brute force (``IndexFlatIP``
searched with the sample only).

A build predicted (from the largest size built in full: exact ``n^2``, HNSW
``n log n``) to take longer than ``--max-seconds`` is not run in full; the first
size always is:

* exact: faiss's brute-force search is linear in the number of queries, so
  the index is built over all items, the ``--sample`` queries are searched
  (through the same BLAS path as a full search), and the time is extrapolated
  as ``prepare + search(sample) * items / sample``.
* hnsw: the index is built over all items with the library's parameters and
  builder (``knn_index_spec`` and ``build_knn_index`` of ``dhmrec_pyg.nn.knn``,
  which ``knn_graph`` uses) (or, if even that would not fit, over the largest
  prefix of the catalogue that does, then scaled by ``n log n``), the sample is
  searched, and the search time is scaled to all items. The recall is that of
  this index.
* memory: the measured growth for the index and the sample search, or, if
  larger, the line through the two largest sizes built in full.

Such rows say so (``"extrapolated": true`` and a ``note`` in the JSON, "extrapolated"
and the note in the Markdown). Rows built in full also carry the sample
extrapolation, as a check of it.

The features are synthetic and seeded (nothing is read from or written to the
repository besides the result files): a mixture of ``--centres`` Gaussian
centres, plus a per-item offset in a shared ``--latent``-dimensional subspace,
plus isotropic noise, so that neighbours are meaningful (low intrinsic
dimension within a cluster) like those of real text or image embeddings.
Writes ``<out>/<name>.json`` and ``<out>/<name>.md`` (``--name``, default ``knn``).
"""
from __future__ import annotations

import argparse
import contextlib
import inspect
import json
import math
import os
import resource
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
_CHUNK = 65_536  # rows generated per random stream: the data of a prefix does not depend on n
_MIB = 1024.0 * 1024.0


# --------------------------------------------------------------------------- data


def make_features(n: int, dim: int, centres: int = 256, latent: int = 16, noise: float = 0.3,
                  seed: int = 0) -> np.ndarray:
    """``[n, dim]`` float32 clustered features; row ``i`` is the same for every ``n > i``.

    ``x_i = c_{z_i} + B u_i + noise * e_i`` with centres ``c ~ N(0, I)``, a shared
    basis ``B`` (``dim x latent``, entries ``N(0, 1/latent)``), ``u_i ~ N(0, I_latent)``
    and ``e_i ~ N(0, I_dim)``.
    """
    head = np.random.default_rng([seed, 0])
    c = head.standard_normal((centres, dim), dtype=np.float32)
    basis = head.standard_normal((latent, dim), dtype=np.float32) / np.float32(math.sqrt(latent))
    out = np.empty((n, dim), dtype=np.float32)
    for j, start in enumerate(range(0, n, _CHUNK)):
        m = min(_CHUNK, n - start)
        rows = out[start:start + m]
        # one stream per component: the first m draws of each do not depend on m
        np.random.default_rng([seed, 1, j]).standard_normal((m, dim), dtype=np.float32, out=rows)
        rows *= np.float32(noise)
        rows += c[np.random.default_rng([seed, 2, j]).integers(0, centres, m)]
        rows += np.random.default_rng([seed, 3, j]).standard_normal((m, latent), dtype=np.float32) @ basis
    return out


def sample_items(n: int, sample: int, seed: int) -> np.ndarray:
    """The sorted query items whose neighbours are checked."""
    rng = np.random.default_rng([seed, 4, n])
    return np.sort(rng.choice(n, size=min(sample, n), replace=False)).astype(np.int64)


# --------------------------------------------------------------------------- memory


def _proc_kib(field: str) -> Optional[int]:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def _maxrss_kib() -> int:
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return r // 1024 if sys.platform == "darwin" else r  # bytes on macOS, KiB on Linux


class PeakMemory:
    """Peak resident-memory growth from now on (a fresh ``VmHWM`` when Linux lets us reset it)."""

    def __init__(self) -> None:
        self.reset = False
        try:
            with open("/proc/self/clear_refs", "w") as fh:
                fh.write("5")  # resets VmHWM to the current RSS
            self.reset = _proc_kib("VmHWM") is not None
        except OSError:
            pass
        self.base_kib = _proc_kib("VmRSS") if self.reset else _maxrss_kib()
        self.maxrss_before_kib = _maxrss_kib()

    def peak_growth_mib(self) -> float:
        peak = _proc_kib("VmHWM") if self.reset else _maxrss_kib()
        return max(0, peak - self.base_kib) / 1024.0


# --------------------------------------------------------------------------- worker


def _others(k: int, n: int, include_self: bool) -> int:
    return min(k - 1 if include_self else k, n - 1)


def exact_neighbours(normed: np.ndarray, queries: np.ndarray, others: int, faiss) -> List[set]:
    """Brute-force top-``others`` other items (inner product on ``normed``) of the query rows."""
    index = faiss.IndexFlatIP(normed.shape[1])
    index.add(normed)
    with _blas_search(faiss):
        _, labels = index.search(normed[queries], min(others + 1, normed.shape[0]))
    out = []
    for q, row in zip(queries.tolist(), labels.tolist()):
        out.append(set([j for j in row if j != q and j >= 0][:others]))
    return out


def graph_neighbours(edge_index: np.ndarray, queries: np.ndarray) -> List[set]:
    """Sources of the edges into each query item (``edge_index`` sorted by target), self excluded."""
    lo = np.searchsorted(edge_index[1], queries, side="left")
    hi = np.searchsorted(edge_index[1], queries, side="right")
    return [set(edge_index[0, a:b].tolist()) - {q} for q, a, b in zip(queries.tolist(), lo, hi)]


def recall(found: List[set], truth: List[set]) -> float:
    total = sum(len(t) for t in truth)
    return sum(len(f & t) for f, t in zip(found, truth)) / total if total else 1.0


def _worker(spec: dict) -> dict:
    """One measurement in this (fresh) process; returns a JSON-able dict."""
    threads = int(spec["threads"])
    import faiss
    import torch

    from dhmrec_pyg.nn.knn import knn_graph

    if threads:
        torch.set_num_threads(threads)  # knn_graph gives faiss torch's thread count
        faiss.omp_set_num_threads(threads)
    n, k, mode = int(spec["n"]), int(spec["k"]), spec["mode"]
    include_self = bool(inspect.signature(knn_graph).parameters["include_self"].default)
    t = time.perf_counter()
    x = make_features(n, spec["dim"], spec["centres"], spec["latent"], spec["noise"], spec["seed"])
    out: Dict[str, object] = {"items": n, "data_seconds": time.perf_counter() - t, "data_mib": x.nbytes / _MIB}
    queries = sample_items(n, spec["sample"], spec["seed"])
    others = _others(k, n, include_self)
    mem = PeakMemory()
    out["peak_reset"] = mem.reset
    if mode in ("exact", "hnsw", "ivf"):
        t = time.perf_counter()
        edges = knn_graph(x, k, method=mode)  # every other argument at the library default
        out["seconds"] = time.perf_counter() - t
        out["peak_mib"] = mem.peak_growth_mib()
        out["edges"] = int(edges.shape[1])
        edges = edges.numpy()
        found = graph_neighbours(edges, queries)
        del edges
    elif mode == "exact_sampled":
        out.update(_exact_sampled(x, queries, others, faiss))
        out["peak_mib"] = mem.peak_growth_mib()
        found = None
    elif mode == "hnsw_sampled":
        timing, found = _hnsw_sampled(x, queries, others, faiss, spec["hnsw"])
        out.update(timing)
        out["peak_mib"] = mem.peak_growth_mib()
    else:
        raise ValueError(f"unknown mode {mode!r}")
    normed = x.copy()
    faiss.normalize_L2(normed)
    t = time.perf_counter()
    truth = exact_neighbours(normed, queries, others, faiss)
    out["truth_seconds"] = time.perf_counter() - t
    del normed
    out["sample"] = int(len(queries))
    if found is not None:
        out["recall"] = recall(found, truth)
    # check the extrapolation used for the sizes not built in full
    if mode == "exact":
        out["extrapolation_check"] = _exact_sampled(x, queries, others, faiss)
    elif mode == "hnsw":
        check, found = _hnsw_sampled(x, queries, others, faiss, spec["hnsw"])
        check["recall"] = recall(found, truth)
        out["extrapolation_check"] = check
    return out


@contextlib.contextmanager
def _blas_search(faiss):
    """Brute-force search through BLAS blocks even for few queries.

    faiss scans the database query by query below ``distance_compute_blas_threshold``
    (about 8x slower per query here); a search of all items always takes the BLAS path.
    """
    old = faiss.cvar.distance_compute_blas_threshold
    faiss.cvar.distance_compute_blas_threshold = 0
    try:
        yield
    finally:
        faiss.cvar.distance_compute_blas_threshold = old


def _exact_sampled(x: np.ndarray, queries: np.ndarray, others: int, faiss) -> dict:
    """The steps of the exact build (the index of ``knn_index_spec(..., method="exact")``) with the
    sample as the only queries."""
    from dhmrec_pyg.nn.knn import build_knn_index, knn_index_spec

    n = x.shape[0]
    t = time.perf_counter()
    normed = x.copy()
    faiss.normalize_L2(normed)
    spec = knn_index_spec(n, others + 1, include_self=True, method="exact")
    index, resources = build_knn_index(spec, x.shape[1])  # (GPU resources, if any, live until return)
    index.add(normed)
    prepare = time.perf_counter() - t
    with _blas_search(faiss):  # the code path of the full search, whatever the sample size
        t = time.perf_counter()
        index.search(normed[queries], min(others + 1, n))
        search = time.perf_counter() - t
    return {"prepare_seconds": prepare, "sample_search_seconds": search, "queries": int(len(queries)),
            "seconds": prepare + search * n / len(queries)}


def _hnsw_sampled(x: np.ndarray, queries: np.ndarray, others: int, faiss, hp: dict):
    """The approximate build with the sample as the only queries: the HNSW index over all items, with
    the library's parameters ``hp`` (:func:`library_parameters`) and its index builder, then the
    sample searched. Returns the timings and the sample's neighbours (self dropped, as ``knn_graph``)."""
    from dhmrec_pyg.nn.knn import KNNIndexSpec, build_knn_index

    n = x.shape[0]
    t = time.perf_counter()
    normed = x.copy()
    faiss.normalize_L2(normed)
    spec = KNNIndexSpec("hnsw", "IndexHNSWFlat", False, min(others + 1, n), hnsw_m=hp["M"],
                        ef_construction=hp["efConstruction"], ef_search=hp["efSearch"])
    index, _ = build_knn_index(spec, x.shape[1])
    index.add(normed)
    build = time.perf_counter() - t
    t = time.perf_counter()
    _, labels = index.search(normed[queries], min(others + 1, n))
    search = time.perf_counter() - t
    found = [set([j for j in row if j != q and j >= 0][:others]) for q, row in zip(queries.tolist(), labels.tolist())]
    return {"build_seconds": build, "sample_search_seconds": search, "queries": int(len(queries)),
            "seconds": build + search * n / len(queries)}, found


def _run_worker(spec: dict) -> dict:
    env = dict(os.environ)
    if spec["threads"]:
        for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
            env[var] = str(spec["threads"])
    env["PYTHONPATH"] = str(REPO) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    proc = subprocess.run([sys.executable, "-m", "benchmarks.knn", "--worker", json.dumps(spec)],
                          cwd=REPO, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"benchmark worker {spec} failed:\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# --------------------------------------------------------------------------- library parameters


def library_parameters(k: int) -> dict:
    """The indexes and parameters ``knn_graph`` uses by default for a large catalogue
    (:func:`~dhmrec_pyg.nn.knn.knn_index_spec`, which ``knn_graph`` builds its index from)."""
    import dhmrec_pyg.nn.knn as knn_mod

    sig = inspect.signature(knn_mod.knn_graph).parameters
    exact = knn_mod.knn_index_spec(10**6, k, method="exact")
    hnsw = knn_mod.knn_index_spec(10**6, k, method="hnsw")
    ivf = knn_mod.knn_index_spec(10**6, k, method="ivf")
    return {
        "function": "dhmrec_pyg.nn.knn.knn_graph",
        "EXACT_MAX_ITEMS": int(knn_mod.EXACT_MAX_ITEMS),
        "defaults": {name: (p.default if p.default is not inspect.Parameter.empty else None)
                     for name, p in sig.items() if name not in ("x", "cache_dir")},
        "exact": {"index": exact.index, "metric": "inner product on L2-normalised rows", "gpu": exact.gpu},
        "approximate": {"index": hnsw.index, "metric": "inner product on L2-normalised rows",
                        "M": hnsw.hnsw_m, "efConstruction": hnsw.ef_construction, "efSearch": hnsw.ef_search,
                        "gpu": hnsw.gpu},
        "ivf": {"index": ivf.index, "metric": "inner product on L2-normalised rows, spherical k-means lists",
                "nlist": "the power of two nearest 2 sqrt(items), at least 39 training items per list",
                "nlist_at_1M": ivf.ivf_nlist, "nprobe": ivf.ivf_nprobe,
                "train_items_per_list": int(knn_mod.IVF_TRAIN_PER_LIST),
                "kmeans_iterations": int(knn_mod.IVF_ITERATIONS), "gpu": ivf.gpu},
    }


# --------------------------------------------------------------------------- main


def _predict(method: str, n: int, done: Dict[int, float]) -> Optional[float]:
    """Seconds of a full build of ``n`` items from the largest size built in full (None: none yet).

    Exact: quadratic (every item against every item). HNSW: ``n log n`` (each insertion
    and each query visits O(log n) layers).
    """
    if not done:
        return None
    m = max(done)
    if method == "exact":
        return done[m] * (n / m) ** 2
    return done[m] * (n * math.log(n)) / (m * math.log(m))


def _hnsw_prefix(n: int, budget: float, done: Dict[int, float]) -> int:
    """The largest catalogue prefix (at least the largest size built in full) whose predicted full
    build fits ``budget`` seconds."""
    if _predict("hnsw", n, done) <= budget:
        return n
    lo, hi = max(done), n
    while hi - lo > 1000:
        mid = (lo + hi) // 2
        if _predict("hnsw", mid, done) <= budget:
            lo = mid
        else:
            hi = mid
    return lo


def _scale_mib(done: Dict[int, float], n: int) -> float:
    """Peak memory growth of a full build of ``n`` items: the line through the two largest sizes built
    in full (fixed buffers such as faiss's BLAS blocks + a cost per item), or proportional to the one."""
    sizes = sorted(done)
    if len(sizes) == 1:
        return done[sizes[0]] * n / sizes[0]
    m1, m2 = sizes[-2], sizes[-1]
    slope = (done[m2] - done[m1]) / (m2 - m1)
    return done[m2] + slope * (n - m2)


def _fmt_s(s: float) -> str:
    return f"{s:.1f}" if s < 1000 else f"{s:,.0f}"


def main(argv: Optional[List[str]] = None) -> int:
    """Run the benchmark and write its result files."""
    argv = list(sys.argv[1:] if argv is None else argv)
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sizes", default="10000,100000,1000000", help="comma-separated numbers of items")
    p.add_argument("--dim", type=int, default=384)
    p.add_argument("--k", type=int, default=10, help="neighbours per item (the paper's 10)")
    p.add_argument("--methods", default="exact,hnsw,ivf", help="comma-separated, of exact, hnsw, ivf")
    p.add_argument("--name", default="knn", help="stem of the result files (<name>.json, <name>.md)")
    p.add_argument("--sample", type=int, default=1000, help="query items checked for recall")
    p.add_argument("--threads", type=int, default=1, help="torch/faiss/BLAS threads (0: library defaults)")
    p.add_argument("--max-seconds", type=float, default=600.0,
                   help="extrapolate a build predicted to take longer than this")
    p.add_argument("--centres", type=int, default=256)
    p.add_argument("--latent", type=int, default=16)
    p.add_argument("--noise", type=float, default=0.3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=str(HERE / "results"), help="folder of knn.json and knn.md")
    p.add_argument("--in-process", action="store_true",
                   help="measure in this process instead of a fresh one per row (quick checks, tests)")
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker is not None:
        print(json.dumps(_worker(json.loads(args.worker))))
        return 0

    import torch

    from benchmarks.reproduce import write_result_files
    from dhmrec_pyg.training.trainer import environment

    if args.threads:
        import faiss

        torch.set_num_threads(args.threads)
        faiss.omp_set_num_threads(args.threads)
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    if not methods or any(m not in ("exact", "hnsw", "ivf") for m in methods):
        p.error(f"--methods takes exact, hnsw and ivf, got {args.methods!r}")
    base = {"dim": args.dim, "k": args.k, "sample": args.sample, "threads": args.threads,
            "centres": args.centres, "latent": args.latent, "noise": args.noise, "seed": args.seed}
    params = library_parameters(args.k)
    start = time.time()
    rows: List[dict] = []
    full: Dict[str, Dict[int, float]] = {"exact": {}, "hnsw": {}, "ivf": {}}  # seconds of the builds run in full
    full_mib: Dict[str, Dict[int, float]] = {"exact": {}, "hnsw": {}, "ivf": {}}  # their peak memory growth
    build_share = 0.5  # share of the HNSW build time spent building the index (vs searching all items)
    measure = _worker if args.in_process else _run_worker
    worker = {**base, "hnsw": {key: params["approximate"][key] for key in ("M", "efConstruction", "efSearch")}}
    from dhmrec_pyg.nn.knn import knn_index_spec

    for n in sizes:
        for method in methods:
            pred = _predict(method, n, full[method]) if method != "ivf" else None
            spec = knn_index_spec(n, args.k, method=method)
            row: Dict[str, object] = {
                "items": n, "method": method, "index": spec.index,
                "auto_picks_this": knn_index_spec(n, args.k).method == method,
                "predicted_seconds": pred}
            if method == "ivf":
                row.update(ivf_nlist=spec.ivf_nlist, ivf_nprobe=spec.ivf_nprobe, ivf_train=spec.ivf_train)
            if pred is None or pred <= args.max_seconds:
                r = measure({**worker, "n": n, "mode": method})
                full[method][n] = r["seconds"]
                full_mib[method][n] = r["peak_mib"]
                row.update(extrapolated=False, seconds=r["seconds"], peak_mib=r["peak_mib"], recall=r["recall"],
                           recall_sample=r["sample"], edges=r["edges"], detail=r)
                if "extrapolation_check" in r:
                    chk = r["extrapolation_check"]
                    row["extrapolation_check"] = {"extrapolated_seconds": chk["seconds"],
                                                  "ratio_to_measured": chk["seconds"] / r["seconds"]}
                if method == "hnsw":
                    build_share = min(1.0, chk["build_seconds"] / r["seconds"])
            elif method == "exact":
                r = measure({**worker, "n": n, "mode": "exact_sampled"})
                est_mib = max(r["peak_mib"], _scale_mib(full_mib["exact"], n))
                row.update(extrapolated=True, seconds=r["seconds"], peak_mib=est_mib, recall=1.0,
                           recall_sample=r["sample"], measured_partial_peak_mib=r["peak_mib"],
                           note=(f"extrapolated from {r['queries']} queries: index over all {n:,} items built "
                                 f"({r['prepare_seconds']:.1f} s), {r['queries']} queries searched "
                                 f"({r['sample_search_seconds']:.1f} s), search scaled to {n:,} queries; memory "
                                 f"scaled from the sizes built in full (measured growth for the index + sample "
                                 f"search: {r['peak_mib']:,.0f} MiB)"),
                           detail=r)
            else:
                m = _hnsw_prefix(n, args.max_seconds / max(build_share, 1e-3), full["hnsw"])
                r = measure({**worker, "n": m, "mode": "hnsw_sampled"})
                per_query = r["sample_search_seconds"] / r["queries"]
                if m == n:
                    secs = r["seconds"]
                    est_mib = max(r["peak_mib"], _scale_mib(full_mib["hnsw"], n))
                    how = (f"extrapolated from {r['queries']} queries: index over all {n:,} items built with the "
                           f"library's parameters ({r['build_seconds']:.1f} s), {r['queries']} queries searched "
                           f"({r['sample_search_seconds']:.1f} s), search scaled to {n:,} queries")
                else:
                    secs = (r["build_seconds"] * (n * math.log(n)) / (m * math.log(m))
                            + per_query * n * math.log(n) / math.log(m))
                    est_mib = _scale_mib(full_mib["hnsw"], n)
                    how = (f"extrapolated from the first {m:,} items: index over them built with the library's "
                           f"parameters ({r['build_seconds']:.1f} s) and {r['queries']} queries searched "
                           f"({r['sample_search_seconds']:.1f} s); build scaled by n log n, search by "
                           f"n log n / log m; recall is that of the {m:,}-item index")
                row.update(extrapolated=True, seconds=secs, peak_mib=est_mib, recall=r["recall"],
                           recall_sample=r["sample"], index_items=m, measured_partial_peak_mib=r["peak_mib"],
                           note=(f"{how}; memory scaled from the sizes built in full (measured growth for the "
                                 f"index + sample search: {r['peak_mib']:,.0f} MiB)"),
                           detail=r)
            print(json.dumps({k: v for k, v in row.items() if k != "detail"}), flush=True)
            rows.append(row)

    torch.set_num_threads(args.threads or torch.get_num_threads())
    env = environment()
    env["faiss_threads"] = str(args.threads) if args.threads else "faiss default"
    command = " ".join(["python -m benchmarks.knn"] + [shlex.quote(a) for a in argv])
    include_self = params["defaults"]["include_self"]
    result = {
        "command": command,
        "options": {key: value for key, value in vars(args).items() if key not in ("worker", "out")},
        "wall_seconds": round(time.time() - start, 1),
        "data": {"generator": "benchmarks.knn.make_features", "dim": args.dim, "centres": args.centres,
                 "latent": args.latent, "noise": args.noise, "seed": args.seed, "dtype": "float32"},
        "k": args.k,
        "recall_definition": (f"share of the exact top-{args.k} neighbours found, over the "
                              f"{args.k - 1 if include_self else args.k} neighbours other than the item itself "
                              f"(include_self={include_self}: the item is always kept), on a random sample of "
                              f"{args.sample} items whose exact neighbours come from a brute-force IndexFlatIP "
                              "search of those items only"),
        "memory_definition": ("peak resident memory growth of a fresh process over its size after generating "
                              "the features (VmHWM reset via /proc/self/clear_refs), i.e. excluding the input"),
        "fresh_process_per_row": not args.in_process,
        "library": params,
        "rows": rows,
        "environment": env,
    }
    text = markdown(result)
    write_result_files(Path(args.out), args.name, result, text)
    print(text, end="")
    return 0


def markdown(result: dict) -> str:
    """The Markdown report of a ``knn.json`` result."""
    o, params, env = result["options"], result["library"], result["environment"]
    where = "One fresh process per row." if result["fresh_process_per_row"] else "All rows measured in one process."
    lines = ["# Item-item KNN graph build (`knn_graph`)", "", f"Command: `{result['command']}`", "",
             f"Synthetic float32 features, {o['dim']}-d: {o['centres']} Gaussian centres + a {o['latent']}-d "
             f"latent offset + noise {o['noise']} (seed {o['seed']}); top-{o['k']} graph of every item, "
             f"{o['threads'] or 'default'} thread(s). {where}",
             "", "| items | method | build s | peak memory MiB | recall (sample) | note |", "|---|---|---|---|---|---|"]
    for row in result["rows"]:
        secs, mem = _fmt_s(row["seconds"]), f"{row['peak_mib']:,.0f}"
        if row["extrapolated"]:
            secs, mem = f"~{secs} (extrapolated)", f"~{mem} (est.)"
        if row["method"] == "exact":
            rec = "exact (by definition)" if row["extrapolated"] else \
                f"{row['recall']:.4f} (check vs brute force, {row['recall_sample']})"
        else:
            rec = f"{row['recall']:.4f} ({row['recall_sample']})"
        note = row.get("note", "")
        if row["method"] == "ivf":
            note = (f"built in full; {row['ivf_nlist']:,} lists, {row['ivf_nprobe']} probed, k-means on "
                    f"{row['ivf_train']:,} items")
        if "extrapolation_check" in row:
            chk = row["extrapolation_check"]
            note = (f"built in full; the sample extrapolation used for larger sizes gives "
                    f"{_fmt_s(chk['extrapolated_seconds'])} s ({chk['ratio_to_measured']:.2f}x)")
        auto = " *" if row["auto_picks_this"] else ""
        lines.append(f"| {row['items']:,} | {row['method']} ({row['index']}){auto} | {secs} | {mem} | {rec} | {note} |")
    lines += ["", "\\* the method `method=\"auto\"` (the default) picks at this size."]
    ap, ivf = params["approximate"], params["ivf"]
    top = max(row["items"] for row in result["rows"])
    lines += [
        "",
        f"Library defaults benchmarked: `method=\"auto\"` uses exact `{params['exact']['index']}` up to "
        f"`EXACT_MAX_ITEMS = {params['EXACT_MAX_ITEMS']:,}` items (on the GPU when faiss has one: "
        f"{'yes' if params['exact']['gpu'] else 'no GPU here'}), `{ivf['index']}` above it ({ivf['nlist']}; "
        f"{ivf['nprobe']} lists probed; spherical k-means of {ivf['kmeans_iterations']} iterations on "
        f"{ivf['train_items_per_list']} seeded random items per list); `method=\"hnsw\"`: `{ap['index']}` with "
        f"M = {ap['M']}, efConstruction = {ap['efConstruction']}, efSearch = {ap['efSearch']} (at k = {o['k']}); "
        "inner product on L2-normalised rows, CPU only.",
        "",
        f"Recall: {result['recall_definition']}. Memory: {result['memory_definition']}; the input itself is "
        f"{o['dim'] * 4} bytes per item ({top * o['dim'] * 4 / _MIB:,.0f} MiB at {top:,} items).",
        "",
        f"Machine: {env['cpu']}, {env['cores']} cores ({env['torch_threads']} torch threads, "
        f"{env['faiss_threads']} faiss threads), GPU {env['gpu']}; torch {env['torch']}, "
        f"PyG {env['torch_geometric']}, faiss {env['faiss']}, numpy {env['numpy']}, Python {env['python']}. "
        f"Whole run {result['wall_seconds']:.0f} s.",
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
