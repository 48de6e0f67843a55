r"""Generator and critic networks for adversarial and kernel generative models.

- :class:`Generator` is the push-forward map x = f_theta(z), z ~ N(0, I_k): an MLP from the
  latent space to samples of any shape (vectors ``(d,)`` or images ``(C, H, W)``, flattened
  inside).
- :class:`ParticleGenerator` is the simplest generator family: N learnable points, f_theta(z)
  = theta_z with z uniform on {1..N} (the generator of Chu, Minami & Fukumizu's experiment; it
  satisfies their (G1)-(G2) with A = 1/sqrt(N), B = 0).
- :class:`Critic` is the discriminator / critic / feature map h_eta(x): an MLP from samples to
  ``out_dim`` outputs (1 for a critic, a feature vector for MMD-GAN).

With ``spectral_norm=True`` every linear layer W of the critic is replaced by W / sigma(W)
(torch's ``parametrizations.spectral_norm``, sigma estimated by one power iteration per forward
pass; Miyato et al. 2018). With 1-Lipschitz activations the network is then 1-Lipschitz, and
``lipschitz`` (alpha) scales its output so that x -> h(x) is alpha-Lipschitz (condition D1 of
Chu, Minami & Fukumizu 2020).

``activation="softplus"`` uses softplus_b(u) = log(1 + e^{b u}) / b, which is 1-Lipschitz with
|softplus_b''| <= b/4. For h = alpha W_{K+1} s(W_K ... s(W_1 x)) with ||W_i|| <= 1 and K hidden
activations, the gradient x -> grad h(x) is Lipschitz with constant at most alpha K b / 4
(differentiate the product of Jacobians; each activation's derivative moves by at most b/4 per
unit of its input, and every other factor has norm <= 1). :func:`softplus_sharpness` solves
alpha K b / 4 = beta_1 for b, which makes the critic beta_1-smooth (condition D2).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from measureflow._core import check_count
from measureflow.generative.nets import _check_scale

__all__ = ["ACTIVATIONS", "Critic", "Generator", "ParticleGenerator", "softplus_sharpness"]

ACTIVATIONS = ("relu", "leaky_relu", "softplus")


def _check_shape(shape: int | Sequence[int], name: str) -> tuple[int, ...]:
    shape = (shape,) if isinstance(shape, int) and not isinstance(shape, bool) else tuple(shape)
    if not shape or any(isinstance(s, bool) or not isinstance(s, int) or s < 1 for s in shape):
        raise ValueError(f"{name} must be a positive int or a tuple of positive ints, got {shape!r}")
    return shape


def softplus_sharpness(beta1: float, alpha: float, n_hidden: int) -> float:
    """The softplus sharpness b that makes an alpha-Lipschitz critic with ``n_hidden`` softplus
    layers beta_1-smooth: b = 4 beta_1 / (alpha n_hidden) (see the module docstring).

    >>> softplus_sharpness(beta1=2.0, alpha=1.0, n_hidden=2)
    4.0
    """
    return 4 * _check_scale(beta1, "beta1") / (_check_scale(alpha, "alpha")
                                                   * check_count(n_hidden, "n_hidden"))


class _Softplus(nn.Module):
    def __init__(self, sharpness: float) -> None:
        super().__init__()
        self.sharpness = sharpness

    def forward(self, u: Tensor) -> Tensor:
        return F.softplus(u, beta=self.sharpness)

    def extra_repr(self) -> str:
        return f"sharpness={self.sharpness:g}"


def _activation(name: str, sharpness: float) -> nn.Module:
    if name == "relu":
        return nn.ReLU()
    if name == "leaky_relu":
        return nn.LeakyReLU(0.2)
    if name == "softplus":
        return _Softplus(sharpness)
    raise ValueError(f"unknown activation {name!r}; choose one of {', '.join(ACTIVATIONS)}")


class Generator(nn.Module):
    r"""x = f_theta(z): an MLP ``latent_dim -> hidden (x depth) -> prod(out_shape)``, ReLU hidden
    layers, a linear output (samples live in standardized units, unbounded), reshaped to
    ``out_shape``. ``forward(z)`` maps ``(n, latent_dim)`` to ``(n, *out_shape)``;
    ``sample(n, generator)`` draws z ~ N(0, I) from ``generator`` first.

    >>> _ = torch.manual_seed(0)
    >>> Generator(latent_dim=4, out_shape=2).sample(3).shape
    torch.Size([3, 2])
    """

    def __init__(self, latent_dim: int, out_shape: int | Sequence[int], hidden: int = 128,
                 depth: int = 3) -> None:
        super().__init__()
        self.latent_dim = check_count(latent_dim, "latent_dim")
        self.out_shape = _check_shape(out_shape, "out_shape")
        hidden, depth = check_count(hidden, "hidden"), check_count(depth, "depth")
        layers: list[nn.Module] = []
        width = self.latent_dim
        for _ in range(depth):
            layers += [nn.Linear(width, hidden), nn.ReLU()]
            width = hidden
        layers.append(nn.Linear(width, math.prod(self.out_shape)))
        self.body = nn.Sequential(*layers)

    def forward(self, z: Tensor) -> Tensor:
        if z.dim() != 2 or z.shape[1] != self.latent_dim:
            raise ValueError(f"z must have shape (n, {self.latent_dim}), got {tuple(z.shape)}")
        return self.body(z).reshape(z.shape[0], *self.out_shape)

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """``n`` samples ``(n, *out_shape)``, z ~ N(0, I) drawn from ``generator``."""
        n = check_count(n, "n")
        weight = self.body[0].weight
        z = torch.randn(n, self.latent_dim, generator=generator, dtype=weight.dtype, device=weight.device)
        return self(z)


class ParticleGenerator(nn.Module):
    r"""N learnable points theta ``(N, *out_shape)``; ``sample(n, generator)`` returns n of them
    drawn uniformly with replacement (z uniform on the indices). ``init`` ``(N, *out_shape)``
    sets the starting points; otherwise they start at N(0, I) draws.

    >>> _ = torch.manual_seed(0)
    >>> ParticleGenerator(10, 2).sample(4).shape
    torch.Size([4, 2])
    """

    def __init__(self, n_points: int, out_shape: int | Sequence[int], init: Tensor | None = None) -> None:
        super().__init__()
        self.n_points = check_count(n_points, "n_points")
        self.out_shape = _check_shape(out_shape, "out_shape")
        if init is None:
            init = torch.randn(self.n_points, *self.out_shape)
        elif tuple(init.shape) != (self.n_points, *self.out_shape):
            raise ValueError(f"init must have shape {(self.n_points, *self.out_shape)}, "
                             f"got {tuple(init.shape)}")
        self.points = nn.Parameter(init.detach().clone())
        self.latent_dim = 0

    def forward(self, index: Tensor) -> Tensor:
        return self.points[index]

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """``n`` of the points ``(n, *out_shape)``, indices drawn uniformly from ``generator``."""
        n = check_count(n, "n")
        device = generator.device if generator is not None else self.points.device
        index = torch.randint(self.n_points, (n,), generator=generator, device=device)
        return self(index.to(self.points.device))


class Critic(nn.Module):
    r"""h_eta(x): an MLP ``prod(in_shape) -> hidden (x depth) -> out_dim`` on flattened samples.

    ``forward(x)`` maps ``(n, *in_shape)`` to ``(n,)`` when ``out_dim == 1`` (a critic value)
    and to ``(n, out_dim)`` otherwise (features). ``spectral_norm`` divides every weight by its
    largest singular value; ``lipschitz`` (alpha) multiplies the output, so with spectral norm
    and these 1-Lipschitz activations h is alpha-Lipschitz. ``activation`` is ``"leaky_relu"``
    (slope 0.2), ``"relu"`` or ``"softplus"`` with ``sharpness`` b (see
    :func:`softplus_sharpness`).

    >>> _ = torch.manual_seed(0)
    >>> Critic(2, spectral_norm=True)(torch.zeros(5, 2)).shape
    torch.Size([5])
    """

    def __init__(self, in_shape: int | Sequence[int], hidden: int = 128, depth: int = 3, out_dim: int = 1, *,
                 activation: str = "leaky_relu", spectral_norm: bool = False, lipschitz: float = 1.0,
                 sharpness: float = 1.0) -> None:
        super().__init__()
        self.in_shape = _check_shape(in_shape, "in_shape")
        self.out_dim = check_count(out_dim, "out_dim")
        hidden, depth = check_count(hidden, "hidden"), check_count(depth, "depth")
        self.lipschitz = _check_scale(lipschitz, "lipschitz")
        sharpness = _check_scale(sharpness, "sharpness")
        self.spectral_norm = bool(spectral_norm)

        def linear(n_in: int, n_out: int) -> nn.Module:
            layer = nn.Linear(n_in, n_out)
            return nn.utils.parametrizations.spectral_norm(layer) if self.spectral_norm else layer

        layers: list[nn.Module] = []
        width = math.prod(self.in_shape)
        for _ in range(depth):
            layers += [linear(width, hidden), _activation(activation, sharpness)]
            width = hidden
        layers.append(linear(width, self.out_dim))
        self.body = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        if tuple(x.shape[1:]) != self.in_shape:
            raise ValueError(f"x must have shape (n, {', '.join(map(str, self.in_shape))}), "
                             f"got {tuple(x.shape)}")
        out = self.body(x.reshape(x.shape[0], -1))
        if self.lipschitz != 1.0:
            out = self.lipschitz * out
        return out.squeeze(1) if self.out_dim == 1 else out
