"""The accuracy benchmark assembles a table from per-model selections (tiny synthetic smoke run)."""
import json
import statistics

import pytest

from benchmarks import accuracy


def test_accuracy_table_on_a_tiny_profile(tmp_path):
    results, runs = tmp_path / "results", tmp_path / "runs"
    argv = ["--dataset", "synthetic-tiny", "--models", "lightgcn,bpr", "--grid-size", "small",
            "--seeds", "0,1", "--set", "epochs=2", "--set", "num_threads=1",
            "--results", str(results), "--runs", str(runs)]
    assert accuracy.main(argv) == 0
    report = json.loads((results / "accuracy_synthetic-tiny.json").read_text())
    assert [r["model"] for r in report["rows"]] == ["lightgcn", "bpr"]
    for row in report["rows"]:
        assert row["seeds"] == [0, 1]
        per_model = json.loads((results / f"synthetic-tiny_{row['model']}_acc.json").read_text())
        assert row["peak_rss_mib"] == per_model["peak_rss_mib"]
        # mean and std over the seeds' own test results (the chosen grid run is its seed's run)
        folder = runs / f"synthetic-tiny_{row['model']}_acc"
        per_seed = []
        for seed in (0, 1):
            path = folder / "best_seeds" / f"seed_{seed}" / "metrics.json"
            metrics = json.loads((path if path.is_file() else folder / per_model["best_run"] / "metrics.json")
                                 .read_text())
            assert metrics["seed"] == seed
            per_seed.append(metrics["test"]["recall@20"])
        assert row["recall@20"]["mean"] == pytest.approx(statistics.fmean(per_seed))
        assert row["recall@20"]["std"] == pytest.approx(statistics.stdev(per_seed))
    text = (results / "accuracy_synthetic-tiny.md").read_text()
    assert "| lightgcn | num_layers=2 |" in text and "Machine:" in text
    assert "BPR negatives: drawn from the items with at least one training interaction" in text
    # Rows trained on different machines or with different negative pools say so, row by row.
    per_model = json.loads((results / "synthetic-tiny_bpr_acc.json").read_text())
    assert per_model["negatives"] == "trained"
    per_model["environment"] = {**per_model["environment"], "gpu": "NVIDIA H100 80GB HBM3"}
    per_model["negatives"] = "all"
    (results / "synthetic-tiny_bpr_acc.json").write_text(json.dumps(per_model))
    assert accuracy.main(argv + ["--assemble"]) == 0
    text = (results / "accuracy_synthetic-tiny.md").read_text()
    assert "Machines (s/epoch compares only rows of one machine):" in text
    assert "- bpr: " in text and "GPU NVIDIA H100 80GB HBM3" in text and "- lightgcn: " in text
    assert "BPR negatives: lightgcn: trained; bpr: all" in text
    # A second call with --reuse runs nothing new: the per-model files are left as they were.
    before = {p.name: p.stat().st_mtime_ns for p in results.glob("synthetic-tiny_*_acc.json")}
    assert accuracy.main(argv + ["--reuse"]) == 0
    assert {p.name: p.stat().st_mtime_ns for p in results.glob("synthetic-tiny_*_acc.json")} == before


def test_lgmrec_brings_its_tuned_row_and_unknown_models_are_named():
    assert accuracy.expand(["lgmrec", "bpr"]) == ["lgmrec", "lgmrec-tuned", "bpr"]
    assert accuracy.expand(["dhmrec"]) == ["dhmrec", "dhmrec-paper"]
    assert accuracy.result_stem("tiktok", "dhmrec-paper") == "tiktok_dhmrec_acc_paper"
    try:
        accuracy.expand(["nope"])
    except SystemExit as exc:
        assert "nope" in str(exc)
    else:
        raise AssertionError("unknown model accepted")
