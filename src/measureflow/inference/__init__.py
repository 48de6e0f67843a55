"""Simulation-based (likelihood-free) Bayesian inference: simulators first; methods build on them."""

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
    "GaussianLinear",
    "LogNormalPrior",
    "LotkaVolterra",
    "NormalPrior",
    "Prior",
    "Simulator",
    "StochasticLotkaVolterra",
]
