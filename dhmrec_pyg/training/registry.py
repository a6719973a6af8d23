"""A run's model: seeding before it is built, building a registered model by name
(:data:`dhmrec_pyg.models.MODELS`), and the name a run records for a model instance."""
from __future__ import annotations

import copy
import random
from typing import Any, Optional

import numpy as np
import torch
from torch_geometric.data import HeteroData

from dhmrec_pyg.models import MODELS, Recommender
from dhmrec_pyg.models.base import GraphConfig
from dhmrec_pyg.training.config import ConfigError, TrainConfig

__all__ = ["build_model", "model_name", "named_config", "seed_everything"]


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch, and return a torch generator for sampling."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def build_model(name: str, data: HeteroData, model_config: Any, graph: Optional[GraphConfig] = None) -> Recommender:
    """Instantiate the registered model ``name`` on ``data`` (its graphs built as ``graph`` says).

    Raises:
        ConfigError: ``name`` is not registered.
    """
    if name not in MODELS:
        raise ConfigError(f"model: unknown model {name!r}; choose one of {', '.join(MODELS)}")
    return MODELS[name](data, model_config, graph=graph)


def model_name(model: Any) -> str:
    """The name a run records for ``model``: the :data:`~dhmrec_pyg.models.MODELS` name its class
    is registered under (the class itself, not a parent), else the class's own name (a user's
    model or subclass)."""
    cls = type(model)
    return next((name for name, registered in MODELS.items() if registered is cls), cls.__name__)


def named_config(cfg: TrainConfig, model: Any) -> TrainConfig:
    """``cfg`` with ``model`` set to :func:`model_name` of ``model``: ``cfg`` itself when
    ``cfg.model`` already names the model's class, else a copy (no other field changes, and
    ``cfg`` is left alone)."""
    if MODELS.get(cfg.model) is type(model):
        return cfg
    named = copy.copy(cfg)
    named.model = model_name(model)
    return named
