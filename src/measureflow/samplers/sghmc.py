"""Stochastic gradient Hamiltonian Monte Carlo (SGHMC) with friction (Chen, Fox & Guestrin 2014)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import Tensor

from measureflow._core import check_count, check_positive
from measureflow.samplers.base import (
    SamplerParams,
    gradient_estimate,
    minibatch_cost,
    noise_like,
)
from measureflow.samplers.sgld import SGLDInfo
from measureflow.targets import Target

__all__ = ["SGHMCParams", "SGHMCState", "init", "step"]


@dataclass(frozen=True)
class SGHMCParams(SamplerParams):
    """Step size h, inverse temperature beta, friction gamma and minibatch size."""

    friction: float = 1.0
    batch_size: int = 32

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "friction", check_positive(self.friction, "friction"))
        object.__setattr__(self, "batch_size", check_count(self.batch_size, "batch_size"))
        if self.friction * self.step_size >= 1:
            raise ValueError(
                f"friction * step_size must be below 1 for a damped momentum update, got "
                f"{self.friction} * {self.step_size}; lower the step size or the friction"
            )


class SGHMCState(NamedTuple):
    position: Tensor  # (n_chains, d)
    momentum: Tensor  # (n_chains, d)
    step: int


def init(
    position: Tensor, target: Target, params: SGHMCParams, *, generator: torch.Generator | None = None
) -> SGHMCState:
    """Momenta start from their stationary law N(0, I / beta)."""
    momentum = noise_like(position, generator) / math.sqrt(params.beta)
    return SGHMCState(position, momentum, 0)


def step(
    state: SGHMCState, target: Target, params: SGHMCParams, *, generator: torch.Generator | None = None
) -> tuple[SGHMCState, SGLDInfo]:
    """One SGHMC step, the Euler scheme of the underdamped Langevin SDE
    dX = R dt, dR = -grad L(X) dt - gamma R dt + sqrt(2 gamma / beta) dB:

        R <- (1 - h gamma) R - h g(X) + sqrt(2 gamma h / beta) xi,   X <- X + h R,

    g an unbiased minibatch gradient (exact on non-finite-sum targets). The joint stationary law
    is approximately exp(-beta (L(x) + |r|^2 / 2)); the gradient-noise estimate B_hat is taken as
    0, which the friction dominates for small h.

    References: Chen, Fox & Guestrin (2014), ICML, eq. (15) in physical units.
    """
    h, gamma = params.step_size, params.friction
    gradient, _ = gradient_estimate(target, state.position, params.batch_size, generator)
    noise = noise_like(state.position, generator).mul_(math.sqrt(2 * gamma * h / params.beta))
    momentum = noise.add_(state.momentum, alpha=1 - h * gamma).add_(gradient, alpha=-h)
    position = state.position + h * momentum
    info = SGLDInfo(h, 1, minibatch_cost(target, params.batch_size))
    return SGHMCState(position, momentum, state.step + 1), info
