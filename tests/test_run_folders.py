"""Run folders: what config.yaml records about the data, load_run from anywhere, and old formats."""
import json
from pathlib import Path

import pytest
import torch
import yaml

from dhmrec_pyg.cli import main
from dhmrec_pyg.data import load_dataset, make_synthetic
from dhmrec_pyg.data.errors import DataError
from dhmrec_pyg.models import MODELS
from dhmrec_pyg.training import ConfigError, TrainConfig, Trainer, load_run
from dhmrec_pyg.training.config import (
    IN_MEMORY,
    RETIRED_MODEL_OPTIONS,
    RUN_FORMAT,
    format1_text,
    load_run_config,
)
from dhmrec_pyg.training.run import finished_run, read_run_config

from test_schema import RATES, own_names  # customers rate products

FAST = ["--set", "batch_size=1024", "--set", "embedding_dim=16", "--set", "num_threads=1", "--device", "cpu",
        "--quiet"]


@pytest.fixture(scope="module")
def graph():
    return own_names(make_synthetic("tiny", seed=0), split_types=True)


def _train_from_python(name, graph, out):
    """A run as a user trains one on their own graph: a model built on it, a Trainer with a folder."""
    torch.manual_seed(0)
    cls = MODELS[name]
    model_cfg = cls.config_class(embedding_dim=8)
    if hasattr(model_cfg, "knn_k"):
        model_cfg.knn_k, model_cfg.knn_cache_dir = 4, "none"
    model = cls(graph, model_cfg, edge_type=RATES)
    cfg = TrainConfig(model=name, epochs=2, batch_size=256, device="cpu", progress=False, ks=[10, 20])
    Trainer(model, graph, cfg, out, edge_type=RATES).fit()
    return model


@pytest.mark.parametrize("name", sorted(MODELS))
def test_a_run_trained_on_a_graph_from_python_reloads_with_that_graph_from_anywhere(
    name, graph, tmp_path, monkeypatch
):
    out = tmp_path / "work" / "run"
    model = _train_from_python(name, graph, out)
    users = torch.tensor([0, 3, 17])
    want = model.eval().recommend(users, k=5)
    text = (out / "config.yaml").read_text()
    stored = yaml.safe_load(text)
    assert stored["format"] == RUN_FORMAT and stored["train"]["model"] == name
    fingerprint = stored["data"].pop("fingerprint")
    assert stored["data"] == {"dataset": IN_MEMORY, "edge_type": list(RATES)}
    assert set(fingerprint) >= {"users", "items", "train_interactions", "val_interactions", "test_interactions"}
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    for kwargs in ({"edge_type": RATES}, {}):  # the names default to the recorded ones
        run = load_run(out, data=graph, device="cpu", **kwargs)
        assert run.config.model == name and not run.model.training
        got = run.model.recommend(users, k=5)
        assert torch.equal(got.items, want.items)
        torch.testing.assert_close(got.scores, want.scores)
    with pytest.raises(ConfigError, match=r"trained on a graph handed in from Python.*data=graph"):
        load_run(out)
    assert main(["recommend", str(out)]) == 2
    assert list(elsewhere.iterdir()) == []  # nothing written in the working directory


def test_load_run_refuses_a_graph_its_weights_do_not_fit(graph, tmp_path):
    out = tmp_path / "run"
    _train_from_python("lightgcn", graph, out)
    other = own_names(make_synthetic("tiny", seed=0, n_users=50, n_items=30, n_interactions=320), split_types=True)
    with pytest.raises(DataError, match=r"not the one this run was trained on: number of users changed \(200 -> 50\)"):
        load_run(out, other)
    with pytest.raises(ConfigError, match=r"best\.pt: the weights do not fit the lightgcn model"):
        load_run(out, other, allow_changed_data=True)
    with pytest.raises(TypeError, match="device="):
        load_run(out, "cpu")


def _same_items(csv_a: Path, csv_b: Path) -> None:
    assert csv_a.read_text() == csv_b.read_text()


def test_cli_runs_evaluate_and_recommend_from_another_folder_in_either_format(tmp_path, monkeypatch, capsys):
    """A run trained in ``project/`` on a folder dataset ``data/shop`` is used from the parent folder;
    its format-1 twin (no data section) too."""
    project = tmp_path / "project"
    project.mkdir()
    load_dataset("synthetic-tiny", root=project / "data")
    (project / "data" / "synthetic-tiny").rename(project / "data" / "shop")
    monkeypatch.chdir(project)
    assert main(["train", "--model", "lightgcn", "--dataset", "data/shop", "--epochs", "1", "--out", "runs/shop",
                 *FAST]) == 0
    run = project / "runs" / "shop"
    assert yaml.safe_load((run / "config.yaml").read_text())["data"]["dataset"] == str(project / "data" / "shop")
    old = project / "runs" / "shop-format1"
    old.mkdir()
    for name in ("best.pt", "metrics.json"):
        (old / name).write_bytes((run / name).read_bytes())
    (old / "config.yaml").write_text(format1_text(*read_run_config(run)))
    monkeypatch.chdir(tmp_path)
    before = set(tmp_path.iterdir())
    capsys.readouterr()
    for folder in (run, old):
        relative = str(folder.relative_to(tmp_path))
        assert main(["recommend", relative, "--k", "3"]) == 0
        assert main(["evaluate", relative, "--split", "test"]) == 0
        test = json.loads(capsys.readouterr().out.split("\n", 1)[1])["test"]
        assert test == pytest.approx(json.loads((run / "metrics.json").read_text())["test"])
    _same_items(run / "recommendations_top3.csv", old / "recommendations_top3.csv")
    assert set(tmp_path.iterdir()) == before


def test_a_format1_synthetic_run_found_nowhere_is_rebuilt_without_writing_here(tmp_path, monkeypatch):
    root = tmp_path / "train-here"
    root.mkdir()
    monkeypatch.chdir(root)
    assert main(["train", "--model", "bpr", "--dataset", "synthetic-tiny", "--epochs", "1", "--out", "run",
                 *FAST]) == 0
    run = root / "run"
    (run / "config.yaml").write_text(format1_text(*read_run_config(run)))
    want = load_run(run).model.recommend([0, 1], k=4)
    moved = tmp_path / "moved"
    moved.mkdir()
    (run).rename(moved / "run")
    monkeypatch.chdir(moved)
    got = load_run("run").model.recommend([0, 1], k=4)  # data/synthetic-tiny is in neither place
    assert torch.equal(got.items, want.items)
    assert sorted(p.name for p in moved.iterdir()) == ["run"]


def test_a_format1_run_of_a_missing_dataset_names_the_places_looked(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    cfg = TrainConfig(model="bpr", dataset="nowhere", data_root=str(tmp_path / "data"))
    (run / "config.yaml").write_text(format1_text(cfg, MODELS["bpr"].config_class()))
    torch.save({}, run / "best.pt")
    with pytest.raises(DataError, match=r"dataset 'nowhere' .*not found .*data=graph"):
        load_run(run)


def test_an_old_format_dhmrec_run_loads_evaluates_resumes_and_is_reused(tmp_path, capsys):
    """A folder as code from before format 2 wrote it (legacy text: the options it predates left out)."""
    data_root = str(tmp_path / "data")
    run = tmp_path / "old"
    extra = ["--set", "num_ui_layers=1", "--set", "knn_k=4", "--set", "preset=paper"]
    assert main(["train", "--model", "dhmrec", "--dataset", "synthetic-tiny", "--data-root", data_root,
                 "--epochs", "2", "--out", str(run), *FAST, *extra]) == 0
    cfg, model_cfg = read_run_config(run)
    old_text = format1_text(cfg, model_cfg, legacy=True)
    assert not old_text.startswith("format") and "preset" not in old_text and "reg_target" not in old_text
    (run / "config.yaml").write_text(old_text)
    raw = load_run_config(run / "config.yaml")
    assert raw["format"] == RUN_FORMAT and raw["data"] is None
    assert not set(RETIRED_MODEL_OPTIONS["dhmrec"]) & set(raw["model"])  # dropped at the value kept
    assert read_run_config(run) == (cfg, model_cfg)
    metrics = json.loads((run / "metrics.json").read_text())
    capsys.readouterr()
    assert main(["evaluate", str(run), "--split", "test"]) == 0
    assert json.loads(capsys.readouterr().out)["test"] == pytest.approx(metrics["test"])
    assert finished_run(cfg, model_cfg, run) == metrics
    (run / "metrics.json").unlink()  # as if killed after its last checkpoint
    assert main(["train", "--resume", str(run), "--quiet"]) == 0
    again = json.loads((run / "metrics.json").read_text())
    assert again["test"] == metrics["test"] and again["best_epoch"] == metrics["best_epoch"]
    assert (run / "config.yaml").read_text() == old_text  # resuming keeps the folder's own file


def test_format1_retired_options_are_dropped_at_the_kept_value_and_refused_otherwise(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text("train:\n  model: dhmrec\nmodel:\n  kl_temperature: 1\n  gate_detach: false\n")
    assert not {"kl_temperature", "gate_detach"} & set(load_run_config(path)["model"])
    path.write_text("train:\n  model: dhmrec\nmodel:\n  reg_target: ego\n")
    with pytest.raises(ConfigError, match=r"config\.yaml: model option reg_target='ego'.*reg_target='final'"):
        load_run_config(path)


def test_unknown_formats_and_bad_data_sections_are_named(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text(f"format: {RUN_FORMAT + 1}\ntrain: {{}}\nmodel: {{}}\n")
    with pytest.raises(ConfigError, match=f"format {RUN_FORMAT + 1} is newer"):
        load_run_config(path)
    path.write_text(f"format: {RUN_FORMAT}\ntrain: {{}}\nmodel: {{}}\ndata:\n  dataset: '{IN_MEMORY}'\n")
    with pytest.raises(ConfigError, match="data.edge_type must be a list of three names"):
        load_run_config(path)
    path.write_text("train: {}\nmodel: {}\ndata:\n  dataset: demo\n")
    with pytest.raises(ConfigError, match="'data' section needs 'format"):
        load_run_config(path)


def test_a_finished_run_of_other_data_is_not_reused(tmp_path):
    from dhmrec_pyg.training.config import dump_config

    cfg, model_cfg = TrainConfig(model="bpr", epochs=1), MODELS["bpr"].config_class()
    here = {"dataset": "demo", "data_root": str(tmp_path / "a")}
    (tmp_path / "config.yaml").write_text(dump_config(cfg, model_cfg, here))
    (tmp_path / "metrics.json").write_text('{"best_epoch": 0}')
    assert finished_run(cfg, model_cfg, tmp_path, here) == {"best_epoch": 0}
    assert finished_run(cfg, model_cfg, tmp_path, {**here, "data_root": str(tmp_path / "b")}) is None
    assert finished_run(cfg, model_cfg, tmp_path) == {"best_epoch": 0}


def test_run_once_records_the_names_of_a_graph_from_python(graph, tmp_path):
    from dhmrec_pyg.training.run import run_once

    cfg = TrainConfig(model="bpr", epochs=1, device="cpu", progress=False)
    run_once(cfg, MODELS["bpr"].config_class(embedding_dim=8), tmp_path / "run", graph, edge_type="rates",
             user="customer", item="product")
    stored = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert stored["data"].pop("fingerprint")["users"] == graph["customer"].num_nodes
    assert stored["data"] == {"dataset": IN_MEMORY, "edge_type": list(RATES)}
    assert load_run(tmp_path / "run", graph).model.recommend([0], k=2).items.shape == (1, 2)
