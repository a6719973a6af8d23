"""End to end: `dhmrec train` / `dhmrec evaluate` on the built-in demo data."""
import csv
import json
import statistics

import pytest
import torch

from dhmrec_pyg.cli import main
from dhmrec_pyg.models.base import EDGE
from dhmrec_pyg.schema import split_edge_index
from dhmrec_pyg.training.run import load_run
from tests.recount import recall_precision_by_hand


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    return str(tmp_path_factory.mktemp("data"))


def _train(tmp_path, data_root, *extra, name="run"):
    out = tmp_path / name
    rc = main(["train", "--model", "lightgcn", "--data-root", data_root, "--out", str(out), "--quiet", *extra])
    return rc, out


def _test_recall_precision_by_hand(run_folder, k):
    """Mean Recall@k and Precision@k of a saved run's best model on its test split, by hand."""
    run = load_run(run_folder)
    return recall_precision_by_hand(run.model, run.data[EDGE].edge_index, split_edge_index(run.data, "test"), k)


def test_train_writes_a_complete_run_folder(tmp_path, data_root):
    rc, out = _train(tmp_path, data_root, "--epochs", "3", "--set", "num_layers=1")
    assert rc == 0
    metrics = json.loads((out / "metrics.json").read_text())
    for split in ("valid", "test"):  # more items shown never find fewer of a user's items
        recalls = [metrics[split][f"recall@{k}"] for k in (5, 10, 20, 50)]
        hits = [metrics[split][f"precision@{k}"] * k for k in (5, 10, 20, 50)]
        assert recalls == sorted(recalls) and hits == pytest.approx(sorted(hits))
    # the test metrics are those of the saved best model, recounted by hand from its top 20
    recall, precision = _test_recall_precision_by_hand(out, 20)
    assert metrics["test"]["recall@20"] == pytest.approx(recall, abs=1e-6)
    assert metrics["test"]["precision@20"] == pytest.approx(precision, abs=1e-6)
    assert metrics["model"] == "lightgcn" and metrics["dataset"] == "demo"
    assert 0 <= metrics["best_epoch"] < 3
    rows = list(csv.DictReader((out / "history.csv").open()))
    assert [int(r["epoch"]) for r in rows] == [0, 1, 2]
    assert "num_layers: 1" in (out / "config.yaml").read_text()
    state = torch.load(out / "best.pt", weights_only=True)
    assert set(state) == {"user_emb.weight", "item_emb.weight"}


def test_same_seed_same_metrics_and_evaluate_reproduces(tmp_path, data_root, capsys):
    _, a = _train(tmp_path, data_root, "--epochs", "2", "--seed", "7", name="a")
    _, b = _train(tmp_path, data_root, "--epochs", "2", "--seed", "7", name="b")
    ma, mb = (json.loads((p / "metrics.json").read_text()) for p in (a, b))
    assert ma["test"] == mb["test"] and ma["valid"] == mb["valid"]
    capsys.readouterr()
    assert main(["evaluate", str(a)]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["test"] == pytest.approx(ma["test"], abs=1e-6)
    assert printed["val"] == pytest.approx(ma["valid"], abs=1e-6)


def test_training_learns_on_demo(tmp_path, data_root):
    _, out = _train(tmp_path, data_root, "--epochs", "8")
    rows = list(csv.DictReader((out / "history.csv").open()))
    assert float(rows[-1]["valid_recall@20"]) > float(rows[0]["valid_recall@20"])
    assert float(rows[-1]["loss"]) < float(rows[0]["loss"])


def test_seeds_report_mean_and_std(tmp_path, data_root, capsys):
    rc, out = _train(tmp_path, data_root, "--epochs", "1", "--seeds", "0,1", "--model", "bpr")
    assert rc == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["seeds"] == [0, 1]
    per_seed = [json.loads((out / f"seed_{s}" / "metrics.json").read_text())["test"]["recall@20"] for s in (0, 1)]
    assert summary["test"]["recall@20"]["mean"] == pytest.approx(statistics.fmean(per_seed))
    assert summary["test"]["recall@20"]["std"] == pytest.approx(statistics.stdev(per_seed))
    assert "±" in capsys.readouterr().out


def test_grid_selects_on_validation(tmp_path, data_root):
    rc, out = _train(tmp_path, data_root, "--epochs", "2", "--grid", "num_layers=0,1")
    assert rc == 0
    report = json.loads((out / "grid.json").read_text())
    rows = report["rows"]
    best = max(rows, key=lambda r: r["valid_recall@20"])
    assert report["best_run"] == best["run"]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--set", "num_layers=two"], "'num_layers' expects a value of type int, got 'two'"),
        (["--set", "bogus=1"], "unknown option 'bogus'"),
        (["--seeds", "a,b"], "--seeds expects comma-separated integers"),
        (["--epochs", "0"], "TrainConfig.epochs must be >= 1, got 0"),
        (["--dataset", "../etc"], "../etc"),
        (["--grid", "num_layers"], "--grid expects key=v1,v2"),
    ],
)
def test_bad_values_are_one_line_errors(tmp_path, data_root, capsys, args, message):
    rc, _ = _train(tmp_path, data_root, *args)
    assert rc == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


def test_existing_run_folder_needs_overwrite(tmp_path, data_root, capsys):
    out = tmp_path / "taken"
    out.mkdir()
    (out / "metrics.json").write_text("{}")
    rc = main(["train", "--model", "lightgcn", "--data-root", data_root, "--out", str(out), "--epochs", "1", "--quiet"])
    assert rc == 2 and "--overwrite" in capsys.readouterr().err
    assert (out / "metrics.json").read_text() == "{}"
    (tmp_path / "file").write_text("x")
    rc = main(["train", "--model", "lightgcn", "--data-root", data_root, "--out", str(tmp_path / "file"), "--quiet"])
    assert rc == 2 and "a file is in the way" in capsys.readouterr().err


def test_unknown_model_is_rejected_by_argparse(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["train", "--model", "nosuch"])
    assert exc.value.code == 2
    assert "invalid choice: 'nosuch'" in capsys.readouterr().err


def test_help_lists_every_option(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = capsys.readouterr().out
    for opt in ("--model", "--dataset", "--data-root", "--epochs", "--seed", "--seeds", "--out",
                "--set", "--grid", "--overwrite", "--config", "--device"):
        assert opt in text


def test_grid_with_reuse_reads_finished_runs_and_trains_the_rest(tmp_path, data_root, monkeypatch):
    import dhmrec_pyg.training.run as run
    from dhmrec_pyg.models import MODELS
    from dhmrec_pyg.training.config import TrainConfig

    cfg = TrainConfig(model="bpr", dataset="demo", data_root=data_root, epochs=1, progress=False)
    cls = MODELS["bpr"].config_class
    first = run.run_grid(cfg, {}, cls, {"seed": ["0"]}, tmp_path / "g", seeds=[0, 1])
    # The chosen grid run counts for its own seed: seed 0 was not trained a second time.
    assert not (tmp_path / "g" / "best_seeds" / "seed_0").exists()
    assert (tmp_path / "g" / "best_seeds" / "seed_1" / "metrics.json").is_file()

    trained = []
    real_fit = run.Trainer.fit

    def counting_fit(self, *args, **kwargs):
        trained.append(self.out_dir.name)
        return real_fit(self, *args, **kwargs)

    monkeypatch.setattr(run.Trainer, "fit", counting_fit)
    again = run.run_grid(cfg, {}, cls, {"seed": ["0"]}, tmp_path / "g", seeds=[0, 1, 2], reuse=True)
    assert trained == ["seed_2"]  # grid_0 and seed_1 were read back, only the new seed trained
    assert again["rows"] == first["rows"]
    assert again["seeds_summary"]["seeds"] == [0, 1, 2]
    # A finished run of another configuration is not taken for this one.
    other, model_cfg = run.apply_overrides(cfg, {}, cls, ["seed=0", "reg_weight=0.5"])
    assert run.finished_run(other, model_cfg, tmp_path / "g" / "grid_0") is None
    same, model_cfg = run.apply_overrides(cfg, {}, cls, ["seed=0"])
    assert run.finished_run(same, model_cfg, tmp_path / "g" / "grid_0")["seed"] == 0


def test_parallel_grid_gives_the_same_results_as_one_run_after_the_other(tmp_path, data_root):
    import dhmrec_pyg.training.run as run
    from dhmrec_pyg.models import MODELS
    from dhmrec_pyg.training.config import ConfigError, TrainConfig

    cfg = TrainConfig(model="bpr", dataset="demo", data_root=data_root, epochs=2, progress=False)
    cls = MODELS["bpr"].config_class
    grid = {"reg_weight": ["1e-4", "1e-2"]}
    serial = run.run_grid(cfg, {}, cls, grid, tmp_path / "serial", seeds=[0, 1])
    parallel = run.run_grid(cfg, {}, cls, grid, tmp_path / "parallel", seeds=[0, 1], jobs=2)
    assert parallel["rows"] == serial["rows"]
    assert parallel["seeds_summary"]["test"] == serial["seeds_summary"]["test"]
    for rel in ("grid_0/metrics.json", "grid_1/metrics.json", "best_seeds/seed_1/metrics.json"):
        a = json.loads((tmp_path / "serial" / rel).read_text())
        b = json.loads((tmp_path / "parallel" / rel).read_text())
        assert a["test"] == b["test"] and a["best_epoch"] == b["best_epoch"], rel
    # A one-point grid trains its other seeds alongside it, in their usual folders.
    one = run.run_grid(cfg, {}, cls, {"seed": ["0"]}, tmp_path / "one", seeds=[0, 1, 2], jobs=3)
    assert one["seeds_summary"]["seeds"] == [0, 1, 2]
    assert sorted(p.name for p in (tmp_path / "one" / "best_seeds").glob("seed_*")) == ["seed_1", "seed_2"]
    with pytest.raises(ConfigError, match="jobs must be >= 1, got 0"):
        run.run_many([], jobs=0)
