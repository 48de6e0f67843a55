"""Divergences between densities given by their values on a common uniform grid.

Conventions shared by every function here:

- ``p`` and ``q`` hold density values at the cells of a uniform grid; the grid is the last axis
  when ``dx`` is a number (the spacing of a 1-D grid) and the last k axes when ``dx`` is a
  sequence of k spacings (a k-D grid, cell volume dx_1 ... dx_k).
- Leading (batch) dimensions broadcast, the grid dimensions must match exactly: ``p`` of shape
  ``(T, n)`` against ``q`` of shape ``(n,)`` gives ``(T,)`` (e.g. a Fokker-Planck solution over
  time against its stationary density). The result has the broadcast batch shape (0-d for one
  pair).
- Each density is normalized by its own mass sum(values) * cell volume before comparing, so
  unnormalized values (or values normalized by another quadrature rule) are accepted; a density
  of zero mass is an error.
- Integrals are the midpoint (cell) sums sum f * cell volume: for smooth densities that decay to
  zero inside the grid this is spectrally accurate (Euler-Maclaurin); kinks of |p - q| (total
  variation) cost O(dx^2).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from measureflow._core import as_tensor, check_positive
from measureflow.metrics._validate import check_density_pair

__all__ = [
    "chi2_grid",
    "hellinger_grid",
    "jensen_shannon_grid",
    "kl_grid",
    "total_variation_grid",
]


def _spacings(dx: Any) -> tuple[float, ...]:
    if isinstance(dx, (str, bytes)):
        raise TypeError(f"dx must be a number or a sequence of numbers (grid spacings), got {dx!r}")
    if isinstance(dx, (Tensor, np.ndarray)):
        dx = dx.flatten().tolist() if dx.ndim > 0 else dx.item()
    if isinstance(dx, Sequence) and not isinstance(dx, str):
        values = list(dx)
        if len(values) == 0:
            raise ValueError("dx is an empty sequence; give one spacing per grid axis")
        return tuple(check_positive(v, "dx") for v in values)
    return (check_positive(dx, "dx"),)


def _normalized_pair(p: Any, q: Any, dx: Any) -> tuple[Tensor, Tensor, tuple[int, ...], float]:
    """Validate, broadcast the batch dimensions and normalize; returns (p, q, grid axes, volume)."""
    spacings = _spacings(dx)
    k = len(spacings)
    p_t, q_t = as_tensor(p, "p"), as_tensor(q, "q")
    for tensor, name in ((p_t, "p"), (q_t, "q")):
        if tensor.ndim < k:
            raise ValueError(
                f"{name} has shape {tuple(tensor.shape)} but dx gives {k} grid axis/axes; the grid is "
                f"the last {k} axis/axes of p and q"
            )
    grid_p, grid_q = tuple(p_t.shape[p_t.ndim - k :]), tuple(q_t.shape[q_t.ndim - k :])
    if grid_p != grid_q:
        raise ValueError(
            f"p and q must be values on the same grid: their last {k} axis/axes have shapes {grid_p} "
            f"and {grid_q} (full shapes {tuple(p_t.shape)} and {tuple(q_t.shape)})"
        )
    try:
        batch = torch.broadcast_shapes(p_t.shape[: p_t.ndim - k], q_t.shape[: q_t.ndim - k])
    except RuntimeError:
        raise ValueError(
            f"the leading (batch) dimensions of p {tuple(p_t.shape[: p_t.ndim - k])} and q "
            f"{tuple(q_t.shape[: q_t.ndim - k])} do not broadcast"
        ) from None
    p_t, q_t = check_density_pair(p_t.expand(*batch, *grid_p), q_t.expand(*batch, *grid_q))
    volume = math.prod(spacings)
    axes = tuple(range(-k, 0))
    normalized = []
    for tensor, name in ((p_t, "p"), (q_t, "q")):
        mass = tensor.sum(axes, keepdim=True) * volume
        if bool((mass == 0).any()):
            raise ValueError(f"{name} has zero mass on the grid (all values 0) for at least one batch entry")
        normalized.append(tensor / mass)
    return normalized[0], normalized[1], axes, volume


def _xlogy_ratio(a: Tensor, b: Tensor) -> Tensor:
    """a log(a / b) with 0 log(0 / b) = 0 and a log(a / 0) = +inf for a > 0."""
    return torch.special.xlogy(a, a) - torch.special.xlogy(a, b)


def total_variation_grid(p: Any, q: Any, dx: float | Sequence[float]) -> Tensor:
    """Total variation distance TV(P, Q) = 1/2 int |p - q| in [0, 1], by the cell sum.

    ``p``, ``q``: density values ``(..., *grid)``; ``dx``: a spacing (1-D grid) or one per grid
    axis; batch dimensions broadcast (see the module docstring). Each density is normalized
    by its own mass. Quadrature error O(dx^2) from the kinks of |p - q|.

    >>> import torch
    >>> x = torch.linspace(-10, 10, 2001, dtype=torch.float64)
    >>> p, q = torch.exp(-x**2 / 2), torch.exp(-(x - 1)**2 / 2)
    >>> print(round(float(total_variation_grid(p, q, 0.01)), 4))  # 2 Phi(1/2) - 1
    0.3829
    """
    p, q, axes, volume = _normalized_pair(p, q, dx)
    return 0.5 * (p - q).abs().sum(axes) * volume


def kl_grid(p: Any, q: Any, dx: float | Sequence[float]) -> Tensor:
    """KL(P || Q) = int p log(p / q) in nats, by the cell sum, with 0 log 0 = 0.

    Returns +inf (for that batch entry) when p > 0 on a cell where q = 0: P is then not
    absolutely continuous with respect to Q on the grid. Shapes, ``dx`` and normalization as
    in :func:`total_variation_grid`.

    >>> import torch
    >>> x = torch.linspace(-10, 10, 2001, dtype=torch.float64)
    >>> p, q = torch.exp(-x**2 / 2), torch.exp(-(x - 1)**2 / 2)
    >>> print(round(float(kl_grid(p, q, 0.01)), 4), float(kl_grid(p, q * (x > 0), 0.01)))
    0.5 inf
    """
    p, q, axes, volume = _normalized_pair(p, q, dx)
    return _xlogy_ratio(p, q).sum(axes) * volume


def hellinger_grid(p: Any, q: Any, dx: float | Sequence[float]) -> Tensor:
    """Hellinger distance H(P, Q) = sqrt(1/2 int (sqrt p - sqrt q)^2), normalized to lie in [0, 1].

    With the factor 1/2, H^2 = 1 - int sqrt(p q) (one minus the Bhattacharyya coefficient); the
    difference form is summed because it keeps its digits when P ~ Q. Shapes, ``dx`` and
    normalization as in :func:`total_variation_grid`.

    >>> import torch
    >>> x = torch.linspace(-10, 10, 2001, dtype=torch.float64)
    >>> p, q = torch.exp(-x**2 / 2), torch.exp(-(x - 1)**2 / 2)
    >>> print(round(float(hellinger_grid(p, q, 0.01)), 4))  # sqrt(1 - exp(-1/8))
    0.3428
    """
    p, q, axes, volume = _normalized_pair(p, q, dx)
    return (0.5 * (p.sqrt() - q.sqrt()).square().sum(axes) * volume).sqrt()


def jensen_shannon_grid(p: Any, q: Any, dx: float | Sequence[float]) -> Tensor:
    """Jensen-Shannon divergence JS = 1/2 KL(P || M) + 1/2 KL(Q || M), M = (P + Q)/2, in nats.

    Always finite, symmetric, in [0, log 2] (the divergence, not its square root, the JS
    distance). Shapes, ``dx`` and normalization as in :func:`total_variation_grid`.

    >>> import torch
    >>> x = torch.linspace(-10, 10, 2001, dtype=torch.float64)
    >>> p, q = torch.exp(-x**2 / 2), torch.exp(-(x - 1)**2 / 2)
    >>> print(round(float(jensen_shannon_grid(p, q, 0.01)), 4))
    0.1114
    """
    p, q, axes, volume = _normalized_pair(p, q, dx)
    m = 0.5 * (p + q)
    return 0.5 * (_xlogy_ratio(p, m) + _xlogy_ratio(q, m)).sum(axes) * volume


def chi2_grid(p: Any, q: Any, dx: float | Sequence[float]) -> Tensor:
    """Pearson chi-square divergence chi2(P || Q) = int (p - q)^2 / q = int p^2 / q - 1.

    Cells with p = q = 0 contribute 0; +inf when p > 0 where q = 0. Not symmetric. Shapes,
    ``dx`` and normalization as in :func:`total_variation_grid`.

    >>> import torch
    >>> x = torch.linspace(-10, 10, 2001, dtype=torch.float64)
    >>> p, q = torch.exp(-x**2 / 2), torch.exp(-(x - 1)**2 / 2)
    >>> print(round(float(chi2_grid(p, q, 0.01)), 4))  # exp(1) - 1 for a unit shift
    1.7183
    """
    p, q, axes, volume = _normalized_pair(p, q, dx)
    difference = (p - q).square()
    # Decide on the supports, not on the squared difference, which underflows to 0 for a tiny p
    # where q = 0 (that cell still makes the divergence infinite).
    outside = torch.where(p > 0, torch.full_like(p, math.inf), torch.zeros_like(p))
    terms = torch.where(q > 0, difference / q.clamp_min(torch.finfo(q.dtype).tiny), outside)
    return terms.sum(axes) * volume
