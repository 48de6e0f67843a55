"""The figure of a particle flow: the particles at a few times, and the value along the flow.

Drawn on a matplotlib ``Figure`` with the Agg canvas (no pyplot state, no display needed).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch

from measureflow._core import check_count, new_figure

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from measureflow.flows.integrator import FlowResult
    from measureflow.targets import Target

__all__ = ["flow_figure"]

_GRID = 120  # contour grid per axis
_MAX_SCATTER = 3000  # more points only hide the contours and slow the PNG writer


def _limits(points: np.ndarray) -> tuple[float, float]:
    lo, hi = np.quantile(points, [0.002, 0.998])
    pad = 0.1 * max(hi - lo, 1e-6)
    return float(lo - pad), float(hi + pad)


def _energy_contours(axes: Axes, target: Target, beta: float, xlim, ylim) -> None:
    """Contours of -beta L over its top 12 nats (unnormalized log-density: exact for any target)."""
    xs, ys = np.linspace(*xlim, _GRID), np.linspace(*ylim, _GRID)
    grid_x, grid_y = np.meshgrid(xs, ys)
    points = torch.as_tensor(np.stack([grid_x.ravel(), grid_y.ravel()], 1), dtype=target.dtype,
                             device=target.device)
    with torch.no_grad():
        log_p = (-beta * target.energy(points)).double().cpu().numpy().reshape(grid_x.shape)
    finite = log_p[np.isfinite(log_p)]
    if finite.size == 0:
        return
    top = float(finite.max())
    levels = np.linspace(top - 12.0, top, 9)[:-1]
    if not np.all(np.diff(levels) > 0):
        return  # |log p| so large (particles far out) that 12 nats vanish in rounding: no contours
    axes.contour(grid_x, grid_y, np.ma.masked_invalid(log_p), levels=levels, cmap="Greys",
                 linewidths=0.7, alpha=0.8)


def flow_figure(result: FlowResult, target: Target | None = None, beta: float = 1.0, *,
                n_panels: int = 3, title: str | None = None) -> Figure:
    """Particles at ``n_panels`` recorded times (first, last and evenly between) and the value curve.

    d = 1: histograms; d >= 2: scatter of the first two coordinates, over contours of
    -beta L of ``target`` when it is 2-D. The last panel plots ``result.values`` against time
    (left out when values were not recorded).

    >>> import measureflow as mf
    >>> F = mf.flows.Potential(lambda z: 0.5 * z.square().sum(1))
    >>> result = mf.flows.run(F, torch.randn(50, 2), 0.1, 10, progress=False)
    >>> len(flow_figure(result).axes)
    4
    """
    n_panels = check_count(n_panels, "n_panels")
    snapshots = result.snapshots.detach().double().cpu().numpy()
    times = result.times.detach().double().cpu().numpy()
    count = min(n_panels, snapshots.shape[0])
    chosen = np.unique(np.linspace(0, snapshots.shape[0] - 1, count).round().astype(int))
    has_values = result.values is not None
    n_axes = len(chosen) + int(has_values)
    figure, axes = new_figure(n_axes, 1, width=3.6, height=3.4)
    axes = axes[0]
    dim = snapshots.shape[2]
    every = snapshots[chosen].reshape(-1, dim)
    xlim = _limits(every[:, 0])
    ylim = _limits(every[:, 1]) if dim >= 2 else None
    for axis, index in zip(axes, chosen, strict=False):
        points = snapshots[index]
        if dim == 1:
            axis.hist(points[:, 0], bins=40, range=xlim, density=True, color="tab:blue", alpha=0.6)
            axis.set_xlabel("x")
            axis.set_ylabel("density")
        else:
            if target is not None and target.dim == 2 and dim == 2:
                _energy_contours(axis, target, beta, xlim, ylim)
            shown = points[: _MAX_SCATTER]
            axis.scatter(shown[:, 0], shown[:, 1], s=4, color="tab:red", alpha=0.5, linewidths=0)
            axis.set_xlim(*xlim)
            axis.set_ylim(*ylim)
            if dim == 2:
                axis.set_aspect("equal", adjustable="box")
            axis.set_xlabel("x1")
            axis.set_ylabel("x2")
        axis.set_title(f"t = {times[index]:.3g}")
    if has_values:
        axis = axes[-1]
        axis.plot(times, result.values.detach().double().cpu().numpy(), color="tab:blue", lw=1.3)
        axis.set_xlabel("time t")
        axis.set_ylabel("value")
        axis.set_title("value along the flow")
    figure.suptitle(title or result.functional, fontsize="medium")
    return figure
