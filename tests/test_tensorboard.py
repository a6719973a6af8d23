"""TensorBoard logging (``--logger tensorboard`` / ``TrainConfig.logger``): what the event files hold,
resume without repeated epochs, and the option's place outside a run's identity."""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Dict, List

import pytest
import torch

pytest.importorskip("tensorboard")
from tensorboard.backend.event_processing.event_accumulator import SCALARS, TENSORS, EventAccumulator  # noqa: E402

from dhmrec_pyg.cli import main  # noqa: E402
from dhmrec_pyg.data import make_synthetic  # noqa: E402
from dhmrec_pyg.errors import ConfigError  # noqa: E402
from dhmrec_pyg.models import LightGCN, LightGCNConfig  # noqa: E402
from dhmrec_pyg.training import TrainConfig  # noqa: E402
from dhmrec_pyg.training import logging_tb  # noqa: E402
from dhmrec_pyg.training.config import identity_text  # noqa: E402
from dhmrec_pyg.training.interrupt import TrainingInterrupted  # noqa: E402
from dhmrec_pyg.training.trainer import Trainer  # noqa: E402


def _events(folder: Path) -> EventAccumulator:
    events = EventAccumulator(str(folder), size_guidance={SCALARS: 0, TENSORS: 0})
    events.Reload()
    return events


def _steps(events: EventAccumulator, tag: str) -> List[int]:
    return [e.step for e in events.Scalars(tag)]


def test_train_logger_tensorboard_writes_one_recall_per_epoch(tmp_path):
    out = tmp_path / "run"
    assert main(["train", "--model", "lightgcn", "--data-root", str(tmp_path / "data"), "--out", str(out),
                 "--epochs", "2", "--quiet", "--logger", "tensorboard"]) == 0
    assert (out / "history.csv").is_file()  # always written
    events = _events(out / "tensorboard")
    recall = events.Scalars("valid/recall@20")
    assert [e.step for e in recall] == [0, 1]
    import csv

    rows = list(csv.DictReader((out / "history.csv").open()))
    assert [round(e.value, 6) for e in recall] == [round(float(r["valid_recall@20"]), 6) for r in rows]
    scalars = set(events.Tags()["scalars"])
    assert {"train/loss", "train/bpr", "train/reg", "time/train_seconds"} <= scalars
    assert "config" in "".join(events.Tags()["tensors"])  # the run's config.yaml as text
    assert "logger: tensorboard" in (out / "config.yaml").read_text()


def test_default_logger_writes_no_event_files(tmp_path):
    out = tmp_path / "run"
    assert main(["train", "--model", "bpr", "--data-root", str(tmp_path / "data"), "--out", str(out),
                 "--epochs", "1", "--quiet"]) == 0
    assert not (out / "tensorboard").exists()


@pytest.fixture(scope="module")
def data():
    return make_synthetic("tiny", seed=0, n_users=60, n_items=40, n_interactions=600)


def _trainer(data, out: Path, callbacks=(), **kw: Any) -> Trainer:
    torch.manual_seed(0)
    cfg = TrainConfig(**{"model": "lightgcn", "epochs": 4, "batch_size": 256, "progress": False, "device": "cpu",
                         "ks": [10, 20], "logger": "tensorboard", **kw})
    return Trainer(LightGCN(data, LightGCNConfig(embedding_dim=8, num_layers=1)), data, cfg, out,
                   callbacks=list(callbacks))


class _StopAfter:
    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_epoch_end(self, trainer: Trainer, epoch: int, row: Dict[str, float]) -> None:
        if epoch == self.epoch:
            trainer.request_stop()


def test_a_resumed_run_appends_each_epoch_once(data, tmp_path):
    out = tmp_path / "run"
    with pytest.raises(TrainingInterrupted):
        _trainer(data, out, [_StopAfter(1)]).fit()
    assert _steps(_events(out / "tensorboard"), "valid/recall@20") == [0, 1]
    result = _trainer(data, out).fit(resume=True)
    events = _events(out / "tensorboard")
    assert len(list((out / "tensorboard").glob("events.out.tfevents.*"))) == 2  # appended, not replaced
    assert _steps(events, "valid/recall@20") == [0, 1, 2, 3]
    assert _steps(events, "train/loss") == [0, 1, 2, 3]
    assert result["epochs_run"] == 4


def test_an_epoch_checkpointed_but_not_logged_is_written_on_resume(data, tmp_path):
    """A process killed between an epoch's checkpoint and its scalars: the resumed run writes that
    epoch first, and an epoch written in part is purged and written whole."""
    out = tmp_path / "run"

    class _Crash:
        def on_epoch_end(self, trainer: Trainer, epoch: int, row: Dict[str, float]) -> None:
            if epoch == 1:
                raise RuntimeError("killed")

    trainer = _trainer(data, out, [_Crash()])
    logger = trainer.callbacks[0]
    assert isinstance(logger, logging_tb.TensorBoardLogger)
    real = logger._write_row

    def partial(epoch: int, row: Dict[str, float]) -> None:
        real(epoch, {"valid_recall@20": row["valid_recall@20"]} if epoch == 1 else row)  # epoch 1: in part

    logger._write_row = partial
    with pytest.raises(RuntimeError, match="killed"):
        trainer.fit()
    assert _steps(_events(out / "tensorboard"), "train/loss") == [0]
    _trainer(data, out).fit(resume=True)
    events = _events(out / "tensorboard")
    for tag in ("valid/recall@20", "train/loss", "train/bpr"):
        assert _steps(events, tag) == [0, 1, 2, 3], tag
    assert len(events.Tensors("config/text_summary")) == 1


def test_a_run_that_starts_over_drops_earlier_event_files(data, tmp_path):
    out = tmp_path / "run"
    _trainer(data, out, epochs=2).fit()
    _trainer(data, out, epochs=1).fit()  # a new run in the same folder
    assert len(list((out / "tensorboard").glob("events.out.tfevents.*"))) == 1
    assert _steps(_events(out / "tensorboard"), "valid/recall@20") == [0]


def test_logger_is_no_part_of_a_runs_identity_and_is_checked():
    cfg, model_cfg = TrainConfig(), LightGCNConfig()
    assert identity_text(dataclasses.replace(cfg, logger="tensorboard"), model_cfg) == identity_text(cfg, model_cfg)
    assert "logger" not in identity_text(cfg, model_cfg)
    with pytest.raises(ConfigError, match="TrainConfig.logger.*'wandb'"):
        TrainConfig(logger="wandb")


def test_missing_tensorboard_is_one_line_naming_the_extra(monkeypatch, tmp_path):
    import builtins

    real_import = builtins.__import__

    def no_tensorboard(name, *args, **kwargs):
        if name.startswith("torch.utils.tensorboard"):
            raise ImportError("No module named 'tensorboard'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_tensorboard)
    with pytest.raises(ConfigError, match=r"'tensorboard' extra: pip install 'dhmrec_pyg\[tensorboard\]'") as err:
        logging_tb.tensorboard_logger(TrainConfig(logger="tensorboard"), None, tmp_path, "")
    assert "\n" not in str(err.value)
    assert logging_tb.tensorboard_logger(TrainConfig(logger="tensorboard"), None, None, "") is None


def test_tuning_trials_log_with_set_logger(tmp_path):
    pytest.importorskip("optuna")
    from dhmrec_pyg.tuning import tune

    data = make_synthetic("tiny", seed=0, n_users=60, n_items=40, n_interactions=600)
    report = tune("bpr", "tiny", 1, tmp_path / "tune", epochs=2, overrides=["logger=tensorboard", "batch_size=256"],
                  space={"lr": [1e-3]}, plots=False, data=data)
    run = tmp_path / "tune" / report["best_run"]
    assert _steps(_events(run / "tensorboard"), "valid/recall@20") == [0, 1]
