"""Ranking metrics recounted by hand (Python sets over a dense score matrix), for tests to check
the evaluator's figures against on tiny data."""
from __future__ import annotations

import statistics
from collections import defaultdict
from typing import Dict, Set, Tuple

import torch


@torch.no_grad()
def recall_precision_by_hand(model, train_edge_index: torch.Tensor, target_edge_index: torch.Tensor,
                             k: int) -> Tuple[float, float]:
    """Mean Recall@``k`` and Precision@``k`` of ``model`` over the users with a target item and a
    training item, their training items never ranked (the protocol of ``FullRankingEvaluator``)."""
    model.eval()
    user_emb, item_emb = model.embeddings()
    scores = model.score(user_emb, item_emb).clone()
    scores[train_edge_index[0], train_edge_index[1]] = float("-inf")
    truth: Dict[int, Set[int]] = defaultdict(set)
    for user, item in target_edge_index.t().tolist():
        truth[user].add(item)
    trained = set(train_edge_index[0].tolist())
    users = sorted(u for u in truth if u in trained)
    top = torch.topk(scores[users], k, dim=1).indices.tolist()
    found = [len(set(items) & truth[u]) for u, items in zip(users, top)]
    return (statistics.fmean(f / len(truth[u]) for f, u in zip(found, users)),
            statistics.fmean(f / k for f in found))
