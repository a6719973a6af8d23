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
    assert set(rows) == {(n, m) for n in (2000, 5000) for m in ("exact", "hnsw", "ivf")}
    for (n, method), r in rows.items():  # each row's figures are those its measurement gave
        d = r["detail"]
        assert r["recall_sample"] == d["sample"] == 50
        if method == "ivf":  # always built in full, no extrapolation check
            assert not r["extrapolated"] and "extrapolation_check" not in r and r["edges"] == n * 5
            assert (r["seconds"], r["recall"]) == (d["seconds"], d["recall"]) and r["recall"] > 0.9
            assert r["ivf_nlist"] == (32 if n == 2000 else 128) and r["ivf_train"] == min(n, 64 * r["ivf_nlist"])
        elif not r["extrapolated"]:
            assert (r["seconds"], r["peak_mib"], r["recall"]) == (d["seconds"], d["peak_mib"], d["recall"])
            chk = d["extrapolation_check"]
            assert r["extrapolation_check"]["extrapolated_seconds"] == chk["seconds"]
            assert r["extrapolation_check"]["ratio_to_measured"] == pytest.approx(chk["seconds"] / d["seconds"])
        else:
            assert r["measured_partial_peak_mib"] == d["peak_mib"] <= r["peak_mib"]
    assert rows[2000, "exact"]["recall"] == 1.0  # library exact == brute force on the sample
    assert rows[2000, "hnsw"]["recall"] > 0.8
    assert rows[5000, "exact"]["recall"] == 1.0 and rows[5000, "hnsw"]["recall"] > 0.8
    # an extrapolated time is the sum of its measured parts, each scaled as the note says
    d = rows[5000, "exact"]["detail"]
    assert rows[5000, "exact"]["seconds"] == pytest.approx(
        d["prepare_seconds"] + d["sample_search_seconds"] * 5000 / d["queries"])
    d, m = rows[5000, "hnsw"]["detail"], 2000
    assert rows[5000, "hnsw"]["seconds"] == pytest.approx(
        d["build_seconds"] * (5000 * np.log(5000)) / (m * np.log(m))
        + d["sample_search_seconds"] / d["queries"] * 5000 * np.log(5000) / np.log(m))
    assert not rows[2000, "exact"]["extrapolated"] and not rows[2000, "hnsw"]["extrapolated"]
    assert rows[2000, "exact"]["edges"] == 2000 * 5
    assert rows[5000, "exact"]["extrapolated"] and "extrapolated from 50 queries" in rows[5000, "exact"]["note"]
    assert rows[5000, "hnsw"]["extrapolated"] and rows[5000, "hnsw"]["index_items"] == 2000
    lib = result["library"]
    assert lib["approximate"]["index"] == "IndexHNSWFlat" and lib["approximate"]["M"] == 32
    assert lib["exact"]["index"] == "IndexFlatIP" and lib["ivf"]["index"] == "IndexIVFFlat"
    assert lib["ivf"]["nlist_at_1M"] == 2048
    env = result["environment"]
    for key in ("cpu", "cores", "gpu", "torch", "torch_geometric", "faiss"):
        assert env[key]
    md = (tmp_path / "knn.md").read_text()
    assert "extrapolated" in md and "faiss" in md and "PyG" in md
    assert "| 5,000 | ivf (IndexIVFFlat) | " in md and "128 lists, 16 probed" in md


def test_methods_option_and_name(tmp_path):
    code = knn_bench.main(["--sizes", "1000", "--dim", "8", "--k", "4", "--sample", "20", "--centres", "4",
                           "--latent", "2", "--methods", "ivf", "--name", "knn_ivf", "--in-process",
                           "--out", str(tmp_path)])
    assert code == 0 and not (tmp_path / "knn.json").exists()
    rows = json.loads((tmp_path / "knn_ivf.json").read_text())["rows"]
    assert [(r["items"], r["method"], r["auto_picks_this"]) for r in rows] == [(1000, "ivf", False)]
    with pytest.raises(SystemExit):
        knn_bench.main(["--methods", "lsh", "--out", str(tmp_path)])


def test_worker_in_a_fresh_process():
    spec = {"n": 1500, "dim": 8, "k": 4, "sample": 30, "threads": 1, "centres": 4, "latent": 2, "noise": 0.3,
            "seed": 0, "mode": "hnsw", "hnsw": {"M": 32, "efConstruction": 80, "efSearch": 128}}
    r = knn_bench._run_worker(spec)
    assert r["items"] == 1500 and r["edges"] == 1500 * 4 and r["sample"] == 30
    # HNSW with the library's parameters finds nearly all exact neighbours of 1500 items, both as
    # knn_graph builds it and as the sampled check rebuilds it
    assert r["recall"] > 0.9 and r["extrapolation_check"]["recall"] > 0.9
    chk = r["extrapolation_check"]
    assert chk["queries"] == 30
    assert chk["seconds"] == pytest.approx(chk["build_seconds"] + chk["sample_search_seconds"] * 1500 / 30)


def test_recall_and_peak_memory_on_known_cases():
    truth = [{1, 2, 3, 4}, {5, 6}]
    assert knn_bench.recall([{1, 2, 9}, {5, 6}], truth) == 4 / 6
    assert knn_bench.recall([set(), set()], truth) == 0.0
    assert knn_bench.recall([set()], [set()]) == 1.0  # nothing to find
    mem = knn_bench.PeakMemory()
    if not mem.reset:
        pytest.skip("the peak resident memory cannot be reset here")
    block = np.ones(64 * 2**20 // 8)  # 64 MiB, every page written
    assert 60 <= mem.peak_growth_mib() < 64 + 60
    del block
