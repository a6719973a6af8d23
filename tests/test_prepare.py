"""Bring your own data: :func:`prepare_dataset` turns a CSV/Parquet table + item features into MMRec."""

from __future__ import annotations

import csv
import json
import sys
import types
from pathlib import Path

import numpy as np
import pytest

from dhmrec_pyg.data import DataError, load_mmrec, split_counts
from dhmrec_pyg.data.io import read_inter
from dhmrec_pyg.data.prepare import encode_text, prepare_dataset, read_id_map, read_item_features


def _write_csv(path: Path, header: list[str], rows: list[list[object]], delimiter: str = ",") -> Path:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh, delimiter=delimiter)
        if header:
            w.writerow(header)
        w.writerows(rows)
    return path


def _interactions(n_users: int = 24, per_user: int = 6, n_items: int = 30, seed: int = 0) -> list[list[object]]:
    """Rows (user, item, timestamp) with string IDs; every item occurs at least once."""
    rng = np.random.default_rng(seed)
    rows: list[list[object]] = []
    for u in range(n_users):
        for it in rng.choice(n_items, per_user, replace=False):
            rows.append([f"user-{u:02d}", f"B0{it:03d}X", int(rng.integers(0, 10_000))])
    seen = {r[1] for r in rows}
    for it in range(n_items):  # make sure every item is used
        if f"B0{it:03d}X" not in seen:
            rows.append(["user-00", f"B0{it:03d}X", 5])
    return rows


@pytest.fixture()
def byod(tmp_path: Path) -> dict[str, object]:
    """A CSV with string IDs, an image .npz missing item B0003X and holding a cold item, a text CSV."""
    rows = _interactions()
    inter = _write_csv(tmp_path / "ratings.csv", ["user", "item", "time"], rows)
    items = sorted({r[1] for r in rows})
    rng = np.random.default_rng(1)
    img_ids = [i for i in items if i != "B0003X"] + ["COLD-1"]
    img = rng.normal(size=(len(img_ids), 6))
    np.savez(tmp_path / "image.npz", ids=np.array(img_ids, dtype=str), features=img)
    txt_rows = [[i, *rng.normal(size=4).round(4)] for i in items]
    txt = _write_csv(tmp_path / "text.csv", ["item_id", "f0", "f1", "f2", "f3"], txt_rows)
    return {"inter": inter, "rows": rows, "items": items, "img_ids": img_ids, "img": img,
            "feats": {"image": tmp_path / "image.npz", "text": txt}}


def test_string_ids_and_a_missing_feature_item_give_a_loadable_folder(tmp_path: Path, byod: dict) -> None:
    out = tmp_path / "mydata"
    report = prepare_dataset(byod["inter"], out, features=byod["feats"])
    data = load_mmrec(out)
    n_items = len(byod["items"]) + 1  # plus the cold item
    assert data["user"].num_nodes == report.users == 24
    assert data["item"].num_nodes == report.items == n_items
    assert report.warm_items == len(byod["items"]) and report.cold_items == 1
    store = data["user", "interacts", "item"]
    total = store.edge_index.size(1) + store.val_edge_index.size(1) + store.test_edge_index.size(1)
    assert total == report.interactions == len(byod["rows"])
    assert (report.train, report.valid, report.test) == tuple(
        int(store[a].size(1)) for a in ("edge_index", "val_edge_index", "test_edge_index"))
    for m in ("image", "text"):
        x = data["item"][f"x_{m}"].numpy()
        assert x.shape[0] == n_items and np.isfinite(x).all()
    # The missing item got the mean row of the image features of the kept items.
    item_map = read_id_map(out / "item_map.csv")
    x = data["item"].x_image.numpy()
    assert np.allclose(x[item_map["B0003X"]], byod["img"].mean(axis=0), atol=1e-5)
    assert np.allclose(x[item_map["B0004X"]], byod["img"][byod["img_ids"].index("B0004X")], atol=1e-6)
    # The cold item comes after all items with interactions and has no interaction.
    assert item_map["COLD-1"] == n_items - 1
    assert not (store.edge_index[1] == n_items - 1).any()
    # Text features: the cold item was filled (no row in text.csv).
    r = report.modalities
    assert (r["image"].filled, r["image"].filled_examples) == (1, ["B0003X"])
    assert (r["text"].filled, r["text"].filled_examples) == (1, ["COLD-1"])
    text = str(report)
    assert "1 item without a row given the mean row (e.g. 'B0003X')" in text and "1 cold" in text
    assert json.loads((out / "prepare.json").read_text())["report"]["interactions"] == len(byod["rows"])
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary folder left


def test_id_maps_round_trip(tmp_path: Path, byod: dict) -> None:
    out = tmp_path / "ds"
    prepare_dataset(byod["inter"], out, features=byod["feats"], keep_cold_items=False, fill="zeros")
    users = {v: k for k, v in read_id_map(out / "user_map.csv").items()}
    items = {v: k for k, v in read_id_map(out / "item_map.csv").items()}
    assert sorted(users) == list(range(len(users))) and sorted(items) == list(range(len(items)))
    cols = read_inter(out / "ds.inter")
    pairs = {(users[int(u)], items[int(i)]) for u, i in zip(cols["userID"], cols["itemID"])}
    assert pairs == {(r[0], r[1]) for r in byod["rows"]}
    assert "COLD-1" not in items.values()
    x = load_mmrec(out)["item"].x_image.numpy()
    assert np.all(x[{v: k for k, v in items.items()}["B0003X"]] == 0)


def test_numeric_ids_sort_numerically(tmp_path: Path) -> None:
    rows = [[u, i] for u in (10, 2, 1) for i in (300, 20, 1, 4)]
    inter = _write_csv(tmp_path / "i.tsv", ["uid", "iid"], rows, delimiter="\t")
    prepare_dataset(inter, tmp_path / "n", user_col="uid", item_col="iid")
    assert read_id_map(tmp_path / "n" / "user_map.csv") == {"1": 0, "2": 1, "10": 2}
    assert read_id_map(tmp_path / "n" / "item_map.csv") == {"1": 0, "4": 1, "20": 2, "300": 3}


def test_chronological_split_orders_by_time_per_user(tmp_path: Path) -> None:
    rows = _interactions(n_users=12, per_user=12, seed=3)
    iso = [[u, i, f"2023-01-01T00:00:{t % 60:02d}+00:00" if n % 2 else t] for n, (u, i, t) in enumerate(rows)]
    inter = _write_csv(tmp_path / "i.csv", ["u", "i", "when"], iso, delimiter=";")
    report = prepare_dataset(inter, tmp_path / "c", user_col="u", item_col="i", timestamp_col="when",
                             split="chronological")
    assert report.split == "chronological"
    with open(tmp_path / "c" / "c.inter", encoding="utf-8") as fh:
        table = list(csv.DictReader(fh, delimiter="\t"))
    assert {"userID", "itemID", "x_label", "timestamp"} <= set(table[0])
    for u in {r["userID"] for r in table}:
        mine = [r for r in table if r["userID"] == u]
        t = {k: [float(r["timestamp"]) for r in mine if r["x_label"] == str(k)] for k in range(3)}
        assert t[1] and t[2]
        assert max(t[0]) <= min(t[1]) and max(t[1]) <= min(t[2])


def test_default_split_is_mmrec_and_seeded(tmp_path: Path, byod: dict) -> None:
    a = prepare_dataset(byod["inter"], tmp_path / "a", seed=5)
    prepare_dataset(byod["inter"], tmp_path / "b", seed=5)
    prepare_dataset(byod["inter"], tmp_path / "c", seed=6)
    labels = {k: read_inter(tmp_path / k / f"{k}.inter")["x_label"] for k in "abc"}
    assert np.array_equal(labels["a"], labels["b"]) and not np.array_equal(labels["a"], labels["c"])
    cols = read_inter(tmp_path / "a" / "a.inter")
    n = np.bincount(cols["userID"])
    expected = [int(v.sum()) for v in split_counts(n)]
    assert a.split == "mmrec" and [a.train, a.valid, a.test] == expected


def test_k_core_drops_what_it_should_and_reports_it(tmp_path: Path) -> None:
    # Users a, b, c each rate x, y, z (3-core); d rates x and rare; rare has one rating; e rates y only.
    rows = [[u, i] for u in "abc" for i in "xyz"] + [["d", "x"], ["d", "rare"], ["e", "y"]]
    inter = _write_csv(tmp_path / "k.csv", ["user", "item"], rows)
    report = prepare_dataset(inter, tmp_path / "k", k_core=3)
    assert (report.users, report.items, report.interactions) == (3, 3, 9)
    assert report.k_core_dropped_interactions == 3
    assert (report.k_core_dropped_users, report.k_core_dropped_items) == (2, 1)
    assert report.k_core_rounds >= 2
    assert "3-core filter" in str(report) and "dropped 3 interactions, 2 users, 1 item" in str(report)
    assert set(read_id_map(tmp_path / "k" / "user_map.csv")) == {"a", "b", "c"}
    with pytest.raises(DataError, match=r"k\.csv: no interaction left after the 4-core filter"):
        prepare_dataset(inter, tmp_path / "k4", k_core=4)


def test_duplicates_and_empty_ids_are_dropped_and_reported(tmp_path: Path) -> None:
    rows = [["a", "x", 5], ["a", "x", 1], ["a", "y", 2], ["", "y", 3], ["b", "", 4], ["b", "y", 2]]
    inter = _write_csv(tmp_path / "d.csv", ["user", "item", "ts"], rows)
    report = prepare_dataset(inter, tmp_path / "d", timestamp_col="ts")
    assert (report.rows_read, report.rows_missing_id, report.duplicates_dropped) == (6, 2, 1)
    assert report.interactions == 3
    assert "dropped 2 rows with an empty user or item ID and 1 duplicate (user, item) pair" in str(report)
    table = (tmp_path / "d" / "d.inter").read_text().splitlines()
    assert "0\t0\t0\t1" in table  # (a, x) keeps its earliest timestamp


def test_overwrite(tmp_path: Path, byod: dict) -> None:
    out = tmp_path / "o"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(DataError, match=r"o: output folder is not empty \(notes\.txt\).*overwrite"):
        prepare_dataset(byod["inter"], out)
    prepare_dataset(byod["inter"], out, features=byod["feats"], overwrite=True)
    assert (out / "image_feat.npy").is_file() and (out / "notes.txt").read_text() == "mine"
    prepare_dataset(byod["inter"], out, overwrite=True)  # no features now: stale ones go
    assert not (out / "image_feat.npy").exists()
    assert load_mmrec(out)["item"].num_nodes == len(byod["items"])
    empty = tmp_path / "empty"
    empty.mkdir()
    prepare_dataset(byod["inter"], empty)  # an empty folder is fine without overwrite
    assert (empty / "empty.inter").is_file()


def test_errors_name_the_file_and_column(tmp_path: Path, byod: dict) -> None:
    inter = byod["inter"]
    with pytest.raises(DataError, match=r"nope\.csv: interaction file not found"):
        prepare_dataset(tmp_path / "nope.csv", tmp_path / "x")
    with pytest.raises(DataError, match=r"ratings\.csv: missing column 'customer' \(available columns: \['user', 'item', 'time'\]\)"):
        prepare_dataset(inter, tmp_path / "x", user_col="customer")
    with pytest.raises(DataError, match=r"needs a timestamp column"):
        prepare_dataset(inter, tmp_path / "x", split="chronological")
    with pytest.raises(DataError, match=r"split must be one of"):
        prepare_dataset(inter, tmp_path / "x", split="random")
    with pytest.raises(DataError, match=r"missing\.npz: feature file of modality 'image' not found"):
        prepare_dataset(inter, tmp_path / "x", features={"image": tmp_path / "missing.npz"})
    with pytest.raises(DataError, match=r"modality name 'im-age'"):
        prepare_dataset(inter, tmp_path / "x", features={"im-age": byod["feats"]["image"]})
    bad_ts = _write_csv(tmp_path / "t.csv", ["user", "item", "ts"], [["a", "x", "1"], ["a", "y", "soon"]])
    with pytest.raises(DataError, match=r"t\.csv: column 'ts' holds 'soon' on line 3"):
        prepare_dataset(bad_ts, tmp_path / "x", timestamp_col="ts")
    short = _write_csv(tmp_path / "s.csv", ["user", "item"], [["a", "x"], ["b"]])
    with pytest.raises(DataError, match=r"s\.csv: line 3 has 1 fields, expected 2"):
        prepare_dataset(short, tmp_path / "x")
    assert not (tmp_path / "x").exists()


def test_feature_errors_name_the_file_and_item(tmp_path: Path, byod: dict) -> None:
    inter, items = byod["inter"], byod["items"]
    x = np.ones((len(items), 3))
    x[4, 1] = np.nan
    np.savez(tmp_path / "nan.npz", ids=np.array(items), features=x)
    with pytest.raises(DataError, match=rf"nan\.npz: non-finite feature value .* item '{items[4]}' \(row 4\)"):
        prepare_dataset(inter, tmp_path / "x", features={"image": tmp_path / "nan.npz"})
    txt = _write_csv(tmp_path / "f.csv", [], [[items[0], 1.0, 2.0], [items[1], "abc", 2.0]])
    with pytest.raises(DataError, match=rf"f\.csv: non-numeric feature 'abc' for item '{items[1]}' on line 2"):
        prepare_dataset(inter, tmp_path / "x", features={"text": txt})
    dup = _write_csv(tmp_path / "dup.csv", [], [[items[0], 1.0], [items[0], 2.0]])
    with pytest.raises(DataError, match=rf"dup\.csv: item '{items[0]}' has two feature rows \(line 1 and line 2\)"):
        read_item_features(dup)
    np.savez(tmp_path / "obj.npz", ids=np.array(items, dtype=object), features=np.ones((len(items), 2)))
    with pytest.raises(DataError, match=r"obj\.npz: .*object array.*dtype=str"):
        read_item_features(tmp_path / "obj.npz")
    np.savez(tmp_path / "noids.npz", features=np.ones((2, 2)))
    with pytest.raises(DataError, match=r"noids\.npz: missing array 'ids' \(arrays in file: \['features'\]\)"):
        read_item_features(tmp_path / "noids.npz")
    np.savez(tmp_path / "other.npz", ids=np.arange(5), features=np.ones((5, 2)))
    with pytest.raises(DataError, match=r"other\.npz: none of its 5 item IDs .* do the IDs match"):
        prepare_dataset(inter, tmp_path / "x", features={"image": tmp_path / "other.npz"})
    np.save(tmp_path / "plain.npy", np.ones((3, 2)))
    with pytest.raises(DataError, match=r"plain\.npy: unsupported feature file type '\.npy'"):
        read_item_features(tmp_path / "plain.npy")
    assert not (tmp_path / "x").exists()


def test_csv_features_without_header(tmp_path: Path) -> None:
    path = _write_csv(tmp_path / "f.csv", [], [["7", 1, 2], ["3", 3, 4]])
    ids, x = read_item_features(path)
    assert ids == ["7", "3"] and x.dtype == np.float32 and x.tolist() == [[1, 2], [3, 4]]
    path = _write_csv(tmp_path / "g.csv", ["item", "0", "1"], [["7", 1, 2]])
    assert read_item_features(path)[0] == ["7"]
    path = _write_csv(tmp_path / "h.csv", ["asin", "a", "b"], [["7", 1, 2]])
    assert read_item_features(path, item_col="ASIN")[0] == ["7"]  # the item column's name, any case


def test_a_bad_first_row_is_an_error_not_a_guessed_header(tmp_path: Path) -> None:
    """A header-less file whose first row holds a bad value: error naming file, line and column."""
    path = _write_csv(tmp_path / "f.csv", [], [["7", 1, "n/a"], ["3", 3, 4], ["5", 5, 6]])
    with pytest.raises(DataError, match=r"f\.csv: non-numeric feature 'n/a' for item '7' on line 1, feature column 1"):
        read_item_features(path)
    inter = _write_csv(tmp_path / "i.csv", ["user", "item"], [["a", "7"], ["a", "3"], ["b", "5"], ["b", "7"]])
    with pytest.raises(DataError, match=r"f\.csv: non-numeric feature 'n/a' .* line 1"):
        prepare_dataset(inter, tmp_path / "out", features={"image": path})
    assert not (tmp_path / "out").exists()
    # A header whose first field is not an ID name is data too, unless declared.
    named = _write_csv(tmp_path / "n.csv", ["sku", "f0", "f1"], [["7", 1, 2], ["3", 3, 4]])
    with pytest.raises(DataError, match=r"n\.csv: non-numeric feature 'f0' for item 'sku' on line 1.*header=True"):
        read_item_features(named)
    ids, x = read_item_features(named, header=True)
    assert ids == ["7", "3"] and x.tolist() == [[1, 2], [3, 4]]
    report = prepare_dataset(inter, tmp_path / "out", features={"image": named}, feature_header=True)
    assert report.modalities["image"].rows_used == 2 and report.modalities["image"].filled == 1
    # header=False reads a first row named like a header as data, and says so when it is not numbers.
    with pytest.raises(DataError, match=r"g\.csv: non-numeric feature '0x' for item 'item' on line 1, feature column 0$"):
        read_item_features(_write_csv(tmp_path / "g.csv", ["item", "0x"], [["7", 1]]), header=False)


def test_a_text_file_named_npz_is_not_a_numpy_file(tmp_path: Path) -> None:
    (tmp_path / "t.npz").write_text("item,f0\n7,1.0\n")
    with pytest.raises(DataError, match=r"t\.npz: not an \.npz archive \(not a NumPy file at all") as err:
        read_item_features(tmp_path / "t.npz")
    assert "pickle" not in str(err.value)
    np.save(tmp_path / "a.npy", np.ones((2, 2)))
    (tmp_path / "a.npy").rename(tmp_path / "a.npz")
    with pytest.raises(DataError, match=r"a\.npz: not an \.npz archive \(it holds a single \.npy array\)"):
        read_item_features(tmp_path / "a.npz")


def test_parquet_input(tmp_path: Path) -> None:
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    rows = _interactions(n_users=6, per_user=4, n_items=8)
    table = pa.table({"u": [int(r[0][-2:]) for r in rows], "i": [r[1] for r in rows], "t": [r[2] for r in rows]})
    pq.write_table(table, tmp_path / "i.parquet")
    report = prepare_dataset(tmp_path / "i.parquet", tmp_path / "p", user_col="u", item_col="i",
                             timestamp_col="t", split="chronological")
    assert report.users == 6 and report.interactions == len(rows)
    assert set(read_id_map(tmp_path / "p" / "user_map.csv")) == {str(u) for u in range(6)}
    with pytest.raises(DataError, match=r"i\.parquet: missing column 'user' \(available columns: \['u', 'i', 't'\]\)"):
        prepare_dataset(tmp_path / "i.parquet", tmp_path / "q")


def test_encode_text_says_which_extra_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "sentence_transformers", None)
    with pytest.raises(ImportError, match=r"dhmrec_pyg\[text\].*sentence-transformers"):
        encode_text(["a"], "all-MiniLM-L6-v2")


def test_text_file_is_encoded_into_a_modality(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, byod: dict) -> None:
    calls: list[tuple[str, list[str]]] = []

    class FakeModel:
        def __init__(self, name: str, device: str | None = None) -> None:
            self.name = name

        def encode(self, texts: list[str], **kwargs: object) -> np.ndarray:
            calls.append((self.name, list(texts)))
            return np.array([[len(t), t.count("a"), 1.0] for t in texts], dtype=np.float32)

    monkeypatch.setitem(sys.modules, "sentence_transformers", types.SimpleNamespace(SentenceTransformer=FakeModel))
    items = byod["items"]
    rows = [[i, f"title of {i} " + "a" * k] for k, i in enumerate(items[:-1])] + [["unused-item", "zzz"]]
    text = _write_csv(tmp_path / "titles.csv", ["item", "title"], rows)
    report = prepare_dataset(byod["inter"], tmp_path / "t", text_file=text, text_col="title",
                             text_model="my/model", keep_cold_items=False)
    assert calls and calls[0][0] == "my/model" and len(calls[0][1]) == len(items) - 1  # only kept items
    x = load_mmrec(tmp_path / "t")["item"].x_text.numpy()
    item_map = read_id_map(tmp_path / "t" / "item_map.csv")
    assert x[item_map[items[2]], 1] == 2
    assert report.modalities["text"].filled == 1 and report.modalities["text"].rows_ignored == 1
    with pytest.raises(DataError, match=r"needs a model"):
        prepare_dataset(byod["inter"], tmp_path / "t2", text_file=text)


def test_end_to_end_training_on_a_prepared_folder(tmp_path: Path, byod: dict) -> None:
    from dhmrec_pyg.cli import main
    from dhmrec_pyg.models.base import EDGE
    from dhmrec_pyg.schema import split_edge_index
    from dhmrec_pyg.training.run import load_run
    from tests.recount import recall_precision_by_hand

    folder = tmp_path / "shop"
    prepare_dataset(byod["inter"], folder, features=byod["feats"])
    run = tmp_path / "run"
    rc = main(["train", "--model", "lightgcn", "--dataset", str(folder), "--epochs", "2", "--out", str(run), "--quiet"])
    assert rc == 0
    metrics = json.loads((run / "metrics.json").read_text())
    loaded = load_run(run)  # the saved model on the prepared folder gives the figures the run wrote
    recall, precision = recall_precision_by_hand(
        loaded.model, loaded.data[EDGE].edge_index, split_edge_index(loaded.data, "test"), 20)
    assert metrics["test"]["recall@20"] == pytest.approx(recall, abs=1e-6)
    assert metrics["test"]["precision@20"] == pytest.approx(precision, abs=1e-6)
