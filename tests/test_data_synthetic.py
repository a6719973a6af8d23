"""Tests of the synthetic generator."""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from dhmrec_pyg.data import EDGE_TYPE, PROFILES, make_synthetic, materialise_synthetic, modalities
from dhmrec_pyg.data.synthetic import dataset_name, get_profile, synthetic_profile_of


def _counts(data) -> tuple[int, int, int]:
    store = data[EDGE_TYPE]
    e = store.edge_index.size(1) + store.val_edge_index.size(1) + store.test_edge_index.size(1)
    return data["user"].num_nodes, data["item"].num_nodes, e


def _all_pairs(data) -> torch.Tensor:
    store = data[EDGE_TYPE]
    return torch.cat([store.edge_index, store.val_edge_index, store.test_edge_index], dim=1)


def test_demo_shape_and_structure() -> None:
    data = make_synthetic("demo", seed=0)
    p = PROFILES["demo"]
    assert _counts(data) == (p.n_users, p.n_items, p.n_interactions) == (1500, 1000, 25000)
    assert data.name == "demo"
    assert modalities(data) == ["image", "text"]
    assert data["item"].x_image.shape == (1000, 64) and data["item"].x_text.shape == (1000, 32)
    assert data["item"].x_image.dtype == torch.float32
    pairs = _all_pairs(data)
    # No duplicate pairs, every user has at least min_degree interactions.
    assert torch.unique(pairs[0] * 1000 + pairs[1]).numel() == pairs.size(1)
    deg = torch.bincount(pairs[0], minlength=1500)
    assert int(deg.min()) >= p.min_degree
    # Power-law-ish activity and popularity: heavy tails.
    assert int(deg.max()) > 5 * float(deg.float().mean())
    pop = torch.bincount(pairs[1], minlength=1000).sort(descending=True).values
    assert float(pop[:10].sum()) / pairs.size(1) > 0.05
    # Split proportions roughly 80/10/10 with MMRec's rule.
    store = data[EDGE_TYPE]
    assert 0.7 < store.edge_index.size(1) / 25000 < 0.85
    # Cold-ish items: a decent share of test interactions hits items with <= 10 training ones.
    train_deg = torch.bincount(store.edge_index[1], minlength=1000)
    assert float((train_deg[store.test_edge_index[1]] <= 10).float().mean()) > 0.1


def test_features_carry_taste_signal() -> None:
    """Items co-consumed by the same users have more similar features than random item pairs."""
    data = make_synthetic("demo", seed=1)
    store = data[EDGE_TYPE]
    x = torch.nn.functional.normalize(data["item"].x_text, dim=1)
    u, i = store.edge_index
    order = torch.argsort(u * 10_000 + i)
    u, i = u[order], i[order]
    same = u[1:] == u[:-1]
    co = (x[i[1:][same]] * x[i[:-1][same]]).sum(1).mean()
    g = torch.Generator().manual_seed(0)
    a, b = torch.randint(0, 1000, (2, 5000), generator=g)
    rand = (x[a] * x[b]).sum(1).mean()
    assert float(co) > float(rand) + 0.015  # ~10 standard errors


def test_determinism_and_seed() -> None:
    a = make_synthetic("tiny", seed=5)
    b = make_synthetic("tiny", seed=5)
    c = make_synthetic("tiny", seed=6)
    for attr in ("edge_index", "val_edge_index", "test_edge_index"):
        assert torch.equal(a[EDGE_TYPE][attr], b[EDGE_TYPE][attr])
    assert torch.equal(a["item"].x_image, b["item"].x_image)
    assert not torch.equal(a[EDGE_TYPE].edge_index, c[EDGE_TYPE].edge_index)


def test_overrides() -> None:
    data = make_synthetic("demo", n_users=300, n_items=200, n_interactions=3000, modalities={"audio": 5})
    assert _counts(data) == (300, 200, 3000)
    assert modalities(data) == ["audio"] and data["item"].x_audio.shape == (200, 5)
    with pytest.raises(ValueError, match="unknown synthetic parameter"):
        make_synthetic("demo", n_userz=3)
    with pytest.raises(ValueError, match="unknown synthetic profile 'nope'"):
        make_synthetic("nope")
    with pytest.raises(ValueError, match="n_interactions 10 must lie between"):
        make_synthetic("demo", n_interactions=10)


def test_no_modalities_profile() -> None:
    data = make_synthetic("tiny", modalities={})
    assert modalities(data) == []
    assert data["item"].num_nodes <= 150


def test_names() -> None:
    assert synthetic_profile_of("demo") == "demo"
    assert synthetic_profile_of("synthetic-baby") == "baby"
    assert synthetic_profile_of("baby") is None  # the real dataset
    assert synthetic_profile_of("synthetic-nope") is None
    assert dataset_name("baby") == dataset_name("synthetic-baby") == "synthetic-baby"
    assert dataset_name("demo") == "demo"
    assert get_profile("synthetic-sports")[0] == "sports"


def test_synthetic_baby_counts() -> None:
    t = time.perf_counter()
    data = make_synthetic("synthetic-baby", seed=0)
    elapsed = time.perf_counter() - t
    assert _counts(data) == (19445, 7050, 160792)
    assert data["item"].x_image.shape == (7050, 4096) and data["item"].x_text.shape == (7050, 384)
    assert data.name == "synthetic-baby"
    assert elapsed < 10


@pytest.mark.parametrize("profile, counts", [("sports", (35598, 18357, 296337)), ("clothing", (39387, 23033, 278677))])
def test_big_profile_degrees(profile: str, counts: tuple[int, int, int]) -> None:
    """The big profiles' shapes; the sampler itself is exercised on synthetic-baby above."""
    from dhmrec_pyg.data.synthetic import _degree_cap, _degrees

    key, p = get_profile(f"synthetic-{profile}")
    assert (p.n_users, p.n_items, p.n_interactions) == counts
    assert p.modalities == {"image": 4096, "text": 384}
    deg = _degrees(np.random.default_rng(0), p)
    assert deg.shape == (p.n_users,) and int(deg.sum()) == p.n_interactions
    assert int(deg.min()) >= p.min_degree and int(deg.max()) <= _degree_cap(p)


def test_million_profile_shape() -> None:
    """The scale benchmark's profile: its shape and degrees (generating it takes minutes)."""
    from dhmrec_pyg.data.synthetic import _degree_cap, _degrees

    key, p = get_profile("synthetic-million")
    assert key == "million" and (p.n_users, p.n_items, p.n_interactions) == (10**6, 10**6, 10**7)
    assert p.modalities == {"image": 512, "text": 384}
    deg = _degrees(np.random.default_rng(0), p)
    assert int(deg.sum()) == p.n_interactions and int(deg.min()) == p.min_degree
    assert int(deg.max()) == _degree_cap(p) == 300


def _digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


def test_materialise_byte_identical_and_cached(tmp_path: Path) -> None:
    a = materialise_synthetic("synthetic-tiny", tmp_path / "a", seed=2)
    b = materialise_synthetic("tiny", tmp_path / "b", seed=2)
    assert a.name == b.name == "synthetic-tiny"
    assert sorted(_digest(a)) == ["image_feat.npy", "synthetic-tiny.inter", "synthetic.json", "text_feat.npy"]
    assert _digest(a) == _digest(b)
    params = json.loads((a / "synthetic.json").read_text())
    assert params["seed"] == 2 and params["profile"] == "tiny"
    mtime = (a / "synthetic-tiny.inter").stat().st_mtime_ns
    assert materialise_synthetic("tiny", tmp_path / "a", seed=2) == a
    assert (a / "synthetic-tiny.inter").stat().st_mtime_ns == mtime  # not regenerated
    materialise_synthetic("tiny", tmp_path / "a", seed=3)
    assert json.loads((a / "synthetic.json").read_text())["seed"] == 3
    assert _digest(a) != _digest(b)
    materialise_synthetic("tiny", tmp_path / "a", seed=3, modalities={"image": 4})
    assert not (a / "text_feat.npy").exists()


def test_materialised_matches_in_memory(tmp_path: Path) -> None:
    from dhmrec_pyg.data import load_mmrec

    folder = materialise_synthetic("tiny", tmp_path, seed=0)
    disk = load_mmrec(folder)
    mem = make_synthetic("tiny", seed=0)
    for attr in ("edge_index", "val_edge_index", "test_edge_index"):
        assert torch.equal(disk[EDGE_TYPE][attr], mem[EDGE_TYPE][attr])
    np.testing.assert_array_equal(disk["item"].x_text.numpy(), mem["item"].x_text.numpy())
