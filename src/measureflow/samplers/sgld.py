"""Stochastic gradient Langevin dynamics (SGLD) and its control-variate variant (SGLD-CV)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import Tensor

from measureflow._core import check_count, check_positive
from measureflow.samplers._optimize import find_mode_counted
from measureflow.samplers.base import (
    GradientCount,
    SamplerParams,
    full_gradient_cost,
    gradient_estimate,
    minibatch_cost,
    noise_like,
)
from measureflow.targets import FiniteSumTarget, Target

__all__ = [
    "SGLDCVState",
    "SGLDInfo",
    "SGLDParams",
    "SGLDState",
    "cv_init",
    "cv_step",
    "init",
    "step",
    "step_size_at",
]


@dataclass(frozen=True)
class SGLDParams(SamplerParams):
    """SGLD with minibatches of ``batch_size`` terms per chain and the polynomial schedule
    h_t = step_size * (schedule_offset + t)^(-schedule_decay) (Welling & Teh 2011; decay 0
    keeps the step constant, decays in (0.5, 1] satisfy the Robbins-Monro conditions)."""

    batch_size: int = 32
    schedule_offset: float = 1.0
    schedule_decay: float = 0.0

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "batch_size", check_count(self.batch_size, "batch_size"))
        object.__setattr__(self, "schedule_offset", check_positive(self.schedule_offset, "schedule_offset"))
        decay = check_positive(self.schedule_decay, "schedule_decay", allow_zero=True)
        if decay > 1:
            raise ValueError(f"schedule_decay must lie in [0, 1], got {decay}")
        object.__setattr__(self, "schedule_decay", decay)


class SGLDState(NamedTuple):
    position: Tensor  # (n_chains, d)
    step: int


class SGLDCVState(NamedTuple):
    position: Tensor  # (n_chains, d)
    step: int
    mode: Tensor  # (1, d), the point the control variate is centred at
    mode_grad: Tensor  # (1, d), the exact full gradient at the mode
    mode_evaluations: int  # full gradients the mode search spent (for cost accounting)
    init_cost: GradientCount  # the mode search and the gradient at the mode, per chain


class SGLDInfo(NamedTuple):
    step_size: float  # h_t, the step this step took
    n_grad: int  # gradient estimates per chain in this step (exact or minibatch): one
    n_data_grad: float  # their per-datum cost: the minibatch size b (N for an exact gradient)


def step_size_at(params: SGLDParams, t: int) -> float:
    """h_t = step_size * ((schedule_offset + t) / schedule_offset)^(-schedule_decay).

    Normalized so that h_0 = step_size: the step size a user gives is the one the chain starts
    with, whatever the offset.
    """
    ratio = (params.schedule_offset + t) / params.schedule_offset
    return params.step_size * ratio ** (-params.schedule_decay)


def _langevin_move(position: Tensor, gradient: Tensor, h: float, beta: float, generator) -> Tensor:
    noise = noise_like(position, generator).mul_(math.sqrt(2 * h / beta))
    return noise.add_(position).add_(gradient, alpha=-h)


def init(
    position: Tensor, target: Target, params: SGLDParams, *, generator: torch.Generator | None = None
) -> SGLDState:
    return SGLDState(position, 0)


def step(
    state: SGLDState, target: Target, params: SGLDParams, *, generator: torch.Generator | None = None
) -> tuple[SGLDState, SGLDInfo]:
    """One SGLD step: X <- X - h_t g(X) + sqrt(2 h_t / beta) xi, g an unbiased minibatch
    estimate of grad L (prior + (N / b) sum over the minibatch; the exact gradient on targets
    that are not finite sums).

    References: Welling & Teh (2011), ICML.
    """
    h = step_size_at(params, state.step)
    gradient, _ = gradient_estimate(target, state.position, params.batch_size, generator)
    position = _langevin_move(state.position, gradient, h, params.beta, generator)
    return SGLDState(position, state.step + 1), SGLDInfo(h, 1, minibatch_cost(target, params.batch_size))


def cv_init(
    position: Tensor, target: Target, params: SGLDParams, *, generator: torch.Generator | None = None
) -> SGLDCVState:
    """Find a mode theta_hat of L (L-BFGS from the mean of the starting points) and its full
    gradient, the centre of the control variate. Every chain is charged the whole search, as if
    it had run it alone."""
    mode, evaluations = find_mode_counted(target, position.mean(0, keepdim=True))
    n_full = evaluations + 1  # the search's gradients, then the one at the mode
    cost = GradientCount(n_full, n_full * full_gradient_cost(target))
    return SGLDCVState(position, 0, mode, target.grad_energy(mode), evaluations, cost)


def cv_step(
    state: SGLDCVState, target: Target, params: SGLDParams, *, generator: torch.Generator | None = None
) -> tuple[SGLDCVState, SGLDInfo]:
    """One SGLD-CV step with the control-variate gradient
    g(X) = grad L(theta_hat) + g_B(X) - g_B(theta_hat), the same minibatch B in both terms.

    Unbiased like SGLD's estimate, but its variance vanishes as X approaches theta_hat, so near
    the posterior's bulk the minibatch noise is far smaller.

    References: Baker, Fearnhead, Fox & Nemeth (2019), Statistics and Computing 29, 599-615.
    """
    h = step_size_at(params, state.step)
    position = state.position
    if isinstance(target, FiniteSumTarget) and params.batch_size < target.n_terms:
        index = target.sample_index(position.shape[0], params.batch_size, generator)
        at_mode = target.minibatch_grad_energy(state.mode.expand_as(position), index)
        gradient = state.mode_grad + target.minibatch_grad_energy(position, index) - at_mode
        # One gradient estimate from two minibatch gradients on the same b terms.
        data_cost = 2 * minibatch_cost(target, params.batch_size)
    else:
        gradient = target.grad_energy(position)
        data_cost = minibatch_cost(target, params.batch_size)  # b >= N or no finite sum: all of it
    position = _langevin_move(position, gradient, h, params.beta, generator)
    return state._replace(position=position, step=state.step + 1), SGLDInfo(h, 1, data_cost)

