r"""A loss plus the RKHS penalty of the infinite-dimensional Langevin sampler, as one target.

``"infinite-langevin"`` keeps the penalty (lam / 2) ||x||_{H_K}^2 = (lam / 2) sum_k x_k^2 / mu_k out
of the target and treats it implicitly. :class:`RKHSPenalized` puts it into the energy,

    E(x) = L(x) + (lam / 2) sum_k x_k^2 / mu_k,      grad E(x) = grad L(x) + lam x / mu,

so that any sampler of the library targets the same Gibbs measure exp(-beta E); ULA on it is the
explicit Euler scheme X' = X - eta grad E(X) + sqrt(2 eta / beta) xi, stable only for
eta < 2 / lambda_max(hess E) <= 2 mu_min / lam, the step the semi-implicit scheme avoids.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from measureflow._core import check_positive
from measureflow.targets.base import Target

__all__ = ["RKHSPenalized"]


class RKHSPenalized(Target):
    r"""E(x) = L(x) + (lam / 2) sum_k x_k^2 / mu_k for a base target L on R^K.

    ``base`` the loss L (its ``energy`` and ``grad_energy`` are used), ``lam`` >= 0, ``mu`` ``(K,)``
    the positive eigenvalues (K = ``base.dim``). The penalty's gradient is analytic; the base's is
    whatever the base provides.

    >>> import torch, measureflow as mf
    >>> flat = mf.targets.from_energy(lambda x: x.new_zeros(x.shape[0]), 2, grad_energy=torch.zeros_like)
    >>> RKHSPenalized(flat, 2.0, torch.tensor([1.0, 0.25])).grad_energy(torch.tensor([[1.0, 1.0]]))
    tensor([[2., 8.]])
    """

    name = "rkhs-penalized"

    def __init__(self, base: Target, lam: float, mu: Any) -> None:
        if not isinstance(base, Target):
            raise TypeError(f"base must be a measureflow Target, got {type(base).__name__}")
        lam = check_positive(lam, "lam", allow_zero=True)
        eigenvalues = torch.as_tensor(mu)
        if (eigenvalues.shape != (base.dim,) or not bool(torch.isfinite(eigenvalues).all())
                or not bool((eigenvalues > 0).all())):
            raise ValueError(f"mu must hold {base.dim} positive finite eigenvalues (shape ({base.dim},)), "
                             f"got shape {tuple(eigenvalues.shape)}")
        super().__init__(base.dim)
        self.base = base
        self.lam = lam
        self._anchor = self._anchor.to(device=base.device, dtype=base.dtype)
        self.register_buffer("mu", eigenvalues.to(device=base.device, dtype=base.dtype))

    def penalty(self, x: Tensor) -> Tensor:
        """(lam / 2) sum_k x_k^2 / mu_k, ``(n,)``."""
        return 0.5 * self.lam * (self._as_input(x).square() / self.mu).sum(-1)

    def energy(self, x: Tensor) -> Tensor:
        return self.base.energy(x) + self.penalty(x)

    def grad_energy(self, x: Tensor) -> Tensor:
        return self.base.grad_energy(x) + self.lam * self._as_input(x) / self.mu

    def energy_and_grad(self, x: Tensor) -> tuple[Tensor, Tensor]:
        energy, gradient = self.base.energy_and_grad(x)
        return energy + self.penalty(x), gradient + self.lam * x / self.mu
