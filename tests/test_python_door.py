"""The Python door checks what the command line checks: each misuse is a one-line error naming
the argument (``Class.field``) and the value, raised where the object is made."""
import warnings

import pytest
import torch

from dhmrec_pyg.data import make_synthetic
from dhmrec_pyg.errors import ConfigError, DataError
from dhmrec_pyg.models import DHMRec, DHMRecConfig, FREEDOMConfig, LightGCN, LightGCNConfig
from dhmrec_pyg.models.base import EDGE, GraphConfig
from dhmrec_pyg.schema import split_edge_type
from dhmrec_pyg.training import TrainConfig


@pytest.fixture()
def graph():
    return make_synthetic("tiny", seed=0, n_users=50, n_items=30, n_interactions=320)


@pytest.mark.parametrize("make, message", [
    (lambda: DHMRecConfig(disentangle="no"), "DHMRecConfig.disentangle must be a boolean (True/False), got 'no'"),
    (lambda: DHMRecConfig(embedding_dim="64"), "DHMRecConfig.embedding_dim must be an integer, got '64'"),
    (lambda: DHMRecConfig(alpha_mm=-0.5), "DHMRecConfig.alpha_mm must be >= 0, got -0.5"),
    (lambda: DHMRecConfig(fusion="sum"), "DHMRecConfig.fusion must be one of 'attention', 'mean', got 'sum'"),
    (lambda: FREEDOMConfig(dropout=1.0), "FREEDOMConfig.keep_ratio must be in (0, 1] (dropout = 1 - keep_ratio"),
    (lambda: LightGCNConfig(num_layers=2.5), "LightGCNConfig.num_layers must be an integer, got 2.5"),
    (lambda: TrainConfig(epochs=-1), "TrainConfig.epochs must be >= 1, got -1"),
    (lambda: TrainConfig(lr="fast"), "TrainConfig.lr must be a number, got 'fast'"),
    (lambda: TrainConfig(lr=0.0), "TrainConfig.lr must be > 0, got 0.0"),
    (lambda: TrainConfig(progress="yes"), "TrainConfig.progress must be a boolean (True/False), got 'yes'"),
    (lambda: TrainConfig(ks=[20, 0]), "TrainConfig.ks must be a non-empty list of cut-offs >= 1, got [20, 0]"),
    (lambda: TrainConfig(ema_decay=1.0), "TrainConfig.ema_decay must be in [0.0, 1.0), got 1.0"),
    (lambda: GraphConfig(sparse_layout="dense"), "GraphConfig.sparse_layout must be one of 'csr', 'coo', got 'dense'"),
])
def test_config_misuse_is_a_one_line_error_naming_field_and_value(make, message):
    with pytest.raises(ConfigError) as err:
        make()
    text = str(err.value)
    assert text.startswith(message) and "\n" not in text
    assert "--" not in text  # library errors never name command-line flags


def test_numbers_are_stored_as_their_field_type():
    cfg = DHMRecConfig(reg_weight=0, alpha_mm=1)
    assert isinstance(cfg.reg_weight, float) and isinstance(cfg.alpha_mm, float)


def test_a_config_of_another_model_is_refused_naming_both(graph):
    with pytest.raises(ConfigError, match="^LightGCN needs a LightGCNConfig, got a DHMRecConfig$"):
        LightGCN(graph, DHMRecConfig())


def test_an_empty_training_graph_is_refused(graph):
    graph[EDGE].edge_index = torch.zeros(2, 0, dtype=torch.long)
    with pytest.raises(DataError, match="0 training interactions"):
        LightGCN(graph, LightGCNConfig())


def test_non_finite_features_name_the_modality_and_the_first_row(graph):
    name = next(k for k in graph["item"].keys() if k.startswith("x_"))
    graph["item"][name] = graph["item"][name].clone()
    graph["item"][name][7, 0] = float("nan")
    graph["item"][name][9, 1] = float("inf")
    with pytest.raises(DataError, match=f"item feature {name} holds NaN or infinite values: 2 item rows, the first is item 7"):
        DHMRec(graph, DHMRecConfig(embedding_dim=8, knn_k=3))


def test_held_out_pairs_that_are_training_pairs_are_refused(graph):
    from dhmrec_pyg.training import Trainer

    train = graph[EDGE].edge_index
    test_type = split_edge_type("test")
    graph[test_type].edge_index = torch.cat([graph[test_type].edge_index, train[:, :3]], dim=1)
    if hasattr(graph[EDGE], "test_edge_index"):
        del graph[EDGE].test_edge_index
    model = LightGCN(graph, LightGCNConfig(embedding_dim=8))  # a model needs no splits
    with pytest.raises(DataError, match=r"3 of the \d+ test interactions are also training interactions \(e.g. user"):
        Trainer(model, graph, TrainConfig(epochs=1, progress=False))


def test_features_under_an_ignored_name_are_named(graph):
    graph["item"].x = torch.randn(graph["item"].num_nodes, 4)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        DHMRec(graph, DHMRecConfig(embedding_dim=8, knn_k=3))
    assert any("['x'] are not used by 'dhmrec'" in str(w.message) for w in caught)
    for key in [k for k in graph["item"].keys() if k.startswith("x_")]:
        del graph["item"][key]
    with pytest.raises(DataError, match=r"item attributes \['x'\] are not: rename them x_<modality>"):
        DHMRec(graph, DHMRecConfig(embedding_dim=8, knn_k=3))


def test_recommend_with_a_bad_k_names_the_argument_not_a_flag(graph):
    model = LightGCN(graph, LightGCNConfig(embedding_dim=8))
    with pytest.raises(ValueError) as err:
        model.recommend([0, 1], k=-1)
    assert str(err.value) == "k must be >= 1, got -1"
