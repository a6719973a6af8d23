"""Equations (9)-(10): faiss top-k cosine graphs vs brute force, approximate recall, caching."""
import numpy as np
import pytest
import torch

import dhmrec_pyg.nn.knn as knn_mod
from dhmrec_pyg.nn import knn_graph


def brute_force_neighbours(x: np.ndarray, k: int, include_self: bool) -> list:
    x = x / np.linalg.norm(x, axis=1, keepdims=True)
    sim = x @ x.T  # fine for a test-sized catalogue
    out = []
    for i in range(len(x)):
        order = [j for j in np.argsort(-sim[i], kind="stable") if j != i]
        others = order[: k - 1] if include_self else order[:k]
        out.append(set(others) | ({i} if include_self else set()))
    return out


def neighbour_sets(edge_index: torch.Tensor, n: int) -> list:
    sets = [set() for _ in range(n)]
    for src, dst in edge_index.t().tolist():
        sets[dst].add(src)
    return sets


@pytest.mark.parametrize("include_self", [True, False])
def test_exact_matches_brute_force(include_self):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((60, 8)).astype(np.float32) * rng.uniform(0.1, 10, (60, 1)).astype(np.float32)
    k = 5
    edge_index = knn_graph(torch.from_numpy(x), k, include_self=include_self, method="exact")
    assert edge_index.shape == (2, 60 * k)
    assert (edge_index[1][1:] >= edge_index[1][:-1]).all()  # sorted by target item
    assert neighbour_sets(edge_index, 60) == brute_force_neighbours(x, k, include_self)


def test_k_larger_than_catalogue_is_capped():
    x = np.random.default_rng(1).standard_normal((4, 3)).astype(np.float32)
    edge_index = knn_graph(x, 10, include_self=True)
    assert edge_index.shape == (2, 16)
    assert knn_graph(x, 10, include_self=False).shape == (2, 12)


def test_approximate_index_has_high_recall():
    rng = np.random.default_rng(2)
    centers = rng.standard_normal((40, 16))
    x = (centers[rng.integers(0, 40, 1500)] + 0.5 * rng.standard_normal((1500, 16))).astype(np.float32)
    exact = neighbour_sets(knn_graph(x, 10, method="exact"), 1500)
    approx_ei = knn_graph(x, 10, method="auto", exact_max_items=1000)  # above threshold -> HNSW
    approx = neighbour_sets(approx_ei, 1500)
    recall = sum(len(a & e) for a, e in zip(approx, exact)) / sum(len(e) for e in exact)
    assert recall > 0.95


def test_cache_roundtrip_and_key(tmp_path, monkeypatch):
    x = np.random.default_rng(3).standard_normal((30, 4)).astype(np.float32)
    first = knn_graph(x, 4, cache_dir=tmp_path)
    files = list(tmp_path.glob("knn-*.npz"))
    assert len(files) == 1

    def fail(*args, **kwargs):
        raise AssertionError("searched although the graph was cached")

    monkeypatch.setattr(knn_mod, "_search", fail)
    assert torch.equal(knn_graph(x, 4, cache_dir=tmp_path), first)
    monkeypatch.undo()
    knn_graph(x, 3, cache_dir=tmp_path)  # other parameters, other key
    knn_graph(x + 1, 4, cache_dir=tmp_path)  # other features, other key
    assert len(list(tmp_path.glob("knn-*.npz"))) == 3


def test_unwritable_cache_is_skipped(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    x = np.random.default_rng(4).standard_normal((10, 3)).astype(np.float32)
    with pytest.warns(UserWarning, match="cannot write the cache"):
        out = knn_graph(x, 3, cache_dir=blocker / "sub")
    assert torch.equal(out, knn_graph(x, 3))


def test_bad_arguments():
    x = np.zeros((5, 2), dtype=np.float32)
    with pytest.raises(ValueError, match="k must be"):
        knn_graph(x, 0)
    with pytest.raises(ValueError, match="method must be .*got 'lsh'"):
        knn_graph(x, 2, method="lsh")
    with pytest.raises(ValueError, match="ivf_nprobe .*got 0 and 0"):
        knn_graph(x, 2, method="ivf", ivf_nprobe=0)
    with pytest.raises(ValueError, match="2-D"):
        knn_graph(np.zeros(5, dtype=np.float32), 2)


def test_index_spec_is_the_index_knn_graph_builds(monkeypatch):
    small = knn_mod.knn_index_spec(500, k=10)
    assert (small.method, small.index, small.neighbours, small.hnsw_m) == ("exact", "IndexFlatIP", 10, None)
    at = knn_mod.knn_index_spec(knn_mod.EXACT_MAX_ITEMS, k=10)
    assert at.method == "exact"  # the threshold itself is still exact
    big = knn_mod.knn_index_spec(knn_mod.EXACT_MAX_ITEMS + 1, k=10)
    assert (big.method, big.index, big.gpu, big.hnsw_m) == ("ivf", "IndexIVFFlat", False, None)
    assert (big.ivf_nlist, big.ivf_nprobe, big.ivf_train) == (1024, knn_mod.IVF_NPROBE, 1024 * 64)
    million = knn_mod.knn_index_spec(10**6, k=10)
    assert (million.ivf_nlist, million.ivf_train) == (2048, 2048 * 64)
    hnsw = knn_mod.knn_index_spec(knn_mod.EXACT_MAX_ITEMS + 1, k=10, method="hnsw")
    assert (hnsw.index, hnsw.hnsw_m, hnsw.ef_construction, hnsw.ef_search) == ("IndexHNSWFlat", 32, 80, 128)
    assert hnsw.ivf_nlist is None and knn_mod.knn_index_spec(10, method="ivf").ef_search is None
    assert knn_mod.knn_index_spec(10**6, k=100, method="hnsw").ef_search == 200  # raised to 2x the results
    assert knn_mod.knn_index_spec(5, k=10, include_self=False).neighbours == 5  # capped at the catalogue
    with pytest.raises(ValueError, match="'lsh'"):
        knn_mod.knn_index_spec(10, method="lsh")

    built = []
    real = knn_mod.build_knn_index
    monkeypatch.setattr(knn_mod, "build_knn_index", lambda spec, dim: built.append(spec) or real(spec, dim))
    x = np.random.default_rng(0).standard_normal((300, 8)).astype(np.float32)
    for method in ("exact", "hnsw"):
        for include_self in (True, False):
            knn_graph(x, 7, include_self=include_self, method=method, hnsw_m=16, ef_search=64)
            assert built[-1] == knn_mod.knn_index_spec(300, 7, include_self=include_self, method=method,
                                                       hnsw_m=16, ef_search=64)
    index, resources = real(built[-1], 8)
    assert type(index).__name__ == "IndexHNSWFlat" and resources is None
    assert (index.hnsw.efConstruction, index.hnsw.efSearch) == (80, 64)
    knn_graph(x, 7, method="ivf", ivf_nlist=4, ivf_nprobe=2)
    assert built[-1] == knn_mod.knn_index_spec(300, 7, method="ivf", ivf_nlist=4, ivf_nprobe=2)
    index, _ = real(built[-1], 8)
    assert type(index).__name__ == "IndexIVFFlat" and (index.nlist, index.nprobe) == (4, 2)
    assert not index.is_trained


def test_ivf_lists():
    # the power of two nearest 2 sqrt(n), halved until every list has 39 training points
    assert [knn_mod.ivf_lists(n) for n in (1, 100, 1_000, 100_000, 200_001, 10**6)] == [1, 2, 16, 512, 1024, 2048]
    assert knn_mod.knn_index_spec(50, k=3, method="ivf", ivf_nlist=500).ivf_nlist == 50  # capped at the items
    assert knn_mod.knn_index_spec(5_000, k=3, method="ivf", ivf_nprobe=999).ivf_nprobe == 128  # capped at nlist


def clustered(n: int, dim: int = 16, centres: int = 40, seed: int = 2) -> np.ndarray:
    rng = np.random.default_rng(seed)
    c = rng.standard_normal((centres, dim))
    return (c[rng.integers(0, centres, n)] + 0.5 * rng.standard_normal((n, dim))).astype(np.float32)


def test_ivf_recall_and_auto_choice(monkeypatch):
    x = clustered(3000)
    exact = neighbour_sets(knn_graph(x, 10, method="exact"), 3000)
    monkeypatch.setattr(knn_mod, "EXACT_MAX_ITEMS", 2999)  # what a caller's default threshold reads
    seen = []
    real = knn_mod._search
    monkeypatch.setattr(knn_mod, "_search", lambda x, spec, threads: seen.append((spec, threads)) or real(x, spec, threads))
    approx_ei = knn_graph(x, 10, method="auto", exact_max_items=2999, threads=1)
    assert seen[-1][0].method == "ivf" and seen[-1][1] == 1
    assert seen[-1][0].ivf_nlist == knn_mod.ivf_lists(3000) == 64
    approx = neighbour_sets(approx_ei, 3000)
    recall = sum(len(a & e) for a, e in zip(approx, exact)) / sum(len(e) for e in exact)
    assert recall > 0.95
    assert approx_ei.shape == (2, 3000 * 10) and all(i in s for i, s in enumerate(approx))  # self kept
    assert torch.equal(knn_graph(x, 10, method="auto", exact_max_items=2999, threads=1), approx_ei)  # seeded
    knn_graph(x, 10, method="auto", exact_max_items=3000)
    assert seen[-1][0].method == "exact" and seen[-1][1] == torch.get_num_threads()  # at the threshold: exact
    # one probed list of many finds fewer neighbours: the parameter reaches faiss
    low = neighbour_sets(knn_graph(x, 10, method="ivf", ivf_nlist=64, ivf_nprobe=1), 3000)
    assert sum(len(a & e) for a, e in zip(low, exact)) / sum(len(e) for e in exact) < recall


def test_ivf_cache_key_has_its_parameters(tmp_path):
    x = clustered(400)
    knn_graph(x, 5, method="ivf", cache_dir=tmp_path)
    knn_graph(x, 5, method="ivf", cache_dir=tmp_path, ivf_nprobe=3)
    knn_graph(x, 5, method="ivf", cache_dir=tmp_path, ivf_nlist=4)
    assert len(list(tmp_path.glob("knn-*.npz"))) == 3
    knn_graph(x, 5, method="ivf", cache_dir=tmp_path, ivf_nprobe=3)
    assert len(list(tmp_path.glob("knn-*.npz"))) == 3  # the same parameters read the same file
