r"""What every inference method shares: the result type, the simulation budget, the observation check
and the standardized coordinates the neural methods learn in.

A method is a function

    method(simulator, observation, budget, *, n_samples=10_000, generator=None, progress=False,
           device="cpu", **options) -> PosteriorResult

that spends at most ``budget`` simulator calls (one call = one parameter row simulated) and returns
``n_samples`` draws of (an approximation of) p(theta | y_obs). Parameters are drawn from the
simulator's prior; rows whose simulation failed (NaN rows) are dropped and counted, never fed to a
network or a distance.

Coordinates. Neural methods learn in unconstrained, standardized coordinates: ``u = log theta``
for a positive (log-normal) prior, ``theta`` otherwise (:meth:`ParameterMap`); observations through
``simulator.observation_features`` (``log y`` for Lotka-Volterra, whose noise is log-normal);
both then centred and scaled by the training set's mean and standard deviation
(:class:`Standardizer`). Samples are mapped back to theta before they are returned.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch
from torch import Tensor

from measureflow._core import as_tensor, check_count, progress_bar
from measureflow.inference.simulators import LogNormalPrior, Simulator

__all__ = [
    "AmortizedPosterior",
    "PosteriorResult",
    "Standardizer",
    "Timer",
    "check_budget",
    "check_observation",
    "check_output_finite",
    "from_unconstrained",
    "log_prior_unconstrained",
    "simulate_budget",
    "to_unconstrained",
]


class AmortizedPosterior(Protocol):
    """A posterior estimate that samples any observation without retraining."""

    def sample(self, observation: Tensor, n: int, generator: torch.Generator | None = None) -> Tensor:
        """``n`` draws of theta ``(n, p)`` given one observation ``(d_y,)``."""
        ...


@dataclass(frozen=True)
class PosteriorResult:
    """Draws ``theta`` ``(n_samples, p)`` (float64, CPU) of the posterior given ``observation``
    ``(d_y,)``, from ``method``.

    ``n_simulations`` simulator calls were spent, of which ``n_valid`` gave finite data (0 for a
    method that uses the likelihood instead, such as MCMC); ``amortized`` says whether ``estimator``
    can sample another observation without new simulations or training; ``details`` holds the
    method's diagnostics (JSON-safe: ABC's tolerance and acceptance rate, MCMC's R-hat and ESS, a
    training loss history...).
    """

    theta: Tensor
    observation: Tensor
    method: str
    n_simulations: int
    n_valid: int
    amortized: bool
    wall_time: float
    details: dict[str, Any] = field(default_factory=dict)
    estimator: AmortizedPosterior | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe summary: the method, budget, timings, posterior mean and sd per parameter, details."""
        mean = self.theta.mean(0)
        sd = self.theta.std(0) if self.theta.shape[0] > 1 else torch.zeros_like(mean)
        return {
            "method": self.method,
            "amortized": self.amortized,
            "n_samples": int(self.theta.shape[0]),
            "n_simulations": self.n_simulations,
            "n_valid_simulations": self.n_valid,
            "wall_time_s": round(self.wall_time, 3),
            "observation": [float(v) for v in self.observation],
            "posterior_mean": [float(v) for v in mean],
            "posterior_sd": [float(v) for v in sd],
            "details": self.details,
        }


class Timer:
    """Wall time since construction: ``Timer().elapsed()`` in seconds."""

    def __init__(self) -> None:
        self.start = time.perf_counter()

    def elapsed(self) -> float:
        return time.perf_counter() - self.start


def check_budget(budget: Any, minimum: int = 2) -> int:
    """``budget`` as an int >= ``minimum`` (the number of simulator calls a method may spend)."""
    return check_count(budget, "budget", minimum=minimum)


def check_observation(simulator: Simulator, observation: Any) -> Tensor:
    """One observation as a float64 ``(d_y,)`` tensor: the right length, finite, and inside the
    simulator's support (positive for Lotka-Volterra, whose observations are log-normal); a
    ``(1, d_y)`` row is accepted. Raises ``ValueError`` saying what is wrong."""
    y = as_tensor(observation, "observation", dtype=torch.float64)
    if y.ndim == 2 and y.shape[0] == 1:
        y = y[0]
    d = simulator.observation_dim
    if y.ndim != 1 or y.shape[0] != d:
        raise ValueError(f"the observation must hold {d} values for {type(simulator).__name__}, "
                         f"got shape {tuple(y.shape)}")
    if not bool(torch.isfinite(y).all()):
        raise ValueError("the observation contains NaN or infinite values; all must be finite")
    support = simulator.observation_support
    if support == "positive" and not bool((y > 0).all()):
        raise ValueError(f"{type(simulator).__name__} observations are positive population counts; "
                         f"got {int((y <= 0).sum())} value(s) <= 0")
    if support == "nonnegative" and not bool((y >= 0).all()):
        raise ValueError(f"{type(simulator).__name__} observations are non-negative population counts; "
                         f"got {int((y < 0).sum())} negative value(s)")
    return y


def to_unconstrained(simulator: Simulator, theta: Tensor) -> Tensor:
    """``log theta`` for a log-normal prior (positive parameters), ``theta`` otherwise."""
    return torch.log(theta) if isinstance(simulator.prior, LogNormalPrior) else theta


def from_unconstrained(simulator: Simulator, u: Tensor) -> Tensor:
    """The inverse of :func:`to_unconstrained`."""
    return torch.exp(u) if isinstance(simulator.prior, LogNormalPrior) else u


def log_prior_unconstrained(simulator: Simulator, u: Tensor) -> Tensor:
    """Prior log density of ``u = to_unconstrained(theta)`` ``(n, p)``: ``log p(theta) + log|dtheta/du|``,
    i.e. ``log p(exp u) + sum_i u_i`` for a log-normal prior, ``log p(theta)`` otherwise."""
    log_prob = simulator.prior.log_prob(from_unconstrained(simulator, u))
    if isinstance(simulator.prior, LogNormalPrior):
        log_prob = log_prob + u.sum(-1)
    return log_prob


def simulate_budget(simulator: Simulator, budget: int, generator: torch.Generator | None = None, *,
                    chunk_size: int = 2_000, progress: bool = False,
                    prior_sample: Callable[[int, torch.Generator | None], Tensor] | None = None,
                    simulations: tuple[Tensor, Tensor] | None = None) -> tuple[Tensor, Tensor, int]:
    """``budget`` draws ``theta ~ prior`` (or ``prior_sample(n, generator)``) and their simulations,
    in chunks of ``chunk_size`` rows (each chunk one batched simulator call, with a progress bar).

    ``simulations=(theta, y)``: prior simulations made before (``(m, p)`` and ``(m, d_y)``, m >=
    ``budget``, rows drawn from the prior, as in sbi's ``append_simulations``); the first ``budget``
    rows are used instead of simulating, e.g. to compare methods on the same simulations.

    Returns ``(theta, y, n_failed)``: the rows whose simulation is finite, ``(n_valid, p)`` and
    ``(n_valid, d_y)`` float64, and the number of NaN rows dropped. All of theta is drawn first,
    then the chunks are simulated in order, so the result does not depend on ``chunk_size``
    except through the simulator's own noise stream (drawn chunk by chunk from ``generator``).
    """
    budget = check_budget(budget, minimum=1)
    check_count(chunk_size, "chunk_size")
    if simulations is not None:
        theta, y = _check_simulations(simulator, simulations, budget)
    else:
        draw = prior_sample if prior_sample is not None else simulator.prior.sample
        theta = draw(budget, generator)
        outputs = []
        with progress_bar(budget, "simulate", enabled=progress) as bar:
            for start in range(0, budget, chunk_size):  # chunks of rows, each simulated as one batch
                outputs.append(simulator.simulate(theta[start:start + chunk_size], generator))
                bar.update(min(chunk_size, budget - start))
        y = torch.cat(outputs)
    valid = torch.isfinite(y).all(-1) & torch.isfinite(theta).all(-1)
    n_failed = int((~valid).sum())
    return theta[valid], y[valid], n_failed


def _check_simulations(simulator: Simulator, simulations: Any, budget: int) -> tuple[Tensor, Tensor]:
    if not isinstance(simulations, (tuple, list)) or len(simulations) != 2:
        raise TypeError("simulations must be a pair (theta, y) of tensors")
    theta = as_tensor(simulations[0], "simulations' theta", dtype=torch.float64)
    y = as_tensor(simulations[1], "simulations' y", dtype=torch.float64)
    p, d = simulator.parameter_dim, simulator.observation_dim
    shapes_ok = theta.ndim == 2 and y.ndim == 2 and theta.shape[0] == y.shape[0]
    if not shapes_ok or theta.shape[1] != p or y.shape[1] != d:
        raise ValueError(f"simulations must be theta (m, {p}) and y (m, {d}) with the same m, got "
                         f"{tuple(theta.shape)} and {tuple(y.shape)}")
    if theta.shape[0] < budget:
        raise ValueError(f"the budget ({budget}) exceeds the {theta.shape[0]} simulations given")
    return theta[:budget], y[:budget]


class Standardizer:
    """``z = (x - mean) / sd`` per column, with mean and sd from the rows of a training set ``(n, k)``.

    Columns with zero spread keep sd = 1 (a constant feature stays constant instead of becoming NaN).
    """

    def __init__(self, x: Tensor) -> None:
        if x.ndim != 2 or x.shape[0] < 2:
            raise ValueError(f"need at least 2 training rows (n, k) to standardize, got {tuple(x.shape)}")
        self.mean = x.mean(0)
        sd = x.std(0)
        self.sd = torch.where(sd > 0, sd, torch.ones_like(sd))

    def forward(self, x: Tensor) -> Tensor:
        return (x - self.mean.to(x)) / self.sd.to(x)

    def inverse(self, z: Tensor) -> Tensor:
        return z * self.sd.to(z) + self.mean.to(z)

    @property
    def log_det(self) -> float:
        """``log |det dz/dx| = -sum log sd`` (densities in z map back to x by adding it)."""
        return -float(torch.log(self.sd).sum())


def check_output_finite(x: Tensor, what: str) -> Tensor:
    """``x`` unchanged if finite, else a ``ValueError`` naming ``what`` produced it (a trained network
    that returns NaN has diverged: its samples are not a posterior)."""
    if not bool(torch.isfinite(x).all()):
        raise ValueError(f"{what} produced NaN or infinite values; lower the learning rate or raise the "
                         "budget")
    return x


LOG_2PI = math.log(2.0 * math.pi)
