"""execution.py: the device, the one place the optimizer is built, loading its state, the compile choice."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from dhmrec_pyg.training.config import ConfigError
from dhmrec_pyg.training.execution import (
    adam_impl,
    build_optimizer,
    compile_loss,
    load_optimizer_state,
    resolve_device,
)


@pytest.mark.parametrize("impl", ["loop", "foreach", "fused"])
def test_build_optimizer_sets_its_flags_and_adam_impl_reads_them(impl):
    params = list(nn.Linear(2, 2).parameters())
    optimizer = build_optimizer(params, lr=0.01, impl=impl)
    group = optimizer.param_groups[0]
    assert adam_impl(optimizer) == impl and group["lr"] == 0.01
    assert (group["foreach"], group["fused"]) == (impl == "foreach", impl == "fused")


def test_a_loop_state_loads_into_a_fused_optimizer_as_fused():
    model = nn.Linear(3, 1)
    loop = build_optimizer(model.parameters(), 0.1, "loop")
    model(torch.ones(1, 3)).sum().backward()
    loop.step()
    fused = build_optimizer(model.parameters(), 0.1, "fused")
    load_optimizer_state(fused, loop.state_dict())
    assert adam_impl(fused) == "fused" and all(g["fused"] and not g["foreach"] for g in fused.param_groups)
    steps = [s["step"] for s in fused.state.values()]
    assert steps and all(s.dtype == torch.float32 and float(s) == 1.0 for s in steps)


def test_compile_none_keeps_the_function_and_an_unknown_backend_is_named():
    def loss(u, p, n):
        return {"loss": u.sum()}

    assert compile_loss(loss, "none", "no-such-backend") is loss
    with pytest.raises(ConfigError, match="compile_backend: unknown torch.compile backend 'no-such-backend'"):
        compile_loss(loss, "default", "no-such-backend")


def test_resolve_device_names_a_bad_device():
    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(ConfigError, match="device: unknown device 'gpu0'"):
        resolve_device("gpu0")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="CUDA is not available"):
            resolve_device("cuda")
        assert resolve_device("auto") == torch.device("cpu")
