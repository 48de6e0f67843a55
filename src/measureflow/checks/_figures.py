"""Plotting and formatting helpers shared by the checks: matplotlib ``Figure`` objects (no pyplot
global state, the Agg canvas) saved atomically as PNG."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from measureflow._core import new_figure, save_figure

__all__ = ["binomial_se", "format_list", "new_figure", "save_figure", "to_numpy"]


def to_numpy(values) -> np.ndarray:
    """A tensor, list or array as a float64 numpy array on the CPU (for plotting)."""
    if hasattr(values, "detach"):
        values = values.detach().cpu().double().numpy()
    return np.asarray(values, dtype=np.float64)


def binomial_se(successes: int, trials: int) -> float:
    """The standard error sqrt(p (1 - p) / n) of a success rate p = successes / trials."""
    rate = successes / trials
    return math.sqrt(rate * (1 - rate) / trials)


def format_list(values: Sequence[float], digits: int = 4) -> str:
    return "[" + ", ".join(f"{value:.{digits}g}" for value in values) + "]"
