"""`dhmrec recommend` never hands back a training item, reads users files strictly, and speaks the
original ids of a data set made by `dhmrec prepare`."""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch

from dhmrec_pyg.cli import main
from dhmrec_pyg.data.prepare import read_id_map
from dhmrec_pyg.models.base import EDGE
from dhmrec_pyg.ranking import NO_ITEM, ShortListWarning, top_k
from dhmrec_pyg.recommend import read_user_file
from dhmrec_pyg.training.run import load_run

N_USERS, N_ITEMS = 10, 12


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A tiny CSV with text ids, prepared with `dhmrec prepare` and trained for one epoch."""
    root = tmp_path_factory.mktemp("ids")
    rng = np.random.default_rng(0)
    rows = [(f"cust_{u:04d}", f"sku-{i:02d}") for u in range(N_USERS)
            for i in rng.choice(N_ITEMS, 6, replace=False)]
    rows += [("cust_0000", f"sku-{i:02d}") for i in range(N_ITEMS)]  # every item occurs
    with open(root / "orders.csv", "w", newline="") as fh:
        csv.writer(fh).writerows([("customer", "product"), *sorted(set(rows))])
    data = root / "shop"
    assert main(["prepare", str(root / "orders.csv"), str(data), "--user-col", "customer",
                 "--item-col", "product"]) == 0
    run = root / "run"
    assert main(["train", "--model", "lightgcn", "--dataset", str(data), "--epochs", "1", "--out", str(run),
                 "--quiet"]) == 0
    return {"root": root, "data": data, "run": run, "users": read_id_map(data / "user_map.csv"),
            "items": read_id_map(data / "item_map.csv")}


def _rows(path: Path) -> list[dict]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def _seen(run: Path) -> set:
    train = load_run(run).data[EDGE].edge_index
    return set(zip(train[0].tolist(), train[1].tolist()))


def test_k_equal_to_the_items_recommends_no_training_item_and_warns(shop, tmp_path, capsys):
    out = tmp_path / "all.csv"
    assert main(["recommend", str(shop["run"]), "--k", str(N_ITEMS), "--output", str(out)]) == 0
    err = capsys.readouterr().err
    assert "warning" in err and f"k={N_ITEMS} is more than the items left to recommend" in err
    rows = _rows(out)
    seen = _seen(shop["run"])
    assert rows and not any((int(r["user"]), int(r["item"])) in seen for r in rows)
    assert all(np.isfinite(float(r["score"])) for r in rows)
    for user in range(N_USERS):  # every other item once, ranks 1..n without gaps
        mine = [r for r in rows if int(r["user"]) == user]
        n_seen = sum(1 for u, _ in seen if u == user)
        assert len(mine) == N_ITEMS - n_seen
        assert [int(r["rank"]) for r in mine] == list(range(1, len(mine) + 1))
        assert {int(r["item"]) for r in mine} == {i for i in range(N_ITEMS) if (user, i) not in seen}


def test_python_api_caps_k_and_pads_with_no_item(shop):
    model = load_run(shop["run"]).model
    seen = _seen(shop["run"])
    with pytest.warns(ShortListWarning, match=f"of {N_USERS} users"):
        top = model.recommend(k=N_ITEMS + 5)
    assert top.items.shape == top.scores.shape == (N_USERS, N_ITEMS)  # capped at the catalogue
    for user, items, scores in zip(top.users.tolist(), top.items.tolist(), top.scores.tolist()):
        n_cand = N_ITEMS - sum(1 for u, _ in seen if u == user)
        assert all(i != NO_ITEM and (user, i) not in seen for i in items[:n_cand])
        assert items[n_cand:] == [NO_ITEM] * (N_ITEMS - n_cand)
        assert all(s == -np.inf for s in scores[n_cand:]) and all(np.isfinite(scores[:n_cand]))


def test_faiss_pads_short_lists_like_the_dense_path(shop):
    pytest.importorskip("faiss")
    model = load_run(shop["run"]).model
    user, item = model.embeddings()
    with pytest.warns(ShortListWarning):
        dense = top_k(user, item, model.train_edge_index, N_ITEMS, use_faiss=False)
    with pytest.warns(ShortListWarning):
        viafaiss = top_k(user, item, model.train_edge_index, N_ITEMS, use_faiss=True)
    np.testing.assert_array_equal(dense[1], viafaiss[1])


def test_no_warning_when_every_user_has_k_candidates():
    user, item = torch.randn(3, 4), torch.randn(5, 4)
    exclude = torch.tensor([[0, 0, 1], [1, 1, 2]])  # a repeated pair counts once
    with pytest.warns(ShortListWarning, match=r"to 2 of 3 users .*fewest: 4"):
        _, items, _ = top_k(user, item, exclude, k=5)
    assert items[0, -1] == items[1, -1] == NO_ITEM and items[2, -1] != NO_ITEM
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _, items, _ = top_k(user, item, exclude, k=4)
    assert (items != NO_ITEM).all() and 1 not in items[0] and 2 not in items[1]


def test_a_users_file_whose_first_line_is_no_id_is_an_error(shop, tmp_path, capsys):
    bad = tmp_path / "users.txt"
    bad.write_text("customers\n1\n2\n")
    assert main(["recommend", str(shop["run"]), "--internal-ids", "--users", str(bad)]) == 2
    err = capsys.readouterr().err
    assert str(bad) in err and "line 1" in err and "'customers' is not an integer user id" in err
    with pytest.raises(ValueError, match=r"line 3, column 'user': 'x' is not an integer"):
        read_user_file(_write(tmp_path / "h.txt", "user\n4\nx\n"))
    assert read_user_file(_write(tmp_path / "d.txt", "userID\n4\n\n2\n")).users.tolist() == [4, 2]
    assert read_user_file(_write(tmp_path / "n.txt", "3\n4\n"), header=True).users.tolist() == [4]
    (tmp_path / "bom.csv").write_bytes("user\r\n7\r\n".encode("utf-8-sig"))  # as spreadsheets save it
    assert read_user_file(tmp_path / "bom.csv").users.tolist() == [7]
    with pytest.raises(ValueError, match="no user ids"):
        read_user_file(_write(tmp_path / "e.txt", "user\n"))


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_original_ids_in_and_out(shop, tmp_path, capsys):
    users = _write(tmp_path / "users.csv", "customer_id\ncust_0003\ncust_0007\n")
    out = tmp_path / "recs.csv"
    # 'customer_id' is no column name: read as an id, unknown, reported; the others are served
    assert main(["recommend", str(shop["run"]), "--users", str(users), "--k", "3", "--output", str(out)]) == 0
    err = capsys.readouterr().err
    assert "1 of 3 ids are not users of the data set" in err and "'customer_id'" in err
    rows = _rows(out)
    assert list(rows[0]) == ["user", "rank", "item", "score", "original_user", "original_item"]
    assert [r["original_user"] for r in rows] == ["cust_0003"] * 3 + ["cust_0007"] * 3
    item_ids = {v: k for k, v in shop["items"].items()}
    for r in rows:
        assert int(r["user"]) == shop["users"][r["original_user"]]
        assert item_ids[int(r["item"])] == r["original_item"]


def test_internal_ids_and_unknown_ids(shop, tmp_path, capsys):
    internal = _write(tmp_path / "internal.txt", f"user\n{shop['users']['cust_0005']}\n")
    out = tmp_path / "r.csv"
    assert main(["recommend", str(shop["run"]), "--users", str(internal), "--internal-ids", "--k", "2",
                 "--output", str(out)]) == 0
    assert {r["original_user"] for r in _rows(out)} == {"cust_0005"}
    unknown = _write(tmp_path / "unknown.txt", "user_id\nnobody\n")
    assert main(["recommend", str(shop["run"]), "--users", str(unknown), "--output", str(out)]) == 2
    err = capsys.readouterr().err
    assert "1 of 1 ids are not users of the data set (first: 'nobody')" in err and "--internal-ids" in err


def test_a_column_name_that_is_also_a_user_id_must_be_declared(tmp_path):
    path = _write(tmp_path / "u.txt", "user\nbob\n")
    with pytest.raises(ValueError, match="both a column name and a user id"):
        read_user_file(path, ids={"user": 0, "bob": 1})
    assert read_user_file(path, header=False, ids={"user": 0, "bob": 1}).users.tolist() == [0, 1]


def test_parquet_carries_the_original_ids(shop, tmp_path):
    pq = pytest.importorskip("pyarrow.parquet")
    out = tmp_path / "r.parquet"
    assert main(["recommend", str(shop["run"]), "--k", "2", "--output", str(out)]) == 0
    table = pq.read_table(out).to_pydict()
    assert set(table["original_user"]) == set(shop["users"])
    assert all(shop["users"][o] == u for o, u in zip(table["original_user"], table["user"]))
