"""benchmarks/breakdown.py: every timed part of DHMRec's step is reached, the KL's arithmetic is right,
the wrapped model code is restored, and the files are written."""
import json
import statistics

import pytest

from benchmarks import breakdown
from dhmrec_pyg.models import dhmrec as dhmrec_module


def test_breakdown_times_every_part_and_writes_its_files(tmp_path):
    original_kl = dhmrec_module.interaction_kl
    out = tmp_path / "out"
    assert breakdown.main(["--dataset", "synthetic-tiny", "--steps", "2", "--warmup", "1",
                           "--synthetic-root", str(tmp_path / "syn"), "--out", str(out)]) == 0
    assert dhmrec_module.interaction_kl is original_kl  # the timing wrapper is removed again
    result = json.loads((out / "breakdown_synthetic-tiny.json").read_text())
    seconds = result["dhmrec"]["seconds"]
    for label, _, _ in breakdown.PARTS:
        assert seconds[label] > 0, label  # each part was called, so each wrapper ran
    assert seconds[breakdown.KL_PART] > 0
    assert seconds["step"] >= seconds["forward"] + seconds["backward"] > seconds["forward"] > 0
    assert len(result["dhmrec"]["step_seconds"]) == len(result["freedom"]["step_seconds"]) == 2
    for name in ("dhmrec", "freedom"):  # a part's time is the median over the recorded steps
        assert result[name]["seconds"]["step"] == pytest.approx(statistics.median(result[name]["step_seconds"]))
    pairs = zip(result["dhmrec"]["step_seconds"], result["freedom"]["step_seconds"])
    assert result["dhmrec"]["paired_ratio"] == pytest.approx(statistics.median(a / b for a, b in pairs))
    kl = result["dhmrec"]["kl"]
    # the six products of both sides: 2 sides x 3 products x 2 * users * items * d
    assert kl["items"] == 150 and kl["dim"] == 64 and 0 < kl["users"] <= 200
    assert abs(kl["gflop"] - 12 * kl["users"] * kl["items"] * kl["dim"] / 1e9) < 1e-9
    assert kl["gemm_floor_seconds"] == pytest.approx(kl["gflop"] / kl["gemm_gflops"])  # the work at that rate
    assert kl["achieved_gflops"] == pytest.approx(kl["gflop"] / seconds[breakdown.KL_PART])
    text = (out / "breakdown_synthetic-tiny.md").read_text()
    assert "| **DHMRec step** |" in text and "FREEDOM step" in text and "Machine:" in text


def test_missing_real_data_is_skipped_with_the_reason(tmp_path, capsys):
    assert breakdown.main(["--dataset", "baby", "--data-root", str(tmp_path), "--out", str(tmp_path / "o")]) == 0
    assert "skipped" in capsys.readouterr().out and not (tmp_path / "o").exists()
