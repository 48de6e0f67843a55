r"""Gradient Langevin dynamics in a Hilbert space: the semi-implicit Euler scheme of the text.

The state is the coefficient vector x = (x_k)_{k<K} of an element sum_k x_k f_k of a Hilbert space
in an orthonormal basis (f_k). The RKHS norm of the kernel with eigenvalues mu_k is
||x||_{H_K}^2 = sum_k x_k^2 / mu_k = <x, A x> with A = diag(1 / mu_k), and the target is the Gibbs
measure of the regularized loss

    pi(dx) ~ exp(-beta (L(x) + (lam / 2) ||x||_{H_K}^2)),

which for K -> infinity is a Gaussian measure N(0, (beta lam A)^{-1}) reweighted by exp(-beta L)
(Muzellec, Sato, Massias & Suzuki 2020; Suzuki 2020). A has eigenvalues 1 / mu_k -> infinity, so the
explicit Euler step of the Langevin equation dX = -(grad L(X) + lam A X) dt + sqrt(2 / beta) dB is
stable only for eta < 2 mu_{K-1} / lam, a step that vanishes as K grows. The semi-implicit scheme
treats the stiff linear part implicitly:

    X_{n+1} = S_eta (X_n - eta grad L(X_n) + sqrt(2 eta / beta) xi_n),   S_eta = (I + eta lam A)^{-1},

with xi_n ~ N(0, I). S_eta is diagonal, so a step costs O(K) beyond the gradient, and it is a
contraction for every eta > 0: the scheme is stable at any step for which eta grad L is. Its
stationary law for L = 0 is Gaussian with per-mode variance (2 eta / beta) s_k^2 / (1 - s_k^2),
s_k = 1 / (1 + eta lam / mu_k), which tends to the prior's mu_k / (beta lam) as eta -> 0.

With ``lam = 0`` S_eta = I and the step is ULA's, draw for draw (a test holds them equal).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
from torch import Tensor

from measureflow._core import check_count, check_positive
from measureflow.samplers.base import (
    SamplerParams,
    full_gradient_cost,
    gradient_estimate,
    minibatch_cost,
    noise_like,
)
from measureflow.targets import Target

__all__ = [
    "InfiniteLangevinInfo",
    "InfiniteLangevinParams",
    "InfiniteLangevinState",
    "draw",
    "eigenvalues",
    "init",
    "step",
    "transition",
]


@dataclass(frozen=True, eq=False)
class InfiniteLangevinParams(SamplerParams):
    """Step size eta, inverse temperature beta, RKHS weight ``lam`` and the kernel's eigenvalues.

    ``mu``: the eigenvalues mu_k ``(K,)`` (positive), or ``decay`` p for mu_k = (k + 1)^-p; with
    neither, mu_k = 1 (A = I: ``lam`` is then a plain weight decay). ``batch_size``: minibatch
    size for a finite-sum target (``None``: the full gradient), an SGLD step in function space.
    """

    lam: float = 0.0
    mu: Any = None
    decay: float | None = None
    batch_size: int | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "lam", check_positive(self.lam, "lam", allow_zero=True))
        if self.mu is not None and self.decay is not None:
            raise ValueError("give the eigenvalues either as mu (a (K,) tensor) or as decay "
                             "(mu_k = (k+1)^-p), not both")
        if self.mu is not None:
            mu = torch.as_tensor(self.mu)
            valid = mu.ndim == 1 and mu.numel() > 0 and bool(torch.isfinite(mu).all())
            if not valid or not bool((mu > 0).all()):
                raise ValueError("mu must be a 1-D tensor of positive finite eigenvalues (K,)")
            object.__setattr__(self, "mu", mu)
        if self.decay is not None:
            object.__setattr__(self, "decay", check_positive(self.decay, "decay"))
        if self.batch_size is not None:
            object.__setattr__(self, "batch_size", check_count(self.batch_size, "batch_size"))


def eigenvalues(params: InfiniteLangevinParams, dim: int, *, dtype: torch.dtype = torch.float64,
                device: torch.device | str | None = None) -> Tensor:
    """The eigenvalues mu_k ``(dim,)`` that ``params`` describe (``mu``, ``decay`` or all ones)."""
    if params.mu is not None:
        if params.mu.shape[0] != dim:
            raise ValueError(f"mu has {params.mu.shape[0]} eigenvalues but the target has dimension {dim}")
        return params.mu.to(dtype=dtype, device=device)
    if params.decay is not None:
        return torch.arange(1, dim + 1, dtype=dtype, device=device).pow(-params.decay)
    return torch.ones(dim, dtype=dtype, device=device)


class InfiniteLangevinState(NamedTuple):
    position: Tensor  # (n_chains, K)
    contraction: Tensor  # (K,): s_k = 1 / (1 + eta lam / mu_k), the diagonal of S_eta
    step_size: float  # the eta that contraction was built for


class InfiniteLangevinInfo(NamedTuple):
    n_grad: int  # gradient evaluations per chain in this step (exact or minibatch): one
    n_data_grad: float  # their per-datum cost: N for the exact gradient of a finite sum, b for a minibatch


def _contraction(params: InfiniteLangevinParams, position: Tensor, step_size: float | Tensor) -> Tensor:
    mu = eigenvalues(params, position.shape[-1], dtype=position.dtype, device=position.device)
    return 1 / (1 + step_size * params.lam / mu)


def init(position: Tensor, target: Target, params: InfiniteLangevinParams, *,
         generator: torch.Generator | None = None) -> InfiniteLangevinState:
    return InfiniteLangevinState(position, _contraction(params, position, params.step_size), params.step_size)


def draw(state: InfiniteLangevinState, generator: torch.Generator | None = None) -> tuple[Tensor]:
    """The random numbers one :func:`step` consumes with the full gradient: xi ~ N(0, I)."""
    return (noise_like(state.position, generator),)


def transition(state: InfiniteLangevinState, randoms: tuple[Tensor], target: Target,
               step_size: float | Tensor, beta: float, gradient: Tensor | None = None
               ) -> tuple[InfiniteLangevinState, InfiniteLangevinInfo]:
    """The deterministic part of :func:`step` given ``randoms = (xi,)`` (and optionally the gradient);
    ``state.contraction`` must be diag(S_eta) at this ``step_size`` (:func:`init` builds it).
    Its ``Info`` charges an exact gradient; :func:`step` corrects that for a given minibatch one."""
    (noise,) = randoms
    scale = (math.sqrt(2 * step_size / beta) if isinstance(step_size, float)
             else torch.sqrt(2 * step_size / beta))
    if gradient is None:
        gradient = target.grad_energy(state.position)
    # In place on one fresh buffer: xi itself is left untouched.
    position = noise * scale
    position.add_(state.position).sub_(gradient * step_size).mul_(state.contraction)
    new_state = InfiniteLangevinState(position, state.contraction, state.step_size)
    return new_state, InfiniteLangevinInfo(1, float(full_gradient_cost(target)))


def step(state: InfiniteLangevinState, target: Target, params: InfiniteLangevinParams, *,
         generator: torch.Generator | None = None) -> tuple[InfiniteLangevinState, InfiniteLangevinInfo]:
    r"""One semi-implicit step for every chain: X <- S_eta (X - eta grad L(X) + sqrt(2 eta / beta) xi).

    S_eta = diag(1 / (1 + eta lam / mu_k)), rebuilt from ``params`` when the step size differs
    from the one the state holds it for; the gradient is a minibatch estimate when
    ``params.batch_size`` is set and the target is a finite sum (its indices drawn before the noise).
    """
    if state.step_size != params.step_size or state.contraction.dtype != state.position.dtype:
        state = InfiniteLangevinState(state.position, _contraction(params, state.position, params.step_size),
                                      params.step_size)
    if params.batch_size is None:
        return transition(state, draw(state, generator), target, params.step_size, params.beta)
    gradient, _ = gradient_estimate(target, state.position, params.batch_size, generator)
    state, info = transition(state, draw(state, generator), target, params.step_size, params.beta, gradient)
    return state, info._replace(n_data_grad=minibatch_cost(target, params.batch_size))
