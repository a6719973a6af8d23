"""Figures of a run: learning curves, t-SNE maps of DHMRec's embeddings, grid sensitivity.

Needs the ``plot`` extra (``pip install 'dhmrec_pyg[plot]'``: matplotlib and scikit-learn).
"""
from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Dict, List, Optional

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


def plot_history(run: Path, out_dir: Path) -> List[Path]:
    """``curves.png``: training loss (and its terms) and validation Recall@20 per epoch."""
    plt = _pyplot()
    path = run / "history.csv"
    if not path.is_file():
        raise ConfigError(f"{run}: no history.csv (is this a folder written by 'dhmrec train'?)")
    rows = list(csv.DictReader(path.open()))
    if not rows:
        raise ConfigError(f"{path}: no epochs recorded yet")
    epochs = [int(r["epoch"]) for r in rows]
    skip = {"epoch", "train_seconds", "eval_seconds"}
    terms = [k for k in rows[0] if k not in skip and not k.startswith(("valid_", "diag_"))]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    for term in terms:
        values = [float(r[term]) for r in rows if r.get(term) not in (None, "")]
        ax1.plot(epochs[: len(values)], values, label=term, lw=2 if term == "loss" else 1)
    ax1.set_xlabel("epoch")
    ax1.set_ylabel("training loss (mean over batches)")
    ax1.set_yscale("log")
    ax1.legend(fontsize=8)
    key = "valid_recall@20"
    recall = [float(r[key]) for r in rows]
    ax2.plot(epochs, recall, color="C3")
    best = int(np.argmax(recall))
    ax2.scatter([epochs[best]], [recall[best]], color="k", zorder=3, label=f"best: epoch {epochs[best]}")
    ax2.set_xlabel("epoch")
    ax2.set_ylabel("validation Recall@20")
    ax2.legend(fontsize=8)
    from matplotlib.ticker import MaxNLocator

    for ax in (ax1, ax2):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    fig.suptitle(run.name)
    paths = [_save(fig, out_dir / "curves.png")]
    diag = [k for k in rows[0] if k.startswith("diag_")]
    if diag:
        paths.append(plot_diagnostics(rows, diag, run.name, out_dir))
    return paths


#: Panels of ``diagnostics.png``: title, and the ``diag_`` columns (by prefix) drawn in it.
_DIAG_PANELS = (
    ("attention entropy per view (nats)", ("diag_attn_entropy_",)),
    ("alpha_pos / alpha_neg (17)", ("diag_alpha_pos", "diag_alpha_neg")),
    ("||alpha_mm E_mm|| / ||E_id||", ("diag_mm_id_norm_ratio",)),
    ("users' multimodal cosine; item-term share of score variance", ("diag_user_mm_cosine", "diag_item_term_share")),
)


def plot_diagnostics(rows: List[Dict[str, str]], columns: List[str], title: str, out_dir: Path) -> Path:
    """``diagnostics.png``: a model's per-epoch ``diag_*`` columns of ``history.csv``, one panel per kind.

    Columns no panel names are drawn in a last panel of their own.
    """
    plt = _pyplot()
    epochs = [int(r["epoch"]) for r in rows]
    groups = [(name, [c for c in columns if c.startswith(prefixes)]) for name, prefixes in _DIAG_PANELS]
    placed = {c for _, cols in groups for c in cols}
    groups = [g for g in groups if g[1]] + ([("other", [c for c in columns if c not in placed])]
                                            if placed != set(columns) else [])
    fig, axes = plt.subplots(1, len(groups), figsize=(4.2 * len(groups), 3.6), squeeze=False)
    for ax, (name, cols) in zip(axes[0], groups):
        for col in cols:
            values = [float(r[col]) if r.get(col) not in (None, "") else np.nan for r in rows]
            ax.plot(epochs, values, label=col[len("diag_"):])
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("epoch")
        ax.legend(fontsize=7)
    fig.suptitle(f"{title}: diagnostics")
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
