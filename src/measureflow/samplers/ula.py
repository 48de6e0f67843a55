"""The unadjusted Langevin algorithm (ULA), the Euler-Maruyama scheme of gradient Langevin dynamics."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import Tensor

from measureflow.samplers.base import SamplerParams, full_gradient_cost, noise_like
from measureflow.targets import Target

__all__ = ["ULAInfo", "ULAParams", "ULAState", "draw", "init", "step", "transition"]


@dataclass(frozen=True)
class ULAParams(SamplerParams):
    """Step size h and inverse temperature beta of X <- X - h grad L(X) + sqrt(2 h / beta) xi."""


class ULAState(NamedTuple):
    position: Tensor  # (n_chains, d)


class ULAInfo(NamedTuple):
    n_grad: int  # gradient evaluations per chain in this step: one exact gradient
    n_data_grad: float  # their per-datum cost: N on a finite-sum target


def init(
    position: Tensor, target: Target, params: ULAParams, *, generator: torch.Generator | None = None
) -> ULAState:
    return ULAState(position)


def draw(state: ULAState, generator: torch.Generator | None = None) -> tuple[Tensor]:
    """The random numbers one :func:`step` consumes, in the order it draws them: xi ~ N(0, I).

    Uses ``state`` only for shapes, dtype and device (the driver may draw ahead of the chain).
    """
    return (noise_like(state.position, generator),)


def transition(
    state: ULAState, randoms: tuple[Tensor], target: Target, step_size: float | Tensor, beta: float
) -> tuple[ULAState, ULAInfo]:
    """The deterministic part of :func:`step` given its random numbers ``randoms = (xi,)``.

    Pure (``xi`` is not modified); ``step_size`` may be a float or a 0-d tensor, so the driver
    can compile this function once and run it under a changing step size. With
    ``step(state) == transition(state, draw(state))`` the compiled and eager chains coincide
    up to floating-point rounding.
    """
    (noise,) = randoms
    scale = (
        math.sqrt(2 * step_size / beta) if isinstance(step_size, float)
        else torch.sqrt(2 * step_size / beta)
    )
    gradient = target.grad_energy(state.position)
    # In place on one fresh buffer: xi itself is left untouched.
    position = noise * scale
    position.add_(state.position).sub_(gradient * step_size)
    return ULAState(position), ULAInfo(1, full_gradient_cost(target))


def step(
    state: ULAState, target: Target, params: ULAParams, *, generator: torch.Generator | None = None
) -> tuple[ULAState, ULAInfo]:
    """One ULA step for every chain: X <- X - h grad L(X) + sqrt(2 h / beta) xi, xi ~ N(0, I).

    The discretization of dX = -grad L dt + sqrt(2 / beta) dB; its stationary law is
    exp(-beta L) up to an O(h) bias (for a Gaussian target N(0, s^2) at beta = 1 the stationary
    variance is s^2 / (1 - h / (2 s^2))).
    """
    return transition(state, draw(state, generator), target, params.step_size, params.beta)
