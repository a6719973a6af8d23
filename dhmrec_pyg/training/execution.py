"""How a training step runs: the device, Adam's implementation and ``torch.compile``.

The optimizer is built here and only here (:func:`build_optimizer`). Its implementation and the
compile mode are the speed options of :class:`~dhmrec_pyg.training.config.TrainConfig`: they
change how fast a step runs, not what it computes (the same values to float tolerance; README,
*Speed options*).
"""
from __future__ import annotations

from typing import Callable, Dict, Iterable, Tuple

import torch

from dhmrec_pyg.training.config import ConfigError

__all__ = [
    "adam_flags",
    "adam_impl",
    "build_optimizer",
    "compile_loss",
    "load_optimizer_state",
    "resolve_device",
    "resolve_optimizer_impl",
]

LossFunction = Callable[..., Dict[str, torch.Tensor]]


def resolve_device(name: str) -> torch.device:
    """``"auto"`` picks CUDA when available, else the CPU.

    Raises:
        ConfigError: an unknown device, or CUDA asked for on a machine without it.
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"device: unknown device {name!r}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device: {name!r} requested but CUDA is not available")
    return dev


def _supported_devices(kind: str) -> Tuple[str, ...]:
    """Device types with PyTorch's ``fused`` or ``foreach`` optimizer kernels."""
    try:
        from torch.utils import _foreach_utils as fu

        get = fu._get_fused_kernels_supported_devices if kind == "fused" else fu._get_foreach_kernels_supported_devices
        return tuple(get())
    except (ImportError, AttributeError):  # pragma: no cover - a PyTorch without the private helpers
        return ("cuda", "cpu") if kind == "fused" else ("cuda",)


def resolve_optimizer_impl(impl: str, params: Iterable[torch.Tensor]) -> str:
    """The Adam implementation that ``impl`` (a :data:`~dhmrec_pyg.training.config.OPTIMIZER_IMPLS`
    value) means for ``params``: ``"loop"``, ``"foreach"`` or ``"fused"``.

    ``auto`` picks ``fused`` when every tensor is a floating-point tensor on a device with
    PyTorch's fused Adam kernel (CUDA and, since PyTorch 2.4, the CPU), else ``foreach`` when
    every tensor is on a device with multi-tensor kernels (CUDA), else ``loop``. On TikTok at one
    CPU thread the fused step was the fastest of the three (README, *Speed options*).

    Raises:
        ConfigError: ``fused`` asked for tensors that the fused kernel does not support, or an
            unknown ``impl``.
    """
    params = list(params)
    fused_ok = all(p.is_floating_point() and p.device.type in _supported_devices("fused") for p in params)
    if impl == "auto":
        if fused_ok:
            return "fused"
        return "foreach" if all(p.device.type in _supported_devices("foreach") for p in params) else "loop"
    if impl == "fused" and not fused_ok:
        devices = sorted({p.device.type for p in params})
        raise ConfigError(f"optimizer_impl: fused Adam is not available for {', '.join(devices)} parameters "
                          f"(it runs on {', '.join(_supported_devices('fused'))}, floating point only); "
                          "use foreach, loop or auto")
    if impl not in ("loop", "foreach", "fused"):
        raise ConfigError(f"optimizer_impl: unknown implementation {impl!r}; choose auto, loop, foreach or fused")
    return impl


def adam_flags(resolved: str) -> Dict[str, bool]:
    """``torch.optim.Adam``'s ``foreach`` / ``fused`` keywords for a resolved implementation
    (``"loop"``, ``"foreach"`` or ``"fused"``)."""
    return {"foreach": resolved == "foreach", "fused": resolved == "fused"}


def build_optimizer(params: Iterable[torch.nn.Parameter], lr: float, impl: str = "auto") -> torch.optim.Adam:
    """The trainer's Adam over ``params`` with learning rate ``lr``, in the implementation ``impl``
    (:func:`resolve_optimizer_impl`): the same update to float tolerance, in fewer launches.

    Args:
        params: the tensors to optimise (all on one device).
        lr: the learning rate.
        impl: ``"auto"``, ``"loop"`` (one tensor at a time), ``"foreach"`` (multi-tensor
            kernels) or ``"fused"`` (one fused kernel).

    Returns:
        A ``torch.optim.Adam`` with its ``foreach`` and ``fused`` flags set explicitly
        (:func:`adam_impl` reads the implementation back).
    """
    params = list(params)
    return torch.optim.Adam(params, lr=lr, **adam_flags(resolve_optimizer_impl(impl, params)))


def adam_impl(optimizer: torch.optim.Optimizer) -> str:
    """The implementation (``"loop"``, ``"foreach"`` or ``"fused"``) of an optimizer from
    :func:`build_optimizer`, read from its first parameter group's flags."""
    group = optimizer.param_groups[0]
    return "fused" if group.get("fused") else "foreach" if group.get("foreach") else "loop"


def load_optimizer_state(optimizer: torch.optim.Optimizer, state: Dict[str, object]) -> None:
    """Load a saved optimizer state, keeping ``optimizer``'s own implementation.

    A saved state's parameter groups carry the ``foreach`` / ``fused`` flags it was written
    with (a checkpoint of a ``loop`` run resumes ``fused``): the optimizer's flags are put back,
    and for the fused kernel the step counts become float32 on their parameter's device.
    """
    flags = adam_flags(adam_impl(optimizer))
    optimizer.load_state_dict(state)
    for group in optimizer.param_groups:
        group.update(flags)
    if flags["fused"]:  # the fused kernel keeps the step count as float32 on the parameter's device
        for param, param_state in optimizer.state.items():
            if torch.is_tensor(param_state.get("step")):
                param_state["step"] = param_state["step"].to(dtype=torch.float32, device=param.device)


def compile_loss(step: LossFunction, mode: str, backend: str) -> LossFunction:
    """``step`` (a model's ``loss``, or its DDP wrapper) as the trainer runs it: unchanged for
    ``mode == "none"``, else ``torch.compile(step)`` in that mode with that backend (autograd
    runs the backward through the compiled graphs; under DDP the compiler splits its graph at
    the gradient buckets, so the all-reduces still overlap the backward).

    Raises:
        ConfigError: ``backend`` is not a ``torch.compile`` backend.
    """
    if mode == "none":
        return step
    import torch._dynamo

    backends = torch._dynamo.list_backends(exclude_tags=())
    if backend not in backends:
        raise ConfigError(f"compile_backend: unknown torch.compile backend {backend!r}; "
                          f"choose one of {', '.join(backends)}")
    # Sparse products the compiler cannot trace run eagerly between graphs (graph breaks);
    # SparseAdjacency's products are custom operators it keeps in the graph.
    return torch.compile(step, mode=None if mode == "default" else mode, backend=backend)
