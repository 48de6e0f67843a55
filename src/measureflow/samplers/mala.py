"""The Metropolis-adjusted Langevin algorithm (MALA): ULA proposals with an exact accept/reject."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import Tensor

from measureflow.samplers.base import GradientCount, SamplerParams, full_gradient_cost, noise_like
from measureflow.targets import Target

__all__ = ["MALAInfo", "MALAParams", "MALAState", "draw", "init", "step", "transition"]


@dataclass(frozen=True)
class MALAParams(SamplerParams):
    """Step size h and inverse temperature beta of the Langevin proposal."""


class MALAState(NamedTuple):
    position: Tensor  # (n_chains, d)
    energy: Tensor  # (n_chains,)
    grad: Tensor  # (n_chains, d), grad L at position
    init_cost: GradientCount  # the gradient at the starting point


class MALAInfo(NamedTuple):
    acceptance_prob: Tensor  # (n_chains,)
    is_accepted: Tensor  # (n_chains,) bool
    # (n_chains,) bool: the proposal was not a point the target is defined at, so its rejection
    # hides a fault (the driver raises): a non-finite proposal, a NaN energy, or a non-finite
    # gradient at a finite energy. An energy of +inf (a zero density) is a valid rejection.
    nonfinite_proposal: Tensor
    n_grad: int  # gradient evaluations per chain in this step: one, at the proposal
    n_data_grad: float  # their per-datum cost: N on a finite-sum target


def init(
    position: Tensor, target: Target, params: MALAParams, *, generator: torch.Generator | None = None
) -> MALAState:
    energy, gradient = target.energy_and_grad(position)
    return MALAState(position, energy, gradient, GradientCount(1, full_gradient_cost(target)))


def draw(state: MALAState, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """The random numbers one :func:`step` consumes, in the order it draws them.

    ``(xi, u)``: the proposal noise xi ~ N(0, I) ``(n_chains, d)`` and the uniforms
    u ~ U[0, 1) ``(n_chains,)`` of the accept/reject decision. Uses ``state`` only for
    shapes, dtype and device (the driver may draw ahead of the chain).
    """
    position = state.position
    noise = noise_like(position, generator)
    uniform = torch.rand(
        position.shape[:1], generator=generator, dtype=position.dtype, device=position.device
    )
    return noise, uniform


def transition(
    state: MALAState,
    randoms: tuple[Tensor, Tensor],
    target: Target,
    step_size: float | Tensor,
    beta: float,
) -> tuple[MALAState, MALAInfo]:
    """The deterministic part of :func:`step` given its random numbers ``randoms = (xi, u)``.

    Pure; ``step_size`` may be a float or a 0-d tensor (so one compiled graph serves the whole
    run while dual averaging changes h during burn-in).
    """
    h = step_size
    noise, uniform = randoms
    scale = math.sqrt(2 * h / beta) if isinstance(h, float) else torch.sqrt(2 * h / beta)
    proposal = state.position - h * state.grad + scale * noise
    energy, gradient = target.energy_and_grad(proposal)
    # ||y - x + h grad L(x)||^2 = (2 h / beta) ||xi||^2, so log q(y | x) = -||xi||^2 / 2.
    forward = 0.5 * noise.square().sum(-1)
    backward = (beta / (4 * h)) * (state.position - proposal + h * gradient).square().sum(-1)
    log_ratio = -beta * (energy - state.energy) + forward - backward
    log_ratio = torch.nan_to_num(log_ratio, nan=-math.inf)
    acceptance_prob = log_ratio.clamp(max=0.0).exp()
    accepted = uniform < acceptance_prob
    nonfinite = (
        ~torch.isfinite(proposal).all(-1)
        | torch.isnan(energy)
        | ((energy < math.inf) & ~torch.isfinite(gradient).all(-1))
    )
    keep = accepted[:, None]
    new_state = MALAState(
        torch.where(keep, proposal, state.position),
        torch.where(accepted, energy, state.energy),
        torch.where(keep, gradient, state.grad),
        state.init_cost,
    )
    return new_state, MALAInfo(acceptance_prob, accepted, nonfinite, 1, full_gradient_cost(target))


def step(
    state: MALAState, target: Target, params: MALAParams, *, generator: torch.Generator | None = None
) -> tuple[MALAState, MALAInfo]:
    """One MALA step for every chain.

    Proposal y = x - h grad L(x) + sqrt(2 h / beta) xi, accepted with probability
    min(1, exp(-beta (L(y) - L(x))) q(x | y) / q(y | x)) where
    log q(y | x) = -beta ||y - x + h grad L(x)||^2 / (4 h). The chain is exactly reversible for
    pi = exp(-beta L). A proposal with energy +inf (outside the target's support) is rejected;
    one with a NaN energy, a non-finite gradient or non-finite coordinates is rejected too and
    flagged in ``Info.nonfinite_proposal``, which the driver turns into an error.

    ``step(state) == transition(state, draw(state))``: the random numbers are drawn first (xi,
    then u), the rest is deterministic.

    References: Roberts & Tweedie (1996), Bernoulli 2(4), 341-363.
    """
    return transition(
        state, draw(state, generator), target, params.step_size, params.beta
    )
