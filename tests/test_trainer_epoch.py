"""Trainer.train_epoch: the public epoch hook trains exactly fit's epochs, stops early on request, reports batches."""
import time

import pytest
import torch

from dhmrec_pyg.data import load_dataset
from dhmrec_pyg.models import MODELS
from dhmrec_pyg.training.config import TrainConfig
from dhmrec_pyg.training.trainer import Trainer, build_model, seed_everything


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return load_dataset("synthetic-tiny", root=tmp_path_factory.mktemp("data"))


def _trainer(data, epochs=2):
    cfg = TrainConfig(model="lightgcn", dataset="synthetic-tiny", epochs=epochs, batch_size=256, progress=False)
    seed_everything(cfg.seed)
    return Trainer(build_model("lightgcn", data, MODELS["lightgcn"].config_class()), data, cfg), cfg


def test_train_epoch_loop_trains_the_epochs_fit_trains(tiny):
    fitted, cfg = _trainer(tiny)
    result = fitted.fit()
    manual, _ = _trainer(tiny)
    generator = torch.Generator().manual_seed(cfg.seed)
    for epoch in range(cfg.epochs):
        start = time.perf_counter()
        losses, seconds = manual.train_epoch(epoch, generator)
        wall = time.perf_counter() - start
        assert 0.05 * wall < seconds <= wall  # a part of the call's own time: the epoch's, not a stale clock
        assert losses == pytest.approx({k: fitted.history[epoch][k] for k in losses}, rel=0, abs=0)
    if result["best_epoch"] == cfg.epochs - 1:  # fit ends on its best epoch's weights: here, the last
        for name, value in fitted.model.state_dict().items():
            assert torch.equal(value, manual.model.state_dict()[name]), name


def test_max_batches_and_callback(tiny):
    trainer, cfg = _trainer(tiny)
    calls = []
    losses, seconds = trainer.train_epoch(0, torch.Generator().manual_seed(0), max_batches=3,
                                          on_batch_end=lambda i, elapsed: calls.append((i, elapsed)))
    assert [i for i, _ in calls] == [0, 1, 2] and len(trainer.sampler) > 3
    times = [t for _, t in calls]
    assert times == sorted(times) and 0 < times[-1] <= seconds
    assert set(losses) >= {"loss"}
    with pytest.raises(ValueError, match="max_batches"):
        trainer.train_epoch(1, torch.Generator().manual_seed(0), max_batches=0)


def test_early_stopping_state():
    """EarlyStopping: best value/epoch, patience, and the checkpoint's dict of it."""
    from dhmrec_pyg.training import EarlyStopping

    early = EarlyStopping(patience=2)
    assert early.step(0, 0.1, {"recall@20": 0.1}) and not early.stopped
    assert not early.step(1, 0.1, {"recall@20": 0.1}) and early.stale == 1
    assert early.step(2, 0.3, {"recall@20": 0.3}) and early.best_epoch == 2 and early.stale == 0
    assert not early.step(3, 0.2, {}) and not early.step(4, 0.2, {}) and early.stopped
    again = EarlyStopping(patience=2)
    again.load_state_dict(early.state_dict())
    assert again == early and set(early.state_dict()) == {"best_value", "best_epoch", "best_valid", "stale"}
