"""Synthetic multimodal interaction data with planted structure, in the shapes of real benchmarks.

Generative model (all draws from one ``numpy.random.Generator`` seeded by ``seed``):

* users and items get latent factors ``p_u, q_i ~ N(0, I_k)`` (``k = latent_dim``);
* item popularity follows a power law: the item of (random) rank ``r`` has log-popularity
  ``-popularity_exponent * log(r)``;
* user activity follows a power law: degrees are ``min_degree`` plus a share, proportional to
  Lomax(``activity_shape``) weights, of the remaining interactions, capped at ``max_degree_fraction``
  of the catalogue and at ``max_degree``; they sum exactly to ``n_interactions``;
* each user picks ``d_u`` distinct items without replacement with propensity
  ``exp(affinity * p_u.q_i / sqrt(k) + log-popularity_i)`` (Gumbel-top-k: exact over all items for
  catalogues up to 4,096 items, in bounded chunks of users; above that, over a per-user candidate set
  of max(256, 16 d_u) draws from a popularity/uniform mixture with the proposal divided out, so
  that no users x items matrix is ever formed);
* each modality ``m`` of width ``d_m`` is a noisy random linear view of the item factors:
  ``X_m = Q A_m + private_scale_m * R_m B_m + noise_m * E`` with ``A_m``, ``B_m`` random projections,
  ``R_m`` private per-item factors and ``E`` white noise, so features carry the taste signal;
* the interactions are split with :func:`~dhmrec_pyg.data.split.mmrec_split`.

Because popularity is a power law while taste is spread over all items, a good share of the test
interactions fall on items with few training interactions, where a model that reads the features
has an edge over an ID-only one.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from torch_geometric.data import HeteroData

from ..files import atomic_write
from .io import build_heterodata, write_mmrec
from .split import mmrec_split

__all__ = [
    "PROFILES",
    "SyntheticProfile",
    "dataset_name",
    "get_profile",
    "make_synthetic",
    "materialise_synthetic",
    "synthetic_profile_of",
]

_PREFIX = "synthetic-"
_PARAMS_FILE = "synthetic.json"
_FORMAT = 1
_CHUNK_ELEMS = 1 << 19  # bound on the elements of any per-chunk users x candidates array
_AFFINITY_ELEMS = 1 << 22  # bound on the elements of a per-chunk users x items affinity block
_EXACT_ITEMS = 4096  # catalogues up to this size are sampled exactly (all items scored)
_MIN_CANDIDATES = 256  # per-user candidate set size (at least 16x the degree) for large catalogues


@dataclass(frozen=True)
class SyntheticProfile:
    """Parameters of a synthetic dataset (see the module docstring for the generative model)."""

    n_users: int
    n_items: int
    n_interactions: int
    modalities: dict[str, int] = field(default_factory=lambda: {"image": 64, "text": 32})
    latent_dim: int = 16
    affinity: float = 4.0
    popularity_exponent: float = 0.8
    min_degree: int = 5
    activity_shape: float = 1.5
    max_degree_fraction: float = 0.25
    max_degree: int = 300
    noise: dict[str, float] = field(default_factory=lambda: {"image": 1.0, "text": 0.6})
    private_scale: dict[str, float] = field(default_factory=lambda: {"image": 0.8, "text": 0.5})


_BIG_MODALITIES = {"image": 4096, "text": 384}

#: The named profiles. ``demo`` is small enough for a LightGCN epoch plus evaluation in well under a
#: second on two CPU cores; ``tiny`` is for unit tests; ``baby``, ``sports`` and ``clothing`` have
#: the shapes of the Amazon benchmarks (users, items, interactions, 4096-d image and 384-d text);
#: ``million`` (1M users, 1M items, 10M interactions, 512-d image, 384-d text) is for scale benchmarks.
PROFILES: dict[str, SyntheticProfile] = {
    "tiny": SyntheticProfile(200, 150, 3_000, modalities={"image": 16, "text": 8}),
    "demo": SyntheticProfile(1_500, 1_000, 25_000),
    "baby": SyntheticProfile(19_445, 7_050, 160_792, modalities=dict(_BIG_MODALITIES)),
    "sports": SyntheticProfile(35_598, 18_357, 296_337, modalities=dict(_BIG_MODALITIES)),
    "clothing": SyntheticProfile(39_387, 23_033, 278_677, modalities=dict(_BIG_MODALITIES)),
    # The scale benchmark's catalogue (benchmarks/scale.py): a million items with 512-d image and
    # 384-d text features. A million users at 10 interactions each on average keeps the Amazon
    # benchmarks' sparsity per user (about 8 per user in Baby and Sports) rather than piling
    # the 10M interactions on fewer, heavier users.
    "million": SyntheticProfile(1_000_000, 1_000_000, 10_000_000, modalities={"image": 512, "text": 384}),
}


def synthetic_profile_of(name: str) -> str | None:
    """Return the profile a *dataset name* refers to: ``'demo'`` or ``'synthetic-<profile>'``.

    Plain benchmark names such as ``'baby'`` return ``None`` (they denote real data).
    """
    low = name.lower()
    if low == "demo":
        return "demo"
    if low.startswith(_PREFIX) and low[len(_PREFIX) :] in PROFILES:
        return low[len(_PREFIX) :]
    return None


def get_profile(profile: str, **overrides: object) -> tuple[str, SyntheticProfile]:
    """Resolve a profile name (``'baby'`` or ``'synthetic-baby'``) and apply overrides.

    Args:
        profile: a key of :data:`PROFILES`, optionally prefixed with ``synthetic-``.
        **overrides: fields of :class:`SyntheticProfile` to replace.

    Returns:
        ``(canonical profile name, parameters)``.

    Raises:
        ValueError: for an unknown profile or override, or inconsistent parameters.
    """
    key = profile.lower()
    if key.startswith(_PREFIX):
        key = key[len(_PREFIX) :]
    if key not in PROFILES:
        raise ValueError(f"unknown synthetic profile {profile!r}; known: {', '.join(sorted(PROFILES))}")
    names = {f.name for f in dataclasses.fields(SyntheticProfile)}
    unknown = sorted(set(overrides) - names)
    if unknown:
        raise ValueError(f"unknown synthetic parameter(s) {unknown}; known: {sorted(names)}")
    p = dataclasses.replace(PROFILES[key], **overrides)  # type: ignore[arg-type]
    if p.n_users < 1 or p.n_items < 2 or p.latent_dim < 1 or p.min_degree < 1:
        raise ValueError(f"synthetic profile {key!r}: sizes must be positive, got {p}")
    cap = _degree_cap(p)
    if p.min_degree > p.n_items:
        raise ValueError(f"synthetic profile {key!r}: min_degree {p.min_degree} exceeds n_items {p.n_items}")
    if not p.n_users * p.min_degree <= p.n_interactions <= p.n_users * cap:
        raise ValueError(
            f"synthetic profile {key!r}: n_interactions {p.n_interactions} must lie between "
            f"n_users * min_degree = {p.n_users * p.min_degree} and n_users * max degree = {p.n_users * cap}"
        )
    for m, d in p.modalities.items():
        if int(d) < 1:
            raise ValueError(f"synthetic profile {key!r}: modality {m!r} needs a positive width, got {d}")
    return key, p


def dataset_name(profile: str) -> str:
    """The dataset (folder) name of a profile: ``'demo'``, else ``'synthetic-<profile>'``."""
    key, _ = get_profile(profile)
    return key if key == "demo" else _PREFIX + key


def _degree_cap(p: SyntheticProfile) -> int:
    """The largest user degree: ``max_degree_fraction`` of the items, at most ``max_degree``."""
    return max(p.min_degree, min(int(p.max_degree_fraction * p.n_items), p.max_degree))


def _degrees(rng: np.random.Generator, p: SyntheticProfile) -> np.ndarray:
    """Power-law user degrees, each in [min_degree, cap], summing exactly to n_interactions."""
    cap = _degree_cap(p)
    w = rng.pareto(p.activity_shape, p.n_users) + 1e-3
    deg = np.full(p.n_users, p.min_degree, dtype=np.int64)
    extra = p.n_interactions - deg.sum()
    free = np.ones(p.n_users, dtype=bool)
    while extra > 0 and free.any():
        share = extra * w * free / (w * free).sum()
        add = np.minimum(np.floor(share).astype(np.int64), cap - deg)
        if add.sum() == 0:
            # Distribute the remainder one by one to the free users with the largest shares.
            order = np.argsort(-(share - np.floor(share)) - free * 1.0, kind="stable")
            order = order[free[order]][: int(extra)]
            add = np.zeros_like(deg)
            add[order] = 1
        deg += add
        extra -= int(add.sum())
        free = deg < cap
    return deg


def _gumbel(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Standard Gumbel noise in float32."""
    g = rng.random(shape, dtype=np.float32)
    np.maximum(g, np.float32(1e-38), out=g)
    np.log(g, out=g)
    np.negative(g, out=g)
    np.log(g, out=g)
    np.negative(g, out=g)
    return g


def _sample_items(
    rng: np.random.Generator, p: SyntheticProfile, deg: np.ndarray, uf: np.ndarray, itf: np.ndarray, logpop: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Gumbel-top-k sampling of each user's distinct items, in chunks of users of similar degree."""
    n_items = p.n_items
    scale = np.float32(p.affinity / math.sqrt(p.latent_dim))
    pop = np.exp(logpop - logpop.max())
    q = 0.5 * pop / pop.sum() + 0.5 / n_items
    cdf = np.cumsum(q)
    cdf /= cdf[-1]
    log_q = np.log(q).astype(np.float32)
    logpop32 = logpop.astype(np.float32)

    order = np.argsort(deg, kind="stable")
    users_out: list[np.ndarray] = []
    items_out: list[np.ndarray] = []
    redo: list[int] = []
    start = 0
    while start < order.size:
        dmax = int(deg[order[start]])
        width = max(_MIN_CANDIDATES, 16 * dmax)
        full = n_items <= _EXACT_ITEMS or width * 2 >= n_items
        width = n_items if full else width
        rows = max(1, (_AFFINITY_ELEMS // n_items) if full else (_CHUNK_ELEMS // width))
        chunk = order[start : start + rows]
        # Degrees grow within `order`: shrink the chunk to users whose degree fits this width.
        if not full:
            chunk = chunk[deg[chunk] * 16 <= width]
        start += chunk.size
        d = deg[chunk]
        if full:
            cand = np.broadcast_to(np.arange(n_items), (chunk.size, n_items))
            score = uf[chunk] @ itf.T  # [chunk, n_items], at most _AFFINITY_ELEMS elements
            score *= scale
            score += logpop32
        else:
            # Sorted uniforms give sorted candidates (duplicates adjacent) and a faster search.
            uni = rng.random((chunk.size, width))
            uni.sort(axis=1)
            cand = np.minimum(np.searchsorted(cdf, uni, side="right"), n_items - 1)
            score = np.einsum("bk,bwk->bw", uf[chunk], itf[cand]) * scale + (logpop32 - log_q)[cand]
            dup = np.zeros(cand.shape, dtype=bool)
            dup[:, 1:] = cand[:, 1:] == cand[:, :-1]
            score[dup] = -np.inf
        score += _gumbel(rng, score.shape)
        kmax = int(d.max())
        top = np.argpartition(-score, kmax - 1, axis=1)[:, :kmax]
        top_score = np.take_along_axis(score, top, axis=1)
        within = np.argsort(-top_score, axis=1, kind="stable")
        top = np.take_along_axis(top, within, axis=1)
        top_score = np.take_along_axis(top_score, within, axis=1)
        take = np.arange(kmax)[None, :] < d[:, None]
        ok = np.isfinite(np.where(take, top_score, 0.0)).all(axis=1)
        if not ok.all():
            redo.extend(chunk[~ok].tolist())
            take &= ok[:, None]
        r, c = np.nonzero(take)
        users_out.append(chunk[r])
        items_out.append(np.take_along_axis(np.asarray(cand)[r], top[r, c][:, None], axis=1)[:, 0])
    # Rare users whose candidate set had too few distinct items: exact sampling over all items.
    for u in redo:
        s = uf[u] @ itf.T * scale + logpop32 + _gumbel(rng, (n_items,))
        items = np.argsort(-s, kind="stable")[: deg[u]]
        users_out.append(np.full(items.size, u, dtype=np.int64))
        items_out.append(items)
    user = np.concatenate(users_out).astype(np.int64)
    item = np.concatenate(items_out).astype(np.int64)
    o = np.lexsort((item, user))
    return user[o], item[o]


def _features(rng: np.random.Generator, p: SyntheticProfile, itf: np.ndarray) -> dict[str, np.ndarray]:
    """Per modality: a random linear view of the item factors, a private component and noise."""
    out: dict[str, np.ndarray] = {}
    k = p.latent_dim
    n = p.n_items
    for m in sorted(p.modalities):
        d = int(p.modalities[m])
        noise = float(p.noise.get(m, 1.0))
        private = float(p.private_scale.get(m, 0.5))
        pk = 8
        a = (rng.standard_normal((k, d), dtype=np.float32) / np.float32(math.sqrt(k))).astype(np.float32)
        b = (rng.standard_normal((pk, d), dtype=np.float32) * np.float32(private / math.sqrt(pk))).astype(np.float32)
        r = rng.standard_normal((n, pk), dtype=np.float32)
        x = np.empty((n, d), dtype=np.float32)
        step = max(1, (1 << 22) // d)
        for s in range(0, n, step):
            e = min(n, s + step)
            block = itf[s:e] @ a
            block += r[s:e] @ b
            block += rng.standard_normal((e - s, d), dtype=np.float32) * np.float32(noise)
            x[s:e] = block
        out[m] = x
    return out


def make_synthetic(profile: str = "demo", seed: int = 0, **overrides: object) -> HeteroData:
    """Generate a synthetic dataset in memory.

    Args:
        profile: a key of :data:`PROFILES` (``'tiny'``, ``'demo'``, ``'baby'``, ``'sports'``,
            ``'clothing'``), optionally prefixed with ``synthetic-``.
        seed: the random seed; the same seed (and overrides) always gives identical data.
        **overrides: fields of :class:`SyntheticProfile` to replace, e.g. ``n_users=500`` or
            ``modalities={'image': 32}`` (then also ``noise`` / ``private_scale`` default to 1.0 / 0.5
            for unlisted modalities).

    Returns:
        A :class:`HeteroData` laid out like :func:`~dhmrec_pyg.data.load_mmrec`'s, named after
        :func:`dataset_name`, with ``n_users`` users (those without interactions are impossible:
        every user has at least ``min_degree``), ``n_items`` items (every item has feature rows,
        even if nobody interacted with it) and exactly ``n_interactions`` interactions.
    """
    key, p = get_profile(profile, **overrides)
    rng = np.random.default_rng(seed)
    uf = rng.standard_normal((p.n_users, p.latent_dim), dtype=np.float32)
    itf = rng.standard_normal((p.n_items, p.latent_dim), dtype=np.float32)
    rank = rng.permutation(p.n_items) + 1
    logpop = -p.popularity_exponent * np.log(rank.astype(np.float64))
    deg = _degrees(rng, p)
    user, item = _sample_items(rng, p, deg, uf, itf, logpop)
    features = _features(rng, p, itf)
    label = mmrec_split(user, item, seed=seed)
    n_items = p.n_items if features else int(item.max()) + 1
    name = key if key == "demo" else _PREFIX + key
    return build_heterodata(user, item, label, p.n_users, n_items, features, name)


def _params_record(key: str, p: SyntheticProfile, seed: int) -> dict:
    return {"format": _FORMAT, "profile": key, "seed": int(seed), "params": dataclasses.asdict(p)}


def materialise_synthetic(profile: str, root: str | Path = "data", seed: int = 0, **overrides: object) -> Path:
    """Write a synthetic dataset in the MMRec layout to ``root/<dataset_name(profile)>/``.

    Nothing is generated when the folder already holds the data of the same profile, parameters
    and seed (recorded in ``synthetic.json``, written last). Otherwise the data is generated and every
    file replaced atomically.

    Args:
        profile: a key of :data:`PROFILES`, optionally prefixed with ``synthetic-``.
        root: the folder to create the dataset folder in.
        seed: the random seed.
        **overrides: fields of :class:`SyntheticProfile` to replace.

    Returns:
        The dataset folder.
    """
    key, p = get_profile(profile, **overrides)
    name = key if key == "demo" else _PREFIX + key
    folder = Path(root) / name
    record = _params_record(key, p, seed)
    params_path = folder / _PARAMS_FILE
    expected = [folder / f"{name}.inter"] + [folder / f"{m}_feat.npy" for m in p.modalities]
    if params_path.is_file() and all(f.is_file() for f in expected):
        try:
            if json.loads(params_path.read_text()) == json.loads(json.dumps(record)):
                return folder
        except (OSError, ValueError):
            pass
    data = make_synthetic(key, seed, **overrides)
    folder.mkdir(parents=True, exist_ok=True)
    if params_path.exists():
        params_path.unlink()
    write_mmrec(data, folder, name, overwrite=True)
    payload = (json.dumps(record, indent=1, sort_keys=True) + "\n").encode()
    atomic_write(params_path, lambda f: f.write(payload))
    return folder


