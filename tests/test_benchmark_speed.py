"""The speed benchmark runs end to end on a tiny synthetic profile (one subprocess per model)."""
import json

from benchmarks import speed


def test_speed_benchmark_tiny(tmp_path, capsys):
    out = tmp_path / "results"
    rc = speed.main([
        "--datasets", "synthetic-tiny", "--models", "freedom,lightgcn", "--batches", "2", "--repeats", "2",
        "--synthetic-root", str(tmp_path / "data"), "--data-root", str(tmp_path / "none"),
        "--out", str(out),
    ])
    assert rc == 0
    result = json.loads((out / "speed.json").read_text())
    rows = {r["model"]: r for r in result["rows"]}
    assert set(rows) == {"freedom", "lightgcn"}
    for model, row in rows.items():
        assert row["status"] == "ok", row
        assert row["dataset"] == "synthetic-tiny"
        assert row["batches_per_epoch"] >= 1 and 1 <= row["timed_batches"] <= 2
        assert row["seconds_per_epoch"] > 0 and row["eval_seconds"] > 0 and row["build_seconds"] >= 0
        assert row["peak_rss_mib"] >= row["base_rss_mib"] > 0
        assert row["shape"]["features"] == {"image": 16, "text": 8}
    assert rows["freedom"]["ratio_to_freedom"] == 1.0 and rows["freedom"]["ratio_range"] == [1.0, 1.0]
    for row in rows.values():  # two rounds, each a fresh process; the row holds their medians
        assert [r["status"] for r in row["rounds"]] == ["ok", "ok"]
        lo, hi = sorted(r["seconds_per_epoch"] for r in row["rounds"])
        assert lo <= row["seconds_per_epoch"] <= hi
    lo, hi = rows["lightgcn"]["ratio_range"]
    assert 0 < lo <= rows["lightgcn"]["ratio_to_freedom"] <= hi
    assert rows["freedom"]["model_config"]["knn_cache_dir"] == "none"  # the KNN build is timed, not cached
    env = result["environment"]
    for key in ("cpu", "cores", "gpu", "torch", "torch_geometric", "faiss"):
        assert env[key]
    md = (out / "speed.md").read_text()
    assert "| synthetic-tiny | freedom |" in md and "faiss" in md and "2 rounds" in md


def test_missing_real_dataset_is_skipped(tmp_path):
    out = tmp_path / "results"
    assert speed.main(["--datasets", "baby", "--models", "bpr", "--data-root", str(tmp_path),
                       "--out", str(out)]) == 0
    (row,) = json.loads((out / "speed.json").read_text())["rows"]
    assert row["status"] == "skipped" and "not found" in row["error"]
