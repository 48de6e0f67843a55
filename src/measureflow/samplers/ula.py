"""The unadjusted Langevin algorithm (ULA), the Euler-Maruyama scheme of gradient Langevin dynamics."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import Tensor

from measureflow.samplers.base import SamplerParams, noise_like
from measureflow.targets import Target

__all__ = ["ULAInfo", "ULAParams", "ULAState", "init", "step"]


@dataclass(frozen=True)
class ULAParams(SamplerParams):
    """Step size h and inverse temperature beta of X <- X - h grad L(X) + sqrt(2 h / beta) xi."""


class ULAState(NamedTuple):
    position: Tensor  # (n_chains, d)


class ULAInfo(NamedTuple):
    pass


def init(
    position: Tensor, target: Target, params: ULAParams, *, generator: torch.Generator | None = None
) -> ULAState:
    return ULAState(position)


def step(
    state: ULAState, target: Target, params: ULAParams, *, generator: torch.Generator | None = None
) -> tuple[ULAState, ULAInfo]:
    """One ULA step for every chain: X <- X - h grad L(X) + sqrt(2 h / beta) xi, xi ~ N(0, I).

    The discretization of dX = -grad L dt + sqrt(2 / beta) dB; its stationary law is
    exp(-beta L) up to an O(h) bias (for a Gaussian target N(0, s^2) at beta = 1 the stationary
    variance is s^2 / (1 - h / (2 s^2))).
    """
    gradient = target.grad_energy(state.position)
    noise = noise_like(state.position, generator)
    position = noise.mul_(math.sqrt(2 * params.step_size / params.beta))
    position.add_(state.position).add_(gradient, alpha=-params.step_size)
    return ULAState(position), ULAInfo()
