"""The figure of a network training run: risk, movement and NTK drift over the steps, and the fit.

Drawing only: the panels show the trace :func:`measureflow.nets.train` recorded, and the third
evaluates the trained predictor on a grid of the data's plotting coordinates (as the sampling
figures evaluate a target's density), never anything that feeds back into a result.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from measureflow._core import new_figure
from measureflow.data.supervised import SupervisedData

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure
    from torch import nn

__all__ = ["nets_figure"]

_GRID_1D = 400
_GRID_2D = 150
_MAX_POINTS = 3000
_SERIES = ("steps", "train_loss", "test_loss", "movement", "ntk_drift")
_TRAIN_STYLE = {"color": "tab:blue", "label": "train"}
_TEST_STYLE = {"color": "tab:orange", "label": "test"}


def _numpy(value: Any) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().double().numpy()
    return np.asarray(value, dtype=np.float64)


def _positive(values: np.ndarray) -> np.ndarray:
    """``values`` with non-positive and non-finite entries masked (a log axis cannot show them)."""
    return np.ma.masked_where(~(np.isfinite(values) & (values > 0)), values)


def _draw_losses(axes: Axes, trace: Mapping[str, np.ndarray], loss_name: str, noise: float | None) -> None:
    steps = trace["steps"]
    axes.plot(steps, _positive(trace["train_loss"]), lw=1.5, **_TRAIN_STYLE)
    if np.isfinite(trace["test_loss"]).any():
        axes.plot(steps, _positive(trace["test_loss"]), lw=1.5, **_TEST_STYLE)
    if loss_name == "mse" and noise:
        # The risk of the noiseless target itself: E[eps^2] / 2 for label noise eps ~ N(0, noise^2).
        axes.axhline(noise**2 / 2, color="0.45", lw=1.0, ls=":", label=r"noise floor $\sigma^2/2$")
    axes.set_yscale("log")
    axes.set_xlabel("step")
    axes.set_ylabel(f"mean {loss_name} loss")
    axes.set_title("risk")
    axes.legend(loc="best", fontsize="small")


def _draw_drift(axes: Axes, trace: Mapping[str, np.ndarray]) -> None:
    steps = trace["steps"]
    axes.plot(steps, _positive(trace["movement"]), color="tab:green", lw=1.5,
              label=r"$\|\theta_t - \theta_0\| / \|\theta_0\|$")
    if np.isfinite(trace["ntk_drift"]).any():
        axes.plot(steps, _positive(trace["ntk_drift"]), color="tab:purple", lw=1.5,
                  label=r"NTK drift $\|K_t - K_0\|_F / \|K_0\|_F$")
    axes.set_yscale("log")
    axes.set_xlabel("step")
    axes.set_ylabel("relative change")
    axes.set_title("weight movement and kernel drift")
    axes.legend(loc="best", fontsize="small")


@torch.no_grad()
def _predict(predictor: nn.Module, data: SupervisedData, coordinates: np.ndarray) -> np.ndarray:
    grid = torch.as_tensor(coordinates, dtype=data.x.dtype, device=data.x.device)
    return _numpy(predictor(data.inputs(grid)))


def _sets(train: SupervisedData, test: SupervisedData | None) -> list[tuple[SupervisedData, dict[str, str]]]:
    return [(train, _TRAIN_STYLE)] + ([(test, _TEST_STYLE)] if test is not None else [])


def _thinned(n: int) -> np.ndarray:
    return np.linspace(0, n - 1, min(n, _MAX_POINTS)).astype(np.int64)


def _draw_curve(axes: Axes, predictor: nn.Module, train: SupervisedData,
                  test: SupervisedData | None) -> None:
    """1-D coordinate: the data, the fitted curve and (named sets) the noiseless target."""
    every = np.concatenate([_numpy(d.coordinates)[:, 0] for d, _ in _sets(train, test)])
    lo, hi = train.coordinate_range or (float(every.min()), float(every.max()))
    pad = 0.0 if train.coordinate_range else 0.05 * (hi - lo or 1.0)
    grid = np.linspace(lo - pad, hi + pad, _GRID_1D)[:, None]
    for data, style in _sets(train, test):
        rows = _thinned(data.n)
        axes.scatter(_numpy(data.coordinates)[rows, 0], _numpy(data.y)[rows], s=9, alpha=0.6, linewidths=0,
                     **style)
    truth = train.target(torch.as_tensor(grid))
    if truth is not None:
        axes.plot(grid[:, 0], _numpy(truth), color="0.45", lw=1.2, ls="--", label="noiseless target")
    axes.plot(grid[:, 0], _predict(predictor, train, grid), color="black", lw=1.8, label="network f")
    name = train.coordinate_names[0]
    axes.set_xlabel(name)
    axes.set_ylabel("y")
    axes.set_title(f"fit: f against {name}")
    axes.legend(loc="best", fontsize="small")


def _grid_2d(train: SupervisedData, test: SupervisedData | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    points = np.concatenate([_numpy(d.coordinates) for d, _ in _sets(train, test)])
    lo, hi = points.min(0), points.max(0)
    pad = 0.1 * np.maximum(hi - lo, 1e-6)
    xs = np.linspace(lo[0] - pad[0], hi[0] + pad[0], _GRID_2D)
    ys = np.linspace(lo[1] - pad[1], hi[1] + pad[1], _GRID_2D)
    grid_x, grid_y = np.meshgrid(xs, ys)
    return grid_x, grid_y, np.stack([grid_x.ravel(), grid_y.ravel()], axis=1)


def _error_rate(predictor: nn.Module, data: SupervisedData) -> float:
    with torch.no_grad():
        return float((torch.sign(predictor(data.x)) != data.y).double().mean())


def _draw_regions(axes: Axes, predictor: nn.Module, train: SupervisedData,
                  test: SupervisedData | None) -> None:
    """2-D classification: the regions sign f = +1 / -1, the boundary f = 0 and the points."""
    grid_x, grid_y, grid = _grid_2d(train, test)
    values = _predict(predictor, train, grid).reshape(grid_x.shape)
    axes.contourf(grid_x, grid_y, np.sign(values), levels=[-1.5, 0.0, 1.5], colors=["#f4c7c3", "#c6dbef"])
    if values.min() < 0 < values.max():
        axes.contour(grid_x, grid_y, values, levels=[0.0], colors="black", linewidths=1.2)
    for data, style in _sets(train, test):
        rows = _thinned(data.n)
        z, y = _numpy(data.coordinates)[rows], _numpy(data.y)[rows]
        marker = "o" if style is _TRAIN_STYLE else "^"
        for label, color in ((1.0, "tab:blue"), (-1.0, "tab:red")):
            chosen = y == label
            axes.scatter(z[chosen, 0], z[chosen, 1], s=12, marker=marker, color=color, alpha=0.75,
                         edgecolors="white" if marker == "o" else "black", linewidths=0.4,
                         label=f"{style['label']}, y = {label:+g}")
    errors = f"train {_error_rate(predictor, train):.1%}"
    if test is not None:
        errors += f", test {_error_rate(predictor, test):.1%}"
    names = train.coordinate_names
    axes.set_xlabel(names[0])
    axes.set_ylabel(names[1])
    axes.set_title(f"sign f (errors: {errors})")
    axes.legend(loc="best", fontsize="x-small")


def _draw_surface(axes: Axes, predictor: nn.Module, train: SupervisedData,
                  test: SupervisedData | None) -> None:
    """2-D regression: f as filled contours, the points coloured by y on the same scale."""
    grid_x, grid_y, grid = _grid_2d(train, test)
    values = _predict(predictor, train, grid).reshape(grid_x.shape)
    labels = np.concatenate([_numpy(d.y) for d, _ in _sets(train, test)])
    lo, hi = float(min(values.min(), labels.min())), float(max(values.max(), labels.max()))
    levels = np.linspace(lo, hi if hi > lo else lo + 1.0, 15)
    filled = axes.contourf(grid_x, grid_y, values, levels=levels, cmap="viridis", alpha=0.85)
    for data, style in _sets(train, test):
        rows = _thinned(data.n)
        z = _numpy(data.coordinates)[rows]
        axes.scatter(z[:, 0], z[:, 1], c=_numpy(data.y)[rows], cmap="viridis", vmin=levels[0],
                     vmax=levels[-1], s=14, marker="o" if style is _TRAIN_STYLE else "^", edgecolors="black",
                     linewidths=0.4, label=style["label"])
    axes.figure.colorbar(filled, ax=axes, label="f (fill), y (points)")
    names = train.coordinate_names
    axes.set_xlabel(names[0])
    axes.set_ylabel(names[1])
    axes.set_title("fit: f over the inputs")
    axes.legend(loc="best", fontsize="small")


def _draw_scatter(axes: Axes, predictor: nn.Module, train: SupervisedData,
                  test: SupervisedData | None) -> None:
    """Wider inputs: the network's output against the label for every point."""
    for data, style in _sets(train, test):
        rows = _thinned(data.n)
        with torch.no_grad():
            outputs = _numpy(predictor(data.x[torch.as_tensor(rows, device=data.x.device)]))
        axes.scatter(_numpy(data.y)[rows], outputs, s=9, alpha=0.6, linewidths=0, **style)
    labels = _numpy(train.y)
    lo, hi = float(labels.min()), float(labels.max())
    if train.task == "regression":
        axes.plot([lo, hi], [lo, hi], color="black", lw=1.0, label="f = y")
    else:
        axes.axhline(0.0, color="black", lw=1.0, label="f = 0")
    axes.set_xlabel("label y")
    axes.set_ylabel("network f(x)")
    axes.set_title(f"outputs against labels (d = {train.dim})")
    axes.legend(loc="best", fontsize="small")


def nets_figure(trace: Mapping[str, Any], predictor: nn.Module, train: SupervisedData,
                test: SupervisedData | None = None, *, loss_name: str = "mse",
                title: str | None = None) -> Figure:
    r"""Three panels of a training run of a scalar network ``predictor`` ``(m, d) -> (m,)``.

    (i) training and test risk against the step (log scale); (ii) the relative movement
    ||theta_t - theta_0|| / ||theta_0|| and the NTK drift ||K_t - K_0||_F / ||K_0||_F; (iii) the
    fit: for data with one plotting coordinate (circle: t, sine: u, a file with one input column)
    the points, the curve f and the noiseless target where known; for two coordinates the
    decision regions sign f (classification) or f as filled contours (regression); otherwise
    f(x) against y. ``trace`` holds the ``(T,)`` series ``steps``, ``train_loss``, ``test_loss``,
    ``movement`` and ``ntk_drift`` (NaN where not measured), as :func:`measureflow.nets.train`
    returns them.

    >>> import torch
    >>> from measureflow.data import supervised_dataset
    >>> from measureflow.nets import TwoLayer
    >>> data = supervised_dataset("sine", 30, torch.Generator().manual_seed(0))
    >>> trace = {"steps": [0, 10], "train_loss": [1.0, 0.5], "test_loss": [float("nan")] * 2,
    ...          "movement": [0.0, 0.1], "ntk_drift": [0.0, 0.01]}
    >>> len(nets_figure(trace, TwoLayer(2, 8), data).axes)
    3
    """
    series = {key: _numpy(trace[key]) for key in _SERIES}
    lengths = {values.shape for values in series.values()}
    if len(lengths) != 1 or len(next(iter(lengths))) != 1:
        raise ValueError(f"the trace series must be 1-D of one length, got shapes {sorted(lengths)}")
    if test is not None and (test.dim != train.dim or test.task != train.task):
        raise ValueError("test must have the inputs and task of train")
    figure, axes = new_figure(3, 1, width=4.6, height=3.9)
    noise = train.noise if train.task == "regression" else None
    _draw_losses(axes[0, 0], series, loss_name, noise)
    _draw_drift(axes[0, 1], series)
    fit_axes = axes[0, 2]
    width = 0 if train.coordinates is None else train.coordinates.shape[1]
    if width == 1:
        _draw_curve(fit_axes, predictor, train, test)
    elif width == 2 and train.task == "classification":
        _draw_regions(fit_axes, predictor, train, test)
    elif width == 2:
        _draw_surface(fit_axes, predictor, train, test)
    else:
        _draw_scatter(fit_axes, predictor, train, test)
    if title:
        figure.suptitle(title)
    return figure
