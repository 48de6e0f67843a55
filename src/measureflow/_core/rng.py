"""Explicit randomness: generators are passed around, never the global seed."""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["make_generator", "randn"]


def make_generator(seed: int | None, device: torch.device | str = "cpu") -> torch.Generator:
    """A ``torch.Generator`` on ``device`` seeded with ``seed`` (a fresh random seed if ``None``)."""
    generator = torch.Generator(device=device)
    if seed is None:
        generator.seed()
    else:
        if int(seed) < 0:
            raise ValueError(f"seed must be a non-negative integer, got {seed}")
        generator.manual_seed(int(seed))
    return generator


def randn(like: Tensor, generator: torch.Generator | None) -> Tensor:
    """Standard normal noise with the shape, dtype and device of ``like``."""
    return torch.randn(like.shape, generator=generator, dtype=like.dtype, device=like.device)
