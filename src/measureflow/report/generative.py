"""Figures of the generative models' runs (diffusion, GAN, EBM): samples over the data, digit
grids, and the forward and reverse paths of a diffusion model.

Drawing only: every function takes tensors that were already computed (samples, recorded
paths) and returns a matplotlib ``Figure`` drawn on the Agg canvas; save it with
:func:`measureflow.report.save_figure`.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from measureflow._core import new_figure

if TYPE_CHECKING:
    import numpy as np
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure
    from torch import Tensor

__all__ = ["DIGIT_GRID", "MAX_POINTS", "digits_figure", "model_samples_figure", "samples_figure",
           "trajectory_figure"]

MAX_POINTS = 3000  # points drawn per scatter: more only hides the data underneath
DIGIT_GRID = 64  # images drawn by digits_figure, an 8 x 8 grid


def _scatter(axis: Axes, points: np.ndarray, color: str, label: str, size: float, alpha: float) -> None:
    shown = points[:MAX_POINTS]
    axis.scatter(shown[:, 0], shown[:, 1], s=size, alpha=alpha, color=color, linewidths=0, label=label)


def samples_figure(samples: Tensor, data: Tensor | None, title: str) -> Figure:
    """Vector samples ``(n, d)`` over the data ``(m, d)`` (None: the samples alone): a scatter of
    the first two coordinates, or two histograms for d = 1."""
    figure, axes = new_figure(1, 1, width=5.0, height=4.6)
    axis = axes[0, 0]
    points = samples.detach().cpu().double().numpy()
    reference = None if data is None else data.detach().cpu().double().numpy()
    if points.shape[1] == 1:
        if reference is not None:
            axis.hist(reference[:, 0], bins=60, density=True, alpha=0.5, color="tab:gray", label="data")
        axis.hist(points[:, 0], bins=60, density=True, alpha=0.5, color="tab:blue", label="model")
        axis.set_xlabel("x")
    else:
        if reference is not None:
            _scatter(axis, reference, "tab:gray", "data", size=2.0, alpha=0.3)
        _scatter(axis, points, "tab:blue", "model", size=3.0, alpha=0.6)
        axis.set_xlabel("x1")
        axis.set_ylabel("x2")
        axis.set_aspect("equal", adjustable="datalim")
        if points.shape[1] > 2:
            title += f" (first two of {points.shape[1]} coordinates)"
    axis.legend(loc="upper right", fontsize=7, markerscale=4)
    axis.set_title(title, fontsize=9)
    return figure


def digits_figure(images: Tensor, title: str) -> Figure:
    """The first 64 images ``(n, 1, H, W)`` (values in [-1, 1], clipped) on an 8 x 8 grid."""
    shown = images[:DIGIT_GRID].detach().cpu().double().clamp(-1, 1).numpy()
    columns = 8
    rows = max(1, math.ceil(shown.shape[0] / columns))
    figure, axes = new_figure(columns, rows, width=0.8, height=0.8)
    for index, axis in enumerate(axes.flat):
        axis.set_axis_off()
        if index < shown.shape[0]:
            axis.imshow(shown[index, 0], cmap="gray_r", vmin=-1, vmax=1, interpolation="nearest")
    figure.suptitle(title, fontsize=8)
    return figure


def model_samples_figure(samples: Tensor, data_kind: str, data: Tensor | None, title: str) -> Figure:
    """A model's samples as its data are drawn: a digit grid for ``"image"`` data, otherwise
    :func:`samples_figure` over ``data``."""
    return digits_figure(samples, title) if data_kind == "image" else samples_figure(samples, data, title)


def trajectory_figure(forward_times: Tensor, forward: Tensor, reverse_times: Tensor, reverse: Tensor,
                      title: str) -> Figure:
    """Left: paths of data points under the forward SDE; right: the sampler's reverse paths.

    ``forward`` ``(k, m, 2)`` recorded at ``forward_times`` ``(k,)`` and ``reverse`` ``(k', m', 2)``
    at ``reverse_times`` ``(k',)``, both in the model's (standardized) units.
    """
    figure, axes = new_figure(2, 1, width=4.8, height=4.6)
    panels = (
        (axes[0, 0], forward_times, forward, "forward: data -> noise"),
        (axes[0, 1], reverse_times, reverse, "reverse: noise -> samples"),
    )
    for axis, times, paths, label in panels:
        path = paths.detach().cpu().double().numpy()
        if path.shape[0] == 0:
            axis.set_title(f"{label} (nothing recorded)", fontsize=9)
            continue
        for j in range(path.shape[1]):
            axis.plot(path[:, j, 0], path[:, j, 1], color="tab:gray", alpha=0.4, linewidth=0.6)
        axis.scatter(path[0, :, 0], path[0, :, 1], s=9, color="tab:blue", linewidths=0, zorder=3,
                     label=f"t = {float(times[0]):.3g}")
        axis.scatter(path[-1, :, 0], path[-1, :, 1], s=9, color="tab:red", linewidths=0, zorder=3,
                     label=f"t = {float(times[-1]):.3g}")
        axis.set_aspect("equal", adjustable="datalim")
        axis.legend(loc="upper right", fontsize=7, markerscale=2)
        axis.set_title(label, fontsize=9)
        axis.set_xlabel("z1 (standardized)")
        axis.set_ylabel("z2 (standardized)")
    figure.suptitle(title, fontsize=9)
    return figure
