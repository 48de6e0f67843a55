"""Gaussian mixtures: L(x) = -log sum_k w_k N(x; m_k, C_k)."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from measureflow.targets.base import Target, as_buffer, check_beta_one, common_dtype

__all__ = ["GaussianMixture"]


class GaussianMixture(Target):
    """The mixture sum_k w_k N(m_k, C_k) as the Gibbs measure at beta = 1 of L = -log p.

    ``covs`` may be ``(K, d, d)`` full covariances, ``(K,)`` isotropic standard deviations
    (C_k = s_k^2 I), a single number (one common standard deviation), or ``None`` (identity).
    The isotropic form takes a fused path: one ``(n, K)`` matrix product gives all squared
    distances, and the gradient grad L(x) = sum_k r_k(x) (x - m_k) / s_k^2 with responsibilities
    r_k = softmax_k(log w_k + log N(x; m_k, s_k^2 I)) needs no autograd.
    At beta != 1, pi_beta is p^beta / Z: the normalizer and the exact sampler are then unknown.

    >>> import torch, measureflow as mf
    >>> ring = mf.targets.GaussianMixture.ring(n_modes=8, radius=4.0, std=0.5)
    >>> ring.sample(3, generator=torch.Generator().manual_seed(0)).shape
    torch.Size([3, 2])
    """

    name = "gaussian-mixture"

    def __init__(self, means, covs=None, weights=None) -> None:
        dtype = common_dtype(means, covs, weights)
        means = as_buffer(means, "means", 2, dtype)
        n_modes, dim = means.shape
        weights = (
            torch.full((n_modes,), 1.0 / n_modes, dtype=dtype)
            if weights is None
            else as_buffer(weights, "weights", 1, dtype)
        )
        if weights.shape != (n_modes,) or bool((weights <= 0).any()):
            raise ValueError(f"weights must be {n_modes} positive numbers, got {weights.tolist()}")
        weights = weights / weights.sum()
        super().__init__(dim)
        self._anchor = self._anchor.to(dtype)
        self.register_buffer("means", means)
        self.register_buffer("log_weights", weights.log())
        if covs is None or isinstance(covs, (int, float)) or torch.as_tensor(covs).ndim <= 1:
            stds = torch.ones(n_modes, dtype=dtype) if covs is None else torch.as_tensor(covs, dtype=dtype)
            stds = stds.expand(n_modes).clone() if stds.ndim == 0 else stds
            if stds.shape != (n_modes,) or bool((stds <= 0).any()) or not bool(torch.isfinite(stds).all()):
                raise ValueError(f"isotropic covs must be {n_modes} positive standard deviations")
            self.isotropic = True
            self.register_buffer("stds", stds)
            self.register_buffer("cholesky", torch.diag_embed(stds[:, None].expand(n_modes, dim)))
        else:
            covs = as_buffer(covs, "covs", 3, dtype)
            if covs.shape != (n_modes, dim, dim):
                raise ValueError(f"covs must have shape ({n_modes}, {dim}, {dim}), got {tuple(covs.shape)}")
            cholesky, info = torch.linalg.cholesky_ex(covs)
            if bool((info != 0).any()):
                raise ValueError("every covariance in covs must be symmetric positive definite")
            self.isotropic = False
            self.register_buffer("cholesky", cholesky)
            self.register_buffer("precisions", torch.cholesky_inverse(cholesky))
        self.register_buffer(
            "log_norms",
            -torch.log(torch.diagonal(self.cholesky, dim1=-2, dim2=-1)).sum(-1)
            - 0.5 * dim * math.log(2 * math.pi),
        )

    @classmethod
    def ring(cls, n_modes: int = 8, radius: float = 4.0, std: float = 0.5) -> GaussianMixture:
        """``n_modes`` equal-weight isotropic Gaussians evenly spaced on a circle in 2-D."""
        angles = torch.arange(n_modes, dtype=torch.get_default_dtype()) * (2 * math.pi / n_modes)
        means = radius * torch.stack([angles.cos(), angles.sin()], dim=-1)
        return cls(means, torch.full((n_modes,), float(std)))

    def _component_log_probs(self, x: Tensor) -> Tensor:
        """log w_k + log N(x; m_k, C_k), shape ``(n, K)``."""
        if self.isotropic:
            if torch.compiler.is_compiling():
                # Inside a compiled graph the direct form fuses into one loop over the chains;
                # a matrix product there is a separate, threaded BLAS call that costs more than
                # the arithmetic for a handful of modes.
                squared = (x[:, None, :] - self.means).square().sum(-1)
            else:
                squared = (
                    (x * x).sum(-1, keepdim=True)
                    - 2 * x @ self.means.T
                    + (self.means * self.means).sum(-1)
                ).clamp_min(0)
            quadratic = squared / self.stds.square()
        else:
            centred = x[:, None, :] - self.means
            quadratic = (torch.einsum("nkd,kde->nke", centred, self.precisions) * centred).sum(-1)
        return self.log_weights + self.log_norms - 0.5 * quadratic

    def energy(self, x: Tensor) -> Tensor:
        return -torch.logsumexp(self._component_log_probs(self._as_input(x)), dim=-1)

    def energy_and_grad(self, x: Tensor) -> tuple[Tensor, Tensor]:
        log_probs = self._component_log_probs(self._as_input(x))
        log_total = torch.logsumexp(log_probs, dim=-1, keepdim=True)
        responsibilities = (log_probs - log_total).exp()
        if self.isotropic:
            weighted = responsibilities / self.stds.square()
            if torch.compiler.is_compiling():
                gradient = (weighted[:, :, None] * (x[:, None, :] - self.means)).sum(1)
            else:
                gradient = x * weighted.sum(-1, keepdim=True) - weighted @ self.means
        else:
            centred = x[:, None, :] - self.means
            gradient = torch.einsum("nk,nkd,kde->ne", responsibilities, centred, self.precisions)
        return -log_total[:, 0], gradient

    def grad_energy(self, x: Tensor) -> Tensor:
        return self.energy_and_grad(x)[1]

    def log_normalizer(self, beta: float = 1.0) -> float | None:
        return 0.0 if beta == 1.0 else None

    def sample(self, n: int, beta: float = 1.0, generator: torch.Generator | None = None) -> Tensor:
        check_beta_one(beta, "exact sampling of a Gaussian mixture")
        component = torch.multinomial(
            self.log_weights.exp(), n, replacement=True, generator=generator
        )
        noise = torch.randn(n, self.dim, generator=generator, dtype=self.dtype, device=self.device)
        return self.means[component] + (self.cholesky[component] @ noise[..., None])[..., 0]
