"""Row blocks for losses over a ``B x N`` score matrix that is never held whole."""
from __future__ import annotations

import torch

#: Elements of one ``rows x N`` score block on CPU (2 MiB in float32): blocks this size
#: stay in cache and far below glibc's mmap threshold, so the products and the passes
#: over them run at cache speed (for a whole 2,000 x 7,050 batch the score product
#: alone is about 4x slower per row, from fresh pages and cache misses).
CPU_BLOCK_ELEMENTS = 1 << 19
#: Elements of one score block on accelerators (256 MiB in float32; a loss keeps up to
#: four such buffers), a memory bound only: a 2,048-user batch over 7,050 items is one block.
DEVICE_BLOCK_ELEMENTS = 1 << 26


def block_rows(num_rows: int, num_columns: int, device: torch.device) -> int:
    """How many rows of a ``num_rows x num_columns`` score matrix to form at a time on ``device``."""
    budget = CPU_BLOCK_ELEMENTS if device.type == "cpu" else DEVICE_BLOCK_ELEMENTS
    return max(1, min(num_rows, budget // max(num_columns, 1)))
