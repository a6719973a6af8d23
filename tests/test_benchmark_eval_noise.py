"""benchmarks.eval_noise on a one-epoch LGMRec run of the demo data."""
import json

import pytest

from benchmarks import eval_noise
from dhmrec_pyg.cli import main


def test_noisy_draws_differ_and_deterministic_matches_the_run(tmp_path):
    run = tmp_path / "run"
    assert main(["train", "--model", "lgmrec", "--data-root", str(tmp_path / "data"), "--out", str(run),
                 "--epochs", "1", "--quiet"]) == 0
    out = tmp_path / "results"
    assert eval_noise.main(["--run", str(run), "--draws", "2", "--out", str(out)]) == 0
    (path,) = out.glob("eval_noise_*_run.json")
    result = json.loads(path.read_text())
    metrics = json.loads((run / "metrics.json").read_text())
    # The deterministic evaluation is the library's own: it reproduces the run's test figures.
    for key in eval_noise.METRICS:
        assert result["deterministic"]["test"][key] == pytest.approx(metrics["test"][key], abs=1e-6)
    first, second = (d["test"] for d in result["noisy"])
    assert first != second  # every draw has its own Gumbel noise and dropout mask
    assert "noisy min-max" in next(out.glob("eval_noise_*.md")).read_text()


def test_a_model_without_memberships_is_refused(tmp_path):
    run = tmp_path / "run"
    assert main(["train", "--model", "bpr", "--data-root", str(tmp_path / "data"), "--out", str(run),
                 "--epochs", "1", "--quiet"]) == 0
    with pytest.raises(SystemExit, match="LGMRec runs only"):
        eval_noise.main(["--run", str(run), "--out", str(tmp_path / "results")])
