"""Implicit generative models X = f_theta(Z) trained against a divergence (in progress): the f-GAN
table and mode diagnostics for mixture data."""

from measureflow.generative.gan.divergences import F_DIVERGENCES, FDivergence, f_divergence, variational_bound
from measureflow.generative.gan.modes import ModeReport, mode_diagnostics

__all__ = [
    "F_DIVERGENCES", "FDivergence", "ModeReport", "f_divergence", "mode_diagnostics", "variational_bound",
]
