"""benchmarks.probes: one result file summarising probe runs (finished or stopped by hand)."""
import csv
import json

from benchmarks import probes
from dhmrec_pyg.models import MODELS
from dhmrec_pyg.training.config import TrainConfig, dump_config


def fake_run(folder, valid, finished_best=None, model_name="dhmrec", train=None, **model):
    folder.mkdir(parents=True)
    config = MODELS[model_name].config_class(**model)
    train_cfg = TrainConfig(model=model_name, seed=3, **(train or {}))
    (folder / "config.yaml").write_text(dump_config(train_cfg, config))
    with (folder / "history.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, ["epoch", "loss", "train_seconds", "valid_recall@20", "diag_item_term_share"])
        writer.writeheader()
        for epoch, v in enumerate(valid):
            writer.writerow({"epoch": epoch, "loss": 1.0, "train_seconds": 2.0, "valid_recall@20": v,
                             "diag_item_term_share": 0.1 * epoch})
    if finished_best is not None:
        (folder / "metrics.json").write_text(json.dumps(
            {"best_epoch": finished_best, "test": {"recall@20": 0.5, "ndcg@20": 0.25}}))
    return folder


def test_curve_near_best_is_the_window_around_the_best_epoch():
    values = [0.0, 1.0, 0.0, 1.0, 0.0, 5.0, 0.0]
    near = probes.curve_near_best(values, best=5, window=1)  # epochs 4, 5, 6
    assert near["level"] == 5.0 / 3 and near["step_sd"] == 5.0  # steps +5, -5
    flat = probes.curve_near_best([0.25] * 30, best=12)  # 0.25: exact in binary
    assert flat == {"level": 0.25, "step_sd": 0.0}
    assert probes.curve_near_best([0.2], best=0) == {"level": 0.2, "step_sd": None}


def test_rows_name_changed_options_best_point_and_test(tmp_path):
    done = fake_run(tmp_path / "a", [0.1, 0.3, 0.2, 0.4], finished_best=3, attention_scale="sqrt_n")
    stopped = fake_run(tmp_path / "b", [0.1, 0.2], gamma_kl=0.2)
    row = probes.summarise_run(done)
    assert row["changed_from_defaults"] == {"attention_scale": "sqrt_n"}
    assert (row["best_epoch"], row["best_valid_recall@20"], row["finished"]) == (3, 0.4, True)
    assert row["test"] == {"recall@20": 0.5, "ndcg@20": 0.25}
    assert row["diagnostics_at_best"]["item_term_share"] == 0.30000000000000004
    # window of 10 around epoch 3 holds all four epochs: level 0.25; steps +0.2, -0.1, +0.2
    assert abs(row["valid_recall@20_near_best"] - 0.25) < 1e-12
    assert abs(row["valid_recall@20_step_sd"] - (0.02 ** 0.5)) < 1e-12
    capped = probes.summarise_run(done, max_epochs=3)  # the window misses the run's best epoch
    assert (capped["best_epoch"], capped["test"]) == (1, None)
    row_b = probes.summarise_run(stopped)
    assert not row_b["finished"] and row_b["test"] is None and row_b["seed"] == 3
    assert probes.main(["--name", "p", "--results", str(tmp_path / "out"), str(done), str(stopped)]) == 0
    text = (tmp_path / "out" / "p.md").read_text()
    assert "attention_scale=sqrt_n" in text and "stopped by hand" in text and "| 0.5000 |" in text
    assert "| a |" not in text and "dhmrec:" not in text  # one model: rows named by folder alone
    assert probes.main(["--name", "p", "--results", str(tmp_path / "out"), str(tmp_path / "none")]) == 2
    other = fake_run(tmp_path / "c", [0.2, 0.1], finished_best=0, model_name="lightgcn")
    assert probes.main(["--name", "q", "--results", str(tmp_path / "out"), str(done), str(other)]) == 0
    text = (tmp_path / "out" / "q.md").read_text()
    assert "| dhmrec: " in text and "| lightgcn: " in text  # models mixed: each row names its model


def test_training_options_that_change_the_run_are_named_with_the_model_options(tmp_path):
    run = fake_run(tmp_path / "a", [0.1, 0.2], train={"ema_decay": 0.995, "lr": 5e-4, "num_threads": 1},
                   gamma_kl=0.2)
    assert probes.summarise_run(run)["changed_from_defaults"] == {
        "gamma_kl": 0.2, "ema_decay": 0.995, "lr": 5e-4}  # not num_threads: how it ran, not what
