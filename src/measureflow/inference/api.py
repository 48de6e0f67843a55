r"""One entry point for every inference method, the simulators by name, and posterior predictive draws.

    infer(simulator, observation, method="npe", budget=10_000, n_samples=10_000, seed=0) -> PosteriorResult

========== ========================================================== ==========
method     algorithm                                                  amortized
========== ========================================================== ==========
abc        rejection ABC (Pritchard et al. 1999)                       no
smc-abc    SMC-ABC / population Monte Carlo ABC (Beaumont et al. 2009) no
lfvi       likelihood-free VI with an f-GAN ratio critic (Tran 2017)   yes
mmd        conditional generator trained by MMD on the joint (GMMN)    yes
diffusion  conditional score-based diffusion posterior                 yes
npe        neural posterior estimation, zuko spline flow               yes
mcmc       MALA on the exact likelihood (the reference)                no
========== ========================================================== ==========

Amortized methods return ``result.estimator``, whose ``sample(y, n, generator)`` serves any other
observation without new simulations. ``mcmc`` needs ``simulator.has_likelihood`` and spends no
simulations (``budget`` does not apply to it).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from measureflow._core import check_count, make_generator
from measureflow.inference.abc import rejection_abc, smc_abc
from measureflow.inference.base import PosteriorResult
from measureflow.inference.diffusion import diffusion_posterior
from measureflow.inference.generators import lfvi, mmd_posterior
from measureflow.inference.mcmc import mcmc_posterior
from measureflow.inference.npe import npe
from measureflow.inference.simulators import GaussianLinear, LotkaVolterra, Simulator, StochasticLotkaVolterra

__all__ = ["DEFAULT_PARAMETERS", "METHODS", "SIMULATORS", "Method", "infer", "make_simulator",
           "observation_layout", "posterior_predictive"]


@dataclass(frozen=True)
class Method:
    """A method's entry: its function, whether it is amortized, whether it simulates (uses the budget)
    or evaluates the likelihood, and one line on what it is."""

    function: Callable[..., PosteriorResult]
    amortized: bool
    uses_budget: bool
    title: str


METHODS: dict[str, Method] = {
    "abc": Method(rejection_abc, False, True, "rejection ABC"),
    "smc-abc": Method(smc_abc, False, True, "SMC-ABC"),
    "lfvi": Method(lfvi, True, True, "likelihood-free VI (f-GAN ratio critic)"),
    "mmd": Method(mmd_posterior, True, True, "conditional generator trained by MMD"),
    "diffusion": Method(diffusion_posterior, True, True, "conditional diffusion posterior"),
    "npe": Method(npe, True, True, "neural posterior estimation (spline flow)"),
    "mcmc": Method(mcmc_posterior, False, False, "MALA on the exact likelihood"),
}

SIMULATORS: dict[str, Callable[[], Simulator]] = {
    "lotka-volterra": LotkaVolterra,
    "stochastic-lotka-volterra": StochasticLotkaVolterra,
    "gaussian-linear": GaussianLinear,
}

#: The parameters the CLI simulates its observation from when none is given: for Lotka-Volterra a
#: typical prior draw (each within 1.3 prior sd of the log-mean) whose populations cycle over the
#: observation window.
DEFAULT_PARAMETERS: dict[str, tuple[float, ...]] = {
    "lotka-volterra": (0.56, 0.026, 0.75, 0.025),
    "stochastic-lotka-volterra": (0.56, 0.026, 0.75, 0.025),
    "gaussian-linear": (0.5, -0.3),
}


def make_simulator(name: str) -> Simulator:
    """The simulator called ``name`` (one of :data:`SIMULATORS`) with its default settings."""
    if name not in SIMULATORS:
        raise ValueError(f"unknown simulator {name!r}; choose one of {', '.join(SIMULATORS)}")
    return SIMULATORS[name]()


def infer(simulator: Simulator | str, observation: Any, method: str = "npe", budget: int | None = 10_000, *,
          n_samples: int = 10_000, seed: int | None = 0, generator: torch.Generator | None = None,
          progress: bool = False, device: str = "cpu", **options: Any) -> PosteriorResult:
    """Posterior draws of ``simulator``'s parameters given ``observation`` by ``method`` (see the table
    above), spending ``budget`` simulations; ``options`` go to the method's function. Randomness
    comes from ``generator`` if given, else from a generator seeded with ``seed``."""
    if isinstance(simulator, str):
        simulator = make_simulator(simulator)
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    entry = METHODS[method]
    if not entry.uses_budget and not simulator.has_likelihood:
        raise ValueError(f"{method} needs the likelihood, which {type(simulator).__name__} does not have; "
                         "use a likelihood-free method")
    generator = generator if generator is not None else make_generator(seed)
    if entry.uses_budget:
        if budget is None:
            raise ValueError(f"{method} needs a simulation budget")
        return entry.function(simulator, observation, budget, n_samples=n_samples, generator=generator,
                              progress=progress, device=device, **options)
    return entry.function(simulator, observation, n_samples=n_samples, generator=generator, progress=progress,
                          device=device, **options)


def posterior_predictive(simulator: Simulator, theta: Tensor, n: int = 200,
                         generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """``n`` posterior predictive simulations: rows of ``theta`` ``(m, p)`` drawn uniformly (with
    replacement) and simulated once each. Returns ``(theta_used (n, p), y (n, d_y))``; failed
    simulations are NaN rows (a figure skips them)."""
    n = check_count(n, "n")
    if theta.ndim != 2 or theta.shape[0] < 1:
        raise ValueError(f"theta must have shape (m, p) with m >= 1, got {tuple(theta.shape)}")
    rows = torch.randint(theta.shape[0], (n,), generator=generator)
    chosen = theta[rows]
    return chosen, simulator.simulate(chosen, generator)


def observation_layout(simulator: Simulator) -> tuple[Tensor, tuple[str, ...], bool]:
    """How an observation reads for a figure: ``(times (T,), series names, log scale)``, the
    observation being the series one after the other (``(x_1..x_T, y_1..y_T)`` for Lotka-Volterra)."""
    times = getattr(simulator, "times", None)
    if isinstance(simulator, (LotkaVolterra, StochasticLotkaVolterra)) and times is not None:
        return times, ("prey x", "predator y"), isinstance(simulator, LotkaVolterra)
    return torch.arange(simulator.observation_dim, dtype=torch.float64), ("y",), False
