"""Explicit randomness: generators are passed around, never the global seed."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import torch
from torch import Tensor

__all__ = ["make_generator", "randn", "seeded_build"]

Built = TypeVar("Built")


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


def seeded_build(build: Callable[[], Built], generator: torch.Generator | None) -> Built:
    """Call ``build()`` (e.g. a network constructor, whose ``nn.init`` draws use the global CPU RNG)
    with that RNG seeded from ``generator``, inside ``torch.random.fork_rng`` so the caller's global
    state is untouched. One draw of ``generator`` gives the seed, so the generator advances the
    same way whatever ``build`` does; ``generator=None`` builds from the global RNG as it is.

    >>> g = torch.Generator().manual_seed(0)
    >>> a = seeded_build(lambda: torch.nn.Linear(2, 2), g)
    >>> b = seeded_build(lambda: torch.nn.Linear(2, 2), torch.Generator().manual_seed(0))
    >>> bool((a.weight == b.weight).all())
    True
    """
    if generator is None:
        return build()
    seed = int(torch.randint(0, 2**62, (1,), generator=generator, device=generator.device))
    with torch.random.fork_rng(devices=[]):  # the CPU only: CUDA RNGs are neither forked nor used
        torch.default_generator.manual_seed(seed)
        return build()
