"""Figures of a sampling run: the samples over the exact (log-)density, and the energy trace.

Figures are matplotlib ``Figure`` objects drawn with the Agg canvas, never through pyplot, so no
global state changes and nothing needs a display. :func:`save_figure` writes them atomically.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from measureflow._core import save_figure as core_save_figure

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from measureflow.targets import Target

__all__ = ["function_posterior_figure", "sample_figure", "save_figure"]

# Grid resolution of the density panels and the most points drawn in a scatter plot (more only
# hides the density underneath and slows the PNG writer down).
_GRID_1D = 400
_GRID_2D = 160
_MAX_POINTS = 4000


def _numpy(value: Any) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().double().numpy()
    return np.asarray(value, dtype=np.float64)


def _plot_range(values: np.ndarray, pad: float = 0.15) -> tuple[float, float]:
    """A range covering the central 99.8% of ``values``, widened by ``pad`` on each side."""
    lo, hi = np.quantile(values, [0.001, 0.999])
    if not hi > lo:
        lo, hi = lo - 0.5, hi + 0.5
    width = hi - lo
    return float(lo - pad * width), float(hi + pad * width)


def _log_prob(target: Target, points: np.ndarray, beta: float) -> np.ndarray:
    """log pi_beta at ``points`` ``(m, d)`` in the target's dtype and device, as float64 numpy."""
    tensor = torch.as_tensor(points, dtype=target.dtype, device=target.device)
    with torch.no_grad():
        return _numpy(target.log_prob(tensor, beta))


def _draw_1d(axes: Axes, values: np.ndarray, target: Target | None, beta: float) -> None:
    lo, hi = _plot_range(values)
    axes.hist(values, bins=80, range=(lo, hi), density=True, color="tab:blue", alpha=0.55,
              label="samples")
    if target is not None and target.dim == 1 and target.is_normalized(beta):
        grid = np.linspace(lo, hi, _GRID_1D)
        axes.plot(grid, np.exp(_log_prob(target, grid[:, None], beta)), color="black", lw=1.5,
                  label="exact density")
    axes.set_xlabel("x")
    axes.set_ylabel("density")
    axes.legend(loc="upper right", fontsize="small")


def _thinned(points: np.ndarray, max_points: int) -> np.ndarray:
    """At most ``max_points`` rows, evenly spaced (deterministic, covers every step and chain)."""
    if points.shape[0] <= max_points:
        return points
    return points[np.linspace(0, points.shape[0] - 1, max_points).astype(np.int64)]


def _draw_2d(axes: Axes, points: np.ndarray, target: Target | None, beta: float) -> str:
    """Scatter of ``points`` ``(m, 2)``; under it the target's density contours when d = 2."""
    (x_lo, x_hi), (y_lo, y_hi) = _plot_range(points[:, 0]), _plot_range(points[:, 1])
    note = ""
    if target is not None and target.dim == 2:
        xs, ys = np.linspace(x_lo, x_hi, _GRID_2D), np.linspace(y_lo, y_hi, _GRID_2D)
        grid_x, grid_y = np.meshgrid(xs, ys)
        grid = np.stack([grid_x.ravel(), grid_y.ravel()], axis=-1)
        log_p = _log_prob(target, grid, beta).reshape(grid_x.shape)
        finite = log_p[np.isfinite(log_p)]
        if target.is_normalized(beta):
            values, note = np.exp(log_p), "exact density"
            top = float(values.max()) if np.isfinite(values).any() else 0.0
            # Geometric levels: contours of lower modes and tails show, not only the top one.
            levels = np.geomspace(1e-3, 0.9, 8) * top
        else:
            # Unnormalized: contours of -beta L over its top 25 nats (deeper levels only clutter).
            values, note = log_p, "log-density contours (unnormalized)"
            top = float(finite.max()) if finite.size else 0.0
            levels = np.linspace(max(float(finite.min()) if finite.size else top, top - 25.0),
                                 top, 10)[:-1]
        if finite.size and np.ptp(levels) > 0:
            axes.contour(grid_x, grid_y, np.ma.masked_invalid(values),
                         levels=np.unique(levels), cmap="viridis", linewidths=1.0)
    shown = _thinned(points, _MAX_POINTS)
    axes.scatter(shown[:, 0], shown[:, 1], s=3, color="tab:red", alpha=0.35, linewidths=0)
    axes.set_xlim(x_lo, x_hi)
    axes.set_ylim(y_lo, y_hi)
    axes.set_xlabel("x1")
    axes.set_ylabel("x2")
    return note


def _draw_trace(axes: Axes, energy_trace: np.ndarray | None, burn_in: int, thin: int) -> None:
    if energy_trace is None or energy_trace.size == 0:
        axes.text(0.5, 0.5, "no energy trace recorded", ha="center", va="center",
                  transform=axes.transAxes)
        axes.set_axis_off()
        return
    steps = burn_in + thin * np.arange(1, energy_trace.shape[0] + 1)
    axes.plot(steps, energy_trace.mean(axis=1), color="tab:blue", lw=1.2, label="mean over chains")
    if energy_trace.shape[1] > 1:
        low, high = np.quantile(energy_trace, [0.1, 0.9], axis=1)
        axes.fill_between(steps, low, high, color="tab:blue", alpha=0.2, lw=0,
                          label="10%-90% of chains")
    axes.set_xlabel("step")
    axes.set_ylabel("energy L(x)")
    axes.set_title("energy trace (kept steps)")
    axes.legend(loc="best", fontsize="small")


def sample_figure(
    samples: Any,
    energy_trace: Any | None = None,
    target: Target | None = None,
    beta: float = 1.0,
    *,
    burn_in: int = 0,
    thin: int = 1,
    title: str | None = None,
) -> Figure:
    """The figure of a sampling run: samples on the left, the energy trace on the right.

    ``samples`` ``(n_kept, n_chains, d)`` and ``energy_trace`` ``(n_kept, n_chains)`` are tensors
    or arrays. For d = 1 a histogram of all kept samples over the exact density of ``target``
    where it is normalized at ``beta``; for d = 2 a scatter over the contours of the exact
    density (or of the log-density -beta L when the normalizer is unknown); for d > 2 a scatter
    of the first two coordinates. ``burn_in`` and ``thin`` place the kept steps on the x-axis.

    >>> import torch, measureflow as mf
    >>> figure = sample_figure(torch.randn(50, 4, 1), torch.rand(50, 4), mf.targets.DoubleWell())
    >>> len(figure.axes)
    2
    """
    from matplotlib.figure import Figure

    chains = _numpy(samples)
    if chains.ndim != 3 or chains.shape[0] == 0 or chains.shape[1] == 0:
        raise ValueError(f"samples must have shape (n_kept, n_chains, d), got {chains.shape}")
    trace = None if energy_trace is None else _numpy(energy_trace)
    if trace is not None and trace.shape != chains.shape[:2]:
        raise ValueError(
            f"energy_trace must have shape {chains.shape[:2]} to match samples, got {trace.shape}"
        )
    dim = chains.shape[-1]
    points = chains.reshape(-1, dim)
    if not np.isfinite(points).all():
        raise ValueError("samples contain NaN or infinite values; nothing sensible to plot")

    figure = Figure(figsize=(11.0, 4.4), layout="constrained")
    sample_axes, trace_axes = figure.subplots(1, 2)
    name = target.name if target is not None else "samples"
    if dim == 1:
        _draw_1d(sample_axes, points[:, 0], target, beta)
        note = "exact density" if target is not None and target.is_normalized(beta) else ""
    else:
        note = _draw_2d(sample_axes, points[:, :2], target, beta)
        if dim > 2:
            note = f"first two of {dim} coordinates"
    sample_axes.set_title(f"{name}, beta = {beta:g}" + (f" ({note})" if note else ""))
    _draw_trace(trace_axes, trace, int(burn_in), int(thin))
    if title:
        figure.suptitle(title)
    return figure


def function_posterior_figure(grid: Any, values: Any, data_x: Any, data_y: Any, *,
                              title: str | None = None, max_draws: int = 30) -> Figure:
    """Posterior functions of a function-space run: draws, the mean and a 90% band, with the data.

    ``grid`` ``(p,)`` the abscissa, ``values`` ``(m, p)`` the functions of m kept states on it
    (chains x kept steps, flattened), ``data_x``, ``data_y`` ``(n,)`` the data.

    >>> import torch
    >>> grid, values = torch.linspace(0, 1, 5), torch.randn(40, 5)
    >>> figure = function_posterior_figure(grid, values, torch.rand(3), torch.rand(3))
    >>> len(figure.axes)
    1
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    u, functions = _numpy(grid), _numpy(values)
    if u.ndim != 1 or functions.ndim != 2 or functions.shape[1] != u.shape[0] or functions.shape[0] == 0:
        raise ValueError(f"values must have shape (m, {u.shape[0]}) for a grid of {u.shape[0]} points, "
                         f"got {functions.shape}")
    figure = Figure(figsize=(6.4, 4.2), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots()
    low, high = np.quantile(functions, [0.05, 0.95], axis=0)
    axes.fill_between(u, low, high, color="tab:blue", alpha=0.2, label="90% band")
    for row in _thinned(functions, max_draws):
        axes.plot(u, row, color="tab:blue", linewidth=0.5, alpha=0.35)
    axes.plot(u, functions.mean(0), color="tab:blue", linewidth=2, label="posterior mean")
    axes.plot(_numpy(data_x), _numpy(data_y), "o", color="k", markersize=3.5, label="data")
    axes.set_xlabel("input")
    axes.set_ylabel("f")
    axes.legend(fontsize=8)
    if title:
        axes.set_title(title)
    return figure


def save_figure(figure: Figure, path: str | os.PathLike[str], dpi: int = 110) -> Path:
    """Write ``figure`` as a PNG to ``path`` atomically (temporary file, then rename)."""
    return Path(core_save_figure(figure, path, dpi))
