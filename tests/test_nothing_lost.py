"""Nothing lost: run folders that guard their results, verify their weights and know their data."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from dhmrec_pyg.cli import main
from dhmrec_pyg.data import DataError, load_dataset, open_dataset
from dhmrec_pyg.training import load_run
from dhmrec_pyg.training.fingerprint import DataChangedError
from dhmrec_pyg.training.weights import WeightsError, save_weights, verify_weights

REPO = Path(__file__).resolve().parents[1]
FAST = ["--model", "lightgcn", "--quiet", "--set", "batch_size=1024", "--set", "num_layers=1",
        "--set", "embedding_dim=16", "--set", "num_threads=1", "--device", "cpu"]


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    """A data root holding ``shop``: the tiny synthetic data set as a named data set of its own."""
    root = tmp_path_factory.mktemp("data")
    load_dataset("synthetic-tiny", root=root / "gen")
    shop = root / "shop"
    shop.mkdir()
    for name in ("image_feat.npy", "text_feat.npy"):
        shutil.copy(root / "gen" / "synthetic-tiny" / name, shop / name)
    shutil.copy(root / "gen" / "synthetic-tiny" / "synthetic-tiny.inter", shop / "shop.inter")
    return root


@pytest.fixture(scope="module")
def finished(data_root, tmp_path_factory) -> Path:
    """A finished two-epoch run on ``shop`` (copy it before changing it)."""
    run = tmp_path_factory.mktemp("runs") / "run"
    assert _train(data_root, run, "--epochs", "2") == 0
    return run


def _train(data_root: Path, out: Path, *extra: str, dataset: str = "shop") -> int:
    return main(["train", "--dataset", dataset, "--data-root", str(data_root), "--out", str(out), *FAST, *extra])


def _copy(run: Path, to: Path) -> Path:
    shutil.copytree(run, to)
    return to


def _files(run: Path) -> dict:
    return {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}


def _one_line(capsys, *needles: str) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    for needle in needles:
        assert needle in err, err
    return err


def _flip_a_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def _env() -> dict:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
            "OMP_NUM_THREADS": "1"}


# --------------------------------------------------------------------- results are never lost
def test_resuming_a_finished_run_without_its_checkpoint_changes_nothing(finished, tmp_path, capsys):
    run = _copy(finished, tmp_path / "run")
    (run / "checkpoint.pt").unlink()
    before = _files(run)
    capsys.readouterr()
    assert main(["train", "--resume", str(run), "--quiet"]) == 0
    assert "the run is finished" in capsys.readouterr().err
    assert _files(run) == before  # best.pt, metrics.json, history.csv byte-identical, nothing added


def test_a_run_without_a_checkpoint_starts_over_only_after_setting_its_results_aside(finished, tmp_path, capsys):
    run = _copy(finished, tmp_path / "run")
    for name in ("checkpoint.pt", "metrics.json"):  # as if killed between best.pt and the checkpoint
        (run / name).unlink()
    (run / ".checkpoint.pt.x1y2.tmp").write_bytes(b"torn")  # a write a kill cut short
    before = _files(run)
    capsys.readouterr()
    assert main(["train", "--resume", str(run), "--quiet"]) == 0
    assert "moved to" in capsys.readouterr().err
    aside = [p for p in run.iterdir() if p.name.startswith("previous-")]
    assert len(aside) == 1
    assert _files(aside[0]) == {k: v for k, v in before.items() if k != "config.yaml" and not k.endswith(".tmp")}
    assert (run / "metrics.json").is_file() and not list(run.glob(".*.tmp"))
    assert main(["evaluate", str(run)]) == 0  # the new run is complete and verified


_KILLABLE = r"""
import os, pathlib, sys, time
from dhmrec_pyg.training.sampler import BPRSampler
original = BPRSampler.epoch
def epoch(self, generator):
    for batch in original(self, generator):
        yield batch
        pathlib.Path(os.environ["MARKER"]).write_text("training")
        time.sleep(3600)
BPRSampler.epoch = epoch
from dhmrec_pyg.cli import main
sys.exit(main(sys.argv[1:]))
"""


def _wait_for(marker: Path, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + 240
    while not marker.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the subprocess never got there"
        time.sleep(0.1)


def test_overwrite_killed_early_leaves_the_old_run_and_later_replaces_it_whole(finished, data_root, tmp_path):
    run = _copy(finished, tmp_path / "run")
    (run / "recommendations_top20.csv").write_text("user,rank,item,score\n")
    before = _files(run)
    marker = tmp_path / "marker"
    args = ["train", "--dataset", "shop", "--data-root", str(data_root), "--out", str(run), *FAST,
            "--epochs", "1", "--overwrite", "--set", "lr=0.01"]
    proc = subprocess.Popen([sys.executable, "-c", _KILLABLE, *args], env={**_env(), "MARKER": str(marker)},
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        _wait_for(marker, proc)  # the new run is training its first batch
    finally:
        proc.kill()
        proc.communicate()
    assert _files(run) == before
    assert (tmp_path / ".run.new" / "config.yaml").is_file()  # the new run was being built beside it
    assert main(["evaluate", str(run)]) == 0
    assert _train(data_root, run, "--epochs", "1", "--overwrite", "--set", "lr=0.01") == 0
    assert not (run / "recommendations_top20.csv").exists()  # nothing of the old run lingers
    assert sorted(p.name for p in tmp_path.iterdir()) == ["marker", "run"]  # no staging folder left
    assert "lr: 0.01" in (run / "config.yaml").read_text()


def test_overwrite_stopped_before_its_first_checkpoint_removes_only_its_own_folder(
    finished, data_root, tmp_path, monkeypatch, capsys
):
    from dhmrec_pyg.training.sampler import BPRSampler

    run = _copy(finished, tmp_path / "run")
    before = _files(run)

    def interrupted(self, generator):
        raise KeyboardInterrupt
        yield  # a generator

    monkeypatch.setattr(BPRSampler, "epoch", interrupted)
    assert _train(data_root, run, "--epochs", "1", "--overwrite") == 130
    assert _files(run) == before and sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def test_overwrite_refuses_a_folder_that_holds_no_run(data_root, tmp_path, capsys):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "notes.txt").write_text("keep me")
    assert _train(data_root, folder, "--epochs", "1", "--overwrite") == 2
    _one_line(capsys, "holds files but no run")
    assert (folder / "notes.txt").read_text() == "keep me"


def test_ctrl_c_while_loading_the_data_is_one_line(data_root, tmp_path):
    driver = r"""
import os, pathlib, sys, time
import dhmrec_pyg.training.run as run
def load_data(cfg):
    pathlib.Path(os.environ["MARKER"]).write_text("loading")
    time.sleep(3600)
run.load_data = load_data
from dhmrec_pyg.cli import main
sys.exit(main(sys.argv[1:]))
"""
    marker = tmp_path / "marker"
    proc = subprocess.Popen([sys.executable, "-c", driver, "train", "--dataset", "shop", "--data-root",
                             str(data_root), "--out", str(tmp_path / "run"), *FAST],
                            env={**_env(), "MARKER": str(marker)}, cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            # the child takes Ctrl-C as a terminal would give it, whatever this process does
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        _wait_for(marker, proc)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=180)
    finally:
        proc.kill()
    assert proc.returncode == 130
    assert err.strip() == "dhmrec: interrupted"


# ------------------------------------------------------------------------------ verified weights
def test_a_damaged_best_pt_is_a_one_line_error_naming_it(finished, tmp_path, capsys):
    run = _copy(finished, tmp_path / "run")
    _flip_a_byte(run / "best.pt")
    capsys.readouterr()
    assert main(["evaluate", str(run)]) == 2
    _one_line(capsys, str(run / "best.pt"), "damaged")
    with pytest.raises(WeightsError, match="best.pt: damaged"):
        load_run(run)
    (run / "best.pt").write_bytes(b"")
    assert main(["evaluate", str(run)]) == 2
    _one_line(capsys, str(run / "best.pt"), "empty file")


def test_resuming_a_finished_run_restores_a_damaged_best_pt_from_its_checkpoint(finished, tmp_path, capsys):
    run = _copy(finished, tmp_path / "run")
    good = (run / "best.pt").read_bytes()
    _flip_a_byte(run / "best.pt")
    capsys.readouterr()
    assert main(["train", "--resume", str(run), "--quiet"]) == 0
    assert "restored" in capsys.readouterr().err
    assert (run / "best.pt").read_bytes() == good
    assert main(["evaluate", str(run)]) == 0
    (run / "checkpoint.pt").unlink()  # now nothing can restore it
    _flip_a_byte(run / "best.pt")
    capsys.readouterr()
    assert main(["train", "--resume", str(run), "--quiet"]) == 2
    _one_line(capsys, "best.pt: damaged", "trained again")


def test_runs_from_before_the_manifest_still_load(finished, tmp_path, capsys):
    run = _copy(finished, tmp_path / "run")
    (run / "weights.json").unlink()
    assert main(["evaluate", str(run)]) == 0
    (run / "metrics.json").unlink()
    assert main(["train", "--resume", str(run), "--quiet"]) == 0


def test_a_write_killed_before_its_rename_leaves_a_file_the_manifest_accepts(tmp_path, monkeypatch):
    path = tmp_path / "best.pt"
    save_weights(path, {"w": torch.zeros(3)})
    monkeypatch.setattr(os, "replace", lambda *a: (_ for _ in ()).throw(OSError(5, "killed")))
    with pytest.raises(OSError):
        save_weights(path, {"w": torch.ones(3)})  # the manifest already names the new file
    monkeypatch.undo()
    assert verify_weights(path) is not None  # the old file on disk is still accepted
    save_weights(path, {"w": torch.ones(3)})
    path.write_bytes(b"x" + path.read_bytes()[1:])
    with pytest.raises(WeightsError, match="damaged"):
        verify_weights(path)


# ------------------------------------------------------------------------------ a run knows its data
def test_a_changed_data_set_is_refused_naming_what_changed(finished, data_root, tmp_path, capsys):
    changed_root = tmp_path / "data"
    shutil.copytree(data_root / "shop", changed_root / "shop", ignore=shutil.ignore_patterns("processed"))
    run = _copy(finished, tmp_path / "run")
    config = yaml.safe_load((run / "config.yaml").read_text())
    config["data"]["data_root"] = str(changed_root)  # the same data set, moved (then changed)
    (run / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    inter = changed_root / "shop" / "shop.inter"
    lines = inter.read_text().splitlines()
    # Another item for a training row of user 0, same number of rows: the shapes stay the same.
    taken = {line.split("\t")[1] for line in lines[1:] if line.split("\t")[0] == "0"}
    row = next(i for i, line in enumerate(lines) if line.startswith("0\t") and line.endswith("\t0"))
    free = next(str(i) for i in range(150) if str(i) not in taken)
    lines[row] = f"0\t{free}\t0"
    inter.write_text("\n".join(lines) + "\n")
    capsys.readouterr()
    assert main(["evaluate", str(run)]) == 2
    _one_line(capsys, "training interactions changed", "--allow-changed-data")
    with pytest.raises(DataChangedError, match="training interactions changed") as info:
        load_run(run)
    assert info.value.changes == ["training interactions changed"]
    assert load_run(run, allow_changed_data=True).model is not None
    assert main(["evaluate", str(run), "--allow-changed-data"]) == 0
    (run / "metrics.json").unlink()  # not finished: --resume would train on
    capsys.readouterr()
    assert main(["train", "--resume", str(run), "--quiet"]) == 2
    _one_line(capsys, "training interactions changed", "--allow-changed-data")
    assert main(["train", "--resume", str(run), "--quiet", "--allow-changed-data"]) == 0


def test_an_ambiguous_data_set_name_is_an_error_naming_both(data_root, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    shutil.copytree(data_root / "shop", tmp_path / "shop")
    assert _train(data_root, tmp_path / "run", "--epochs", "1") == 2
    err = _one_line(capsys, "ambiguous", str(tmp_path / "shop"), str((data_root / "shop").resolve()))
    assert not (tmp_path / "run").exists() or not any((tmp_path / "run").iterdir()), err
    with pytest.raises(DataError, match="ambiguous"):
        open_dataset("shop", root=data_root)
    assert open_dataset("./shop", root=data_root).data is not None  # a path picks one
