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


def test_breakdown_times_the_sampled_kl_under_a_tag(tmp_path):
    original = dhmrec_module.sampled_interaction_kl
    out = tmp_path / "out"
    assert breakdown.main(["--dataset", "synthetic-tiny", "--steps", "1", "--warmup", "1", "--set", "kl_align=8",
                           "--tag", "s8", "--synthetic-root", str(tmp_path / "syn"), "--out", str(out)]) == 0
    assert dhmrec_module.sampled_interaction_kl is original
    result = json.loads((out / "breakdown_synthetic-tiny_s8.json").read_text())
    assert result["options"] == ["kl_align=8"] and result["dhmrec"]["seconds"][breakdown.KL_PART] > 0
    kl = result["dhmrec"]["kl"]
    assert 8 < kl["items"] < 150  # the batch's positives and 8 drawn items, not the 150 of the catalogue
    assert "DHMRec with kl_align=8" in (out / "breakdown_synthetic-tiny_s8.md").read_text()


def test_a_bad_option_is_refused_before_any_work(tmp_path, capsys):
    import pytest

    with pytest.raises(SystemExit):
        breakdown.main(["--dataset", "synthetic-tiny", "--set", "kl_align=1", "--out", str(tmp_path / "o")])
    assert "DHMRecConfig.kl_align must be" in capsys.readouterr().err and not (tmp_path / "o").exists()
