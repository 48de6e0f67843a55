"""Plotting and formatting helpers shared by the checks: matplotlib ``Figure`` objects (no pyplot
global state, the Agg canvas) saved atomically as PNG."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from measureflow._core import atomic_path

__all__ = ["binomial_se", "format_list", "new_figure", "save_figure", "to_numpy"]


def new_figure(n_cols: int, n_rows: int = 1, width: float = 4.4, height: float = 3.5):
    """A figure with an ``(n_rows, n_cols)`` grid of axes (always a 2-D array of axes)."""
    figure = Figure(figsize=(width * n_cols, height * n_rows), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(n_rows, n_cols, squeeze=False)
    return figure, axes


def save_figure(figure: Figure, path: Path) -> str:
    """Write ``figure`` to ``path`` as a PNG (temporary file, then rename); returns the path."""
    with atomic_path(path) as temporary:
        figure.savefig(temporary, format="png", dpi=110)
    return str(path)


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
