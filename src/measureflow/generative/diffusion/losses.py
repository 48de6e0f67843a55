r"""Denoising score matching (Vincent 2011) for a noise-prediction network.

For t ~ U(t_min, T), x0 from the data, z ~ N(0, I) and x_t = alpha(t) x0 + sigma(t) z, the
conditional score is grad log p_t(x_t | x0) = -z / sigma(t). Writing the model's score as
s = -eps_theta / sigma, the DSM objective with weight lambda(t) is

    E lambda(t) |s(x_t, t) + z / sigma|^2 = E (lambda(t) / sigma(t)^2) |eps_theta(x_t, t) - z|^2,

minimized by s = grad log p_t (the conditional expectation of the conditional score).

- ``"sigma2"``: lambda = sigma^2, the plain noise-prediction loss E|eps_theta - z|^2 (Ho et al.
  2020; Song et al. 2021's default);
- ``"likelihood"``: lambda = g(t)^2, for which the weighted loss bounds KL(p_0 || p_model)
  (Song, Durkan, Murray & Ermon 2021, theorem 1); t is then drawn with density proportional to
  g^2/sigma^2 (exactly, by inverting the log noise-to-signal ratio), which keeps the estimator's
  variance bounded where sigma -> 0, and the loss is normalized by the weight's mean so both
  weightings have the same scale.

Both losses average over the batch and over the dimensions of x.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from measureflow.generative.diffusion.sde import SDE

__all__ = ["WEIGHTINGS", "dsm_loss", "log_noise_to_signal", "sample_times"]

WEIGHTINGS = ("sigma2", "likelihood")
_BISECTION_STEPS = 64


def log_noise_to_signal(sde: SDE, t: Tensor) -> Tensor:
    """lambda(t) = log(sigma(t)^2 / alpha(t)^2), increasing in t, with lambda'(t) = g(t)^2/sigma(t)^2.

    (From (sigma^2)' = 2 f sigma^2 + g^2 and alpha' = f alpha.)
    """
    alpha, sigma = sde.marginal_coefficients(t)
    return 2 * (torch.log(sigma) - torch.log(alpha))


def _invert_log_noise_to_signal(sde: SDE, targets: Tensor) -> Tensor:
    """The t in [t_min, T] with lambda(t) = ``targets`` (float64), by bisection: lambda is
    increasing, and 64 halvings of [t_min, T] reach float64 resolution."""
    lower = torch.full_like(targets, sde.t_min)
    upper = torch.full_like(targets, sde.T)
    for _ in range(_BISECTION_STEPS):
        middle = 0.5 * (lower + upper)
        below = log_noise_to_signal(sde, middle) < targets
        lower = torch.where(below, middle, lower)
        upper = torch.where(below, upper, middle)
    return 0.5 * (lower + upper)


def sample_times(sde: SDE, n: int, generator: torch.Generator | None, weighting: str = "sigma2", *,
                 dtype: torch.dtype = torch.float32,
                 device: torch.device | str = "cpu") -> tuple[Tensor, Tensor]:
    """Training times ``(n,)`` and importance weights ``(n,)`` (all ones).

    ``"sigma2"``: t ~ U(t_min, T). ``"likelihood"``: t has density proportional to w(t) =
    g^2/sigma^2 = lambda'(t) (:func:`log_noise_to_signal`), drawn exactly by inverting lambda at
    a uniform draw between lambda(t_min) and lambda(T). With q = w / int w the importance
    weight of the normalized loss E_U[w loss] / E_U[w] is w / (q (T - t_min) E_U w) = 1.
    """
    uniform = torch.rand(n, generator=generator, dtype=dtype, device=device)
    if weighting == "sigma2":
        return sde.t_min + (sde.T - sde.t_min) * uniform, torch.ones_like(uniform)
    if weighting != "likelihood":
        raise ValueError(f"unknown weighting {weighting!r}; choose one of {', '.join(WEIGHTINGS)}")
    ends = log_noise_to_signal(sde, torch.tensor([sde.t_min, sde.T], dtype=torch.float64, device=device))
    targets = ends[0] + (ends[1] - ends[0]) * uniform.to(torch.float64)
    t = _invert_log_noise_to_signal(sde, targets).to(dtype)
    return t, torch.ones_like(t)


def dsm_loss(net: Callable[[Tensor, Tensor], Tensor], sde: SDE, x0: Tensor,
             generator: torch.Generator | None = None, weighting: str = "sigma2") -> Tensor:
    """The denoising score-matching loss of the noise predictor ``net(x_t, t)`` on a batch
    ``x0`` ``(n, ...)`` (scalar, differentiable in ``net``'s parameters).

    >>> from measureflow.generative.diffusion.sde import VPSDE
    >>> zero = lambda x, t: torch.zeros_like(x)   # predicts no noise: loss = E|z|^2 / d = 1
    >>> g = torch.Generator().manual_seed(0)
    >>> round(float(dsm_loss(zero, VPSDE(), torch.zeros(50_000, 2), g)), 2)
    1.0
    """
    if x0.dim() < 2 or x0.shape[0] < 1:
        raise ValueError(f"x0 must have shape (n, ...) with n >= 1, got {tuple(x0.shape)}")
    t, weight = sample_times(sde, x0.shape[0], generator, weighting, dtype=x0.dtype, device=x0.device)
    noise = torch.randn(x0.shape, generator=generator, dtype=x0.dtype, device=x0.device)
    prediction = net(sde.perturb(x0, t, noise), t)
    per_sample = (prediction - noise).square().reshape(x0.shape[0], -1).mean(dim=1)
    return (weight * per_sample).mean()
