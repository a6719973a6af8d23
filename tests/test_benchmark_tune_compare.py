"""benchmarks.tune_compare: every model tuned with the same budget, one table (tiny data)."""
import json

import pytest

pytest.importorskip("optuna")

from benchmarks import tune_compare  # noqa: E402


def test_equal_budget_table(tmp_path):
    results, runs = tmp_path / "results", tmp_path / "runs"
    argv = ["--dataset", "synthetic-tiny", "--models", "lightgcn,bpr", "--trials", "2", "--seeds", "0",
            "--epochs", "2", "--pruner", "none", "--results", str(results), "--runs", str(runs)]
    assert tune_compare.main(argv) == 0
    result = json.loads((results / "tune_synthetic-tiny.json").read_text())
    assert [r["model"] for r in result["rows"]] == ["lightgcn", "bpr"]
    assert result["budget"]["trials"] == 2 and result["budget"]["pruner"] == "none"
    for row in result["rows"]:
        tuned = json.loads((runs / "tune_synthetic-tiny" / row["model"] / "tune.json").read_text())
        assert tuned["n_trials"] == 2 and row["best_params"] == tuned["best_params"]
        assert row["seeds"] == [0] and row["test"]["recall@20"]["std"] == 0.0
        best = runs / "tune_synthetic-tiny" / row["model"] / "best" / "seed_0" / "metrics.json"
        assert row["test"]["recall@20"]["mean"] == json.loads(best.read_text())["test"]["recall@20"]
    text = (results / "tune_synthetic-tiny.md").read_text()
    assert "Budget per model: 2 finished-or-pruned trials" in text and "| lightgcn |" in text and "| bpr |" in text


def _row(model, recall):
    return {"model": model, "test": {"recall@20": {"mean": recall, "std": 0.0}}}


def test_verdict_against_the_best_baseline():
    v = tune_compare.verdict([_row("dhmrec", 0.0900), _row("freedom", 0.0931), _row("lightgcn", 0.0850)])
    assert v["baseline"] == "freedom" and not v["met"]
    assert v["ratio"] == pytest.approx(0.0900 / 0.0931)
    line = tune_compare._verdict_line(v)
    assert "3.3% below" in line and "not met" in line and "short by 5.3 points" in line
    assert tune_compare.verdict([_row("dhmrec", 0.0960), _row("freedom", 0.0931)])["met"]
    assert not tune_compare.verdict([_row("dhmrec", 0.0940), _row("freedom", 0.0931)])["met"]  # +1% < +2%
    assert tune_compare.verdict([_row("freedom", 0.0931)]) is None
    short = dict(_row("lgmrec", 0.0700), short="12 of 30 trials")
    v = tune_compare.verdict([_row("dhmrec", 0.0900), _row("freedom", 0.0931), short])
    assert v["short"] == ["lgmrec: 12 of 30 trials"]
    assert "Rows short of the budget: lgmrec: 12 of 30 trials." in tune_compare._verdict_line(v)


def test_report_only_reads_finished_tunings_and_refuses_short_ones(tmp_path, capsys):
    results, runs = tmp_path / "results", tmp_path / "runs"
    base = ["--dataset", "synthetic-tiny", "--models", "bpr", "--seeds", "0", "--epochs", "2", "--pruner", "none",
            "--results", str(results), "--runs", str(runs)]
    assert tune_compare.main(base + ["--trials", "2"]) == 0
    first = json.loads((results / "tune_synthetic-tiny.json").read_text())
    study = runs / "tune_synthetic-tiny" / "bpr" / "study.db"
    before = study.stat().st_mtime_ns
    assert tune_compare.main(base + ["--trials", "2", "--report-only", "--note", "quiet machine"]) == 0
    again = json.loads((results / "tune_synthetic-tiny.json").read_text())
    assert again["rows"][0]["best_params"] == first["rows"][0]["best_params"] and again["note"] == "quiet machine"
    assert again["command"].endswith("--report-only") and "quiet machine" not in again["command"]
    assert study.stat().st_mtime_ns == before  # nothing tuned
    assert tune_compare.main(base + ["--trials", "3", "--report-only", "--seeds", "0,1"]) == 0
    row = json.loads((results / "tune_synthetic-tiny.json").read_text())["rows"][0]
    assert row["short"] == "2 of 3 trials; best point run with seeds 0 of 0, 1"
    assert "bpr (**short of the budget**: 2 of 3 trials" in (results / "tune_synthetic-tiny.md").read_text()
    with pytest.raises(SystemExit, match="tune.json not found"):
        tune_compare.main(base + ["--trials", "2", "--report-only", "--models", "lightgcn"])
