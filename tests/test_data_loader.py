"""Tests of dhmrec_pyg.data.io: load_mmrec / write_mmrec and their error messages."""

from __future__ import annotations

import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from dhmrec_pyg.data import (
    EDGE_TYPE,
    KNOWN_DATASETS,
    DataError,
    load_mmrec,
    modalities,
    write_mmrec,
)

REAL = Path(__file__).resolve().parents[1].parent / "shared" / "data"
if not REAL.is_dir():
    REAL = Path("/work/shared/data")

HEADER = "userID\titemID\tx_label\n"
GOOD_ROWS = "0\t0\t0\n0\t1\t0\n0\t2\t1\n1\t1\t0\n1\t2\t2\n2\t0\t0\n"


def make_folder(tmp_path: Path, inter: str, feats: dict[str, np.ndarray] | None = None, name: str = "toy") -> Path:
    """Write a raw MMRec folder by hand (so that malformed inputs can be produced)."""
    folder = tmp_path / name
    folder.mkdir(parents=True)
    (folder / f"{name}.inter").write_text(inter)
    for m, arr in (feats or {}).items():
        np.save(folder / f"{m}_feat.npy", arr, allow_pickle=False)
    return folder


def feats(n: int = 3, d: int = 4, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32)


# ---------------------------------------------------------------------------------- happy paths
def test_load_basic(tmp_path: Path) -> None:
    folder = make_folder(tmp_path, HEADER + GOOD_ROWS, {"image": feats(3, 4), "audio": feats(3, 2, 1)})
    data = load_mmrec(folder)
    assert data.name == "toy"
    assert data["user"].num_nodes == 3 and data["item"].num_nodes == 3
    store = data[EDGE_TYPE]
    assert store.edge_index.dtype == torch.long
    assert store.edge_index.tolist() == [[0, 0, 1, 2], [0, 1, 1, 0]]
    assert store.val_edge_index.tolist() == [[0], [2]]
    assert store.test_edge_index.tolist() == [[1], [2]]
    assert modalities(data) == ["audio", "image"]
    assert data["item"].x_image.dtype == torch.float32 and data["item"].x_image.shape == (3, 4)
    assert data["item"].x_audio.shape == (3, 2)
    np.testing.assert_array_equal(data["item"].x_image.numpy(), feats(3, 4))


def test_extra_columns_crlf_bom_blank_lines(tmp_path: Path) -> None:
    text = "\ufeffuserID\titemID\trating\ttimestamp\tx_label\r\n0\t1\t5.0\t1200\t0\r\n\r\n1\t0\t4\t1300\t0\r\n1\t1\t3\tx\t2\r\n\r\n"
    data = load_mmrec(make_folder(tmp_path, text))
    assert data[EDGE_TYPE].edge_index.tolist() == [[0, 1], [1, 0]]
    assert data[EDGE_TYPE].test_edge_index.tolist() == [[1], [1]]
    assert data[EDGE_TYPE].val_edge_index.shape == (2, 0)
    assert modalities(data) == []


def test_items_from_feature_rows_allow_cold_items(tmp_path: Path) -> None:
    data = load_mmrec(make_folder(tmp_path, HEADER + GOOD_ROWS, {"text": feats(5, 3)}))
    assert data["item"].num_nodes == 5  # items 3 and 4 only have features


def test_single_inter_file_with_other_name(tmp_path: Path) -> None:
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "other.inter").write_text(HEADER + GOOD_ROWS)
    assert load_mmrec(folder).name == "other"
    assert load_mmrec(folder, name="other").name == "other"


def test_duplicates_dropped_with_warning(tmp_path: Path) -> None:
    folder = make_folder(tmp_path, HEADER + GOOD_ROWS + "0\t1\t2\n0\t1\t1\n")
    with pytest.warns(UserWarning, match=r"dropped 2 duplicate.*user 0, item 1 on line 8"):
        data = load_mmrec(folder)
    store = data[EDGE_TYPE]
    assert store.edge_index.size(1) + store.val_edge_index.size(1) + store.test_edge_index.size(1) == 6
    assert [0, 1] in store.edge_index.t().tolist()  # first occurrence (train) kept


def test_write_then_load_roundtrip(tmp_path: Path) -> None:
    data = load_mmrec(make_folder(tmp_path, HEADER + GOOD_ROWS, {"image": feats(4, 4)}))
    path = write_mmrec(data, tmp_path / "copy", "copy")
    assert path.name == "copy.inter"
    back = load_mmrec(tmp_path / "copy")
    assert back.name == "copy" and back["item"].num_nodes == 4
    for attr in ("edge_index", "val_edge_index", "test_edge_index"):
        assert torch.equal(back[EDGE_TYPE][attr], data[EDGE_TYPE][attr])
    assert torch.equal(back["item"].x_image, data["item"].x_image)
    assert not list((tmp_path / "copy").glob("*.tmp"))


def test_write_columns_and_overwrite(tmp_path: Path) -> None:
    cols = {
        "userID": np.array([0, 1, 1]),
        "itemID": np.array([2, 0, 1]),
        "x_label": np.array([0, 0, 2]),
        "timestamp": np.array([10, 20, 30]),
    }
    folder = tmp_path / "cols"
    write_mmrec(cols, folder, features={"image": feats(3, 2), "text": feats(3, 2)})
    assert (folder / "cols.inter").read_text().splitlines()[0] == "userID\titemID\tx_label\ttimestamp"
    with pytest.raises(DataError, match="overwrite=True"):
        write_mmrec(cols, folder)
    write_mmrec(cols, folder, features={"image": feats(3, 2)}, overwrite=True)
    assert modalities(load_mmrec(folder)) == ["image"]  # stale text_feat.npy removed


def test_write_rejects_bad_columns(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="missing column 'x_label'"):
        write_mmrec({"userID": np.array([0]), "itemID": np.array([0])}, tmp_path / "a")
    with pytest.raises(DataError, match="'x_label' must be 0, 1 or 2, found 3"):
        write_mmrec({"userID": np.array([0]), "itemID": np.array([0]), "x_label": np.array([3])}, tmp_path / "b")


# ---------------------------------------------------------------------------------- bad inputs
def test_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"nowhere: dataset folder does not exist"):
        load_mmrec(tmp_path / "nowhere")


def test_missing_inter(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"empty\.inter: interaction file not found"):
        load_mmrec(tmp_path / "empty")


def test_several_inter_files_ambiguous(tmp_path: Path) -> None:
    folder = tmp_path / "multi"
    folder.mkdir()
    (folder / "a.inter").write_text(HEADER + GOOD_ROWS)
    (folder / "b.inter").write_text(HEADER + GOOD_ROWS)
    with pytest.raises(DataError, match=r"several \.inter files \(a\.inter, b\.inter\)"):
        load_mmrec(folder)


@pytest.mark.parametrize("column", ["userID", "itemID", "x_label"])
def test_missing_column(tmp_path: Path, column: str) -> None:
    header = "\t".join(c for c in ["userID", "itemID", "x_label"] if c != column)
    rows = "0\t0\n1\t1\n"
    with pytest.raises(DataError, match=rf"toy\.inter: missing column '{column}'"):
        load_mmrec(make_folder(tmp_path, header + "\n" + rows))


def test_space_separated_file_names_missing_column(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"toy\.inter: missing column 'userID'.*tab-separated"):
        load_mmrec(make_folder(tmp_path, "userID itemID x_label\n0 0 0\n"))


def test_empty_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"toy\.inter: file is empty"):
        load_mmrec(make_folder(tmp_path, ""))


@pytest.mark.parametrize(
    "column, bad",
    [("userID", "abc"), ("userID", "-1"), ("itemID", "1.5"), ("itemID", "-3"), ("itemID", ""), ("x_label", "one")],
)
def test_bad_ids(tmp_path: Path, column: str, bad: str) -> None:
    row = {"userID": "1", "itemID": "1", "x_label": "0"}
    row[column] = bad
    text = HEADER + GOOD_ROWS + f"{row['userID']}\t{row['itemID']}\t{row['x_label']}\n"
    with pytest.raises(DataError) as info:
        load_mmrec(make_folder(tmp_path, text))
    msg = str(info.value)
    assert msg.startswith("toy.inter: ")
    assert f"column '{column}' must hold non-negative integers, found '{bad}' on line 8" in msg


def test_huge_id(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"toy\.inter: column 'userID' holds '99999999999' on line 2, larger than"):
        load_mmrec(make_folder(tmp_path, HEADER + "99999999999\t0\t0\n"))


def test_wrong_field_count(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"toy\.inter: line 4 has 2 tab-separated fields, expected 3.*'1\\t1'"):
        load_mmrec(make_folder(tmp_path, HEADER + "0\t0\t0\n1\t0\t0\n1\t1\n"))


def test_bad_x_label(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"toy\.inter: column 'x_label' must be 0 \(train\), 1 \(valid\) or 2 \(test\), found '3' on line 3"):
        load_mmrec(make_folder(tmp_path, HEADER + "0\t0\t0\n0\t1\t3\n"))


def test_empty_training_split(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"toy\.inter: column 'x_label' holds no training interaction.*1 validation \(1\) and 1 test"):
        load_mmrec(make_folder(tmp_path, HEADER + "0\t0\t1\n0\t1\t2\n"))
    with pytest.raises(DataError, match=r"toy\.inter: column 'x_label' holds no training interaction"):
        load_mmrec(make_folder(tmp_path / "h", HEADER))


def test_feature_rows_fewer_than_items(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"image_feat\.npy: has 2 rows but toy\.inter column 'itemID' holds '2' on line 4"):
        load_mmrec(make_folder(tmp_path, HEADER + GOOD_ROWS, {"image": feats(2, 4)}))


def test_feature_files_disagree(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"audio_feat\.npy has 4.*image_feat\.npy has 3"):
        load_mmrec(make_folder(tmp_path, HEADER + GOOD_ROWS, {"image": feats(3), "audio": feats(4)}))


@pytest.mark.parametrize("value, text", [(np.nan, "nan"), (np.inf, "inf"), (1e300, "inf")])
def test_non_finite_features(tmp_path: Path, value: float, text: str) -> None:
    x = feats(3, 4).astype(np.float64)
    x[2, 1] = value
    with pytest.raises(DataError, match=rf"image_feat\.npy: non-finite feature value \({text}.*item 2 \(row 2\), feature column 1"):
        load_mmrec(make_folder(tmp_path, HEADER + GOOD_ROWS, {"image": x}))


def test_features_not_2d(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"image_feat\.npy: array must be 2-D.*found shape \(3,\)"):
        load_mmrec(make_folder(tmp_path, HEADER + GOOD_ROWS, {"image": np.zeros(3, dtype=np.float32)}))


def test_features_not_numeric(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"image_feat\.npy: array must be numeric.*found dtype '<U1'"):
        load_mmrec(make_folder(tmp_path, HEADER + GOOD_ROWS, {"image": np.array([["a"], ["b"], ["c"]])}))


def test_object_array_refused_cleanly(tmp_path: Path) -> None:
    folder = make_folder(tmp_path, HEADER + GOOD_ROWS)
    np.save(folder / "image_feat.npy", np.array([[1, "x"]] * 3, dtype=object), allow_pickle=True)
    with pytest.raises(DataError, match=r"image_feat\.npy: cannot be loaded as a plain \.npy array.*allow_pickle"):
        load_mmrec(folder)


def test_garbage_npy(tmp_path: Path) -> None:
    folder = make_folder(tmp_path, HEADER + GOOD_ROWS)
    (folder / "image_feat.npy").write_bytes(b"definitely not numpy")
    with pytest.raises(DataError, match=r"image_feat\.npy: not a NumPy file") as err:
        load_mmrec(folder)
    assert "pickle" not in str(err.value)


def test_text_file_named_npy_is_not_a_numpy_file(tmp_path: Path) -> None:
    """A CSV saved as ``.npy`` is reported as what it is, not as pickled data."""
    folder = make_folder(tmp_path, HEADER + GOOD_ROWS)
    (folder / "image_feat.npy").write_text("0.1,0.2\n0.3,0.4\n0.5,0.6\n")
    with pytest.raises(DataError, match=r"^image_feat\.npy: not a NumPy file \(.*text") as err:
        load_mmrec(folder)
    assert "pickle" not in str(err.value)
    (folder / "image_feat.npy").write_bytes(b"")
    with pytest.raises(DataError, match=r"^image_feat\.npy: not a NumPy file \(the file is empty\)"):
        load_mmrec(folder)


def test_npz_refused(tmp_path: Path) -> None:
    folder = make_folder(tmp_path, HEADER + GOOD_ROWS)
    with open(folder / "image_feat.npy", "wb") as f:
        np.savez(f, a=feats())
    with pytest.raises(DataError, match=r"image_feat\.npy: expected a single \.npy array"):
        load_mmrec(folder)


def test_bad_modality_name(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"my image_feat\.npy: modality name 'my image'"):
        load_mmrec(make_folder(tmp_path, HEADER + GOOD_ROWS, {"my image": feats()}))


# ---------------------------------------------------------------------------------- known stats
def test_known_dataset_warns_on_different_counts(tmp_path: Path) -> None:
    with pytest.warns(UserWarning, match=r"'Baby' differs.*users expected 19445, found 3; items expected 7050, found 3; interactions expected 160792, found 6"):
        load_mmrec(make_folder(tmp_path, HEADER + GOOD_ROWS, name="Baby"))


def test_unknown_dataset_does_not_warn(tmp_path: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_mmrec(make_folder(tmp_path, HEADER + GOOD_ROWS, name="mine"))


# ---------------------------------------------------------------------------------- real data
def _real(name: str) -> Path:
    folder = REAL / name
    if not (folder / f"{name}.inter").is_file():
        pytest.skip(f"real dataset {name!r} not available at {folder}")
    return folder


def test_real_tiktok() -> None:
    folder = _real("tiktok")
    t = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        data = load_mmrec(folder)
    elapsed = time.perf_counter() - t
    store = data[EDGE_TYPE]
    assert (data["user"].num_nodes, data["item"].num_nodes) == (9308, 6710)
    assert [store.edge_index.size(1), store.val_edge_index.size(1), store.test_edge_index.size(1)] == [59541, 3051, 6130]
    assert modalities(data) == ["audio", "image"]
    assert data["item"].x_audio.shape == (6710, 128) and data["item"].x_image.shape == (6710, 128)
    assert data.name == "tiktok"
    assert elapsed < 5


def test_real_baby() -> None:
    folder = _real("baby")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        data = load_mmrec(folder)
    store = data[EDGE_TYPE]
    known = KNOWN_DATASETS["baby"]
    assert (data["user"].num_nodes, data["item"].num_nodes) == (known["users"], known["items"])
    assert [store.edge_index.size(1), store.val_edge_index.size(1), store.test_edge_index.size(1)] == [118551, 21682, 20559]
    assert modalities(data) == []
