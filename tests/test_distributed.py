"""Multi-process training (DDP over gloo on the CPU) and sharded evaluation."""
import csv
import json
import os
import subprocess
import sys

import pytest
import torch

from dhmrec_pyg.cli import main, without_option
from dhmrec_pyg.models import MODELS
from dhmrec_pyg.training import distributed as ddist
from dhmrec_pyg.training.config import TrainConfig
from dhmrec_pyg.training.run import load_data
from dhmrec_pyg.training.trainer import (
    RUN_FILES,
    Trainer,
    TrainingInterrupted,
    build_model,
    make_evaluators,
    seed_everything,
)

pytestmark = pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed unavailable")


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    return str(tmp_path_factory.mktemp("data"))


def _env():
    env = dict(os.environ, OMP_NUM_THREADS="1")
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    return env


def _run(cmd, cwd):
    proc = subprocess.run(cmd, cwd=cwd, env=_env(), capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def test_two_gloo_processes_train_like_one(tmp_path, data_root, capsys):
    out = tmp_path / "run"
    proc = _run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                 "-m", "dhmrec_pyg.cli", "train", "--model", "lightgcn", "--epochs", "2", "--data-root", data_root,
                 "--out", str(out), "--quiet"], tmp_path)
    # Rank 0 only: one result line, exactly the usual files, nothing else (no probes, no duplicates).
    assert proc.stdout.count("run folder:") == 1
    assert sorted(p.name for p in out.iterdir()) == sorted(RUN_FILES)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["distributed"]["world_size"] == 2
    assert metrics["distributed"]["backend"] == "gloo"
    assert metrics["distributed"]["params_identical_across_ranks"] is True
    rows = list(csv.DictReader((out / "history.csv").open()))
    assert [int(r["epoch"]) for r in rows] == [0, 1]

    # The saved best.pt, evaluated by one process, gives the metrics the two ranks computed.
    capsys.readouterr()
    assert main(["evaluate", str(out)]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["val"] == pytest.approx(metrics["valid"], abs=1e-6)
    assert printed["test"] == pytest.approx(metrics["test"], abs=1e-6)

    # Same global batches, same generator: training matches the single-process run
    # (up to the order of floating-point gradient sums).
    single = tmp_path / "single"
    assert main(["train", "--model", "lightgcn", "--epochs", "2", "--data-root", data_root, "--out", str(single), "--quiet"]) == 0
    ref = json.loads((single / "metrics.json").read_text())
    assert "distributed" not in ref
    assert metrics["best_epoch"] == ref["best_epoch"]
    assert metrics["test"] == pytest.approx(ref["test"], abs=1e-4)
    ref_rows = list(csv.DictReader((single / "history.csv").open()))
    for a, b in zip(rows, ref_rows):
        assert float(a["loss"]) == pytest.approx(float(b["loss"]), abs=1e-5)


def test_compiled_step_with_two_processes_matches_one_eager_process(tmp_path, data_root):
    """``--compile`` under DDP: the compiled, DDP-wrapped loss trains DHMRec like one eager process."""
    out = tmp_path / "run"
    common = ["--model", "dhmrec", "--epochs", "2", "--data-root", data_root, "--quiet", "--set", "knn_cache_dir=none"]
    _run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
          "-m", "dhmrec_pyg.cli", "train", *common, "--out", str(out),
          "--compile", "--set", "compile_backend=aot_eager"], tmp_path)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["execution"]["compile"] == "default"
    assert metrics["distributed"]["world_size"] == 2 and metrics["distributed"]["params_identical_across_ranks"]
    single = tmp_path / "single"
    assert main(["train", *common, "--out", str(single)]) == 0
    rows = list(csv.DictReader((out / "history.csv").open()))
    ref_rows = list(csv.DictReader((single / "history.csv").open()))
    assert len(rows) == len(ref_rows) == 2
    for a, b in zip(rows, ref_rows):
        for term in ("loss", "bpr"):
            assert float(a[term]) == pytest.approx(float(b[term]), rel=1e-4, abs=1e-6), term
        # Each rank averages the KL over its own share's distinct users: close, not equal.
        assert float(a["kl"]) == pytest.approx(float(b["kl"]), rel=1e-2)


def test_resume_with_two_processes_via_nproc(tmp_path, data_root):
    """A single-process run stopped mid-epoch continues under ``dhmrec train --nproc 2 --resume``."""
    cfg = TrainConfig(model="lightgcn", epochs=3, data_root=data_root, progress=False, num_threads=1)
    data = load_data(cfg)

    def trainer(out):
        seed_everything(cfg.seed)
        model = build_model(cfg.model, data, MODELS[cfg.model].config_class())
        return Trainer(model, data, cfg, out)

    reference = trainer(tmp_path / "ref").fit()
    stopped = trainer(tmp_path / "stopped")
    original = stopped._train_epoch

    def stop_in_epoch_one(epoch, generator, resume_point=None):
        if epoch == 1:
            stopped.request_stop()
        return original(epoch, generator, resume_point)

    stopped._train_epoch = stop_in_epoch_one
    with pytest.raises(TrainingInterrupted) as exc:
        stopped.fit()
    assert exc.value.epoch == 1 and exc.value.batch == 1

    _run([sys.executable, "-m", "dhmrec_pyg.cli", "train", "--resume", str(tmp_path / "stopped"),
          "--nproc", "2", "--quiet"], tmp_path)
    resumed = json.loads((tmp_path / "stopped" / "metrics.json").read_text())
    assert resumed["distributed"]["world_size"] == 2
    assert resumed["epochs_run"] == reference["epochs_run"] == 3
    assert resumed["best_epoch"] == reference["best_epoch"]
    assert resumed["test"] == pytest.approx(reference["test"], abs=1e-4)


def test_sharded_evaluation_sums_to_the_unsharded_metrics(data_root):
    cfg = TrainConfig(model="lightgcn", data_root=data_root, eval_batch_size=97)
    data = load_data(cfg)
    seed_everything(0)
    torch.manual_seed(3)
    users = torch.randn(int(data["user"].num_nodes), 8)
    items = torch.randn(int(data["item"].num_nodes), 8)
    for evaluator in make_evaluators(data, cfg).values():
        full = evaluator.evaluate(users, items)
        for world in (2, 3):
            shards = []
            for rank in range(world):
                lo, hi = ddist.shard_bounds(evaluator.users.numel(), rank, world)
                shards.append(evaluator.metric_sums(users, items, users=evaluator.users[lo:hi]))
            assert evaluator.metrics_from_sums(sum(shards)) == pytest.approx(full, abs=1e-6)


def test_shard_bounds_cover_every_item_once():
    for n in (0, 1, 5, 2048, 2049):
        for world in (1, 2, 3, 8):
            bounds = [ddist.shard_bounds(n, r, world) for r in range(world)]
            assert bounds[0][0] == 0 and bounds[-1][1] == n
            assert all(a[1] == b[0] for a, b in zip(bounds, bounds[1:]))
            sizes = [hi - lo for lo, hi in bounds]
            assert max(sizes) - min(sizes) <= 1


def test_single_process_is_not_distributed():
    assert ddist.current() == ddist.DistInfo()
    assert ddist.is_main_process() and not ddist.current().enabled
    assert ddist.broadcast_text("x") == "x" and ddist.broadcast_text(None) is None


def test_nproc_option_is_stripped_for_the_workers():
    assert without_option(["train", "--nproc", "2", "--epochs", "1"], "--nproc") == ["train", "--epochs", "1"]
    assert without_option(["train", "--nproc=4", "--quiet"], "--nproc") == ["train", "--quiet"]
    cmd = ddist.torchrun_command(2, ["train", "--quiet"])
    assert cmd[1:4] == ["-m", "torch.distributed.run", "--standalone"]
    assert cmd[-4:] == ["-m", "dhmrec_pyg.cli", "train", "--quiet"]


def test_nproc_must_be_positive(capsys):
    assert main(["train", "--nproc", "0"]) == 2
    assert "--nproc must be >= 1" in capsys.readouterr().err


def test_rank_zero_checks_reach_every_rank(tmp_path, data_root):
    """A run folder that cannot be used is a one-line error on every rank, and nothing is touched."""
    out = tmp_path / "taken"
    out.mkdir()
    (out / "metrics.json").write_text("{}")
    proc = subprocess.run([sys.executable, "-m", "dhmrec_pyg.cli", "train", "--nproc", "2", "--epochs", "1",
                           "--data-root", data_root, "--out", str(out), "--quiet"],
                          cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=240)
    assert proc.returncode != 0
    assert proc.stderr.count("folder already holds a run") == 2
    assert (out / "metrics.json").read_text() == "{}" and sorted(p.name for p in out.iterdir()) == ["metrics.json"]


def test_ranks_take_gpus_only_when_there_is_one_for_each(monkeypatch):
    from dhmrec_pyg.training.config import ConfigError

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    assert not ddist.ranks_use_cuda("auto")  # two ranks, one GPU: both train on the CPU
    assert not ddist.ranks_use_cuda("cpu")
    with pytest.raises(ConfigError, match="'cuda' with 2 processes on this machine needs 2 GPUs, and it has 1"):
        ddist.ranks_use_cuda("cuda")
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert ddist.ranks_use_cuda("auto") and ddist.ranks_use_cuda("cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert not ddist.ranks_use_cuda("auto")
