"""benchmarks.paired: runs compared user by user, with standard errors of the paired differences."""
import json
import math
import statistics

import pytest
import torch

from benchmarks import paired
from dhmrec_pyg.cli import main


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("paired")
    folders = []
    for seed in (0, 1):
        folder = root / f"lightgcn_{seed}"
        assert main(["train", "--model", "lightgcn", "--data-root", str(root / "data"), "--out", str(folder),
                     "--epochs", "2", "--seed", str(seed), "--quiet"]) == 0
        folders.append(folder)
    return folders


def test_paired_file_reports_each_run_and_the_difference_with_the_first(two_runs, tmp_path):
    first, second = two_runs
    assert paired.main(["--name", "cmp", "--results", str(tmp_path), str(first), str(second)]) == 0
    report = json.loads((tmp_path / "cmp.json").read_text())
    rows = report["rows"]
    metrics = [json.loads((folder / "metrics.json").read_text()) for folder in two_runs]
    for row, m in zip(rows, metrics):  # each run's mean is the library's evaluation at its best epoch
        assert row["comparison"]["test"]["recall"]["mean"] == pytest.approx(m["test"]["recall@20"], abs=1e-6)
        assert row["comparison"]["test"]["ndcg"]["mean"] == pytest.approx(m["test"]["ndcg@20"], abs=1e-6)
    diff = rows[1]["comparison"]["test"]["recall_diff"]
    want = rows[1]["comparison"]["test"]["recall"]["mean"] - rows[0]["comparison"]["test"]["recall"]["mean"]
    assert diff["mean"] == pytest.approx(want, abs=1e-9)
    # the standard error of the user-by-user differences: their sample std over sqrt(users)
    per_user = [paired.per_user_metrics(folder, 20)["test"]["recall"] for folder in two_runs]
    deltas = (per_user[1] - per_user[0]).tolist()
    assert diff["users"] == len(deltas) > 1
    assert diff["se"] == pytest.approx(statistics.stdev(deltas) / math.sqrt(len(deltas)))
    assert "recall_diff" not in rows[0]["comparison"]["test"]
    text = (tmp_path / "cmp.md").read_text()
    assert "seed" in text and "±" in text


def test_paired_compare_refuses_other_users_and_missing_runs(two_runs, tmp_path, capsys):
    a = {s: {"users": torch.arange(3), "recall": torch.rand(3).double(), "ndcg": torch.rand(3).double()}
         for s in paired.SPLITS}
    b = {s: dict(v) for s, v in a.items()}
    b["test"] = {**a["test"], "users": torch.tensor([0, 1, 5])}
    with pytest.raises(ValueError, match="other test users"):
        paired.compare([a, b])
    assert paired.main(["--name", "x", "--results", str(tmp_path), str(two_runs[0]), str(tmp_path / "none")]) == 2
    assert "none" in capsys.readouterr().err
