"""benchmarks/scale.py end to end on the tiny profile: rows, shared KNN graphs, extrapolations, files."""
import json

import pytest

scale = pytest.importorskip("benchmarks.scale")


def test_scale_benchmark_tiny(tmp_path):
    code = scale.main(["--profile", "tiny", "--models", "freedom,lightgcn,dhmrec", "--threads", "1",
                       "--warmup", "1", "--batches", "2", "--set-profile", "n_interactions=5000",
                       "--set", "recompute=true", "--set", "kl_align=8",
                       "--synthetic-root", str(tmp_path / "data"), "--out", str(tmp_path), "--name", "scale_tiny"])
    assert code == 0
    result = json.loads((tmp_path / "scale_tiny.json").read_text())
    assert result["settings"]["profile_overrides"] == {"n_interactions": 5000}
    assert result["shape"]["items"] == 150 and result["shape"]["features"] == {"image": 16, "text": 8}
    rows = {r["model"]: r for r in result["rows"]}
    assert all(r["status"] == "ok" for r in rows.values()), rows
    free, lgcn, dh = rows["freedom"], rows["lightgcn"], rows["dhmrec"]
    # FREEDOM builds the two KNN graphs, DHMRec reads them back, LightGCN has none
    assert free["knn_graphs"] == dh["knn_graphs"] == 2 and lgcn["knn_graphs"] == 0
    assert not free["knn_from_cache"] and dh["knn_from_cache"] and not lgcn["knn_from_cache"]
    assert free["build_seconds_with_knn"] == free["build_seconds"] >= free["knn_seconds"] > 0
    assert dh["build_seconds_with_knn"] == pytest.approx(dh["build_seconds"] + free["knn_seconds"])
    assert lgcn["build_seconds_with_knn"] == lgcn["build_seconds"]
    # --set replaces the model's own options, and a model shows only the options it took
    assert dh["sets"] == ["kl_align=8", "recompute=true"]
    assert dh["model_config"]["kl_align"] == 8
    assert free["model_config"]["trainable_features"] is False and lgcn["sets"] == ["recompute=true"]
    for r in rows.values():
        b = r["batch_seconds"]
        assert r["timed_batches"] == len(b) == 2 and r["seconds_per_step"] == b[1]
        assert r["seconds_per_1000_steps"] == pytest.approx(1000 * b[1])
        assert r["seconds_per_epoch_extrapolated"] == pytest.approx(
            r["epoch_hook_seconds"] + b[0] + b[1] * (r["batches_per_epoch"] - 1))
        assert r["peak_rss_mib"] >= r["base_rss_mib"] > 0  # ru_maxrss: tiny data may not raise it
    md = (tmp_path / "scale_tiny.md").read_text()
    assert "| dhmrec | kl_align=8, recompute=true |" in md and "read from the shared cache" in md
    assert "extrapolated" in md and "No full-ranking evaluation" in md and "faiss" in md


def test_bad_options(tmp_path):
    with pytest.raises(SystemExit):
        scale.main(["--models", "nope", "--out", str(tmp_path)])
    with pytest.raises(SystemExit):
        scale.main(["--set-profile", "n_items", "--out", str(tmp_path)])
    with pytest.raises(SystemExit):
        scale.main(["--batches", "1", "--out", str(tmp_path)])
