r"""The Hilbert-Schmidt independence criterion (HSIC) and its gamma-approximation test.

For paired samples (x_i, y_i), i = 1..n, with kernel matrices K_ij = k(x_i, x_j) and
L_ij = l(y_i, y_j) and the centring matrix H = I - 11^T / n, the biased empirical HSIC
(Gretton et al., ALT 2005) is

    HSIC_b = (1/n^2) tr(K H L H) = (1/n^2) sum_ij (HKH)_ij (HLH)_ij,

the squared Hilbert-Schmidt norm of the empirical cross-covariance operator. With characteristic
kernels (the Gaussian kernel here) its population value is zero if and only if X and Y are
independent. The test (Gretton et al., NIPS 2008, "A kernel statistical test of independence")
refers n HSIC_b to a gamma distribution fitted by its null mean and variance.

Both functions form the n x n kernel matrices: O(n^2) memory and time (a few thousand points are
fine; at most ``MAX_POINTS``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from scipy import special
from torch import Tensor

from measureflow._core import as_tensor, check_positive
from measureflow.metrics.kernels import GaussianKernel, kernel_matrix, median_bandwidth

__all__ = ["HSICTestResult", "hsic", "hsic_test"]

# The null variance carries the factor (n - 4)(n - 5), which vanishes below 6 points.
MIN_POINTS = 6
# Each n x n float64 matrix takes 8 n^2 bytes: 800 MB at 10^4 points, and the test keeps four.
MAX_POINTS = 10_000


def _as_points(value: Any, name: str) -> Tensor:
    """``value`` ``(n,)`` or ``(n, d)`` as a finite float64 tensor ``(n, d)``."""
    tensor = as_tensor(value, name, dtype=torch.float64)
    if tensor.ndim == 1:
        tensor = tensor[:, None]
    if tensor.ndim != 2:
        raise ValueError(f"{name} must have shape (n,) or (n, d), got shape {tuple(tensor.shape)}")
    if not bool(torch.isfinite(tensor).all()):
        n_bad = int((~torch.isfinite(tensor)).sum())
        raise ValueError(f"{name} contains {n_bad} NaN or infinite value(s); drop those observations first")
    return tensor


def _check_pair(x: Any, y: Any) -> tuple[Tensor, Tensor]:
    x, y = _as_points(x, "x"), _as_points(y, "y")
    n = x.shape[0]
    if y.shape[0] != n:
        raise ValueError(f"x and y must hold the same number of observations (paired), got {n} and "
                         f"{y.shape[0]}")
    if n < MIN_POINTS:
        raise ValueError(f"the HSIC test needs at least {MIN_POINTS} paired observations, got {n}")
    if n > MAX_POINTS:
        raise ValueError(f"HSIC forms n x n kernel matrices and n = {n} exceeds {MAX_POINTS}; "
                         "subsample the pairs first")
    if x.device != y.device:
        raise ValueError(f"x is on {x.device} and y on {y.device}; move both to one device")
    return x, y


def _gram(points: Tensor, bandwidth: float | None, name: str) -> tuple[Tensor, float, float]:
    """The Gaussian kernel matrix ``(n, n)`` of ``points``, its bandwidth and k(z, z)."""
    if bandwidth is None:
        bandwidth = median_bandwidth(points)
    else:
        bandwidth = check_positive(bandwidth, f"bandwidth_{name}")
    kernel = GaussianKernel(bandwidth)
    return kernel_matrix(points, points, kernel), bandwidth, kernel.at_zero


def _centre(matrix: Tensor) -> Tensor:
    """H K H for symmetric K ``(..., n, n)``: subtract the row and column means, add the grand mean."""
    means = matrix.mean(-1)
    return matrix - means[..., None, :] - means[..., :, None] + means.mean(-1)[..., None, None]


def hsic(x: Any, y: Any, bandwidth_x: float | None = None, bandwidth_y: float | None = None) -> Tensor:
    r"""The biased HSIC statistic HSIC_b = (1/n^2) tr(K H L H) between paired samples.

    ``x`` ``(n,)`` or ``(n, d_x)``, ``y`` ``(n,)`` or ``(n, d_y)``; K and L are Gaussian kernel
    matrices k(a, b) = exp(-|a - b|^2 / (2 h^2)) with h = ``bandwidth_x`` (``bandwidth_y``), or
    the median heuristic (``median_bandwidth``) on each sample when ``None``. Returns a float64
    scalar, non-negative up to rounding (HKH and HLH are positive semi-definite). O(n^2) memory.

    >>> x = torch.tensor([0.0, 1.0, 2.0, 3.0, 4.0, 5.0])
    >>> round(float(hsic(x, x, 1.0, 1.0)), 4)  # (1/n^2) ||HKH||_F^2
    0.1324
    """
    x, y = _check_pair(x, y)
    gram_x, _, _ = _gram(x, bandwidth_x, "x")
    gram_y, _, _ = _gram(y, bandwidth_y, "y")
    n = x.shape[0]
    # tr(KHLH) = sum_ij (HKH)_ij L_ij: only one of the two needs centring.
    return (_centre(gram_x) * gram_y).sum() / n**2


@dataclass(frozen=True)
class HSICTestResult:
    """The HSIC test of independence with the gamma approximation to the null.

    ``statistic`` is HSIC_b; the test refers n * HSIC_b to Gamma(``shape``, ``scale``), whose mean
    ``shape * scale`` and variance ``shape * scale^2`` are the estimated null moments of n * HSIC_b.
    ``p_value`` = P(Gamma >= n * HSIC_b) and ``log_p_value`` its logarithm, computed without
    underflow (it stays finite where ``p_value`` rounds to 0).
    """

    statistic: float
    p_value: float
    log_p_value: float
    shape: float
    scale: float
    bandwidth_x: float
    bandwidth_y: float
    n: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "statistic": self.statistic,
            "p_value": self.p_value,
            "log_p_value": self.log_p_value,
            "shape": self.shape,
            "scale": self.scale,
            "bandwidth_x": self.bandwidth_x,
            "bandwidth_y": self.bandwidth_y,
            "n": self.n,
        }


def _log_gamma_sf(shape: float, x: float) -> float:
    """log Q(shape, x), Q the regularized upper incomplete gamma function, finite where Q underflows.

    Where ``gammaincc`` is representable its log is used; deep in the tail (x >> shape) the
    continued fraction Q(a, x) = x^a e^{-x} / Gamma(a) * 1 / (x + 1 - a - 1 (1 - a) / (x + 3 - a -
    ...)) is evaluated in log form by the modified Lentz method (Numerical Recipes, 6.2).
    """
    q = float(special.gammaincc(shape, x))
    if q > 1e-250:
        return math.log(q)
    tiny = 1e-300
    b = x + 1.0 - shape
    c = 1.0 / tiny
    d = 1.0 / b
    fraction = d
    for i in range(1, 1000):
        an = -i * (i - shape)
        b += 2.0
        d = an * d + b
        d = tiny if abs(d) < tiny else d
        c = b + an / c
        c = tiny if abs(c) < tiny else c
        d = 1.0 / d
        delta = d * c
        fraction *= delta
        if abs(delta - 1.0) < 1e-15:
            break
    return -x + shape * math.log(x) - float(special.gammaln(shape)) + math.log(fraction)


def _gamma_null(gram_x: Tensor, gram_y: Tensor, kappa_x: float,
                kappa_y: float) -> tuple[Tensor, Tensor, Tensor]:
    """HSIC_b and the gamma shape and scale of the null of n HSIC_b, from kernel matrices
    ``(..., n, n)`` (a batch of independent problems in the leading dimensions): each ``(...)``.
    The formulas are those of :func:`hsic_test`."""
    n = gram_x.shape[-1]
    centred_x, centred_y = _centre(gram_x), _centre(gram_y)
    product = centred_x * centred_y
    statistic = product.sum((-2, -1)) / n**2
    # Off-diagonal means of K and L; the diagonal of a Gaussian kernel matrix is kappa exactly.
    mu_x = (gram_x.sum((-2, -1)) - gram_x.diagonal(dim1=-2, dim2=-1).sum(-1)) / (n * (n - 1))
    mu_y = (gram_y.sum((-2, -1)) - gram_y.diagonal(dim1=-2, dim2=-1).sum(-1)) / (n * (n - 1))
    mean = (kappa_x - mu_x) * (kappa_y - mu_y)  # of n HSIC_b
    squares = product.square()
    offdiag = squares.sum((-2, -1)) - squares.diagonal(dim1=-2, dim2=-1).sum(-1)
    variance = (2.0 * (n - 4) * (n - 5) / ((n - 1) * (n - 2) * (n - 3))) * offdiag / (n - 1)  # of n HSIC_b
    return statistic, mean.square() / variance, variance / mean


def hsic_test(x: Any, y: Any, bandwidth_x: float | None = None,
              bandwidth_y: float | None = None) -> HSICTestResult:
    r"""Test X independent of Y with HSIC and the gamma approximation (Gretton et al. 2008).

    Under independence n HSIC_b converges to a weighted sum of chi^2_1 variables; it is
    approximated by a gamma distribution with the null mean and variance estimated from the
    kernel matrices. With K~ = HKH, L~ = HLH, kappa = k(z, z) (1 for the Gaussian kernel) and
    the off-diagonal kernel means mu_x = 1/(n(n-1)) sum_{i != j} K_ij, mu_y likewise:

        E[HSIC_b]   = (1/n) (kappa_x - mu_x) (kappa_y - mu_y)
        Var[HSIC_b] = 2 (n-4)(n-5) / (n(n-1)(n-2)(n-3)) * 1/(n(n-1)) sum_{i != j} (K~_ij L~_ij)^2

    (Gretton et al. 2008 and their hsicTestGamma.m; with kappa = 1 the first is their
    (1/n)(1 + mu_x mu_y - mu_x - mu_y)). For T = n HSIC_b, mean m = n E[HSIC_b] and variance
    v = n^2 Var[HSIC_b]; the gamma has shape m^2 / v and scale v / m, and the p-value is its
    survival function at T, Q(shape, T / scale). ``x``, ``y`` and the bandwidths are as in
    :func:`hsic` (median heuristic when ``None``); at least 6 observations (the variance needs
    n > 5), at most ``MAX_POINTS`` (O(n^2) memory: four n x n float64 matrices).

    >>> gen = torch.Generator().manual_seed(0)
    >>> x = torch.randn(200, generator=gen)
    >>> hsic_test(x, x**2).p_value < 1e-6
    True
    """
    x, y = _check_pair(x, y)
    n = x.shape[0]
    gram_x, h_x, kappa_x = _gram(x, bandwidth_x, "x")
    gram_y, h_y, kappa_y = _gram(y, bandwidth_y, "y")
    for gram, kappa, name, h in ((gram_x, kappa_x, "x", h_x), (gram_y, kappa_y, "y", h_y)):
        mu = (float(gram.sum()) - float(gram.diagonal().sum())) / (n * (n - 1))
        if kappa - mu <= 1e-12 * kappa:
            raise ValueError(f"the kernel matrix of {name} is constant at bandwidth {h:.3g} (all points "
                             "coincide on that scale), so independence cannot be tested; use a smaller "
                             "bandwidth or a non-constant variable")
    statistic, shape, scale = (float(v) for v in _gamma_null(gram_x, gram_y, kappa_x, kappa_y))
    if not (shape > 0 and scale > 0 and math.isfinite(shape) and math.isfinite(scale)):
        raise ValueError("the estimated null variance of HSIC is zero (a kernel matrix is rank one "
                         "after centring); use a smaller bandwidth or more distinct observations")
    threshold = max(n * statistic / scale, 0.0)  # HSIC_b >= 0; rounding can give -1e-18
    log_p = _log_gamma_sf(shape, threshold)
    return HSICTestResult(statistic=statistic, p_value=math.exp(log_p), log_p_value=log_p,
                          shape=shape, scale=scale, bandwidth_x=h_x, bandwidth_y=h_y, n=n)
