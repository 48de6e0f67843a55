r"""Exact laws of a 1-D Markov chain with Gaussian steps, by its transfer operator on a grid.

The chain is

    X_{t+1} = m(X_t) + s xi_t,      xi_t ~ N(0, 1),

with a deterministic drift map m: R -> R and noise standard deviation s > 0 (for instance
gradient descent with noisy gradients, X - eta (L'(X) + sigma xi): m(x) = x - eta L'(x),
s = eta sigma). On the grid of the grid solvers (``n`` equal cells on ``[lo, hi]``, spacing
``dx``, centres ``lo + (i + 1/2) dx``) its transition kernel becomes the stochastic matrix

    P_ij = Phi((e_{j+1} - m(c_i)) / s) - Phi((e_j - m(c_i)) / s),

the exact Gaussian mass that cell j (edges e_j, e_{j+1}) receives from the centre c_i of cell
i, each row renormalized to 1 (the stationary-weighted mass sum_i pi_i (1 - row mass_i) sent
outside ``[lo, hi]`` is reported as ``escaped``: choose the box so that it is negligible). The
stationary law is the left eigenvector pi P = pi of eigenvalue 1, found by a dense linear solve
of (P^T - I) pi = 0 with one equation replaced by sum(pi) = 1 (unique for an irreducible P;
every P_ij > 0 up to
underflow, so P is irreducible when s is not tiny against the box). Errors: O(dx^2 / s^2 +
dx |m'| / s) from evaluating m only at the centres, plus ``escaped``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from measureflow._core import check_count, check_positive

__all__ = ["MarkovChainLaw1D", "chain_transition_matrix_1d", "stationary_law_1d"]

_DTYPE = torch.float64


@dataclass(frozen=True)
class MarkovChainLaw1D:
    """A law on the grid: ``x`` the cell centres (n,), ``density`` (n,) with sum(density) dx = 1,
    ``dx`` the spacing, ``escaped`` the mass per step that the kernel sent outside the box before
    renormalization, averaged over this law."""

    x: Tensor
    density: Tensor
    dx: float
    escaped: float

    @property
    def masses(self) -> Tensor:
        """Cell probabilities, density * dx (sum 1)."""
        return self.density * self.dx

    def probability(self, lower: float = -math.inf, upper: float = math.inf) -> float:
        """The mass of the cells whose centre lies in [lower, upper)."""
        inside = (self.x >= lower) & (self.x < upper)
        return float(self.masses[inside].sum())


def _grid(lo: float, hi: float, n_cells: int, device: str | torch.device) -> tuple[Tensor, Tensor, float]:
    for value, name in ((lo, "lo"), (hi, "hi")):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ValueError(f"{name} must be a finite number, got {value!r}")
    if not hi > lo:
        raise ValueError(f"hi must exceed lo, got lo = {lo!r}, hi = {hi!r}")
    n_cells = check_count(n_cells, "n_cells", minimum=2)
    dx = (hi - lo) / n_cells
    edges = torch.linspace(lo, hi, n_cells + 1, dtype=_DTYPE, device=device)
    return edges, (edges[:-1] + edges[1:]) / 2, dx


def chain_transition_matrix_1d(drift_map: Callable[[Tensor], Tensor], noise_std: float, lo: float,
                               hi: float, n_cells: int, *,
                               device: str | torch.device = "cpu") -> tuple[Tensor, Tensor, Tensor]:
    """(P, centres, escaped) of X' = m(X) + s xi on ``n_cells`` cells of [lo, hi] (see the module);
    ``escaped`` (n,) is the mass each row sent outside the box before renormalization.

    ``drift_map`` maps a float64 tensor of cell centres (n,) to m(centres) (n,); ``noise_std`` is
    s > 0. P is (n, n), rows summing to 1.
    """
    noise_std = check_positive(noise_std, "noise_std")
    if not callable(drift_map):
        raise TypeError(f"drift_map must be callable, got {type(drift_map).__name__}")
    edges, centres, _ = _grid(lo, hi, n_cells, device)
    mapped = torch.as_tensor(drift_map(centres), dtype=_DTYPE, device=centres.device)
    if mapped.shape != centres.shape:
        raise ValueError(f"drift_map must return shape {tuple(centres.shape)}, got {tuple(mapped.shape)}")
    if not bool(torch.isfinite(mapped).all()):
        raise ValueError("drift_map returned non-finite values on the grid")
    cumulative = torch.special.ndtr((edges[None, :] - mapped[:, None]) / noise_std)  # (n, n + 1)
    kernel = cumulative[:, 1:] - cumulative[:, :-1]
    row_mass = kernel.sum(1)
    if not bool((row_mass > 0).all()):
        raise ValueError("the drift map sends some cells entirely outside [lo, hi]; widen the box")
    escaped = (1 - row_mass).clamp_min(0)
    return kernel / row_mass[:, None], centres, escaped


def stationary_law_1d(drift_map: Callable[[Tensor], Tensor], noise_std: float, lo: float, hi: float,
                      n_cells: int, *, device: str | torch.device = "cpu") -> MarkovChainLaw1D:
    r"""The stationary law of X' = m(X) + s xi on ``n_cells`` cells of [lo, hi] (see the module).

    Solves pi (P - I) = 0, sum(pi) = 1 exactly (dense LU, O(n^3): n of a few thousand is fine).

    >>> law = stationary_law_1d(lambda x: 0.5 * x, 1.0, -8.0, 8.0, 400)
    >>> round(float((law.masses * law.x**2).sum()), 2)  # AR(1): variance 1 / (1 - 0.25)
    1.33
    """
    kernel, centres, escaped = chain_transition_matrix_1d(drift_map, noise_std, lo, hi, n_cells,
                                                          device=device)
    n = kernel.shape[0]
    system = kernel.T - torch.eye(n, dtype=_DTYPE, device=kernel.device)
    system[-1] = 1.0
    right = torch.zeros(n, dtype=_DTYPE, device=kernel.device)
    right[-1] = 1.0
    masses = torch.linalg.solve(system, right).clamp_min(0)
    masses = masses / masses.sum()
    dx = (hi - lo) / n_cells
    return MarkovChainLaw1D(x=centres, density=masses / dx, dx=dx, escaped=float((masses * escaped).sum()))
