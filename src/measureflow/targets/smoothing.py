r"""Gaussian smoothing of an energy: L_delta(x) = E L(x + delta u), u ~ N(0, I_d).

The smoothed energy is the convolution of L with the Gaussian kernel of standard deviation
delta: it removes the ripples of L finer than delta (graduated non-convexity, Blake & Zisserman
1987; the Gaussian homotopy of Wu 1996 and Mobahi & Fisher 2015; Hazan, Levy & Shalev-Shwartz
2016 smooth over a ball instead). It is also what SGD's noise optimizes (Kleinberg, Li & Yuan
2018): for x_{t+1} = x_t - eta (grad L(x_t) + xi_t) and the point before the noise
y_t = x_t - eta grad L(x_t), E[y_{t+1} | y_t] = y_t - eta grad E L(y_t - eta xi), gradient
descent on a smoothing of L at scale eta std(xi).

Under mild growth conditions differentiation and expectation commute, grad L_delta(x) =
E grad L(x + delta u). Two ways to evaluate both:

- closed forms, for the energies where the Gaussian integral is explicit (:data:`CLOSED_FORMS`):
  Rastrigin, since E cos(2 pi (x + delta u)) = exp(-2 pi^2 delta^2) cos(2 pi x) (the
  characteristic function of N(0, delta^2) at 2 pi), so

      L_delta(x) = A d + sum_i (x_i^2 + delta^2 - A exp(-2 pi^2 delta^2) cos(2 pi x_i));

  the (tilted) double well, from E y^2 = x^2 + delta^2 and E y^4 = x^4 + 6 x^2 delta^2 + 3 delta^4
  for y ~ N(x, delta^2): L_delta(x) = L(x) + sum_i (6 delta^2 x_i^2 + 3 delta^4 - 2 delta^2) (the
  tilt c x_i is linear and unchanged);
  a Gaussian energy (x - m)^T C^-1 (x - m) / 2, which gains the constant delta^2 tr(C^-1) / 2;
- Monte Carlo with common random numbers: S draws u_1..u_S are made once and used for every
  point and for both the value (1/S) sum_s L(x + delta u_s) and the gradient
  (1/S) sum_s grad L(x + delta u_s), which is exactly the gradient of that value. Both are
  unbiased; the value's standard error is sd_s L(x + delta u_s) / sqrt(S) (an average of S
  independent terms), and likewise for each gradient coordinate.

:class:`SmoothedTarget` is itself a :class:`~measureflow.targets.Target`, so samplers, flows and
:func:`measureflow.samplers.graduated.graduated_descent` accept it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from measureflow._core import check_count, check_finite, check_positive
from measureflow.targets.base import Target
from measureflow.targets.gaussian import Gaussian
from measureflow.targets.toy import DoubleWell, Rastrigin

__all__ = ["CLOSED_FORMS", "SmoothedEstimate", "SmoothedTarget", "has_closed_form", "smoothed_energy"]


def _rastrigin(target: Rastrigin, x: Tensor, delta: float) -> tuple[Tensor, Tensor]:
    damped = target.amplitude * math.exp(-2 * math.pi**2 * delta**2)
    angle = 2 * math.pi * x
    value = (target.amplitude + x.square() + delta**2 - damped * torch.cos(angle)).sum(-1)
    return value, 2 * x + 2 * math.pi * damped * torch.sin(angle)


def _double_well(target: DoubleWell, x: Tensor, delta: float) -> tuple[Tensor, Tensor]:
    square = x.square()
    value = (square - 1).square() + 6 * delta**2 * square + 3 * delta**4 - 2 * delta**2
    value = (value + target.tilt * x).sum(-1)
    return value, 4 * x * (square - 1) + 12 * delta**2 * x + target.tilt


def _gaussian(target: Gaussian, x: Tensor, delta: float) -> tuple[Tensor, Tensor]:
    energy, gradient = target.energy_and_grad(x)
    trace = torch.cholesky_inverse(torch.linalg.cholesky(target.cov)).diagonal().sum()
    return energy + 0.5 * delta**2 * trace, gradient


CLOSED_FORMS: dict[type, Callable[[Target, Tensor, float], tuple[Tensor, Tensor]]] = {
    Rastrigin: _rastrigin,
    DoubleWell: _double_well,
    Gaussian: _gaussian,
}
"""Energy types (exact type, not subclasses) with an explicit Gaussian smoothing: ``(target, x,
delta) -> (L_delta(x) (n,), grad L_delta(x) (n, d))``."""


def has_closed_form(target: Target) -> bool:
    """Whether L_delta of ``target`` is known in closed form (see :data:`CLOSED_FORMS`)."""
    return type(target) in CLOSED_FORMS


def _check_target(target: Target) -> Target:
    if not isinstance(target, Target):
        raise TypeError(f"target must be a measureflow Target, got {type(target).__name__}")
    return target


def _draws(target: Target, n_samples: int, generator: torch.Generator | None) -> Tensor:
    n_samples = check_count(n_samples, "n_samples (two at least, for a standard error)", minimum=2)
    device = generator.device if generator is not None else target.device
    noise = torch.randn(n_samples, target.dim, generator=generator, dtype=target.dtype, device=device)
    return noise.to(target.device)


def _shifted(x: Tensor, noise: Tensor, delta: float) -> Tensor:
    """The points x_n + delta u_s, shape ``(n * S, d)`` (row n * S + s)."""
    return (x[:, None, :] + delta * noise[None, :, :]).reshape(-1, x.shape[-1])


class SmoothedTarget(Target):
    r"""The Gaussian smoothing L_delta(x) = E L(x + delta u), u ~ N(0, I), of ``target``.

    ``n_samples=None``: the closed form (``target`` must be of a type in :data:`CLOSED_FORMS`);
    an integer S: Monte Carlo over S standard normal draws made here once, with ``generator``,
    and shared by every later evaluation (common random numbers: the estimate is one fixed
    smooth function, differentiable, whose gradient is the averaged gradient). ``delta = 0`` is
    ``target`` itself. A new set of draws is a new ``SmoothedTarget``.

    >>> import torch, measureflow as mf
    >>> smoothed = SmoothedTarget(mf.targets.Rastrigin(dim=1), delta=0.5)
    >>> smoothed.energy(torch.zeros(1, 1))   # 10 + 0.25 - 10 exp(-pi^2 / 2)
    tensor([10.1781])
    """

    name = "smoothed"

    def __init__(self, target: Target, delta: float, *, n_samples: int | None = None,
                 generator: torch.Generator | None = None) -> None:
        target = _check_target(target)
        super().__init__(target.dim)
        self._anchor = self._anchor.to(device=target.device, dtype=target.dtype)
        self.target = target
        self.delta = check_positive(delta, "delta", allow_zero=True)
        self.name = f"{target.name}-smoothed"
        self._closed_form = None
        if n_samples is None:
            if self.delta > 0:
                if not has_closed_form(target):
                    known = ", ".join(kind.__name__ for kind in CLOSED_FORMS)
                    raise ValueError(f"no closed-form smoothing for {type(target).__name__} "
                                     f"(known: {known}); pass n_samples for Monte Carlo")
                self._closed_form = CLOSED_FORMS[type(target)]
            self.register_buffer("noise", None)
        else:
            self.register_buffer("noise", _draws(target, n_samples, generator))

    @property
    def n_samples(self) -> int | None:
        """The number of Monte Carlo draws, or ``None`` for the closed form."""
        return None if self.noise is None else self.noise.shape[0]

    def _terms(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """L and grad L at the shifted points: ``(n, S)`` and ``(n, S, d)``."""
        values, gradients = self.target.energy_and_grad(_shifted(x, self.noise, self.delta))
        n, n_samples = x.shape[0], self.noise.shape[0]
        return values.reshape(n, n_samples), gradients.reshape(n, n_samples, self.dim)

    def energy(self, x: Tensor) -> Tensor:
        x = self._as_input(x)
        if self._closed_form is not None:
            return self._closed_form(self.target, x, self.delta)[0]
        if self.noise is None or self.delta == 0:
            return self.target.energy(x)
        # Plain tensor ops: differentiable in x (autograd gives the averaged gradient).
        shifted = _shifted(x, self.noise, self.delta)
        return self.target.energy(shifted).reshape(x.shape[0], -1).mean(-1)

    def energy_and_grad(self, x: Tensor) -> tuple[Tensor, Tensor]:
        x = self._as_input(x)
        if self._closed_form is not None:
            return self._closed_form(self.target, x, self.delta)
        if self.noise is None or self.delta == 0:
            return self.target.energy_and_grad(x)
        values, gradients = self._terms(x)
        return values.mean(-1), gradients.mean(1)

    def grad_energy(self, x: Tensor) -> Tensor:
        return self.energy_and_grad(x)[1]

    def estimate(self, x: Tensor) -> SmoothedEstimate:
        """L_delta and its gradient at ``x`` ``(n, d)`` with Monte Carlo standard errors."""
        x = self._as_input(x)
        if self.noise is None or self.delta == 0:
            value, gradient = self.energy_and_grad(x)
            return SmoothedEstimate(value, gradient, None, None)
        values, gradients = self._terms(x)
        root = math.sqrt(values.shape[1])
        return SmoothedEstimate(values.mean(-1), gradients.mean(1), values.std(-1) / root,
                                gradients.std(1) / root)


@dataclass(frozen=True)
class SmoothedEstimate:
    """L_delta(x) ``(n,)`` and grad L_delta(x) ``(n, d)``; their Monte Carlo standard errors
    sd_s / sqrt(S) (``None`` when exact: closed form or delta = 0)."""

    energy: Tensor
    grad: Tensor
    energy_se: Tensor | None
    grad_se: Tensor | None


def smoothed_energy(target: Target, x: Tensor, delta: float, *, n_samples: int | None = None,
                    generator: torch.Generator | None = None) -> SmoothedEstimate:
    """L_delta(x) = E L(x + delta u) and its gradient at the points ``x`` ``(n, d)``.

    ``n_samples=None``: the closed form (error if ``target`` has none); else Monte Carlo with S =
    ``n_samples`` draws from ``generator``, the same draws for every point and for value and
    gradient, returned with standard errors (see :class:`SmoothedTarget`).

    >>> import torch, measureflow as mf
    >>> well = mf.targets.DoubleWell()
    >>> smoothed_energy(well, torch.zeros(1, 1), 0.5).energy   # 1 + 3 / 16 - 2 / 4
    tensor([0.6875])
    """
    smoothed = SmoothedTarget(_check_target(target), delta, n_samples=n_samples, generator=generator)
    if not isinstance(x, Tensor):
        raise TypeError(f"x must be a torch tensor (n, d), got {type(x).__name__}")
    return smoothed.estimate(check_finite(x, "x"))
