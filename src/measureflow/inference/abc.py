r"""Approximate Bayesian computation: rejection ABC and SMC-ABC (adaptive population Monte Carlo).

Both methods accept a simulated parameter ``theta`` when its simulated data ``y`` lands close to the
observation ``y_obs``. Closeness is measured on features

    s(y) = summary(simulator.observation_features(y))        (n, d_y) -> (n, k)

(``summary=None``: the features themselves, e.g. ``log y``, 20 values, for Lotka-Volterra) by the
scaled Euclidean distance

    rho(y, y_obs) = || (s(y) - s(y_obs)) / scale ||_2,    scale_j = 1.4826 * MAD_j,

where ``MAD_j`` is the median absolute deviation of feature ``j`` over the prior-predictive
simulations (the standard deviation where the MAD is 0, and 1 where both are 0). Why standardize:
features live on different scales (Lotka-Volterra's log prey stay within a few units while log
predators range over decades down to the clamp at 1e-10), and an unscaled distance would be
dominated by the widest-spread coordinates, ignoring the others. Dividing by the prior-predictive
spread gives every coordinate equal weight a priori. Why the MAD: prior-predictive features have
heavy tails (clamped, exploding or collapsing populations), which inflate a standard deviation but
not the MAD (1.4826 MAD is the standard deviation for normal data). The scale is estimated once,
from the prior simulations, and kept fixed, so that tolerances are comparable across SMC rounds.

Whatever the method, the target is the ABC posterior at tolerance ``epsilon``,

    p_eps(theta | y_obs)  proportional to  p(theta) P(rho(y, y_obs) <= eps | theta),

which tends to p(theta | s(y_obs)) as eps -> 0 (and to p(theta | y_obs) when s is sufficient).
Neither method is amortized: a new observation means new simulations.

References: Pritchard, Seielstad, Perez-Lezaun & Feldman (1999), Mol. Biol. Evol. 16(12);
Beaumont, Cornuet, Marin & Robert (2009), Biometrika 96(4) (population Monte Carlo ABC);
Del Moral, Doucet & Jasra (2012), Stat. Comput. 22 (adaptive tolerances);
Lenormand, Jabot & Deffuant (2013), Comput. Stat. 28 (adaptive population Monte Carlo ABC, the
quantile rule with one batch of simulations per round used here).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from measureflow._core import check_count, progress_bar
from measureflow.inference.base import (
    LOG_2PI,
    PosteriorResult,
    Timer,
    check_budget,
    check_observation,
    from_unconstrained,
    log_prior_unconstrained,
    simulate_budget,
    to_unconstrained,
)
from measureflow.inference.simulators import Simulator

__all__ = ["rejection_abc", "smc_abc"]

Summary = Callable[[Tensor], Tensor]

#: 1 / Phi^{-1}(3/4): the MAD times this estimates the standard deviation of normal data.
_MAD_TO_SD = 1.482602218505602
#: Largest number of (new, parent) pairs held at once by the kernel-mixture denominator.
_PAIR_CHUNK = 4_000_000


# ---------------------------------------------------------------------------------------------------
# Validation and distances


def _check_quantile(value: Any, name: str = "quantile") -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number in (0, 1), got {value!r}") from None
    if isinstance(value, bool) or not 0.0 < number < 1.0:
        raise ValueError(f"{name} must lie strictly between 0 and 1, got {value!r}")
    return number


def _check_summary(summary: Any) -> Summary | None:
    if summary is not None and not callable(summary):
        raise TypeError(f"summary must be None or a callable (n, d_y) -> (n, k), "
                        f"got {type(summary).__name__}")
    return summary


def _check_device(device: Any) -> torch.device:
    try:
        resolved = torch.device(device)
    except (TypeError, RuntimeError):
        raise ValueError(f"device must be a torch device such as 'cpu' or 'cuda', got {device!r}") from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' was requested but CUDA is not available; use device='cpu'")
    return resolved


def _features(simulator: Simulator, summary: Summary | None, y: Tensor) -> Tensor:
    """``summary(simulator.observation_features(y))`` as float64 ``(n, k)``."""
    features = simulator.observation_features(y)
    if summary is not None:
        features = torch.as_tensor(summary(features))
        if features.ndim != 2 or features.shape[0] != y.shape[0]:
            raise ValueError(f"summary must map (n, d_y) to (n, k); for {y.shape[0]} rows it returned "
                             f"shape {tuple(features.shape)}")
    return features.to(torch.float64)


def _robust_scale(features: Tensor) -> Tensor:
    """Per-column ``1.4826 MAD`` of ``features`` ``(n, k)``; the sd where the MAD is 0, else 1."""
    median = features.median(0).values
    mad = _MAD_TO_SD * (features - median).abs().median(0).values
    sd = features.std(0) if features.shape[0] > 1 else torch.zeros_like(mad)
    scale = torch.where(mad > 0, mad, sd)
    return torch.where(scale > 0, scale, torch.ones_like(scale))


class _Distance:
    """``rho(y) = ||(s(y) - s(y_obs)) / scale||_2`` with the scale from prior-predictive features."""

    def __init__(self, simulator: Simulator, summary: Summary | None, observation: Tensor,
                 device: torch.device) -> None:
        self.simulator, self.summary, self.device = simulator, summary, device
        self.target = _features(simulator, summary, observation.unsqueeze(0))
        if not bool(torch.isfinite(self.target).all()):
            raise ValueError("summary(observation) is not finite; "
                             "fix the summary function or the observation")
        self.scale: Tensor | None = None

    def features(self, y: Tensor) -> tuple[Tensor, Tensor]:
        """Features ``(n, k)`` of ``y`` ``(n, d_y)`` and the mask ``(n,)`` of rows where they are finite
        (a summary can fail on data the simulator produced; such rows are dropped like NaN rows)."""
        features = _features(self.simulator, self.summary, y)
        if features.shape[1] != self.target.shape[1]:
            raise ValueError(f"summary returned {features.shape[1]} columns for simulations but "
                             f"{self.target.shape[1]} for the observation; it must return a fixed width")
        return features, torch.isfinite(features).all(-1)

    def fit_scale(self, features: Tensor) -> None:
        self.scale = _robust_scale(features)

    def __call__(self, features: Tensor) -> Tensor:
        """Distances ``(n,)`` of feature rows ``(n, k)`` to the observation's features."""
        if self.scale is None:
            raise RuntimeError("fit_scale must be called before distances are computed")
        z = (features.to(self.device) - self.target.to(self.device)) / self.scale.to(self.device)
        return torch.linalg.vector_norm(z, dim=-1).cpu()


def _resample(weights: Tensor | None, count: int, n_samples: int,
              generator: torch.Generator | None) -> Tensor:
    """``n_samples`` indices into ``count`` items, uniform (``weights=None``) or by ``weights``,
    with replacement."""
    if weights is None:
        return torch.randint(count, (n_samples,), generator=generator)
    return torch.multinomial(weights, n_samples, replacement=True, generator=generator)


# ---------------------------------------------------------------------------------------------------
# Rejection ABC


def rejection_abc(
    simulator: Simulator,
    observation: Any,
    budget: int,
    *,
    n_samples: int = 10_000,
    quantile: float | None = None,
    summary: Summary | None = None,
    generator: torch.Generator | None = None,
    progress: bool = False,
    device: str | torch.device = "cpu",
    simulations: tuple[Tensor, Tensor] | None = None,
) -> PosteriorResult:
    r"""Rejection ABC (Pritchard et al. 1999): draw ``budget`` pairs ``theta_i ~ p(theta)``,
    ``y_i ~ p(y | theta_i)``, and keep the ``n_accept`` parameters whose data are closest to the
    observation in the scaled distance ``rho`` of the module docstring.

    Rows whose simulation (or summary) is not finite are dropped and counted; of the ``n_valid``
    others, ``n_accept = max(2, ceil(quantile * n_valid))`` are kept. The tolerance ``epsilon`` is the
    largest accepted distance; the accepted set is an i.i.d. sample of the ABC posterior
    ``p_eps(theta | y_obs)`` at that tolerance (the k-nearest-neighbour form of ABC).

    Default ``quantile=None``: ``n_accept = max(2, round(sqrt(n_valid)))``, i.e. 32 of 10^3, 100 of
    10^4 (the usual 1% and sbibm's 100 accepted samples at that budget), 316 of 10^5. Why a square
    root: a fixed fraction never lets epsilon shrink as the budget grows (the ABC posterior stays
    biased), while a fixed count never lets the Monte Carlo error shrink; with ``n_accept -> inf``
    and ``n_accept / n_valid -> 0`` both vanish. The mean-square-optimal count grows as
    ``n^{4/(k+4)}`` for k summaries (Biau, Cerou & Guyader 2015), slower than sqrt(n) when k > 4: the
    square root errs on the side of more accepted draws, so that posterior spreads stay estimable.

    Returns ``n_samples`` draws made by resampling the accepted set uniformly with replacement: they
    hold at most ``n_accept`` distinct values (``details["n_distinct"]``), so their Monte Carlo error
    is that of ``n_accept`` draws, not ``n_samples``.

    ``observation`` ``(d_y,)``; ``summary`` an optional callable ``(n, d_y) -> (n, k)`` applied to
    ``simulator.observation_features(y)``; ``device`` is where distances are computed (simulations
    and returned draws stay on the CPU); ``simulations=(theta, y)`` reuses prior simulations (see
    :func:`~measureflow.inference.base.simulate_budget`). ``details``: ``epsilon``, ``n_accepted``,
    ``acceptance_rate``
    (``n_accepted / n_valid``, the fraction kept), ``n_failed``, ``n_distinct`` and the
    feature ``scale``.

    >>> from measureflow.inference import GaussianLinear
    >>> result = rejection_abc(GaussianLinear(dim=2), [0.5, -0.5], 2_000, n_samples=100,
    ...                        generator=torch.Generator().manual_seed(0))
    >>> result.theta.shape, result.details["n_accepted"]
    (torch.Size([100, 2]), 45)
    """
    timer = Timer()
    observation = check_observation(simulator, observation)
    budget = check_budget(budget)
    n_samples = check_count(n_samples, "n_samples")
    if quantile is not None:
        quantile = _check_quantile(quantile)
    summary = _check_summary(summary)
    distance = _Distance(simulator, summary, observation, _check_device(device))

    theta, y, n_failed = simulate_budget(simulator, budget, generator, progress=progress,
                                         simulations=simulations)
    features, finite = distance.features(y)
    theta, features = theta[finite], features[finite]
    n_failed += int((~finite).sum())
    n_valid = int(theta.shape[0])
    if n_valid < 2:
        raise ValueError(f"only {n_valid} of {budget} simulations gave finite data; ABC needs at least 2: "
                         f"raise the budget or check the simulator")
    distance.fit_scale(features)
    rho = distance(features)

    if quantile is None:
        n_accept = max(2, round(math.sqrt(n_valid)))
    else:  # the 1e-9 keeps 0.01 * 1000 = 10.000000000000002 from rounding up to 11
        n_accept = max(2, math.ceil(quantile * n_valid - 1e-9))
    n_accept = min(n_accept, n_valid)
    order = torch.argsort(rho, stable=True)[:n_accept]
    accepted = theta[order]
    epsilon = float(rho[order[-1]])

    index = _resample(None, n_accept, n_samples, generator)
    draws = accepted[index]
    details = {
        "epsilon": epsilon,
        "n_accepted": n_accept,
        "acceptance_rate": n_accept / n_valid,
        "n_failed": n_failed,
        "n_distinct": int(torch.unique(draws, dim=0).shape[0]),
        "distance": "euclidean on features scaled by 1.4826 MAD of the prior predictive",
        "scale": [float(v) for v in distance.scale],
    }
    return PosteriorResult(
        theta=draws.to(torch.float64).cpu(), observation=observation, method="abc",
        n_simulations=budget, n_valid=n_valid, amortized=False, wall_time=timer.elapsed(), details=details,
    )


# ---------------------------------------------------------------------------------------------------
# SMC-ABC


def _kernel_cholesky(u: Tensor, log_w: Tensor) -> Tensor:
    """Cholesky factor of ``2 * Cov_w(u)``, the weighted covariance of the particles ``u`` ``(n, p)``
    (Beaumont et al. 2009's optimal random-walk scale); a jitter is added if it is singular."""
    w = torch.softmax(log_w, 0)
    centred = u - w @ u
    cov = 2.0 * (centred * w[:, None]).T @ centred
    cov = 0.5 * (cov + cov.T)
    jitter = 1e-10 * float(torch.diagonal(cov).mean().clamp(min=1e-300))
    eye = torch.eye(u.shape[1], dtype=u.dtype)
    for _ in range(12):  # at most 1e-10 .. 1e1 times the mean variance
        chol, info = torch.linalg.cholesky_ex(cov)
        if int(info) == 0:
            return chol
        cov = cov + jitter * eye
        jitter *= 10.0
    raise ValueError("the SMC-ABC particles collapsed to a point (singular kernel covariance); "
                     "raise the population or the quantile")


def _log_kernel_mixture(u_new: Tensor, u_parent: Tensor, log_w_parent: Tensor, chol: Tensor,
                        device: torch.device) -> Tensor:
    r"""``log sum_j wbar_j N(u_new_i; u_parent_j, Sigma)`` ``(m,)`` with ``Sigma = chol chol^T`` and
    ``wbar`` the normalized weights: an ``(m, n)`` logsumexp, computed in row chunks of at most
    ``_PAIR_CHUNK`` pairs so that memory stays bounded for large populations."""
    chol_d = chol.to(device)
    # Whitening: |L^{-1}(a - b)|^2 = |L^{-1}a - L^{-1}b|^2, so one triangular solve per point.
    white_new = torch.linalg.solve_triangular(chol_d, u_new.to(device).T, upper=False).T
    white_parent = torch.linalg.solve_triangular(chol_d, u_parent.to(device).T, upper=False).T
    log_w = torch.log_softmax(log_w_parent.to(device), 0)
    p = u_new.shape[1]
    log_norm = -torch.log(torch.diagonal(chol_d)).sum() - 0.5 * p * LOG_2PI
    rows = max(1, _PAIR_CHUNK // max(1, u_parent.shape[0]))
    out = []
    for start in range(0, u_new.shape[0], rows):  # chunks of new particles, each against all parents
        sq = torch.cdist(white_new[start:start + rows], white_parent,
                         compute_mode="donot_use_mm_for_euclid_dist").square()
        out.append(torch.logsumexp(log_w - 0.5 * sq, dim=1) + log_norm)
    return torch.cat(out).cpu()


def _simulate_rows(simulator: Simulator, theta: Tensor, distance: _Distance,
                   generator: torch.Generator | None) -> tuple[Tensor, Tensor]:
    """One batched simulator call for the rows of ``theta`` ``(m, p)``: returns their features
    ``(m, k)`` and the mask ``(m,)`` of usable rows (finite parameter, data and features)."""
    index = torch.isfinite(theta).all(-1).nonzero().squeeze(1)  # exp(u) can overflow in the far tails
    features = torch.full((theta.shape[0], distance.target.shape[1]), math.nan, dtype=torch.float64)
    if index.numel() > 0:
        y = simulator.simulate(theta[index], generator)
        finite_y = torch.isfinite(y).all(-1)
        index, y = index[finite_y], y[finite_y]  # the summary only ever sees finite data
    if index.numel() > 0:
        rows, finite = distance.features(y)
        features[index] = rows
        index = index[finite]
    ok = torch.zeros(theta.shape[0], dtype=torch.bool)
    ok[index] = True
    return features, ok


def smc_abc(
    simulator: Simulator,
    observation: Any,
    budget: int,
    *,
    n_samples: int = 10_000,
    population: int | None = None,
    quantile: float = 0.5,
    summary: Summary | None = None,
    generator: torch.Generator | None = None,
    progress: bool = False,
    device: str | torch.device = "cpu",
) -> PosteriorResult:
    r"""SMC-ABC: population Monte Carlo ABC (Beaumont et al. 2009) with tolerances chosen adaptively
    as a quantile of the current distances (Del Moral et al. 2012; in the one-batch-per-round form
    of Lenormand et al. 2013), on the scaled distance ``rho`` of the module docstring.

    With ``N = population`` and ``K = max(2, floor(quantile * N))`` kept particles:

    1. Round 0: ``N`` draws from the prior, simulated in one batch; keep the ``K`` closest, with
       weights 1; ``epsilon_0`` = the largest kept distance. The distance scale is fitted here, on
       these prior-predictive features, and then fixed.
    2. Round t: draw ``N - K`` new particles in ``u = to_unconstrained(theta)`` coordinates: a parent
       ``j`` with probability ``wbar_j`` (normalized weights), then ``u ~ N(u_j, Sigma)`` with
       ``Sigma = 2 Cov_w(u)`` (twice the weighted covariance of the kept particles, Beaumont et al.'s
       choice). Simulate all of them in ONE batched call. Weight each
       ``w = p_u(u) / sum_j wbar_j N(u; u_j, Sigma)``, where ``p_u(u) = p(theta(u)) |dtheta/du|`` is
       the prior density of ``u``: ``log p(theta) + sum_i u_i`` for a log-normal prior (``u = log
       theta``, so positive parameters stay positive), ``log p(theta)`` otherwise. The denominator is
       an ``(N - K, K)`` logsumexp, chunked. Pool the ``K`` kept and the new particles (each keeps its
       own weight, an importance weight ``p_u / q`` on the same scale), and keep the ``K`` closest:
       ``epsilon_t`` = the largest kept distance = the ``quantile`` of the pooled ``N`` distances.
    3. Stop when the budget is spent; the last round simulates whatever is left (fewer than
       ``N - K`` new particles; it still keeps ``K``).

    The kept particles, weighted, approximate the ABC posterior at the final tolerance. Returns
    ``n_samples`` draws by multinomial resampling of them with the normalized weights: at most ``K``
    distinct values (``details["n_distinct"]``); their Monte Carlo error is about that of ``ess``
    independent draws.

    Default ``population``: ``budget // 10`` within [20, 5000] (and at most the budget), so that about
    ``9 / (1 - quantile)`` rounds follow round 0 (18 at the default quantile 0.5): enough rounds for
    the tolerance to shrink, enough particles for the weighted covariance and the final estimate, and
    few batched simulator calls (a batched ODE solve costs about as much as its hardest row, so many
    small rounds would be slow); the upper bound keeps each round's kernel matrix cheap.

    Pooling particles proposed in different rounds keeps every simulation that lands close, but
    their weights differ (a prior draw that survives weighs more than a late, concentrated
    proposal): the final ESS is often well below ``K`` (about 90 of 1000 on a 2-d Gaussian whose
    posterior sd is 1/20 of the prior's), which ``details["ess"]`` reports.

    Rows whose simulation or summary is not finite are dropped (counted in ``n_failed``; they spend
    budget). ``details``: ``epsilon`` (final), ``tolerances`` and ``simulations_per_round`` (round 0
    first), ``acceptance_rates`` (per round t >= 1: the fraction of the round's new simulations within
    ``epsilon_{t-1}``), ``ess`` of the final weights ``(sum w)^2 / sum w^2``, ``population``,
    ``n_kept``, ``n_failed``, ``n_distinct``, ``scale``.

    >>> from measureflow.inference import GaussianLinear
    >>> result = smc_abc(GaussianLinear(dim=2), [0.5, -0.5], 2_000, n_samples=100,
    ...                  generator=torch.Generator().manual_seed(0))
    >>> result.theta.shape, sum(result.details["simulations_per_round"])
    (torch.Size([100, 2]), 2000)
    """
    timer = Timer()
    observation = check_observation(simulator, observation)
    budget = check_budget(budget, minimum=3)
    n_samples = check_count(n_samples, "n_samples")
    quantile = _check_quantile(quantile)
    summary = _check_summary(summary)
    device_t = _check_device(device)
    if population is None:
        population = min(budget, max(20, min(budget // 10, 5_000)))
    population = check_count(population, "population", minimum=3)
    if population > budget:
        raise ValueError(f"population ({population}) exceeds the budget ({budget}); lower the population "
                         f"or raise the budget")
    n_keep = max(2, int(quantile * population))  # < population, since population >= 3 and quantile < 1
    distance = _Distance(simulator, summary, observation, device_t)

    tolerances: list[float] = []
    per_round: list[int] = []
    acceptance: list[float] = []
    n_failed = 0
    with progress_bar(budget, "smc-abc", enabled=progress) as bar:
        # Round 0: the prior, which also fixes the distance scale.
        theta0 = simulator.prior.sample(population, generator)
        features, ok = _simulate_rows(simulator, theta0, distance, generator)
        bar.update(population)
        n_failed += int((~ok).sum())
        if int(ok.sum()) < n_keep:
            raise ValueError(f"only {int(ok.sum())} of {population} prior simulations gave finite data, "
                             f"fewer than the {n_keep} particles to keep; raise the population or check "
                             f"the simulator")
        distance.fit_scale(features[ok])
        u = to_unconstrained(simulator, theta0[ok])
        rho = distance(features[ok])
        log_w = torch.zeros(u.shape[0], dtype=torch.float64)  # p / p: prior draws weigh 1
        keep = torch.argsort(rho, stable=True)[:n_keep]
        u, rho, log_w = u[keep], rho[keep], log_w[keep]
        tolerances.append(float(rho[-1]))
        per_round.append(population)
        spent = population

        while spent < budget:  # the loop is over rounds; each round is one batched simulation
            m = min(population - n_keep, budget - spent)
            chol = _kernel_cholesky(u, log_w)
            parent = torch.multinomial(torch.softmax(log_w, 0), m, replacement=True, generator=generator)
            noise = torch.randn((m, u.shape[1]), generator=generator, dtype=torch.float64)
            u_new = u[parent] + noise @ chol.T
            theta_new = from_unconstrained(simulator, u_new)
            features, ok = _simulate_rows(simulator, theta_new, distance, generator)
            bar.update(m)
            spent += m
            per_round.append(m)
            n_failed += int((~ok).sum())
            u_new, rho_new = u_new[ok], distance(features[ok])
            acceptance.append(float((rho_new <= tolerances[-1]).sum()) / m)
            log_w_new = log_prior_unconstrained(simulator, u_new) - _log_kernel_mixture(
                u_new, u, log_w, chol, device_t)
            pooled_u, pooled_rho = torch.cat((u, u_new)), torch.cat((rho, rho_new))
            pooled_log_w = torch.cat((log_w, log_w_new))
            keep = torch.argsort(pooled_rho, stable=True)[:n_keep]
            u, rho, log_w = pooled_u[keep], pooled_rho[keep], pooled_log_w[keep]
            tolerances.append(float(rho[-1]))

    weights = torch.softmax(log_w, 0)
    ess = float(1.0 / weights.square().sum())
    index = _resample(weights, n_keep, n_samples, generator)
    draws = from_unconstrained(simulator, u[index])
    details = {
        "epsilon": tolerances[-1],
        "tolerances": tolerances,
        "simulations_per_round": per_round,
        "acceptance_rates": acceptance,
        "n_rounds": len(per_round),
        "ess": ess,
        "population": population,
        "n_kept": n_keep,
        "quantile": quantile,
        "n_failed": n_failed,
        "n_distinct": int(torch.unique(index).shape[0]),
        "distance": "euclidean on features scaled by 1.4826 MAD of the prior predictive",
        "scale": [float(v) for v in distance.scale],
    }
    return PosteriorResult(
        theta=draws.to(torch.float64).cpu(), observation=observation, method="smc-abc",
        n_simulations=budget, n_valid=budget - n_failed, amortized=False, wall_time=timer.elapsed(),
        details=details,
    )
