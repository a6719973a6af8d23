"""Inputs checked where they enter (issue 14, item 6): ids out of range, the KNN cache option, and a
multimodal model on a dataset without features from the command line."""
from pathlib import Path

import pytest
import torch

from dhmrec_pyg.cli import main
from dhmrec_pyg.data import make_synthetic, write_mmrec
from dhmrec_pyg.errors import DataError
from dhmrec_pyg.models.base import GraphConfig
from dhmrec_pyg.nn.graph import normalized_adjacency
from dhmrec_pyg.nn.item_graph import user_item_adjacency
from dhmrec_pyg.training.evaluate import FullRankingEvaluator
from dhmrec_pyg.training.sampler import BPRSampler

EDGES = torch.tensor([[0, 0, 1, 2, 3], [0, 1, 2, 3, 4]])


def test_bpr_sampler_rejects_item_ids_beyond_num_items() -> None:
    with pytest.raises(ValueError, match=r"BPRSampler: edge_index: item id 4 \(row 1, column 4\) is out of range"):
        BPRSampler(EDGES, num_items=4)
    bad = EDGES.clone()
    bad[1, 0] = -1
    with pytest.raises(ValueError, match="item id -1"):
        BPRSampler(bad, num_items=5)
    BPRSampler(EDGES, num_items=5)  # in range: fine


def test_evaluator_rejects_ids_beyond_the_catalogue() -> None:
    target = torch.tensor([[0, 1], [3, 9]])
    with pytest.raises(ValueError, match=r"target_edge_index: item id 9 .* ids 0\.\.4"):
        FullRankingEvaluator(EDGES, target, num_users=4, num_items=5)
    with pytest.raises(ValueError, match="train_edge_index: user id 3"):
        FullRankingEvaluator(EDGES, target[:, :1], num_users=3, num_items=5)


def test_graph_builders_report_the_item_id_not_the_homogeneous_index() -> None:
    ei = torch.tensor([[0, 1, 2], [0, 1, 6715]])
    for build in (normalized_adjacency, user_item_adjacency):
        with pytest.raises(ValueError) as err:
            build(ei, 9308, 6710)
        assert "item id 6715" in str(err.value) and "16023" not in str(err.value)


def test_knn_cache_dir_none_means_no_cache() -> None:
    for value in ("", "none", "None", "auto"):  # "auto" unresolved (no data set folder): no cache
        assert GraphConfig(knn_cache_dir=value).cache_path() is None
    assert GraphConfig(knn_cache_dir=Path("/x")).cache_path() == Path("/x")  # type: ignore[arg-type]
    assert GraphConfig().resolved(Path("/d")).cache_path() == Path("/d/knn_cache")
    assert GraphConfig(knn_cache_dir="none").resolved(Path("/d")).cache_path() is None
    with pytest.raises(ValueError, match=r"GraphConfig.knn_cache_dir must be a string, got 3"):
        GraphConfig(knn_cache_dir=3)  # type: ignore[arg-type]


def test_multimodal_model_without_features_is_a_one_line_error(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    folder = tmp_path / "plain"
    write_mmrec(make_synthetic("tiny"), folder, "plain", features={})
    code = main(["train", "--model", "dhmrec", "--dataset", str(folder), "--epochs", "1",
                 "--out", str(tmp_path / "run"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("dhmrec: error: model 'dhmrec' needs item features") and "Traceback" not in err
    assert err.count("\n") == 1
    from dhmrec_pyg.data import load_mmrec
    from dhmrec_pyg.models.base import item_modalities

    with pytest.raises(DataError):  # a ValueError, as before, for Python callers
        item_modalities(load_mmrec(folder), "dhmrec")
