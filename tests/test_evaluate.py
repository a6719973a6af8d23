"""Full-ranking metrics against values computed by hand."""
import math

import pytest
import torch

from dhmrec_pyg.training.evaluate import FullRankingEvaluator, evaluation_users


def _hand_metrics(ranked, truth, k):
    hits = [1 if item in truth else 0 for item in ranked[:k]]
    recall = sum(hits) / len(truth)
    precision = sum(hits) / k
    dcg = sum(h / math.log2(r + 2) for r, h in enumerate(hits))
    idcg = sum(1 / math.log2(r + 2) for r in range(min(len(truth), k)))
    ap, seen = 0.0, 0
    for r, h in enumerate(hits):
        if h:
            seen += 1
            ap += seen / (r + 1)
    return {"recall": recall, "precision": precision, "ndcg": dcg / idcg, "map": ap / min(len(truth), k)}


def test_metrics_match_hand_computation_with_training_items_masked():
    # 4 users, 6 items. Scores put item 5 first for everyone, but it is a
    # training item of user 0, so it must be skipped for user 0.
    n_u, n_i = 4, 6
    item_emb = torch.eye(n_i)
    user_scores = torch.tensor(
        [
            [0.1, 0.5, 0.4, 0.3, 0.2, 0.9],  # user 0: ranking 5,1,2,3,4,0 -> 5 masked
            [0.9, 0.1, 0.2, 0.8, 0.3, 0.95],  # user 1
            [0.3, 0.2, 0.1, 0.0, 0.5, 0.6],  # user 2: no test items
            [0.1, 0.2, 0.3, 0.4, 0.5, 0.6],  # user 3: no training items
        ]
    )
    train = torch.tensor([[0, 0, 1, 2], [5, 0, 2, 1]])
    test = torch.tensor([[0, 0, 1, 1, 1, 3], [2, 4, 0, 4, 1, 0]])
    ev = FullRankingEvaluator(train, test, n_u, n_i, ks=(1, 2, 3))
    assert ev.users.tolist() == [0, 1]  # user 2 has no truth; user 3 no training item
    got = ev.evaluate(user_scores, item_emb)
    rank0 = [1, 2, 3, 4]  # 5 and 0 are training items of user 0
    rank1 = [5, 0, 3, 4, 1]  # 2 is a training item of user 1
    for k in (1, 2, 3):
        m0 = _hand_metrics(rank0, {2, 4}, k)
        m1 = _hand_metrics(rank1, {0, 4, 1}, k)
        for name in ("recall", "precision", "ndcg", "map"):
            assert got[f"{name}@{k}"] == pytest.approx((m0[name] + m1[name]) / 2, abs=1e-6), (name, k)


def test_batching_does_not_change_metrics():
    torch.manual_seed(0)
    n_u, n_i = 50, 40
    train = torch.stack([torch.randint(0, n_u, (300,)), torch.randint(0, n_i, (300,))])
    test = torch.stack([torch.randint(0, n_u, (100,)), torch.randint(0, n_i, (100,))])
    u, i = torch.randn(n_u, 8), torch.randn(n_i, 8)
    a = FullRankingEvaluator(train, test, n_u, n_i, batch_size=7).evaluate(u, i)
    b = FullRankingEvaluator(train, test, n_u, n_i, batch_size=1000).evaluate(u, i)
    assert a == pytest.approx(b)
    assert set(a) == {f"{m}@{k}" for m in ("recall", "ndcg", "precision", "map") for k in (5, 10, 20, 50)}


def test_training_items_never_recommended():
    torch.manual_seed(0)
    n_u, n_i = 5, 30
    train = torch.stack([torch.arange(5).repeat_interleave(10), torch.randint(0, n_i, (50,))])
    test = torch.tensor([[0, 1, 2, 3, 4], [0, 1, 2, 3, 4]])
    ev = FullRankingEvaluator(train, test, n_u, n_i, ks=(5,))
    scores = ev.scores(torch.randn(n_u, 4), torch.randn(n_i, 4), ev.users)
    top = torch.topk(scores, 5).indices
    for row, user in enumerate(ev.users.tolist()):
        seen = set(train[1][train[0] == user].tolist())
        assert not seen & set(top[row].tolist())


def test_evaluation_users_excludes_cold_users():
    train = torch.tensor([[0, 1], [0, 0]])
    target = torch.tensor([[1, 2, 3], [1, 1, 1]])
    assert evaluation_users(train, target, 4).tolist() == [1]


def test_bad_ks():
    with pytest.raises(ValueError, match="ks"):
        FullRankingEvaluator(torch.zeros(2, 1, dtype=torch.long), torch.zeros(2, 1, dtype=torch.long), 1, 1, ks=(0,))


def test_per_user_metrics_average_to_the_evaluated_metrics():
    torch.manual_seed(1)
    n_u, n_i = 50, 40
    train = torch.stack([torch.randint(0, n_u, (300,)), torch.randint(0, n_i, (300,))])
    test = torch.stack([torch.randint(0, n_u, (120,)), torch.randint(0, n_i, (120,))]).unique(dim=1)  # distinct pairs
    u, i = torch.randn(n_u, 8), torch.randn(n_i, 8)
    ev = FullRankingEvaluator(train, test, n_u, n_i, ks=(5, 20), batch_size=7)
    means = ev.evaluate(u, i)
    for k in (5, 20):
        per = ev.per_user(u, i, k=k)
        assert torch.equal(per["users"], ev.users) and per["recall"].shape == ev.users.shape
        assert float(per["recall"].mean()) == pytest.approx(means[f"recall@{k}"], abs=1e-6)
        assert float(per["ndcg"].mean()) == pytest.approx(means[f"ndcg@{k}"], abs=1e-6)
    with pytest.raises(ValueError, match="k must be"):
        ev.per_user(u, i, k=0)


def test_per_user_metrics_match_hand_computation():
    item_emb = torch.eye(6)
    scores = torch.tensor([[0.1, 0.5, 0.4, 0.3, 0.2, 0.9], [0.9, 0.1, 0.2, 0.8, 0.3, 0.95]])
    train = torch.tensor([[0, 0, 1], [5, 0, 2]])
    test = torch.tensor([[0, 0, 1, 1, 1], [2, 4, 0, 4, 1]])
    per = FullRankingEvaluator(train, test, 2, 6, ks=(3,)).per_user(scores, item_emb, k=3)
    m0, m1 = _hand_metrics([1, 2, 3, 4], {2, 4}, 3), _hand_metrics([5, 0, 3, 4, 1], {0, 4, 1}, 3)
    assert per["recall"].tolist() == pytest.approx([m0["recall"], m1["recall"]])
    assert per["ndcg"].tolist() == pytest.approx([m0["ndcg"], m1["ndcg"]])
