"""What every multimodal model shares: a clear error without features, training through the Trainer, the CLI."""
import copy

import pytest
import torch

from dhmrec_pyg.cli import main
from dhmrec_pyg.data import make_synthetic
from dhmrec_pyg.models import MODELS
from dhmrec_pyg.models.base import EDGE
from dhmrec_pyg.schema import split_edge_index
from dhmrec_pyg.training import Trainer, TrainConfig
from tests.recount import recall_precision_by_hand

MULTIMODAL = {"dhmrec": "DHMRec", "freedom": "FREEDOM", "lgmrec": "LGMRec"}


@pytest.fixture(scope="module")
def data():
    return make_synthetic("tiny", seed=0, n_users=60, n_items=40, n_interactions=600)


def build(name, data):
    torch.manual_seed(0)
    cls = MODELS[name]
    cfg = cls.config_class(embedding_dim=8)
    if hasattr(cfg, "knn_k"):
        cfg.knn_k = 4
    return cls(data, cfg)


@pytest.mark.parametrize("name", sorted(MULTIMODAL))
def test_dataset_without_features_is_a_clear_error(name, data):
    bare = copy.copy(data)
    for m in ("image", "text"):
        del bare["item"][f"x_{m}"]
    with pytest.raises(ValueError, match=f"'{name}' needs item features.*synthetic-tiny"):
        build(name, bare)


@pytest.mark.parametrize("name", sorted(MULTIMODAL))
def test_trains_two_epochs_through_the_trainer(name, data):
    model = build(name, data)
    cfg = TrainConfig(model=name, epochs=2, batch_size=256, progress=False, device="cpu", ks=[10, 20])
    before = model.item_emb.weight.detach().clone()
    result = Trainer(model, data, cfg).fit()
    assert not torch.equal(before, model.item_emb.weight)
    # the test figures are those of the model as fit left it, recounted by hand
    recall, precision = recall_precision_by_hand(model, data[EDGE].edge_index, split_edge_index(data, "test"), 20)
    assert result["test"]["recall@20"] == pytest.approx(recall, abs=1e-6)
    assert result["test"]["precision@20"] == pytest.approx(precision, abs=1e-6)
    assert repr(model).startswith(f"{MULTIMODAL[name]}(users=60, items=40")


@pytest.mark.parametrize("name", sorted(MULTIMODAL))
def test_cli_accepts_model(name, tmp_path):
    out = tmp_path / "run"
    rc = main(["train", "--data-root", str(tmp_path / "data"), "--out", str(out), "--quiet",
               "--model", name, "--dataset", "synthetic-tiny", "--epochs", "1"])
    assert rc == 0 and (out / "metrics.json").exists()


def test_auto_knn_cache_lives_in_a_named_datasets_processed_folder(tmp_path, monkeypatch):
    import dhmrec_pyg.nn.knn as knn
    from dhmrec_pyg.data import load_dataset, open_dataset
    from dhmrec_pyg.models.base import GraphConfig
    from dhmrec_pyg.training.trainer import build_model

    data, folder = open_dataset("synthetic-tiny", root=tmp_path)
    cache = tmp_path / "synthetic-tiny" / "processed" / "knn_cache"
    assert folder == cache.parent.resolve()
    graph = GraphConfig().resolved(folder)  # knn_cache_dir="auto": the data set's processed folder
    first = build_model("freedom", data, MODELS["freedom"].config_class(), graph)
    assert len(list(cache.glob("knn-*.npz"))) == 2  # one graph per modality

    def no_search(*args, **kwargs):
        raise AssertionError("the KNN search ran although its cache was there")

    monkeypatch.setattr(knn, "_search", no_search)
    again = build_model("freedom", load_dataset("synthetic-tiny", root=tmp_path), MODELS["freedom"].config_class(), graph)
    assert torch.equal(first.ii_adj.to_dense(), again.ii_adj.to_dense())
    # A folder loaded by path records no folder: "auto" caches nothing for it.
    assert open_dataset(tmp_path / "synthetic-tiny").cache_folder is None
    assert GraphConfig().resolved(None).cache_path() is None
