"""resume.py: the state a checkpoint carries, the mid-epoch resume point, the run folder's files."""
from __future__ import annotations

import random

import pytest
import torch
from torch import nn

from dhmrec_pyg.training.checkpoint import CheckpointError, capture_rng_state, config_digest, load_checkpoint
from dhmrec_pyg.training.ema import WeightAverage
from dhmrec_pyg.training.execution import build_optimizer
from dhmrec_pyg.training.resume import RUN_FILES, ResumePoint, RunFolder, TrainingState


def _state(seed: int = 0, ema: bool = True) -> TrainingState:
    torch.manual_seed(seed)
    model = nn.Linear(4, 3)
    optimizer = build_optimizer(model.parameters(), lr=0.1, impl="loop")
    return TrainingState(model, optimizer, WeightAverage(model, 0.5) if ema else None, patience=3)


def _train_a_little(state: TrainingState) -> None:
    for _ in range(2):
        state.optimizer.zero_grad()
        state.model(torch.ones(2, 4)).pow(2).sum().backward()
        state.optimizer.step()
        assert state.ema is not None
        state.ema.update()
    state.record(0, {"epoch": 0, "loss": 1.0}, 0.25, {"recall@20": 0.25})
    state.epoch = 1


def test_resume_point_round_trips_through_a_checkpoint_and_skips_what_was_trained():
    point = ResumePoint(batch=2, sums={"loss": 3.0}, n=2, train_seconds=1.5, rng=capture_rng_state())
    expected_draw = random.random()
    back = ResumePoint.from_checkpoint({"batch": 2, "partial": point.partial(), "rng": point.rng})
    assert back == point and back.partial() == {"sums": {"loss": 3.0}, "n": 2, "train_seconds": 1.5}
    batches = iter(range(5))
    back.skip(batches)
    assert next(batches) == 2 and random.random() == expected_draw  # the RNG is back where it was
    fresh = iter(range(3))
    ResumePoint().skip(fresh)
    assert next(fresh) == 0


def test_record_keeps_the_best_weights_and_the_history():
    state = _state()
    assert state.record(0, {"epoch": 0}, 0.5, {"recall@20": 0.5})
    with torch.no_grad():
        state.model.weight.add_(1.0)
    assert not state.record(1, {"epoch": 1}, 0.4, {"recall@20": 0.4})
    assert state.best_state is not None
    assert not torch.equal(state.best_state["weight"], state.model.weight)
    assert [r["epoch"] for r in state.history.rows] == [0, 1] and state.early.best_epoch == 0


def test_capture_then_restore_gives_back_the_whole_state():
    state = _state()
    _train_a_little(state)
    generator = torch.Generator().manual_seed(5)
    ck = state.capture("digest", state.epoch, 0, generator.get_state())
    assert ck["config_sha256"] == "digest" and (ck["epoch"], ck["batch"]) == (1, 0)
    assert ck["partial"] == {"sums": {}, "n": 0, "train_seconds": 0.0}
    other = _state(seed=1)
    other_generator = torch.Generator().manual_seed(99)
    assert other.restore(ck, other_generator, where="ck.pt") is None  # an epoch's start
    assert other.epoch == 1 and other.history.rows == state.history.rows and other.early == state.early
    assert all(torch.equal(a, b) for a, b in zip(other.model.parameters(), state.model.parameters()))
    assert other.ema is not None and state.ema is not None
    assert all(torch.equal(a, b) for a, b in zip(other.ema.averages, state.ema.averages))
    assert torch.equal(other_generator.get_state(), generator.get_state())
    assert other.optimizer.state_dict()["state"][0]["step"] == state.optimizer.state_dict()["state"][0]["step"]


def test_a_mid_epoch_checkpoint_restores_a_resume_point_and_averages_are_required():
    state = _state()
    _train_a_little(state)
    point = ResumePoint(3, {"loss": 2.0}, 3, 0.5)
    ck = state.capture("d", 1, 3, torch.Generator().manual_seed(0).get_state(), point)
    back = _state(seed=2).restore(ck, torch.Generator(), where="ck.pt")
    assert back is not None and (back.batch, back.sums, back.n, back.train_seconds) == (3, {"loss": 2.0}, 3, 0.5)
    with pytest.raises(CheckpointError, match="ck.pt: no moving averages"):
        _state(seed=2).restore({**ck, "ema": None}, torch.Generator(), where="ck.pt")
    _state(seed=2, ema=False).restore({**ck, "ema": None}, torch.Generator(), where="ck.pt")  # none needed


def test_run_folder_starts_fresh_resumes_and_writes_only_on_the_main_process(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    for name in RUN_FILES:
        (run / name).write_text("stale")
    digest = config_digest("a: 1\n")
    folder = RunFolder(run, "a: 1\n", digest)
    assert folder.open(resume=False) is None
    # The new run is built beside the old one, which stays as it was until the first checkpoint.
    assert folder.path != run and sorted(p.name for p in folder.path.iterdir()) == ["config.yaml"]
    assert (folder.path / "config.yaml").read_text() == "a: 1\n"
    assert sorted(p.name for p in run.iterdir()) == sorted(RUN_FILES)
    assert folder.intact_note(0).endswith("no checkpoint was written yet (the failure came in the first epoch)")
    state = _state()
    _train_a_little(state)
    folder.save_epoch(state, improved=True, generator_state=torch.Generator().get_state())
    assert folder.path == run and not folder.final.with_name(".run.new").exists()
    assert {p.name for p in run.iterdir()} == {"config.yaml", "best.pt", "history.csv", "checkpoint.pt", "weights.json"}
    assert load_checkpoint(run / "checkpoint.pt", digest)["epoch"] == 1
    assert "the last good checkpoint" in folder.intact_note(1) and "is intact" in folder.intact_note(1)
    resumed = _state(seed=3)
    point = RunFolder(run, "a: 1\n", digest).start(True, resumed, torch.Generator())
    assert point is None and resumed.epoch == 1 and resumed.history.rows == state.history.rows
    with pytest.raises(CheckpointError, match="another config.yaml"):
        RunFolder(run, "a: 2\n", config_digest("a: 2\n")).open(resume=True)
    follower = RunFolder(tmp_path / "other", "a: 1\n", digest, is_main=False)
    follower.open(resume=False)
    follower.save_epoch(state, True, torch.Generator().get_state())
    follower.write_metrics({"x": 1})
    assert not (tmp_path / "other").exists()


def test_resume_without_a_checkpoint_starts_over_keeping_config_yaml(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text("kept\n")
    (run / "history.csv").write_text("stale")
    assert RunFolder(run, "new\n", "d").open(resume=True) is None
    assert (run / "config.yaml").read_text() == "kept\n" and not (run / "history.csv").exists()
    aside = [p for p in run.iterdir() if p.name.startswith("previous-")]  # the results are kept aside
    assert len(aside) == 1 and (aside[0] / "history.csv").read_text() == "stale"
