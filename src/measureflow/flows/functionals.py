r"""Functionals F[mu] of a probability measure, estimated from particles, and their velocities.

A measure is represented by n particles, mu_n = (1/n) sum_i delta_{x_i}. A functional here has

- ``value(x)``: F estimated at mu_n, a 0-d tensor;
- ``velocity(x)``: the Wasserstein-gradient velocity v(x_i) = -grad_x (dF/dmu)(x_i), ``(n, d)``,
  so that the particle ODE dx_i/dt = v(x_i) transports mu along d_t mu = div(mu grad dF/dmu);
- ``temperature``: T >= 0, the part of F that is an entropy (T int mu log mu) handled by noise:
  the integrator (:func:`measureflow.flows.run`) adds sqrt(2 h T) xi per step, the exact
  stochastic particle system whose law solves the same equation (Jordan, Kinderlehrer & Otto 1998).

Functionals add: ``Potential(V) + Interaction(W)`` is a :class:`Sum` whose velocity, value and
temperature are the sums of its terms'.

For every term whose value is the functional of the empirical measure itself (:class:`Potential`,
:class:`Interaction`, :class:`Entropy` with ``method="blob"``, :class:`MMD`), the chain rule gives
the exact particle identity

    d value / d x_i = (1/n) grad (dF/dmu)(x_i) = -(1/n) velocity(x)_i,

which the tests check against autograd. :class:`KL` and :class:`SVGD` report KL(mu || pi) as
their value (see there), and ``method="noise"`` entropies estimate their value from k-nearest-
neighbour distances, so the identity does not apply to them.

Pairwise sums over particles run by blocks: memory O(block_size^2), never O(n^2). Kernel sums
(MMD, SVGD, the blob entropy) use the blocked matrix product of ``measureflow.metrics.kernels``
on coordinates divided by the bandwidth, so one unit-bandwidth kernel object serves every
bandwidth (a bandwidth re-chosen at each step then neither re-compiles nor grows the kernel
caches).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from measureflow._core import check_count, check_particles, check_positive
from measureflow.metrics.divergences import _scott_silverman_bandwidth, knn_entropy
from measureflow.metrics.kernels import (
    DEFAULT_BLOCK,
    GaussianKernel,
    IMQKernel,
    RadialKernel,
    _blocks,
    kernel_matmul,
    median_bandwidth,
)
from measureflow.metrics.mmd import mmd2
from measureflow.targets import Target

__all__ = [
    "KL",
    "MMD",
    "SVGD",
    "Entropy",
    "Functional",
    "GaussianInteraction",
    "Interaction",
    "Potential",
    "PowerInteraction",
    "QuadraticInteraction",
    "Sum",
]

# Gaussian profile exp(-s/2) and IMQ (1 + s)^(-1/2) at unit bandwidth, applied to x / h.
_UNIT_GAUSSIAN = GaussianKernel(1.0)
_UNIT_IMQ = IMQKernel(1.0)


@dataclass(frozen=True)
class _IMQSlope(RadialKernel):
    """(1 + s)^(-3/2): minus twice the derivative of the unit IMQ profile (1 + s)^(-1/2)."""

    def profile(self, sq_dist: Tensor) -> Tensor:
        return torch.rsqrt(1 + sq_dist).pow(3)


_UNIT_IMQ_SLOPE = _IMQSlope()

# name -> (kernel k(x, y) = phi(|x - y|^2 / h^2), "slope" kernel psi with
# grad_x k(x, y) = -(x - y) / h^2 * psi(|x - y|^2 / h^2)). For the Gaussian psi = phi.
_MMD_KERNELS: dict[str, tuple[RadialKernel, RadialKernel]] = {
    "gaussian": (_UNIT_GAUSSIAN, _UNIT_GAUSSIAN),
    "imq": (_UNIT_IMQ, _UNIT_IMQ_SLOPE),
}

ENTROPY_METHODS = ("noise", "blob")


# --------------------------------------------------------------------------------------------
# Shared helpers
# --------------------------------------------------------------------------------------------


def _particles(x: Any) -> Tensor:
    """``x`` as a finite ``(n, d)`` float tensor (integers become the default float dtype)."""
    return check_particles(x, "x")


def _check_beta(beta: Any) -> float:
    return check_positive(beta, "beta")


def _check_method(method: Any) -> str:
    if method not in ENTROPY_METHODS:
        raise ValueError(f"method must be one of {', '.join(ENTROPY_METHODS)}, got {method!r}")
    return method


def _check_bandwidth(bandwidth: Any, allowed_string: str | None = None) -> float | str | None:
    if bandwidth is None or (allowed_string is not None and bandwidth == allowed_string):
        return bandwidth
    return check_positive(bandwidth, "bandwidth")


def _check_target(target: Any) -> Target:
    if not isinstance(target, Target):
        raise TypeError(f"target must be a measureflow Target, got {type(target).__name__}")
    return target


def _target_dim(target: Target, x: Tensor) -> None:
    if x.shape[1] != target.dim:
        raise ValueError(
            f"x has dimension d = {x.shape[1]} but the target {target.name!r} is "
            f"{target.dim}-dimensional"
        )


def _in_target_dtype(target: Target, x: Tensor) -> Tensor:
    """x in the target's dtype (the result is cast back to x's dtype by the caller).

    The target is not moved: ``Module.to`` works in place and would change the caller's object.
    """
    if target.device != x.device:
        raise ValueError(
            f"the particles are on {x.device} but the target {target.name!r} is on {target.device}; "
            "move the target with target.to(device)"
        )
    return x.to(target.dtype)


def _energy(target: Target, x: Tensor) -> Tensor:
    return target.energy(_in_target_dtype(target, x)).to(x.dtype)


def _grad_energy(target: Target, x: Tensor) -> Tensor:
    return target.grad_energy(_in_target_dtype(target, x)).to(x.dtype)


def _kernel_sums(points: Tensor, sources: Tensor, kernel: RadialKernel, block_size: int, *,
                 weights: Tensor | None = None, extra: Tensor | None = None
                 ) -> tuple[Tensor, Tensor, Tensor | None]:
    """Weighted kernel sums at each point z_i over the sources s_j, K_ij = kernel(|z_i - s_j|^2).

    Returns sum_j w_j K_ij ``(p,)``, sum_j w_j K_ij (z_i - s_j) ``(p, d)`` and, when ``extra``
    ``(m, e)`` is given, sum_j K_ij extra_j ``(p, e)`` (unweighted); w = 1 by default.
    ``points`` ``(p, d)`` and ``sources`` ``(m, d)`` are already divided by the bandwidth. One
    blocked pass of ``kernel_matmul`` with the columns [w, w s, extra] gives everything, since
    sum_j w_j K_ij (z_i - s_j) = z_i (K w)_i - (K (w s))_i.
    """
    d = points.shape[1]
    centre = sources.mean(0)
    z, s = points - centre, sources - centre  # small |z|: less cancellation in z (Kw) - K(ws)
    w = torch.ones_like(s[:, :1]) if weights is None else weights[:, None]
    columns = [w, w * s] + ([] if extra is None else [extra])
    product = kernel_matmul(z, s, kernel, torch.cat(columns, 1), block_size=block_size)
    mass = product[:, 0]
    moment = mass[:, None] * z - product[:, 1 : 1 + d]
    return mass, moment, (None if extra is None else product[:, 1 + d :])


# --------------------------------------------------------------------------------------------
# The contract and sums
# --------------------------------------------------------------------------------------------


class Functional(ABC):
    """A functional F[mu] of the particles' measure: ``value``, ``velocity`` and ``temperature``.

    ``velocity(x, time=0.0, generator=None)`` returns -grad (dF/dmu) at the particles ``x``
    ``(n, d)`` (``time`` and ``generator`` serve terms that change along the flow or draw random
    numbers); ``value(x)`` a 0-d tensor; ``temperature`` the coefficient T of an entropy term
    T int mu log mu that the integrator realizes by noise sqrt(2 h T) xi. ``F + G`` is a :class:`Sum`.
    """

    @abstractmethod
    def value(self, x: Tensor) -> Tensor:
        """F estimated from the particles ``x`` ``(n, d)``: a 0-d tensor."""

    @abstractmethod
    def velocity(self, x: Tensor, *, time: float = 0.0,
                 generator: torch.Generator | None = None) -> Tensor:
        """-grad (dF/dmu) at the particles ``x`` ``(n, d)``: shape ``(n, d)``."""

    @property
    def temperature(self) -> float:
        """T in the noise sqrt(2 h T) xi the integrator adds per step (0: deterministic flow)."""
        return 0.0

    @property
    def label(self) -> str:
        """A short description, for result files and figure titles."""
        return type(self).__name__

    def __add__(self, other: Functional) -> Sum:
        if not isinstance(other, Functional):
            return NotImplemented
        return Sum((self, other))


@dataclass(frozen=True, eq=False)
class Sum(Functional):
    """F = F_1 + ... + F_k: values, velocities and noise temperatures add.

    Temperatures add because independent Gaussian increments do: sqrt(2h T_1) xi_1 +
    sqrt(2h T_2) xi_2 has the law of sqrt(2h (T_1 + T_2)) xi, the noise of (T_1 + T_2) int mu log mu.

    >>> x = torch.tensor([[1.0], [3.0]])
    >>> F = Potential(lambda z: 0.5 * z.square().sum(1)) + Interaction.quadratic()
    >>> F.velocity(x).flatten()  # -x_i - (x_i - mean x)
    tensor([ 0., -4.])
    """

    terms: tuple[Functional, ...]

    def __post_init__(self) -> None:
        terms = tuple(self.terms)
        if not terms:
            raise ValueError("a Sum needs at least one term")
        flat: list[Functional] = []
        for term in terms:
            if not isinstance(term, Functional):
                raise TypeError(f"every term must be a Functional, got {type(term).__name__}")
            flat.extend(term.terms if isinstance(term, Sum) else (term,))
        object.__setattr__(self, "terms", tuple(flat))

    def value(self, x: Tensor) -> Tensor:
        total = self.terms[0].value(x)
        for term in self.terms[1:]:
            total = total + term.value(x)
        return total

    def velocity(self, x: Tensor, *, time: float = 0.0,
                 generator: torch.Generator | None = None) -> Tensor:
        total = self.terms[0].velocity(x, time=time, generator=generator)
        for term in self.terms[1:]:
            total = total + term.velocity(x, time=time, generator=generator)
        return total

    @property
    def temperature(self) -> float:
        return sum(term.temperature for term in self.terms)

    @property
    def label(self) -> str:
        return " + ".join(term.label for term in self.terms)


# --------------------------------------------------------------------------------------------
# Potential energy
# --------------------------------------------------------------------------------------------


def _potential_parts(potential: Any, grad: Any) -> tuple[Callable[[Tensor], Tensor],
                                                         Callable[[Tensor], Tensor] | None]:
    if isinstance(potential, Target):
        if grad is None:
            def grad(x: Tensor) -> Tensor:
                return _grad_energy(potential, x)
        return (lambda x: _energy(potential, x)), grad
    if not callable(potential):
        raise TypeError(f"V must be a callable (n, d) -> (n,) or a Target, got {type(potential).__name__}")
    if grad is not None and not callable(grad):
        raise TypeError(f"grad must be a callable (n, d) -> (n, d) or None, got {type(grad).__name__}")
    return potential, grad


@dataclass(frozen=True, eq=False)
class Potential(Functional):
    """Potential energy F[mu] = int V dmu; dF/dmu = V; velocity -grad V(x).

    ``V`` maps particles ``(n, d)`` to ``(n,)`` (or is a :class:`~measureflow.targets.Target`,
    whose energy and gradient are used, computed in the target's dtype on its device, which must
    be the particles'); ``grad`` gives grad V ``(n, d)`` (autograd of V when ``None``). Value:
    the particle mean (1/n) sum_i V(x_i).

    >>> F = Potential(lambda z: 0.5 * z.square().sum(1))
    >>> F.velocity(torch.tensor([[1.0, -2.0]]))
    tensor([[-1.,  2.]])
    """

    V: Any
    grad: Any = None

    def __post_init__(self) -> None:
        _potential_parts(self.V, self.grad)

    def _values(self, x: Tensor) -> Tensor:
        energy, _ = _potential_parts(self.V, self.grad)
        values = energy(x)
        if not isinstance(values, Tensor) or values.shape != x.shape[:1]:
            shape = tuple(values.shape) if isinstance(values, Tensor) else type(values).__name__
            raise ValueError(f"V must map x of shape {tuple(x.shape)} to ({x.shape[0]},), got {shape}")
        return values

    def value(self, x: Tensor) -> Tensor:
        x = _particles(x)
        if isinstance(self.V, Target):
            _target_dim(self.V, x)
        return self._values(x).mean()

    def velocity(self, x: Tensor, *, time: float = 0.0,
                 generator: torch.Generator | None = None) -> Tensor:
        x = _particles(x)
        if isinstance(self.V, Target):
            _target_dim(self.V, x)
        _, gradient = _potential_parts(self.V, self.grad)
        if gradient is None:
            with torch.enable_grad():
                position = x.detach().requires_grad_(True)
                (result,) = torch.autograd.grad(self._values(position).sum(), position)
        else:
            result = gradient(x)
        if not isinstance(result, Tensor) or result.shape != x.shape:
            shape = tuple(result.shape) if isinstance(result, Tensor) else type(result).__name__
            raise ValueError(f"grad V must map x of shape {tuple(x.shape)} to the same shape, got {shape}")
        return -result

    @property
    def label(self) -> str:
        name = self.V.name if isinstance(self.V, Target) else getattr(self.V, "__name__", "V")
        return f"Potential({name})"


# --------------------------------------------------------------------------------------------
# Interaction energy
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class QuadraticInteraction:
    """W(z) = |z|^2 / 2, grad W(z) = z: linear attraction, -(grad W * mu)(x) = -(x - mean(mu))."""

    def __call__(self, z: Tensor) -> Tensor:
        return 0.5 * z.square().sum(-1)

    def grad(self, z: Tensor) -> Tensor:
        return z


@dataclass(frozen=True)
class GaussianInteraction:
    """W(z) = -exp(-|z|^2 / (2 s^2)): attraction of range s; grad W(z) = (z / s^2) exp(-|z|^2 / (2 s^2))."""

    scale: float = 1.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "scale", check_positive(self.scale, "scale"))

    def __call__(self, z: Tensor) -> Tensor:
        return -torch.exp(-0.5 * z.square().sum(-1) / self.scale**2)

    def grad(self, z: Tensor) -> Tensor:
        return (z / self.scale**2) * torch.exp(-0.5 * z.square().sum(-1, keepdim=True) / self.scale**2)


@dataclass(frozen=True)
class PowerInteraction:
    """Attractive-repulsive power kernel W(z) = |z|^a / a - |z|^b / b (b = 0: -log |z|), a > b.

    grad W(z) = (|z|^(a-2) - |z|^(b-2)) z: attraction at long range (a), repulsion at short
    range (b). |grad W(z)| ~ |z|^(b-1) near 0: for b > 1 it tends to 0, and coinciding particles
    exert no force on each other; for b <= 1 it is singular (undefined at b = 1, infinite below),
    and exactly coinciding particles raise a ValueError. With a = 2 and b = 2 - d (Newtonian
    repulsion) the minimizer in d >= 2 is the uniform measure on a ball (Fetecau, Huang &
    Kolokolnikov, Nonlinearity 24, 2011, for d = 2).
    """

    a: float = 2.0
    b: float = 1.0

    def __post_init__(self) -> None:
        a, b = float(self.a), float(self.b)
        if not (math.isfinite(a) and math.isfinite(b)) or a <= 0 or b >= a:
            raise ValueError(f"the power kernel needs finite a > 0 and b < a, got a = {a}, b = {b}")
        object.__setattr__(self, "a", a)
        object.__setattr__(self, "b", b)

    def __call__(self, z: Tensor) -> Tensor:
        sq = z.square().sum(-1)
        repulsion = 0.5 * sq.log() if self.b == 0 else _power(sq, self.b / 2) / self.b
        return _power(sq, self.a / 2) / self.a - repulsion

    def grad(self, z: Tensor) -> Tensor:
        sq = z.square().sum(-1, keepdim=True)
        coinciding = sq == 0
        if bool(coinciding.any()):
            if self.b <= 1:
                raise ValueError(
                    f"some particles coincide, where the power interaction with b = {self.b:g} has no "
                    "gradient (|grad W(z)| ~ |z|^(b - 1) near 0); jitter the particles or use b > 1"
                )
            # The limit of (|z|^(a-2) - |z|^(b-2)) z at z = 0 is 0 for a, b > 1 (the formula reads inf * 0).
            sq = torch.where(coinciding, torch.ones_like(sq), sq)
            return torch.where(coinciding, torch.zeros_like(z),
                               (_power(sq, self.a / 2 - 1) - _power(sq, self.b / 2 - 1)) * z)
        return (_power(sq, self.a / 2 - 1) - _power(sq, self.b / 2 - 1)) * z


def _power(base: Tensor, exponent: float) -> Tensor:
    """base ** exponent, with the common exponents done without the general pow (about 3x faster)."""
    if exponent == 0:
        return torch.ones_like(base)
    if exponent == 1:
        return base
    if exponent == 0.5:
        return base.sqrt()
    if exponent == -0.5:
        return base.rsqrt()
    if exponent == -1:
        return base.reciprocal()
    return base.pow(exponent)


def _kernel_parts(kernel: Any, grad: Any) -> tuple[Callable[[Tensor], Tensor],
                                                  Callable[[Tensor], Tensor] | None]:
    if not callable(kernel):
        raise TypeError(f"W must be a callable (m, d) -> (m,), got {type(kernel).__name__}")
    if grad is None:
        grad = getattr(kernel, "grad", None)
    if grad is not None and not callable(grad):
        raise TypeError(f"grad must be a callable (m, d) -> (m, d) or None, got {type(grad).__name__}")
    return kernel, grad


@dataclass(frozen=True, eq=False)
class Interaction(Functional):
    """Interaction energy F[mu] = 1/2 iint W(x - y) dmu(x) dmu(y) for an even W.

    dF/dmu = W * mu, so the velocity is -(grad W * mu)(x_i) = -(1/n) sum_{j != i} grad W(x_i - x_j)
    (grad W is odd, so the self-term grad W(0) is 0 wherever it is defined). The value is
    1/(2 n^2) sum_{i != j} W(x_i - x_j): the self-interaction terms, a constant W(0)/(2n) for a
    W finite at 0 and undefined for kernels singular there, are left out.

    ``W`` maps difference vectors ``(m, d)`` to ``(m,)``; ``grad`` (or a ``W.grad`` method, as
    the named kernels have) gives grad W ``(m, d)``, else autograd is used. Pairs are visited by
    ``block_size`` x ``block_size`` blocks of direct differences x_i - x_j (memory
    O(block_size^2 d), so 10^5 particles fit), each block once: the block (J, I) is the negative
    transpose of (I, J) since grad W is odd. Direct differences rather than the matrix-product
    distances of ``metrics.kernels``: W need not be radial, and for kernels singular at 0 the
    product form's rounding error eps |x|^2 in |x_i - x_j|^2 would be amplified near
    coinciding particles.

    Named kernels: :meth:`quadratic`, :meth:`gaussian`, :meth:`power`.

    >>> F = Interaction.quadratic()
    >>> F.velocity(torch.tensor([[0.0], [2.0]])).flatten()  # -(x_i - mean)
    tensor([ 1., -1.])
    """

    W: Any
    grad: Any = None
    block_size: int = 512

    def __post_init__(self) -> None:
        _kernel_parts(self.W, self.grad)
        check_count(self.block_size, "block_size")

    @classmethod
    def quadratic(cls, block_size: int = 512) -> Interaction:
        """W(z) = |z|^2 / 2: every particle is pulled to the mean (contraction at rate 1)."""
        return cls(QuadraticInteraction(), block_size=block_size)

    @classmethod
    def gaussian(cls, scale: float = 1.0, block_size: int = 512) -> Interaction:
        """W(z) = -exp(-|z|^2 / (2 scale^2)): short-range attraction (clusters form)."""
        return cls(GaussianInteraction(scale), block_size=block_size)

    @classmethod
    def power(cls, a: float = 2.0, b: float = 1.0, block_size: int = 512) -> Interaction:
        """W(z) = |z|^a / a - |z|^b / b: attraction-repulsion, a compact steady state."""
        return cls(PowerInteraction(a, b), block_size=block_size)

    def _pairs(self, x: Tensor):
        """Yield (i0, i1, j0, j1, differences (bi, bj, d), is_diagonal) for the blocks with j0 >= i0.

        On diagonal blocks the self-pairs get the difference (1, ..., 1), so that neither W nor
        its gradient is evaluated at 0 (where it may be singular); callers drop those terms.
        """
        n = x.shape[0]
        bounds = _blocks(n, self.block_size)
        for i0, i1 in bounds:
            for j0, j1 in bounds:
                if j0 < i0:
                    continue
                diff = x[i0:i1, None, :] - x[None, j0:j1, :]
                if i0 == j0:
                    local = torch.arange(i1 - i0, device=x.device)
                    diff[local, local] = 1.0
                yield i0, i1, j0, j1, diff, i0 == j0

    def _kernel_values(self, diff: Tensor) -> Tensor:
        kernel, _ = _kernel_parts(self.W, self.grad)
        flat = diff.reshape(-1, diff.shape[-1])
        values = kernel(flat)
        if not isinstance(values, Tensor) or values.shape != flat.shape[:1]:
            shape = tuple(values.shape) if isinstance(values, Tensor) else type(values).__name__
            raise ValueError(f"W must map differences of shape {tuple(flat.shape)} to ({flat.shape[0]},), "
                             f"got {shape}")
        return values.reshape(diff.shape[:-1])

    def _kernel_grads(self, diff: Tensor) -> Tensor:
        _, gradient = _kernel_parts(self.W, self.grad)
        flat = diff.reshape(-1, diff.shape[-1])
        if gradient is None:
            with torch.enable_grad():
                position = flat.detach().requires_grad_(True)
                (result,) = torch.autograd.grad(self._kernel_values(position).sum(), position)
        else:
            result = gradient(flat)
            if not isinstance(result, Tensor) or result.shape != flat.shape:
                raise ValueError(
                    f"grad W must map differences of shape {tuple(flat.shape)} to the same shape"
                )
        return result.reshape(diff.shape)

    def value(self, x: Tensor) -> Tensor:
        x = _particles(x)
        n = x.shape[0]
        total = torch.zeros((), dtype=torch.float64, device=x.device)
        for _, _, _, _, diff, diagonal in self._pairs(x):
            values = self._kernel_values(diff)
            if diagonal:
                # Off-diagonal terms only: the diagonal holds W(1, ..., 1), not W(0).
                total = total + (values.sum(dtype=torch.float64) - values.diagonal().sum(dtype=torch.float64))
            else:
                total = total + 2 * values.sum(dtype=torch.float64)
        return (total / (2 * n * n)).to(x.dtype)

    def velocity(self, x: Tensor, *, time: float = 0.0,
                 generator: torch.Generator | None = None) -> Tensor:
        x = _particles(x)
        n = x.shape[0]
        if isinstance(self.W, GaussianInteraction) and self.grad is None:
            # grad W(z) = (z / s^2) K(z), K the Gaussian kernel of width s: the velocity is a kernel
            # moment, -(1/(n s)) sum_j K_ij (x_i - x_j) / s, which the blocked kernel product
            # computes in one pass about 3x faster than differences per block (the self-term is 0).
            scale = self.W.scale
            _, moment, _ = _kernel_sums(x / scale, x / scale, _UNIT_GAUSSIAN, self.block_size)
            return moment.div_(-n * scale)
        out = torch.zeros_like(x)
        for i0, i1, j0, j1, diff, diagonal in self._pairs(x):
            grads = self._kernel_grads(diff)
            if diagonal:
                grads.diagonal().zero_()  # the self-terms: grad W(0) = 0 for an odd grad W
            out[i0:i1] += grads.sum(1)
            if not diagonal:
                out[j0:j1] -= grads.sum(0)  # grad W(x_j - x_i) = -grad W(x_i - x_j)
        return out.div_(-n)

    @property
    def label(self) -> str:
        return f"Interaction({type(self.W).__name__})"


# --------------------------------------------------------------------------------------------
# Entropy: by noise or by blobs
# --------------------------------------------------------------------------------------------


def _blob_bandwidth(x: Tensor, bandwidth: float | None) -> float:
    """The mollifier width eps: given, or Silverman's rule on the current particles."""
    if bandwidth is not None:
        return bandwidth
    if x.shape[0] < 2:
        raise ValueError("the default blob bandwidth needs at least 2 particles; give bandwidth")
    eps = float(_scott_silverman_bandwidth(x.detach()))
    if not eps > 0:
        raise ValueError("all particles coincide, so the default blob bandwidth is 0; give bandwidth")
    return eps


def _blob_log_density(x: Tensor, eps: float, block_size: int) -> Tensor:
    """log (K_eps * mu_n)(x_i) ``(n,)``, K_eps the N(0, eps^2 I) density (self-term included)."""
    n, d = x.shape
    z = x / eps
    z = z - z.mean(0)
    ones = torch.ones(n, 1, dtype=x.dtype, device=x.device)
    sums = kernel_matmul(z, z, _UNIT_GAUSSIAN, ones, block_size=block_size)[:, 0]
    return sums.log() - math.log(n) - 0.5 * d * math.log(2 * math.pi * eps**2)


def _blob_velocity(x: Tensor, eps: float, block_size: int) -> Tensor:
    """-grad (d/dmu) int mu log(K_eps * mu) at the particles (Carrillo, Craig & Patacchini 2019).

    With K_ij = exp(-|x_i - x_j|^2 / (2 eps^2)) and s_i = sum_j K_ij, the first variation is
    log(K * mu)(x) + (K * (mu / (K * mu)))(x) and its negative gradient at x_i is

        (1 / eps^2) sum_j (x_i - x_j) K_ij (1/s_i + 1/s_j)

    (the normalization of K_eps cancels in both ratios). Two blocked kernel products: one for
    s and sum_j K_ij (x_i - x_j), one with the weights 1/s_j.
    """
    z = x / eps
    s, moment, _ = _kernel_sums(z, z, _UNIT_GAUSSIAN, block_size)
    _, weighted, _ = _kernel_sums(z, z, _UNIT_GAUSSIAN, block_size, weights=1 / s)
    # moment and weighted are in units of z = x / eps: sum (z_i - z_j) K = sum (x_i - x_j) K / eps.
    return (moment / s[:, None] + weighted) / eps


@dataclass(frozen=True, eq=False)
class Entropy(Functional):
    """Entropy F[mu] = (1/beta) int mu log mu (the negative differential entropy over beta).

    dF/dmu = (1/beta)(log mu + 1), velocity -(1/beta) grad log mu: the heat flow
    d_t mu = (1/beta) Lap mu. Two particle realizations:

    - ``method="noise"``: the velocity is 0 and ``temperature`` is 1/beta, so the integrator adds
      sqrt(2 h / beta) xi: Brownian motion, whose law solves the heat equation exactly. The
      value is -H_hat / beta with the Kozachenko-Leonenko estimate :func:`knn_entropy`.
    - ``method="blob"``: the deterministic blob method of Carrillo, Craig & Patacchini,
      "A blob method for diffusion", Calc. Var. PDE 58 (2019): F is regularized to
      F_eps = (1/beta) int log(K_eps * mu) dmu, K_eps the N(0, eps^2 I) density, and the particles
      follow -grad (dF_eps/dmu) (see ``_blob_velocity``). The value is F_eps at the particles,
      (1/beta)(1/n) sum_i log((1/n) sum_j K_eps(x_i - x_j)), self-terms included, so
      velocity = -n d value / d x exactly. ``bandwidth`` eps; default Silverman's rule
      eps = sigma (4 / ((d + 2) n))^(1/(d + 4)) (sigma^2 the mean per-coordinate variance of the
      particles), re-chosen at each evaluation and held constant in the derivative.

    >>> F = Entropy(beta=2.0)
    >>> F.temperature, float(F.velocity(torch.zeros(3, 1)).abs().sum())
    (0.5, 0.0)
    """

    beta: float = 1.0
    method: str = "noise"
    bandwidth: float | None = None
    block_size: int = DEFAULT_BLOCK

    def __post_init__(self) -> None:
        object.__setattr__(self, "beta", _check_beta(self.beta))
        _check_method(self.method)
        object.__setattr__(self, "bandwidth", _check_bandwidth(self.bandwidth))
        if self.bandwidth is not None and self.method == "noise":
            raise ValueError("bandwidth applies to method='blob' only")
        check_count(self.block_size, "block_size")

    def value(self, x: Tensor) -> Tensor:
        x = _particles(x)
        if self.method == "noise":
            return -knn_entropy(x) / self.beta
        eps = _blob_bandwidth(x, self.bandwidth)
        return _blob_log_density(x, eps, self.block_size).mean() / self.beta

    def velocity(self, x: Tensor, *, time: float = 0.0,
                 generator: torch.Generator | None = None) -> Tensor:
        x = _particles(x)
        if self.method == "noise":
            return torch.zeros_like(x)
        eps = _blob_bandwidth(x, self.bandwidth)
        return _blob_velocity(x, eps, self.block_size) / self.beta

    @property
    def temperature(self) -> float:
        return 1.0 / self.beta if self.method == "noise" else 0.0

    @property
    def label(self) -> str:
        return f"Entropy(beta={self.beta:g}, {self.method})"


# --------------------------------------------------------------------------------------------
# KL to a Gibbs measure, and SVGD
# --------------------------------------------------------------------------------------------


def _kl_estimate(x: Tensor, target: Target, beta: float, neg_entropy: Tensor) -> Tensor:
    """int mu log mu + beta E_mu L + log Z_beta (log Z left out when the target does not know it)."""
    log_z = target.log_normalizer(beta)
    energy = _energy(target, x).mean()
    return neg_entropy + beta * energy + (0.0 if log_z is None else log_z)


@dataclass(frozen=True, eq=False)
class KL(Functional):
    """The flow of KL(mu || pi_beta), pi_beta = exp(-beta L) / Z_beta, in the library's time units.

    The functional moved is F[mu] = int L dmu + (1/beta) int mu log mu = (1/beta) KL(mu || pi_beta)
    - (1/beta) log Z_beta, with dF/dmu = L + (1/beta)(log mu + 1): its flow is the Fokker-Planck
    equation d_t mu = (1/beta) Lap mu + div(mu grad L) that ``measureflow.pde`` solves on a grid.
    ``method="noise"`` is exactly GLD/ULA, dx = -grad L dt + sqrt(2/beta) dB (velocity -grad L,
    temperature 1/beta); ``method="blob"`` replaces the noise by the deterministic blob velocity
    of :class:`Entropy` (``bandwidth`` eps as there).

    ``value(x)`` reports KL(mu || pi_beta) itself, in nats, not F: with the entropy term of the
    method (-H_hat by k nearest neighbours for ``"noise"``, int log(K_eps * mu) dmu for
    ``"blob"``), value = entropy term + beta (1/n) sum_i L(x_i) + log Z_beta. When the target does
    not know log Z_beta (``target.log_normalizer(beta)`` is ``None``) the value is
    KL(mu || pi_beta) - log Z_beta, exact up to that constant. So for ``"blob"``,
    d value / d x_i = -(beta / n) velocity_i.

    >>> import measureflow as mf
    >>> F = KL(mf.targets.Gaussian(torch.zeros(1), torch.ones(1)), beta=4.0)
    >>> F.temperature, F.velocity(torch.tensor([[2.0]]))
    (0.25, tensor([[-2.]]))
    """

    target: Target
    beta: float = 1.0
    method: str = "noise"
    bandwidth: float | None = None
    block_size: int = DEFAULT_BLOCK

    def __post_init__(self) -> None:
        _check_target(self.target)
        # The entropy term is an Entropy functional (which validates beta, method and bandwidth).
        entropy = Entropy(self.beta, self.method, self.bandwidth, self.block_size)
        object.__setattr__(self, "beta", entropy.beta)
        object.__setattr__(self, "bandwidth", entropy.bandwidth)
        object.__setattr__(self, "_entropy", entropy)

    def value(self, x: Tensor) -> Tensor:
        x = _particles(x)
        _target_dim(self.target, x)
        # Entropy.value is (1/beta) int mu log mu (or its blob version): beta times it is -H.
        return _kl_estimate(x, self.target, self.beta, self.beta * self._entropy.value(x))

    def velocity(self, x: Tensor, *, time: float = 0.0,
                 generator: torch.Generator | None = None) -> Tensor:
        x = _particles(x)
        _target_dim(self.target, x)
        return -_grad_energy(self.target, x) + self._entropy.velocity(x)

    @property
    def temperature(self) -> float:
        return self._entropy.temperature

    @property
    def label(self) -> str:
        return f"KL({self.target.name}, beta={self.beta:g}, {self.method})"


@dataclass(frozen=True, eq=False)
class SVGD(Functional):
    """Stein variational gradient descent toward pi_beta (Liu & Wang, NeurIPS 2016, eq. (8)).

    phi(x_i) = (1/n) sum_j [k(x_j, x_i) grad log pi_beta(x_j) + grad_{x_j} k(x_j, x_i)]

    with the Gaussian RBF kernel k(x, y) = exp(-|x - y|^2 / (2 h^2)) (our convention, as in
    ``measureflow.metrics``). ``bandwidth="median"`` is Liu & Wang's heuristic written in theirs,
    exp(-|x - y|^2 / h_LW) with h_LW = med^2 / log n, med the median pairwise distance of the
    current particles: in our convention h = med / sqrt(2 log n), re-chosen at every step (the
    median over at most 2000 particles, ``metrics.median_bandwidth``). A number fixes h.
    phi is the steepest descent direction of KL(mu || pi_beta) in the unit ball of the RKHS, so
    SVGD is a gradient flow of the KL in the Stein geometry; the velocity is phi itself. The
    sums run as one blocked kernel product with the columns [score, x, 1]:
    phi_i = (1/n) [K S + (1/h^2)(x_i (K 1)_i - (K X)_i)].

    ``value(x)`` is the same KL(mu || pi_beta) estimate as :class:`KL` with ``method="noise"``:
    -H_hat (k nearest neighbours) + beta E_mu L + log Z_beta (log Z_beta omitted when unknown).

    >>> import measureflow as mf
    >>> F = SVGD(mf.targets.Gaussian(torch.zeros(1), torch.ones(1)), bandwidth=1.0)
    >>> F.velocity(torch.tensor([[1.0]]))  # one particle: the score -x
    tensor([[-1.]])
    """

    target: Target
    beta: float = 1.0
    bandwidth: float | str = "median"
    block_size: int = DEFAULT_BLOCK

    def __post_init__(self) -> None:
        _check_target(self.target)
        object.__setattr__(self, "beta", _check_beta(self.beta))
        if isinstance(self.bandwidth, str) and self.bandwidth != "median":
            raise ValueError(f"bandwidth must be 'median' or a positive number, got {self.bandwidth!r}")
        object.__setattr__(self, "bandwidth", _check_bandwidth(self.bandwidth, "median"))
        check_count(self.block_size, "block_size")

    def kernel_bandwidth(self, x: Tensor) -> float:
        """h for the particles ``x``: the given number, or med / sqrt(2 log n)."""
        if self.bandwidth != "median":
            return float(self.bandwidth)
        n = x.shape[0]
        if n < 2:
            raise ValueError("the median bandwidth needs at least 2 particles; give a bandwidth")
        return median_bandwidth(x.detach()) / math.sqrt(2 * math.log(n))

    def velocity(self, x: Tensor, *, time: float = 0.0,
                 generator: torch.Generator | None = None) -> Tensor:
        x = _particles(x)
        _target_dim(self.target, x)
        n = x.shape[0]
        h = self.kernel_bandwidth(x)
        score = -self.beta * _grad_energy(self.target, x)  # grad log pi_beta
        z = x / h
        _, moment, drive = _kernel_sums(z, z, _UNIT_GAUSSIAN, self.block_size, extra=score)
        # sum_j grad_{x_j} k(x_j, x_i) = sum_j (x_i - x_j) K_ij / h^2 = sum_j (z_i - z_j) K_ij / h.
        return (drive + moment / h) / n

    def value(self, x: Tensor) -> Tensor:
        x = _particles(x)
        _target_dim(self.target, x)
        return _kl_estimate(x, self.target, self.beta, -knn_entropy(x))

    @property
    def label(self) -> str:
        return f"SVGD({self.target.name}, beta={self.beta:g})"


# --------------------------------------------------------------------------------------------
# MMD to a sample
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class MMD(Functional):
    """F[mu] = 1/2 MMD^2(mu, nu) to the sample ``target_samples`` y ``(m, d)`` of nu: the MMD flow.

    Arbel, Korba, Salim & Gretton, "Maximum mean discrepancy gradient flow", NeurIPS 2019. With
    the witness f(x) = (1/n) sum_j k(x, x_j) - (1/m) sum_j k(x, y_j), dF/dmu = f (up to a
    constant) and the velocity is -grad f(x_i). The value is 1/2 the V-statistic MMD^2 of the
    particles against y (the functional of the empirical measures, diagonal terms included),
    so velocity = -n d value / d x exactly.

    ``kernel``: ``"gaussian"`` exp(-|x - y|^2 / (2 h^2)) or ``"imq"`` (1 + |x - y|^2 / h^2)^(-1/2);
    ``bandwidth`` h, default the median heuristic on y (fixed once, since nu does not move).
    ``noise_level`` beta_t >= 0 (a number, or a function of the flow time t): the noise
    injection of Arbel et al. (their Algorithm 1), which evaluates the gradient at
    x_i + beta_t u_i, u_i ~ N(0, I) drawn with the integrator's generator; it helps particles
    escape the flow's local minima, and should decay (e.g. ``lambda t: 0.5 * math.exp(-t)``) so
    that the flow still converges.

    >>> y = torch.zeros(1, 1)
    >>> F = MMD(y, bandwidth=1.0)
    >>> F.velocity(torch.tensor([[1.0]]))  # -k'(1) toward y: -exp(-1/2)
    tensor([[-0.6065]])
    """

    target_samples: Any
    kernel: str = "gaussian"
    bandwidth: float | None = None
    noise_level: float | Callable[[float], float] = 0.0
    block_size: int = DEFAULT_BLOCK
    _y: Tensor = field(init=False, repr=False)
    _h: float = field(init=False, repr=False)

    def __post_init__(self) -> None:
        y = check_particles(self.target_samples, "target_samples")
        if not y.is_floating_point():
            y = y.to(torch.get_default_dtype())
        if self.kernel not in _MMD_KERNELS:
            raise ValueError(f"kernel must be one of {', '.join(_MMD_KERNELS)}, got {self.kernel!r}")
        bandwidth = _check_bandwidth(self.bandwidth)
        if bandwidth is None:
            if y.shape[0] < 2:
                raise ValueError("the median-heuristic bandwidth needs at least 2 target samples; "
                                 "give bandwidth")
            bandwidth = median_bandwidth(y)
        if not callable(self.noise_level):
            check_positive(self.noise_level, "noise_level", allow_zero=True)
        check_count(self.block_size, "block_size")
        object.__setattr__(self, "_y", y)
        object.__setattr__(self, "_h", float(bandwidth))

    @property
    def kernel_bandwidth(self) -> float:
        """The bandwidth h in use (the median heuristic on the target sample when not given)."""
        return self._h

    def _target(self, x: Tensor) -> Tensor:
        if x.shape[1] != self._y.shape[1]:
            raise ValueError(f"x has dimension d = {x.shape[1]} but target_samples has "
                             f"d = {self._y.shape[1]}")
        return self._y.to(dtype=x.dtype, device=x.device)

    def noise_at(self, time: float) -> float:
        """beta_t, the noise level at flow time ``time``."""
        level = self.noise_level(time) if callable(self.noise_level) else self.noise_level
        return check_positive(level, "noise_level", allow_zero=True)

    def value(self, x: Tensor) -> Tensor:
        x = _particles(x)
        y = self._target(x)
        kernel, _ = _MMD_KERNELS[self.kernel]
        return 0.5 * mmd2(x / self._h, y / self._h, kernel=kernel, unbiased=False, block_size=self.block_size)

    def velocity(self, x: Tensor, *, time: float = 0.0,
                 generator: torch.Generator | None = None) -> Tensor:
        x = _particles(x)
        y = self._target(x)
        h = self._h
        _, slope = _MMD_KERNELS[self.kernel]
        at = x
        level = self.noise_at(time)
        if level > 0:
            at = x + level * torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
        # grad_x k(x, s) = -(x - s)/h^2 psi(|x - s|^2/h^2) = -(z - s/h) psi / h with z = x/h.
        _, own, _ = _kernel_sums(at / h, x / h, slope, self.block_size)
        _, other, _ = _kernel_sums(at / h, y / h, slope, self.block_size)
        grad_witness = -(own / x.shape[0] - other / y.shape[0]) / h
        return -grad_witness

    @property
    def label(self) -> str:
        return f"MMD({self.kernel}, h={self._h:.3g})"

