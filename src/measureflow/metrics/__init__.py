"""Distances and divergences between measures, and sample diagnostics (ESS, R-hat)."""

from measureflow.metrics.diagnostics import autocorrelation, ess, rhat

__all__ = ["autocorrelation", "ess", "rhat"]
