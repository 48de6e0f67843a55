"""What every sampler shares: the registry entry, parameter validation and gradient estimates."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from measureflow._core import check_positive
from measureflow.targets import FiniteSumTarget, Target

__all__ = ["SamplerParams", "SamplerSpec", "gradient_estimate", "noise_like"]


@dataclass(frozen=True)
class SamplerParams:
    """Parameters every Langevin-type sampler has: the step size h and inverse temperature beta."""

    step_size: float
    beta: float = 1.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "step_size", check_positive(self.step_size, "step_size"))
        object.__setattr__(self, "beta", check_positive(self.beta, "beta"))

    def replace(self, **changes: Any) -> SamplerParams:
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True)
class SamplerSpec:
    """A registry entry: one sampler's parameter class and its pure ``init``/``step`` pair.

    ``init(position, target, params, *, generator) -> State`` and
    ``step(state, target, params, *, generator) -> (State, Info)``. ``metropolis`` samplers
    report ``Info.is_accepted``; ``target_acceptance`` (when set) makes the driver adapt the
    step size toward it during burn-in. ``data_grads_per_step`` counts per-datum gradient
    evaluations per chain and step on a finite-sum target (``None``: one full gradient);
    ``init_grads`` the gradient evaluations ``init`` spends per chain (a mode search counts all
    of its evaluations) and ``init_data_grads`` their per-datum cost on a finite-sum target
    (default: each is a full gradient, N). A sampler whose step splits into
    ``draw(state, generator)`` (its random numbers, in the order ``step`` draws them) and a
    pure ``transition(state, randoms, target, step_size, beta)`` declares both: with
    ``compile=True`` the driver compiles the transition into one graph and draws the noise
    outside it.
    """

    name: str
    params: type[SamplerParams]
    init: Callable[..., Any]
    step: Callable[..., tuple[Any, Any]]
    description: str
    metropolis: bool = False
    target_acceptance: float | None = None
    data_grads_per_step: Callable[[Target, Any], float] | None = None
    configure: Callable[[Any, int], Any] | None = None
    init_grads: Callable[[Any], int] = lambda state: 0
    init_data_grads: Callable[[Any, Target, Any], float] | None = None
    draw: Callable[..., Any] | None = None
    transition: Callable[..., Any] | None = None


def noise_like(x: Tensor, generator: torch.Generator | None) -> Tensor:
    """Standard normal noise shaped like ``x``."""
    return torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)


def gradient_estimate(
    target: Target, x: Tensor, batch_size: int, generator: torch.Generator | None
) -> tuple[Tensor, Tensor | None]:
    """An unbiased estimate of grad L(x) and the minibatch used (``None`` for a full gradient).

    Finite-sum targets get independent minibatches of ``batch_size`` terms per chain; other
    targets (or ``batch_size >= n_terms``) get the exact gradient.
    """
    if isinstance(target, FiniteSumTarget) and batch_size < target.n_terms:
        index = target.sample_index(x.shape[0], batch_size, generator)
        return target.minibatch_grad_energy(x, index), index
    return target.grad_energy(x), None


def minibatch_cost(target: Target, batch_size: int) -> float:
    """Per-datum gradients one :func:`gradient_estimate` costs for each chain."""
    if isinstance(target, FiniteSumTarget):
        return float(min(batch_size, target.n_terms))
    return 1.0


def check_batch_size(batch_size: int) -> int:
    if int(batch_size) != batch_size or int(batch_size) < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    return int(batch_size)
