"""Cosine top-k item-item graphs built with faiss, equations (9)-(10) of the DHMRec paper."""
from __future__ import annotations

import hashlib
import json
import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Tuple, Union

import numpy as np
import torch
from torch import Tensor

from dhmrec_pyg.files import atomic_write

#: Catalogues larger than this use an approximate (inverted-file) index by default.
EXACT_MAX_ITEMS = 200_000
_CACHE_FORMAT = 2
_METHODS = ("exact", "hnsw", "ivf")
#: Lists an IVF query scans by default (recall@10 about 0.95 or more on clustered features).
IVF_NPROBE = 16
#: Inverted-file index: training points drawn per list, fewest allowed per list, k-means iterations, seed.
IVF_TRAIN_PER_LIST = 64
_IVF_MIN_PER_LIST = 39  # faiss warns below 39 training points per centroid
IVF_ITERATIONS = 10
_IVF_SEED = 0
_IVF_BLOCK_ELEMS = 1 << 23  # scores per (queries x list members) block of the IVF scan


def _as_float32(x: Union[Tensor, np.ndarray]) -> np.ndarray:
    if isinstance(x, Tensor):
        x = x.detach().cpu().numpy()
    x = np.ascontiguousarray(x, dtype=np.float32)
    if x.ndim != 2:
        raise ValueError(f"knn_graph expects a 2-D feature matrix, got shape {x.shape}")
    return x


def _gpu_available(use_gpu: Union[bool, str]) -> bool:
    import faiss

    if use_gpu is False:
        return False
    has = hasattr(faiss, "StandardGpuResources") and hasattr(faiss, "get_num_gpus")
    try:
        has = has and faiss.get_num_gpus() > 0
    except Exception:  # a CPU build may expose the names without working GPUs
        has = False
    if use_gpu is True and not has:
        raise RuntimeError("use_gpu=True but this faiss build exposes no GPU")
    return has


@dataclass(frozen=True)
class KNNIndexSpec:
    """The faiss index :func:`knn_graph` searches, as :func:`knn_index_spec` resolves it.

    Attributes:
        method: ``"exact"``, ``"hnsw"`` or ``"ivf"``.
        index: the faiss class, ``"IndexFlatIP"``, ``"IndexHNSWFlat"`` or ``"IndexIVFFlat"``
            (inner-product metric; the rows are L2-normalised first, so inner products are cosines).
        gpu: whether the index runs on a GPU (the exact index only, when faiss has one).
        neighbours: results asked of faiss per item (its own row included).
        hnsw_m: HNSW graph degree (``None`` for the other indexes).
        ef_construction: HNSW construction breadth (``None`` for the other indexes).
        ef_search: HNSW search breadth (``None`` for the other indexes).
        ivf_nlist: inverted lists (k-means centroids) of the IVF index (``None`` for the others).
        ivf_nprobe: lists scanned per query by the IVF index (``None`` for the others).
        ivf_train: items (a seeded random sample) the IVF k-means is trained on (``None`` for the others).
    """

    method: str
    index: str
    gpu: bool
    neighbours: int
    hnsw_m: Optional[int] = None
    ef_construction: Optional[int] = None
    ef_search: Optional[int] = None
    ivf_nlist: Optional[int] = None
    ivf_nprobe: Optional[int] = None
    ivf_train: Optional[int] = None


def _resolve_method(method: str, num_items: int, exact_max_items: int) -> str:
    if method not in ("auto", *_METHODS):
        raise ValueError(f"method must be 'auto', 'exact', 'hnsw' or 'ivf', got {method!r}")
    if method == "auto":
        return "exact" if num_items <= exact_max_items else "ivf"
    return method


def ivf_lists(num_items: int) -> int:
    """The default number of inverted lists for ``num_items`` items.

    The power of two nearest to ``2 * sqrt(num_items)`` (2,048 lists for a million items), halved
    until each list gets at least 39 training points. With ``IVF_TRAIN_PER_LIST`` training points
    per list, k-means costs grow with the square of the lists while the scan of the probed lists
    shrinks with them; measured at 100,000 x 384-d items (one thread), 512 lists built the graph in
    16 s against 27 s for 1,024 at the same recall.
    """
    n = max(int(num_items), 1)
    nlist = 2 ** max(0, round(math.log2(2.0 * math.sqrt(n))))
    while nlist > 1 and nlist * _IVF_MIN_PER_LIST > n:
        nlist //= 2
    return nlist


def _index_spec(method: str, n: int, num: int, use_gpu: Union[bool, str], opts: dict) -> KNNIndexSpec:
    """The spec of ``method`` for ``n`` items and ``num`` results per query; ``opts`` holds
    ``hnsw_m``, ``ef_search``, ``ivf_nlist`` (0: :func:`ivf_lists`) and ``ivf_nprobe``."""
    if method == "exact":
        return KNNIndexSpec("exact", "IndexFlatIP", _gpu_available(use_gpu), num)
    if method == "hnsw":  # faiss has no GPU HNSW; the graph index runs on the CPU
        m = int(opts["hnsw_m"])
        return KNNIndexSpec("hnsw", "IndexHNSWFlat", False, num, hnsw_m=m, ef_construction=max(2 * m, 80),
                            ef_search=max(int(opts["ef_search"]), 2 * num))
    if method == "ivf":  # CPU only, like HNSW
        nlist = min(int(opts["ivf_nlist"]) or ivf_lists(n), max(n, 1))
        if nlist < 1 or int(opts["ivf_nprobe"]) < 1:
            raise ValueError(f"ivf_nlist must be >= 0 and ivf_nprobe >= 1, got {opts['ivf_nlist']!r} and "
                             f"{opts['ivf_nprobe']!r}")
        return KNNIndexSpec("ivf", "IndexIVFFlat", False, num, ivf_nlist=nlist,
                            ivf_nprobe=min(int(opts["ivf_nprobe"]), nlist),
                            ivf_train=min(max(n, 1), nlist * IVF_TRAIN_PER_LIST))
    raise ValueError(f"method must be 'auto', 'exact', 'hnsw' or 'ivf', got {method!r}")


def knn_index_spec(
    num_items: int,
    k: int = 10,
    include_self: bool = True,
    method: str = "auto",
    exact_max_items: int = EXACT_MAX_ITEMS,
    use_gpu: Union[bool, str] = "auto",
    hnsw_m: int = 32,
    ef_search: int = 128,
    ivf_nlist: int = 0,
    ivf_nprobe: int = IVF_NPROBE,
) -> KNNIndexSpec:
    """The faiss index and parameters :func:`knn_graph` uses for ``num_items`` items and these arguments.

    The arguments are :func:`knn_graph`'s (with the same defaults); ``num_items`` stands for
    its feature matrix. Build the index itself with :func:`build_knn_index`.

    Raises:
        ValueError: ``k < 1``, an unknown ``method`` or a bad IVF parameter.
        RuntimeError: ``use_gpu=True`` and the exact index is chosen, but faiss has no GPU.
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    n = int(num_items)
    method = _resolve_method(method, n, exact_max_items)
    others = min(k - 1 if include_self else k, n - 1)
    opts = {"hnsw_m": hnsw_m, "ef_search": ef_search, "ivf_nlist": ivf_nlist, "ivf_nprobe": ivf_nprobe}
    return _index_spec(method, n, max(min(others + 1, n), 1), use_gpu, opts)


def build_knn_index(spec: KNNIndexSpec, dim: int) -> Tuple[Any, Any]:
    """An empty faiss index as ``spec`` describes it, for ``dim``-dimensional rows.

    Returns:
        ``(index, resources)``: the index, and the faiss GPU resources it uses (``None`` on
        the CPU), which must be kept alive as long as the index is used.
    """
    import faiss

    resources = None
    if spec.method == "exact":
        index = faiss.IndexFlatIP(dim)
        if spec.gpu:
            resources = faiss.StandardGpuResources()
            index = faiss.index_cpu_to_gpu(resources, 0, index)
    elif spec.method == "hnsw":
        index = faiss.IndexHNSWFlat(dim, spec.hnsw_m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = spec.ef_construction
        index.hnsw.efSearch = spec.ef_search
    elif spec.method == "ivf":
        quantizer = faiss.IndexFlatIP(dim)
        index = faiss.IndexIVFFlat(quantizer, dim, spec.ivf_nlist, faiss.METRIC_INNER_PRODUCT)
        index.own_fields = True  # the index keeps its quantizer alive
        quantizer.this.disown()
        index.cp.niter = IVF_ITERATIONS
        index.cp.seed = _IVF_SEED
        index.cp.spherical = True  # unit centroids: the largest inner product is the nearest centroid
        index.cp.min_points_per_centroid = 1  # ivf_lists already leaves enough points per list
        index.nprobe = spec.ivf_nprobe
    else:
        raise ValueError(f"method must be 'exact', 'hnsw' or 'ivf', got {spec.method!r}")
    return index, resources


def _train_ivf(index: Any, spec: KNNIndexSpec, x: np.ndarray) -> None:
    """Spherical k-means of an IVF index on ``spec.ivf_train`` rows of ``x`` drawn by a fixed seed."""
    n = x.shape[0]
    if spec.ivf_train is not None and spec.ivf_train < n:
        rows = np.sort(np.random.default_rng(_IVF_SEED).choice(n, size=int(spec.ivf_train), replace=False))
        index.train(np.ascontiguousarray(x[rows]))
    else:
        index.train(x)


def fill_knn_index(index: Any, spec: KNNIndexSpec, x: np.ndarray) -> None:
    """Add the L2-normalised float32 rows ``x`` to an index of :func:`build_knn_index`.

    An untrained IVF index is first trained (spherical k-means, ``IVF_ITERATIONS`` iterations)
    on ``spec.ivf_train`` rows of ``x`` drawn without replacement by a fixed seed, so the same rows
    always give the same lists.
    """
    if spec.method == "ivf" and not index.is_trained:
        _train_ivf(index, spec, x)
    index.add(x)


def _ivf_self_search(index: Any, spec: KNNIndexSpec, x: np.ndarray) -> np.ndarray:
    """Every row's ``spec.neighbours`` approximate top inner products with all rows, by inverted file.

    ``index`` (an untrained IVF index of :func:`build_knn_index`) is trained and its centroids give
    each row its ``ivf_nprobe`` nearest lists, the first holding the row. The lists are then
    scanned list by list rather than query by query: the rows probing a list are scored against
    its members in one matrix product (BLAS, torch's threads) and merged into a running top-k, which
    visits the same candidates as faiss's search of the filled index (``index.search``) at a fraction
    of its memory traffic, since all queries are items.
    """
    _train_ivf(index, spec, x)
    _, lists = index.quantizer.search(x, spec.ivf_nprobe)
    n, k, nlist = x.shape[0], spec.neighbours, int(spec.ivf_nlist)
    members = np.argsort(lists[:, 0], kind="stable")
    member_bounds = np.searchsorted(lists[:, 0][members], np.arange(nlist + 1))
    probes = np.argsort(lists.reshape(-1), kind="stable")
    probe_bounds = np.searchsorted(lists.reshape(-1)[probes], np.arange(nlist + 1))
    feats = torch.from_numpy(x)
    best = torch.full((n, k), -float("inf"))
    labels = torch.full((n, k), -1, dtype=torch.int64)
    for lst in range(nlist):
        mem = torch.from_numpy(members[member_bounds[lst]:member_bounds[lst + 1]])
        queries = torch.from_numpy(probes[probe_bounds[lst]:probe_bounds[lst + 1]] // spec.ivf_nprobe)
        if mem.numel() == 0 or queries.numel() == 0:
            continue
        block = feats[mem].T.contiguous()
        step = max(1, _IVF_BLOCK_ELEMS // mem.numel())
        for q in queries.split(step):
            top, at = (feats[q] @ block).topk(min(k, mem.numel()), dim=1)
            both, ids = torch.cat([best[q], top], 1), torch.cat([labels[q], mem[at]], 1)
            top, at = both.topk(k, dim=1)
            best[q], labels[q] = top, ids.gather(1, at)
    return labels.numpy()


def _search(x: np.ndarray, spec: KNNIndexSpec, threads: int) -> np.ndarray:
    """Indices of the ``spec.neighbours`` largest inner products of every row of ``x`` with all rows,
    faiss running ``threads`` OpenMP threads."""
    import faiss

    before, torch_before = faiss.omp_get_max_threads(), torch.get_num_threads()
    faiss.omp_set_num_threads(max(int(threads), 1))
    torch.set_num_threads(max(int(threads), 1))  # the IVF scan's matrix products
    try:  # GPU resources must outlive the search
        index, resources = build_knn_index(spec, x.shape[1])
        if spec.method == "ivf":
            labels = _ivf_self_search(index, spec, x)
        else:
            fill_knn_index(index, spec, x)
            _, labels = index.search(x, spec.neighbours)
        del index, resources
    finally:
        faiss.omp_set_num_threads(before)
        torch.set_num_threads(torch_before)
    return labels.astype(np.int64, copy=False)


def _cache_key(x: np.ndarray, params: dict) -> str:
    h = hashlib.blake2b(digest_size=16)
    h.update(json.dumps({"format": _CACHE_FORMAT, "shape": list(x.shape), **params}, sort_keys=True).encode())
    h.update(memoryview(x).cast("B"))
    return h.hexdigest()


def _edges_sha256(key: str, edges: np.ndarray) -> str:
    h = hashlib.sha256(f"{key}\0{edges.dtype}\0{edges.shape}\0".encode())
    h.update(np.ascontiguousarray(edges).tobytes())
    return h.hexdigest()


def _load_cached(path: Path, key: str) -> Optional[np.ndarray]:
    """The cached graph, or ``None`` (with a warning) if the file is stale, malformed or corrupted."""
    try:
        with np.load(path, allow_pickle=False) as f:
            edges, stored_key, checksum = f["edge_index"], str(f["key"]), str(f["checksum"])
    except Exception as exc:  # zipfile.BadZipFile, EOFError, ValueError, KeyError, OSError, ...
        warnings.warn(f"knn_graph: unreadable cache {path} ({type(exc).__name__}); rebuilding it")
        return None
    if stored_key != key:
        warnings.warn(f"knn_graph: stale cache {path} (built for other features or parameters); rebuilding it")
        return None
    if edges.ndim != 2 or edges.shape[0] != 2 or edges.dtype != np.int64 or checksum != _edges_sha256(key, edges):
        warnings.warn(f"knn_graph: corrupted cache {path} (checksum mismatch); rebuilding it")
        return None
    return edges


def _save_cached(path: Path, key: str, edges: np.ndarray) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, lambda f: np.savez(f, edge_index=edges, key=np.array(key),
                                              checksum=np.array(_edges_sha256(key, edges))))
    except OSError as exc:  # a read-only data folder: just skip the cache
        warnings.warn(f"knn_graph: cannot write the cache {path} ({exc}); continuing without it")


def knn_graph(
    x: Union[Tensor, np.ndarray],
    k: int = 10,
    include_self: bool = True,
    method: str = "auto",
    exact_max_items: int = EXACT_MAX_ITEMS,
    use_gpu: Union[bool, str] = "auto",
    hnsw_m: int = 32,
    ef_search: int = 128,
    cache_dir: Union[str, Path, None] = None,
    ivf_nlist: int = 0,
    ivf_nprobe: int = IVF_NPROBE,
    threads: Optional[int] = None,
) -> Tensor:
    r"""Binary cosine top-:math:`k` graph of one modality, equations (9)-(10).

    .. math::
        I^m_{i,i'} = \frac{(\mathbf{x}^m_i)^\top \mathbf{x}^m_{i'}}
        {\|\mathbf{x}^m_i\| \|\mathbf{x}^m_{i'}\|} \quad (9), \qquad
        \hat{I}^m_{i,i'} = \begin{cases} 1 & I^m_{i,i'} \in
        \text{top-}k(I^m_i) \\ 0 & \text{otherwise} \end{cases} \quad (10)

    Reading taken (``docs/readings.md``): the graph is built on the *raw* modality features,
    once, before training. Rows are L2-normalised and searched by inner product
    with faiss, so no items x items matrix is ever formed: an exact
    ``IndexFlatIP`` (on the GPU when faiss exposes one) up to
    ``exact_max_items`` items, an approximate inverted-file ``IndexIVFFlat``
    (inner-product metric, ``method="ivf"``) above. The IVF index partitions
    the items into ``ivf_nlist`` lists by spherical k-means (about
    :math:`2\sqrt{|\mathcal{I}|}` lists, trained for ``IVF_ITERATIONS``
    iterations on a seeded sample of ``IVF_TRAIN_PER_LIST`` items per list) and
    scans the ``ivf_nprobe`` lists nearest to each query. ``method="hnsw"``
    (``IndexHNSWFlat``) is the other approximate index, slower to build.

    Each item :math:`i` keeps the :math:`k` entries of row :math:`i` (the graph
    is directed: :math:`i` aggregates its own neighbours, as in FREEDOM). With
    ``include_self=True`` (default, FREEDOM's choice, whose top-:math:`k`
    contains the item itself at similarity 1) the item is always one of the
    :math:`k` and the other :math:`k-1` are its most similar other items; this
    is what keeps an item's own embedding in the last item-item layer of
    equation (13). With ``include_self=False`` the :math:`k` neighbours are
    other items. Rows of zeros have no defined cosine; they get arbitrary
    neighbours at similarity 0.

    The result is cached under ``cache_dir`` (when given and writable) in a file
    named by a hash of the features' bytes and of the parameters, and read
    back with ``np.load(allow_pickle=False)``. The file also stores that hash
    and a SHA-256 checksum of the edges: a stale, truncated or corrupted cache
    is reported with a warning and rebuilt, never used.

    Args:
        x: ``[I, d_m]`` raw item features.
        k: neighbours per item (capped at the number of items).
        include_self: whether the item itself is one of its ``k`` neighbours.
        method: ``"exact"``, ``"ivf"``, ``"hnsw"`` or ``"auto"`` (exact up to
            ``exact_max_items`` items, ``"ivf"`` above).
        exact_max_items: size threshold of ``"auto"``.
        use_gpu: ``"auto"`` (GPU if faiss has one), ``True`` or ``False``;
            only the exact index runs on the GPU.
        hnsw_m: HNSW graph degree.
        ef_search: HNSW search breadth (raised to at least twice the number of neighbours searched).
        cache_dir: folder for cached graphs; ``None`` disables caching.
        ivf_nlist: IVF lists; ``0`` (default): :func:`ivf_lists` of the number of items.
        ivf_nprobe: IVF lists scanned per query (capped at ``ivf_nlist``).
        threads: faiss OpenMP threads for the build and search; ``None``:
            ``torch.get_num_threads()`` (so a run's ``num_threads`` also bounds faiss).
            faiss's own setting is restored afterwards.

    Returns:
        ``edge_index`` of shape ``[2, I * k]`` (fewer when an approximate
        search returns fewer neighbours): row 0 the neighbour :math:`i'`
        (message source), row 1 the item :math:`i` whose top-:math:`k` holds it
        (target), sorted by target.

    Shapes:
        - **input:** :math:`(|\mathcal{I}|, d_m)`
        - **output:** :math:`(2, k|\mathcal{I}|)`
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    feats = _as_float32(x)
    n = feats.shape[0]
    method = _resolve_method(method, n, exact_max_items)
    others = min(k - 1 if include_self else k, n - 1)
    opts = {"hnsw_m": hnsw_m, "ef_search": ef_search, "ivf_nlist": ivf_nlist, "ivf_nprobe": ivf_nprobe}
    spec = _index_spec(method, n, max(min(others + 1, n), 1), use_gpu, opts)
    params = {"k": int(k), "include_self": bool(include_self), "method": method}
    if method == "hnsw":
        params.update(hnsw_m=int(hnsw_m), ef_search=int(ef_search))
    elif method == "ivf":
        params.update(ivf_nlist=spec.ivf_nlist, ivf_nprobe=spec.ivf_nprobe, ivf_train=spec.ivf_train,
                      ivf_iterations=IVF_ITERATIONS, ivf_seed=_IVF_SEED)
    path, key = None, ""
    if cache_dir is not None:
        key = _cache_key(feats, params)
        path = Path(cache_dir) / f"knn-{key}.npz"
        cached = _load_cached(path, key) if path.is_file() else None
        if cached is not None:
            return torch.from_numpy(cached)

    import faiss

    normed = feats.copy()
    faiss.normalize_L2(normed)
    if others > 0:
        labels = _search(normed, spec, torch.get_num_threads() if threads is None else threads)
        rows = np.arange(n, dtype=np.int64)[:, None]
        valid = (labels != rows) & (labels >= 0)
        rank = np.cumsum(valid, axis=1)
        keep = valid & (rank <= others)
        targets = np.broadcast_to(rows, labels.shape)[keep]
        sources = labels[keep]
    else:
        targets = sources = np.zeros(0, dtype=np.int64)
    if include_self:
        selfs = np.arange(n, dtype=np.int64)
        targets = np.concatenate([selfs, targets])
        sources = np.concatenate([selfs, sources])
    order = np.argsort(targets, kind="stable")
    edges = np.ascontiguousarray(np.stack([sources[order], targets[order]]), dtype=np.int64)
    if path is not None:
        _save_cached(path, key, edges)
    return torch.from_numpy(edges)
