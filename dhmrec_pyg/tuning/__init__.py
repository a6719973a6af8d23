"""Hyper-parameter tuning with Optuna (``dhmrec tune``; needs the ``tune`` extra).

:func:`tune` searches a model's space (:data:`DEFAULT_SPACES`, the grids of the models' papers,
or a YAML file) with a seeded TPE sampler and a pruner fed each epoch's validation metric,
every trial an ordinary run folder trained by the library's Trainer, in a persistent study
that a later call continues; the best point on validation is then rerun over seeds.
"""
from dhmrec_pyg.tuning.search import make_settings, rerun_best, tune, write_report
from dhmrec_pyg.tuning.space import DEFAULT_SPACES, Param, as_space, default_space, load_space
from dhmrec_pyg.tuning.worker import PRUNERS, PruningReporter, TuneSettings

__all__ = [
    "DEFAULT_SPACES",
    "PRUNERS",
    "Param",
    "PruningReporter",
    "TuneSettings",
    "as_space",
    "default_space",
    "load_space",
    "make_settings",
    "rerun_best",
    "tune",
    "write_report",
]
