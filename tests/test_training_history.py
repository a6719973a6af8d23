"""history.py: history rows and their CSV, early stopping, metrics.json's summary."""
from __future__ import annotations

import csv
import math
from types import SimpleNamespace

import pytest

from dhmrec_pyg.training.history import EarlyStopping, History, epoch_row, run_summary


def test_epoch_row_orders_columns_and_keeps_only_metrics_at_10_and_20():
    row = epoch_row(3, {"loss": 0.5, "bpr": 0.4}, 1.5, 0.25,
                    {"recall@5": 0.1, "recall@10": 0.2, "ndcg@20": 0.3}, {"gap": 0.7})
    assert list(row) == ["epoch", "loss", "bpr", "train_seconds", "eval_seconds",
                         "valid_recall@10", "valid_ndcg@20", "diag_gap"]
    assert row["epoch"] == 3 and row["valid_ndcg@20"] == 0.3 and row["diag_gap"] == 0.7


def test_csv_has_every_column_in_order_of_first_appearance(tmp_path):
    history = History([{"epoch": 0, "loss": 1.0}])
    history.append({"epoch": 1, "loss": 0.5, "extra": 2.0})
    path = tmp_path / "history.csv"
    history.write(path)
    rows = list(csv.DictReader(path.open()))
    assert list(rows[0]) == ["epoch", "loss", "extra"]
    assert rows[0]["extra"] == "" and rows[1] == {"epoch": "1", "loss": "0.5", "extra": "2.0"}
    assert history.mean("loss") == 0.75 and History().mean("loss") == 0.0


def test_history_copies_rows_it_is_given():
    row = {"epoch": 0, "loss": 1.0}
    history = History([row])
    history.append(row)
    row["loss"] = 9.0
    assert [r["loss"] for r in history.rows] == [1.0, 1.0]


def test_early_stopping_counts_stale_epochs_and_round_trips_its_state():
    early = EarlyStopping(patience=2)
    assert early.best_value == -math.inf and not early.stopped
    assert early.step(0, 0.3, {"recall@20": 0.3})
    assert not early.step(1, 0.3, {"recall@20": 0.3})  # equal is not better
    assert not early.stopped and not early.step(2, 0.1, {})
    assert early.stopped and (early.best_epoch, early.best_value, early.stale) == (0, 0.3, 2)
    other = EarlyStopping(patience=2)
    other.load_state_dict(early.state_dict())
    assert other == early


def test_run_summary_names_the_run_and_averages_the_seconds():
    cfg = SimpleNamespace(model="freedom", dataset="demo", seed=4, valid_metric="recall@20")
    early = EarlyStopping(patience=3)
    early.step(1, 0.5, {"recall@20": 0.5})
    history = History([{"train_seconds": 1.0, "eval_seconds": 0.5}, {"train_seconds": 3.0, "eval_seconds": 1.5}])
    out = run_summary(cfg, early, history, {"recall@20": 0.4}, {"compile": "none"}, {"python": "3"})
    assert list(out) == ["model", "dataset", "seed", "best_epoch", "epochs_run", "valid_metric", "valid",
                         "test", "seconds_per_epoch", "eval_seconds", "execution", "environment"]
    assert (out["model"], out["best_epoch"], out["epochs_run"]) == ("freedom", 1, 2)
    assert out["seconds_per_epoch"] == pytest.approx(2.0) and out["eval_seconds"] == pytest.approx(1.0)
