"""Preconditioned SGLD with the RMSprop diagonal preconditioner (Li, Chen, Carlson & Carin 2016)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import Tensor

from measureflow._core import check_count, check_positive, check_probability
from measureflow.samplers.base import (
    GradientCount,
    SamplerParams,
    gradient_estimate,
    minibatch_cost,
    noise_like,
)
from measureflow.samplers.sgld import SGLDInfo
from measureflow.targets import FiniteSumTarget, Target

__all__ = ["PSGLDParams", "PSGLDState", "init", "preconditioner_divergence", "step"]


@dataclass(frozen=True)
class PSGLDParams(SamplerParams):
    """RMSprop-preconditioned SGLD: ``alpha`` is the decay of the squared-gradient average,
    ``epsilon`` the preconditioner's floor lambda, ``correction`` adds the drift term Gamma."""

    batch_size: int = 32
    alpha: float = 0.99
    epsilon: float = 1e-5
    correction: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "batch_size", check_count(self.batch_size, "batch_size"))
        object.__setattr__(self, "alpha", check_probability(self.alpha, "alpha"))
        object.__setattr__(self, "epsilon", check_positive(self.epsilon, "epsilon"))


class PSGLDState(NamedTuple):
    position: Tensor  # (n_chains, d)
    square_avg: Tensor  # (n_chains, d), the running average V of squared gradients
    step: int
    init_cost: GradientCount  # the first minibatch gradient, V's start


def init(
    position: Tensor, target: Target, params: PSGLDParams, *, generator: torch.Generator | None = None
) -> PSGLDState:
    """Start V at the square of a first minibatch gradient: starting it at 0 would make the
    first steps 1 / sqrt(1 - alpha) = 10 times too long, and the full gradient would be near 0
    for chains started at a mode although minibatch gradients are not (G = 1 / sqrt(V) would
    then be huge). V forgets its start over a few 1 / (1 - alpha) steps, so chains started far
    out in the tails begin with too small a preconditioner; a burn-in of several
    1 / (1 - alpha) steps removes that."""
    gradient, _ = gradient_estimate(target, position, params.batch_size, generator)
    cost = GradientCount(1, minibatch_cost(target, params.batch_size))
    return PSGLDState(position, gradient.square(), 0, cost)


def step(
    state: PSGLDState, target: Target, params: PSGLDParams, *, generator: torch.Generator | None = None
) -> tuple[PSGLDState, SGLDInfo]:
    """One pSGLD step with a diagonal preconditioner G:

        V <- alpha V + (1 - alpha) g * g,      G = 1 / (epsilon + sqrt(V)),
        X <- X - h G g + (h / beta) Gamma + sqrt(2 h G / beta) xi,

    g an unbiased minibatch gradient. Gamma_j = dG_j / dX_j
    = -(1 - alpha) G_j^2 g_j H_jj / sqrt(V_j) (H the minibatch Hessian, its diagonal exact where
    the target provides it, else Hutchinson's estimate) is added when ``correction`` is set;
    Li et al. drop it because it is O(1 - alpha), and so does the default.

    References: Li, Chen, Carlson & Carin (2016), AAAI, Algorithm 1.
    """
    h, beta = params.step_size, params.beta
    data_cost = minibatch_cost(target, params.batch_size)
    gradient, index = gradient_estimate(target, state.position, params.batch_size, generator)
    square_avg = state.square_avg * params.alpha + (1 - params.alpha) * gradient.square()
    root = square_avg.sqrt()
    preconditioner = 1.0 / (params.epsilon + root)
    drift = -h * preconditioner * gradient
    if params.correction:
        if index is None:
            if isinstance(target, FiniteSumTarget):
                index = torch.arange(target.n_terms, device=state.position.device)
                index = index.expand(state.position.shape[0], -1)
            else:
                raise ValueError(
                    "psgld correction needs a finite-sum target (one with minibatch Hessians)"
                )
        hessian_diag = target.minibatch_hessian_diag(state.position, index, generator)
        gamma = preconditioner_divergence(square_avg, gradient, hessian_diag, params)
        drift = drift + (h / beta) * gamma
        data_cost *= 2  # the minibatch Hessian diagonal costs as much again as its gradient
    noise = noise_like(state.position, generator) * (2 * h * preconditioner / beta).sqrt()
    position = state.position + drift + noise
    new_state = PSGLDState(position, square_avg, state.step + 1, state.init_cost)
    return new_state, SGLDInfo(h, 1, data_cost)


def preconditioner_divergence(
    square_avg: Tensor, gradient: Tensor, hessian_diag: Tensor, params: PSGLDParams
) -> Tensor:
    """Gamma_j = dG_j / dX_j for G = 1 / (epsilon + sqrt(V)), V = alpha V_prev + (1 - alpha) g^2.

    Through g_j(X): dG_j/dX_j = -G_j^2 (1 - alpha) g_j H_jj / sqrt(V_j), ``(n_chains, d)``.
    """
    root = square_avg.sqrt()
    preconditioner = 1.0 / (params.epsilon + root)
    slope = -(1 - params.alpha) * preconditioner.square() * gradient * hessian_diag
    return slope / root.clamp_min(torch.finfo(root.dtype).tiny)
