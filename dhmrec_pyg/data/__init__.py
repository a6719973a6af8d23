"""Data loading, splitting and synthetic generation for dhmrec_pyg.

Everything works on the MMRec on-disk layout (``NAME.inter`` + ``*_feat.npy``) and produces a
:class:`torch_geometric.data.HeteroData` with node types ``'user'`` and ``'item'``, the edge type
``('user', 'interacts', 'item')`` carrying ``edge_index`` (train), ``val_edge_index`` and
``test_edge_index``, and one item attribute ``x_<modality>`` per modality.

:func:`prepare_dataset` converts your own interaction table (CSV or Parquet, any IDs) and item
feature files into that layout.
"""

from .dataset import MMRecDataset, load_dataset
from .errors import DataError
from .io import (
    EDGE_TYPE,
    KNOWN_DATASETS,
    build_heterodata,
    check_known_statistics,
    load_mmrec,
    modalities,
    write_mmrec,
)
from .prepare import PrepareReport, encode_text, prepare_dataset, read_id_map, read_item_features
from .split import chronological_split, mmrec_split, split_counts
from .synthetic import PROFILES, make_synthetic, materialise_synthetic

__all__ = [
    "DataError",
    "EDGE_TYPE",
    "KNOWN_DATASETS",
    "MMRecDataset",
    "PROFILES",
    "PrepareReport",
    "build_heterodata",
    "check_known_statistics",
    "chronological_split",
    "encode_text",
    "load_dataset",
    "load_mmrec",
    "make_synthetic",
    "materialise_synthetic",
    "mmrec_split",
    "modalities",
    "prepare_dataset",
    "read_id_map",
    "read_item_features",
    "split_counts",
    "write_mmrec",
]
