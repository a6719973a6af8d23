"""The sampled KL of (20)-(21) (``DHMRecConfig.kl_align`` = a number of items, or ``"auto"``)."""
import math

import pytest
import torch
from torch.testing import assert_close

import dhmrec_pyg.models.dhmrec as dhmrec_module
from dhmrec_pyg.data import make_synthetic
from dhmrec_pyg.errors import ConfigError
from dhmrec_pyg.models.dhmrec import DHMRec, DHMRecConfig
from dhmrec_pyg.nn import interaction_kl, kl_candidates, sampled_interaction_kl


def _inputs(users: int = 5, items: int = 11, dim: int = 4, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(n, dim, generator=gen, dtype=torch.float64).requires_grad_(True)
            for n in (users, items, users, items)]


def _value_and_grads(fn, inputs):
    leaves = [t.detach().clone().requires_grad_(True) for t in inputs]
    kl = fn(*leaves)
    return [kl.detach()] + list(torch.autograd.grad(2.5 * kl, leaves))


@pytest.mark.parametrize("samples", [9, 10, 50])
def test_sampling_every_other_item_is_the_exact_kl_with_its_gradients(samples):
    inputs = _inputs()
    positives = torch.tensor([7, 2])  # 9 other items: S >= 9 draws all of them
    exact = _value_and_grads(interaction_kl, inputs)
    sampled = _value_and_grads(lambda *x: sampled_interaction_kl(*x, positives, samples), inputs)
    for got, want in zip(sampled, exact):
        assert_close(got, want)
    assert exact[0] > 1e-3  # the distributions differ: the comparison is not of zeros


def test_every_item_a_positive_is_the_exact_kl():
    inputs = _inputs(items=6)
    exact = _value_and_grads(interaction_kl, inputs)
    sampled = _value_and_grads(lambda *x: sampled_interaction_kl(*x, torch.arange(6).flip(0), 3), inputs)
    for got, want in zip(sampled, exact):
        assert_close(got, want)


def test_candidates_are_the_positives_then_distinct_others_with_the_log_q_weight():
    torch.manual_seed(0)
    positives = torch.tensor([3, 8, 0])
    items, log_weight = kl_candidates(positives, 20, 4)
    assert items[:3].tolist() == [3, 8, 0]
    drawn = items[3:]
    assert drawn.numel() == 4 and drawn.unique().numel() == 4
    assert not set(drawn.tolist()) & {3, 8, 0}
    assert_close(log_weight, torch.tensor([0.0] * 3 + [math.log(17 / 4)] * 4))
    torch.manual_seed(0)
    assert torch.equal(kl_candidates(positives, 20, 4)[0], items)  # the global RNG seeds the draw
    with pytest.raises(ValueError, match="samples must be >= 1, got 0"):
        kl_candidates(positives, 20, 0)


def test_the_sampled_kl_estimates_the_exact_one():
    """Averaged over draws, the self-normalised estimate is near (21) (biased, towards less where the
    distributions are peaked, but consistent): embeddings of a moderate scale, KL about 0.6."""
    inputs = [0.6 * t.detach() for t in _inputs(users=6, items=400, dim=3, seed=1)]
    exact = float(interaction_kl(*inputs))
    torch.manual_seed(1)
    positives = torch.arange(0, 400, 40)
    draws = [float(sampled_interaction_kl(*inputs, positives, 120)) for _ in range(40)]
    mean = sum(draws) / len(draws)
    assert exact > 0.1 and abs(mean - exact) < 0.1 * exact
    assert max(draws) - min(draws) > 1e-6  # the draws differ: the estimate is sampled


@pytest.mark.parametrize("value", [0, 1, -5, "all", "exact", 2.5, None])
def test_bad_kl_align_values_are_refused_naming_the_field(value):
    with pytest.raises(ConfigError, match=r"DHMRecConfig\.kl_align must be"):
        DHMRecConfig(kl_align=value)


def test_kl_samples_follows_the_setting_and_auto_switches_above_the_constant():
    default = DHMRecConfig()
    assert default.kl_align == "auto" and default.kl_samples(dhmrec_module.KL_AUTO_ITEMS) is None
    assert default.kl_samples(10**7) == dhmrec_module.KL_AUTO_SAMPLES
    assert DHMRecConfig(kl_align=True).kl_samples(10**7) is None
    assert DHMRecConfig.paper().kl_align is True and DHMRecConfig.paper().kl_samples(10**7) is None
    assert DHMRecConfig(kl_align=False).kl_samples(10**7) is None
    assert DHMRecConfig(kl_align=64).kl_samples(5) == 64
    auto = DHMRecConfig(kl_align="auto")
    assert auto.kl_samples(dhmrec_module.KL_AUTO_ITEMS) is None
    assert auto.kl_samples(dhmrec_module.KL_AUTO_ITEMS + 1) == dhmrec_module.KL_AUTO_SAMPLES


def test_a_command_line_value_sets_the_number_of_samples():
    from dhmrec_pyg.training.config import TrainConfig, apply_overrides

    _, cfg = apply_overrides(TrainConfig(model="dhmrec"), {}, DHMRecConfig, ["kl_align=256"])
    assert cfg.kl_align == 256
    _, cfg = apply_overrides(TrainConfig(model="dhmrec"), {}, DHMRecConfig, ["kl_align=false"])
    assert cfg.kl_align is False


@pytest.fixture(scope="module")
def tiny_data():
    return make_synthetic("tiny", seed=0, n_users=20, n_items=24, n_interactions=115)


def _model(data, **options):
    torch.manual_seed(0)
    return DHMRec(data, DHMRecConfig(embedding_dim=8, knn_k=3, **options))


def test_model_loss_with_every_item_drawn_equals_the_exact_loss(tiny_data):
    data = tiny_data
    num_items = int(data["item"].num_nodes)
    exact, sampled = _model(data), _model(data, kl_align=num_items)
    users, pos, neg = torch.tensor([0, 1, 2, 1]), torch.tensor([1, 2, 3, 4]), torch.tensor([5, 0, 6, 7])
    want, got = exact.loss(users, pos, neg), sampled.loss(users, pos, neg)
    assert want.keys() == got.keys()
    for key in want:
        assert_close(got[key], want[key])
    grads_want = torch.autograd.grad(want["kl"], list(exact.parameters()), allow_unused=True)
    grads_got = torch.autograd.grad(got["kl"], list(sampled.parameters()), allow_unused=True)
    for g, w in zip(grads_got, grads_want):
        assert (g is None) == (w is None)
        if g is not None:
            assert_close(g, w)


def test_model_loss_with_few_samples_differs_and_consumes_the_global_rng(tiny_data):
    data = tiny_data
    exact, sampled = _model(data), _model(data, kl_align=2)
    users, pos, neg = torch.tensor([0, 1]), torch.tensor([1, 2]), torch.tensor([5, 0])
    torch.manual_seed(3)
    first = sampled.loss(users, pos, neg)["kl"]
    torch.manual_seed(3)
    assert_close(sampled.loss(users, pos, neg)["kl"], first)  # reproducible from the global seed
    state = torch.get_rng_state()
    exact.loss(users, pos, neg)
    assert torch.equal(torch.get_rng_state(), state)  # the exact KL draws nothing
    assert not torch.allclose(first, exact.loss(users, pos, neg)["kl"])
