r"""Two-dimensional toy data sets for generative models, drawn with an explicit torch generator.

The five toys, in the coordinates they are returned in (no standardization is applied here):

- ``"moons"``: two interleaved half circles, as scikit-learn's ``make_moons``: the upper arc
  (cos a, sin a) and the lower arc (1 - cos a, 1/2 - sin a) with a ~ U[0, pi], each point on
  either arc with probability 1/2, plus isotropic Gaussian noise of std ``MOONS_NOISE`` = 0.05.
  Unlike ``make_moons``, which places its points on a fixed grid of angles, every draw here is
  i.i.d., so two calls give two independent samples (their distance is an honest noise floor).
- ``"8gaussians"``: an equal-weight mixture of 8 isotropic Gaussians with std ``MODE_STD`` = 0.1
  centred on the circle of radius 2 at angles 2 pi k / 8.
- ``"25gaussians"``: an equal-weight mixture of 25 isotropic Gaussians with std ``MODE_STD``
  centred on the grid {-4, -2, 0, 2, 4}^2.
- ``"checkerboard"``: the uniform law on the 8 black squares of a 4 x 4 board of unit squares
  covering [-2, 2]^2; the square [-2 + i, -1 + i] x [-2 + j, -1 + j] (i, j in 0..3) is black
  when i + j is even, so the corner square at (-2, -2) is black. Density 1/8 on the black
  squares, 0 elsewhere.
- ``"swissroll"``: the 2-D swiss roll (s cos s, s sin s) / ``SWISSROLL_SCALE`` with
  s ~ U[3 pi / 2, 9 pi / 2] (scikit-learn's parametrization), divided by 7.5 so that each
  coordinate has a spread of about 1, plus isotropic Gaussian noise of std ``SWISSROLL_NOISE``
  = 0.05 in the scaled units.

The two mixtures are available in closed form through :func:`toy_mixture`; :func:`toy_2d`
samples exactly those mixtures, so the exact score of a diffused mixture can serve as an oracle.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from measureflow._core import check_count

__all__ = [
    "MIXTURE_NAMES",
    "MODE_STD",
    "MOONS_NOISE",
    "SWISSROLL_NOISE",
    "SWISSROLL_SCALE",
    "TOY_NAMES",
    "MixtureSpec",
    "toy_2d",
    "toy_mixture",
]

TOY_NAMES = ("moons", "8gaussians", "25gaussians", "checkerboard", "swissroll")
MIXTURE_NAMES = ("8gaussians", "25gaussians")

MODE_STD = 0.1
"""Standard deviation of every (isotropic) mode of ``8gaussians`` and ``25gaussians``."""
MOONS_NOISE = 0.05
"""Standard deviation of the Gaussian noise added to the two moons."""
SWISSROLL_SCALE = 7.5
"""The swiss roll (s cos s, s sin s), s in [3 pi/2, 9 pi/2], is divided by this."""
SWISSROLL_NOISE = 0.05
"""Standard deviation of the Gaussian noise added to the scaled swiss roll."""


@dataclass(frozen=True, eq=False)  # tensors inside: compare fields explicitly
class MixtureSpec:
    r"""A Gaussian mixture sum_k w_k N(mu_k, Sigma_k) in closed form.

    ``means`` ``(K, d)``, ``covs`` ``(K, d, d)`` and ``weights`` ``(K,)`` (summing to 1), all
    float64 on one device. Mean and covariance of the mixture:
    m = sum_k w_k mu_k and C = sum_k w_k (Sigma_k + mu_k mu_k^T) - m m^T.

    >>> spec = toy_mixture("8gaussians")
    >>> tuple(spec.means.shape), tuple(spec.covs.shape), float(spec.weights.sum())
    ((8, 2), (8, 2, 2), 1.0)
    """

    name: str
    means: Tensor
    covs: Tensor
    weights: Tensor

    def __post_init__(self) -> None:
        if self.means.ndim != 2:
            raise ValueError(f"means must have shape (K, d), got {tuple(self.means.shape)}")
        k, d = self.means.shape
        if tuple(self.covs.shape) != (k, d, d):
            raise ValueError(f"covs must have shape {(k, d, d)}, got {tuple(self.covs.shape)}")
        if tuple(self.weights.shape) != (k,):
            raise ValueError(f"weights must have shape {(k,)}, got {tuple(self.weights.shape)}")

    @property
    def n_components(self) -> int:
        return int(self.means.shape[0])

    @property
    def dim(self) -> int:
        return int(self.means.shape[1])

    def to(self, device: torch.device | str) -> MixtureSpec:
        """The same mixture with its tensors on ``device`` (still float64)."""
        return MixtureSpec(self.name, self.means.to(device), self.covs.to(device), self.weights.to(device))

    def mean(self) -> Tensor:
        """The mixture mean m = sum_k w_k mu_k, ``(d,)``."""
        return self.weights @ self.means

    def covariance(self) -> Tensor:
        """The mixture covariance sum_k w_k (Sigma_k + mu_k mu_k^T) - m m^T, ``(d, d)``."""
        m = self.mean()
        second = torch.einsum("k,kij->ij", self.weights, self.covs)
        second = second + torch.einsum("k,ki,kj->ij", self.weights, self.means, self.means)
        return second - torch.outer(m, m)

    def log_prob(self, x: Tensor) -> Tensor:
        """log p(x) of the mixture for ``x`` ``(n, d)``, returned as ``(n,)`` in the dtype of ``x``."""
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise ValueError(f"x must have shape (n, {self.dim}), got {tuple(x.shape)}")
        points = x.to(dtype=torch.float64, device=self.means.device)
        cholesky = torch.linalg.cholesky(self.covs)                          # (K, d, d)
        residual = (points[:, None, :] - self.means[None]).unsqueeze(-1)     # (n, K, d, 1)
        whitened = torch.linalg.solve_triangular(cholesky[None], residual, upper=False).squeeze(-1)
        log_det = 2 * torch.log(torch.diagonal(cholesky, dim1=-2, dim2=-1)).sum(-1)   # (K,)
        log_component = -0.5 * (whitened.square().sum(-1) + log_det + self.dim * math.log(2 * math.pi))
        log_density = torch.logsumexp(log_component + torch.log(self.weights), dim=1)
        return log_density.to(device=x.device, dtype=x.dtype)

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """``n`` i.i.d. draws ``(n, d)`` float64 on the generator's device (or this spec's device
        when ``generator`` is None): a component k ~ weights, then mu_k + L_k z with
        L_k L_k^T = Sigma_k and z ~ N(0, I)."""
        n = check_count(n, "n")
        device = generator.device if generator is not None else self.means.device
        spec = self.to(device)
        components = torch.multinomial(spec.weights, n, replacement=True, generator=generator)
        noise = torch.randn((n, self.dim, 1), generator=generator, dtype=torch.float64, device=device)
        cholesky = torch.linalg.cholesky(spec.covs)
        return spec.means[components] + (cholesky[components] @ noise).squeeze(-1)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe lists of the parameters."""
        return {"name": self.name, "means": self.means.tolist(), "covs": self.covs.tolist(),
                "weights": self.weights.tolist()}


def _check_name(name: Any, allowed: tuple[str, ...], what: str) -> str:
    if not isinstance(name, str) or name not in allowed:
        raise ValueError(f"unknown {what} {name!r}; choose one of {', '.join(allowed)}")
    return name


def toy_mixture(name: str) -> MixtureSpec:
    r"""The Gaussian mixture behind the toy ``name`` (``"8gaussians"`` or ``"25gaussians"``).

    8gaussians: mu_k = 2 (cos(2 pi k / 8), sin(2 pi k / 8)), k = 0..7; 25gaussians: mu on
    {-4, -2, 0, 2, 4}^2. Equal weights, Sigma_k = ``MODE_STD``^2 I, float64 on the CPU.

    >>> spec = toy_mixture("25gaussians")
    >>> spec.n_components, spec.means.dtype
    (25, torch.float64)
    """
    if isinstance(name, str) and name in TOY_NAMES and name not in MIXTURE_NAMES:
        raise ValueError(
            f"toy {name!r} is not a Gaussian mixture; mixtures in closed form: {', '.join(MIXTURE_NAMES)}"
        )
    _check_name(name, MIXTURE_NAMES, "mixture toy")
    if name == "8gaussians":
        angles = 2 * math.pi * torch.arange(8, dtype=torch.float64) / 8
        means = 2.0 * torch.stack([torch.cos(angles), torch.sin(angles)], dim=1)
    else:
        grid = torch.tensor([-4.0, -2.0, 0.0, 2.0, 4.0], dtype=torch.float64)
        means = torch.cartesian_prod(grid, grid)
    k = means.shape[0]
    covs = (MODE_STD**2) * torch.eye(2, dtype=torch.float64).expand(k, 2, 2).clone()
    weights = torch.full((k,), 1.0 / k, dtype=torch.float64)
    return MixtureSpec(name, means, covs, weights)


def toy_2d(
    name: str,
    n: int,
    generator: torch.Generator | None = None,
    *,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str = "cpu",
) -> Tensor:
    r"""``n`` i.i.d. points ``(n, 2)`` from the toy law ``name`` (see the module docstring).

    Randomness is drawn on the generator's device (the default generator on ``device`` when
    ``generator`` is None) in float64, then cast to ``dtype`` and moved to ``device``; the same
    seeded CPU generator therefore gives the same points on every device.

    >>> g = torch.Generator().manual_seed(0)
    >>> x = toy_2d("checkerboard", 1000, g)
    >>> tuple(x.shape), x.dtype, bool((x.abs() <= 2).all())
    ((1000, 2), torch.float32, True)
    """
    _check_name(name, TOY_NAMES, "toy data set")
    n = check_count(n, "n")
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise TypeError(f"dtype must be a floating torch dtype, got {dtype!r}")
    draw_device = generator.device if generator is not None else torch.device(device)

    def uniform(*shape: int) -> Tensor:
        return torch.rand(shape, generator=generator, dtype=torch.float64, device=draw_device)

    def normal(*shape: int) -> Tensor:
        return torch.randn(shape, generator=generator, dtype=torch.float64, device=draw_device)

    if name in MIXTURE_NAMES:
        points = toy_mixture(name).to(draw_device).sample(n, generator)
    elif name == "moons":
        angle = math.pi * uniform(n)
        lower = uniform(n) < 0.5
        x = torch.where(lower, 1.0 - torch.cos(angle), torch.cos(angle))
        y = torch.where(lower, 0.5 - torch.sin(angle), torch.sin(angle))
        points = torch.stack([x, y], dim=1) + MOONS_NOISE * normal(n, 2)
    elif name == "checkerboard":
        # A black square (i, j) with i + j even: pick i uniformly, then j of the matching parity.
        i = torch.randint(0, 4, (n,), generator=generator, device=draw_device)
        j = 2 * torch.randint(0, 2, (n,), generator=generator, device=draw_device) + (i % 2)
        corner = torch.stack([i, j], dim=1).to(torch.float64) - 2.0
        points = corner + uniform(n, 2)
    else:  # swissroll
        s = 1.5 * math.pi * (1.0 + 2.0 * uniform(n))
        roll = torch.stack([s * torch.cos(s), s * torch.sin(s)], dim=1) / SWISSROLL_SCALE
        points = roll + SWISSROLL_NOISE * normal(n, 2)
    return points.to(device=device, dtype=dtype)
