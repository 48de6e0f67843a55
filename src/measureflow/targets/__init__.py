"""Targets: energies L: R^d -> R on batches ``(n, d) -> (n,)`` and their Gibbs measures exp(-beta L)."""

from measureflow.targets.base import FiniteSumTarget, Target, from_energy
from measureflow.targets.gaussian import Gaussian
from measureflow.targets.logistic import LogisticRegression
from measureflow.targets.mixture import GaussianMixture
from measureflow.targets.toy import Banana, DoubleWell, Funnel, Rastrigin

__all__ = [
    "Banana",
    "DoubleWell",
    "FiniteSumTarget",
    "Funnel",
    "Gaussian",
    "GaussianMixture",
    "LogisticRegression",
    "Rastrigin",
    "Target",
    "from_energy",
]
