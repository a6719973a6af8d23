"""Tests of MMRecDataset (processed cache) and load_dataset (name resolution)."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from dhmrec_pyg.data import EDGE_TYPE, DataError, MMRecDataset, load_dataset, modalities, write_mmrec

REAL = Path("/work/shared/data")


def _toy(root: Path, name: str = "toy", n_items: int = 4) -> Path:
    cols = {
        "userID": np.array([0, 0, 0, 1, 1, 2]),
        "itemID": np.array([0, 1, 2, 1, 3, 0]),
        "x_label": np.array([0, 0, 1, 0, 2, 0]),
    }
    feats = {"image": np.arange(n_items * 3, dtype=np.float32).reshape(n_items, 3)}
    write_mmrec(cols, root / name, name, features=feats)
    return root / name


def test_dataset_caches_and_reuses(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _toy(tmp_path)
    ds = MMRecDataset(tmp_path, "toy")
    assert ds.processed_now and len(ds) == 1
    data = ds[0]
    assert data["user"].num_nodes == 3 and modalities(data) == ["image"]
    assert Path(ds.raw_dir) == tmp_path / "toy"
    assert Path(ds.processed_dir) == tmp_path / "toy" / "processed"
    cached = list((tmp_path / "toy" / "processed").glob("data_*.pt"))
    assert len(cached) == 1 and len(cached[0].stem) == len("data_") + 16
    assert not (tmp_path / "toy" / "processed" / "pre_transform.pt").exists()

    calls = []
    monkeypatch.setattr(MMRecDataset, "process", lambda self: calls.append(1))
    ds2 = MMRecDataset(tmp_path, "toy")
    assert calls == [] and not ds2.processed_now
    again = ds2[0]
    for attr in ("edge_index", "val_edge_index", "test_edge_index"):
        assert torch.equal(again[EDGE_TYPE][attr], data[EDGE_TYPE][attr])
    assert torch.equal(again["item"].x_image, data["item"].x_image)
    assert again.name == "toy"


def test_dataset_rebuilds_when_raw_changes(tmp_path: Path) -> None:
    folder = _toy(tmp_path)
    first = MMRecDataset(tmp_path, "toy")
    old = {p.name for p in (folder / "processed").glob("data_*.pt")}
    with open(folder / "toy.inter", "a") as f:
        f.write("2\t3\t0\n")
    second = MMRecDataset(tmp_path, "toy")
    assert second.processed_now
    assert second[0][EDGE_TYPE].edge_index.size(1) == first[0][EDGE_TYPE].edge_index.size(1) + 1
    new = {p.name for p in (folder / "processed").glob("data_*.pt")}
    assert len(new) == 1 and new != old  # stale cache removed
    # A new modality also triggers re-processing.
    np.save(folder / "text_feat.npy", np.ones((4, 2), dtype=np.float32))
    third = MMRecDataset(tmp_path, "toy")
    assert third.processed_now and modalities(third[0]) == ["image", "text"]


def test_force_reload(tmp_path: Path) -> None:
    _toy(tmp_path)
    MMRecDataset(tmp_path, "toy")
    assert MMRecDataset(tmp_path, "toy", force_reload=True).processed_now


def test_corrupt_cache_is_rebuilt(tmp_path: Path) -> None:
    _toy(tmp_path)
    ds = MMRecDataset(tmp_path, "toy")
    Path(ds.processed_paths[0]).write_bytes(b"garbage")
    with pytest.warns(UserWarning, match="unreadable processed cache"):
        ds2 = MMRecDataset(tmp_path, "toy")
    assert ds2[0]["user"].num_nodes == 3


def test_malicious_cache_not_executed(tmp_path: Path) -> None:
    """A pickled object in the cache is refused (weights_only=True, no fallback)."""
    import pickle

    _toy(tmp_path)
    ds = MMRecDataset(tmp_path, "toy")
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    with open(ds.processed_paths[0], "wb") as f:
        pickle.dump(Evil(), f)
    with pytest.warns(UserWarning, match="unreadable processed cache"):
        MMRecDataset(tmp_path, "toy")
    assert not marker.exists()


def test_dataset_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"missing: dataset folder does not exist"):
        MMRecDataset(tmp_path, "missing")
    with pytest.raises(DataError, match=r"dataset name '\.\./x' must be a plain folder name"):
        MMRecDataset(tmp_path, "../x")
    (tmp_path / "noinner").mkdir()
    with pytest.raises(DataError, match=r"noinner\.inter: interaction file not found"):
        MMRecDataset(tmp_path, "noinner")
    assert not (tmp_path / "noinner" / "processed").exists()


def test_known_name_warns_on_cached_load_too(tmp_path: Path) -> None:
    _toy(tmp_path, name="tiktok")
    with pytest.warns(UserWarning, match="'tiktok' differs"):
        MMRecDataset(tmp_path, "tiktok")
    with pytest.warns(UserWarning, match="'tiktok' differs"):
        ds = MMRecDataset(tmp_path, "tiktok")
    assert not ds.processed_now


def test_data_warnings_are_kept_with_the_cache_and_given_on_every_load(tmp_path: Path) -> None:
    folder = _toy(tmp_path)
    with open(folder / "toy.inter", "a") as f:
        f.write("0\t1\t0\n")  # a repeated (user, item) pair, on line 8
    with pytest.warns(UserWarning, match=r"dropped 1 duplicate.*user 0, item 1 on line 8") as first:
        ds = MMRecDataset(tmp_path, "toy")
    assert ds.processed_now and len([w for w in first if "duplicate" in str(w.message)]) == 1
    for _ in range(2):
        with pytest.warns(UserWarning, match=r"dropped 1 duplicate.*user 0, item 1 on line 8") as again:
            cached = MMRecDataset(tmp_path, "toy")
        assert not cached.processed_now and len([w for w in again if "duplicate" in str(w.message)]) == 1
    with pytest.warns(UserWarning, match=r"dropped 1 duplicate"):
        load_dataset("toy", root=tmp_path)
    # A clean dataset's cache records no warning and gives none.
    _toy(tmp_path, name="clean")
    MMRecDataset(tmp_path, "clean")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert not MMRecDataset(tmp_path, "clean").processed_now


def test_load_dataset_resolution(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "data"
    _toy(root, name="mine")
    # root/name through MMRecDataset (cached).
    data = load_dataset("mine", root=root)
    assert data.name == "mine" and (root / "mine" / "processed").is_dir()
    # An explicit folder path: loaded directly.
    other = _toy(tmp_path / "elsewhere", name="x")
    assert load_dataset(str(other), root=root).name == "x"
    assert not (other / "processed").exists()
    # Synthetic profiles are materialised under root.
    tiny = load_dataset("synthetic-tiny", root=root)
    assert tiny.name == "synthetic-tiny" and (root / "synthetic-tiny" / "synthetic-tiny.inter").is_file()
    assert tiny["user"].num_nodes == 200


def test_load_dataset_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DataError) as info:
        load_dataset("nothing", root=tmp_path / "data")
    msg = str(info.value)
    assert "dataset 'nothing' not found" in msg and str(tmp_path / "data" / "nothing") in msg
    assert str(tmp_path / "nothing") in msg
    (tmp_path / "data").mkdir()
    # Names that are not existing folders may not contain separators or '..'.
    for bad in ("../no_such_dir", "a/b", "..\\x", ""):
        with pytest.raises(DataError, match="must be a plain folder name"):
            load_dataset(bad, root=tmp_path / "data" / "sub")


def test_load_dataset_demo(tmp_path: Path) -> None:
    data = load_dataset("demo", root=tmp_path)
    assert data["user"].num_nodes == 1500 and data["item"].num_nodes == 1000
    assert modalities(data) == ["image", "text"]


def test_load_dataset_read_only_real_folder() -> None:
    if not (REAL / "tiktok" / "tiktok.inter").is_file():
        pytest.skip(f"real dataset 'tiktok' not available at {REAL / 'tiktok'}")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        data = load_dataset("tiktok", root=REAL)
    assert (data["user"].num_nodes, data["item"].num_nodes) == (9308, 6710)
    assert not (REAL / "tiktok" / "processed").exists() or os.access(REAL / "tiktok", os.W_OK)
