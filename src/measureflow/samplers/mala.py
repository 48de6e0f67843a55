"""The Metropolis-adjusted Langevin algorithm (MALA): ULA proposals with an exact accept/reject."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import Tensor

from measureflow.samplers.base import SamplerParams, noise_like
from measureflow.targets import Target

__all__ = ["MALAInfo", "MALAParams", "MALAState", "init", "step"]


@dataclass(frozen=True)
class MALAParams(SamplerParams):
    """Step size h and inverse temperature beta of the Langevin proposal."""


class MALAState(NamedTuple):
    position: Tensor  # (n_chains, d)
    energy: Tensor  # (n_chains,)
    grad: Tensor  # (n_chains, d), grad L at position


class MALAInfo(NamedTuple):
    acceptance_prob: Tensor  # (n_chains,)
    is_accepted: Tensor  # (n_chains,) bool


def init(
    position: Tensor, target: Target, params: MALAParams, *, generator: torch.Generator | None = None
) -> MALAState:
    energy, gradient = target.energy_and_grad(position)
    return MALAState(position, energy, gradient)


def step(
    state: MALAState, target: Target, params: MALAParams, *, generator: torch.Generator | None = None
) -> tuple[MALAState, MALAInfo]:
    """One MALA step for every chain.

    Proposal y = x - h grad L(x) + sqrt(2 h / beta) xi, accepted with probability
    min(1, exp(-beta (L(y) - L(x))) q(x | y) / q(y | x)) where
    log q(y | x) = -beta ||y - x + h grad L(x)||^2 / (4 h). The chain is exactly reversible for
    pi = exp(-beta L). A proposal with a non-finite energy is rejected.

    References: Roberts & Tweedie (1996), Bernoulli 2(4), 341-363.
    """
    h, beta = params.step_size, params.beta
    noise = noise_like(state.position, generator)
    proposal = state.position - h * state.grad + math.sqrt(2 * h / beta) * noise
    energy, gradient = target.energy_and_grad(proposal)
    # ||y - x + h grad L(x)||^2 = (2 h / beta) ||xi||^2, so log q(y | x) = -||xi||^2 / 2.
    forward = 0.5 * noise.square().sum(-1)
    backward = (beta / (4 * h)) * (state.position - proposal + h * gradient).square().sum(-1)
    log_ratio = -beta * (energy - state.energy) + forward - backward
    log_ratio = torch.nan_to_num(log_ratio, nan=-math.inf)
    acceptance_prob = log_ratio.clamp(max=0.0).exp()
    uniform = torch.rand(
        log_ratio.shape, generator=generator, dtype=log_ratio.dtype, device=log_ratio.device
    )
    accepted = uniform < acceptance_prob
    keep = accepted[:, None]
    new_state = MALAState(
        torch.where(keep, proposal, state.position),
        torch.where(accepted, energy, state.energy),
        torch.where(keep, gradient, state.grad),
    )
    return new_state, MALAInfo(acceptance_prob, accepted)
