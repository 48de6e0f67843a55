"""Maximum mean discrepancy: estimators, the witness function and the permutation test.

MMD^2(P, Q) = E k(X, X') + E k(Y, Y') - 2 E k(X, Y) = ||m_P - m_Q||_H^2 for X, X' ~ P and
Y, Y' ~ Q, the squared RKHS distance between the kernel mean embeddings (Gretton et al., JMLR
2012). For a characteristic kernel (Gaussian, IMQ, Laplace) it is zero only when P = Q.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from measureflow._core import as_tensor, check_count, check_finite
from measureflow.metrics._validate import check_sample_pair
from measureflow.metrics.kernels import (
    _COMPILE_MIN_PAIRS,
    DEFAULT_BLOCK,
    RadialKernel,
    _bandwidths,
    kernel_matmul,
    make_kernel,
    pairwise_sum,
)

__all__ = ["MMDTestResult", "gaussian_mmd2", "mmd2", "mmd_test", "mmd_witness"]


def mmd2(x: Any, y: Any, kernel: str | RadialKernel = "gaussian",
         bandwidth: float | Sequence[float] | None = None, unbiased: bool = True, *,
         block_size: int = DEFAULT_BLOCK, generator: torch.Generator | None = None,
         compile: bool | None = None) -> Tensor:
    """Squared maximum mean discrepancy between the samples ``x`` ``(n, d)`` and ``y`` ``(m, d)``.

    Unbiased (U-statistic, ``unbiased=True``; can be slightly negative)::

        1/(n(n-1)) sum_{i != i'} k(x_i, x_i') + 1/(m(m-1)) sum_{j != j'} k(y_j, y_j')
            - 2/(nm) sum_{i, j} k(x_i, y_j)

    or biased (V-statistic, the squared RKHS distance between the two empirical embeddings,
    never negative; diagonal terms included). ``kernel`` is ``"gaussian"``
    exp(-|x-y|^2/(2h^2)), ``"imq"`` (1 + |x-y|^2/h^2)^(-1/2), ``"laplace"`` exp(-|x-y|/h),
    ``"energy"`` -|x-y| (then MMD^2 is the energy distance), or a ``RadialKernel``.
    ``bandwidth`` is h, a list of h (the kernel is the sum over them) or ``None`` for the
    median heuristic on the pooled sample (``median_bandwidth``, subsampled with ``generator``).

    Evaluated by blocks: memory O(block_size^2) whatever n and m, sums kept in float64 (in
    float32 the squared distances carry a relative rounding error of about 1e-7). ``compile``
    (default: from 10^8 pairs on) fuses each block's kernel and sum with ``torch.compile``.
    Returns a scalar in the inputs' dtype.

    >>> x = torch.tensor([[0.0], [1.0]]); y = torch.tensor([[0.0], [2.0]])
    >>> round(float(mmd2(x, y, bandwidth=1.0, unbiased=False)), 4)
    0.1967
    """
    x, y = check_sample_pair(x, y)
    if unbiased and min(x.shape[0], y.shape[0]) < 2:
        raise ValueError(f"the unbiased estimator needs at least 2 points in each sample, got "
                         f"{x.shape[0]} and {y.shape[0]}; use unbiased=False")
    k = make_kernel(kernel, bandwidth, x, y, generator)
    n, m = x.shape[0], y.shape[0]
    if compile is None:
        compile = max(n, m) ** 2 >= _COMPILE_MIN_PAIRS
    options = {"block_size": block_size, "compile": compile}
    xx = pairwise_sum(x, None, k, exclude_diagonal=unbiased, **options)
    yy = pairwise_sum(y, None, k, exclude_diagonal=unbiased, **options)
    xy = pairwise_sum(x, y, k, **options)
    if unbiased:
        value = xx / (n * (n - 1)) + yy / (m * (m - 1)) - 2 * xy / (n * m)
    else:
        value = xx / n**2 + yy / m**2 - 2 * xy / (n * m)
        value = value.clamp(min=0)  # a rounding-level negative V-statistic is zero
    return value.to(x.dtype)


def mmd_witness(x: Any, y: Any, at: Any, kernel: str | RadialKernel = "gaussian",
                bandwidth: float | Sequence[float] | None = None, *,
                block_size: int = DEFAULT_BLOCK, generator: torch.Generator | None = None) -> Tensor:
    """The witness function f(t) = (1/n) sum_i k(x_i, t) - (1/m) sum_j k(y_j, t) at points ``at``.

    f = m_P - m_Q is, up to the factor 1/MMD, the unit-norm RKHS function that attains the
    supremum in MMD = sup_{||f||_H <= 1} E_P f - E_Q f: positive where x is denser than y.
    ``x`` ``(n, d)``, ``y`` ``(m, d)``, ``at`` ``(p, d)`` -> ``(p,)``; note mean(f(x)) - mean(f(y))
    is the V-statistic MMD^2.

    >>> x = torch.zeros(1, 1); y = torch.ones(1, 1)
    >>> mmd_witness(x, y, torch.tensor([[-1.0], [2.0]]), bandwidth=1.0).sign().tolist()
    [1.0, -1.0]
    """
    x, y = check_sample_pair(x, y)
    at, _ = check_sample_pair(at, x, ("at", "x"))
    at = at.to(x.dtype)
    k = make_kernel(kernel, bandwidth, x, y, generator)
    options = {"dtype": x.dtype, "device": x.device}
    mean_x = kernel_matmul(at, x, k, torch.full((x.shape[0], 1), 1 / x.shape[0], **options),
                           block_size=block_size)
    mean_y = kernel_matmul(at, y, k, torch.full((y.shape[0], 1), 1 / y.shape[0], **options),
                           block_size=block_size)
    return (mean_x - mean_y)[:, 0]


@dataclass(frozen=True)
class MMDTestResult:
    """A permutation two-sample test: the statistic, its null draws and the p-value."""

    statistic: float
    p_value: float
    null_statistics: Tensor
    bandwidth: tuple[float, ...] | None
    kernel: str
    unbiased: bool

    def to_dict(self) -> dict[str, Any]:
        return {
            "statistic": self.statistic,
            "p_value": self.p_value,
            "n_permutations": int(self.null_statistics.numel()),
            "bandwidth": None if self.bandwidth is None else list(self.bandwidth),
            "kernel": self.kernel,
            "unbiased": self.unbiased,
        }


def mmd_test(x: Any, y: Any, kernel: str | RadialKernel = "gaussian",
             bandwidth: float | Sequence[float] | None = None, unbiased: bool = True,
             n_permutations: int = 500, *, block_size: int = DEFAULT_BLOCK,
             generator: torch.Generator | None = None) -> MMDTestResult:
    """Permutation test of H0: law(x) = law(y) with the MMD^2 statistic.

    Under H0 the pooled sample z = (x, y) is exchangeable, so relabelling it at random gives
    draws of the statistic's null distribution. With P permutations and b of them at least the
    observed value, p = (1 + b) / (1 + P), a valid p-value (P(p <= a) <= a under H0) for any P.

    All relabellings are scored in one pass over the kernel matrix, which is never stored: with
    the 0/1 membership matrix A ``(N, P)`` of the x-group, K A is formed by blocks and
    S_xx = a^T K a, S_xy = r . a - S_xx (r = K 1), S_yy = 1^T K 1 - S_xx - 2 S_xy per column.
    Cost O(N^2 P / block), memory O(N P + block^2). The bandwidth (median heuristic when
    ``None``) is fixed on the pooled sample once, so it is the same for every relabelling.

    >>> g = torch.Generator().manual_seed(0)
    >>> x = torch.randn(100, 2, generator=g); y = torch.randn(100, 2, generator=g) + 1.0
    >>> mmd_test(x, y, n_permutations=99, generator=g).p_value
    0.01
    """
    x, y = check_sample_pair(x, y)
    n_permutations = check_count(n_permutations, "n_permutations")
    n, m = x.shape[0], y.shape[0]
    if unbiased and min(n, m) < 2:
        raise ValueError("the unbiased statistic needs at least 2 points in each sample")
    k = make_kernel(kernel, bandwidth, x, y, generator)
    pooled = torch.cat([x, y])
    big_n = n + m
    # Column 0 is the observed labelling; the others are uniformly random relabellings.
    keys = torch.rand(n_permutations, big_n, generator=generator, device=generator.device if
                      generator is not None else "cpu").to(pooled.device)
    order = keys.argsort(dim=1)
    membership = torch.zeros(n_permutations + 1, big_n, dtype=pooled.dtype, device=pooled.device)
    membership[0, :n] = 1
    membership[1:].scatter_(1, order[:, :n], 1.0)
    columns = torch.cat([membership.T, torch.ones(big_n, 1, dtype=pooled.dtype, device=pooled.device)], 1)
    product = kernel_matmul(pooled, pooled, k, columns, block_size=block_size).double()
    a = columns[:, :-1].double()
    row_sums = product[:, -1]
    s_xx = (a * product[:, :-1]).sum(0)
    s_xy = row_sums @ a - s_xx
    s_yy = row_sums.sum() - s_xx - 2 * s_xy
    if unbiased:
        diagonal = k.at_zero
        stats = ((s_xx - n * diagonal) / (n * (n - 1)) + (s_yy - m * diagonal) / (m * (m - 1))
                 - 2 * s_xy / (n * m))
    else:
        stats = s_xx / n**2 + s_yy / m**2 - 2 * s_xy / (n * m)
    observed, null = stats[0], stats[1:]
    # Ties within rounding count as "at least as large": the conservative side.
    tolerance = 1e-12 * float(stats.abs().max())
    p_value = (1 + int((null >= observed - tolerance).sum())) / (1 + n_permutations)
    return MMDTestResult(
        statistic=float(observed), p_value=p_value, null_statistics=null.to(x.dtype),
        bandwidth=getattr(k, "bandwidth", None),
        kernel=kernel if isinstance(kernel, str) else type(k).__name__, unbiased=unbiased,
    )


def _gaussian_kernel_mean(mean: Tensor, cov: Tensor, h: float) -> Tensor:
    """E exp(-|Z|^2 / (2h^2)) for Z ~ N(mean, cov).

    Equal to det(I + cov/h^2)^(-1/2) exp(-mean^T (cov + h^2 I)^(-1) mean / 2).
    """
    eye = torch.eye(mean.shape[-1], dtype=mean.dtype, device=mean.device)
    shifted = cov + h**2 * eye
    quad = mean @ torch.linalg.solve(shifted, mean)
    log_det = torch.linalg.slogdet(eye + cov / h**2)[1]
    return torch.exp(-0.5 * quad - 0.5 * log_det)


def gaussian_mmd2(m1: Any, S1: Any, m2: Any, S2: Any, bandwidth: float | Sequence[float]) -> Tensor:
    """Population MMD^2 between N(m1, S1) and N(m2, S2) for the Gaussian kernel, in closed form.

    With X - X' ~ N(0, 2 S1), Y - Y' ~ N(0, 2 S2), X - Y ~ N(m1 - m2, S1 + S2) and
    E exp(-|Z|^2/(2h^2)) = det(I + C/h^2)^(-1/2) exp(-mu^T (C + h^2 I)^(-1) mu / 2) for
    Z ~ N(mu, C), MMD^2 = E k(X, X') + E k(Y, Y') - 2 E k(X, Y), summed over the bandwidths.

    >>> round(float(gaussian_mmd2(torch.zeros(1), torch.eye(1), torch.ones(1), torch.eye(1), 1.0)), 4)
    0.1773
    """
    m1 = check_finite(as_tensor(m1, "m1"), "m1")
    m2 = check_finite(as_tensor(m2, "m2"), "m2")
    dtype = torch.promote_types(m1.dtype, m2.dtype)
    m1, m2 = m1.to(dtype), m2.to(dtype)
    if m1.ndim != 1 or m1.shape != m2.shape:
        raise ValueError(f"m1 and m2 must be vectors of one length d, got {tuple(m1.shape)} and "
                         f"{tuple(m2.shape)}")
    d = m1.shape[0]
    covs = []
    for value, name in ((S1, "S1"), (S2, "S2")):
        cov = check_finite(as_tensor(value, name), name).to(dtype=dtype, device=m1.device)
        if cov.shape != (d, d):
            raise ValueError(f"{name} must have shape ({d}, {d}), got {tuple(cov.shape)}")
        covs.append(cov)
    zero = torch.zeros_like(m1)
    total = torch.zeros((), dtype=dtype, device=m1.device)
    for h in _bandwidths(bandwidth):
        total = total + (_gaussian_kernel_mean(zero, 2 * covs[0], h)
                         + _gaussian_kernel_mean(zero, 2 * covs[1], h)
                         - 2 * _gaussian_kernel_mean(m1 - m2, covs[0] + covs[1], h))
    return total
