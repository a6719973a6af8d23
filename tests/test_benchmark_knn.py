"""benchmarks/knn.py end to end at a tiny size: rows, recall, extrapolated rows, machine and versions."""
import json

import numpy as np
import pytest

knn_bench = pytest.importorskip("benchmarks.knn")


def test_features_are_seeded_and_prefix_stable():
    a = knn_bench.make_features(70_000, 4, centres=3, latent=2, seed=1)
    b = knn_bench.make_features(1_000, 4, centres=3, latent=2, seed=1)
    assert a.dtype == np.float32 and a.shape == (70_000, 4)
    np.testing.assert_array_equal(a[:1_000], b)  # a prefix does not depend on the catalogue size


def test_knn_benchmark_tiny(tmp_path):
    # --max-seconds 0: 2000 items are built in full (first size), 5000 items take both extrapolated paths
    code = knn_bench.main(["--sizes", "2000,5000", "--dim", "16", "--k", "5", "--sample", "50", "--centres", "8",
                           "--latent", "4", "--max-seconds", "0", "--in-process", "--out", str(tmp_path)])
    assert code == 0
    result = json.loads((tmp_path / "knn.json").read_text())
    rows = {(r["items"], r["method"]): r for r in result["rows"]}
    assert set(rows) == {(2000, "exact"), (2000, "hnsw"), (5000, "exact"), (5000, "hnsw")}
    for r in rows.values():
        assert 0.0 <= r["recall"] <= 1.0
        assert r["seconds"] > 0 and r["peak_mib"] >= 0
    assert rows[2000, "exact"]["recall"] == 1.0  # library exact == brute force on the sample
    assert rows[2000, "hnsw"]["recall"] > 0.8
    assert not rows[2000, "exact"]["extrapolated"] and not rows[2000, "hnsw"]["extrapolated"]
    assert rows[2000, "exact"]["edges"] == 2000 * 5
    assert rows[5000, "exact"]["extrapolated"] and "extrapolated from 50 queries" in rows[5000, "exact"]["note"]
    assert rows[5000, "hnsw"]["extrapolated"] and rows[5000, "hnsw"]["index_items"] == 2000
    lib = result["library"]
    assert lib["approximate"]["index"] == "IndexHNSWFlat" and lib["approximate"]["M"] == 32
    assert lib["exact"]["index"] == "IndexFlatIP"
    env = result["environment"]
    for key in ("cpu", "cores", "gpu", "torch", "torch_geometric", "faiss"):
        assert env[key]
    md = (tmp_path / "knn.md").read_text()
    assert "extrapolated" in md and "faiss" in md and "PyG" in md


def test_worker_in_a_fresh_process():
    spec = {"n": 1500, "dim": 8, "k": 4, "sample": 30, "threads": 1, "centres": 4, "latent": 2, "noise": 0.3,
            "seed": 0, "mode": "hnsw", "hnsw": {"M": 32, "efConstruction": 80, "efSearch": 128}}
    r = knn_bench._run_worker(spec)
    assert r["items"] == 1500 and r["edges"] == 1500 * 4 and r["sample"] == 30
    assert 0.0 <= r["recall"] <= 1.0 and 0.0 <= r["extrapolation_check"]["recall"] <= 1.0
    assert r["peak_mib"] >= 0 and r["seconds"] > 0
