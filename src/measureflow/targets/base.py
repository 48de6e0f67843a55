"""The target contract: an energy L on batches ``(n, d) -> (n,)`` and its Gibbs measure exp(-beta L)."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor

from measureflow._core import as_tensor, check_count, check_positive

__all__ = ["FiniteSumTarget", "Target", "autograd_energy_and_grad", "from_energy"]


def autograd_energy_and_grad(energy: Callable[[Tensor], Tensor], x: Tensor) -> tuple[Tensor, Tensor]:
    """Energy ``(n,)`` and its gradient ``(n, d)`` by reverse-mode autodiff.

    Works inside ``torch.no_grad`` drivers: grad mode is switched on locally, never globally.
    """
    with torch.enable_grad():
        position = x.detach().requires_grad_(True)
        value = energy(position)
        (gradient,) = torch.autograd.grad(value.sum(), position)
    return value.detach(), gradient


class Target(torch.nn.Module):
    """An energy L: R^d -> R with Gibbs measure pi_beta(x) = exp(-beta L(x)) / Z_beta.

    Subclasses implement :meth:`energy`; they override :meth:`grad_energy` (and
    :meth:`energy_and_grad`) with analytic formulas where they have them, :meth:`log_normalizer`
    where Z_beta is known and :meth:`sample` where an exact sampler exists. Parameters are
    registered buffers, so ``target.to(device, dtype)`` moves the whole target.
    """

    name: str = "target"

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = check_count(dim, "dim")
        # Anchors dtype and device for targets without other buffers.
        self.register_buffer("_anchor", torch.zeros((), dtype=torch.get_default_dtype()))

    @property
    def dtype(self) -> torch.dtype:
        return self._anchor.dtype

    @property
    def device(self) -> torch.device:
        return self._anchor.device

    def energy(self, x: Tensor) -> Tensor:
        """L(x) for a batch ``x`` of shape ``(n, d)``; returns ``(n,)``."""
        raise TypeError(f"{type(self).__name__} does not define energy(x)")

    def grad_energy(self, x: Tensor) -> Tensor:
        """grad L(x), shape ``(n, d)`` (autograd unless a subclass writes it out)."""
        return self.energy_and_grad(x)[1]

    def energy_and_grad(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``(L(x), grad L(x))`` with shapes ``(n,)`` and ``(n, d)``."""
        return autograd_energy_and_grad(self.energy, x)

    def score(self, x: Tensor, beta: float = 1.0) -> Tensor:
        """grad log pi_beta(x) = -beta grad L(x), shape ``(n, d)``."""
        return -check_positive(beta, "beta") * self.grad_energy(x)

    def log_normalizer(self, beta: float = 1.0) -> float | None:
        """log Z_beta = log int exp(-beta L), or ``None`` when it is not known."""
        return None

    def log_prob(self, x: Tensor, beta: float = 1.0) -> Tensor:
        """log pi_beta(x) = -beta L(x) - log Z_beta, shape ``(n,)``.

        Normalized when :meth:`log_normalizer` is known (see :attr:`is_normalized`); otherwise the
        unnormalized -beta L(x).
        """
        beta = check_positive(beta, "beta")
        log_z = self.log_normalizer(beta)
        return -beta * self.energy(x) - (0.0 if log_z is None else log_z)

    def is_normalized(self, beta: float = 1.0) -> bool:
        """Whether :meth:`log_prob` at this ``beta`` is a normalized log-density."""
        return self.log_normalizer(beta) is not None

    @property
    def has_sampler(self) -> bool:
        """Whether :meth:`sample` draws exact samples (at least at beta = 1)."""
        return type(self).sample is not Target.sample

    def sample(self, n: int, beta: float = 1.0, generator: torch.Generator | None = None) -> Tensor:
        """``n`` exact independent draws from pi_beta, shape ``(n, d)``."""
        raise ValueError(
            f"target {self.name!r} has no exact sampler; draw from it with measureflow.sample"
        )

    def initial_positions(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """Default starting points for ``n`` chains: standard normal draws, shape ``(n, d)``."""
        return torch.randn(n, self.dim, generator=generator, dtype=self.dtype, device=self.device)

    def _as_input(self, x: Tensor) -> Tensor:
        if x.ndim != 2 or x.shape[-1] != self.dim:
            raise ValueError(
                f"{self.name} expects points of shape (n, {self.dim}), got {tuple(x.shape)}"
            )
        return x


class FiniteSumTarget(Target):
    """A target L(x) = prior(x) + sum_{i<N} l_i(x) over N data terms.

    With a minibatch B of size b drawn uniformly, prior(x) + (N / b) sum_{i in B} l_i(x) is an
    unbiased estimate of L(x), and its gradient an unbiased estimate of grad L(x) (the
    stochastic gradient of SGLD). Subclasses implement :meth:`prior_energy` and
    :meth:`data_energy`; they may override :meth:`minibatch_grad_energy` analytically.
    """

    n_terms: int

    def prior_energy(self, x: Tensor) -> Tensor:
        """The prior part of L, shape ``(n,)``."""
        raise TypeError(f"{type(self).__name__} does not define prior_energy(x)")

    def data_energy(self, x: Tensor, index: Tensor) -> Tensor:
        """The data terms l_i(x_c) for i = index[c, j]: ``x`` (n, d), ``index`` (n, b) -> (n, b)."""
        raise TypeError(f"{type(self).__name__} does not define data_energy(x, index)")

    def minibatch_energy(self, x: Tensor, index: Tensor) -> Tensor:
        """Unbiased estimate prior(x) + (N / b) sum_j l_{index[:, j]}(x), shape ``(n,)``."""
        scale = self.n_terms / index.shape[-1]
        return self.prior_energy(x) + scale * self.data_energy(x, index).sum(-1)

    def minibatch_grad_energy(self, x: Tensor, index: Tensor) -> Tensor:
        """Unbiased estimate of grad L(x) from the minibatch ``index`` (one row per chain)."""
        return autograd_energy_and_grad(lambda y: self.minibatch_energy(y, index), x)[1]

    def minibatch_hessian_diag(
        self, x: Tensor, index: Tensor, generator: torch.Generator | None = None
    ) -> Tensor:
        """Unbiased estimate of diag(Hessian L)(x): Hutchinson's E[z * (H z)], z Rademacher."""
        with torch.enable_grad():
            position = x.detach().requires_grad_(True)
            (gradient,) = torch.autograd.grad(
                self.minibatch_energy(position, index).sum(), position, create_graph=True
            )
            probe = torch.randint(0, 2, x.shape, generator=generator, device=x.device)
            probe = probe.to(x.dtype) * 2 - 1
            (hessian_probe,) = torch.autograd.grad((gradient * probe).sum(), position)
        return probe * hessian_probe

    def sample_index(
        self, n_chains: int, batch_size: int, generator: torch.Generator | None = None
    ) -> Tensor:
        """Independent minibatches, one per chain, drawn with replacement: ``(n_chains, b)``."""
        return torch.randint(
            0, self.n_terms, (n_chains, batch_size), generator=generator, device=self.device
        )


class _CallableTarget(Target):
    def __init__(
        self,
        energy: Callable[[Tensor], Tensor],
        dim: int,
        grad_energy: Callable[[Tensor], Tensor] | None,
        name: str,
    ) -> None:
        super().__init__(dim)
        self._energy = energy
        self._grad = grad_energy
        self.name = name

    def energy(self, x: Tensor) -> Tensor:
        value = self._energy(self._as_input(x))
        if not isinstance(value, Tensor) or value.shape != x.shape[:1]:
            shape = tuple(value.shape) if isinstance(value, Tensor) else type(value).__name__
            raise ValueError(
                f"energy of target {self.name!r} must map (n, {self.dim}) to (n,), got {shape}"
            )
        return value

    def grad_energy(self, x: Tensor) -> Tensor:
        if self._grad is None:
            return super().grad_energy(x)
        gradient = self._grad(self._as_input(x))
        if not isinstance(gradient, Tensor) or gradient.shape != x.shape:
            raise ValueError(
                f"grad_energy of target {self.name!r} must return shape {tuple(x.shape)}"
            )
        return gradient

    def energy_and_grad(self, x: Tensor) -> tuple[Tensor, Tensor]:
        if self._grad is None:
            return super().energy_and_grad(x)
        return self.energy(x), self.grad_energy(x)


def from_energy(
    energy: Callable[[Tensor], Tensor],
    dim: int,
    grad_energy: Callable[[Tensor], Tensor] | None = None,
    name: str | None = None,
) -> Target:
    """Wrap a user energy ``(n, d) -> (n,)`` as a target; the gradient is autograd unless given.

    >>> import torch, measureflow as mf
    >>> target = mf.targets.from_energy(lambda x: 0.5 * (x ** 2).sum(-1), dim=2)
    >>> target.grad_energy(torch.tensor([[1.0, -2.0]]))
    tensor([[ 1., -2.]])
    """
    if not callable(energy):
        raise TypeError(f"energy must be callable, got {type(energy).__name__}")
    if grad_energy is not None and not callable(grad_energy):
        raise TypeError(f"grad_energy must be callable or None, got {type(grad_energy).__name__}")
    label = name or getattr(energy, "__name__", "user energy")
    return _CallableTarget(energy, int(dim), grad_energy, label)


def log_normal_const(dim: int, beta: float) -> float:
    """log of int exp(-beta ||x||^2 / 2) dx = (d / 2) log(2 pi / beta)."""
    return 0.5 * dim * math.log(2 * math.pi / beta)


def check_beta_one(beta: float, what: str) -> float:
    """Some exact quantities exist only at beta = 1 (e.g. sampling a mixture's Gibbs measure)."""
    beta = check_positive(beta, "beta")
    if beta != 1.0:
        raise ValueError(f"{what} is only available at beta = 1, got beta = {beta}")
    return beta


def common_dtype(*values) -> torch.dtype:
    """The promoted dtype of the floating tensors (or numpy arrays) among ``values``, else the
    default dtype."""
    dtypes = [v.dtype for v in values if isinstance(v, Tensor) and v.is_floating_point()]
    dtypes += [
        torch.from_numpy(np.zeros(0, dtype=v.dtype)).dtype
        for v in values
        if isinstance(v, np.ndarray) and np.issubdtype(v.dtype, np.floating)
    ]
    if not dtypes:
        return torch.get_default_dtype()
    result = dtypes[0]
    for dtype in dtypes[1:]:
        result = torch.promote_types(result, dtype)
    return result


def as_buffer(value, name: str, shape_rank: int, dtype: torch.dtype) -> Tensor:
    """``value`` as a finite tensor of the given rank and dtype (for a target's parameters)."""
    tensor = as_tensor(value, name, dtype=dtype)
    if tensor.ndim != shape_rank:
        raise ValueError(f"{name} must have {shape_rank} dimension(s), got shape {tuple(tensor.shape)}")
    if not bool(torch.isfinite(tensor).all()):
        raise ValueError(f"{name} contains NaN or infinite values")
    return tensor
