r"""The stability regularizers of Chu, Minami & Fukumizu (ICLR 2020), "Smoothness and stability in GANs".

Their Theorem 1: if the optimal critic Phi_mu of the loss J satisfies

    (D1) x -> Phi_mu(x) is alpha-Lipschitz,
    (D2) x -> grad Phi_mu(x) is beta_1-Lipschitz,
    (D3) mu -> grad Phi_mu(x) is beta_2-Lipschitz in the 1-Wasserstein distance,

and the generator family satisfies (G1) A-Lipschitz and (G2) B-smooth in expectation, then
theta -> J(P_theta) is L-smooth with L = alpha B + A^2 (beta_1 + beta_2), so gradient descent
with a step below 1/L reaches stationarity. Replacing J by the inf-convolution
J (+) alpha ||.||_KR (+) beta_1 ||.||_S1 (+) (beta_2 / 2) ||.||_H^2 keeps J's minimizer and
value (for JS, W1 and MMD^2) and guarantees (D1)-(D3); in the dual, the critic h pays the
conjugates of the three terms:

    alpha:  h must be alpha-Lipschitz            -> spectral normalization scaled by alpha,
    beta_1: grad h must be beta_1-Lipschitz      -> smooth activations of bounded curvature,
    beta_2: a penalty ||h||_H^2 / (2 beta_2)     -> computed with random Fourier features,

with k(x, y) = exp(-|x - y|^2 / (2 s^2)) a Gaussian kernel. The first two are built into the
critic (:class:`~measureflow.generative.gan.nets.Critic` with ``spectral_norm=True``,
``lipschitz=alpha`` and softplus of sharpness
:func:`~measureflow.generative.gan.nets.softplus_sharpness`); the third is
:func:`rkhs_penalty`. Their experiment uses the learning rate gamma_0 = 1 / (7 alpha + beta_2)
(:func:`theory_learning_rate`) and finds the best results for gamma / gamma_0 between about 1
and 10^3.

RKHS norm with random Fourier features (Rahimi & Recht 2007): with omega_j ~ N(0, I / s^2),
b_j ~ U[0, 2 pi], psi_j(x) = sqrt(2 / D) cos(omega_j . x + b_j), psi(x) . psi(y) -> k(x, y),
and a function h = sum_j w_j psi_j of the approximating RKHS has norm ||h||_H = ||w|| (for
D linearly independent features). A critic network is not exactly of that form, so the penalty
fits it: (w, c) = argmin (1/n) sum_i (psi(x_i) . w + c - h(x_i))^2 + (lambda / D) |w|^2 on the
current batch (real and generated points), a D x D linear solve, and charges |w|^2 / (2 beta_2).
The intercept c is free: the games E_Q h - E_P h ignore the critic's constant part, which has no
finite norm for the Gaussian kernel and would otherwise dominate the penalty (its random-feature
norm is |w|^2 ~ 10 at D = 64). The fit is differentiable in h, so the critic is pushed towards
functions of small RKHS norm.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import Tensor, nn

from measureflow._core import check_count

__all__ = ["RandomFourierFeatures", "Stability", "parse_stability", "rkhs_norm_squared", "rkhs_penalty",
           "theory_learning_rate"]


def _positive(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or value <= 0:
        raise ValueError(f"{name} must be a finite positive number, got {value!r}")
    return float(value)


@dataclass(frozen=True)
class Stability:
    """The three constants of the stabilized critic, all > 0: ``alpha`` (Lipschitz), ``beta1``
    (smoothness), ``beta2`` (RKHS penalty weight 1/(2 beta2)); the penalty's kernel
    ``bandwidth`` s in the units of the training data (``None``: the median pairwise distance of
    the data, resolved by :func:`~measureflow.generative.gan.train_gan`), the number of random
    features ``n_features`` and the fit's relative ``ridge``.

    The estimate is biased both ways: with few features the least-squares fit of a smooth h
    overfits, which inflates |w|^2; the ridge shrinks it; with many features a fit on n points
    can only lose norm. For h = sum_i a_i k(., c_i) in 2-D (exact norm a' K a, n = 512), the
    default D = 256, ridge = 0.1 came within about +-20% over feature draws; ridge 1e-3
    overstated it 2-8x at D = 64-256."""

    alpha: float
    beta1: float
    beta2: float
    bandwidth: float | None = None
    n_features: int = 256
    ridge: float = 0.1

    def __post_init__(self) -> None:
        for name in ("alpha", "beta1", "beta2", "ridge"):
            object.__setattr__(self, name, _positive(getattr(self, name), name))
        if self.bandwidth is not None:
            object.__setattr__(self, "bandwidth", _positive(self.bandwidth, "bandwidth"))
        check_count(self.n_features, "n_features")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def parse_stability(text: str) -> Stability:
    """``"alpha,beta1,beta2"`` (as on the command line) -> :class:`Stability`.

    >>> parse_stability("1,1,2").beta2
    2.0
    """
    parts = [part.strip() for part in str(text).split(",")]
    if len(parts) != 3:
        raise ValueError(f"the stability triple must be three numbers alpha,beta1,beta2, got {text!r}")
    try:
        values = [float(part) for part in parts]
    except ValueError:
        raise ValueError(f"the stability triple must be three numbers alpha,beta1,beta2, "
                         f"got {text!r}") from None
    bad = [f"{name}={value:g}" for name, value in zip(("alpha", "beta1", "beta2"), values, strict=True)
           if not (math.isfinite(value) and value > 0)]
    if bad:
        raise ValueError(f"every entry of the stability triple must be positive and finite, "
                         f"got {', '.join(bad)}")
    return Stability(*values)


def theory_learning_rate(stability: Stability, n_points: int = 1) -> float:
    """gamma_0 = 1 / (7 alpha + beta_2), the learning rate of Chu, Minami & Fukumizu's experiment,
    times ``n_points``.

    It is the step of gradient descent on each generated point (their generator is N points).
    :func:`~measureflow.generative.gan.train_gan` minimizes a batch mean, whose gradient moves a
    point by about lr / N per step, so a particle generator of ``n_points`` = N points needs
    lr = N gamma_0 for the paper's per-point step (the default N = 1 gives gamma_0 itself). The
    constant 7 alpha stands for their beta_1 term; for a critic whose gradient is beta_1-Lipschitz
    and a kernel of bandwidth s, L = beta_1 + beta_2 / s^2 per point. The theory is about gradient
    descent: pair it with ``optimizer="sgd"`` (with Adam it is only a scale).

    >>> theory_learning_rate(Stability(1.0, 1.0, 3.0))
    0.1
    """
    check_count(n_points, "n_points")
    return n_points / (7 * stability.alpha + stability.beta2)


class RandomFourierFeatures(nn.Module):
    r"""psi(x) = sqrt(2 / D) cos(x Omega + b) ``(n, D)`` for x ``(n, d)`` (flattened rows), with
    Omega ``(d, D)`` ~ N(0, 1 / s^2) and b ~ U[0, 2 pi] drawn once from ``generator``, so that
    psi(x) . psi(y) is an unbiased estimate of exp(-|x - y|^2 / (2 s^2)) with variance O(1/D).

    >>> g = torch.Generator().manual_seed(0)
    >>> rff = RandomFourierFeatures(2, 4096, bandwidth=1.0, generator=g)
    >>> x = torch.tensor([[0.0, 0.0], [1.0, 0.0]])
    >>> k = rff(x) @ rff(x).T       # about exp(-1/2) = 0.61 off the diagonal
    >>> abs(float(k[0, 1]) - math.exp(-0.5)) < 0.05
    True
    """

    def __init__(self, dim: int, n_features: int, bandwidth: float = 1.0,
                 generator: torch.Generator | None = None, dtype: torch.dtype | None = None) -> None:
        super().__init__()
        check_count(dim, "dim")
        check_count(n_features, "n_features")
        bandwidth = _positive(bandwidth, "bandwidth")
        device = generator.device if generator is not None else None
        frequencies = torch.randn(dim, n_features, generator=generator, dtype=dtype, device=device)
        frequencies = frequencies / bandwidth
        phases = 2 * math.pi * torch.rand(n_features, generator=generator, dtype=dtype, device=device)
        self.register_buffer("frequencies", frequencies)
        self.register_buffer("phases", phases)

    def forward(self, x: Tensor) -> Tensor:
        x = x.reshape(x.shape[0], -1)
        if x.shape[1] != self.frequencies.shape[0]:
            raise ValueError(f"x has {x.shape[1]} coordinates per row, the features were drawn for "
                             f"{self.frequencies.shape[0]}")
        scale = math.sqrt(2.0 / self.frequencies.shape[1])
        return scale * torch.cos(x.to(self.frequencies.dtype) @ self.frequencies + self.phases)


def rkhs_norm_squared(values: Tensor, features: Tensor, ridge: float = 0.1) -> Tensor:
    r"""|w|^2 for the ridge fit (w, c) = argmin (1/n)|Psi w + c - h|^2 + (ridge / D)|w|^2 of the
    function values ``values`` ``(n,)`` on random features ``features`` Psi ``(n, D)``, with a free
    intercept c: the RKHS norm^2, in the random-feature RKHS, of the fitted function up to a
    constant. Differentiable in ``values``.

    >>> g = torch.Generator().manual_seed(0)
    >>> psi = torch.randn(500, 8, generator=g, dtype=torch.float64)
    >>> w = torch.arange(8, dtype=torch.float64)
    >>> round(float(rkhs_norm_squared(psi @ w, psi, ridge=1e-9)), 4)   # |w|^2 = 140
    140.0
    """
    if values.dim() != 1 or features.dim() != 2 or features.shape[0] != values.shape[0]:
        raise ValueError(f"values (n,) and features (n, D) must agree in n, got {tuple(values.shape)} and "
                         f"{tuple(features.shape)}")
    n, n_features = features.shape
    # The free intercept: centring both sides removes c from the least-squares problem.
    values = values.to(features.dtype)
    values = values - values.mean()
    features = features - features.mean(dim=0)
    gram = features.T @ features / n
    gram = gram + (_positive(ridge, "ridge") / n_features) * torch.eye(n_features, dtype=gram.dtype,
                                                                         device=gram.device)
    w = torch.linalg.solve(gram, features.T @ values / n)
    return (w * w).sum()


def rkhs_penalty(values: Tensor, points: Tensor, features: RandomFourierFeatures,
                 stability: Stability) -> Tensor:
    """||h||_H^2 / (2 beta_2) for critic ``values`` ``(n,)`` at ``points`` ``(n, ...)`` (see the
    module docstring)."""
    return rkhs_norm_squared(values, features(points), stability.ridge) / (2 * stability.beta2)
