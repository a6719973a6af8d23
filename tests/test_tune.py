"""``dhmrec tune``: spaces, pruning, resume, shared studies, failed and killed trials (tiny data)."""
from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

optuna = pytest.importorskip("optuna")

from dhmrec_pyg.cli import main  # noqa: E402
from dhmrec_pyg.training.config import ConfigError  # noqa: E402
from dhmrec_pyg.tuning import DEFAULT_SPACES, default_space, load_space, make_settings, tune  # noqa: E402
from dhmrec_pyg.tuning.worker import make_pruner, worker_alive, worker_tag  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DATASET = "synthetic-tiny"


@pytest.fixture(scope="module")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> str:
    """One folder for the generated tiny data set, shared by the tests of this file."""
    return str(tmp_path_factory.mktemp("tune_data"))


#: A space without repeated points (a drawn grid point that ran already is not trained again).
CONTINUOUS = {"reg_weight": {"low": 1e-5, "high": 1e-2, "log": True}}


def _kw(data_root: str, **extra: object) -> dict:
    return {"data_root": data_root, "epochs": 2, "overrides": ["num_threads=1"], "plots": False,
            "space": CONTINUOUS, **extra}


def _study(out: Path, name: str = f"lightgcn-{DATASET}") -> "optuna.Study":
    return optuna.load_study(study_name=name, storage=f"sqlite:///{out / 'study.db'}")


def _states(study: "optuna.Study") -> list:
    return [t.state.name for t in study.get_trials()]


def test_default_spaces_are_the_papers_grids() -> None:
    assert set(DEFAULT_SPACES) == {"dhmrec", "freedom", "lightgcn", "lgmrec", "bpr"}
    dhm = default_space("dhmrec")
    assert dhm["alpha_mm"].choices == tuple(round(0.1 * i, 1) for i in range(16))
    assert dhm["gamma_kl"].choices == (1e-3, 1e-2, 1e-1, 0.5, 1.0)
    assert dhm["reg_weight"].choices == (0.0, 1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1)
    assert default_space("freedom")["keep_ratio"].choices == (0.2, 0.1)  # FREEDOM's dropout 0.8, 0.9
    assert set(default_space("lightgcn")) == {"num_layers", "reg_weight"}
    assert {"num_hyperedges", "cl_weight", "reg_weight"} <= set(default_space("lgmrec"))
    for model in DEFAULT_SPACES:  # every value of every default space builds a valid configuration
        make_settings(model, DATASET, 1, "unused")


def test_yaml_space_overrides_and_unknown_options_are_refused(tmp_path: Path) -> None:
    good = tmp_path / "space.yaml"
    good.write_text("num_layers: {low: 1, high: 3}\nreg_weight: [1e-5, 1.0e-3]\n"
                    "lr: {low: 1e-4, high: 1e-2, log: true}\n")
    space = load_space("lightgcn", good)
    assert space["num_layers"].integer and (space["num_layers"].low, space["num_layers"].high) == (1, 3)
    assert space["reg_weight"].choices == (1e-5, 1e-3)  # PyYAML's string "1e-5" read as a number
    assert space["lr"].log and not space["lr"].integer
    settings = make_settings("lightgcn", DATASET, 2, tmp_path / "out", space=str(good))
    assert list(settings.space) == ["num_layers", "reg_weight", "lr"]
    bad = tmp_path / "bad.yaml"
    bad.write_text("num_layer: [1, 2]\n")
    with pytest.raises(ConfigError, match="lightgcn has no option 'num_layer'.*num_layers"):
        load_space("lightgcn", bad)
    with pytest.raises(ConfigError, match="keep_rate=0.0"):  # a value the model's config refuses
        make_settings("lgmrec", DATASET, 1, tmp_path / "o", space={"keep_rate": [0.5, 0.0]})
    with pytest.raises(ConfigError, match="'reg_weight' is searched"):
        make_settings("lightgcn", DATASET, 1, tmp_path / "o", overrides=["reg_weight=0.1"])
    rc = main(["tune", "--model", "lightgcn", "--dataset", DATASET, "--trials", "1", "--out", str(tmp_path / "c"),
               "--space", str(bad)])
    assert rc == 2 and not (tmp_path / "c" / "study.db").exists()


def test_cli_writes_the_report_and_a_rerun_continues_the_study(tmp_path: Path, data_root: str) -> None:
    out = tmp_path / "tune"
    args = ["tune", "--model", "lightgcn", "--dataset", DATASET, "--data-root", data_root, "--epochs", "2",
            "--out", str(out), "--set", "num_threads=1"]
    assert main(args + ["--trials", "4"]) == 0
    for name in ("study.db", "tune.json", "tune.md", "history.png", "importances.png", "slice_num_layers.png",
                 "slice_reg_weight.png"):
        assert (out / name).is_file(), name
    first = json.loads((out / "tune.json").read_text())
    assert first["n_trials"] == 4 and len(first["trials"]) == 4
    run = out / "trials" / "trial_0"
    assert {"config.yaml", "history.csv", "metrics.json", "best.pt"} <= {p.name for p in run.iterdir()}
    assert main(args + ["--trials", "6", "--no-plots"]) == 0
    report = json.loads((out / "tune.json").read_text())
    assert report["n_trials"] == 6 and [t["number"] for t in report["trials"]] == list(range(6))
    assert report["trials"][:4] == first["trials"]  # the first four are kept as they were
    best = max((t for t in report["trials"] if t["state"] == "COMPLETE"), key=lambda t: t["best_value"])
    assert report["best_value"] == best["best_value"] and report["best_params"] == best["params"]
    assert _states(_study(out)).count("COMPLETE") == 6
    assert main(args + ["--trials", "6", "--no-plots"]) == 0  # the budget is reached: nothing more runs
    assert len(_study(out).trials) == 6
    changed = args[:-2] + ["--set", "num_threads=1", "--set", "lr=0.01", "--trials", "7"]
    assert main(changed) == 2  # another setup is refused on the same study


class _PruneOdd(optuna.pruners.BasePruner):
    """Prunes odd-numbered trials after their second epoch."""

    def prune(self, study: "optuna.Study", trial: "optuna.trial.FrozenTrial") -> bool:
        return trial.number % 2 == 1 and trial.last_step is not None and trial.last_step >= 1


def test_pruned_trials_stop_early_and_count(tmp_path: Path, data_root: str) -> None:
    report = tune("lightgcn", DATASET, 4, tmp_path, pruner=_PruneOdd(), **_kw(data_root, epochs=3))
    states = [t["state"] for t in report["trials"]]
    assert states == ["COMPLETE", "PRUNED", "COMPLETE", "PRUNED"] and report["n_trials"] == 4
    for row in report["trials"]:
        history = list(csv.DictReader((tmp_path / row["run_dir"] / "history.csv").open()))
        assert len(history) == (2 if row["state"] == "PRUNED" else 3)
        trial = _study(tmp_path).trials[row["number"]]
        assert trial.intermediate_values[0] == pytest.approx(float(history[0]["valid_recall@20"]))
    assert report["best_trial"] in (0, 2)  # a pruned trial is never chosen
    assert not (tmp_path / "trials" / "trial_1" / "metrics.json").exists()
    assert type(make_pruner("median", 3)).__name__ == "MedianPruner"
    assert type(make_pruner("halving", 3)).__name__ == "SuccessiveHalvingPruner"
    with pytest.raises(ConfigError, match="unknown pruner 'mean'"):
        make_pruner("mean", 3)


def test_a_point_drawn_again_reuses_its_result(tmp_path: Path, data_root: str) -> None:
    report = tune("lightgcn", DATASET, 2, tmp_path, **_kw(data_root, space={"num_layers": [2], "reg_weight": [1e-4]}))
    first, again = report["trials"]
    assert again["duplicate_of"] == 0 and again["best_value"] == first["best_value"] and again["test"] == first["test"]
    assert again["run_dir"] == first["run_dir"] and not (tmp_path / "trials" / "trial_1").exists()
    assert "same point as trial 0" in (tmp_path / "tune.md").read_text()


def test_a_failing_trial_is_recorded_and_the_study_goes_on(tmp_path: Path, data_root: str,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    import dhmrec_pyg.training.run as run_module

    real, calls = run_module.build_run, []

    def flaky(*args: object, **kwargs: object) -> object:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("boom in the first trial")
        return real(*args, **kwargs)

    monkeypatch.setattr(run_module, "build_run", flaky)
    report = tune("lightgcn", DATASET, 2, tmp_path, **_kw(data_root))
    assert [t["state"] for t in report["trials"]] == ["FAIL", "COMPLETE", "COMPLETE"]
    assert report["trials"][0]["error"] == "RuntimeError: boom in the first trial"
    assert report["n_trials"] == 2 and report["best_trial"] in (1, 2)
    assert "boom in the first trial" in (tmp_path / "tune.md").read_text()


def _cli(out: Path, data_root: str, *extra: str) -> list:
    return [sys.executable, "-m", "dhmrec_pyg.cli", "tune", "--model", "lightgcn", "--dataset", DATASET,
            "--data-root", data_root, "--out", str(out), "--set", "num_threads=1", "--no-plots", *extra]


def _env() -> dict:
    return {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}


def _running(out: Path) -> list:
    """The study's running trials (none before the study exists)."""
    try:
        return _study(out).get_trials(states=(optuna.trial.TrialState.RUNNING,))
    except KeyError:  # the study is not made yet
        return []


def test_two_processes_share_one_sqlite_study(tmp_path: Path, data_root: str) -> None:
    # A worker in another process asks for 3 trials; once it runs one, this process works the
    # same study up to 6: both contribute (the other ran at least that trial, this one the rest).
    other = subprocess.Popen(_cli(tmp_path, data_root, "--trials", "3", "--epochs", "3"), env=_env(),
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 90
    while not _running(tmp_path) and other.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    report = tune("lightgcn", DATASET, 6, tmp_path, **_kw(data_root, epochs=3, space=None))
    error = other.communicate(timeout=120)[1].decode()
    assert other.returncode == 0, error
    trials = _study(tmp_path).trials
    assert [t.state.name for t in trials] == ["COMPLETE"] * 6 and report["n_trials"] == 6  # no trial lost or extra
    workers = {t.user_attrs["worker"].split(":")[1] for t in trials}
    assert workers == {str(other.pid), str(os.getpid())}  # both worked the study


def test_a_killed_worker_leaves_a_study_a_rerun_continues(tmp_path: Path, data_root: str) -> None:
    cmd = _cli(tmp_path, data_root, "--trials", "3", "--epochs", "15")
    proc = subprocess.Popen(cmd, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    victim = None
    deadline = time.monotonic() + 90
    while victim is None and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
        running = _running(tmp_path)
        if running and (tmp_path / "trials" / f"trial_{running[0].number}" / "history.csv").exists():
            # Freeze the worker, then check the trial is still running: a trial that finished
            # between the two reads would not be killed mid-trial (the SIGKILL would miss it).
            proc.send_signal(signal.SIGSTOP)
            still = [t for t in _running(tmp_path) if t.number == running[0].number]
            if still:
                victim = still[0]
                proc.send_signal(signal.SIGKILL)
            else:
                proc.send_signal(signal.SIGCONT)
    proc.wait()
    assert victim is not None, "the worker finished before it could be killed mid-trial"
    assert worker_alive(victim.user_attrs["worker"]) is False and worker_alive(worker_tag()) is True
    report = tune("lightgcn", DATASET, 3, tmp_path, **_kw(data_root, epochs=15, space=None))
    rows = {t["number"]: t for t in report["trials"]}
    assert rows[victim.number]["state"] == "FAIL" and "killed" in rows[victim.number]["error"]
    assert not (tmp_path / "trials" / f"trial_{victim.number}").exists()  # its partial run folder is gone
    retry = [t for t in report["trials"] if t.get("retry_of") == victim.number]
    assert len(retry) == 1 and retry[0]["params"] == victim.params and retry[0]["state"] == "COMPLETE"
    assert report["n_trials"] == 3


def test_timeout_starts_no_trial_after_it_and_the_report_says_so(tmp_path: Path, data_root: str) -> None:
    report = tune("lightgcn", DATASET, 5, tmp_path, timeout=1e-6, **_kw(data_root))
    assert report["n_trials"] == 0 and report["trials"] == [] and report["best_params"] is None
    assert "No trial finished" in (tmp_path / "tune.md").read_text()


def test_trainer_callbacks_run_after_each_epoch_is_written(tmp_path: Path, data_root: str) -> None:
    from dhmrec_pyg.training.config import TrainConfig
    from dhmrec_pyg.training.run import build_run
    from dhmrec_pyg.models import LightGCNConfig
    from dhmrec_pyg.training.trainer import Trainer

    class Stop:
        def __init__(self) -> None:
            self.seen: list = []

        def on_epoch_end(self, trainer: Trainer, epoch: int, row: dict) -> None:
            lines = (tmp_path / "run" / "history.csv").read_text().splitlines()
            self.seen.append((epoch, len(lines) - 1, row["valid_recall@20"], trainer.history[-1] == row))
            if epoch == 1:
                raise RuntimeError("stop here")

    cfg = TrainConfig(model="lightgcn", dataset=DATASET, data_root=data_root, epochs=4, progress=False, num_threads=1)
    data, model = build_run(cfg, LightGCNConfig())
    stop = Stop()
    with pytest.raises(RuntimeError, match="stop here"):
        Trainer(model, data, cfg, tmp_path / "run", callbacks=[stop]).fit()
    assert [s[:2] for s in stop.seen] == [(0, 1), (1, 2)] and all(s[3] for s in stop.seen)
    assert (tmp_path / "run" / "checkpoint.pt").is_file()
