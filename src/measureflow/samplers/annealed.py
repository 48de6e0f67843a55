"""Annealed Langevin dynamics for non-convex optimization: ULA with a rising inverse temperature."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import Tensor

from measureflow._core import check_count, check_positive
from measureflow.samplers.base import GradientCount, SamplerParams, full_gradient_cost, noise_like
from measureflow.targets import Target

__all__ = ["SCHEDULES", "AnnealedParams", "AnnealedState", "beta_at", "init", "step"]

SCHEDULES = ("linear", "geometric", "logarithmic")


@dataclass(frozen=True)
class AnnealedParams(SamplerParams):
    """``beta`` is the final inverse temperature, ``beta_start`` the first; ``schedule`` is one
    of ``SCHEDULES``; ``horizon`` the number of steps over which beta rises (the driver sets it
    to the run's total length when left ``None``)."""

    beta_start: float = 0.1
    schedule: str = "geometric"
    horizon: int | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "beta_start", check_positive(self.beta_start, "beta_start"))
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {', '.join(SCHEDULES)}, got {self.schedule!r}")
        if self.horizon is not None:
            object.__setattr__(self, "horizon", check_count(self.horizon, "horizon (a number of steps)"))


class AnnealedState(NamedTuple):
    position: Tensor  # (n_chains, d)
    energy: Tensor  # (n_chains,)
    grad: Tensor  # (n_chains, d)
    best_position: Tensor  # (n_chains, d), lowest-energy point visited by each chain
    best_energy: Tensor  # (n_chains,)
    step: int
    init_cost: GradientCount  # the gradient at the starting point


class AnnealedInfo(NamedTuple):
    beta: float  # beta_t, the inverse temperature of this step's noise
    n_grad: int  # gradient evaluations per chain in this step: one, at the new point
    n_data_grad: float  # their per-datum cost: N on a finite-sum target


def beta_at(params: AnnealedParams, t: int) -> float:
    """The inverse temperature at step t, with s = min(t / horizon, 1):

    linear: b0 + (b1 - b0) s;  geometric: b0 (b1 / b0)^s;
    logarithmic: b0 + (b1 - b0) log(1 + t) / log(1 + horizon), the slow classical schedule
    beta_t ~ log t (Geman & Geman 1984) rescaled to end at b1.
    """
    horizon = params.horizon or 1
    fraction = min(t / horizon, 1.0)
    start, end = params.beta_start, params.beta
    if params.schedule == "linear":
        return start + (end - start) * fraction
    if params.schedule == "geometric":
        return start * (end / start) ** fraction
    return start + (end - start) * math.log1p(min(t, horizon)) / math.log1p(horizon)


def init(
    position: Tensor, target: Target, params: AnnealedParams, *, generator: torch.Generator | None = None
) -> AnnealedState:
    energy, gradient = target.energy_and_grad(position)
    cost = GradientCount(1, full_gradient_cost(target))
    return AnnealedState(position, energy, gradient, position.clone(), energy.clone(), 0, cost)


def step(
    state: AnnealedState, target: Target, params: AnnealedParams, *, generator: torch.Generator | None = None
) -> tuple[AnnealedState, AnnealedInfo]:
    """X <- X - h grad L(X) + sqrt(2 h / beta_t) xi, keeping each chain's best point so far.

    At high temperature the noise carries chains over barriers; as beta_t grows the law of X
    concentrates on low-energy regions, exp(-beta_t L) tending to the global minimizers.
    """
    beta = beta_at(params, state.step)
    noise = noise_like(state.position, generator).mul_(math.sqrt(2 * params.step_size / beta))
    position = noise.add_(state.position).add_(state.grad, alpha=-params.step_size)
    energy, gradient = target.energy_and_grad(position)
    better = energy < state.best_energy
    best_position = torch.where(better[:, None], position, state.best_position)
    best_energy = torch.where(better, energy, state.best_energy)
    new_state = AnnealedState(position, energy, gradient, best_position, best_energy, state.step + 1,
                              state.init_cost)
    return new_state, AnnealedInfo(beta, 1, full_gradient_cost(target))


def configure(params: AnnealedParams, n_total_steps: int) -> AnnealedParams:
    if params.horizon is None:
        return dataclasses.replace(params, horizon=n_total_steps)
    return params
