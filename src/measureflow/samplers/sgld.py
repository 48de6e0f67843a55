"""Stochastic gradient Langevin dynamics (SGLD) and its control-variate variant (SGLD-CV)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import Tensor

from measureflow._core import check_positive
from measureflow.samplers._optimize import find_mode_counted
from measureflow.samplers.base import (
    SamplerParams,
    check_batch_size,
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
        object.__setattr__(self, "batch_size", check_batch_size(self.batch_size))
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


class SGLDInfo(NamedTuple):
    step_size: float


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
    return SGLDState(position, state.step + 1), SGLDInfo(h)


def cv_init(
    position: Tensor, target: Target, params: SGLDParams, *, generator: torch.Generator | None = None
) -> SGLDCVState:
    """Find a mode theta_hat of L (L-BFGS from the mean of the starting points) and its full
    gradient, the centre of the control variate."""
    mode, evaluations = find_mode_counted(target, position.mean(0, keepdim=True))
    return SGLDCVState(position, 0, mode, target.grad_energy(mode), evaluations)


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
    else:
        gradient = target.grad_energy(position)
    position = _langevin_move(position, gradient, h, params.beta, generator)
    return state._replace(position=position, step=state.step + 1), SGLDInfo(h)


def data_grads(target: Target, params: SGLDParams) -> float:
    return minibatch_cost(target, params.batch_size)


def cv_data_grads(target: Target, params: SGLDParams) -> float:
    if isinstance(target, FiniteSumTarget) and params.batch_size < target.n_terms:
        return 2 * minibatch_cost(target, params.batch_size)
    return minibatch_cost(target, params.batch_size)  # the exact gradient, once
