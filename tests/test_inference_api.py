"""The public inference API: load_run, model.recommend(users, k), model.embeddings()."""
import re
from pathlib import Path

import pytest
import torch
from torch.testing import assert_close

import dhmrec_pyg
from dhmrec_pyg.cli import main
from dhmrec_pyg.data import make_synthetic
from dhmrec_pyg.models import MODELS
from dhmrec_pyg.models.base import EDGE, TopK
from dhmrec_pyg.ranking import NO_ITEM, ShortListWarning
from dhmrec_pyg.recommend import recommend
from dhmrec_pyg.training import LoadedRun, load_run

from test_models_common import build as _build  # every model, small and seeded

README = Path(__file__).resolve().parent.parent / "README.md"


@pytest.fixture(scope="module")
def data():
    return make_synthetic("tiny", seed=0, n_users=50, n_items=30, n_interactions=320)




def _expected_top(model, users, k, train):
    """Top-k by brute force: every score, training pairs set to -inf."""
    with torch.no_grad():
        model.eval()
        u, i = model.embeddings()
        scores = u[users] @ i.t()
    for row, user in enumerate(users.tolist()):
        scores[row, train[1][train[0] == user]] = -float("inf")
    return torch.topk(scores, k, dim=1)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_model_recommends_without_its_training_items(name, data):
    model = _build(name, data)
    train = data[EDGE].edge_index
    users = torch.tensor([0, 7, 13, 49])
    top = model.recommend(users, k=5)  # no edges handed in: the model kept them
    assert isinstance(top, TopK)
    assert top.items.shape == top.scores.shape == (4, 5)
    assert torch.equal(top.users, users)
    want = _expected_top(model, users, 5, train)
    assert_close(top.scores, want.values)
    seen = set(zip(train[0].tolist(), train[1].tolist()))
    for user, items in zip(users.tolist(), top.items.tolist()):
        assert not any((user, item) in seen for item in items)
    assert (top.scores[:, :-1] >= top.scores[:, 1:]).all()
    assert "train_edge_index" not in model.state_dict()  # rebuilt from the data, not checkpointed


def test_recommend_defaults_to_all_users_and_checks_its_arguments(data):
    model = _build("bpr", data)
    top = model.recommend(k=3)
    assert top.items.shape == (50, 3) and torch.equal(top.users, torch.arange(50))
    assert torch.equal(model.recommend([4, 2], k=3).items, top.items[[4, 2]])
    with pytest.raises(ValueError, match="out of range"):
        model.recommend([50], k=3)
    with pytest.warns(ShortListWarning, match="k=31 is more than the items left"):
        capped = model.recommend([0], k=31)  # capped at the catalogue, padded past the user's last item
    ei = data[EDGE].edge_index
    n_left = 30 - len(set(ei[1][ei[0] == 0].tolist()))
    assert capped.items.shape == (1, 30) and (capped.items[0, n_left:] == NO_ITEM).all()
    assert (capped.items[0, :n_left] != NO_ITEM).all()
    with pytest.raises(ValueError, match=">= 1"):
        model.recommend([0], k=0)


def test_training_edges_move_with_the_model(data):
    model = _build("lightgcn", data).double()
    assert torch.equal(model.train_edge_index, data[EDGE].edge_index)
    assert model.train_edge_index.dtype == torch.long  # not cast with the parameters


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("api")
    folder = root / "run"
    assert main(["train", "--model", "lightgcn", "--data-root", str(root / "data"), "--out", str(folder),
                 "--epochs", "1", "--quiet"]) == 0
    return folder


def test_load_run_is_public_and_named(run_folder):
    assert dhmrec_pyg.load_run is load_run
    run = dhmrec_pyg.load_run(run_folder)
    assert isinstance(run, LoadedRun)
    cfg, model_cfg, model, data = run  # still unpacks as before
    assert cfg.model == "lightgcn" and model is run.model and not model.training
    top = run.model.recommend([0, 1], k=4)
    _, items, scores = recommend(model, data[EDGE].edge_index, k=4, users=[0, 1])
    assert torch.equal(top.items, torch.from_numpy(items))
    user_emb, item_emb = run.model.embeddings()
    assert user_emb.shape == (int(data["user"].num_nodes), model_cfg.embedding_dim)
    assert item_emb.shape == (int(data["item"].num_nodes), model_cfg.embedding_dim)


def _readme_code(heading: str) -> str:
    text = README.read_text(encoding="utf-8")
    section = text.split(f"## {heading}", 1)[1].split("\n## ", 1)[0]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_readme_python_example_runs(tmp_path, monkeypatch, capsys):
    """The README's Python snippet, as written (2 epochs instead of 5), from an empty folder."""
    monkeypatch.chdir(tmp_path)
    code = _readme_code("From Python").replace("epochs=5", "epochs=2")
    namespace: dict = {}
    exec(compile(code, "README", "exec"), namespace)
    model_name, recall = capsys.readouterr().out.split()
    assert model_name == "dhmrec" and 0.0 < float(recall) == namespace["metrics"]["test"]["recall@20"]
    assert namespace["top"].items.shape == (3, 10)
    train = namespace["run"].model.train_edge_index
    for user, items in zip([0, 1, 2], namespace["top"].items.tolist()):
        assert not set(items) & set(train[1][train[0] == user].tolist())


def test_readme_layers_example_runs():
    namespace: dict = {}
    exec(compile(_readme_code("DHMRec as PyG layers"), "README", "exec"), namespace)
    assert namespace["fused"].shape == (1000, 64)
    assert len(namespace["maps"]) == 3 and all(m.shape == (64, 64) for m in namespace["maps"])
    assert all(torch.allclose(m.sum(-1), torch.ones(64)) for m in namespace["maps"])
