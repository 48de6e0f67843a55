r"""Shared pieces of the checks on two-layer networks (ntk-concentration, ntk-linear-convergence,
lazy-vs-active, landscape): points on the unit sphere, the regression target, and least-squares
log-log slopes with their standard errors. The training runs are the library's
(:func:`measureflow.nets.gradient_descent`).

"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from scipy import stats
from torch import Tensor

__all__ = ["SlopeFit", "least_squares_slope", "sphere_points", "teacher", "weighted_slope"]

# Two-sided false-alarm rate of each slope comparison; the critical value k follows from it.
FALSE_ALARM = 1e-3


def sphere_points(n: int, dim: int, generator: torch.Generator, device: str | torch.device) -> Tensor:
    """``n`` points drawn uniformly on the unit sphere of R^dim, float64 ``(n, dim)``."""
    draws = torch.randn(n, dim, generator=generator, dtype=torch.float64, device=device)
    return torch.nn.functional.normalize(draws, dim=1)


def teacher(x: Tensor) -> Tensor:
    """The regression target y = sin(pi x_1) ``(n,)``, smooth and non-linear on the sphere."""
    return torch.sin(math.pi * x[:, 0])


@dataclass(frozen=True)
class SlopeFit:
    """A fitted line log(value) = intercept + slope log(M) with the slope's standard error ``se``
    and the critical value ``critical`` (|slope - predicted| <= critical se passes)."""

    slope: float
    intercept: float
    se: float
    critical: float
    dof: int | None  # None: the normal law (known standard errors)

    def z(self, predicted: float) -> float:
        return (self.slope - predicted) / self.se

    def agrees(self, predicted: float) -> bool:
        return abs(self.z(predicted)) <= self.critical

    def to_dict(self) -> dict[str, float | int | None]:
        return {"slope": self.slope, "intercept": self.intercept, "se": self.se,
                "critical": self.critical, "dof": self.dof}


def least_squares_slope(log_width: Tensor, log_value: Tensor, weights: Tensor | None = None) -> SlopeFit:
    """Least squares over independent runs (one point per run, several runs per width).

    ``weights`` (default equal) are the inverse variances of the points up to a common factor
    sigma^2, which is estimated from the weighted residuals on N - 2 degrees of freedom; the SE
    is sqrt(sigma^2 / S_xx) with S_xx = sum_i w_i (x_i - x_w)^2, so (slope - true) / SE is
    Student-t(N - 2) when the scatter of log(value) about the line is Gaussian with variances
    sigma^2 / w_i (equal weights: a quantity C M^p with a random constant C); the critical value
    is its 1 - FALSE_ALARM / 2 quantile.
    """
    xs, ys = log_width.double().cpu(), log_value.double().cpu()
    w = torch.ones_like(xs) if weights is None else weights.double().cpu()
    n = xs.numel()
    x_mean = float((w * xs).sum() / w.sum())
    y_mean = float((w * ys).sum() / w.sum())
    sxx = float((w * (xs - x_mean).square()).sum())
    slope = float((w * (xs - x_mean) * (ys - y_mean)).sum()) / sxx
    intercept = y_mean - slope * x_mean
    residual = ys - intercept - slope * xs
    dof = n - 2
    se = math.sqrt(float((w * residual.square()).sum()) / dof / sxx)
    critical = float(stats.t.ppf(1 - FALSE_ALARM / 2, dof))
    return SlopeFit(slope=slope, intercept=intercept, se=se, critical=critical, dof=dof)


def weighted_slope(log_width: Tensor, log_value: Tensor, se: Tensor) -> SlopeFit:
    """Weighted least squares through points with known standard errors ``se`` (one point per width).

    Weights 1/se^2; the slope's SE is sqrt(1 / sum_i w_i (x_i - x_w)^2) with x_w the weighted mean
    of the x_i, and (slope - true) / SE is standard normal when each point's error is; the critical
    value is the normal 1 - FALSE_ALARM / 2 quantile.
    """
    xs, ys = log_width.double().cpu(), log_value.double().cpu()
    weights = se.double().cpu().pow(-2)
    x_mean = float((weights * xs).sum() / weights.sum())
    y_mean = float((weights * ys).sum() / weights.sum())
    sxx = float((weights * (xs - x_mean).square()).sum())
    slope = float((weights * (xs - x_mean) * (ys - y_mean)).sum()) / sxx
    critical = float(stats.norm.ppf(1 - FALSE_ALARM / 2))
    return SlopeFit(slope=slope, intercept=y_mean - slope * x_mean, se=math.sqrt(1 / sxx),
                    critical=critical, dof=None)
