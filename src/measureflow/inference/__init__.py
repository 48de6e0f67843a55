"""Simulation-based (likelihood-free) Bayesian inference: simulators, and the methods that turn
simulations (or a likelihood) into posterior draws. See :mod:`measureflow.inference.api` for the
table of methods and which are amortized; :mod:`measureflow.inference.causal` for causal direction
between two variables."""

from measureflow.inference import causal
from measureflow.inference.abc import rejection_abc, smc_abc
from measureflow.inference.api import (
    METHODS,
    SIMULATORS,
    infer,
    make_simulator,
    observation_layout,
    posterior_predictive,
)
from measureflow.inference.base import PosteriorResult, simulate_budget
from measureflow.inference.diffusion import diffusion_posterior
from measureflow.inference.generators import lfvi, mmd_posterior
from measureflow.inference.mcmc import mcmc_posterior
from measureflow.inference.npe import npe
from measureflow.inference.simulators import (
    GaussianLinear,
    LogNormalPrior,
    LotkaVolterra,
    NormalPrior,
    Prior,
    Simulator,
    StochasticLotkaVolterra,
)

__all__ = [
    "METHODS",
    "SIMULATORS",
    "GaussianLinear",
    "LogNormalPrior",
    "LotkaVolterra",
    "NormalPrior",
    "PosteriorResult",
    "Prior",
    "Simulator",
    "StochasticLotkaVolterra",
    "causal",
    "diffusion_posterior",
    "infer",
    "lfvi",
    "make_simulator",
    "mcmc_posterior",
    "mmd_posterior",
    "npe",
    "observation_layout",
    "posterior_predictive",
    "rejection_abc",
    "simulate_budget",
    "smc_abc",
]
