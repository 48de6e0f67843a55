"""Torch's intra-op thread count, set for a block and restored after it."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch

__all__ = ["torch_threads"]


@contextmanager
def torch_threads(count: int, device: torch.device | str = "cpu") -> Iterator[None]:
    """Run the block with ``count`` intra-op threads on the CPU (no change for other devices).

    Why: loops of many small tensor operations (a training step on a minibatch) gain little from
    a second thread, and on a machine where another process is busy the threads wait for each
    other at every operation's barrier: measured here, CGNN's training ran 3x slower beside one
    spinning process with torch's 2 threads, and at the same speed with 1.
    """
    if torch.device(device).type != "cpu":
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(min(count, previous))
    try:
        yield
    finally:
        torch.set_num_threads(previous)
