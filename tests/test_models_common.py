"""What every multimodal model shares: a clear error without features, training through the Trainer, the CLI."""
import copy

import pytest
import torch

from dhmrec_pyg.cli import main
from dhmrec_pyg.data import make_synthetic
from dhmrec_pyg.models import MODELS
from dhmrec_pyg.training import Trainer, TrainConfig

MULTIMODAL = {"dhmrec": "DHMRec", "freedom": "FREEDOM", "lgmrec": "LGMRec"}


@pytest.fixture(scope="module")
def data():
    return make_synthetic("tiny", seed=0, n_users=60, n_items=40, n_interactions=600)


def build(name, data):
    torch.manual_seed(0)
    cls = MODELS[name]
    cfg = cls.config_class(embedding_dim=8)
    if hasattr(cfg, "knn_k"):
        cfg.knn_k, cfg.knn_cache_dir = 4, "none"
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
    assert 0.0 <= result["test"]["recall@20"] <= 1.0
    assert repr(model).startswith(f"{MULTIMODAL[name]}(users=60, items=40")


@pytest.mark.parametrize("name", sorted(MULTIMODAL))
def test_cli_accepts_model(name, tmp_path):
    out = tmp_path / "run"
    rc = main(["train", "--data-root", str(tmp_path / "data"), "--out", str(out), "--quiet",
               "--model", name, "--dataset", "synthetic-tiny", "--epochs", "1"])
    assert rc == 0 and (out / "metrics.json").exists()
