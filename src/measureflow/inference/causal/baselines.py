r"""Three classical cause-effect methods in the interface of ``causal.base``: ANM, IGCI and RECI.

Each is ``method(x, y, *, generator=None, **options) -> DirectionResult`` with ``x`` and ``y`` of
shape ``(n,)``; the score is positive for X -> Y:

- ``anm_direction``: the additive noise model (Hoyer et al., NIPS 2008; Mooij et al., JMLR 2016):
  if Y = f(X) + E with E independent of X, the backward model X = g(Y) + E' generically fails.
  Regress each way, test the residual against the input with HSIC, prefer the direction whose
  residual looks more independent.
- ``igci_direction``: information-geometric causal inference (Daniusis et al., UAI 2010; Janzing
  et al., AIJ 2012) for near-deterministic invertible Y = f(X): if log f' is uncorrelated with the
  density of X, the cause has the larger entropy (after rescaling to the reference measure).
- ``reci_direction``: the regression error based causal inference of Bloebaum et al. (AISTATS
  2018): after rescaling both to [0, 1], the regression of the effect on the cause has the
  smaller mean squared error.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import torch
from torch import Tensor

from measureflow._core import check_count
from measureflow.inference.causal.base import (
    DirectionResult,
    check_pair,
    direction_of,
    standardize,
    subsample,
)
from measureflow.metrics.independence import hsic_test
from measureflow.metrics.kernels import GaussianKernel, kernel_matrix, median_bandwidth

__all__ = ["ANM_REGRESSORS", "IGCI_ESTIMATORS", "IGCI_REFERENCES", "RECI_REGRESSIONS",
           "anm_direction", "igci_direction", "reci_direction"]

ANM_REGRESSORS = ("gp", "kernel-ridge")
IGCI_ESTIMATORS = ("slope", "entropy")
IGCI_REFERENCES = ("uniform", "gaussian")
RECI_REGRESSIONS = ("polynomial", "monomial")

# Kernel ridge: bandwidths as multiples of the median heuristic and ridge penalties (on the scale
# of the kernel matrix, whose entries are <= 1), searched by exact leave-one-out error.
_RIDGE_BANDWIDTH_FACTORS = (0.25, 0.5, 1.0, 2.0)
_RIDGE_PENALTIES = tuple(10.0 ** (k / 2) for k in range(-12, 3))


def _choice(value: Any, name: str, choices: tuple[str, ...]) -> str:
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"unknown {name} {value!r}; choose one of {', '.join(choices)}")
    return value


# --------------------------------------------------------------------------------------------
# ANM


def _fit_gp(inputs: Tensor, targets: Tensor) -> tuple[Tensor, dict[str, float]]:
    """In-sample GP posterior mean of ``targets`` ``(n,)`` given ``inputs`` ``(n,)`` (both
    standardized) with the kernel c RBF(l) + white(s^2), hyperparameters by maximum marginal
    likelihood (scikit-learn; L-BFGS from c = 1, l = 1, s^2 = 0.1, no random restarts). Kernel,
    bounds and start are causal-learn's ANM's, so the two fits can be compared exactly."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.gaussian_process import GaussianProcessRegressor
    from sklearn.gaussian_process.kernels import RBF, ConstantKernel, WhiteKernel

    kernel = (ConstantKernel(1.0, (1e-3, 1e3)) * RBF(1.0, (1e-2, 1e2))
              + WhiteKernel(0.1, (1e-10, 1e1)))
    model = GaussianProcessRegressor(kernel=kernel, alpha=1e-10)
    features = inputs.numpy()[:, None]
    with warnings.catch_warnings():
        # A hyperparameter at its bound is a legitimate optimum here (a noiseless mechanism puts
        # the white noise at its floor); the fitted values are reported in the details instead.
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(features, targets.numpy())
    fitted = torch.as_tensor(model.predict(features), dtype=torch.float64)
    params = model.kernel_.get_params()
    return fitted, {"amplitude": float(params["k1__k1__constant_value"]),
                    "length_scale": float(params["k1__k2__length_scale"]),
                    "noise_variance": float(params["k2__noise_level"])}


def _fit_kernel_ridge(inputs: Tensor, targets: Tensor) -> tuple[Tensor, dict[str, float]]:
    """In-sample kernel ridge fit K (K + lam I)^-1 y with a Gaussian kernel, the bandwidth (a
    multiple of the median heuristic) and lam chosen by exact leave-one-out error.

    With K = U diag(s) U^T the hat matrix is S = U diag(s / (s + lam)) U^T and the leave-one-out
    residual is (y_i - (Sy)_i) / (1 - S_ii) (no refits): one eigendecomposition per bandwidth.
    Written here because scikit-learn's KernelRidge has no leave-one-out path and GridSearchCV
    would refit n times per candidate.
    """
    points = inputs[:, None]
    base = median_bandwidth(points)
    penalties = torch.tensor(_RIDGE_PENALTIES, dtype=torch.float64)
    best = (math.inf, None, None, None)
    for factor in _RIDGE_BANDWIDTH_FACTORS:
        eigenvalues, vectors = torch.linalg.eigh(kernel_matrix(points, points, GaussianKernel(base * factor)))
        eigenvalues = eigenvalues.clamp_min(0.0)
        shrink = eigenvalues / (eigenvalues + penalties[:, None])  # (p, n)
        projected = vectors.T @ targets  # (n,)
        fitted = (shrink * projected) @ vectors.T  # (p, n): S y for each penalty
        leverage = shrink @ vectors.square().T  # (p, n): the diagonal of S
        loo = ((targets - fitted) / (1 - leverage).clamp_min(1e-12)).square().mean(-1)
        index = int(loo.argmin())
        if float(loo[index]) < best[0]:
            best = (float(loo[index]), fitted[index], base * factor, float(penalties[index]))
    return best[1], {"bandwidth": best[2], "penalty": best[3], "loo_mse": best[0]}


_REGRESSORS = {"gp": _fit_gp, "kernel-ridge": _fit_kernel_ridge}


def anm_direction(x: Any, y: Any, *, regressor: str = "gp", max_points: int | None = 1000,
                  generator: torch.Generator | None = None) -> DirectionResult:
    r"""The additive noise model: which way does the residual look independent of the input?

    Both variables are standardized; y is regressed on x (``regressor``) and the in-sample
    residual r_y = y - f(x) is tested against x with :func:`~measureflow.metrics.hsic_test`
    (Gaussian kernels, median-heuristic bandwidths, gamma approximation), giving p_{X->Y};
    likewise x on y gives p_{Y->X}. The score is

        log p_{X->Y} - log p_{Y->X},

    positive when the X -> Y residual is the more independent one. The log p-values are exact
    logarithms of the gamma survival function (computed past the underflow of p itself), so no
    floor is needed: on long pairs where both directions are rejected the score still ranks them.

    ``regressor``: ``"gp"``, a Gaussian process with kernel c RBF(l) + white noise and
    hyperparameters by marginal likelihood (scikit-learn; O(n^3)), or ``"kernel-ridge"``, kernel
    ridge regression with bandwidth and penalty by exact leave-one-out error (torch; four
    eigendecompositions, several times faster). Pairs longer than ``max_points`` (``None``: no
    limit) are subsampled without replacement with ``generator`` (the global RNG when ``None``,
    as everywhere in measureflow: pass a generator for a reproducible subset).

    ``details``: the two p-values, log p-values and HSIC statistics, the number of points used
    and each fit's hyperparameters. ``fitted``: the standardized ``x``, ``y`` and the two fits
    ``y_given_x`` = f(x), ``x_given_y`` = g(y), each ``(n,)``.

    >>> gen = torch.Generator().manual_seed(0)
    >>> x = torch.rand(200, generator=gen) * 4 - 2
    >>> y = x**3 + torch.rand(200, generator=gen)
    >>> anm_direction(x, y, regressor="kernel-ridge").direction
    1
    """
    regressor = _choice(regressor, "regressor", ANM_REGRESSORS)
    if max_points is not None:
        max_points = check_count(max_points, "max_points", minimum=10)
    x, y = check_pair(x, y)
    x, y = subsample(x, y, max_points, generator)
    x, y = standardize(x), standardize(y)
    fit = _REGRESSORS[regressor]
    y_given_x, params_xy = fit(x, y)
    x_given_y, params_yx = fit(y, x)
    test_xy = hsic_test(x, y - y_given_x)
    test_yx = hsic_test(y, x - x_given_y)
    score = test_xy.log_p_value - test_yx.log_p_value
    details = {
        "regressor": regressor,
        "n_used": int(x.shape[0]),
        "p_value_xy": test_xy.p_value,
        "p_value_yx": test_yx.p_value,
        "log_p_value_xy": test_xy.log_p_value,
        "log_p_value_yx": test_yx.log_p_value,
        "hsic_xy": test_xy.statistic,
        "hsic_yx": test_yx.statistic,
        "fit_xy": params_xy,
        "fit_yx": params_yx,
    }
    fitted = {"x": x, "y": y, "y_given_x": y_given_x, "x_given_y": x_given_y}
    return DirectionResult("anm", direction_of(score), score, details, fitted)


# --------------------------------------------------------------------------------------------
# IGCI


def _to_reference(v: Tensor, reference: str) -> Tensor:
    if reference == "uniform":
        return (v - v.min()) / (v.max() - v.min())
    return standardize(v)


def _slope_sum(x: Tensor, y: Tensor) -> Tensor:
    """sum_i log |(y_(i+1) - y_(i)) / (x_(i+1) - x_(i))| over neighbours in the order of x,
    skipping pairs with a zero difference in x or y (ties), as the reference implementation does.
    The sort is stable, so tied x keep their input order (Matlab's sort, which igci.m uses)."""
    order = torch.sort(x, stable=True).indices
    dx, dy = x[order].diff(), y[order].diff()
    keep = (dx != 0) & (dy != 0)
    return (dy[keep].abs().log() - dx[keep].abs().log()).sum()


def _spacing_entropy(v: Tensor) -> Tensor:
    """The 1-spacing entropy estimate psi(n) - psi(1) + 1/(n-1) sum_i log(v_(i+1) - v_(i)) over the
    sorted sample, zero spacings (ties) left out of the sum but not of the 1/(n-1) (igci.m)."""
    n = v.shape[0]
    spacings = torch.sort(v).values.diff()
    spacings = spacings[spacings != 0]
    digamma = torch.special.digamma(torch.tensor([float(n), 1.0], dtype=torch.float64))
    return spacings.log().sum() / (n - 1) + digamma[0] - digamma[1]


def igci_direction(x: Any, y: Any, *, estimator: str = "slope", reference: str = "uniform",
                   generator: torch.Generator | None = None) -> DirectionResult:
    r"""Information-geometric causal inference for near-deterministic relations Y = f(X).

    Both variables are first mapped to the ``reference`` measure: ``"uniform"`` rescales each to
    [0, 1] (min-max), ``"gaussian"`` standardizes it. With the sample sorted by x (by y for the
    backward terms) and Janzing et al. (2012)'s estimators of C_{X->Y} = E log |f'(X)|:

    - ``"slope"``: C_{X->Y} = (1/n) sum_i log |(y_(i+1) - y_(i)) / (x_(i+1) - x_(i))|, C_{Y->X}
      the same with the roles swapped, pairs with a zero difference (ties) skipped;
    - ``"entropy"``: C_{X->Y} = H(Y) - H(X) = -C_{Y->X}, with the 1-spacing estimate
      H(V) = psi(n) - psi(1) + 1/(n-1) sum_i log(v_(i+1) - v_(i)) (zero spacings skipped).

    X -> Y is inferred when C_{X->Y} < C_{Y->X}. The score is minus the output f of the
    reference implementation (Mooij's igci.m, which cdt copies): for ``"slope"``
    C_{Y->X} - C_{X->Y}; for ``"entropy"`` H(X) - H(Y) = C_{Y->X} (igci.m does not double the
    entropy difference). The 1/n normalization of the slope sums also follows igci.m. Swapping x
    and y negates the score exactly. ``generator`` is accepted for the common interface (the
    method is deterministic). ``details``: the estimator, the reference and ``c_xy``, ``c_yx``.

    >>> x = torch.linspace(0.01, 1, 100)
    >>> igci_direction(x, x**3).direction  # an increasing convex f on uniform x: X -> Y
    1
    """
    estimator = _choice(estimator, "estimator", IGCI_ESTIMATORS)
    reference = _choice(reference, "reference", IGCI_REFERENCES)
    x, y = check_pair(x, y)
    x, y = _to_reference(x, reference), _to_reference(y, reference)
    n = x.shape[0]
    if estimator == "slope":
        c_xy, c_yx = float(_slope_sum(x, y)) / n, float(_slope_sum(y, x)) / n
        score = c_yx - c_xy
    else:
        entropy_x, entropy_y = float(_spacing_entropy(x)), float(_spacing_entropy(y))
        c_xy, c_yx = entropy_y - entropy_x, entropy_x - entropy_y
        score = c_yx
    details = {"estimator": estimator, "reference": reference, "c_xy": c_xy, "c_yx": c_yx}
    return DirectionResult("igci", direction_of(score), score, details)


# --------------------------------------------------------------------------------------------
# RECI


def _regression_mse(inputs: Tensor, targets: Tensor, degree: int, regression: str) -> float:
    """Mean squared in-sample residual of the least-squares fit of ``targets`` on the features
    (1, x, ..., x^degree) (``"polynomial"``) or (1, x^degree) (``"monomial"``), inputs in [0, 1]."""
    powers = range(degree + 1) if regression == "polynomial" else (0, degree)
    features = torch.stack([inputs**k for k in powers], dim=1)
    coefficients = torch.linalg.lstsq(features, targets[:, None], driver="gelsd").solution
    return float((targets - (features @ coefficients)[:, 0]).square().mean())


def reci_direction(x: Any, y: Any, *, degree: int = 3, regression: str = "polynomial",
                   generator: torch.Generator | None = None) -> DirectionResult:
    r"""Regression error based causal inference (Bloebaum et al., AISTATS 2018).

    Both variables are rescaled to [0, 1] (min-max). MSE(Y | X) is the mean squared residual of
    the least-squares regression of y on x, MSE(X | Y) the reverse. Bloebaum et al. show that
    under their assumptions (a near-deterministic, invertible mechanism, the cause's distribution
    chosen independently of it) the causal regression has the smaller error: X -> Y if
    MSE(Y | X) < MSE(X | Y). The score is

        MSE(X | Y) - MSE(Y | X).

    ``regression``: ``"polynomial"`` fits a polynomial of degree ``degree``; ``"monomial"`` the
    shifted monomial a x^degree + b, which is what cdt's RECI fits.
    ``generator`` is accepted for the common interface (the method is deterministic).
    ``details``: ``mse_xy`` = MSE(Y | X), ``mse_yx`` = MSE(X | Y), the regression and the degree.

    >>> x = torch.linspace(0, 1, 200)
    >>> reci_direction(x, torch.exp(3 * x), degree=1).direction
    1
    """
    regression = _choice(regression, "regression", RECI_REGRESSIONS)
    degree = check_count(degree, "degree")
    x, y = check_pair(x, y)
    x = (x - x.min()) / (x.max() - x.min())
    y = (y - y.min()) / (y.max() - y.min())
    mse_xy = _regression_mse(x, y, degree, regression)
    mse_yx = _regression_mse(y, x, degree, regression)
    score = mse_yx - mse_xy
    details = {"regression": regression, "degree": degree, "mse_xy": mse_xy, "mse_yx": mse_yx}
    return DirectionResult("reci", direction_of(score), score, details)
