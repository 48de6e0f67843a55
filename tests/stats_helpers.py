"""Shared helpers for the statistical tests.

Every statistical assertion compares an estimate with its Monte Carlo standard error (SE) and
fails beyond ``Z_MAX`` standard errors. With Z_MAX = 5 a correct implementation fails one
comparison with probability about 6e-7 (two-sided normal tail), so even the few hundred
comparisons of the suite give a false alarm less than once in a thousand runs; a bias of 5 SE
or more is detected. Seeds are fixed, so a run is reproducible.
"""

from __future__ import annotations

import torch

Z_MAX = 5.0


def assert_within_se(estimate, truth, standard_error, what: str, z_max: float = Z_MAX) -> None:
    """Fail when any |estimate - truth| exceeds ``z_max`` standard errors."""
    estimate, truth, standard_error = (
        torch.as_tensor(v, dtype=torch.float64) for v in (estimate, truth, standard_error)
    )
    z = (estimate - truth) / standard_error
    if bool((z.abs() > z_max).any()):
        raise AssertionError(
            f"{what}: estimate {estimate.tolist()} vs truth {truth.tolist()} is "
            f"{z.tolist()} standard errors off (allowed {z_max})"
        )


def mean_and_cov_se(draws: torch.Tensor, cov: torch.Tensor):
    """Standard errors of the sample mean and sample covariance of n independent Gaussian draws.

    For x ~ N(m, S): Var(mean_i) = S_ii / n and Var(cov_ij) ~= (S_ii S_jj + S_ij^2) / (n - 1).
    """
    n = draws.shape[0]
    diag = torch.diagonal(cov)
    mean_se = (diag / n).sqrt()
    cov_se = ((diag[:, None] * diag[None, :] + cov.square()) / (n - 1)).sqrt()
    return mean_se, cov_se



def double_well_moments(target, beta: float, half_width: float = 4.0) -> tuple[float, float]:
    """E[x^2] and E[x^4] of one coordinate of the double well's Gibbs measure, by the trapezoid
    rule on its exact normalized density (40,001 points: error far below any Monte Carlo SE)."""
    grid = torch.linspace(-half_width, half_width, 40001, dtype=torch.float64)
    density = target.density_1d(grid, beta)
    return (
        float(torch.trapezoid(grid.square() * density, grid)),
        float(torch.trapezoid(grid**4 * density, grid)),
    )
