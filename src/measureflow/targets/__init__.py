"""Targets: energies L: R^d -> R on batches ``(n, d) -> (n,)`` and their Gibbs measures exp(-beta L)."""

from measureflow.targets.base import FiniteSumTarget, Target, from_energy
from measureflow.targets.function_space import (
    HilbertRegression,
    InfiniteWidthNetwork,
    basis_functions,
    function_values,
)
from measureflow.targets.gaussian import Gaussian
from measureflow.targets.logistic import LogisticRegression
from measureflow.targets.mixture import GaussianMixture
from measureflow.targets.rkhs_penalty import RKHSPenalized
from measureflow.targets.smoothing import (
    CLOSED_FORMS,
    SmoothedEstimate,
    SmoothedTarget,
    has_closed_form,
    smoothed_energy,
)
from measureflow.targets.toy import Banana, DoubleWell, Funnel, Rastrigin

__all__ = [
    "CLOSED_FORMS",
    "Banana",
    "DoubleWell",
    "FiniteSumTarget",
    "Funnel",
    "Gaussian",
    "GaussianMixture",
    "HilbertRegression",
    "InfiniteWidthNetwork",
    "LogisticRegression",
    "RKHSPenalized",
    "Rastrigin",
    "SmoothedEstimate",
    "SmoothedTarget",
    "Target",
    "basis_functions",
    "from_energy",
    "function_values",
    "has_closed_form",
    "smoothed_energy",
]
