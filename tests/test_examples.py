"""The examples run, through the public API only, and show what they claim (a few seconds each)."""
from __future__ import annotations

import ast
import importlib.util
import sys
from pathlib import Path

import pytest
import torch

from dhmrec_pyg.data import split_edge_index
from tests.recount import recall_precision_by_hand

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name", ["new_user", "stock_pyg_interop", "custom_pyg_model"])
def test_example_imports_no_private_name(name):
    tree = ast.parse((EXAMPLES / f"{name}.py").read_text())
    assert ast.get_docstring(tree), f"{name}.py has no module docstring"
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("dhmrec_pyg"):
            assert not any(part.startswith("_") for part in node.module.split("."))
            assert not any(alias.name.startswith("_") for alias in node.names), ast.unparse(node)
        if isinstance(node, ast.Import):
            for alias in node.names:
                assert not any(p.startswith("_") for p in alias.name.split(".")), ast.unparse(node)


def test_new_user_example(capsys):
    ex = _load("new_user")
    data = ex.build_graph()
    assert ex.RATES in data.edge_types and "user" not in data.node_types
    model, metrics = ex.train(ex.LightGCN, ex.LightGCNConfig(embedding_dim=16), data, epochs=1)
    recall, precision = recall_precision_by_hand(  # the example's figures, recounted on its own edge types
        model, data[ex.RATES].edge_index, data[ex.SPLIT_TYPES["test"]].edge_index, 20)
    assert metrics["test"]["recall@20"] == pytest.approx(recall, abs=1e-6)
    assert metrics["test"]["precision@20"] == pytest.approx(precision, abs=1e-6)
    top = model.recommend(torch.tensor([0, 1, 2]), k=5)
    assert top.items.shape == (3, 5)
    train = data[ex.RATES].edge_index
    for user, items in zip(top.users.tolist(), top.items.tolist()):
        seen = set(train[1, train[0] == user].tolist())
        assert not seen & set(items), "recommend() returned a training item"

    ex.main()
    out = capsys.readouterr().out
    assert "LightGCN: customer 0 -> products [" in out
    for split in ("train", "val", "test"):
        assert f"to_homogeneous: {split:5s}" in out
    assert "ids consistent: False" not in out and out.count("ids consistent: True") == 3


def test_new_user_split_ids_survive_to_homogeneous():
    ex = _load("new_user")
    data = ex.build_graph()
    ex.check_to_homogeneous(data)  # raises AssertionError on stale ids
    homo = data.to_homogeneous()
    n_customers = int(data["customer"].num_nodes)
    val = homo.edge_index[:, homo.edge_type == data.edge_types.index(ex.SPLIT_TYPES["val"])]
    assert torch.equal(val[0], data[ex.SPLIT_TYPES["val"]].edge_index[0])
    assert torch.equal(val[1] - n_customers, data[ex.SPLIT_TYPES["val"]].edge_index[1])
    assert int(val[1].min()) >= n_customers


def test_stock_pyg_interop_example(capsys):
    ex = _load("stock_pyg_interop")
    results = ex.main(profile="tiny", epochs=1)
    ours, stock = results["dhmrec_pyg"], results["torch_geometric"]
    assert ours["recall@20"] > 0.0
    assert stock["recall@20"] == pytest.approx(ours["recall@20"], abs=1e-5)
    assert stock["ndcg@20"] == pytest.approx(ours["ndcg@20"], abs=1e-5)
    assert "torch_geometric.metrics:" in capsys.readouterr().out


def test_stock_pyg_graph_is_a_buffer():
    ex = _load("stock_pyg_interop")
    data = ex.make_synthetic("tiny", seed=0)
    model = ex.StockLightGCN(data, ex.StockLightGCNConfig(embedding_dim=8))
    buffers = dict(model.named_buffers())
    assert "edge_index" in buffers and "edge_index" not in model.state_dict()
    train = split_edge_index(data, "train")
    assert buffers["edge_index"].size(1) == 2 * train.size(1)
    moved = model.to(torch.float64)  # .to() reaches the buffers; ids stay integer
    assert moved.edge_index.dtype == torch.long and moved.user_emb.weight.dtype == torch.float64
    if torch.cuda.is_available():
        assert model.to("cuda").edge_index.is_cuda


def test_custom_pyg_model_example_learns(capsys):
    """The layers composed into another model train: 30 steps rank validation items better than none."""
    ex = _load("custom_pyg_model")
    untrained = ex.main(steps=0)
    trained = ex.main(steps=30)
    assert trained > 1.2 * untrained, (trained, untrained)
    assert "validation recall@20 after 30 steps" in capsys.readouterr().out
