"""Trainer callbacks (on_epoch_end after the epoch's files are written) and the model name a run records."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, List, Tuple

import pytest
import torch
import yaml

from dhmrec_pyg.data import make_synthetic
from dhmrec_pyg.models import FREEDOM, FREEDOMConfig, LightGCN, LightGCNConfig
from dhmrec_pyg.training import TrainConfig
from dhmrec_pyg.training.checkpoint import load_checkpoint
from dhmrec_pyg.training.registry import model_name, named_config
from dhmrec_pyg.training.trainer import Trainer


@pytest.fixture(scope="module")
def data():
    return make_synthetic("tiny", seed=0, n_users=60, n_items=40, n_interactions=600)


def _cfg(**kw: Any) -> TrainConfig:
    return TrainConfig(**{"model": "lightgcn", "epochs": 3, "batch_size": 256, "progress": False,
                          "device": "cpu", "ks": [10, 20], **kw})


def _lightgcn(data) -> LightGCN:
    torch.manual_seed(0)
    return LightGCN(data, LightGCNConfig(embedding_dim=8, num_layers=1))


class _Recorder:
    """Records every call, and what the run folder holds at that moment."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self.calls: List[Tuple[Trainer, int, Dict[str, float], int, int]] = []

    def on_epoch_end(self, trainer: Trainer, epoch: int, row: Dict[str, float]) -> None:
        rows = (self.out / "history.csv").read_text().strip().splitlines()[1:]
        self.calls.append((trainer, epoch, row, len(rows), load_checkpoint(self.out / "checkpoint.pt")["epoch"]))


class _Prune(Exception):
    pass


class _PruneAt:
    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_epoch_end(self, trainer: Trainer, epoch: int, row: Dict[str, float]) -> None:
        if epoch == self.epoch:
            raise _Prune(f"pruned at {epoch} with {row['valid_recall@20']}")


def test_on_epoch_end_comes_after_the_epoch_is_written(data, tmp_path):
    out = tmp_path / "run"
    recorder = _Recorder(out)
    trainer = Trainer(_lightgcn(data), data, _cfg(), out, callbacks=[object(), recorder])  # no method: skipped
    trainer.fit()
    assert [c[1] for c in recorder.calls] == [0, 1, 2]
    for t, epoch, row, rows_on_disk, checkpoint_epoch in recorder.calls:
        assert t is trainer and row == trainer.history[epoch] and "valid_recall@20" in row
        assert (rows_on_disk, checkpoint_epoch) == (epoch + 1, epoch + 1)


def test_a_callback_error_leaves_fit_unchanged_and_the_run_resumable(data, tmp_path):
    out = tmp_path / "run"
    with pytest.raises(_Prune, match="pruned at 1 with") as info:
        Trainer(_lightgcn(data), data, _cfg(), out, callbacks=[_PruneAt(1)]).fit()
    assert type(info.value) is _Prune
    assert load_checkpoint(out / "checkpoint.pt")["epoch"] == 2 and not (out / "metrics.json").exists()
    resumed = Trainer(_lightgcn(data), data, _cfg(), out).fit(resume=True)
    straight = Trainer(_lightgcn(data), data, _cfg()).fit()
    assert resumed["valid"] == straight["valid"] and resumed["test"] == straight["test"]
    # in memory too: no run folder, the same exception
    with pytest.raises(_Prune):
        Trainer(_lightgcn(data), data, _cfg(), callbacks=[_PruneAt(0)]).fit()


def test_the_run_records_the_models_registered_name_not_the_default(data, tmp_path):
    out = tmp_path / "run"
    torch.manual_seed(0)
    model = FREEDOM(data, FREEDOMConfig(embedding_dim=8, knn_k=4))
    cfg = TrainConfig(epochs=2, batch_size=256, progress=False, device="cpu", ks=[10, 20])  # model: dhmrec
    trainer = Trainer(model, data, cfg, out)
    result = trainer.fit()
    assert result["model"] == "freedom" and trainer.cfg.model == "freedom" and cfg.model == "dhmrec"
    assert yaml.safe_load((out / "config.yaml").read_text())["train"]["model"] == "freedom"
    assert json.loads((out / "metrics.json").read_text())["model"] == "freedom"
    assert trainer.cfg.epochs == cfg.epochs and trainer.cfg.ks == cfg.ks  # nothing else changes


class MyLightGCN(LightGCN):
    """A user's subclass, not in the registry."""


def test_a_model_outside_the_registry_records_its_class_name(data):
    torch.manual_seed(0)
    model = MyLightGCN(data, LightGCNConfig(embedding_dim=8, num_layers=1))
    assert model_name(model) == "MyLightGCN" and model_name(_lightgcn(data)) == "lightgcn"
    cfg = _cfg(epochs=1)
    assert named_config(cfg, _lightgcn(data)) is cfg  # agrees: the same object
    assert Trainer(model, data, cfg).fit()["model"] == "MyLightGCN"
