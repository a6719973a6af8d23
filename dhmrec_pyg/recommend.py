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
from dhmrec_pyg.models.base import Recommender
from dhmrec_pyg.schema import EDGE_TYPE, as_interaction_graph
from dhmrec_pyg.training.config import ConfigError
from dhmrec_pyg.training.evaluate import csr_index, gather_rows

#: Above this many items, top-K search goes through a faiss inner-product index
#: instead of a dense users x items score matrix.
FAISS_MIN_ITEMS = 100_000


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
    final embeddings). Items that have features but no training interaction
    are ranked like any other: a multimodal model gives them embeddings from
    their features.

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
            least :data:`FAISS_MIN_ITEMS` items. Needs a model whose score is
            the plain inner product.
        edge_type: the interaction edge type of a graph with its own names
            (``(user type, relation, item type)``); only with a ``HeteroData``.

    Returns:
        ``(users [U], items [U, k], scores [U, k])`` as NumPy arrays, best first.
    """
    if k < 1:
        raise ConfigError(f"--k must be >= 1, got {k}")
    if isinstance(train_edge_index, HeteroData):
        train_edge_index = as_interaction_graph(train_edge_index, edge_type)[EDGE_TYPE].edge_index
    elif edge_type is not None:
        raise ConfigError("edge_type= needs the training graph (a HeteroData), not an edge_index tensor")
    model.eval()
    user_emb, item_emb = model.embeddings()
    num_users, num_items = user_emb.size(0), item_emb.size(0)
    if k > num_items:
        raise ConfigError(f"--k {k} exceeds the number of items ({num_items})")
    all_users = np.arange(num_users) if users is None else np.asarray(list(users), dtype=np.int64)
    bad = all_users[(all_users < 0) | (all_users >= num_users)]
    if bad.size:
        raise ConfigError(f"user id {int(bad[0])} is out of range (0..{num_users - 1})")
    rowptr, seen = csr_index(train_edge_index.cpu(), num_users)
    inner_product = type(model).score is Recommender.score
    if use_faiss is None:
        use_faiss = inner_product and num_items >= FAISS_MIN_ITEMS
    if use_faiss and not inner_product:
        raise ConfigError(f"{type(model).__name__} does not score by inner product: faiss search is not exact")
    if use_faiss:
        return _recommend_faiss(user_emb, item_emb, all_users, rowptr.numpy(), seen.numpy(), k)
    out_items = np.empty((all_users.size, k), dtype=np.int64)
    out_scores = np.empty((all_users.size, k), dtype=np.float32)
    for start in range(0, all_users.size, batch_size):
        batch = all_users[start : start + batch_size]
        scores = model.score(user_emb[torch.from_numpy(batch).to(user_emb.device)], item_emb)
        rows, cols = gather_rows(rowptr, seen, torch.from_numpy(batch))
        scores[rows.to(scores.device), cols.to(scores.device)] = -float("inf")
        top = torch.topk(scores, k, dim=1)
        out_items[start : start + batch.size] = top.indices.cpu().numpy()
        out_scores[start : start + batch.size] = top.values.float().cpu().numpy()
    return all_users, out_items, out_scores


def _recommend_faiss(user_emb: Tensor, item_emb: Tensor, users: np.ndarray, rowptr: np.ndarray,
                     seen: np.ndarray, k: int) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    import faiss

    items = np.ascontiguousarray(item_emb.float().cpu().numpy())
    index = faiss.IndexFlatIP(items.shape[1])
    index.add(items)
    queries = np.ascontiguousarray(user_emb.float().cpu().numpy()[users])
    degree = rowptr[users + 1] - rowptr[users]
    depth = int(min(items.shape[0], k + (degree.max() if degree.size else 0)))
    scores, cand = index.search(queries, depth)
    out_items = np.empty((users.size, k), dtype=np.int64)
    out_scores = np.empty((users.size, k), dtype=np.float32)
    for row, u in enumerate(users):
        keep = ~np.isin(cand[row], seen[rowptr[u] : rowptr[u + 1]])
        out_items[row] = cand[row][keep][:k]
        out_scores[row] = scores[row][keep][:k]
    return users, out_items, out_scores


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
