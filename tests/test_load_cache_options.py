"""Where loading writes (issue 14, item 7): ``load_dataset(..., cache=False)`` writes no cache, and
``processed_dir=`` keeps the processed graph and the KNN caches out of the data folder."""
import shutil
from pathlib import Path

import torch

from dhmrec_pyg.data import MMRecDataset, load_dataset, open_dataset, split_edge_index
from dhmrec_pyg.models.base import GraphConfig
from dhmrec_pyg.models import MODELS


def _files(folder: Path) -> set:
    return {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()}


def test_cache_false_writes_nothing_next_to_the_data(tmp_path: Path) -> None:
    root = tmp_path / "data"
    data = load_dataset("synthetic-tiny", root=root, cache=False)
    raw = _files(root)
    assert not any("processed" in f for f in raw)
    assert open_dataset("synthetic-tiny", root=root, cache=False).cache_folder is None  # so no KNN cache
    cls = MODELS["freedom"]
    cls(data, cls.config_class())
    assert _files(root) == raw
    again = load_dataset("synthetic-tiny", root=root, cache=False)
    assert torch.equal(split_edge_index(again, "val"), split_edge_index(data, "val"))


def test_processed_dir_keeps_caches_out_of_the_data_folder(tmp_path: Path) -> None:
    root, processed = tmp_path / "data", tmp_path / "cache"
    data, folder = open_dataset("synthetic-tiny", root=root, processed_dir=processed)
    assert not any("processed" in f or "knn_cache" in f for f in _files(root))
    assert folder == processed.resolve()
    cls = MODELS["freedom"]
    cls(data, cls.config_class(), graph=GraphConfig().resolved(folder))  # "auto": under processed_dir
    assert any(p.startswith("knn_cache") for p in _files(processed))
    assert not any("knn_cache" in f for f in _files(root))
    ds = MMRecDataset(root, "synthetic-tiny", processed_dir=processed)
    assert not ds.processed_now  # read back from the chosen folder
    # a folder loaded by path can be cached there too, and datasets sharing it keep their caches
    shutil.copytree(root / "synthetic-tiny", tmp_path / "other" / "mine")
    by_path = open_dataset(tmp_path / "other" / "mine", processed_dir=processed)
    assert by_path.cache_folder == processed.resolve()
    caches = sorted(p.name for p in processed.glob("*.pt"))
    assert len(caches) == 2 and caches[0].startswith("mine.data_") and caches[1].startswith("synthetic-tiny.data_")
    assert not (tmp_path / "other" / "mine" / "processed").exists()
