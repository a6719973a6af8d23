"""Speed options of the trainer: Adam's implementation (loop / foreach / fused / auto) and the
optional compiled step (``compile``), with the same values as the default eager loop."""
from __future__ import annotations

import copy
import time
from dataclasses import replace

import pytest
import torch
import torch._dynamo
import torch._inductor.config
from torch.testing import assert_close

from dhmrec_pyg.cli import main
from dhmrec_pyg.data import make_synthetic
from dhmrec_pyg.models import MODELS
from dhmrec_pyg.training import TrainConfig
from dhmrec_pyg.training.config import (
    ConfigError,
    apply_overrides,
    build_dataclass,
    dump_config,
    format1_text,
    identity_text,
)
from dhmrec_pyg.training.trainer import (
    Trainer,
    TrainingInterrupted,
    build_optimizer,
    resolve_optimizer_impl,
)

from test_models_common import build as _build  # every model, small and seeded

MODEL_NAMES = ("dhmrec", "freedom")


@pytest.fixture(scope="module")
def data():
    return make_synthetic("tiny", seed=0, n_users=60, n_items=40, n_interactions=600)


def _batch(data, size=32, seed=0):
    gen = torch.Generator().manual_seed(seed)
    ei = data["user", "interacts", "item"].edge_index
    pick = torch.randint(0, ei.size(1), (size,), generator=gen)
    return ei[0, pick], ei[1, pick], torch.randint(0, int(data["item"].num_nodes), (size,), generator=gen)


# ---------------------------------------------------------------- Adam implementations
@pytest.mark.parametrize("name", MODEL_NAMES)
def test_every_adam_implementation_trains_the_parameters_the_loop_trains(name, data):
    model = _build(name, data)
    model.train()
    model.on_epoch_start(0, torch.Generator().manual_seed(0))
    start = copy.deepcopy(model.state_dict())
    batches = [_batch(data, seed=s) for s in range(4)]
    trained = {}
    for impl in ("loop", "foreach", "fused", "auto"):
        model.load_state_dict(start)
        optimizer = build_optimizer(model.parameters(), lr=1e-2, impl=impl)
        for u, p, n in batches:
            optimizer.zero_grad(set_to_none=True)
            model.loss(u, p, n)["loss"].backward()
            optimizer.step()
        trained[impl] = {k: v.clone() for k, v in model.state_dict().items()}
    for impl in ("foreach", "fused", "auto"):
        for key, want in trained["loop"].items():
            assert_close(trained[impl][key], want, msg=f"{impl}: {key}")
    assert any(not torch.equal(trained["loop"][k], start[k]) for k in start)  # it did train


def test_auto_resolves_to_fused_on_the_cpu_and_fused_needs_floating_point():
    cpu = [torch.nn.Parameter(torch.zeros(3))]
    assert resolve_optimizer_impl("auto", cpu) == "fused"
    assert resolve_optimizer_impl("loop", cpu) == "loop"
    assert resolve_optimizer_impl("foreach", cpu) == "foreach"
    ints = [torch.zeros(3, dtype=torch.int64)]
    assert resolve_optimizer_impl("auto", ints) == "loop"  # neither kernel on the CPU for them
    with pytest.raises(ConfigError, match="fused Adam is not available"):
        resolve_optimizer_impl("fused", ints)
    with pytest.raises(ConfigError, match="optimizer_impl"):
        resolve_optimizer_impl("bogus", cpu)
    optimizer = build_optimizer(cpu, lr=1e-3)
    assert optimizer.param_groups[0]["fused"] is True and optimizer.param_groups[0]["foreach"] is False


def test_options_parse_and_are_not_part_of_a_runs_identity():
    with pytest.raises(ConfigError, match="optimizer_impl must be one of"):
        build_dataclass(TrainConfig, {"optimizer_impl": "fast"}, "training")
    for value, mode in ((True, "default"), ("true", "default"), (False, "none"), ("reduce-overhead",
                                                                               "reduce-overhead")):
        assert build_dataclass(TrainConfig, {"compile": value}, "training").compile == mode
    cfg, _ = apply_overrides(TrainConfig(), {}, MODELS["lightgcn"].config_class,
                             ["compile=true", "optimizer_impl=loop"])
    assert (cfg.compile, cfg.optimizer_impl) == ("default", "loop")
    with pytest.raises(ConfigError, match="compile must be"):
        build_dataclass(TrainConfig, {"compile": "fastest"}, "training")
    model_cfg = MODELS["lightgcn"].config_class()
    # config.yaml states them; a format-1 text (what checkpoints are tied to) leaves them out at their defaults.
    assert "optimizer_impl: auto" in dump_config(TrainConfig(), model_cfg)
    text = format1_text(TrainConfig(), model_cfg)
    assert "optimizer_impl" not in text and "compile" not in text
    assert "compile: default" in dump_config(cfg, model_cfg) and "optimizer_impl: loop" in dump_config(cfg, model_cfg)
    # How a step runs is not what a checkpoint is tied to.
    assert identity_text(cfg, model_cfg) == identity_text(TrainConfig(), model_cfg)


def test_a_checkpoint_written_with_the_loop_resumes_with_fused_adam(data, tmp_path):
    cfg = TrainConfig(model="freedom", epochs=2, batch_size=128, progress=False, device="cpu", ks=[10, 20],
                      optimizer_impl="loop")
    first = Trainer(_build("freedom", data), data, cfg, tmp_path / "run")
    first.request_stop()  # checkpoint after the first mini-batch
    with pytest.raises(TrainingInterrupted):
        first.fit()
    resumed = Trainer(_build("freedom", data), data, replace(cfg, optimizer_impl="fused"), tmp_path / "run")
    result = resumed.fit(resume=True)
    assert resumed.optimizer_impl == "fused" and result["execution"] == {"optimizer_impl": "fused", "compile": "none"}
    assert all(g["fused"] and not g["foreach"] for g in resumed.optimizer.param_groups)
    steps = [s["step"] for s in resumed.optimizer.state.values()]
    assert steps and all(s.dtype == torch.float32 for s in steps)
    straight = Trainer(_build("freedom", data), data, cfg).fit()
    assert result["valid"] == pytest.approx(straight["valid"], abs=1e-6)


# ---------------------------------------------------------------- compiled step
@pytest.mark.parametrize("name", MODEL_NAMES)
def test_compiled_loss_equals_eager_and_an_epoch_trains_compiled(name, data):
    """torch.compile (inductor, the default backend) of the loss: the same terms and gradients as
    eager on a small graph, then a training epoch through the compiled function."""
    torch._dynamo.reset()
    model = _build(name, data)
    # one mini-batch per epoch: the epoch calls the graph compiled for the check below
    cfg = TrainConfig(model=name, epochs=1, batch_size=4096, progress=False, device="cpu", ks=[10, 20],
                      compile="default")
    trainer = Trainer(model, data, cfg)
    assert trainer._loss is not model.loss
    model.train()
    model.on_epoch_start(0, torch.Generator().manual_seed(cfg.seed))
    u, p, n = next(iter(trainer.sampler.epoch(torch.Generator().manual_seed(cfg.seed))))
    with torch._inductor.config.patch(fallback_random=True):  # random ops draw as eager does
        torch.manual_seed(1)
        compiled = trainer._loss(u, p, n)
        compiled["loss"].backward()
        grads = {k: v.grad.clone() for k, v in model.named_parameters() if v.grad is not None}
        model.zero_grad(set_to_none=True)
        torch.manual_seed(1)
        eager = model.loss(u, p, n)
        eager["loss"].backward()
    assert set(compiled) == set(eager)
    for term in eager:
        assert_close(compiled[term], eager[term], rtol=1e-5, atol=1e-6, msg=term)
    assert grads and set(grads) == {k for k, v in model.named_parameters() if v.grad is not None}
    for key, grad in grads.items():
        assert_close(grad, dict(model.named_parameters())[key].grad, rtol=1e-4, atol=1e-6, msg=key)
    model.zero_grad(set_to_none=True)
    before = model.item_emb.weight.detach().clone()
    start = time.perf_counter()
    losses, seconds = trainer.train_epoch(0, torch.Generator().manual_seed(cfg.seed))
    wall = time.perf_counter() - start
    assert torch.isfinite(torch.tensor(losses["loss"])) and 0.05 * wall < seconds <= wall
    assert not torch.equal(before, model.item_emb.weight)


def test_compile_needs_a_known_backend(data):
    cfg = TrainConfig(model="freedom", epochs=1, progress=False, device="cpu", compile="default",
                      compile_backend="no-such-backend")
    with pytest.raises(ConfigError, match="compile_backend"):
        Trainer(_build("freedom", data), data, cfg)


def test_cli_compile_flag_trains_compiled_and_resume_accepts_it(tmp_path):
    out = tmp_path / "run"
    common = ["--data-root", str(tmp_path / "data"), "--quiet", "--device", "cpu"]
    rc = main(["train", *common, "--out", str(out), "--model", "lightgcn", "--dataset", "synthetic-tiny",
               "--epochs", "1", "--compile", "--set", "compile_backend=aot_eager"])
    assert rc == 0 and (out / "metrics.json").is_file()
    text = (out / "config.yaml").read_text()
    assert "compile: default" in text and "compile_backend: aot_eager" in text
    # the compiled run resumes eagerly (--compile none): how a step runs is not part of its identity
    assert main(["train", "--resume", str(out), "--quiet", "--compile", "none"]) == 0


def test_recompute_is_no_part_of_a_runs_identity_and_a_checkpoint_resumes_with_it(data, tmp_path):
    """GraphConfig.recompute changes memory and time only: a run interrupted without it resumes with it,
    and ends where a straight run ends."""
    from dhmrec_pyg.models import DHMRec, DHMRecConfig
    from dhmrec_pyg.models.base import GraphConfig

    model_cfg = DHMRecConfig(embedding_dim=8, knn_k=4)

    def build(recompute):
        torch.manual_seed(0)
        return DHMRec(data, model_cfg, GraphConfig(recompute=recompute))

    cfg = TrainConfig(model="dhmrec", epochs=2, batch_size=128, progress=False, device="cpu", ks=[10, 20],
                      graph=GraphConfig(recompute=False))
    on = replace(cfg, graph=GraphConfig(recompute=True))
    assert identity_text(cfg, model_cfg) == identity_text(on, model_cfg) == identity_text(TrainConfig(
        model="dhmrec", epochs=2, batch_size=128, ks=[10, 20]), model_cfg)
    assert "recompute" not in identity_text(on, model_cfg) and "recompute: true" in dump_config(on, model_cfg)
    first = Trainer(build(False), data, cfg, tmp_path / "run")
    first.request_stop()
    with pytest.raises(TrainingInterrupted):
        first.fit()
    result = Trainer(build(True), data, on, tmp_path / "run").fit(resume=True)
    straight = Trainer(build(False), data, cfg).fit()
    assert result["valid"] == pytest.approx(straight["valid"], abs=1e-6)
