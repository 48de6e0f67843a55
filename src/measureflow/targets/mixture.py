"""Gaussian mixtures: L(x) = -log sum_k w_k N(x; m_k, C_k)."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from measureflow._core import check_positive
from measureflow.targets.base import Target, as_buffer, check_beta_one, common_dtype

__all__ = ["GaussianMixture"]


class GaussianMixture(Target):
    """The mixture sum_k w_k N(m_k, C_k) as the Gibbs measure at beta = 1 of L = -log p.

    ``covs`` may be ``(K, d, d)`` full covariances, ``(K,)`` isotropic variances (C_k = v_k I,
    as a vector ``cov`` means variances for :class:`Gaussian`), a single number (one common
    variance), or ``None`` (identity). The gradient is analytic:
    grad L(x) = sum_k r_k(x) C_k^{-1} (x - m_k) with responsibilities
    r_k = softmax_k(log w_k + log N(x; m_k, C_k)).
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
        device = means.device
        n_modes, dim = means.shape
        weights = (
            torch.full((n_modes,), 1.0 / n_modes, dtype=dtype, device=device)
            if weights is None
            else as_buffer(weights, "weights", 1, dtype).to(device)
        )
        if weights.shape != (n_modes,) or bool((weights <= 0).any()):
            raise ValueError(f"weights must be {n_modes} positive numbers, got {weights.tolist()}")
        weights = weights / weights.sum()
        super().__init__(dim)
        self._anchor = self._anchor.to(device=device, dtype=dtype)
        self.register_buffer("means", means)
        self.register_buffer("log_weights", weights.log())
        if covs is None or isinstance(covs, (int, float)) or torch.as_tensor(covs).ndim <= 1:
            variances = (
                torch.ones(n_modes, dtype=dtype, device=device) if covs is None
                else torch.as_tensor(covs, dtype=dtype).to(device)
            )
            variances = variances.expand(n_modes).clone() if variances.ndim == 0 else variances
            if (
                variances.shape != (n_modes,)
                or bool((variances <= 0).any())
                or not bool(torch.isfinite(variances).all())
            ):
                raise ValueError(
                    f"isotropic covs must be {n_modes} positive variances (C_k = v_k I), got {covs!r}"
                )
            self.isotropic = True
            self.register_buffer("variances", variances)
            stds = variances.sqrt()
            self.register_buffer("cholesky", torch.diag_embed(stds[:, None].expand(n_modes, dim)))
        else:
            covs = as_buffer(covs, "covs", 3, dtype).to(device)
            if covs.shape != (n_modes, dim, dim):
                raise ValueError(
                    f"covs must have shape ({n_modes}, {dim}, {dim}), got {tuple(covs.shape)}"
                )
            # Cholesky reads one triangle only: check symmetry, or an asymmetric matrix would be
            # silently replaced by its lower triangle's symmetrization.
            if not torch.allclose(covs, covs.mT, rtol=1e-5, atol=1e-8):
                raise ValueError("every covariance in covs must be symmetric")
            cholesky, info = torch.linalg.cholesky_ex(covs)
            if bool((info != 0).any()):
                raise ValueError("every covariance in covs must be positive definite")
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
        """``n_modes`` equal-weight isotropic Gaussians (standard deviation ``std``) evenly spaced
        on a circle of ``radius`` in 2-D."""
        angles = torch.arange(n_modes, dtype=torch.get_default_dtype()) * (2 * math.pi / n_modes)
        means = radius * torch.stack([angles.cos(), angles.sin()], dim=-1)
        return cls(means, torch.full((n_modes,), float(std) ** 2))

    def _component_log_probs(self, x: Tensor) -> Tensor:
        """log w_k + log N(x; m_k, C_k), shape ``(n, K)``."""
        # Differences first, then squares: the expanded ||x||^2 - 2 x.m + ||m||^2 loses every
        # digit in float32 when x and m are far from the origin but close to each other.
        centred = x[:, None, :] - self.means
        if self.isotropic:
            quadratic = centred.square().sum(-1) / self.variances
        else:
            quadratic = (torch.einsum("nkd,kde->nke", centred, self.precisions) * centred).sum(-1)
        return self.log_weights + self.log_norms - 0.5 * quadratic

    def energy(self, x: Tensor) -> Tensor:
        return -torch.logsumexp(self._component_log_probs(self._as_input(x)), dim=-1)

    def energy_and_grad(self, x: Tensor) -> tuple[Tensor, Tensor]:
        log_probs = self._component_log_probs(self._as_input(x))
        log_total = torch.logsumexp(log_probs, dim=-1, keepdim=True)
        responsibilities = (log_probs - log_total).exp()
        centred = x[:, None, :] - self.means
        if self.isotropic:
            weighted = responsibilities / self.variances
            gradient = (weighted[:, :, None] * centred).sum(1)
        else:
            gradient = torch.einsum("nk,nkd,kde->ne", responsibilities, centred, self.precisions)
        return -log_total[:, 0], gradient

    def grad_energy(self, x: Tensor) -> Tensor:
        return self.energy_and_grad(x)[1]

    def log_normalizer(self, beta: float = 1.0) -> float | None:
        return 0.0 if check_positive(beta, "beta") == 1.0 else None

    def sample(self, n: int, beta: float = 1.0, generator: torch.Generator | None = None) -> Tensor:
        check_beta_one(beta, "exact sampling of a Gaussian mixture")
        component = torch.multinomial(
            self.log_weights.exp(), n, replacement=True, generator=generator
        )
        noise = torch.randn(n, self.dim, generator=generator, dtype=self.dtype, device=self.device)
        return self.means[component] + (self.cholesky[component] @ noise[..., None])[..., 0]
