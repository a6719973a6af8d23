"""`dhmrec recommend` and `dhmrec plot` on saved demo runs."""
import csv
import json

import numpy as np
import pytest
import torch

from dhmrec_pyg.cli import main
from dhmrec_pyg.models.base import EDGE
from dhmrec_pyg.recommend import recommend
from dhmrec_pyg.training.run import load_run


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("rp")
    data_root = str(root / "data")
    out = {}
    for model in ("lightgcn", "dhmrec"):
        folder = root / model
        rc = main(["train", "--model", model, "--data-root", data_root, "--out", str(folder),
                   "--epochs", "2", "--quiet", "--set", "knn_cache_dir=none"] if model == "dhmrec" else
                  ["train", "--model", model, "--data-root", data_root, "--out", str(folder),
                   "--epochs", "2", "--quiet"])
        assert rc == 0
        out[model] = folder
    return out


def test_recommend_csv_excludes_training_items(runs, tmp_path):
    out = tmp_path / "recs.csv"
    assert main(["recommend", str(runs["lightgcn"]), "--k", "7", "--output", str(out)]) == 0
    rows = list(csv.DictReader(out.open()))
    _, _, model, data = load_run(runs["lightgcn"])
    n_users = int(data["user"].num_nodes)
    assert len(rows) == 7 * n_users
    train = data[EDGE].edge_index
    seen = set(zip(train[0].tolist(), train[1].tolist()))
    assert not any((int(r["user"]), int(r["item"])) in seen for r in rows)
    first = [r for r in rows if r["user"] == "0"]
    assert [int(r["rank"]) for r in first] == list(range(1, 8))
    scores = [float(r["score"]) for r in first]
    assert scores == sorted(scores, reverse=True)


def test_recommend_user_file_and_faiss_agree(runs, tmp_path):
    users = tmp_path / "users.txt"
    users.write_text("user\n3\n5\n")
    out = tmp_path / "r.parquet"
    pytest.importorskip("pyarrow")
    assert main(["recommend", str(runs["lightgcn"]), "--users", str(users), "--output", str(out)]) == 0
    import pyarrow.parquet as pq

    table = pq.read_table(out).to_pydict()
    assert sorted(set(table["user"])) == [3, 5] and len(table["item"]) == 40
    _, _, model, data = load_run(runs["lightgcn"])
    ei = data[EDGE].edge_index
    _, dense, _ = recommend(model, ei, k=10, users=[3, 5], use_faiss=False)
    _, viafaiss, _ = recommend(model, ei, k=10, users=[3, 5], use_faiss=True)
    np.testing.assert_array_equal(dense, viafaiss)


def test_cold_items_are_scored_by_the_multimodal_branch(runs):
    _, _, model, data = load_run(runs["dhmrec"])
    ei = data[EDGE].edge_index
    n_items = int(data["item"].num_nodes)
    cold = sorted(set(range(n_items)) - set(ei[1].tolist()))
    if not cold:
        pytest.skip("the demo profile has no item without training interactions")
    with torch.no_grad():
        user, item = model.embeddings()
    cold_scores = (user[:50] @ item[cold].t())
    assert torch.isfinite(cold_scores).all()
    # different features -> different scores: the items are ranked by content, not tied
    assert cold_scores.std() > 0


def test_recommend_errors(runs, tmp_path, capsys):
    assert main(["recommend", str(tmp_path / "missing")]) == 2
    assert "no such run folder" in capsys.readouterr().err
    bad = tmp_path / "users.txt"
    bad.write_text("1\nabc\n")
    assert main(["recommend", str(runs["lightgcn"]), "--users", str(bad)]) == 2
    assert f"{bad}, line 2, column 1: 'abc' is not an integer user id" in capsys.readouterr().err
    big = tmp_path / "big.txt"
    big.write_text("999999\n")
    assert main(["recommend", str(runs["lightgcn"]), "--users", str(big)]) == 2
    assert "user id 999999 is out of range" in capsys.readouterr().err


def test_plot_writes_curves_and_tsne(runs, tmp_path):
    pytest.importorskip("matplotlib")
    pytest.importorskip("sklearn")
    out = tmp_path / "plots"
    assert main(["plot", str(runs["dhmrec"]), "--out", str(out), "--tsne-sample", "200"]) == 0
    names = sorted(p.name for p in out.iterdir())
    assert names == ["curves.png", "diagnostics.png", "tsne_disentangled.png", "tsne_fused.png"]
    history = (runs["dhmrec"] / "history.csv").read_text().splitlines()[0].split(",")
    for col in ("diag_attn_entropy_common", "diag_alpha_pos", "diag_mm_id_norm_ratio", "diag_user_mm_cosine",
                "diag_item_term_share"):
        assert col in history
    for p in out.iterdir():
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # diagnostics.png: five panels in a grid of three columns, laptop-wide, not one long strip
    width, height = _png_size(out / "diagnostics.png")
    assert 1200 <= width <= 1700 and height > width / 2, (width, height)


def _png_size(path):
    head = path.read_bytes()[16:24]  # the IHDR chunk: width, height (big-endian)
    return int.from_bytes(head[:4], "big"), int.from_bytes(head[4:], "big")


@pytest.mark.parametrize("name", ["bpr", "dhmrec", "freedom", "lgmrec", "lightgcn"])
def test_loss_weights_add_up_to_each_models_loss(name):
    """LOSS_WEIGHTS reads every model's loss(): the weighted terms sum to the total, at weights
    other than the defaults (so that a term drawn with the wrong weight fails)."""
    from dhmrec_pyg.data import make_synthetic
    from dhmrec_pyg.models import MODELS
    from dhmrec_pyg.plot import LOSS_WEIGHTS, loss_weights

    data = make_synthetic("tiny", seed=0, n_users=60, n_items=40, n_interactions=600)
    options = sorted(set(LOSS_WEIGHTS[name].values()))
    values = {option: 0.3 + 0.25 * i for i, option in enumerate(options)}
    cls = MODELS[name]
    cfg = cls.config_class(embedding_dim=8, **values)
    torch.manual_seed(0)
    model = cls(data, cfg)
    users, pos, neg = torch.tensor([0, 1, 2, 3]), torch.tensor([0, 1, 2, 3]), torch.tensor([5, 6, 7, 8])
    terms = {k: float(v) for k, v in model.loss(users, pos, neg).items()}
    weights = loss_weights(name, cfg, list(terms))
    assert weights["loss"] == (1.0, "")
    assert all(w == (values[o] if o else 1.0) for w, o in weights.values())
    assert sum(weights[k][0] * v for k, v in terms.items() if k != "loss") == pytest.approx(terms["loss"], rel=1e-5)
    assert any(o for _, o in weights.values()) and len(terms) > 2


def test_plot_reads_the_runs_weights_and_healthy_ranges(runs):
    import math

    from dhmrec_pyg import plot

    model, cfg = plot._model_config(runs["dhmrec"])
    weights = plot.loss_weights(model, cfg, ["loss", "bpr", "reg", "kl"])
    assert weights["reg"] == (cfg.reg_weight, "reg_weight") and weights["kl"] == (cfg.gamma_kl, "gamma_kl")
    assert plot.healthy_range("diag_attn_entropy_common", 64) == (1.0, pytest.approx(math.log(64)))
    assert plot.healthy_range("diag_attn_entropy_image") == (1.0, None)
    assert plot.healthy_range("diag_user_mm_cosine") == (None, 0.9)
    assert plot.healthy_range("diag_alpha_pos") is None


def test_plot_grid_figures(tmp_path):
    pytest.importorskip("matplotlib")
    from dhmrec_pyg.plot import plot_grid

    rows = [{"run": f"grid_{i}", "alpha_mm": a, "gamma_dis": g, "gamma_kl": k, "valid_recall@20": 0.1 + i / 100}
            for i, (a, g, k) in enumerate([(0.1, 0.1, 1), (0.5, 0.1, 0.1), (1.0, 1, 1), (1.5, 1, 0.1)])]
    (tmp_path / "grid.json").write_text(json.dumps({"rows": rows, "best_run": "grid_3"}))
    paths = plot_grid(tmp_path, tmp_path)
    assert sorted(p.name for p in paths) == ["grid_alpha_mm.png", "grid_gamma_heatmap.png"]


def test_prepare_command_then_train(tmp_path, capsys):
    src = tmp_path / "ratings.csv"
    rows = ["user,item"]
    rng = np.random.default_rng(0)
    for u in range(30):
        for i in rng.choice(40, size=8, replace=False):
            rows.append(f"u{u},item-{i}")
    src.write_text("\n".join(rows) + "\n")
    ids = np.array([f"item-{i}" for i in range(39)])  # item-39 has no feature row
    np.savez(tmp_path / "img.npz", ids=ids, features=rng.normal(size=(39, 6)).astype(np.float32))
    folder = tmp_path / "shop"
    assert main(["prepare", str(src), str(folder), "--features", f"image={tmp_path / 'img.npz'}"]) == 0
    assert "Prepared" in capsys.readouterr().out
    assert main(["train", "--model", "dhmrec", "--dataset", str(folder), "--epochs", "1",
                 "--out", str(tmp_path / "run"), "--quiet", "--set", "knn_cache_dir=none"]) == 0
    assert (tmp_path / "run" / "metrics.json").is_file()
    assert main(["prepare", str(src), str(folder)]) == 2
    assert "error" in capsys.readouterr().err
