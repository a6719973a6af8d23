"""WeightAverage: the moving average of a model's weights, on a tiny linear model."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from dhmrec_pyg.training.checkpoint import CheckpointError
from dhmrec_pyg.training.ema import WeightAverage


def _model() -> nn.Module:
    torch.manual_seed(0)
    model = nn.Linear(3, 2)
    model.register_buffer("counts", torch.zeros(2, dtype=torch.long))
    return model


def test_update_follows_the_recurrence():
    model = _model()
    ema = WeightAverage(model, decay=0.75)
    assert len(ema.averages) == 2  # weight and bias; buffers are not parameters
    expected = [p.detach().clone() for p in model.parameters()]
    for step in range(3):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(float(step + 1))
        ema.update()
        expected = [e + 0.25 * (p.detach() - e) for e, p in zip(expected, model.parameters())]
    for average, want in zip(ema.averages, expected):
        torch.testing.assert_close(average, want)
    assert not torch.equal(ema.averages[0], model.weight)


def test_swapped_in_holds_the_averages_and_gives_the_trained_weights_back():
    model = _model()
    ema = WeightAverage(model, decay=0.5)
    with torch.no_grad():
        model.weight.mul_(3.0)
    trained = model.weight.detach().clone()
    with ema.swapped_in():
        assert torch.equal(model.weight, ema.averages[0])
        assert not torch.equal(model.weight, trained)
    assert torch.equal(model.weight, trained)
    with pytest.raises(RuntimeError, match="boom"):
        with ema.swapped_in():
            raise RuntimeError("boom")
    assert torch.equal(model.weight, trained)  # also after an error inside the block


def test_load_copies_saved_averages_and_refuses_missing_ones():
    model = _model()
    ema = WeightAverage(model, decay=0.9)
    saved = [torch.full_like(a, 7.0) for a in ema.averages]
    ema.load(saved, where="run/checkpoint.pt")
    assert all(torch.equal(a, s) for a, s in zip(ema.averages, saved))
    with pytest.raises(CheckpointError, match=r"run/checkpoint.pt: no moving averages .* ema_decay=0.9"):
        ema.load(None, where="run/checkpoint.pt")
    with pytest.raises(CheckpointError, match="no moving averages"):
        ema.load(saved[:1], where="x")


@pytest.mark.parametrize("decay", [0.0, 1.0, -0.5])
def test_decay_outside_the_open_unit_interval_is_refused(decay):
    with pytest.raises(ValueError, match=f"decay must be in \\(0, 1\\), got {decay}"):
        WeightAverage(_model(), decay)
