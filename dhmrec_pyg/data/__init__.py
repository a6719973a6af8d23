"""Data loading, splitting and synthetic generation for dhmrec_pyg.

Everything works on the MMRec on-disk layout (``NAME.inter`` + ``*_feat.npy``) and produces a
:class:`torch_geometric.data.HeteroData` with node types ``'user'`` and ``'item'``, the edge type
``('user', 'interacts', 'item')`` carrying the training ``edge_index``, the split edge types
``('user', 'interacts_val', 'item')`` and ``('user', 'interacts_test', 'item')``, and one item
attribute ``x_<modality>`` per modality (the schema of :mod:`dhmrec_pyg.schema`).
:func:`as_interaction_graph` checks a graph with your own names (``edge_type=``, ``user=``,
``item=``) and returns it in that form; :func:`split_edge_index` reads a split.

:func:`prepare_dataset` converts your own interaction table (CSV or Parquet, any IDs) and item
feature files into that layout.
"""

from ..schema import (
    EDGE_TYPE,
    TEST_EDGE_TYPE,
    VAL_EDGE_TYPE,
    as_interaction_graph,
    split_edge_index,
    split_edge_type,
    training_graph,
)
from .dataset import MMRecDataset, OpenedDataset, load_dataset, open_dataset
from .errors import DataError
from .io import (
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
    "TEST_EDGE_TYPE",
    "VAL_EDGE_TYPE",
    "as_interaction_graph",
    "build_heterodata",
    "check_known_statistics",
    "chronological_split",
    "encode_text",
    "load_dataset",
    "open_dataset",
    "OpenedDataset",
    "load_mmrec",
    "make_synthetic",
    "materialise_synthetic",
    "mmrec_split",
    "modalities",
    "prepare_dataset",
    "read_id_map",
    "read_item_features",
    "split_counts",
    "split_edge_index",
    "split_edge_type",
    "training_graph",
    "write_mmrec",
]
