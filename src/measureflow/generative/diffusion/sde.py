r"""Forward noising SDEs dX = f(t) X dt + g(t) dB with Gaussian transition kernels.

Every SDE here is linear in x, so it is fixed by two scalar functions of time, the drift
coefficient f(t) and the diffusion g(t), and its transition kernel from X_0 = x0 is Gaussian:

    p_t(x | x0) = N(x; alpha(t) x0, sigma(t)^2 I),
    alpha(t) = exp(int_0^t f),   sigma(t)^2 = int_0^t alpha(t)^2 / alpha(s)^2 g(s)^2 ds.

``marginal_coefficients(t)`` returns (alpha(t), sigma(t)) in closed form; the reverse-time
processes in :mod:`~measureflow.generative.diffusion.sampling` need only ``drift``, ``diffusion``
and the prior N(0, prior_std^2 I) that p_T is close to.

References: Song, Sohl-Dickstein, Kingma, Kumar, Ermon & Poole (2021), "Score-based generative
modeling through stochastic differential equations", ICLR (VP, VE and sub-VP, eqs. 9-11 and
appendix B); Nichol & Dhariwal (2021), "Improved denoising diffusion probabilistic models"
(the cosine schedule).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from typing import Any

import torch
from torch import Tensor

from measureflow._core import check_positive

__all__ = ["OU", "SDE", "SubVPSDE", "VESDE", "VPSDE", "broadcast_time", "make_sde", "SDE_NAMES"]


def broadcast_time(t: Tensor, x: Tensor) -> Tensor:
    """``t`` of shape ``(n,)`` (or a scalar) reshaped to ``(n, 1, ..., 1)`` to multiply ``x``."""
    if t.dim() == 0:
        return t
    if t.shape[0] != x.shape[0]:
        raise ValueError(f"t has {t.shape[0]} entries but x has {x.shape[0]} rows")
    return t.reshape(t.shape[0], *([1] * (x.dim() - 1)))


class SDE(ABC):
    """A linear forward SDE dX = f(t) X dt + g(t) dB on [0, T] (abstract).

    Subclasses give ``drift_coefficient`` f(t), ``diffusion`` g(t) and
    ``marginal_coefficients`` (alpha(t), sigma(t)); ``T`` is the end time, ``t_min`` the
    smallest time used for training and sampling (sigma(t_min) > 0 keeps the score finite),
    ``prior_std`` the standard deviation of the prior N(0, prior_std^2 I) that stands for p_T.
    All methods take ``t`` as a tensor of shape ``(n,)`` or a scalar tensor.
    """

    T: float = 1.0
    t_min: float = 1e-3
    prior_std: float = 1.0

    @abstractmethod
    def drift_coefficient(self, t: Tensor) -> Tensor:
        """f(t): the drift is f(t) x."""

    @abstractmethod
    def diffusion(self, t: Tensor) -> Tensor:
        """g(t)."""

    @abstractmethod
    def marginal_coefficients(self, t: Tensor) -> tuple[Tensor, Tensor]:
        """(alpha(t), sigma(t)) of the transition kernel N(alpha x0, sigma^2 I)."""

    @abstractmethod
    def config(self) -> dict[str, Any]:
        """A JSON-safe description from which :func:`make_sde` rebuilds this SDE."""

    def drift(self, x: Tensor, t: Tensor) -> Tensor:
        """f(t) x, shape of ``x``."""
        return broadcast_time(self.drift_coefficient(t), x) * x

    def marginal(self, x0: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
        """Mean alpha(t) x0 (shape of ``x0``) and std sigma(t) (broadcastable to it)."""
        alpha, sigma = self.marginal_coefficients(t)
        return broadcast_time(alpha, x0) * x0, broadcast_time(sigma, x0)

    def perturb(self, x0: Tensor, t: Tensor, noise: Tensor) -> Tensor:
        """A draw of p_t(. | x0): alpha(t) x0 + sigma(t) noise."""
        mean, std = self.marginal(x0, t)
        return mean + std * noise

    def prior_sample(self, shape: tuple[int, ...], generator: torch.Generator | None = None, *,
                     dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu") -> Tensor:
        """``shape`` draws of the prior N(0, prior_std^2 I)."""
        return self.prior_std * torch.randn(shape, generator=generator, dtype=dtype, device=device)

    def prior_log_prob(self, x: Tensor) -> Tensor:
        """log N(x; 0, prior_std^2 I) summed over all but the first axis: ``(n, ...) -> (n,)``."""
        d = x[0].numel()
        squared = x.reshape(x.shape[0], -1).square().sum(dim=1)
        return -0.5 * squared / self.prior_std**2 - d * math.log(self.prior_std) - 0.5 * d * math.log(
            2 * math.pi)

    def kernel_log_prob(self, x: Tensor, x0: Tensor, t: Tensor) -> Tensor:
        """log p_t(x | x0) summed over all but the first axis, ``(n,)``."""
        mean, std = self.marginal(x0, t)
        d = x[0].numel()
        z = ((x - mean) / std).reshape(x.shape[0], -1)
        log_std = torch.log(std).reshape(-1) if std.dim() else torch.log(std)
        return -0.5 * z.square().sum(dim=1) - d * log_std - 0.5 * d * math.log(2 * math.pi)

    def forward_path(self, x0: Tensor, times: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Paths ``(k, n, ...)`` of the forward SDE from ``x0`` ``(n, ...)`` at increasing ``times``
        ``(k,)`` (times[0] = 0), drawn with the exact Gaussian transitions

            x_s | x_r ~ N((alpha_s / alpha_r) x_r, (sigma_s^2 - (alpha_s / alpha_r)^2 sigma_r^2) I).
        """
        times = torch.as_tensor(times, dtype=torch.float64)
        if times.dim() != 1 or times.numel() < 1 or bool((times[1:] < times[:-1]).any()):
            raise ValueError("times must be a non-empty increasing 1-D sequence")
        alpha, sigma = self.marginal_coefficients(times)
        x, states = x0, [x0]
        for k in range(1, times.shape[0]):
            ratio = alpha[k] / alpha[k - 1]
            variance = (sigma[k] ** 2 - ratio**2 * sigma[k - 1] ** 2).clamp_min(0.0)
            noise = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
            x = float(ratio) * x + float(torch.sqrt(variance)) * noise
            states.append(x)
        return torch.stack(states)

    def time_grid(self, n_steps: int, *, dtype: torch.dtype = torch.float32,
                  device: torch.device | str = "cpu") -> Tensor:
        """``n_steps + 1`` times from T down to t_min, uniformly spaced."""
        return torch.linspace(self.T, self.t_min, n_steps + 1, dtype=dtype, device=device)

    def __repr__(self) -> str:
        arguments = ", ".join(f"{key}={value!r}" for key, value in self.config().items() if key != "name")
        return f"{type(self).__name__}({arguments})"


class OU(SDE):
    r"""The Ornstein-Uhlenbeck process dX = -X dt + sqrt(2) dB: GLD toward N(0, I).

    alpha(t) = e^{-t}, sigma(t)^2 = 1 - e^{-2t}. It is the Langevin diffusion of L(x) = |x|^2/2
    with beta = 1, so N(0, I) satisfies a log-Sobolev inequality with constant 1 and
    KL(p_t || N(0, I)) <= e^{-2t} KL(p_0 || N(0, I)).

    >>> sde = OU(T=5.0)
    >>> alpha, sigma = sde.marginal_coefficients(torch.tensor(1.0))
    >>> round(float(alpha**2 + sigma**2), 6)
    1.0
    """

    def __init__(self, T: float = 5.0, t_min: float = 1e-3) -> None:  # noqa: N803 (math name)
        self.T = check_positive(T, "T")
        self.t_min = check_positive(t_min, "t_min")
        if self.t_min >= self.T:
            raise ValueError(f"t_min must be below T, got t_min={t_min} and T={T}")

    def drift_coefficient(self, t: Tensor) -> Tensor:
        return torch.full_like(t, -1.0)

    def diffusion(self, t: Tensor) -> Tensor:
        return torch.full_like(t, math.sqrt(2.0))

    def marginal_coefficients(self, t: Tensor) -> tuple[Tensor, Tensor]:
        return torch.exp(-t), torch.sqrt(-torch.expm1(-2 * t))

    def config(self) -> dict[str, Any]:
        return {"name": "ou", "T": self.T, "t_min": self.t_min}


class _BetaSchedule:
    """beta(t) and B(t) = int_0^t beta for the VP family, linear or cosine."""

    def __init__(self, beta_min: float, beta_max: float, schedule: str, cosine_offset: float) -> None:
        if schedule not in ("linear", "cosine"):
            raise ValueError(f"schedule must be 'linear' or 'cosine', got {schedule!r}")
        self.schedule = schedule
        self.beta_min = check_positive(beta_min, "beta_min")
        self.beta_max = check_positive(beta_max, "beta_max")
        if schedule == "linear" and self.beta_max < self.beta_min:
            raise ValueError(f"beta_max must be >= beta_min, got {beta_max} < {beta_min}")
        self.offset = check_positive(cosine_offset, "cosine_offset")

    def _phase(self, t: Tensor) -> Tensor:
        return 0.5 * math.pi * (t + self.offset) / (1 + self.offset)

    def beta(self, t: Tensor) -> Tensor:
        if self.schedule == "linear":
            return self.beta_min + t * (self.beta_max - self.beta_min)
        # alpha_bar(t) = cos^2(phase(t)) / cos^2(phase(0)), beta = -d/dt log alpha_bar.
        return math.pi / (1 + self.offset) * torch.tan(self._phase(t))

    def integral(self, t: Tensor) -> Tensor:
        if self.schedule == "linear":
            return self.beta_min * t + 0.5 * (self.beta_max - self.beta_min) * t.square()
        start = math.log(math.cos(0.5 * math.pi * self.offset / (1 + self.offset)) ** 2)
        # Rounding can make B(0) = -1e-17, and sigma^2 = 1 - e^{-B} would then be negative.
        return (start - 2 * torch.log(torch.cos(self._phase(t)))).clamp_min(0)

    def end_time(self, alpha_bar_end: float) -> float:
        """The cosine schedule's T at which alpha_bar(T) = ``alpha_bar_end`` (it reaches 0 at t=1)."""
        c0 = math.cos(0.5 * math.pi * self.offset / (1 + self.offset))
        phase = math.acos(math.sqrt(alpha_bar_end) * c0)
        return phase / (0.5 * math.pi) * (1 + self.offset) - self.offset


class VPSDE(SDE):
    r"""Variance preserving: dX = -(1/2) beta(t) X dt + sqrt(beta(t)) dB (DDPM's continuous limit).

    With B(t) = int_0^t beta: alpha(t) = exp(-B(t)/2), sigma(t)^2 = 1 - exp(-B(t)).
    ``schedule="linear"``: beta(t) = beta_min + t (beta_max - beta_min) on [0, 1].
    ``schedule="cosine"``: alpha(t)^2 = cos^2(pi/2 (t+s)/(1+s)) / cos^2(pi/2 s/(1+s)), s = 0.008;
    beta(t) blows up at t = 1, so T stops where alpha(T)^2 = ``alpha_bar_end`` (default 1e-3,
    T = 0.98); ``beta_min``/``beta_max`` are ignored there.

    >>> sde = VPSDE()
    >>> alpha, sigma = sde.marginal_coefficients(torch.tensor([0.0, 1.0]))
    >>> [round(float(a), 5) for a in alpha], round(float(sigma[1]), 5)
    ([1.0, 0.00657], 0.99998)
    """

    def __init__(self, beta_min: float = 0.1, beta_max: float = 20.0, schedule: str = "linear", *,
                 t_min: float = 1e-3, cosine_offset: float = 0.008, alpha_bar_end: float = 1e-3) -> None:
        self.beta_schedule = _BetaSchedule(beta_min, beta_max, schedule, cosine_offset)
        self.alpha_bar_end = float(alpha_bar_end)
        if not 0 < self.alpha_bar_end < 1:
            raise ValueError(f"alpha_bar_end must lie in (0, 1), got {alpha_bar_end}")
        self.T = 1.0 if schedule == "linear" else self.beta_schedule.end_time(self.alpha_bar_end)
        self.t_min = check_positive(t_min, "t_min")
        if self.t_min >= self.T:
            raise ValueError(f"t_min must be below T = {self.T:.4g}, got {t_min}")

    def beta(self, t: Tensor) -> Tensor:
        return self.beta_schedule.beta(t)

    def drift_coefficient(self, t: Tensor) -> Tensor:
        return -0.5 * self.beta(t)

    def diffusion(self, t: Tensor) -> Tensor:
        return torch.sqrt(self.beta(t))

    def marginal_coefficients(self, t: Tensor) -> tuple[Tensor, Tensor]:
        integral = self.beta_schedule.integral(t)
        return torch.exp(-0.5 * integral), torch.sqrt(-torch.expm1(-integral))

    def config(self) -> dict[str, Any]:
        schedule = self.beta_schedule
        return {"name": "vp", "beta_min": schedule.beta_min, "beta_max": schedule.beta_max,
                "schedule": schedule.schedule, "t_min": self.t_min, "cosine_offset": schedule.offset,
                "alpha_bar_end": self.alpha_bar_end}


class SubVPSDE(VPSDE):
    r"""Sub-variance preserving: dX = -(1/2) beta(t) X dt + sqrt(beta(t) (1 - e^{-2 B(t)})) dB.

    alpha(t) = exp(-B(t)/2) as for VP, sigma(t) = 1 - e^{-B(t)} (the *std*; its variance is
    below VP's at every t). Song et al. (2021), eq. 11.

    >>> sde = SubVPSDE()
    >>> _, sigma = sde.marginal_coefficients(torch.tensor(0.5))
    >>> round(float(sigma), 5)
    0.92094
    """

    def diffusion(self, t: Tensor) -> Tensor:
        integral = self.beta_schedule.integral(t)
        return torch.sqrt(self.beta(t) * -torch.expm1(-2 * integral))

    def marginal_coefficients(self, t: Tensor) -> tuple[Tensor, Tensor]:
        integral = self.beta_schedule.integral(t)
        return torch.exp(-0.5 * integral), -torch.expm1(-integral)

    def config(self) -> dict[str, Any]:
        return {**super().config(), "name": "subvp"}


class VESDE(SDE):
    r"""Variance exploding: dX = sqrt(d sigma_ve(t)^2 / dt) dB, sigma_ve(t) = s_min (s_max/s_min)^t.

    No drift, alpha(t) = 1 and sigma(t)^2 = sigma_ve(t)^2 - s_min^2 exactly (the process starts
    at the data, not at data plus s_min noise); g(t)^2 = 2 log(s_max/s_min) sigma_ve(t)^2. The
    prior is N(0, s_max^2 I). Song et al. (2021), eq. 9; NCSN's noise levels are sigma_ve on a
    grid of t.

    >>> sde = VESDE(sigma_min=0.01, sigma_max=10.0)
    >>> _, sigma = sde.marginal_coefficients(torch.tensor(1.0))
    >>> round(float(sigma), 4)
    10.0
    """

    def __init__(self, sigma_min: float = 0.01, sigma_max: float = 10.0, *, t_min: float = 1e-5) -> None:
        self.sigma_min = check_positive(sigma_min, "sigma_min")
        self.sigma_max = check_positive(sigma_max, "sigma_max")
        if self.sigma_max <= self.sigma_min:
            raise ValueError(f"sigma_max must exceed sigma_min, got {sigma_max} <= {sigma_min}")
        self.T = 1.0
        self.t_min = check_positive(t_min, "t_min")
        if self.t_min >= self.T:
            raise ValueError(f"t_min must be below T = 1, got {t_min}")
        self.prior_std = self.sigma_max
        self._log_ratio = math.log(self.sigma_max / self.sigma_min)

    def noise_level(self, t: Tensor) -> Tensor:
        """sigma_ve(t) = s_min (s_max / s_min)^t."""
        return self.sigma_min * torch.exp(t * self._log_ratio)

    def drift_coefficient(self, t: Tensor) -> Tensor:
        return torch.zeros_like(t)

    def diffusion(self, t: Tensor) -> Tensor:
        return self.noise_level(t) * math.sqrt(2 * self._log_ratio)

    def marginal_coefficients(self, t: Tensor) -> tuple[Tensor, Tensor]:
        # sigma_min^2 (r^{2t} - 1) via expm1 keeps sigma accurate at small t.
        variance = self.sigma_min**2 * torch.expm1(2 * t * self._log_ratio)
        return torch.ones_like(t), torch.sqrt(variance)

    def config(self) -> dict[str, Any]:
        return {"name": "ve", "sigma_min": self.sigma_min, "sigma_max": self.sigma_max,
                "t_min": self.t_min}


SDE_NAMES = ("ou", "vp", "subvp", "ve")
_CLASSES: dict[str, type[SDE]] = {"ou": OU, "vp": VPSDE, "subvp": SubVPSDE, "ve": VESDE}


def make_sde(name: str, **options: Any) -> SDE:
    """The SDE called ``name`` (one of ``SDE_NAMES``) with keyword ``options``; ``make_sde(**sde.config())``
    rebuilds ``sde``.

    >>> make_sde("vp", schedule="cosine").T < 1
    True
    """
    if name not in _CLASSES:
        raise ValueError(f"unknown SDE {name!r}; choose one of {', '.join(SDE_NAMES)}")
    try:
        return _CLASSES[name](**options)
    except TypeError as error:
        raise ValueError(f"bad options for the {name} SDE: {error}") from None
