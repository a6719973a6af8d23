"""Models: DHMRec and the baselines it is compared with."""
from typing import Dict, Type

from dhmrec_pyg.models.base import (
    ItemGraphConfig,
    ModelConfig,
    Recommender,
    bpr_loss,
    bpr_loss_from_embeddings,
    l2_reg,
)
from dhmrec_pyg.models.bpr import BPRMF, BPRConfig
from dhmrec_pyg.models.dhmrec import DHMRec, DHMRecConfig
from dhmrec_pyg.models.freedom import FREEDOM, FREEDOMConfig
from dhmrec_pyg.models.lgmrec import LGMRec, LGMRecConfig
from dhmrec_pyg.models.lightgcn import LightGCN, LightGCNConfig

#: Registry of model names accepted by ``dhmrec train --model``.
MODELS: Dict[str, Type[Recommender]] = {
    "bpr": BPRMF,
    "lightgcn": LightGCN,
    "dhmrec": DHMRec,
    "freedom": FREEDOM,
    "lgmrec": LGMRec,
}

__all__ = [
    "BPRMF",
    "BPRConfig",
    "DHMRec",
    "DHMRecConfig",
    "FREEDOM",
    "FREEDOMConfig",
    "LGMRec",
    "LGMRecConfig",
    "LightGCN",
    "LightGCNConfig",
    "MODELS",
    "ItemGraphConfig",
    "ModelConfig",
    "Recommender",
    "bpr_loss",
    "bpr_loss_from_embeddings",
    "l2_reg",
]
