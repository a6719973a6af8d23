"""Cosine top-k item-item graphs built with faiss, equations (9)-(10) of the DHMRec paper."""
from __future__ import annotations

import hashlib
import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Tuple, Union

import numpy as np
import torch
from torch import Tensor

from dhmrec_pyg.files import atomic_write

#: Catalogues larger than this use an approximate (HNSW) index by default.
EXACT_MAX_ITEMS = 200_000
_CACHE_FORMAT = 2


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
        method: ``"exact"`` or ``"hnsw"``.
        index: the faiss class, ``"IndexFlatIP"`` or ``"IndexHNSWFlat"`` (inner-product metric; the
            rows are L2-normalised first, so inner products are cosines).
        gpu: whether the index runs on a GPU (the exact index only, when faiss has one).
        neighbours: results asked of faiss per item (its own row included).
        hnsw_m: HNSW graph degree (``None`` for the exact index).
        ef_construction: HNSW construction breadth (``None`` for the exact index).
        ef_search: HNSW search breadth (``None`` for the exact index).
    """

    method: str
    index: str
    gpu: bool
    neighbours: int
    hnsw_m: Optional[int] = None
    ef_construction: Optional[int] = None
    ef_search: Optional[int] = None


def _resolve_method(method: str, num_items: int, exact_max_items: int) -> str:
    if method not in ("auto", "exact", "hnsw"):
        raise ValueError(f"method must be 'auto', 'exact' or 'hnsw', got {method!r}")
    if method == "auto":
        return "exact" if num_items <= exact_max_items else "hnsw"
    return method


def _index_spec(method: str, num: int, use_gpu: Union[bool, str], hnsw_m: int, ef_search: int) -> KNNIndexSpec:
    if method == "exact":
        return KNNIndexSpec("exact", "IndexFlatIP", _gpu_available(use_gpu), num)
    if method == "hnsw":  # faiss has no GPU HNSW; the graph index runs on the CPU
        return KNNIndexSpec("hnsw", "IndexHNSWFlat", False, num, hnsw_m=int(hnsw_m),
                            ef_construction=max(2 * int(hnsw_m), 80), ef_search=max(int(ef_search), 2 * num))
    raise ValueError(f"method must be 'auto', 'exact' or 'hnsw', got {method!r}")


def knn_index_spec(
    num_items: int,
    k: int = 10,
    include_self: bool = True,
    method: str = "auto",
    exact_max_items: int = EXACT_MAX_ITEMS,
    use_gpu: Union[bool, str] = "auto",
    hnsw_m: int = 32,
    ef_search: int = 128,
) -> KNNIndexSpec:
    """The faiss index and parameters :func:`knn_graph` uses for ``num_items`` items and these arguments.

    The arguments are :func:`knn_graph`'s (with the same defaults); ``num_items`` stands for
    its feature matrix. Build the index itself with :func:`build_knn_index`.

    Raises:
        ValueError: ``k < 1`` or an unknown ``method``.
        RuntimeError: ``use_gpu=True`` and the exact index is chosen, but faiss has no GPU.
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    n = int(num_items)
    method = _resolve_method(method, n, exact_max_items)
    others = min(k - 1 if include_self else k, n - 1)
    return _index_spec(method, max(min(others + 1, n), 1), use_gpu, hnsw_m, ef_search)


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
    else:
        raise ValueError(f"method must be 'exact' or 'hnsw', got {spec.method!r}")
    return index, resources


def _search(
    x: np.ndarray, num: int, method: str, use_gpu: Union[bool, str], hnsw_m: int, ef_search: int
) -> np.ndarray:
    """Indices of the ``num`` largest inner products of every row of ``x`` with all rows."""
    # GPU resources must outlive the search
    index, resources = build_knn_index(_index_spec(method, num, use_gpu, hnsw_m, ef_search), x.shape[1])
    index.add(x)
    _, labels = index.search(x, num)
    del index, resources
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
    ``exact_max_items`` items, an approximate ``IndexHNSWFlat`` (inner-product
    metric) above.

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
        method: ``"exact"``, ``"hnsw"`` or ``"auto"`` (exact up to
            ``exact_max_items`` items).
        exact_max_items: size threshold of ``"auto"``.
        use_gpu: ``"auto"`` (GPU if faiss has one), ``True`` or ``False``;
            only the exact index runs on the GPU.
        hnsw_m: HNSW graph degree.
        ef_search: HNSW search breadth (raised to at least twice the number of neighbours searched).
        cache_dir: folder for cached graphs; ``None`` disables caching.

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
    params = {"k": int(k), "include_self": bool(include_self), "method": method}
    if method == "hnsw":
        params.update(hnsw_m=int(hnsw_m), ef_search=int(ef_search))
    path, key = None, ""
    if cache_dir is not None:
        key = _cache_key(feats, params)
        path = Path(cache_dir) / f"knn-{key}.npz"
        cached = _load_cached(path, key) if path.is_file() else None
        if cached is not None:
            return torch.from_numpy(cached)

    import faiss

    others = min(k - 1 if include_self else k, n - 1)
    normed = feats.copy()
    faiss.normalize_L2(normed)
    if others > 0:
        labels = _search(normed, min(others + 1, n), method, use_gpu, hnsw_m, ef_search)
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
