"""Gaussian targets: N(m, C) as the Gibbs measure of L(x) = (x - m)^T C^{-1} (x - m) / 2."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from measureflow._core import check_positive
from measureflow.targets.base import Target, as_buffer, common_dtype, log_normal_const

__all__ = ["Gaussian"]


class Gaussian(Target):
    """L(x) = (x - m)^T C^{-1} (x - m) / 2, so pi_beta = N(m, C / beta).

    ``cov`` is a full ``(d, d)`` symmetric positive-definite matrix (a vector ``(d,)`` is read as
    a diagonal). Gradient, normalizer and sampler are exact.

    >>> import torch, measureflow as mf
    >>> target = mf.targets.Gaussian(torch.zeros(2), torch.eye(2))
    >>> target.energy(torch.tensor([[3.0, 4.0]]))
    tensor([12.5000])
    """

    name = "gaussian"

    def __init__(self, mean, cov) -> None:
        dtype = common_dtype(mean, cov)
        mean = as_buffer(mean, "mean", 1, dtype)
        cov = as_buffer(cov, "cov", 1 if torch.as_tensor(cov).ndim == 1 else 2, dtype).to(mean.device)
        if cov.ndim == 1:
            cov = torch.diag(cov)
        dim = mean.shape[0]
        if cov.shape != (dim, dim):
            raise ValueError(f"cov must have shape ({dim}, {dim}) to match mean, got {tuple(cov.shape)}")
        if not torch.allclose(cov, cov.T, rtol=1e-5, atol=1e-8):
            raise ValueError("cov must be symmetric")
        cholesky, info = torch.linalg.cholesky_ex(cov)
        if int(info) != 0:
            raise ValueError("cov must be positive definite (its Cholesky factorization failed)")
        super().__init__(dim)
        self._anchor = self._anchor.to(device=mean.device, dtype=dtype)
        self.register_buffer("mean", mean)
        self.register_buffer("cov", cov)
        self.register_buffer("cholesky", cholesky)
        self.register_buffer("precision", torch.cholesky_inverse(cholesky))

    def energy(self, x: Tensor) -> Tensor:
        centred = self._as_input(x) - self.mean
        return 0.5 * ((centred @ self.precision) * centred).sum(-1)

    def grad_energy(self, x: Tensor) -> Tensor:
        return (self._as_input(x) - self.mean) @ self.precision

    def energy_and_grad(self, x: Tensor) -> tuple[Tensor, Tensor]:
        gradient = self.grad_energy(x)
        return 0.5 * (gradient * (x - self.mean)).sum(-1), gradient

    def log_normalizer(self, beta: float = 1.0) -> float:
        beta = check_positive(beta, "beta")
        half_log_det = float(torch.log(torch.diagonal(self.cholesky)).sum())
        return log_normal_const(self.dim, beta) + half_log_det

    def sample(self, n: int, beta: float = 1.0, generator: torch.Generator | None = None) -> Tensor:
        beta = check_positive(beta, "beta")
        noise = torch.randn(n, self.dim, generator=generator, dtype=self.dtype, device=self.device)
        return self.mean + (noise @ self.cholesky.T) / math.sqrt(beta)
