"""``ema_decay``: evaluation, selection and best.pt use a moving average of the parameters."""
from __future__ import annotations

from pathlib import Path
from typing import List

import pytest
import torch

from dhmrec_pyg.cli import main
from dhmrec_pyg.data import load_dataset
from dhmrec_pyg.models import LightGCNConfig
from dhmrec_pyg.training import TrainConfig
from dhmrec_pyg.training.trainer import Trainer, build_model, evaluate_model, seed_everything

FAST = ["--set", "batch_size=1024", "--set", "num_layers=1", "--set", "embedding_dim=16",
        "--set", "num_threads=1", "--device", "cpu", "--quiet"]


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> str:
    root = tmp_path_factory.mktemp("data")
    load_dataset("demo", root=root)
    return str(root)


def _trainer(data_root: str, decay: float, out: Path | None = None, epochs: int = 2) -> Trainer:
    data = load_dataset("demo", root=data_root)
    cfg = TrainConfig(model="lightgcn", dataset="demo", data_root=data_root, epochs=epochs, batch_size=1024,
                      progress=False, device="cpu", ema_decay=decay)
    model_cfg = LightGCNConfig(embedding_dim=16, num_layers=1)
    seed_everything(cfg.seed)
    return Trainer(build_model("lightgcn", data, model_cfg), data, cfg, out, model_cfg)


def test_the_averages_follow_the_recurrence_and_only_evaluation_sees_them(data_root):
    trainer = _trainer(data_root, decay=0.8)
    params = [p for p in trainer.model.parameters()]
    expected = [p.detach().clone() for p in params]
    step = trainer.optimizer.step

    def recording_step(*args, **kwargs):
        out = step(*args, **kwargs)
        for average, param in zip(expected, params):
            average.mul_(0.8).add_(param.detach(), alpha=0.2)
        return out

    trainer.optimizer.step = recording_step  # type: ignore[method-assign]
    trainer.train_epoch(0, torch.Generator().manual_seed(0), max_batches=5)
    assert trainer.ema is not None
    for average, value in zip(trainer.ema, expected):
        torch.testing.assert_close(average, value)
    trained = [p.detach().clone() for p in params]
    assert not all(torch.equal(a, b) for a, b in zip(trained, expected))  # the average lags the steps
    with trainer.averaged_weights():
        assert all(torch.equal(p, a) for p, a in zip(params, trainer.ema))
        averaged_metrics = evaluate_model(trainer.model, trainer.evaluators["val"])
    assert all(torch.equal(p, t) for p, t in zip(params, trained))  # training goes on from its own weights
    assert averaged_metrics != evaluate_model(trainer.model, trainer.evaluators["val"])


def test_best_pt_holds_the_averaged_weights_of_the_best_epoch(data_root, tmp_path):
    trainer = _trainer(data_root, decay=0.9, out=tmp_path / "run", epochs=1)
    result = trainer.fit()
    assert trainer.ema is not None and result["best_epoch"] == 0
    best = torch.load(tmp_path / "run" / "best.pt", weights_only=True)
    names = [name for name, _ in trainer.model.named_parameters()]
    for name, average in zip(names, trainer.ema):
        assert torch.equal(best[name], average)
    assert "ema_decay: 0.9" in (tmp_path / "run" / "config.yaml").read_text()


def test_without_averaging_the_trainer_keeps_no_averages(data_root):
    trainer = _trainer(data_root, decay=0.0)
    assert trainer.ema is None
    before: List[torch.Tensor] = [p.detach().clone() for p in trainer.model.parameters()]
    with trainer.averaged_weights():
        assert all(torch.equal(p, b) for p, b in zip(trainer.model.parameters(), before))


@pytest.mark.parametrize("value", ["1.0", "-0.1"])
def test_an_out_of_range_decay_is_a_one_line_error_naming_it(data_root, tmp_path, capsys, value):
    code = main(["train", "--model", "lightgcn", "--data-root", data_root, "--out", str(tmp_path / "r"),
                 "--set", f"ema_decay={value}", *FAST])
    assert code != 0
    err = capsys.readouterr().err
    assert "ema_decay" in err and value in err
    assert not (tmp_path / "r").exists()
