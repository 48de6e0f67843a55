r"""Score functions s(x, t) ~ grad_x log p_t(x): exact ones for Gaussian-mixture data, learned ones.

A score is any callable ``score(x, t)`` with ``x`` of shape ``(n, ...)`` and ``t`` of shape
``(n,)`` that returns a tensor shaped like ``x``.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from measureflow._core import as_tensor
from measureflow.generative.diffusion.sde import SDE, broadcast_time

__all__ = ["GaussianMixtureScore", "ScoreModel"]


class GaussianMixtureScore:
    r"""The exact score and density of p_t when the data law p_0 is a Gaussian mixture.

    If p_0 = sum_k w_k N(mu_k, Sigma_k) and p_t(x | x0) = N(alpha x0, sigma^2 I), then

        p_t = sum_k w_k N(alpha mu_k, C_k(t)),   C_k(t) = alpha^2 Sigma_k + sigma^2 I,
        grad log p_t(x) = - sum_k r_k(x) C_k(t)^{-1} (x - alpha mu_k),

    with responsibilities r_k proportional to w_k N(x; alpha mu_k, C_k). Each Sigma_k is
    diagonalized once, Sigma_k = U_k diag(lambda_k) U_k^T, so C_k(t) = U_k diag(alpha^2 lambda_k
    + sigma^2) U_k^T costs nothing per time. ``means`` ``(K, d)``, ``covs`` ``(K, d, d)``,
    ``weights`` ``(K,)`` (normalized here). Computed in the dtype of ``means`` (float64 advised)
    and returned in the dtype of ``x``. Singular covariances are allowed for t > 0 (sigma > 0);
    at t = 0 they make the density infinite on their support.

    >>> from measureflow.generative.diffusion.sde import OU
    >>> score = GaussianMixtureScore(torch.zeros(1, 2), 4 * torch.eye(2)[None], torch.ones(1), OU())
    >>> x = torch.tensor([[1.0, 0.0]]); t = torch.tensor([0.0])
    >>> score(x, t)   # -x / 4 at t = 0
    tensor([[-0.2500, -0.0000]])
    """

    def __init__(self, means: Any, covs: Any, weights: Any, sde: SDE) -> None:
        means = as_tensor(means, "means")
        if means.dim() != 2:
            raise ValueError(f"means must have shape (K, d), got {tuple(means.shape)}")
        n_components, dim = means.shape
        covs = as_tensor(covs, "covs", dtype=means.dtype, device=means.device)
        if covs.shape != (n_components, dim, dim):
            raise ValueError(f"covs must have shape {(n_components, dim, dim)}, got {tuple(covs.shape)}")
        weights = as_tensor(weights, "weights", dtype=means.dtype, device=means.device)
        if weights.shape != (n_components,) or bool((weights < 0).any()) or float(weights.sum()) <= 0:
            raise ValueError(f"weights must be {n_components} non-negative numbers with a positive sum")
        eigenvalues, eigenvectors = torch.linalg.eigh(0.5 * (covs + covs.transpose(1, 2)))
        # Rounding leaves exact zeros of a singular covariance slightly negative.
        tolerance = 1e-10 * eigenvalues.abs().amax(dim=1, keepdim=True).clamp_min(1e-300)
        if bool((eigenvalues < -tolerance).any()):
            raise ValueError("covs must be positive semi-definite")
        eigenvalues = eigenvalues.clamp_min(0)
        self.means, self.sde, self.dim = means, sde, dim
        self.eigenvalues, self.eigenvectors = eigenvalues, eigenvectors
        self.log_weights = torch.log(weights / weights.sum())

    def _terms(self, x: Tensor, t: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Per component: log w_k N(x; alpha mu_k, C_k) ``(n, K)``, the whitened residual
        U_k^T (x - alpha mu_k) / diag(C_k) ``(n, K, d)`` and its rotation back ``(n, K, d)``."""
        if x.dim() != 2 or x.shape[1] != self.dim:
            raise ValueError(f"x must have shape (n, {self.dim}), got {tuple(x.shape)}")
        x = x.to(self.means.dtype)
        t = torch.as_tensor(t, dtype=self.means.dtype, device=x.device).expand(x.shape[0])
        alpha, sigma = self.sde.marginal_coefficients(t)
        residual = x[:, None, :] - alpha[:, None, None] * self.means[None]
        rotated = torch.einsum("nkd,kde->nke", residual, self.eigenvectors)
        variance = alpha[:, None, None] ** 2 * self.eigenvalues[None] + sigma[:, None, None] ** 2
        log_density = -0.5 * (rotated.square() / variance).sum(-1) - 0.5 * torch.log(variance).sum(-1)
        log_density = log_density - 0.5 * self.dim * math.log(2 * math.pi) + self.log_weights[None]
        precision_residual = torch.einsum("nke,kde->nkd", rotated / variance, self.eigenvectors)
        return log_density, rotated, precision_residual

    def log_prob(self, x: Tensor, t: Tensor) -> Tensor:
        """log p_t(x), ``(n,)``."""
        log_density, _, _ = self._terms(x, t)
        return torch.logsumexp(log_density, dim=1).to(x.dtype)

    def __call__(self, x: Tensor, t: Tensor) -> Tensor:
        """grad_x log p_t(x), shape of ``x``."""
        log_density, _, precision_residual = self._terms(x, t)
        responsibilities = torch.softmax(log_density, dim=1)
        return -(responsibilities[..., None] * precision_residual).sum(1).to(x.dtype)

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """``n`` exact draws of the data law p_0, ``(n, d)``."""
        component = torch.multinomial(self.log_weights.exp(), n, replacement=True, generator=generator)
        noise = torch.randn(n, self.dim, generator=generator, dtype=self.means.dtype,
                            device=self.means.device)
        scale = self.eigenvectors[component] * self.eigenvalues[component].clamp_min(0).sqrt()[:, None, :]
        return self.means[component] + torch.einsum("nde,ne->nd", scale, noise)


class ScoreModel(nn.Module):
    r"""A noise-prediction network as a score: s(x, t) = -eps_theta(x, t) / sigma(t).

    Denoising score matching with sigma(t)^2 weighting trains eps_theta(alpha x0 + sigma z, t) to
    predict z; the optimum is eps* = -sigma(t) grad log p_t, hence the formula above.
    ``net(x, t)`` maps ``(n, ...)`` and ``(n,)`` to the shape of ``x``.
    """

    def __init__(self, net: nn.Module, sde: SDE) -> None:
        super().__init__()
        self.net = net
        self.sde = sde

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        _, sigma = self.sde.marginal_coefficients(t)
        return -self.net(x, t) / broadcast_time(sigma, x)
