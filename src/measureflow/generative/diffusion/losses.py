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
  g^2/sigma^2 by importance sampling on a fine grid, which keeps the estimator's variance
  bounded where sigma -> 0, and the loss is normalized by the weight's mean so both weightings
  have the same scale.

Both losses average over the batch and over the dimensions of x.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from measureflow.generative.diffusion.sde import SDE

__all__ = ["WEIGHTINGS", "dsm_loss", "sample_times"]

WEIGHTINGS = ("sigma2", "likelihood")
_GRID_SIZE = 4096


def _likelihood_table(sde: SDE, device: torch.device, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
    """A grid on [t_min, T] and the CDF of the density proportional to g^2/sigma^2 on it."""
    grid = torch.linspace(sde.t_min, sde.T, _GRID_SIZE, dtype=torch.float64)
    _, sigma = sde.marginal_coefficients(grid)
    weight = sde.diffusion(grid) ** 2 / sigma**2
    cumulative = torch.cumsum(0.5 * (weight[1:] + weight[:-1]) * (grid[1:] - grid[:-1]), 0)
    cdf = torch.cat([cumulative.new_zeros(1), cumulative / cumulative[-1]])
    return grid.to(device, dtype), cdf.to(device, dtype)


def sample_times(sde: SDE, n: int, generator: torch.Generator | None, weighting: str = "sigma2", *,
                 dtype: torch.dtype = torch.float32,
                 device: torch.device | str = "cpu") -> tuple[Tensor, Tensor]:
    """Training times ``(n,)`` and importance weights ``(n,)`` (all ones for ``"sigma2"``).

    For ``"likelihood"`` t has density proportional to w(t) = g^2/sigma^2 (inverse CDF on a grid)
    and the importance weight of the normalized loss E_U[w loss] / E_U[w] is then exactly one.
    """
    uniform = torch.rand(n, generator=generator, dtype=dtype, device=device)
    if weighting == "sigma2":
        return sde.t_min + (sde.T - sde.t_min) * uniform, torch.ones_like(uniform)
    if weighting != "likelihood":
        raise ValueError(f"unknown weighting {weighting!r}; choose one of {', '.join(WEIGHTINGS)}")
    grid, cdf = _likelihood_table(sde, uniform.device, uniform.dtype)
    index = torch.searchsorted(cdf, uniform).clamp(1, _GRID_SIZE - 1)
    fraction = (uniform - cdf[index - 1]) / (cdf[index] - cdf[index - 1]).clamp_min(1e-30)
    t = grid[index - 1] + fraction * (grid[index] - grid[index - 1])
    # With q = w / int w: w(t) / (q(t) (T - t_min) E_U w) = int w / ((T - t_min) E_U w) = 1, so
    # every draw carries weight one.
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
