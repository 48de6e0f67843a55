"""Kernel Stein discrepancy: how far a sample is from a target known only through its score.

For a target p with score s_p = grad log p and the IMQ base kernel k(x, y) = (c^2 + |x - y|^2)^b
(b in (-1, 0)), the Stein kernel

    k_p(x, y) = s_p(x).s_p(y) k + s_p(x).grad_y k + s_p(y).grad_x k + tr(grad_x grad_y k)

has E_p k_p(x, .) = 0, so KSD^2(q) = E_{x, x' ~ q} k_p(x, x') vanishes at q = p and needs no
samples of p and no normalizing constant. With the IMQ kernel, KSD -> 0 implies weak convergence
for distantly dissipative targets (Gorham & Mackey, ICML 2017, Theorem 8): it is the quality
measure for biased samplers such as ULA and SGLD, whose stationary law is not p.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from measureflow._core import as_tensor, check_count, check_finite, check_particles, check_positive

__all__ = ["imq_stein_kernel", "ksd", "ksd_squared"]


def _scores(x: Tensor, score: Callable[[Tensor], Tensor] | Any) -> Tensor:
    values = score(x) if callable(score) else as_tensor(score, "score")
    if not isinstance(values, Tensor):
        raise TypeError(f"score(x) must return a tensor, got {type(values).__name__}")
    if values.shape != x.shape:
        raise ValueError(
            f"the scores must have the shape of x {tuple(x.shape)}, got {tuple(values.shape)}"
        )
    return check_finite(values.to(dtype=x.dtype, device=x.device), "score")


def _check_kernel_parameters(c: float, b: float) -> tuple[float, float]:
    c = check_positive(c, "c")
    b = float(b)
    if not -1 < b < 0:
        raise ValueError(f"the IMQ exponent b must lie in (-1, 0) (Gorham & Mackey's condition), got {b}")
    return c, b


def imq_stein_kernel(x: Tensor, sx: Tensor, y: Tensor, sy: Tensor, c: float = 1.0, b: float = -0.5) -> Tensor:
    """The Stein kernel matrix k_p(x_i, y_j) ``(n, m)`` of the IMQ kernel, given the scores.

    With r = x - y and u = c^2 + |r|^2 (d the dimension)::

        k_p = (s_x . s_y) u^b + 2b u^(b-1) r.(s_y - s_x) - 2bd u^(b-1) - 4b(b-1) u^(b-2) |r|^2

    >>> x = torch.zeros(1, 1)
    >>> imq_stein_kernel(x, x, x, x)  # -2bd at r = 0 with zero scores: 1
    tensor([[1.]])
    """
    d = x.shape[1]
    # Inner products instead of an (n, m, d) difference tensor: memory O(nm), not O(nmd).
    # r.(s_y - s_x) = x.s_y - x.s_x - y.s_y + s_x.y.
    sq = (x.square().sum(1)[:, None] + y.square().sum(1)[None, :] - 2 * x @ y.T).clamp(min=0)
    u = c**2 + sq
    cross = x @ sy.T + sx @ y.T - (x * sx).sum(1)[:, None] - (y * sy).sum(1)[None, :]
    return (
        (sx @ sy.T) * u**b
        + 2 * b * u ** (b - 1) * (cross - d)
        - 4 * b * (b - 1) * u ** (b - 2) * sq
    )


def ksd_squared(x: Any, score: Callable[[Tensor], Tensor] | Any, *, c: float = 1.0, b: float = -0.5,
                unbiased: bool = False, block_size: int = 512) -> Tensor:
    """KSD^2 of the sample ``x`` ``(n, d)`` against the target with score ``score``.

    ``score`` is a function ``(n, d) -> (n, d)`` (for a measureflow target at inverse
    temperature beta: ``lambda x: target.score(x, beta)``) or the score values at ``x``. The
    V-statistic (1/n^2) sum_{i, j} k_p(x_i, x_j) (``unbiased=False``, always >= 0) or the
    U-statistic (1/(n(n-1))) sum_{i != j} (unbiased for KSD^2, can be negative). Blocked over
    pairs: memory O(block_size^2). Returns a scalar in x's dtype.

    >>> x = torch.randn(500, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    >>> abs(float(ksd_squared(x, lambda z: -z, unbiased=True))) < 0.01
    True
    """
    x = check_particles(x, "x")
    c, b = _check_kernel_parameters(c, b)
    scores = _scores(x, score)
    n = x.shape[0]
    if unbiased and n < 2:
        raise ValueError("the unbiased KSD^2 needs at least 2 points; use unbiased=False")
    block_size = check_count(block_size, "block_size")
    total = torch.zeros((), dtype=torch.float64, device=x.device)
    for i0 in range(0, n, block_size):
        i1 = min(i0 + block_size, n)
        # The Stein kernel is symmetric: blocks above the diagonal count twice.
        for j0 in range(i0, n, block_size):
            j1 = min(j0 + block_size, n)
            block = imq_stein_kernel(x[i0:i1], scores[i0:i1], x[j0:j1], scores[j0:j1], c, b)
            if j0 == i0 and unbiased:
                block.fill_diagonal_(0.0)
            total += (1 if j0 == i0 else 2) * block.sum(dtype=torch.float64)
    value = total / (n * (n - 1)) if unbiased else total / n**2
    return value.to(x.dtype)


def ksd(x: Any, score: Callable[[Tensor], Tensor] | Any, *, c: float = 1.0, b: float = -0.5,
        block_size: int = 512) -> Tensor:
    """IMQ kernel Stein discrepancy sqrt(V-statistic of KSD^2) of ``x`` ``(n, d)`` against a score.

    The measure of sample quality of Gorham & Mackey (2017), with their default IMQ kernel
    k(x, y) = (c^2 + |x - y|^2)^b, c = 1, b = -1/2. Scale matters: c should be comparable to the
    target's length scale (rescale x and the score together otherwise). See ``ksd_squared``.

    >>> g = torch.Generator().manual_seed(0)
    >>> good = torch.randn(400, 1, generator=g); bad = 0.5 * torch.randn(400, 1, generator=g)
    >>> bool(ksd(good, lambda z: -z) < ksd(bad, lambda z: -z))
    True
    """
    return ksd_squared(x, score, c=c, b=b, block_size=block_size).clamp(min=0).sqrt()
