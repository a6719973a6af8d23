"""Top-K recommendations from a trained run, written as CSV or Parquet."""
from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch import Tensor
from torch_geometric.data import HeteroData

from dhmrec_pyg import files as dfiles
from dhmrec_pyg.errors import ConfigError
from dhmrec_pyg.models.base import Recommender
from dhmrec_pyg.ranking import FAISS_MIN_ITEMS, top_k
from dhmrec_pyg.schema import EDGE_TYPE, as_interaction_graph

__all__ = ["FAISS_MIN_ITEMS", "read_user_file", "recommend", "write_recommendations"]


@torch.no_grad()
def recommend(
    model: Recommender,
    train_edge_index: Union[Tensor, HeteroData],
    k: int = 20,
    users: Optional[Sequence[int]] = None,
    batch_size: int = 4096,
    use_faiss: Optional[bool] = None,
    *,
    edge_type: Union[None, str, Tuple[str, str, str]] = None,
) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Top-``k`` items per user, never an item the user interacted with in training.

    Items are ranked by the model's score (equation (23): the inner product of
    final embeddings) by :func:`dhmrec_pyg.ranking.top_k`. Items that have features
    but no training interaction are ranked like any other: a multimodal model gives
    them embeddings from their features.

    Args:
        model: a trained :class:`~dhmrec_pyg.models.Recommender`.
        train_edge_index: ``[2, E]`` training interactions (excluded), or the
            training graph (a ``HeteroData``, checked with
            :func:`~dhmrec_pyg.schema.as_interaction_graph`; its training edges).
        k: items per user.
        users: user ids (default: all users).
        batch_size: users scored at once on the dense path.
        use_faiss: search a faiss ``IndexFlatIP`` over the item embeddings
            instead of scoring densely; default: only for catalogues of at
            least :data:`~dhmrec_pyg.ranking.FAISS_MIN_ITEMS` items. Needs a model
            whose score is the plain inner product.
        edge_type: the interaction edge type of a graph with its own names
            (``(user type, relation, item type)``); only with a ``HeteroData``.

    Returns:
        ``(users [U], items [U, k], scores [U, k])`` as NumPy arrays, best first.
    """
    if k < 1:
        raise ConfigError(f"k must be >= 1, got {k}")
    if isinstance(train_edge_index, HeteroData):
        train_edge_index = as_interaction_graph(train_edge_index, edge_type)[EDGE_TYPE].edge_index
    elif edge_type is not None:
        raise ConfigError("edge_type= needs the training graph (a HeteroData), not an edge_index tensor")
    inner_product = type(model).score is Recommender.score
    if use_faiss and not inner_product:
        raise ConfigError(f"{type(model).__name__} does not score by inner product: faiss search is not exact")
    model.eval()
    user_emb, item_emb = model.embeddings()
    return top_k(user_emb, item_emb, train_edge_index, k, users, batch_size,
                 score_fn=None if inner_product else model.score, use_faiss=use_faiss)


def write_recommendations(path: str | Path, users: np.ndarray, items: np.ndarray, scores: np.ndarray) -> Path:
    """Write long-format recommendations (``user, rank, item, score``) to CSV or Parquet.

    The format follows the file extension (``.csv`` or ``.parquet``); Parquet
    needs ``pyarrow``. The file is written atomically.
    """
    path = Path(path)
    k = items.shape[1]
    cols = {
        "user": np.repeat(users, k),
        "rank": np.tile(np.arange(1, k + 1), users.size),
        "item": items.reshape(-1),
        "score": scores.reshape(-1),
    }
    if path.suffix == ".parquet":
        try:
            import pyarrow as pa
            import pyarrow.parquet as pq
        except ImportError:
            raise ConfigError(f"{path}: writing Parquet needs pyarrow (pip install pyarrow), or use .csv") from None
        table = pa.table(cols)
        dfiles.atomic_write(path, lambda fh: pq.write_table(table, fh))
    elif path.suffix == ".csv":
        buf = io.StringIO()
        writer = csv.writer(buf)
        writer.writerow(cols)
        writer.writerows(zip(cols["user"].tolist(), cols["rank"].tolist(), cols["item"].tolist(),
                             [f"{s:.6g}" for s in cols["score"].tolist()]))
        dfiles.write_text(path, buf.getvalue())
    else:
        raise ConfigError(f"--output {path}: use a .csv or .parquet file name")
    return path


def read_user_file(path: str | Path) -> np.ndarray:
    """User ids from a text file: one integer per line (a header line ``user`` is allowed)."""
    path = Path(path)
    try:
        lines = path.read_text().split()
    except OSError as exc:
        raise ConfigError(f"--users {path}: cannot read ({exc.strerror})") from None
    if lines and not lines[0].lstrip("-").isdigit():
        lines = lines[1:]
    try:
        return np.asarray([int(x) for x in lines], dtype=np.int64)
    except ValueError as exc:
        raise ConfigError(f"--users {path}: expected one integer user id per line ({exc})") from None
