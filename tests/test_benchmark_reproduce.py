"""benchmarks.reproduce: the one-point run takes its seed from --set seed=N."""
from benchmarks import reproduce
from dhmrec_pyg.training.run import read_run_config


def test_set_seed_is_the_seed_of_the_one_point_run(tmp_path):
    results, runs = tmp_path / "results", tmp_path / "runs"
    argv = ["--dataset", "synthetic-tiny", "--model", "bpr", "--set", "epochs=1", "--set", "seed=3",
            "--set", "num_threads=1", "--results", str(results), "--runs", str(runs), "--tag", "s3"]
    assert reproduce.main(argv) == 0
    cfg, _ = read_run_config(runs / "synthetic-tiny_bpr_s3" / "grid_0")
    assert cfg.seed == 3
