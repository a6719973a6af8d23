"""Caches are keyed by a hash of their inputs and carry a checksum: stale or corrupted ones are rebuilt."""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

import dhmrec_pyg.nn.knn as knn_mod
from dhmrec_pyg.data import MMRecDataset, write_mmrec
from dhmrec_pyg.data.dataset import _CACHE_FORMAT
from dhmrec_pyg.nn import knn_graph


def _toy(folder: Path, shift: int = 0) -> None:
    rng = np.random.default_rng(shift)
    users = np.repeat(np.arange(12), 4)
    items = (np.tile(np.arange(4), 12) + users + shift) % 10
    labels = np.tile([0, 0, 1, 2], 12)
    write_mmrec({"userID": users, "itemID": items, "x_label": labels}, folder, "toy",
                features={"image": rng.normal(size=(10, 3)).astype(np.float32)}, overwrite=True)


def _graphs_equal(a, b) -> bool:
    ea, eb = a["user", "interacts", "item"], b["user", "interacts", "item"]
    return all(torch.equal(ea[k], eb[k]) for k in ("edge_index", "val_edge_index", "test_edge_index")) and \
        torch.equal(a["item"].x_image, b["item"].x_image)


def test_dataset_cache_records_its_key_and_checksum(tmp_path):
    _toy(tmp_path / "toy")
    ds = MMRecDataset(tmp_path, "toy")
    obj = torch.load(ds.processed_paths[0], weights_only=True)
    assert obj["format"] == _CACHE_FORMAT and obj["key"] == ds._key and len(obj["checksum"]) == 64
    again = MMRecDataset(tmp_path, "toy")
    assert not again.processed_now and _graphs_equal(again[0], ds[0])


def test_silently_corrupted_dataset_cache_is_detected_and_rebuilt(tmp_path):
    _toy(tmp_path / "toy")
    truth = MMRecDataset(tmp_path, "toy")[0]
    path = Path(MMRecDataset(tmp_path, "toy").processed_paths[0])
    obj = torch.load(path, weights_only=True)
    obj["edge_index"][1, 0] += 1  # a flipped value in an otherwise well-formed file
    torch.save(obj, path)
    with pytest.warns(UserWarning, match="checksum mismatch"):
        ds = MMRecDataset(tmp_path, "toy")
    assert ds.processed_now and _graphs_equal(ds[0], truth)
    assert not MMRecDataset(tmp_path, "toy").processed_now  # the rebuilt cache is good again


def test_stale_dataset_cache_is_detected_and_rebuilt(tmp_path):
    _toy(tmp_path / "a")
    _toy(tmp_path / "toy", shift=3)
    other = Path(MMRecDataset(tmp_path, "a").processed_paths[0])
    mine = MMRecDataset(tmp_path, "toy")
    truth, target = mine[0], Path(mine.processed_paths[0])
    target.write_bytes(other.read_bytes())  # a cache of other raw files under this key's name
    with pytest.warns(UserWarning, match="stale cache"):
        ds = MMRecDataset(tmp_path, "toy")
    assert ds.processed_now and _graphs_equal(ds[0], truth)


def _one_cache(folder: Path) -> Path:
    (path,) = folder.glob("knn-*.npz")
    return path


def test_knn_cache_stores_key_and_checksum(tmp_path):
    x = np.random.default_rng(0).normal(size=(30, 5)).astype(np.float32)
    first = knn_graph(x, 4, cache_dir=tmp_path)
    with np.load(_one_cache(tmp_path), allow_pickle=False) as f:
        assert str(f["key"]) in _one_cache(tmp_path).name and len(str(f["checksum"])) == 64
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert torch.equal(knn_graph(x, 4, cache_dir=tmp_path), first)


@pytest.mark.parametrize("damage", ["truncated", "garbage", "edited", "stale"])
def test_damaged_knn_cache_is_rebuilt_never_used(tmp_path, monkeypatch, damage):
    x = np.random.default_rng(0).normal(size=(30, 5)).astype(np.float32)
    truth = knn_graph(x, 4, cache_dir=tmp_path)
    path = _one_cache(tmp_path)
    if damage == "truncated":
        path.write_bytes(path.read_bytes()[:-40])
    elif damage == "garbage":
        path.write_bytes(b"\0" * 64)
    elif damage == "edited":
        with np.load(path, allow_pickle=False) as f:
            parts = {k: f[k] for k in f.files}
        parts["edge_index"] = parts["edge_index"].copy()
        parts["edge_index"][0, :5] = 0
        np.savez(path, **parts)
    else:  # the graph of other parameters stored under this key's name
        other = tmp_path / "other"
        knn_graph(x, 3, cache_dir=other)
        path.write_bytes(_one_cache(other).read_bytes())
    searches = []
    real_search = knn_mod._search
    monkeypatch.setattr(knn_mod, "_search", lambda *a, **k: searches.append(1) or real_search(*a, **k))
    with pytest.warns(UserWarning, match="rebuilding"):
        again = knn_graph(x, 4, cache_dir=tmp_path)
    assert searches and torch.equal(again, truth)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert torch.equal(knn_graph(x, 4, cache_dir=tmp_path), truth)  # repaired
