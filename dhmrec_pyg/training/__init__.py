"""Sampling, evaluation, the training loop and experiment drivers."""
from dhmrec_pyg.training.checkpoint import CheckpointError
from dhmrec_pyg.training.config import ConfigError, TrainConfig
from dhmrec_pyg.training.evaluate import FullRankingEvaluator, evaluation_users
from dhmrec_pyg.training.run import LoadedRun, load_run
from dhmrec_pyg.training.sampler import BPRSampler
from dhmrec_pyg.training.trainer import (
    EarlyStopping,
    NonFiniteLossError,
    Trainer,
    TrainingInterrupted,
    build_model,
    build_optimizer,
    evaluate_model,
)

__all__ = [
    "BPRSampler",
    "CheckpointError",
    "ConfigError",
    "EarlyStopping",
    "FullRankingEvaluator",
    "LoadedRun",
    "NonFiniteLossError",
    "TrainConfig",
    "Trainer",
    "TrainingInterrupted",
    "build_model",
    "build_optimizer",
    "evaluate_model",
    "evaluation_users",
    "load_run",
]
