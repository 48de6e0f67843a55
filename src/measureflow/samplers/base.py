"""What every sampler shares: the registry entry, parameter validation, gradient estimates and
their cost, and the records the driver and the step-size search exchange."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
from torch import Tensor

from measureflow._core import check_positive
from measureflow.targets import FiniteSumTarget, Target

__all__ = [
    "DivergenceError",
    "GradientCount",
    "SamplerParams",
    "SamplerSpec",
    "StepSizeSearch",
    "full_gradient_cost",
    "gradient_estimate",
    "minibatch_cost",
    "noise_like",
]


class DivergenceError(ValueError):
    """Chains of a sampling run became NaN or infinite: their positions, their energies or
    gradients, or (MALA) proposals where the target returned NaN.

    A ``ValueError``, so code that catches bad-argument errors also catches it; the message names
    the sampler, how many chains and which, by which step, the step size and beta, and what to
    change (a smaller step size; a larger beta when the noise scale sqrt(2 h / beta) overflowed).
    """


class GradientCount(NamedTuple):
    """Gradient evaluations per chain: what a kernel reports for one step (in its ``Info``) or
    for its ``init`` (in its ``State``'s ``init_cost``), and what the driver sums.

    ``n_grad``: gradient estimates of L, exact or minibatch, each counting 1 however many
    minibatch terms it sums (SGLD-CV's control variate, two minibatch gradients on one
    minibatch, is one estimate). ``n_data_grad``: the per-datum gradients those estimates cost
    on a :class:`~measureflow.targets.FiniteSumTarget` (a full gradient costs N, a minibatch of
    b terms costs b); the driver reports their sum only for finite-sum targets.
    """

    n_grad: int = 0
    n_data_grad: float = 0



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
    ``step(state, target, params, *, generator) -> (State, Info)``. Every ``Info`` carries the
    step's gradient cost per chain as fields ``n_grad`` and ``n_data_grad`` (see
    :class:`GradientCount`); a ``State`` whose ``init`` evaluated gradients carries that cost
    as ``init_cost`` (a :class:`GradientCount`). The driver sums them. ``metropolis`` samplers
    report ``Info.is_accepted`` and ``Info.acceptance_prob`` (both ``(n_chains,)``), recorded
    at the kept steps; ``target_acceptance`` (when set) makes the driver adapt the step size
    toward it during burn-in. Optional ``Info`` fields the driver reads: ``nonfinite_proposal``
    ``(n_chains,)`` bool, a rejected proposal at which the target was undefined (raised as a
    :class:`DivergenceError` at the next check), and ``is_divergent`` ``(n_chains,)`` bool, a
    divergent transition (e.g. HMC's energy error above a threshold), recorded per kept draw
    in ``SampleResult.divergence_trace`` and counted in its warnings. A sampler whose step splits into
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
    configure: Callable[[Any, int], Any] | None = None
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
    """Per-datum gradients one :func:`gradient_estimate` costs for each chain: min(b, N)."""
    if isinstance(target, FiniteSumTarget):
        return float(min(batch_size, target.n_terms))
    return 1.0


def full_gradient_cost(target: Target) -> int:
    """Per-datum gradients one exact gradient costs for each chain: N on a finite sum, else 1."""
    return target.n_terms if isinstance(target, FiniteSumTarget) else 1


@dataclass(frozen=True)
class StepSizeSearch:
    """The grid of step sizes tried, each pilot's KSD^2 (inf where it diverged), the choice.

    ``ksd_squared`` holds unbiased (U-statistic) estimates: near zero they can be negative.
    Made by :func:`measureflow.samplers.autostep.search_step_size`; defined here so that the
    driver's result can hold it without importing the search.
    """

    grid: tuple[float, ...]
    ksd_squared: tuple[float, ...]
    step_size: float
    n_pilot_chains: int
    n_pilot_steps: int
    n_grad_evals: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "grid": list(self.grid),
            "ksd_squared": [value if math.isfinite(value) else None for value in self.ksd_squared],
            "step_size": self.step_size,
            "n_pilot_chains": self.n_pilot_chains,
            "n_pilot_steps": self.n_pilot_steps,
            "n_grad_evals": self.n_grad_evals,
        }
