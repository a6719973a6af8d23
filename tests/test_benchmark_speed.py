"""The speed benchmark runs end to end on a tiny synthetic profile (one subprocess per model)."""
import json
import statistics

import pytest

from benchmarks import speed


def test_speed_benchmark_tiny(tmp_path, capsys):
    out = tmp_path / "results"
    rc = speed.main([
        "--datasets", "synthetic-tiny", "--models", "freedom,lightgcn", "--repeats", "2", "--set", "batch_size=256",
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
        # full epochs (the default): every batch timed, s/epoch is the trainer's train_seconds
        assert row["batches_per_epoch"] >= 5 and row["timed_batches"] == row["batches_per_epoch"]
        assert row["full_epoch"] and row["seconds_per_epoch"] == pytest.approx(row["train_seconds"])
        assert row["extrapolated_from_first"] == speed.EXTRAPOLATION_CHECK
        assert row["seconds_per_batch"] == pytest.approx(row["seconds_per_epoch"] / row["batches_per_epoch"])
        assert row["shape"]["features"] == {"image": 16, "text": 8}
    assert rows["freedom"]["ratio_to_freedom"] == 1.0 and rows["freedom"]["ratio_range"] == [1.0, 1.0]
    assert rows["freedom"]["extrapolated_ratio_to_freedom"] == 1.0
    for row in rows.values():  # two rounds, each a fresh process; the row holds their medians
        assert [r["status"] for r in row["rounds"]] == ["ok", "ok"]
        for key in speed._MEDIAN_FIELDS:  # every timing of the row is the median of its rounds'
            assert row[key] == pytest.approx(statistics.median(r[key] for r in row["rounds"])), key
        assert row["peak_rss_mib"] == max(r["peak_rss_mib"] for r in row["rounds"])
        lo, hi = sorted(r["seconds_per_epoch"] for r in row["rounds"])
        assert lo <= row["seconds_per_epoch"] <= hi
        for r in row["rounds"]:  # the per-batch times of the timed epoch add up to it, and give the estimate
            assert sum(r["batch_seconds"]) == pytest.approx(r["train_seconds"], rel=0.05)
            assert r["extrapolated_seconds_per_epoch"] == pytest.approx(
                speed.extrapolate(r["batch_seconds"][:speed.EXTRAPOLATION_CHECK], row["batches_per_epoch"]))
    lo, hi = rows["lightgcn"]["ratio_range"]
    assert 0 < lo <= rows["lightgcn"]["ratio_to_freedom"] <= hi
    assert rows["freedom"]["graph_config"]["knn_cache_dir"] == "none"  # the KNN build is timed, not cached
    env = result["environment"]
    for key in ("cpu", "cores", "gpu", "torch", "torch_geometric", "faiss"):
        assert env[key]
    md = (out / "speed.md").read_text()
    assert "| synthetic-tiny | freedom |" in md and "faiss" in md and "2 rounds" in md
    assert "one full training epoch" in md


def test_speed_benchmark_extrapolates_from_the_first_batches(tmp_path):
    out = tmp_path / "results"
    assert speed.main(["--datasets", "synthetic-tiny", "--models", "bpr", "--batches", "3", "--set",
                       "batch_size=256", "--synthetic-root", str(tmp_path / "data"), "--out", str(out)]) == 0
    (row,) = json.loads((out / "speed.json").read_text())["rows"]
    assert row["status"] == "ok", row
    assert row["timed_batches"] == 3 < row["batches_per_epoch"] and not row["full_epoch"]
    (run,) = row["rounds"]
    assert row["seconds_per_epoch"] == pytest.approx(speed.extrapolate(run["batch_seconds"], row["batches_per_epoch"]))
    assert "extrapolated from the first 3 batches" in (out / "speed.md").read_text()


def test_extrapolate():
    assert speed.extrapolate([5.0, 1.0, 3.0], 10) == 5.0 + 2.0 * 9  # first batch (with the draw) + mean of the rest
    assert speed.extrapolate([2.0], 4) == 8.0
    with pytest.raises(ValueError):
        speed.extrapolate([], 3)


def test_missing_real_dataset_is_skipped(tmp_path):
    out = tmp_path / "results"
    assert speed.main(["--datasets", "baby", "--models", "bpr", "--data-root", str(tmp_path),
                       "--out", str(out)]) == 0
    (row,) = json.loads((out / "speed.json").read_text())["rows"]
    assert row["status"] == "skipped" and "not found" in row["error"]


def test_variants_name_a_model_with_options_of_its_own():
    from dhmrec_pyg.models import MODELS

    got = speed.parse_variants(["dhmrec_s64=dhmrec:kl_align=64:gamma_kl=0.1"], MODELS)
    assert got == {"dhmrec_s64": ("dhmrec", ["kl_align=64", "gamma_kl=0.1"])}
    for bad, needle in (("x=nomodel:kl_align=4", "a model of"), ("dhmrec=dhmrec:kl_align=4", "a new label"),
                        ("x=dhmrec:kl_align=1", "DHMRecConfig.kl_align must be"),
                        ("x=freedom:kl_align=4", "kl_align")):
        message = speed.parse_variants([bad], MODELS)
        assert isinstance(message, str) and needle in message and bad in message, message


def test_the_prepared_gpu_script_parses_and_names_what_benchmarks_speed_takes():
    """benchmarks/gpu_rows.sh is meant for one call on a lent GPU (not run here): it must parse,
    and its models and variants must be ones benchmarks.speed accepts."""
    import re
    import shutil
    import subprocess
    from pathlib import Path

    from dhmrec_pyg.models import MODELS

    script = Path(speed.__file__).resolve().parent / "gpu_rows.sh"
    if shutil.which("bash") is None:
        pytest.skip("no bash on this machine to parse the script")
    subprocess.run(["bash", "-n", str(script)], check=True)
    text = script.read_text()
    assert "python3 -m benchmarks.speed --device cuda" in text
    variants = speed.parse_variants(re.findall(r"--variant (\S+)", text), MODELS)
    assert isinstance(variants, dict) and set(variants) == {"dhmrec_exact", "dhmrec_s1024"}, variants
    models = re.search(r"--models (\S+)", text).group(1).split(",")
    assert models and all(m in MODELS or m in variants for m in models), models
