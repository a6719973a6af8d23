"""Training that survives faults: exact resume after SIGKILL / SIGINT, atomic checkpoints, NaN guard,
run-folder errors."""
from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Dict

import pytest
import torch

from dhmrec_pyg import files as dfiles
from dhmrec_pyg.cli import main
from dhmrec_pyg.data import load_dataset
from dhmrec_pyg.models import MODELS, DHMRecConfig, LightGCN, LightGCNConfig
from dhmrec_pyg.training import TrainConfig
from dhmrec_pyg.training.checkpoint import CheckpointError, load_checkpoint
from dhmrec_pyg.training.sampler import BPRSampler
from dhmrec_pyg.training.trainer import (
    NonFiniteLossError,
    Trainer,
    TrainingInterrupted,
    build_model,
    seed_everything,
)

REPO = Path(__file__).resolve().parents[1]
TIMING = {"train_seconds", "eval_seconds"}
METRIC_TIMING = {"seconds_per_epoch", "eval_seconds"}
# Short epochs on the demo data: 20 batches of 1024, a 16-d one-layer LightGCN.
# Bit-identical resumption is promised on the CPU (GPU kernels may sum in another order), so
# these runs stay on the CPU also on a machine with a GPU.
FAST = ["--set", "batch_size=1024", "--set", "num_layers=1", "--set", "embedding_dim=16",
        "--set", "num_threads=1", "--device", "cpu"]


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> str:
    root = tmp_path_factory.mktemp("data")
    load_dataset("demo", root=root)  # materialise once, before any concurrent subprocess
    load_dataset("synthetic-tiny", root=root)
    return str(root)


def _history(run: Path) -> list:
    rows = list(csv.DictReader((run / "history.csv").open()))
    return [{k: v for k, v in r.items() if k not in TIMING} for r in rows]


def _metrics(run: Path) -> dict:
    m = json.loads((run / "metrics.json").read_text())
    return {k: v for k, v in m.items() if k not in METRIC_TIMING}


def _assert_same_run(a: Path, b: Path) -> None:
    assert _history(a) == _history(b)
    assert _metrics(a) == _metrics(b)
    sa, sb = torch.load(a / "best.pt", weights_only=True), torch.load(b / "best.pt", weights_only=True)
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def _pause_sampler(monkeypatch, at_epoch: int, at_batch: int, action: Callable[[], None]) -> None:
    """Run ``action`` once batch ``at_batch`` of epoch ``at_epoch`` has been trained."""
    original = BPRSampler.epoch
    calls = {"n": 0}

    def epoch(self, generator):
        e = calls["n"]
        calls["n"] += 1
        for b, batch in enumerate(original(self, generator)):
            yield batch
            if e == at_epoch and b == at_batch:
                action()

    monkeypatch.setattr(BPRSampler, "epoch", epoch)


def _sigint() -> None:
    os.kill(os.getpid(), signal.SIGINT)


# A training subprocess that stops dead after a given batch (marker file written, then it sleeps),
# so that the test can SIGKILL it at a known point in the middle of an epoch.
_PAUSING_DRIVER = r"""
import os, sys, time, pathlib
from dhmrec_pyg.training.sampler import BPRSampler
original = BPRSampler.epoch
marker = pathlib.Path(os.environ["DHMREC_TEST_MARKER"])
at_epoch, at_batch = map(int, os.environ["DHMREC_TEST_PAUSE_AT"].split(":"))
calls = [0]
def epoch(self, generator):
    e = calls[0]; calls[0] += 1
    for b, batch in enumerate(original(self, generator)):
        yield batch
        if e == at_epoch and b == at_batch:
            marker.write_text(f"{e}:{b}")
            time.sleep(3600)
BPRSampler.epoch = epoch
from dhmrec_pyg.cli import main
sys.exit(main(sys.argv[1:]))
"""


def _cli(*args: str) -> list:
    return [sys.executable, "-m", "dhmrec_pyg.cli", *args]


def test_sigkill_mid_epoch_then_resume_is_identical_to_an_uninterrupted_run(tmp_path, data_root):
    common = ["train", "--model", "lightgcn", "--data-root", data_root, "--epochs", "6", "--quiet", *FAST]
    ref, run = tmp_path / "uninterrupted", tmp_path / "killed"
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    reference = subprocess.Popen(_cli(*common, "--out", str(ref)), cwd=tmp_path, env=env,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    marker = tmp_path / "paused"
    victim = subprocess.Popen(
        [sys.executable, "-c", _PAUSING_DRIVER, *common, "--out", str(run)], cwd=tmp_path,
        env={**env, "DHMREC_TEST_MARKER": str(marker), "DHMREC_TEST_PAUSE_AT": "3:6"},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        deadline = time.monotonic() + 400
        while not marker.exists():
            assert victim.poll() is None, victim.communicate()
            assert time.monotonic() < deadline, "the training subprocess never reached epoch 3"
            time.sleep(0.1)
        victim.send_signal(signal.SIGKILL)  # mid-epoch: batch 6 of epoch 3 trained, batch 7 not
        victim.wait(60)
    finally:
        if victim.poll() is None:
            victim.kill()
    assert victim.returncode == -signal.SIGKILL
    assert marker.read_text() == "3:6"
    ck = load_checkpoint(run / "checkpoint.pt")
    assert (ck["epoch"], ck["batch"], len(ck["history"])) == (3, 0, 3)  # last epoch boundary
    assert not (run / "metrics.json").exists()

    resumed = subprocess.run(_cli("train", "--resume", str(run), "--quiet"), cwd=tmp_path, env=env,
                             capture_output=True, text=True, timeout=400)
    assert resumed.returncode == 0, resumed.stderr
    out, err = reference.communicate(timeout=400)
    assert reference.returncode == 0, err
    assert len(_history(run)) == 6
    _assert_same_run(run, ref)
    # The final checkpoints agree too (model, optimizer, RNG states).
    a, b = load_checkpoint(run / "checkpoint.pt"), load_checkpoint(ref / "checkpoint.pt")
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    assert torch.equal(a["rng"]["torch"], b["rng"]["torch"])
    assert torch.equal(a["epoch_generator_state"], b["epoch_generator_state"])


def _format1(run: Path) -> str:
    """The run's config.yaml as code from before format 2 wrote it (format 1)."""
    from dhmrec_pyg.training.config import format1_text
    from dhmrec_pyg.training.run import read_run_config

    return format1_text(*read_run_config(run))


def _cli_train(data_root: str, out: Path, *extra: str) -> int:
    return main(["train", "--model", "lightgcn", "--data-root", data_root, "--out", str(out), "--quiet", *FAST, *extra])


def test_ctrl_c_finishes_the_batch_writes_a_checkpoint_and_resume_is_exact(
    tmp_path, data_root, monkeypatch, capsys
):
    ref = tmp_path / "ref"
    assert _cli_train(data_root, ref, "--epochs", "3") == 0
    run = tmp_path / "run"
    with monkeypatch.context() as m:
        _pause_sampler(m, 1, 4, _sigint)
        assert _cli_train(data_root, run, "--epochs", "3") == 130
    err = capsys.readouterr().err
    assert f"resume with: dhmrec train --resume {run}" in err
    assert "interrupted: checkpoint written at epoch 1, batch 6" in err
    ck = load_checkpoint(run / "checkpoint.pt")
    assert (ck["epoch"], ck["batch"], ck["partial"]["n"], len(ck["history"])) == (1, 6, 6, 1)
    assert main(["train", "--resume", str(run), "--quiet"]) == 0
    _assert_same_run(run, ref)


def test_ctrl_c_and_resume_with_averaged_weights_is_exact(tmp_path, data_root, monkeypatch):
    """With ema_decay the checkpoint carries the moving averages: resume gives the same best.pt."""
    ref = tmp_path / "ref"
    assert _cli_train(data_root, ref, "--epochs", "3", "--set", "ema_decay=0.9") == 0
    run = tmp_path / "run"
    with monkeypatch.context() as m:
        _pause_sampler(m, 1, 3, _sigint)
        assert _cli_train(data_root, run, "--epochs", "3", "--set", "ema_decay=0.9") == 130
    assert load_checkpoint(run / "checkpoint.pt")["ema"] is not None
    assert main(["train", "--resume", str(run), "--quiet"]) == 0
    _assert_same_run(run, ref)


@dataclass
class _Stop:
    trainer: Trainer | None = None

    def __call__(self) -> None:
        assert self.trainer is not None
        self.trainer.request_stop()


def _dhmrec_trainer(data, out: Path, epochs: int = 3) -> Trainer:
    cfg = TrainConfig(model="dhmrec", dataset="synthetic-tiny", epochs=epochs, batch_size=512,
                      progress=False, device="cpu")
    model_cfg = DHMRecConfig(embedding_dim=16, keep_ratio=0.5, knn_k=5)
    seed_everything(cfg.seed)
    model = build_model("dhmrec", data, model_cfg)
    return Trainer(model, data, cfg, out, model_cfg)


def test_dhmrec_mid_epoch_resume_replays_the_pruned_graph(tmp_path, data_root, monkeypatch):
    """DHMRec resamples its pruned graph in on_epoch_start: a mid-epoch resume must redraw it."""
    data = load_dataset("synthetic-tiny", root=data_root)
    ref_result = _dhmrec_trainer(data, tmp_path / "ref").fit()
    stop = _Stop()
    with monkeypatch.context() as m:
        _pause_sampler(m, 1, 2, stop)
        stop.trainer = _dhmrec_trainer(data, tmp_path / "run")
        with pytest.raises(TrainingInterrupted) as info:
            stop.trainer.fit()
    assert (info.value.epoch, info.value.batch) == (1, 4)
    result = _dhmrec_trainer(data, tmp_path / "run").fit(resume=True)
    strip = lambda r: {k: v for k, v in r.items() if k not in METRIC_TIMING}  # noqa: E731
    assert strip(result) == strip(ref_result)
    _assert_same_run(tmp_path / "run", tmp_path / "ref")


def test_resume_without_a_checkpoint_starts_over_and_a_finished_run_stays_finished(
    tmp_path, data_root, capsys
):
    ref = tmp_path / "ref"
    assert _cli_train(data_root, ref, "--epochs", "2") == 0
    early = tmp_path / "killed-early"  # killed while loading data: only config.yaml exists
    early.mkdir()
    (early / "config.yaml").write_text((ref / "config.yaml").read_text())
    (early / ".checkpoint.pt.abc.tmp").write_bytes(b"torn")  # a write cut short by the kill
    assert main(["train", "--resume", str(early), "--quiet"]) == 0
    assert "starting it over" in capsys.readouterr().err
    _assert_same_run(early, ref)
    before = _metrics(ref)
    assert main(["train", "--resume", str(ref), "--quiet"]) == 0
    assert _metrics(ref) == before and len(_history(ref)) == 2


def test_checkpoint_holds_everything_and_loads_without_pickle(tmp_path, data_root):
    run = tmp_path / "run"
    assert _cli_train(data_root, run, "--epochs", "2") == 0
    ck = torch.load(run / "checkpoint.pt", weights_only=True)
    assert ck["format"] == "dhmrec_pyg.checkpoint.v1"
    assert (ck["epoch"], ck["batch"]) == (2, 0)
    assert set(ck["model"]) == {"user_emb.weight", "item_emb.weight"}
    assert ck["optimizer"]["state"] and ck["optimizer"]["param_groups"][0]["lr"] == 1e-3
    assert set(ck["rng"]) >= {"python", "numpy", "torch"}
    assert ck["rng"]["torch"].dtype == torch.uint8
    assert ck["rng"]["numpy"]["keys"].numel() == 624
    assert set(ck["early_stopping"]) == {"best_value", "best_epoch", "best_valid", "stale"}
    assert [r["epoch"] for r in ck["history"]] == [0, 1]
    assert ck["epoch_generator_state"].dtype == torch.uint8
    best = torch.load(run / "best.pt", weights_only=True)
    assert all(torch.equal(best[k], ck["best_model"][k]) for k in best)


def test_rng_states_round_trip():
    import random

    import numpy as np

    from dhmrec_pyg.training.checkpoint import capture_rng_state, restore_rng_state

    random.seed(3), np.random.seed(4), torch.manual_seed(5)
    random.gauss(0, 1), np.random.standard_normal()  # leave cached Gaussians behind
    state = capture_rng_state()
    first = (random.random(), random.gauss(0, 1), np.random.standard_normal(3).tolist(), torch.rand(3))
    restore_rng_state(state)
    again = (random.random(), random.gauss(0, 1), np.random.standard_normal(3).tolist(), torch.rand(3))
    assert first[:3] == again[:3] and torch.equal(first[3], again[3])


def test_a_write_cut_short_leaves_the_previous_checkpoint(tmp_path, data_root, monkeypatch):
    run = tmp_path / "run"
    assert _cli_train(data_root, run, "--epochs", "1") == 0
    before = (run / "checkpoint.pt").read_bytes()
    real_save = torch.save

    def dying_save(obj, fh, *a, **k):
        real_save(obj, fh, *a, **k)
        fh.truncate(100)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", dying_save)
    with pytest.raises(OSError):
        dfiles.save_tensors(run / "checkpoint.pt", {"x": torch.zeros(3)})
    assert (run / "checkpoint.pt").read_bytes() == before
    assert [p.name for p in run.iterdir() if p.name.endswith(".tmp")] == []


def test_bad_checkpoints_are_one_line_errors(tmp_path, data_root, capsys):
    run = tmp_path / "run"
    assert _cli_train(data_root, run, "--epochs", "1") == 0
    good = (run / "checkpoint.pt").read_bytes()
    (run / "metrics.json").unlink()  # as if killed before the end
    (run / "checkpoint.pt").write_bytes(good[: len(good) // 2])
    capsys.readouterr()
    assert main(["train", "--resume", str(run), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert "checkpoint.pt: damaged or changed" in err and len(err.splitlines()) == 1
    (run / "weights.json").unlink()  # a folder from before the manifest: the file itself is read
    assert main(["train", "--resume", str(run), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert "checkpoint.pt: unreadable checkpoint" in err and len(err.splitlines()) == 1
    (run / "checkpoint.pt").write_bytes(good)
    (run / "config.yaml").write_text((run / "config.yaml").read_text().replace("lr: 0.001", "lr: 0.01"))
    assert main(["train", "--resume", str(run), "--quiet"]) == 2
    assert "another config.yaml" in capsys.readouterr().err
    with pytest.raises(CheckpointError, match="not a dhmrec_pyg.checkpoint.v1"):
        torch.save({"format": "other"}, tmp_path / "x.pt")
        load_checkpoint(tmp_path / "x.pt")


# ---------------------------------------------------------------------------------- NaN guard
@dataclass
class _NaNConfig(LightGCNConfig):
    nan_epoch: int = -1
    nan_batch: int = -1


class _NaNLightGCN(LightGCN):
    """LightGCN whose 'reg' term turns NaN at a chosen (epoch, batch): a test hook."""

    config_class = _NaNConfig

    def on_epoch_start(self, epoch: int, generator: torch.Generator) -> None:
        self._epoch, self._batch = epoch, 0
        super().on_epoch_start(epoch, generator)

    def loss(self, users, pos_items, neg_items) -> Dict[str, torch.Tensor]:
        terms = super().loss(users, pos_items, neg_items)
        if (self._epoch, self._batch) == (self.config.nan_epoch, self.config.nan_batch):
            terms["reg"] = terms["reg"] * float("nan")
            terms["loss"] = terms["loss"] + terms["reg"]
        self._batch += 1
        return terms


def test_nan_loss_stops_naming_epoch_batch_and_term_and_keeps_the_checkpoint(
    tmp_path, data_root, monkeypatch, capsys
):
    monkeypatch.setitem(MODELS, "nan-lightgcn", _NaNLightGCN)
    run = tmp_path / "run"
    ok = tmp_path / "ok"
    assert _cli_train(data_root, ok, "--model", "nan-lightgcn", "--epochs", "2") == 0
    capsys.readouterr()
    rc = _cli_train(data_root, run, "--model", "nan-lightgcn", "--epochs", "4",
                    "--set", "nan_epoch=2", "--set", "nan_batch=5")
    assert rc == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "loss term 'reg' is nan at epoch 2, batch 5" in err
    assert "checkpoint" in err and "intact" in err
    ck = load_checkpoint(run / "checkpoint.pt")
    assert (ck["epoch"], ck["batch"], len(ck["history"])) == (2, 0, 2)
    assert all(torch.isfinite(v).all() for v in ck["model"].values())
    assert not (run / "metrics.json").exists()
    # The first two epochs equal those of a run that never saw a NaN.
    ref_ck = load_checkpoint(ok / "checkpoint.pt")
    assert all(torch.equal(ck["model"][k], ref_ck["model"][k]) for k in ck["model"])
    with pytest.raises(NonFiniteLossError) as info:
        seed_everything(0)
        data = load_dataset("demo", root=data_root)
        model = _NaNLightGCN(data, _NaNConfig(nan_epoch=0, nan_batch=0))
        Trainer(model, data, TrainConfig(model="lightgcn", epochs=1, progress=False, device="cpu")).fit()
    assert (info.value.epoch, info.value.batch, info.value.term) == (0, 0, "reg")


# ---------------------------------------------------------------------------- run-folder errors
def _one_line_error(capsys, rc: int, *needles: str) -> None:
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1, err
    for needle in needles:
        assert needle in err, err


def test_output_folder_problems_are_one_line_errors_before_training(tmp_path, data_root, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    _one_line_error(capsys, _cli_train(data_root, blocker / "run", "--epochs", "1"), "a file is in the way")
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    try:
        _one_line_error(capsys, _cli_train(data_root, locked, "--epochs", "1"), "not writable")
        _one_line_error(capsys, _cli_train(data_root, locked / "sub", "--epochs", "1"), "not writable")
    finally:
        locked.chmod(0o755)
    assert list(locked.iterdir()) == []
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "config.yaml").write_text("train: {}\n")
    _one_line_error(capsys, _cli_train(data_root, taken, "--epochs", "1"), "--resume", "--overwrite")
    assert [p.name for p in taken.iterdir()] == ["config.yaml"]


@pytest.mark.parametrize(
    "setup, extra, needle",
    [
        ("missing", [], "no such run folder"),
        ("file", [], "a file is in the way"),
        ("empty", [], "no config.yaml"),
        ("seeds", [], "resume its seed_*/grid_* runs"),
        ("run", ["--epochs", "3"], "cannot be combined with --epochs"),
        ("run", ["--set", "lr=1"], "cannot be combined with --set"),
        ("run", ["--overwrite"], "cannot be combined with --overwrite"),
    ],
)
def test_resume_problems_are_one_line_errors(tmp_path, capsys, setup, extra, needle):
    target = tmp_path / "target"
    if setup == "file":
        target.write_text("x")
    elif setup in ("empty", "seeds", "run"):
        target.mkdir()
        if setup == "seeds":
            (target / "seed_0").mkdir()
        if setup == "run":
            (target / "config.yaml").write_text("train: {}\n")
    _one_line_error(capsys, main(["train", "--resume", str(target), "--quiet", *extra]), needle)


def test_overwrite_replaces_a_stale_checkpoint(tmp_path, data_root):
    run = tmp_path / "run"
    assert _cli_train(data_root, run, "--epochs", "2") == 0
    assert _cli_train(data_root, run, "--epochs", "1", "--overwrite", "--set", "lr=0.01") == 0
    ck = load_checkpoint(run / "checkpoint.pt")
    assert ck["epoch"] == 1 and len(_history(run)) == 1


def test_a_run_from_before_the_negatives_option_resumes_with_every_item_as_its_pool(
    tmp_path, data_root, monkeypatch
):
    import dhmrec_pyg.training.trainer as trainer

    pools = []
    real = trainer.BPRSampler

    def recording(*args, **kwargs):
        pools.append(kwargs.get("negatives"))
        return real(*args, **kwargs)

    monkeypatch.setattr(trainer, "BPRSampler", recording)
    ref = tmp_path / "ref"
    assert _cli_train(data_root, ref, "--epochs", "1") == 0
    text = _format1(ref)
    assert "  negatives: trained\n" in text
    old = tmp_path / "old"  # written before train.negatives existed, killed before its first checkpoint
    old.mkdir()
    (old / "config.yaml").write_text(text.replace("  negatives: trained\n", ""))
    assert main(["train", "--resume", str(old), "--quiet"]) == 0
    assert pools == ["trained", "all"]  # the new run's default, then the old run's own pool
    assert (old / "metrics.json").is_file()
    # An old run with a checkpoint: its checkpoint still matches its config and it resumes.
    ckpt = tmp_path / "old-with-checkpoint"
    assert _cli_train(data_root, ckpt, "--epochs", "1", "--set", "negatives=all") == 0
    text = _format1(ckpt)
    assert "  negatives: all\n" in text
    (ckpt / "config.yaml").write_text(text.replace("  negatives: all\n", ""))
    before = _metrics(ckpt)
    (ckpt / "metrics.json").unlink()  # as if killed after its last checkpoint
    assert main(["train", "--resume", str(ckpt), "--quiet"]) == 0
    assert pools[-1] == "all" and _metrics(ckpt) == before
    from dhmrec_pyg.training.run import load_run

    assert load_run(ckpt, device="cpu")[0].negatives == "all"  # evaluate/recommend read it the same way
    # Such a folder also counts as a finished run of the same configuration.
    from dhmrec_pyg.models import MODELS
    from dhmrec_pyg.training.config import build_dataclass, load_yaml_config
    from dhmrec_pyg.training.run import finished_run

    raw = load_yaml_config(ckpt / "config.yaml")
    cfg = build_dataclass(TrainConfig, {**raw["train"], "negatives": "all"}, "training")
    model_cfg = build_dataclass(MODELS["lightgcn"].config_class, raw["model"], "model")
    assert finished_run(cfg, model_cfg, ckpt) is not None
    assert finished_run(build_dataclass(TrainConfig, raw["train"], "training"), model_cfg, ckpt) is None
    # The text a checkpoint is tied to is what code from before the option wrote for such a run.
    from dhmrec_pyg.training.config import format1_text, identity_text

    old_text = format1_text(replace(cfg, progress=True, device="auto"), model_cfg).replace("  negatives: all\n", "")
    assert identity_text(cfg, model_cfg) == old_text
    assert "negatives: trained" in identity_text(replace(cfg, negatives="trained"), model_cfg)


def test_a_finished_run_counts_whatever_adam_and_compile_it_ran_with(tmp_path):
    """How steps ran (optimizer_impl, compile) is not part of the configuration a grid reuses."""
    from dhmrec_pyg.models import MODELS
    from dhmrec_pyg.training.config import dump_config
    from dhmrec_pyg.training.run import finished_run

    model_cfg = MODELS["lightgcn"].config_class()
    cfg = TrainConfig(model="lightgcn", epochs=3)
    (tmp_path / "metrics.json").write_text('{"best_epoch": 1}')
    ran = replace(cfg, optimizer_impl="loop", compile="default")
    (tmp_path / "config.yaml").write_text(dump_config(ran, model_cfg))
    assert "optimizer_impl: loop" in (tmp_path / "config.yaml").read_text()
    assert finished_run(cfg, model_cfg, tmp_path) == {"best_epoch": 1}
    assert finished_run(replace(cfg, optimizer_impl="foreach"), model_cfg, tmp_path) == {"best_epoch": 1}
    assert finished_run(replace(cfg, epochs=4), model_cfg, tmp_path) is None  # what it computes still counts
