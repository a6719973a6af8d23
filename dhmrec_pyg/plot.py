"""Figures of a run: learning curves, t-SNE maps of DHMRec's embeddings, grid sensitivity.

Needs the ``plot`` extra (``pip install 'dhmrec_pyg[plot]'``: matplotlib and scikit-learn).
"""
from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from dhmrec_pyg.errors import ConfigError


def _pyplot():
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ConfigError(
            "plotting needs the 'plot' extra: pip install 'dhmrec_pyg[plot]' (matplotlib, scikit-learn)"
        ) from None
    return plt


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return path


#: Text sizes of every figure (points): at least 11, readable on a laptop screen.
_FONTS: Dict[str, float] = {"font.size": 11, "axes.titlesize": 12, "axes.labelsize": 11, "legend.fontsize": 11,
                            "xtick.labelsize": 11, "ytick.labelsize": 11, "figure.titlesize": 13}

#: How each model's ``loss()`` weighs its terms (a term not listed enters with weight 1):
#: model -> term -> the model option that multiplies it; a key ending in ``_`` stands for every
#: term with that prefix (FREEDOM's ``bpr_<modality>``). DHMRec: equation (25).
LOSS_WEIGHTS: Dict[str, Dict[str, str]] = {
    "dhmrec": {"reg": "reg_weight", "jsd": "gamma_dis", "orth": "gamma_dis", "kl": "gamma_kl"},
    "freedom": {"bpr_": "reg_weight"},
    "lgmrec": {"cl": "cl_weight", "reg": "reg_weight"},
    "lightgcn": {"reg": "reg_weight"},
    "bpr": {"reg": "reg_weight"},
}

#: The healthy range of each DHMRec diagnostic (docs/readings.md, *Diagnostics*), shaded in
#: ``diagnostics.png``: the diagnostic (a ``diag_`` column without the prefix; a name ending in
#: ``_`` covers every view) -> (low, high), ``None`` for an open end, ``"ln d"`` for the entropy of
#: a uniform row of the d x d attention map (d: the model's ``embedding_dim``).
#:
#: - ``attn_entropy_<view>``: from 1 nat up to ln d. Near 0 (one-hot rows, the literal
#:   ``attention_scale=sqrt_n``: 0.0-0.3) the fusion is a frozen projection.
#: - ``mm_id_norm_ratio``: 0.1-30, wide on purpose (the readings call it data-dependent): below,
#:   the multimodal branch vanishes; trained TikTok runs end at 7-15.
#: - ``user_mm_cosine``: below 0.9; at 0.9 and above the branch is one vector for every user (the
#:   stalled runs: 0.96).
#: - ``item_term_share``: below 0.6; above, one term per item ranks every user alike (trained
#:   runs: 0.35-0.55; the stalled KL runs: 0.8-0.99).
DIAG_HEALTHY_RANGES: Dict[str, Tuple[Union[float, str, None], Union[float, str, None]]] = {
    "attn_entropy_": (1.0, "ln d"),
    "mm_id_norm_ratio": (0.1, 30.0),
    "user_mm_cosine": (None, 0.9),
    "item_term_share": (None, 0.6),
}


def _history_rows(run: Path) -> List[Dict[str, str]]:
    path = run / "history.csv"
    if not path.is_file():
        raise ConfigError(f"{run}: no history.csv (is this a folder written by 'dhmrec train'?)")
    rows = list(csv.DictReader(path.open()))
    if not rows:
        raise ConfigError(f"{path}: no epochs recorded yet")
    return rows


def _model_config(run: Path) -> Tuple[str, Any]:
    """The run's model name and model config (``("", None)`` where ``config.yaml`` cannot be read)."""
    from dhmrec_pyg.training.run import read_run_config

    try:
        cfg, model_cfg = read_run_config(run)
    except ConfigError:
        return "", None
    return cfg.model, model_cfg


def loss_weights(model: str, model_config: Any, terms: Sequence[str]) -> Dict[str, Tuple[float, str]]:
    """The weight each loss term enters the total with (:data:`LOSS_WEIGHTS`): term -> (weight,
    the option that holds it; ``""`` for weight 1). ``loss`` itself, and every term of a model
    or config the table does not know, get weight 1."""
    table = LOSS_WEIGHTS.get(model, {}) if model_config is not None else {}
    out: Dict[str, Tuple[float, str]] = {}
    for term in terms:
        option = table.get(term) or next((o for k, o in table.items() if k.endswith("_") and term.startswith(k)), "")
        value = getattr(model_config, option, None) if option else None
        out[term] = (float(value), option) if isinstance(value, (int, float)) and term != "loss" else (1.0, "")
    return out


def _column(rows: List[Dict[str, str]], key: str) -> List[float]:
    return [float(r[key]) if r.get(key) not in (None, "") else np.nan for r in rows]


def plot_history(run: Path, out_dir: Path) -> List[Path]:
    """``curves.png``: the loss terms as they enter the loss (each times its weight,
    :func:`loss_weights`; they add up to ``loss``) and validation Recall@20 per epoch; with
    ``diag_*`` columns, ``diagnostics.png`` too (:func:`plot_diagnostics`)."""
    plt = _pyplot()
    rows = _history_rows(run)
    model, model_cfg = _model_config(run)
    epochs = [int(r["epoch"]) for r in rows]
    skip = {"epoch", "train_seconds", "eval_seconds"}
    terms = [k for k in rows[0] if k not in skip and not k.startswith(("valid_", "diag_"))]
    weights = loss_weights(model, model_cfg, terms)
    with plt.rc_context(_FONTS):
        fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.8))
        for term in terms:
            weight, option = weights[term]
            label = f"{term} × {option} ({weight:g})" if option else term
            if weight <= 0:
                label += ": not drawn"
            ax1.plot(epochs, [v * weight for v in _column(rows, term)], label=label, lw=2.5 if term == "loss" else 1.5)
        ax1.set_xlabel("epoch")
        ax1.set_ylabel("training loss (mean over batches)")
        ax1.set_yscale("log")
        ax1.legend(title="terms as they enter the loss" if model_cfg is not None else "terms (unweighted)")
        recall = _column(rows, "valid_recall@20")
        ax2.plot(epochs, recall, color="C3")
        best = int(np.nanargmax(recall))
        ax2.scatter([epochs[best]], [recall[best]], color="k", zorder=3, label=f"best: epoch {epochs[best]}")
        ax2.set_xlabel("epoch")
        ax2.set_ylabel("validation Recall@20")
        ax2.legend()
        from matplotlib.ticker import MaxNLocator

        for ax in (ax1, ax2):
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        fig.suptitle(run.name)
        paths = [_save(fig, out_dir / "curves.png")]
    diag = [k for k in rows[0] if k.startswith("diag_")]
    if diag:
        dim = getattr(model_cfg, "embedding_dim", None)
        paths.append(plot_diagnostics(rows, diag, run.name, out_dir, embedding_dim=dim))
    return paths


#: Panels of ``diagnostics.png``: title, the ``diag_`` columns (by prefix) drawn in it, and whether
#: its axis is logarithmic. A panel of one prefix shades that diagnostic's healthy range
#: (:data:`DIAG_HEALTHY_RANGES`).
_DIAG_PANELS = (
    ("attention entropy per view (nats)", ("diag_attn_entropy_",), False),
    ("alpha_pos / alpha_neg (17)", ("diag_alpha_pos", "diag_alpha_neg"), False),
    ("||alpha_mm E_mm|| / ||E_id|| (22)", ("diag_mm_id_norm_ratio",), True),
    ("users' multimodal cosine", ("diag_user_mm_cosine",), False),
    ("item-term share of score variance", ("diag_item_term_share",), False),
)


def healthy_range(column: str, embedding_dim: Optional[int] = None) -> Optional[Tuple[Optional[float], Optional[float]]]:
    """The healthy (low, high) of a ``diag_`` column (:data:`DIAG_HEALTHY_RANGES`; ``"ln d"``
    resolved with ``embedding_dim``, open without it), or ``None`` where none is known."""
    name = column[len("diag_"):] if column.startswith("diag_") else column
    band = next((b for k, b in DIAG_HEALTHY_RANGES.items() if name == k or (k.endswith("_") and name.startswith(k))),
                None)
    if band is None:
        return None

    def resolve(bound: Union[float, str, None]) -> Optional[float]:
        if bound == "ln d":
            return float(np.log(embedding_dim)) if embedding_dim else None
        return None if bound is None else float(bound)

    return resolve(band[0]), resolve(band[1])


def _shade(ax: Any, band: Tuple[Optional[float], Optional[float]], log: bool) -> None:
    """Shade ``band`` on ``ax``, widening the view so that at least the band's nearest edge shows."""
    y0, y1 = ax.get_ylim()
    low, high = band
    if low is not None and low >= y1:
        y1 = low * 1.5 if log else low + 0.25 * (low - y0)
    if high is not None and high <= y0:
        y0 = high / 1.5 if log else high - 0.25 * (y1 - high)
    ax.axhspan(y0 if low is None else max(low, y0), y1 if high is None else min(high, y1),
               color="tab:green", alpha=0.15, lw=0, zorder=0, label="healthy")
    ax.set_ylim(y0, y1)


def plot_diagnostics(rows: List[Dict[str, str]], columns: List[str], title: str, out_dir: Path,
                     embedding_dim: Optional[int] = None) -> Path:
    """``diagnostics.png``: a model's per-epoch ``diag_*`` columns of ``history.csv``, one panel per
    kind in a grid of up to three columns (about 1600 px wide), each diagnostic's healthy range
    shaded (:data:`DIAG_HEALTHY_RANGES`; ``embedding_dim`` gives the attention entropy's top, ln d).

    Columns no panel names are drawn in a last panel of their own.
    """
    plt = _pyplot()
    epochs = [int(r["epoch"]) for r in rows]
    groups = [(name, [c for c in columns if c.startswith(prefixes)], log) for name, prefixes, log in _DIAG_PANELS]
    placed = {c for _, cols, _ in groups for c in cols}
    groups = [g for g in groups if g[1]] + ([("other", [c for c in columns if c not in placed], False)]
                                            if placed != set(columns) else [])
    ncols = min(3, len(groups))
    nrows = -(-len(groups) // ncols)
    with plt.rc_context(_FONTS):
        fig, axes = plt.subplots(nrows, ncols, figsize=({1: 6.5, 2: 10.5, 3: 13.2}[ncols], 3.9 * nrows + 0.5),
                                 squeeze=False)
        for ax, (name, cols, log) in zip(axes.flat, groups):
            for col in cols:
                ax.plot(epochs, _column(rows, col), label=col[len("diag_"):], lw=1.8)
            if log:
                from matplotlib.ticker import LogFormatter

                ax.set_yscale("log")
                ax.yaxis.set_major_formatter(LogFormatter())  # 0.5, 5, 30: not 5 x 10^0
                ax.yaxis.set_minor_formatter(LogFormatter(labelOnlyBase=False, minor_thresholds=(2, 0.5)))
            bands = {healthy_range(c, embedding_dim) for c in cols} - {None}
            if len(bands) == 1 and name != "other":
                _shade(ax, bands.pop(), log)
            ax.set_title(name)
            ax.set_xlabel("epoch")
            ax.legend(loc="best", framealpha=0.8)
        for ax in list(axes.flat)[len(groups):]:
            ax.axis("off")
        fig.suptitle(f"{title}: diagnostics (green: healthy range)")
        return _save(fig, out_dir / "diagnostics.png")


def _tsne(blocks: Dict[str, np.ndarray], seed: int) -> Dict[str, np.ndarray]:
    from sklearn.manifold import TSNE

    stacked = np.concatenate(list(blocks.values()))
    stacked = stacked / np.maximum(np.linalg.norm(stacked, axis=1, keepdims=True), 1e-12)
    coords = TSNE(n_components=2, init="pca", random_state=seed, perplexity=30).fit_transform(stacked)
    out, start = {}, 0
    for name, block in blocks.items():
        out[name] = coords[start : start + len(block)]
        start += len(block)
    return out


def plot_embeddings(run: Path, out_dir: Path, sample: int = 1000, seed: int = 0) -> List[Path]:
    """t-SNE maps of a DHMRec run's items (the paper's Figures 7 and 8).

    ``tsne_disentangled.png``: modality-common, modality-specific and ID item
    embeddings; ``tsne_fused.png``: fused multimodal vs ID item embeddings.
    ``sample`` items are drawn at random (seeded).
    """
    plt = _pyplot()
    from dhmrec_pyg.training.run import load_run

    cfg, _, model, _ = load_run(run, device="cpu")
    if cfg.model != "dhmrec":
        return []
    with torch.no_grad():
        out = model.forward()
    rng = np.random.default_rng(seed)
    n_items = out.item.size(0)
    idx = np.sort(rng.choice(n_items, size=min(sample, n_items), replace=False))
    names = getattr(model, "modalities", None) or [f"modality {i}" for i in range(len(out.codes.specific))]
    blocks = {"modality-common": out.codes.common[idx].numpy()}
    for name, spec in zip(names, out.codes.specific):
        blocks[f"{name}-specific"] = spec[idx].numpy()
    blocks["ID"] = out.item_id[idx].numpy()
    paths = []
    for title, file, group in [
        ("Item embeddings: common, specific, ID (cf. paper Fig. 7)", "tsne_disentangled.png", blocks),
        ("Fused multimodal vs ID item embeddings (cf. paper Fig. 8)", "tsne_fused.png",
         {"fused multimodal": out.item_mm[idx].numpy(), "ID": out.item_id[idx].numpy()}),
    ]:
        coords = _tsne(group, seed)
        fig, ax = plt.subplots(figsize=(6, 5))
        for name, xy in coords.items():
            ax.scatter(xy[:, 0], xy[:, 1], s=4, alpha=0.6, label=name)
        ax.set_title(title, fontsize=10)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.legend(markerscale=3, fontsize=8)
        paths.append(_save(fig, out_dir / file))
    return paths


def plot_grid(run: Path, out_dir: Path) -> List[Path]:
    """From a grid run's ``grid.json``: Recall@20 against ``alpha_mm`` (cf. Fig. 4) and the
    ``gamma_dis`` x ``gamma_kl`` heat map (cf. Fig. 5), validation Recall@20 (what selection used)."""
    plt = _pyplot()
    path = run / "grid.json"
    if not path.is_file():
        return []
    report = json.loads(path.read_text())
    rows = report["rows"]
    metric = next(k for k in rows[0] if k.startswith("valid_"))
    paths = []
    if "alpha_mm" in rows[0]:
        pts = sorted((float(r["alpha_mm"]), r[metric]) for r in rows)
        fig, ax = plt.subplots(figsize=(5, 4))
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o")
        ax.set_xlabel(r"$\alpha_{mm}$")
        ax.set_ylabel(metric.replace("valid_", "validation "))
        paths.append(_save(fig, out_dir / "grid_alpha_mm.png"))
    if "gamma_dis" in rows[0] and "gamma_kl" in rows[0]:
        dis = sorted({float(r["gamma_dis"]) for r in rows})
        kl = sorted({float(r["gamma_kl"]) for r in rows})
        grid = np.full((len(dis), len(kl)), np.nan)
        for r in rows:
            grid[dis.index(float(r["gamma_dis"])), kl.index(float(r["gamma_kl"]))] = r[metric]
        fig, ax = plt.subplots(figsize=(5, 4))
        im = ax.imshow(grid, cmap="viridis", origin="lower")
        ax.set_xticks(range(len(kl)), [f"{v:g}" for v in kl])
        ax.set_yticks(range(len(dis)), [f"{v:g}" for v in dis])
        ax.set_xlabel(r"$\gamma_{kl}$")
        ax.set_ylabel(r"$\gamma_{dis}$")
        for a in range(len(dis)):
            for b in range(len(kl)):
                if not np.isnan(grid[a, b]):
                    ax.text(b, a, f"{grid[a, b]:.4f}", ha="center", va="center", fontsize=7, color="w")
        fig.colorbar(im, label=metric.replace("valid_", "validation "))
        paths.append(_save(fig, out_dir / "grid_gamma_heatmap.png"))
    return paths


def plot_run(run_folder: str | Path, out_dir: Optional[str | Path] = None, tsne_sample: int = 1000) -> List[Path]:
    """Every figure that applies to ``run_folder`` (a single run or a grid run)."""
    run = Path(run_folder)
    if not run.is_dir():
        raise ConfigError(f"{run}: no such run folder")
    out = Path(out_dir) if out_dir else run / "plots"
    out.mkdir(parents=True, exist_ok=True)
    paths = plot_grid(run, out)
    target = run
    if paths or (run / "grid.json").is_file():
        best = json.loads((run / "grid.json").read_text())["best_run"]
        target = run / best
    paths += plot_history(target, out)
    if (target / "best.pt").is_file():
        paths += plot_embeddings(target, out, sample=tsne_sample)
    return paths
