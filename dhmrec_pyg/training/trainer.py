"""The training loop: BPR mini-batches, per-epoch validation, early stopping."""
from __future__ import annotations

import copy
import csv
import io
import json
import math
import random
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np
import torch
from torch_geometric.data import HeteroData
from tqdm.auto import tqdm

from dhmrec_pyg import io as dio
from dhmrec_pyg.models import MODELS, Recommender
from dhmrec_pyg.models.base import EDGE
from dhmrec_pyg.training.config import ConfigError, TrainConfig, dump_config
from dhmrec_pyg.training.evaluate import FullRankingEvaluator
from dhmrec_pyg.training.sampler import BPRSampler


class NonFiniteLossError(RuntimeError):
    """A loss term became NaN or infinite; the message names epoch, batch and term."""


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch, and return a torch generator for sampling."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def resolve_device(name: str) -> torch.device:
    """``"auto"`` picks CUDA when available, else the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"device: unknown device {name!r}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device: {name!r} requested but CUDA is not available")
    return dev


def build_model(name: str, data: HeteroData, model_config: Any) -> Recommender:
    """Instantiate the registered model ``name`` on ``data``."""
    if name not in MODELS:
        raise ConfigError(f"model: unknown model {name!r}; choose one of {', '.join(MODELS)}")
    return MODELS[name](data, model_config)


def make_evaluators(data: HeteroData, cfg: TrainConfig) -> Dict[str, FullRankingEvaluator]:
    """Validation and test evaluators of a dataset."""
    store = data[EDGE]
    n_u, n_i = int(data["user"].num_nodes), int(data["item"].num_nodes)
    return {
        split: FullRankingEvaluator(
            store.edge_index, getattr(store, f"{split}_edge_index"), n_u, n_i, cfg.ks, cfg.eval_batch_size
        )
        for split in ("val", "test")
    }


@torch.no_grad()
def evaluate_model(model: Recommender, evaluator: FullRankingEvaluator) -> Dict[str, float]:
    """Evaluate ``model`` (switched to eval mode) with ``evaluator``."""
    was_training = model.training
    model.eval()
    user_emb, item_emb = model.embeddings()
    out = evaluator.evaluate(user_emb, item_emb, score_fn=model.score)
    model.train(was_training)
    return out


class Trainer:
    """Fits a model with BPR, validates every epoch, keeps the best epoch.

    Args:
        model: a :class:`~dhmrec_pyg.models.Recommender`.
        data: the dataset (training edges, validation and test edges).
        cfg: the training configuration.
        out_dir: run folder; ``None`` keeps everything in memory.
        model_config: the model's config, written to ``config.yaml``.
    """

    def __init__(
        self,
        model: Recommender,
        data: HeteroData,
        cfg: TrainConfig,
        out_dir: Optional[Path] = None,
        model_config: Any = None,
    ) -> None:
        self.cfg = cfg
        self.device = resolve_device(cfg.device)
        self.model = model.to(self.device)
        self.data = data
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.model_config = model_config if model_config is not None else model.config
        store = data[EDGE]
        self.sampler = BPRSampler(store.edge_index, int(data["item"].num_nodes), cfg.batch_size)
        self.evaluators = make_evaluators(data, cfg)
        if cfg.valid_metric not in self.evaluators["val"].metric_names():
            raise ConfigError(
                f"valid_metric: {cfg.valid_metric!r} is not computed; "
                f"choose one of {', '.join(self.evaluators['val'].metric_names())}"
            )
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=cfg.lr)
        self.history: List[Dict[str, float]] = []

    def _train_epoch(self, epoch: int, generator: torch.Generator) -> Dict[str, float]:
        self.model.train()
        self.model.on_epoch_start(epoch, generator)
        sums: Dict[str, float] = {}
        n = 0
        for batch_idx, (u, p, ng) in enumerate(self.sampler.epoch(generator)):
            u, p, ng = u.to(self.device), p.to(self.device), ng.to(self.device)
            terms = self.model.loss(u, p, ng)
            for name, value in terms.items():
                if not torch.isfinite(value).all():
                    raise NonFiniteLossError(
                        f"loss term {name!r} is {float(value)} at epoch {epoch}, batch {batch_idx}; "
                        "training stopped (the best checkpoint on disk is intact)"
                    )
            self.optimizer.zero_grad(set_to_none=True)
            terms["loss"].backward()
            self.optimizer.step()
            for name, value in terms.items():
                sums[name] = sums.get(name, 0.0) + float(value.detach())
            n += 1
        return {name: value / max(n, 1) for name, value in sums.items()}

    def fit(self) -> Dict[str, Any]:
        """Train until early stopping or ``cfg.epochs``; return ``metrics.json``'s content."""
        cfg = self.cfg
        generator = torch.Generator().manual_seed(cfg.seed)
        if self.out_dir is not None:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            dio.write_text(self.out_dir / "config.yaml", dump_config(cfg, self.model_config))
        best_value, best_epoch, best_state = -math.inf, -1, None
        best_valid: Dict[str, float] = {}
        stale = 0
        bar = tqdm(range(cfg.epochs), desc=f"{cfg.model}", disable=not cfg.progress, file=sys.stderr)
        for epoch in bar:
            start = time.perf_counter()
            losses = self._train_epoch(epoch, generator)
            train_seconds = time.perf_counter() - start
            valid = evaluate_model(self.model, self.evaluators["val"])
            value = valid[cfg.valid_metric]
            row = {"epoch": epoch, **losses, "train_seconds": train_seconds,
                   "eval_seconds": time.perf_counter() - start - train_seconds}
            row.update({f"valid_{k}": v for k, v in valid.items() if k.endswith("@20") or k.endswith("@10")})
            self.history.append(row)
            if value > best_value:
                best_value, best_epoch, best_valid, stale = value, epoch, valid, 0
                best_state = copy.deepcopy(self.model.state_dict())
                if self.out_dir is not None:
                    dio.save_tensors(self.out_dir / "best.pt", best_state)
            else:
                stale += 1
            if self.out_dir is not None:
                self._write_history()
            bar.set_postfix(loss=f"{losses['loss']:.4f}", **{cfg.valid_metric: f"{value:.4f}"},
                            best=f"{best_value:.4f}@{best_epoch}")
            if stale >= cfg.patience:
                break
        bar.close()
        if best_state is not None:
            self.model.load_state_dict(best_state)
        # Test is read once, at the epoch chosen on validation.
        test = evaluate_model(self.model, self.evaluators["test"])
        seconds = [r["train_seconds"] for r in self.history]
        result = {
            "model": cfg.model,
            "dataset": cfg.dataset,
            "seed": cfg.seed,
            "best_epoch": best_epoch,
            "epochs_run": len(self.history),
            "valid_metric": cfg.valid_metric,
            "valid": best_valid,
            "test": test,
            "seconds_per_epoch": float(np.mean(seconds)) if seconds else 0.0,
            "eval_seconds": float(np.mean([r["eval_seconds"] for r in self.history])) if seconds else 0.0,
            "environment": environment(),
        }
        if self.out_dir is not None:
            dio.write_json(self.out_dir / "metrics.json", result)
        return result

    def _write_history(self) -> None:
        keys: List[str] = []
        for row in self.history:
            keys += [k for k in row if k not in keys]
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=keys)
        writer.writeheader()
        writer.writerows(self.history)
        dio.write_text(self.out_dir / "history.csv", buf.getvalue())  # type: ignore[operator]


def environment() -> Dict[str, str]:
    """Versions and machine description stored with every result."""
    import os
    import platform

    import torch_geometric

    try:
        import faiss  # noqa: F401

        faiss_version = getattr(faiss, "__version__", "unknown")
    except ImportError:  # pragma: no cover - faiss is a required dependency
        faiss_version = "missing"
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_geometric": torch_geometric.__version__,
        "faiss": faiss_version,
        "numpy": np.__version__,
        "cpu": cpu,
        "cores": str(os.cpu_count()),
        "torch_threads": str(torch.get_num_threads()),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none",
    }
