"""Classic test energies: the double well, a banana, Neal's funnel and Rastrigin."""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from measureflow._core import check_positive
from measureflow.targets._quadrature import OneDimensionalGibbs
from measureflow.targets.base import Target, log_normal_const

__all__ = ["Banana", "DoubleWell", "Funnel", "Rastrigin"]


class _Separable(Target):
    """L(x) = sum_i l(x_i): log Z and exact sampling by 1-D quadrature, cached per beta."""

    def _energy_1d(self, x: np.ndarray) -> np.ndarray:
        raise TypeError(f"{type(self).__name__} does not define its 1-D energy")

    def _half_width(self, beta: float) -> float:
        raise TypeError(f"{type(self).__name__} does not define its quadrature range")

    def _gibbs_1d(self, beta: float) -> OneDimensionalGibbs:
        beta = check_positive(beta, "beta")
        cache = self.__dict__.setdefault("_gibbs_cache", {})
        if beta not in cache:
            half_width = self._half_width(beta)
            cache[beta] = OneDimensionalGibbs(self._energy_1d, beta, -half_width, half_width)
        return cache[beta]

    def log_normalizer(self, beta: float = 1.0) -> float:
        return self.dim * self._gibbs_1d(beta).log_z

    def density_1d(self, x: Tensor, beta: float = 1.0) -> Tensor:
        """The exact normalized marginal density of one coordinate at the points ``x``."""
        gibbs = self._gibbs_1d(beta)
        values = np.exp(-beta * self._energy_1d(x.detach().cpu().double().numpy()) - gibbs.log_z)
        return torch.as_tensor(values, dtype=x.dtype, device=x.device)

    def sample(self, n: int, beta: float = 1.0, generator: torch.Generator | None = None) -> Tensor:
        """Exact draws by inverting the tabulated 1-D CDF of each coordinate (see quadrature)."""
        return self._gibbs_1d(beta).sample((n, self.dim), generator, self._anchor)


class DoubleWell(_Separable):
    """L(x) = sum_i (x_i^2 - 1)^2 in ``dim`` dimensions: wells at +-1, barrier height 1 at 0.

    ``tilt`` c adds c x_i to every coordinate: L(x) = sum_i [(x_i^2 - 1)^2 + c x_i], an
    asymmetric double well (for 0 < c < 8 / (3 sqrt 3) the well on the side opposite to the sign
    of c is the global one and the other a spurious local minimum).

    >>> import torch, measureflow as mf
    >>> mf.targets.DoubleWell().energy(torch.tensor([[0.0], [1.0]]))
    tensor([1., 0.])
    """

    name = "double-well"

    def __init__(self, dim: int = 1, tilt: float = 0.0) -> None:
        super().__init__(dim)
        self.tilt = float(tilt)
        if not math.isfinite(self.tilt):
            raise ValueError(f"tilt must be finite, got {tilt!r}")

    def _energy_1d(self, x: np.ndarray) -> np.ndarray:
        return (x**2 - 1) ** 2 + self.tilt * x

    def _half_width(self, beta: float) -> float:
        # beta (x^2 - 1)^2 >= 50 beyond this point: the tail mass is below exp(-50); a tilt moves
        # the tails by at most |c| |x|, which the added |c| outgrows.
        return math.sqrt(1 + math.sqrt(50 / beta)) + abs(self.tilt)

    def energy(self, x: Tensor) -> Tensor:
        x = self._as_input(x)
        value = (x.square() - 1).square().sum(-1)
        return value + self.tilt * x.sum(-1) if self.tilt else value

    def initial_positions(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """Uniform on [-1.5, 1.5]^d: both wells, and no start far in the quartic tails, where
        MALA's reverse proposal is so improbable that a chain can stay stuck for a long time."""
        uniform = torch.rand(n, self.dim, generator=generator, dtype=self.dtype, device=self.device)
        return 3 * uniform - 1.5

    def grad_energy(self, x: Tensor) -> Tensor:
        x = self._as_input(x)
        return 4 * x * (x.square() - 1) + self.tilt

    def energy_and_grad(self, x: Tensor) -> tuple[Tensor, Tensor]:
        x = self._as_input(x)
        excess = x.square() - 1
        value = excess.square().sum(-1)
        if self.tilt:
            value = value + self.tilt * x.sum(-1)
        return value, 4 * x * excess + self.tilt


class Rastrigin(_Separable):
    """L(x) = A d + sum_i (x_i^2 - A cos(2 pi x_i)), global minimum 0 at x = 0.

    Local minima sit near every integer point; the global basin is the cube |x_i| < 1/2.
    """

    name = "rastrigin"

    def __init__(self, dim: int = 2, amplitude: float = 10.0) -> None:
        super().__init__(dim)
        self.amplitude = check_positive(amplitude, "amplitude")

    def _energy_1d(self, x: np.ndarray) -> np.ndarray:
        return self.amplitude + x**2 - self.amplitude * np.cos(2 * np.pi * x)

    def _half_width(self, beta: float) -> float:
        # beta (x^2 - 2 A) >= 50 beyond this point.
        return math.sqrt(50 / beta + 2 * self.amplitude)

    def energy(self, x: Tensor) -> Tensor:
        x = self._as_input(x)
        return (self.amplitude + x.square() - self.amplitude * torch.cos(2 * math.pi * x)).sum(-1)

    def grad_energy(self, x: Tensor) -> Tensor:
        x = self._as_input(x)
        return 2 * x + 2 * math.pi * self.amplitude * torch.sin(2 * math.pi * x)

    def energy_and_grad(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return self.energy(x), self.grad_energy(x)

    def initial_positions(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """Uniform on the usual search domain [-5.12, 5.12]^d."""
        uniform = torch.rand(n, self.dim, generator=generator, dtype=self.dtype, device=self.device)
        return 10.24 * uniform - 5.12

    def in_global_basin(self, x: Tensor) -> Tensor:
        """Whether each point lies in the basin of the global minimum, shape ``(n,)``."""
        return (self._as_input(x).abs() < 0.5).all(-1)


class Banana(Target):
    """A Rosenbrock-type banana: x_1 ~ N(0, s^2) and x_2 | x_1 ~ N(b (x_1^2 - s^2), 1).

    L(x) = x_1^2 / (2 s^2) + (x_2 - b (x_1^2 - s^2))^2 / 2 + sum_{i>2} x_i^2 / 2. The map
    (x_1, x_2) -> (x_1, x_2 - b (x_1^2 - s^2)) has unit Jacobian, so pi_beta is exact: x_1 ~
    N(0, s^2 / beta), x_2 = b (x_1^2 - s^2) + N(0, 1 / beta); Z_beta = (2 pi / beta)^(d/2) s.
    """

    name = "banana"

    def __init__(self, dim: int = 2, scale: float = 2.0, curvature: float = 0.5) -> None:
        if int(dim) < 2:
            raise ValueError(f"Banana needs dim >= 2, got {dim}")
        super().__init__(dim)
        self.scale = check_positive(scale, "scale")
        self.curvature = float(curvature)

    def _bend(self, x1: Tensor) -> Tensor:
        return self.curvature * (x1.square() - self.scale**2)

    def energy(self, x: Tensor) -> Tensor:
        x = self._as_input(x)
        residual = x[:, 1] - self._bend(x[:, 0])
        rest = x[:, 2:].square().sum(-1)
        return 0.5 * (x[:, 0].square() / self.scale**2 + residual.square() + rest)

    def energy_and_grad(self, x: Tensor) -> tuple[Tensor, Tensor]:
        x = self._as_input(x)
        residual = x[:, 1] - self._bend(x[:, 0])
        gradient = x.clone()
        gradient[:, 0] = x[:, 0] / self.scale**2 - residual * 2 * self.curvature * x[:, 0]
        gradient[:, 1] = residual
        return self.energy(x), gradient

    def grad_energy(self, x: Tensor) -> Tensor:
        return self.energy_and_grad(x)[1]

    def log_normalizer(self, beta: float = 1.0) -> float:
        beta = check_positive(beta, "beta")
        return log_normal_const(self.dim, beta) + math.log(self.scale)

    def sample(self, n: int, beta: float = 1.0, generator: torch.Generator | None = None) -> Tensor:
        beta = check_positive(beta, "beta")
        z = torch.randn(n, self.dim, generator=generator, dtype=self.dtype, device=self.device)
        z = z / math.sqrt(beta)
        x = z.clone()
        x[:, 0] = self.scale * z[:, 0]
        x[:, 1] = z[:, 1] + self._bend(x[:, 0])
        return x


class Funnel(Target):
    """Neal's funnel: v = x_1 ~ N(0, 3^2), x_i | v ~ N(0, e^v) for i = 2..d.

    L(x) = v^2 / 18 + e^{-v} sum_{i>1} x_i^2 / 2 + (d - 1) v / 2. At inverse temperature beta
    the conditionals are N(0, e^v / beta) and v is Gaussian with precision beta / 9 and mean
    -9 (beta - 1)(d - 1) / (2 beta), so Z_beta and the sampler are exact for every beta.
    """

    name = "funnel"

    def __init__(self, dim: int = 10, scale: float = 3.0) -> None:
        if int(dim) < 2:
            raise ValueError(f"Funnel needs dim >= 2, got {dim}")
        super().__init__(dim)
        self.scale = check_positive(scale, "scale")

    def energy(self, x: Tensor) -> Tensor:
        x = self._as_input(x)
        v, rest = x[:, 0], x[:, 1:]
        return (
            0.5 * v.square() / self.scale**2
            + 0.5 * torch.exp(-v) * rest.square().sum(-1)
            + 0.5 * (self.dim - 1) * v
        )

    def energy_and_grad(self, x: Tensor) -> tuple[Tensor, Tensor]:
        x = self._as_input(x)
        v, rest = x[:, :1], x[:, 1:]
        inverse_variance = torch.exp(-v)
        squared = rest.square().sum(-1, keepdim=True)
        grad_v = v / self.scale**2 - 0.5 * inverse_variance * squared + 0.5 * (self.dim - 1)
        energy = (
            0.5 * v.square() / self.scale**2
            + 0.5 * inverse_variance * squared
            + 0.5 * (self.dim - 1) * v
        )[:, 0]
        return energy, torch.cat([grad_v, inverse_variance * rest], dim=-1)

    def grad_energy(self, x: Tensor) -> Tensor:
        return self.energy_and_grad(x)[1]

    def _v_law(self, beta: float) -> tuple[float, float]:
        """Mean and variance of v under pi_beta."""
        precision = beta / self.scale**2
        linear = -0.5 * (beta - 1) * (self.dim - 1)
        return linear / precision, 1.0 / precision

    def log_normalizer(self, beta: float = 1.0) -> float:
        beta = check_positive(beta, "beta")
        mean, variance = self._v_law(beta)
        log_v = 0.5 * math.log(2 * math.pi * variance) + 0.5 * mean**2 / variance
        return log_v + log_normal_const(self.dim - 1, beta)

    def sample(self, n: int, beta: float = 1.0, generator: torch.Generator | None = None) -> Tensor:
        beta = check_positive(beta, "beta")
        mean, variance = self._v_law(beta)
        z = torch.randn(n, self.dim, generator=generator, dtype=self.dtype, device=self.device)
        v = mean + math.sqrt(variance) * z[:, :1]
        return torch.cat([v, torch.exp(0.5 * v) * z[:, 1:] / math.sqrt(beta)], dim=-1)
