"""Validation shared by the estimators: pairs of samples, weights, grids of densities, Gaussians."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from measureflow._core import as_tensor, check_finite, check_particles

__all__ = ["check_density_pair", "check_gaussian", "check_sample_pair", "check_weights"]


def check_sample_pair(x: Any, y: Any, names: tuple[str, str] = ("x", "y")) -> tuple[Tensor, Tensor]:
    """Return ``x`` ``(n, d)`` and ``y`` ``(m, d)`` as finite tensors of one dtype on one device.

    Numpy input is accepted; the common dtype is the wider of the two floating dtypes (so a
    float64 reference is never silently rounded to float32).
    """
    x = check_particles(x, names[0])
    y = check_particles(y, names[1])
    if x.shape[1] != y.shape[1]:
        raise ValueError(
            f"{names[0]} and {names[1]} must have the same dimension d, got {names[0]} of shape "
            f"{tuple(x.shape)} and {names[1]} of shape {tuple(y.shape)}"
        )
    if x.device != y.device:
        raise ValueError(
            f"{names[0]} is on {x.device} and {names[1]} on {y.device}; move both to one device"
        )
    dtype = torch.promote_types(x.dtype, y.dtype)
    return x.to(dtype), y.to(dtype)


def check_weights(weights: Any, n: int, name: str, like: Tensor) -> Tensor:
    """Return non-negative ``weights`` ``(n,)`` normalized to sum 1 (uniform when ``None``)."""
    if weights is None:
        return torch.full((n,), 1.0 / n, dtype=like.dtype, device=like.device)
    w = as_tensor(weights, name).to(dtype=like.dtype, device=like.device)
    if w.shape != (n,):
        raise ValueError(f"{name} must have shape ({n},), one weight per sample, got {tuple(w.shape)}")
    check_finite(w, name)
    if bool((w < 0).any()):
        raise ValueError(f"{name} must be non-negative, got a minimum of {float(w.min()):.3g}")
    total = w.sum()
    if float(total) <= 0:
        raise ValueError(f"{name} sums to zero; at least one weight must be positive")
    return w / total


def check_density_pair(p: Any, q: Any, names: tuple[str, str] = ("p", "q")) -> tuple[Tensor, Tensor]:
    """Return two finite, non-negative density arrays of one shape (the same grid), common dtype."""
    p = check_finite(as_tensor(p, names[0]), names[0])
    q = check_finite(as_tensor(q, names[1]), names[1])
    if p.shape != q.shape:
        raise ValueError(
            f"{names[0]} and {names[1]} must be values on the same grid (same shape), got "
            f"{tuple(p.shape)} and {tuple(q.shape)}"
        )
    if p.numel() == 0:
        raise ValueError(f"{names[0]} and {names[1]} are empty; give density values on a grid")
    for tensor, name in ((p, names[0]), (q, names[1])):
        if bool((tensor < 0).any()):
            raise ValueError(f"{name} has negative values (minimum {float(tensor.min()):.3g}); "
                             "densities must be non-negative")
    if p.device != q.device:
        raise ValueError(f"{names[0]} is on {p.device} and {names[1]} on {q.device}; use one device")
    dtype = torch.promote_types(p.dtype, q.dtype)
    return p.to(dtype), q.to(dtype)


def check_gaussian(mean: Any, cov: Any, names: tuple[str, str] = ("mean", "cov"), *,
                   semidefinite: bool = True) -> tuple[Tensor, Tensor]:
    """Return a finite mean ``(..., d)`` and a symmetric covariance ``(..., d, d)`` of one dtype.

    The covariance must be square, ``d x d`` for the mean's ``d``, and symmetric to a relative
    tolerance ``sqrt(machine eps)`` of its largest entry (1.5e-8 in float64, 3.5e-4 in float32:
    loose enough for covariances computed as X^T X / n, tight enough to catch a wrong matrix); it
    is returned symmetrized, (S + S^T) / 2, because ``eigh`` and ``cholesky`` read one triangle
    only and would otherwise symmetrize it silently. With ``semidefinite=True`` its smallest
    eigenvalue must be above ``-sqrt(eps)`` times the largest entry (positive semi-definite up to
    rounding); pass ``False`` when the caller factorizes the matrix itself and reports a failure
    in its own terms (e.g. a Cholesky factorization that needs positive definiteness). Leading
    (batch) dimensions are not broadcast here; the two come back in their promoted dtype.
    """
    mean = check_finite(as_tensor(mean, names[0]), names[0])
    cov = check_finite(as_tensor(cov, names[1]), names[1])
    if mean.ndim < 1 or mean.shape[-1] == 0:
        raise ValueError(
            f"{names[0]} must have shape (..., d) with d >= 1, got {tuple(mean.shape)}; for d = 1 use "
            "shape (1,)"
        )
    d = mean.shape[-1]
    if cov.ndim < 2 or cov.shape[-2:] != (d, d):
        raise ValueError(
            f"{names[1]} must have shape (..., {d}, {d}), a square d x d matrix with d = {d} from "
            f"{names[0]} of shape {tuple(mean.shape)}, got {tuple(cov.shape)}"
        )
    if mean.device != cov.device:
        raise ValueError(f"{names[0]} is on {mean.device} and {names[1]} on {cov.device}; use one device")
    dtype = torch.promote_types(mean.dtype, cov.dtype)
    mean, cov = mean.to(dtype), cov.to(dtype)
    tolerance = math.sqrt(torch.finfo(dtype).eps)
    scale = cov.abs().amax().clamp_min(torch.finfo(dtype).tiny)
    asymmetry = (cov - cov.transpose(-1, -2)).abs().amax()
    if float(asymmetry) > tolerance * float(scale):
        raise ValueError(
            f"{names[1]} must be symmetric: max |S - S^T| = {float(asymmetry):.3g} for entries up to "
            f"{float(scale):.3g} (allowed relative asymmetry {tolerance:.1e})"
        )
    cov = 0.5 * (cov + cov.transpose(-1, -2))
    if semidefinite:
        lowest = torch.linalg.eigvalsh(cov).amin()
        if float(lowest) < -tolerance * float(scale):
            raise ValueError(
                f"{names[1]} must be positive semi-definite, got a smallest eigenvalue of "
                f"{float(lowest):.3g}"
            )
    return mean, cov
