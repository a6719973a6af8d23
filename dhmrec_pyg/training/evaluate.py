"""Full-ranking evaluation with training items masked out, and a model's evaluation as the
trainer runs it (:func:`make_evaluators`, :func:`evaluate_model`, :func:`model_diagnostics`)."""
from __future__ import annotations

from typing import TYPE_CHECKING, Dict, Iterable, Optional, Sequence

import torch
from torch import Tensor
from torch_geometric.data import HeteroData
from torch_geometric.metrics import (
    LinkPredMAP,
    LinkPredMetricCollection,
    LinkPredNDCG,
    LinkPredPrecision,
    LinkPredRecall,
)

from dhmrec_pyg.ranking import csr_index, gather_rows
from dhmrec_pyg.schema import EDGE_TYPE, ITEM, USER, check_edge_index, split_edge_index

if TYPE_CHECKING:
    from dhmrec_pyg.models.base import Recommender
    from dhmrec_pyg.training.config import TrainConfig

DEFAULT_KS: tuple = (5, 10, 20, 50)

_METRICS = {
    "recall": LinkPredRecall,
    "ndcg": LinkPredNDCG,
    "precision": LinkPredPrecision,
    "map": LinkPredMAP,
}


def evaluation_users(train_edge_index: Tensor, target_edge_index: Tensor, num_users: int) -> Tensor:
    """Users evaluated on a split: at least one target item and one training item.

    Users with no training interaction are left out, as MMRec does by default
    (``filter_out_cod_start_users``).
    """
    has_target = torch.bincount(target_edge_index[0].cpu(), minlength=num_users) > 0
    has_train = torch.bincount(train_edge_index[0].cpu(), minlength=num_users) > 0
    return (has_target & has_train).nonzero().flatten()


class FullRankingEvaluator:
    """Recall, NDCG, precision and MAP at several K over the full item catalogue.

    For every evaluated user (see :func:`evaluation_users`) all items are
    scored, the user's training items get a score of ``-inf``, and the top
    ``max(ks)`` items are compared with the split's ground truth by
    ``torch_geometric.metrics``: Recall@K = hits / |ground truth|, NDCG@K with
    the ideal DCG over ``min(|ground truth|, K)`` hits, Precision@K = hits / K,
    MAP@K = sum of precision at each hit / ``min(|ground truth|, K)``. Metrics
    are averaged over the evaluated users. Users are processed in batches of
    ``batch_size`` so that memory stays at ``batch_size x num_items`` scores.

    Args:
        train_edge_index: ``[2, E]`` training interactions (masked).
        target_edge_index: ``[2, E']`` ground truth of the split.
        num_users: number of users.
        num_items: number of items.
        ks: cut-offs.
        batch_size: users scored at once.

    Raises:
        ValueError: bad ``ks``; (:class:`~dhmrec_pyg.errors.DataError`) a user id
            ``>= num_users`` or an item id ``>= num_items`` (or a negative one) in either
            index, named with the index and its column.
    """

    def __init__(
        self,
        train_edge_index: Tensor,
        target_edge_index: Tensor,
        num_users: int,
        num_items: int,
        ks: Sequence[int] = DEFAULT_KS,
        batch_size: int = 4096,
    ) -> None:
        self.num_users, self.num_items = int(num_users), int(num_items)
        self.ks = tuple(sorted(int(k) for k in ks))
        if not self.ks or self.ks[0] < 1:
            raise ValueError(f"ks must be positive integers, got {ks!r}")
        self.batch_size = int(batch_size)
        train, target = train_edge_index.cpu(), target_edge_index.cpu()
        for name, index in (("train_edge_index", train), ("target_edge_index", target)):
            check_edge_index(index, f"FullRankingEvaluator: {name}", self.num_users, self.num_items)
        self.users = evaluation_users(train, target, self.num_users)
        self.train_rowptr, self.train_cols = csr_index(train, self.num_users)
        self.target_rowptr, self.target_cols = csr_index(target, self.num_users)

    def metric_names(self) -> list[str]:
        """Keys of the dictionary returned by :meth:`evaluate`, e.g. ``recall@20``."""
        return [f"{m}@{k}" for k in self.ks for m in _METRICS]

    def batches(self) -> Iterable[Tensor]:
        """The evaluated users, in batches."""
        return torch.split(self.users, self.batch_size)

    @torch.no_grad()
    def evaluate(self, user_emb: Tensor, item_emb: Tensor, score_fn=None) -> Dict[str, float]:
        """Metrics of the given final embeddings.

        Under ``torch.distributed`` (a process group of more than one rank) each
        rank scores its contiguous share of the evaluated users and the metric
        sums are all-reduced, so every rank returns the single-process metrics
        (up to floating-point summation order). Every rank must call this.

        Args:
            user_emb: ``[U, d]`` user embeddings.
            item_emb: ``[I, d]`` item embeddings.
            score_fn: ``f(user_emb_batch, item_emb) -> [B, I]`` scores;
                defaults to the inner product (equation (23)).
        """
        from dhmrec_pyg.training import distributed as ddist

        info = ddist.current()
        if not info.enabled:
            collection = self._collection(user_emb.device)
            for users in self.batches():
                self._update(collection, user_emb, item_emb, users, score_fn)
            out = collection.compute()
            return {name: float(v) for name, v in out.items()}
        start, end = ddist.shard_bounds(self.users.numel(), info.rank, info.world_size)
        sums = self.metric_sums(user_emb, item_emb, score_fn, self.users[start:end])
        sums = ddist.all_reduce_sum(sums.to(ddist.collective_device())).cpu()
        return self.metrics_from_sums(sums)

    @torch.no_grad()
    def per_user(self, user_emb: Tensor, item_emb: Tensor, k: int = 20, score_fn=None) -> Dict[str, Tensor]:
        """Recall@``k`` and NDCG@``k`` of every evaluated user, not averaged.

        The same ranking and definitions as :meth:`evaluate` (whose values are their
        means when no user-item pair repeats in the split), so two models can be compared
        user by user: the standard error of a paired difference is far smaller than either
        model's own. A user's ground truth counts each item once.

        Args:
            user_emb: ``[U, d]`` user embeddings.
            item_emb: ``[I, d]`` item embeddings.
            k: the cut-off.
            score_fn: as in :meth:`evaluate`.

        Returns:
            ``{"users", "recall", "ndcg"}``: ``[n]`` tensors in the order of :attr:`users`
            (float64 metrics).
        """
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        k = min(k, self.num_items)
        discount = 1.0 / torch.log2(torch.arange(2, k + 2, dtype=torch.float64))
        ideal = discount.cumsum(0)
        recall, ndcg = [], []
        for users in self.batches():
            top = torch.topk(self.scores(user_emb, item_emb, users, score_fn), k, dim=1).indices.cpu()
            local, cols = gather_rows(self.target_rowptr, self.target_cols, users)
            truth = torch.zeros(users.numel(), self.num_items, dtype=torch.bool)
            truth[local, cols] = True
            hits = truth.gather(1, top).double()
            relevant = truth.sum(1)
            recall.append(hits.sum(1) / relevant.clamp_min(1))
            ndcg.append((hits * discount).sum(1) / ideal[(relevant.clamp(max=k) - 1).clamp_min(0)])
        empty = torch.zeros(0, dtype=torch.float64)
        return {"users": self.users.clone(), "recall": torch.cat(recall) if recall else empty,
                "ndcg": torch.cat(ndcg) if ndcg else empty}

    def metric_sums(
        self, user_emb: Tensor, item_emb: Tensor, score_fn=None, users: Optional[Tensor] = None
    ) -> Tensor:
        """Per-metric ``(sum over users, number of users counted)`` for ``users`` (default: all).

        Returns:
            A float64 tensor ``[len(metric_names()), 2]``; sums of disjoint user
            sets add up to the sums of their union (see :meth:`metrics_from_sums`).
        """
        users = self.users if users is None else users.cpu().long()
        collection = self._collection(user_emb.device)
        for batch in torch.split(users, self.batch_size):
            self._update(collection, user_emb, item_emb, batch, score_fn)
        rows = [torch.stack([collection[name].accum.double().cpu(), collection[name].total.double().cpu()])
                for name in self.metric_names()]
        return torch.stack(rows)

    def metrics_from_sums(self, sums: Tensor) -> Dict[str, float]:
        """Mean metrics from (summed) :meth:`metric_sums` rows."""
        out: Dict[str, float] = {}
        for name, (acc, tot) in zip(self.metric_names(), sums.tolist()):
            out[name] = float(acc / tot) if tot > 0 else 0.0
        return out

    def _update(self, collection: LinkPredMetricCollection, user_emb: Tensor, item_emb: Tensor,
                users: Tensor, score_fn=None) -> None:
        if users.numel() == 0:
            return
        scores = self.scores(user_emb, item_emb, users, score_fn)
        top = torch.topk(scores, min(self.ks[-1], self.num_items), dim=1).indices
        local, cols = gather_rows(self.target_rowptr, self.target_cols, users)
        collection.update(top, torch.stack([local, cols]).to(top.device))

    def scores(self, user_emb: Tensor, item_emb: Tensor, users: Tensor, score_fn=None) -> Tensor:
        """Scores of ``users`` for all items, with their training items at ``-inf``."""
        dev = user_emb.device
        u = user_emb[users.to(dev)]
        scores = score_fn(u, item_emb) if score_fn is not None else u @ item_emb.t()
        local, cols = gather_rows(self.train_rowptr, self.train_cols, users)
        scores[local.to(dev), cols.to(dev)] = float("-inf")
        return scores

    def _collection(self, device: torch.device) -> LinkPredMetricCollection:
        metrics = {f"{m}@{k}": cls(k) for k in self.ks for m, cls in _METRICS.items()}
        return LinkPredMetricCollection(metrics).to(device)


def make_evaluators(data: HeteroData, cfg: "TrainConfig") -> Dict[str, FullRankingEvaluator]:
    """Validation and test evaluators of a dataset (a graph in the canonical form), with the
    cut-offs ``cfg.ks`` and batch size ``cfg.eval_batch_size``."""
    store = data[EDGE_TYPE]
    n_u, n_i = int(data[USER].num_nodes), int(data[ITEM].num_nodes)
    return {
        split: FullRankingEvaluator(
            store.edge_index, split_edge_index(data, split), n_u, n_i, cfg.ks, cfg.eval_batch_size
        )
        for split in ("val", "test")
    }


@torch.no_grad()
def evaluate_model(model: "Recommender", evaluator: FullRankingEvaluator) -> Dict[str, float]:
    """Evaluate ``model`` (switched to eval mode) with ``evaluator``."""
    was_training = model.training
    model.eval()
    user_emb, item_emb = model.embeddings()
    out = evaluator.evaluate(user_emb, item_emb, score_fn=model.score)
    model.train(was_training)
    return out


def model_diagnostics(model: "Recommender", epoch: int) -> Dict[str, float]:
    """The model's :meth:`~dhmrec_pyg.models.base.Recommender.diagnostics` after an epoch, in eval mode.

    Seeded by the epoch, from a generator of its own, so recording them changes no random
    stream of training (a resumed run records the same values).
    """
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            values = model.diagnostics(torch.Generator().manual_seed(epoch))
    finally:
        model.train(was_training)
    return {k: float(v) for k, v in values.items()}
