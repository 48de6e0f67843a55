"""Pieces shared by the grid solvers: validation, energies on the grid, Scharfetter-Gummel
coefficients, the split of output intervals into time steps, and figure writing.

Grid convention (the one of ``measureflow.metrics.kl_grid`` and ``wasserstein_1d_grid``): ``n``
equal cells on ``[lo, hi]``, spacing ``dx = (hi - lo) / n``, values at the cell centres
``lo + (i + 1/2) dx``; a density on the grid has ``sum(p) * dx = 1``.
"""

from __future__ import annotations

import copy
import math
import numbers
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import Tensor

from measureflow._core import as_tensor, check_positive

__all__: list[str] = []

DTYPE = torch.float64
# beta * L may vary by at most this much over the grid: exp(-600) ~ 1e-261 is still a normal
# double, so the Gibbs density and its logarithm are finite in every cell and nothing underflows
# in the Scharfetter-Gummel coefficients built from them.
MAX_ENERGY_RANGE = 600.0
# Logarithms of densities floor p at the smallest normal double (log = -708.4): an exact zero
# next to a positive cell would make the face's Fisher term +inf, but for t > 0 the semi-discrete
# solution is positive and zeros only come from underflow or clipped rounding noise.
TINY = torch.finfo(DTYPE).tiny


def check_beta(beta: Any) -> float:
    if isinstance(beta, bool):
        raise TypeError(f"beta must be a positive number (the inverse temperature), got {beta!r}")
    return check_positive(beta, "beta")


def check_cells(n: Any, name: str = "n") -> int:
    """A number of cells: an integer >= 3."""
    if isinstance(n, bool) or not isinstance(n, (numbers.Integral, np.integer)):
        raise TypeError(f"{name} must be an integer number of cells >= 3, got {n!r}")
    if int(n) < 3:
        raise ValueError(f"{name} must be an integer number of cells >= 3, got {n!r}")
    return int(n)


def check_interval(lo: Any, hi: Any, names: tuple[str, str] = ("lo", "hi")) -> tuple[float, float]:
    """Finite box edges with ``lo < hi``."""
    values = []
    for value, name in zip((lo, hi), names, strict=True):
        if isinstance(value, bool) or not isinstance(value, (numbers.Real, np.floating, np.integer)):
            if not (isinstance(value, Tensor) and value.numel() == 1):
                raise TypeError(f"{name} must be a real number (a box edge), got {value!r}")
        number = float(value)
        if not math.isfinite(number):
            raise ValueError(f"{name} must be finite, got {value!r}")
        values.append(number)
    if not values[0] < values[1]:
        raise ValueError(f"the box needs {names[0]} < {names[1]}, got {names[0]}={lo!r}, {names[1]}={hi!r}")
    return values[0], values[1]


def check_max_step(max_step: Any) -> float:
    if isinstance(max_step, bool):
        raise TypeError(f"max_step must be a positive number (the largest time step), got {max_step!r}")
    return check_positive(max_step, "max_step")


def check_times(times: Any) -> Tensor:
    """Output times: a finite, non-negative, non-decreasing ``(T,)`` float64 tensor, T >= 1."""
    if isinstance(times, numbers.Real) and not isinstance(times, bool):
        times = [times]
    tensor = as_tensor(times, "times", dtype=DTYPE).cpu()
    if tensor.ndim != 1 or tensor.shape[0] == 0:
        raise ValueError(
            f"times must be a non-empty 1-D sequence of times (T,), got shape {tuple(tensor.shape)}"
        )
    if not bool(torch.isfinite(tensor).all()):
        raise ValueError(f"times must be finite, got {tensor.tolist()}")
    if bool((tensor < 0).any()):
        raise ValueError(
            f"times must be non-negative (the start is t = 0), got minimum {float(tensor.min()):g}"
        )
    if tensor.shape[0] > 1 and bool((torch.diff(tensor) < 0).any()):
        k = int(torch.nonzero(torch.diff(tensor) < 0)[0])
        raise ValueError(
            f"times must be sorted (non-decreasing), got times[{k}] = {float(tensor[k]):g} > "
            f"times[{k + 1}] = {float(tensor[k + 1]):g}"
        )
    return tensor


def check_density(p0: Any, shape: tuple[int, ...], volume: float, name: str = "p0") -> Tensor:
    """Density values at the cell centres, finite and non-negative, normalized to sum * volume = 1."""
    tensor = as_tensor(p0, name, dtype=DTYPE).cpu()
    if tuple(tensor.shape) != shape:
        raise ValueError(
            f"{name} must hold one density value per cell, shape {shape}, got {tuple(tensor.shape)}"
        )
    if not bool(torch.isfinite(tensor).all()):
        raise ValueError(f"{name} contains NaN or infinite values; a density must be finite")
    if bool((tensor < 0).any()):
        raise ValueError(
            f"{name} has negative values (minimum {float(tensor.min()):.3g}); a density must be >= 0"
        )
    mass = float(tensor.sum()) * volume
    if not mass > 0:
        raise ValueError(f"{name} has zero mass on the grid (all values 0); it must have positive mass")
    return tensor / mass


def evaluate_energy(energy: Any, points: Tensor, name: str = "energy") -> Tensor:
    """``energy`` (a Target of the right dim, or a callable ``(m, d) -> (m,)``) at ``points``
    ``(m, d)`` in float64 on the CPU; checks the shape and finiteness of the values."""
    from measureflow.targets import Target  # targets sit below pde; imported here to keep startup light

    d = points.shape[1]
    if isinstance(energy, Target):
        if energy.dim != d:
            raise ValueError(f"{name} is a target of dimension {energy.dim}; this solver needs dimension {d}")
        # A float64 copy: converting the caller's module in place would change its dtype under it.
        target = copy.deepcopy(energy).to(device="cpu", dtype=DTYPE)
        function: Callable[[Tensor], Any] = target.energy
    elif callable(energy):
        function = energy
    else:
        raise TypeError(
            f"{name} must be a measureflow Target or a callable mapping (m, {d}) tensors to (m,), "
            f"got {type(energy).__name__}"
        )
    with torch.no_grad():
        values = function(points)
    if not isinstance(values, Tensor):
        raise TypeError(
            f"{name} must return a torch tensor of shape ({points.shape[0]},), got {type(values).__name__}"
        )
    if tuple(values.shape) != (points.shape[0],):
        raise ValueError(
            f"{name} must map points of shape (m, {d}) to values of shape (m,); for m = {points.shape[0]} "
            f"it returned shape {tuple(values.shape)}"
        )
    values = values.detach().to(device="cpu", dtype=DTYPE)
    if not bool(torch.isfinite(values).all()):
        k = int(torch.nonzero(~torch.isfinite(values))[0])
        raise ValueError(
            f"{name} returned a non-finite value {float(values[k])} at the cell centre "
            f"{points[k].tolist()}; it must be finite on the whole box"
        )
    return values


def check_energy_range(potential: Tensor, beta: float, name: str = "energy") -> None:
    spread = beta * float(potential.max() - potential.min())
    if spread > MAX_ENERGY_RANGE:
        raise ValueError(
            f"beta * {name} varies by {spread:.4g} over the grid (at most {MAX_ENERGY_RANGE:g} is allowed): "
            "exp(-beta L) would underflow in part of the box; narrow [lo, hi] or lower beta"
        )


def gibbs_density(potential: Tensor, beta: float, volume: float) -> Tensor:
    """exp(-beta L_i) / (sum_j exp(-beta L_j) * volume), the Gibbs density on the grid."""
    weights = torch.exp(-beta * (potential - potential.min()))
    return weights / (weights.sum() * volume)


def bernoulli(s: Tensor) -> Tensor:
    """B(s) = s / (e^s - 1), B(0) = 1: the Scharfetter-Gummel weight.

    The face flux between cells i and i+1 (spacing h, potential jump s = beta (L_{i+1} - L_i)) is
    J = (B(s) p_i - B(-s) p_{i+1}) / (beta h): it vanishes for p proportional to exp(-beta L)
    because B(-s) = e^s B(s). ``expm1`` keeps the digits for small s, B -> 0 for s -> +inf and
    B ~ -s for s -> -inf (upwinding at large cell Peclet numbers).
    """
    safe = torch.where(s == 0, torch.ones_like(s), s)
    return torch.where(s == 0, torch.ones_like(s), safe / torch.expm1(safe))


def symmetric_weight(s: Tensor) -> Tensor:
    """sqrt(B(s) B(-s)) = (s/2) / sinh(s/2): the off-diagonal of the symmetrized generator."""
    half = 0.5 * s
    safe = torch.where(half == 0, torch.ones_like(half), half)
    return torch.where(half == 0, torch.ones_like(half), safe / torch.sinh(safe))


def substeps(times: Tensor, max_step: float) -> list[tuple[int, float]]:
    """For each output time, the number of equal implicit steps from the previous one and their size.

    The interval before ``times[0]`` starts at 0. The count is ceil(interval / max_step) (a relative
    slack of 1e-12 keeps e.g. 0.1 / 0.01 from becoming 11 steps through rounding).
    """
    plan = []
    previous = 0.0
    for value in times.tolist():
        interval = value - previous
        if interval <= 0:
            plan.append((0, 0.0))
        else:
            count = max(1, math.ceil(interval / max_step * (1 - 1e-12)))
            plan.append((count, interval / count))
        previous = value
    return plan


def cell_centres(lo: float, hi: float, n: int) -> tuple[Tensor, float]:
    dx = (hi - lo) / n
    return lo + (torch.arange(n, dtype=DTYPE) + 0.5) * dx, dx


def pick_indices(count: int, at_most: int) -> list[int]:
    """Up to ``at_most`` indices spread evenly over ``range(count)``, first and last included."""
    if count <= at_most:
        return list(range(count))
    return sorted({round(k * (count - 1) / (at_most - 1)) for k in range(at_most)})


def plot_kl_curve(axis: Any, times: Tensor, kl: Tensor) -> None:
    """KL(p_t || Gibbs) against t on a log axis (the zero values, e.g. at equilibrium, left out)."""
    kl_values, time_values = kl.numpy(), times.numpy()
    positive = kl_values > 0
    axis.semilogy(time_values[positive], kl_values[positive], "k-", linewidth=1.3)
    axis.set_xlabel("t")
    axis.set_title("KL(p_t || Gibbs)")
