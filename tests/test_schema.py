"""The interaction-graph schema (issue 14, items 1 and 2): your own names accepted at every door and
checked up front; validation and test edges that PyG transforms and loaders keep consistent."""
import copy
from pathlib import Path

import numpy as np
import pytest
import torch
from torch_geometric.data import HeteroData

from dhmrec_pyg.data import (
    EDGE_TYPE,
    TEST_EDGE_TYPE,
    VAL_EDGE_TYPE,
    DataError,
    as_interaction_graph,
    load_dataset,
    load_mmrec,
    make_synthetic,
    split_edge_index,
    training_graph,
    write_mmrec,
)
from dhmrec_pyg.models import MODELS
from dhmrec_pyg.models.base import EDGE
from dhmrec_pyg.recommend import recommend

RATES = ("customer", "rates", "product")


@pytest.fixture(scope="module")
def data() -> HeteroData:
    return make_synthetic("tiny")


def own_names(data: HeteroData, split_types: bool = False) -> HeteroData:
    """``data`` as a user would build it: customers rate products; splits in the earlier layout
    (attributes of the interaction store) or as split edge types."""
    out = HeteroData()
    out.name = data.name
    out["customer"].num_nodes = data["user"].num_nodes
    out["product"].num_nodes = data["item"].num_nodes
    for key in data["item"].keys():
        if key.startswith("x_"):
            out["product"][key] = data["item"][key]
    out[RATES].edge_index = split_edge_index(data, "train")
    for split in ("val", "test"):
        if split_types:
            out["customer", f"rates_{split}", "product"].edge_index = split_edge_index(data, split)
        else:
            out[RATES][f"{split}_edge_index"] = split_edge_index(data, split)
    return out


def test_one_definition_of_the_interaction_edge_type() -> None:
    assert EDGE is EDGE_TYPE == ("user", "interacts", "item")
    assert VAL_EDGE_TYPE == ("user", "interacts_val", "item")
    assert TEST_EDGE_TYPE == ("user", "interacts_test", "item")


@pytest.mark.parametrize("split_types", [False, True])
def test_own_names_become_the_canonical_form(data: HeteroData, split_types: bool) -> None:
    mine = own_names(data, split_types)
    before = list(mine.edge_types)
    out = as_interaction_graph(mine, edge_type=RATES)
    assert mine.edge_types == before  # the input is left alone
    assert set(out.node_types) == {"user", "item"}
    for split in ("train", "val", "test"):
        assert torch.equal(split_edge_index(out, split), split_edge_index(data, split))
    assert out[EDGE_TYPE].val_edge_index is out[VAL_EDGE_TYPE].edge_index  # the earlier layout still reads
    assert torch.equal(out["item"].x_image, data["item"].x_image)
    # node types and a bare relation name are accepted too
    out2 = as_interaction_graph(mine, "rates", user="customer", item="product")
    assert torch.equal(out2[EDGE_TYPE].edge_index, data[EDGE_TYPE].edge_index)


def test_canonical_graph_is_returned_as_is(data: HeteroData) -> None:
    assert as_interaction_graph(data) is data
    assert as_interaction_graph(data, require_splits=True) is data


def test_wrong_or_missing_edge_type_lists_expected_and_found(data: HeteroData) -> None:
    mine = own_names(data)
    with pytest.raises(DataError) as err:
        as_interaction_graph(mine)
    msg = str(err.value)
    assert "('user', 'interacts', 'item')" in msg and "customer" in msg and "('customer', 'rates', 'product')" in msg
    assert "edge_type=" in msg
    no_edges = HeteroData()
    no_edges["user"].num_nodes, no_edges["item"].num_nodes = 3, 4
    with pytest.raises(DataError, match=r"missing edge type \('user', 'interacts', 'item'\)"):
        as_interaction_graph(no_edges)
    with pytest.raises(DataError, match="edge_type=.*triple"):
        as_interaction_graph(mine, edge_type=("customer", "product"))
    with pytest.raises(DataError, match="HeteroData.*found Tensor"):
        as_interaction_graph(data[EDGE_TYPE].edge_index)  # type: ignore[arg-type]


def test_models_take_own_names_and_check_up_front(data: HeteroData) -> None:
    mine = own_names(data)
    for name in ("lightgcn", "dhmrec"):
        cls = MODELS[name]
        with pytest.raises(DataError, match="found node types"):  # was AttributeError: 'EdgeStorage' ...
            cls(mine, cls.config_class())
    cls = MODELS["lightgcn"]
    torch.manual_seed(0)
    a = cls(data, cls.config_class())
    torch.manual_seed(0)
    b = cls(mine, cls.config_class(), edge_type=RATES)
    with torch.no_grad():
        for x, y in zip(a.embeddings(), b.embeddings()):
            assert torch.equal(x, y)
    users = [0, 1, 2]
    expected = recommend(a, data[EDGE_TYPE].edge_index, 5, users)
    got = recommend(b, mine, 5, users, edge_type=RATES)
    for x, y in zip(expected, got):
        np.testing.assert_array_equal(x, y)


def test_out_of_range_ids_name_the_node_type_and_id(data: HeteroData) -> None:
    bad = copy.copy(data)
    ei = bad[EDGE_TYPE].edge_index.clone()
    ei[1, 7] = int(data["item"].num_nodes) + 5
    bad[EDGE_TYPE].edge_index = ei
    with pytest.raises(DataError, match=rf"item id {int(data['item'].num_nodes) + 5} \(row 1, column 7\)"):
        as_interaction_graph(bad)
    bad[EDGE_TYPE].edge_index = ei.float()
    with pytest.raises(DataError, match="integer ids, found dtype torch.float32"):
        as_interaction_graph(bad)


def test_disagreeing_split_copies_are_an_error(data: HeteroData) -> None:
    bad = copy.copy(data)
    bad[EDGE_TYPE].val_edge_index = data[EDGE_TYPE].val_edge_index[:, :3]
    with pytest.raises(DataError, match="validation|val interactions disagree"):
        as_interaction_graph(bad)


def test_require_splits(data: HeteroData) -> None:
    with pytest.raises(DataError, match="no val interactions"):
        as_interaction_graph(training_graph(data), require_splits=True)


def test_write_mmrec_with_own_names_round_trips(data: HeteroData, tmp_path: Path) -> None:
    write_mmrec(own_names(data, split_types=True), tmp_path / "shop", "shop", edge_type=RATES)
    back = load_mmrec(tmp_path / "shop")
    for split in ("train", "val", "test"):
        assert torch.equal(split_edge_index(back, split), split_edge_index(data, split))


# ------------------------------------------------------------------ item 2: splits under PyG transforms
def test_splits_survive_to_homogeneous(data: HeteroData) -> None:
    h = data.to_homogeneous()
    n_users = int(data["user"].num_nodes)
    assert "val_edge_index" not in h and "test_edge_index" not in h  # no stale copies ride along
    for split in ("train", "val", "test"):
        et = EDGE_TYPE if split == "train" else (VAL_EDGE_TYPE if split == "val" else TEST_EDGE_TYPE)
        k = h._edge_type_names.index(et)
        got = h.edge_index[:, h.edge_type == k]
        expected = split_edge_index(data, split) + torch.tensor([[0], [n_users]])
        assert torch.equal(got, expected)
    # PyG's own convention for supervision edges: edge_label_index on the training graph
    view = training_graph(data)
    assert view.edge_types == [EDGE_TYPE] and "val_edge_index" not in view[EDGE_TYPE]
    view[EDGE_TYPE].edge_label_index = split_edge_index(data, "val")
    hv = view.to_homogeneous()
    assert torch.equal(hv.edge_label_index, split_edge_index(data, "val") + torch.tensor([[0], [n_users]]))


def test_loaded_and_cached_graphs_have_the_split_edge_types(tmp_path: Path) -> None:
    fresh = load_dataset("synthetic-tiny", root=tmp_path)
    cached = load_dataset("synthetic-tiny", root=tmp_path)  # read back from processed/
    for g in (fresh, cached):
        assert g.edge_types[:3] == [EDGE_TYPE, VAL_EDGE_TYPE, TEST_EDGE_TYPE]
        assert g[EDGE_TYPE].test_edge_index is g[TEST_EDGE_TYPE].edge_index
    for split in ("train", "val", "test"):
        assert torch.equal(split_edge_index(fresh, split), split_edge_index(cached, split))


def _has_sampler() -> bool:
    from torch_geometric.typing import WITH_PYG_LIB, WITH_TORCH_SPARSE

    return bool(WITH_PYG_LIB or WITH_TORCH_SPARSE)


@pytest.mark.skipif(not _has_sampler(), reason="LinkNeighborLoader needs pyg-lib or torch-sparse; neither is installed")
def test_splits_survive_link_neighbor_loader(data: HeteroData) -> None:
    from torch_geometric.loader import LinkNeighborLoader

    val = split_edge_index(data, "val")
    train_keys = set((split_edge_index(data, "train")[0] * 10_000 + split_edge_index(data, "train")[1]).tolist())
    loader = LinkNeighborLoader(training_graph(data), num_neighbors=[5, 5], edge_label_index=(EDGE_TYPE, val),
                                batch_size=64, shuffle=False)
    seen = 0
    for batch in loader:
        store = batch[EDGE_TYPE]
        assert "val_edge_index" not in store and VAL_EDGE_TYPE not in batch.edge_types
        u_id, i_id = batch["user"].n_id, batch["item"].n_id
        label = torch.stack([u_id[store.edge_label_index[0]], i_id[store.edge_label_index[1]]])
        assert torch.equal(label, val[:, store.input_id])  # local ids map back to the split's edges
        passed = u_id[store.edge_index[0]] * 10_000 + i_id[store.edge_index[1]]
        assert set(passed.tolist()) <= train_keys  # messages only over training edges
        seen += store.input_id.numel()
    assert seen == val.size(1)
    # the canonical graph itself: split edges are relabelled with the batch, never global ids
    loader = LinkNeighborLoader(data, num_neighbors={et: [5] if et == EDGE_TYPE else [0] for et in data.edge_types},
                                edge_label_index=(VAL_EDGE_TYPE, None), batch_size=64, shuffle=False)
    for batch in loader:
        store = batch[VAL_EDGE_TYPE]
        label = torch.stack([batch["user"].n_id[store.edge_label_index[0]], batch["item"].n_id[store.edge_label_index[1]]])
        assert torch.equal(label, val[:, store.input_id])


def test_run_once_takes_own_names(data: HeteroData) -> None:
    from dhmrec_pyg.training.config import TrainConfig
    from dhmrec_pyg.training.run import run_once

    cfg = TrainConfig(model="lightgcn", dataset="synthetic-tiny", epochs=1, progress=False, device="cpu")
    model_cfg = MODELS["lightgcn"].config_class()
    expected = run_once(cfg, model_cfg, None, data)
    got = run_once(cfg, model_cfg, None, own_names(data), edge_type=RATES)
    assert got["test"] == expected["test"] and got["valid"] == expected["valid"]
    with pytest.raises(DataError, match="no val interactions"):
        run_once(cfg, model_cfg, None, training_graph(data))


def test_trainer_takes_own_names(data: HeteroData) -> None:
    from dhmrec_pyg.training import Trainer, TrainConfig

    mine = own_names(data, split_types=True)
    cfg = TrainConfig(model="lightgcn", dataset="tiny", epochs=2, progress=False, seed=0)
    cls = MODELS["lightgcn"]
    results = []
    for graph, kwargs in ((data, {}), (mine, {"edge_type": RATES})):
        torch.manual_seed(0)
        model = cls(graph, cls.config_class(), **kwargs)
        results.append(Trainer(model, graph, cfg, None, model.config, **kwargs).fit())
    assert results[0]["valid"] == results[1]["valid"] and results[0]["test"] == results[1]["test"]
    with pytest.raises(DataError, match="found node types"):
        Trainer(cls(data, cls.config_class()), mine, cfg)
