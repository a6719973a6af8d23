"""Where a result was computed: the versions and machine every result records."""
from __future__ import annotations

import os
import platform
from typing import Dict

import numpy as np
import torch

__all__ = ["environment"]


def _cpu_name() -> str:
    """The CPU's model name (from ``/proc/cpuinfo`` where there is one)."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return cpu


def environment() -> Dict[str, str]:
    """Versions and machine description stored with every result."""
    import torch_geometric

    try:
        import faiss  # noqa: F401

        faiss_version = getattr(faiss, "__version__", "unknown")
    except ImportError:  # pragma: no cover - faiss is a required dependency
        faiss_version = "missing"
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_geometric": torch_geometric.__version__,
        "faiss": faiss_version,
        "numpy": np.__version__,
        "cpu": _cpu_name(),
        "cores": str(os.cpu_count()),
        "torch_threads": str(torch.get_num_threads()),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none",
    }
