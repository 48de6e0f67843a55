r"""The f-divergences of f-GAN, from one table: f, its convex conjugate f*, the output activation.

For a convex f with f(1) = 0, D_f(P || Q) = E_Q[f(p/q)]. Fenchel duality f(u) = sup_t (t u - f*(t))
gives the variational lower bound (Nguyen, Wainwright & Jordan 2010; Nowozin, Cseke & Tomioka
2016, eq. 4)

    D_f(P || Q) >= sup_T  E_P[T(x)] - E_Q[f*(T(x))],

with equality at T*(x) = f'(p(x)/q(x)). A critic network outputs a real v; the activation g_f
maps it into the domain of f* (T = g_f(v)). Table 2 of Nowozin et al. (2016), in our names:

    name        f(u)                              f*(t)              g_f(v)                T* = f'(u)
    kl          u log u                           exp(t - 1)         v                     1 + log u
    reverse-kl  -log u                            -1 - log(-t)       -exp(-v)              -1/u
    js          u log u - (u+1) log((u+1)/2)      -log(2 - exp(t))   log 2 - softplus(-v)  log(2u/(1+u))
    pearson     (u - 1)^2                         t^2/4 + t          v                     2(u - 1)
    hellinger   (sqrt(u) - 1)^2                   t / (1 - t)        1 - exp(-v)           1 - 1/sqrt(u)
    gan         u log u - (u+1) log(u+1)          -log(1 - exp(t))   -softplus(-v)         log(u/(1+u))

The losses evaluate f*(g_f(v)) in closed form: e^{v-1}, v - 1, softplus(v) - log 2, v^2/4 + v,
e^v - 1 and softplus(v) for the six rows.

With these f, ``js`` gives D_f = 2 JS(P, Q) = KL(P || M) + KL(Q || M), M = (P + Q)/2 (at most
2 log 2), and ``gan`` is the original minimax game, whose value at the optimum is 2 JS(P, Q) - log 4.

Every row is also a density-ratio estimator. At the optimal critic g_f(v*(x)) = f'(p(x)/q(x)), so
log(p/q) = log (f')^{-1}(g_f(v)), in closed form per row (``log_ratio``, used by
:func:`log_density_ratio`):

    kl          1 + log u = v                        log u = v - 1
    reverse-kl  -1/u = -exp(-v)                      log u = v
    js          log(2u/(1+u)) = log(2 sigmoid(v))    log u = v
    pearson     2(u - 1) = v                         log u = log(1 + v/2)   (v > -2)
    hellinger   1 - 1/sqrt(u) = 1 - exp(-v)          log u = 2 v
    gan         log(u/(1+u)) = log sigmoid(v)        log u = v

(for js and gan: u/(1+u) = sigmoid(v) gives u = e^v). Pearson's is the one row whose optimal
critic has a bounded range, T* = 2(u - 1) > -2: a trained critic's v <= -2 names no positive
ratio, and its estimate is taken as the nearest ratio in [0, oo), 0, so log u = -inf there.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["F_DIVERGENCES", "FDivergence", "f_divergence", "log_density_ratio", "variational_bound"]


@dataclass(frozen=True)
class FDivergence:
    """One row of the f-GAN table: ``f`` (the generator of the divergence, on u = p/q > 0),
    ``conjugate`` f*, ``activation`` g_f (critic output -> domain of f*), ``optimal_critic`` T*(u) =
    f'(u) (the activated critic at which the bound is tight), and ``activated_conjugate``
    v -> f*(g_f(v)) in closed form, and ``log_ratio`` v -> log (f')^{-1}(g_f(v)), the log density
    ratio log(p/q) that a raw critic output v stands for (exact at the optimal critic), as
    functions of tensors. ``log_ratio`` is last and optional, so rows built with the first six
    fields still work (:func:`log_density_ratio` then refuses them).

    The closed form is what the losses use: composing the two functions loses the value where
    g_f(v) rounds to the edge of f*'s domain (Hellinger's f*(1 - e^{-v}) is inf in float32 from
    v = 17 on, where e^v - 1 is finite) and costs extra operations per step."""

    name: str
    f: Callable[[Tensor], Tensor]
    conjugate: Callable[[Tensor], Tensor]
    activation: Callable[[Tensor], Tensor]
    optimal_critic: Callable[[Tensor], Tensor]
    activated_conjugate: Callable[[Tensor], Tensor]
    log_ratio: Callable[[Tensor], Tensor] | None = None


def _xlogx(u: Tensor) -> Tensor:
    return torch.xlogy(u, u)


def _pearson_log_ratio(v: Tensor) -> Tensor:
    # u = 1 + v/2, projected onto [0, oo): v <= -2 is no ratio, and its nearest one is 0 (log = -inf).
    return torch.log1p(0.5 * torch.clamp(v, min=-2.0))


F_DIVERGENCES: dict[str, FDivergence] = {
    "kl": FDivergence(
        "kl", _xlogx, lambda t: torch.exp(t - 1), lambda v: v, lambda u: 1 + torch.log(u),
        lambda v: torch.exp(v - 1), lambda v: v - 1),
    "reverse-kl": FDivergence(
        "reverse-kl", lambda u: -torch.log(u), lambda t: -1 - torch.log(-t), lambda v: -torch.exp(-v),
        lambda u: -1 / u, lambda v: v - 1, lambda v: v),
    "js": FDivergence(
        "js", lambda u: _xlogx(u) - torch.xlogy(u + 1, (u + 1) / 2),
        # -log(2 - e^t) for t < log 2, written with log1p for accuracy near t -> -oo.
        lambda t: -math.log(2) - torch.log1p(-0.5 * torch.exp(t)),
        lambda v: math.log(2) - F.softplus(-v), lambda u: torch.log(2 * u / (1 + u)),
        lambda v: F.softplus(v) - math.log(2), lambda v: v),
    "pearson": FDivergence(
        "pearson", lambda u: (u - 1) ** 2, lambda t: 0.25 * t**2 + t, lambda v: v, lambda u: 2 * (u - 1),
        lambda v: 0.25 * v**2 + v, _pearson_log_ratio),
    "hellinger": FDivergence(
        "hellinger", lambda u: (torch.sqrt(u) - 1) ** 2, lambda t: t / (1 - t), lambda v: -torch.expm1(-v),
        lambda u: 1 - 1 / torch.sqrt(u), torch.expm1, lambda v: 2 * v),
    "gan": FDivergence(
        "gan", lambda u: _xlogx(u) - torch.xlogy(u + 1, u + 1), lambda t: -torch.log(-torch.expm1(t)),
        lambda v: -F.softplus(-v), lambda u: torch.log(u / (1 + u)), F.softplus, lambda v: v),
}


def _lookup(divergence: str | FDivergence) -> FDivergence:
    if isinstance(divergence, FDivergence):
        return divergence
    if divergence not in F_DIVERGENCES:
        raise ValueError(f"unknown f-divergence {divergence!r}; choose one of {', '.join(F_DIVERGENCES)}")
    return F_DIVERGENCES[divergence]


def variational_bound(critic_p: Tensor, critic_q: Tensor, divergence: str | FDivergence) -> Tensor:
    """The f-GAN objective E_P[g_f(v)] - E_Q[f*(g_f(v))] from raw critic outputs ``critic_p`` ``(n,)``
    on samples of P and ``critic_q`` ``(m,)`` on samples of Q; a lower bound on D_f(P || Q) for any
    critic (scalar, differentiable).

    >>> v = torch.zeros(3, dtype=torch.float64)
    >>> round(float(variational_bound(v, v, "kl")), 6)   # T = 0: E_P[0] - E_Q[exp(-1)]
    -0.367879
    """
    row = _lookup(divergence)
    if critic_p.dim() != 1 or critic_q.dim() != 1 or not critic_p.numel() or not critic_q.numel():
        raise ValueError("critic outputs must be non-empty 1-D tensors (one value per sample)")
    return row.activation(critic_p).mean() - row.activated_conjugate(critic_q).mean()


def log_density_ratio(critic_output: Tensor, divergence: str | FDivergence) -> Tensor:
    """The log density ratio log(p/q) that a raw critic output stands for, elementwise (any shape):
    log (f')^{-1}(g_f(v)), the row's ``log_ratio`` (see the module docstring for the six closed
    forms). At the critic that maximizes the variational bound, g_f(v*) = f'(p/q), this is
    exactly log p(x)/q(x); for a trained critic it is the ratio estimate. For ``pearson`` an
    output v <= -2 (no positive ratio) gives -inf.

    >>> v = torch.tensor([-1.0, 0.0, 2.0], dtype=torch.float64)
    >>> log_density_ratio(v, "kl").tolist(), log_density_ratio(v, "hellinger").tolist()
    ([-2.0, -1.0, 1.0], [-2.0, 0.0, 4.0])
    >>> log_density_ratio(torch.tensor([-3.0, -2.0, 2.0]), "pearson").tolist()   # u = 1 + v/2
    [-inf, -inf, 0.6931471824645996]
    """
    row = _lookup(divergence)
    if row.log_ratio is None:
        raise ValueError(f"the f-divergence row {row.name!r} has no log_ratio; build it with log_ratio=(v -> "
                         "log (f')^-1(g_f(v))) to use it as a ratio estimator")
    if not isinstance(critic_output, Tensor):
        raise TypeError(f"critic_output must be a torch tensor, got {type(critic_output).__name__}")
    return row.log_ratio(critic_output)


def f_divergence(log_p: Tensor, log_q: Tensor, weights: Tensor, divergence: str | FDivergence) -> Tensor:
    """D_f(P || Q) = sum_i w_i q_i f(p_i / q_i) by quadrature: log-densities ``log_p``, ``log_q`` and
    quadrature weights ``weights`` at the same nodes ``(k,)`` (e.g. the trapezoid rule on a grid).

    >>> x = torch.linspace(-12, 12, 4001, dtype=torch.float64)
    >>> w = torch.full_like(x, float(x[1] - x[0]))
    >>> log_n = lambda x, m: -0.5 * (x - m) ** 2 - 0.5 * math.log(2 * math.pi)
    >>> round(float(f_divergence(log_n(x, 1.0), log_n(x, 0.0), w, "kl")), 6)   # |m|^2 / 2
    0.5
    """
    row = _lookup(divergence)
    ratio = torch.exp(log_p - log_q)
    return (weights * torch.exp(log_q) * row.f(ratio)).sum()
