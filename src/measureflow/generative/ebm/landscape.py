r"""The learned energy landscape of a 2-D energy-based model, on a grid and as a figure.

On a regular grid of cell area A the learned Gibbs measure is approximated by the normalized
weights p_ij = exp(-E(x_ij)) / sum_kl exp(-E(x_kl)) (a density p_ij / A): exact up to the
quadrature error of the grid and the mass outside the window.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from measureflow._core import check_particles, new_figure, save_figure
from measureflow.generative.ebm.sampling import energy_dim

__all__ = ["EnergyGrid", "draw_energy_landscape", "energy_landscape_figure", "energy_on_grid"]


@dataclass(frozen=True)
class EnergyGrid:
    """An energy evaluated on a regular 2-D grid.

    ``x`` ``(G,)`` and ``y`` ``(G,)`` are the grid lines, ``energy`` ``(G, G)`` with
    ``energy[i, j] = E(x[j], y[i])`` (rows follow y, as images do), ``density`` ``(G, G)`` the
    normalized density exp(-E) / (sum exp(-E) * cell area), so ``density.sum() * cell_area == 1``.
    """

    x: Tensor
    y: Tensor
    energy: Tensor
    density: Tensor

    @property
    def cell_area(self) -> float:
        return float((self.x[1] - self.x[0]) * (self.y[1] - self.y[0]))

    @property
    def points(self) -> Tensor:
        """The grid points ``(G * G, 2)`` in the row-major order of ``energy.flatten()``."""
        yy, xx = torch.meshgrid(self.y, self.x, indexing="ij")
        return torch.stack([xx.flatten(), yy.flatten()], dim=-1)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe summary (window, size and energy range; no arrays)."""
        return {
            "lims": [[float(self.x[0]), float(self.x[-1])], [float(self.y[0]), float(self.y[-1])]],
            "grid_size": int(self.x.shape[0]),
            "energy_min": float(self.energy.min()),
            "energy_max": float(self.energy.max()),
        }


def _default_lims(data: Tensor) -> tuple[tuple[float, float], tuple[float, float]]:
    low, high = data.min(0).values, data.max(0).values
    pad = 0.15 * (high - low).clamp(min=1e-3)
    return (
        (float(low[0] - pad[0]), float(high[0] + pad[0])),
        (float(low[1] - pad[1]), float(high[1] + pad[1])),
    )


def _check_lims(lims: Any) -> tuple[tuple[float, float], tuple[float, float]]:
    try:
        (x0, x1), (y0, y1) = lims
        x0, x1, y0, y1 = float(x0), float(x1), float(y0), float(y1)
    except (TypeError, ValueError):
        raise ValueError(f"lims must be ((x_min, x_max), (y_min, y_max)), got {lims!r}") from None
    if not (x0 < x1 and y0 < y1):
        raise ValueError(f"lims must be increasing pairs ((x_min, x_max), (y_min, y_max)), got {lims!r}")
    return (x0, x1), (y0, y1)


def energy_on_grid(
    energy_net: torch.nn.Module,
    lims: Any,
    grid_size: int = 200,
    *,
    batch_size: int = 65_536,
) -> EnergyGrid:
    """E on a ``grid_size`` x ``grid_size`` grid over ``lims = ((x0, x1), (y0, y1))`` (d = 2).

    Evaluated without gradients in batches of ``batch_size`` points; dtype and device follow the
    network.

    >>> net = torch.nn.Sequential(torch.nn.Linear(2, 1), torch.nn.Flatten(0))
    >>> grid = energy_on_grid(net, ((-1, 1), (-1, 1)), grid_size=11)
    >>> tuple(grid.energy.shape), round(float(grid.density.sum()) * grid.cell_area, 6)
    ((11, 11), 1.0)
    """
    if energy_dim(energy_net) != 2:
        raise ValueError(f"the energy landscape needs a 2-D energy, got d = {energy_dim(energy_net)}")
    (x0, x1), (y0, y1) = _check_lims(lims)
    grid_size = int(grid_size)
    if grid_size < 2:
        raise ValueError(f"grid_size must be at least 2, got {grid_size}")
    like = next(iter(energy_net.parameters()), None)
    options = {
        "dtype": like.dtype if like is not None else torch.get_default_dtype(),
        "device": like.device if like is not None else "cpu",
    }
    x = torch.linspace(x0, x1, grid_size, **options)
    y = torch.linspace(y0, y1, grid_size, **options)
    yy, xx = torch.meshgrid(y, x, indexing="ij")
    points = torch.stack([xx.flatten(), yy.flatten()], dim=-1)
    with torch.no_grad():
        values = torch.cat([energy_net(chunk) for chunk in points.split(int(batch_size))])
    energy = values.reshape(grid_size, grid_size)
    area = float((x[1] - x[0]) * (y[1] - y[0]))
    # log-sum-exp normalization: exp(-E) overflows for the very negative energies a model can learn.
    log_weights = -energy.double()
    weights = torch.exp(log_weights - torch.logsumexp(log_weights.flatten(), 0))
    return EnergyGrid(x, y, energy, (weights / area).to(energy.dtype))


def draw_energy_landscape(
    figure: Any,
    density_axis: Any,
    energy_axis: Any,
    grid: EnergyGrid,
    data: Tensor,
    *,
    samples: Tensor | None = None,
    max_points: int = 2000,
) -> None:
    """Draw a 2-D energy grid on two matplotlib axes of ``figure``.

    ``density_axis``: the density exp(-E) normalized on the grid, with up to ``max_points`` data
    points ``(n, 2)``. ``energy_axis``: filled contours of E (clipped at its 98th percentile on
    the grid so a steep rim does not flatten the picture), the data and, when given, ``samples``
    ``(m, 2)`` of the model.
    """
    data = check_particles(data, "data", dim=2).detach().cpu()[: int(max_points)].double().numpy()
    xs, ys = grid.x.cpu().double().numpy(), grid.y.cpu().double().numpy()
    energy = grid.energy.detach().cpu().double()
    clipped = energy.clamp(max=float(torch.quantile(energy.flatten(), 0.98))).numpy()
    extent = (xs[0], xs[-1], ys[0], ys[-1])
    image = density_axis.imshow(grid.density.detach().cpu().double().numpy(), origin="lower",
                                extent=extent, cmap="viridis", aspect="auto", interpolation="nearest")
    figure.colorbar(image, ax=density_axis, shrink=0.8, label="exp(-E) / Z (grid)")
    density_axis.scatter(data[:, 0], data[:, 1], s=1.5, color="white", alpha=0.35, linewidths=0)
    density_axis.set_title("learned density and data")
    contours = energy_axis.contourf(xs, ys, clipped, levels=30, cmap="magma_r")
    energy_axis.contour(xs, ys, clipped, levels=12, colors="k", linewidths=0.3, alpha=0.5)
    figure.colorbar(contours, ax=energy_axis, shrink=0.8, label="energy E")
    energy_axis.scatter(data[:, 0], data[:, 1], s=1.5, color="tab:cyan", alpha=0.5, linewidths=0,
                        label="data")
    if samples is not None:
        model = check_particles(samples, "samples", dim=2).detach().cpu()[: int(max_points)]
        model = model.double().numpy()
        energy_axis.scatter(model[:, 0], model[:, 1], s=1.5, color="tab:green", alpha=0.5,
                            linewidths=0, label="model samples")
    energy_axis.set_xlim(xs[0], xs[-1])
    energy_axis.set_ylim(ys[0], ys[-1])
    energy_axis.legend(loc="upper right", fontsize=7, markerscale=4)
    energy_axis.set_title("energy landscape")
    for axis in (density_axis, energy_axis):
        axis.set_xlabel("x1")
        axis.set_ylabel("x2")


def energy_landscape_figure(
    energy_net: torch.nn.Module,
    data: Tensor,
    path: str | os.PathLike[str],
    *,
    grid_size: int = 200,
    lims: Any = None,
    samples: Tensor | None = None,
    max_points: int = 2000,
    title: str | None = None,
) -> str:
    """Draw the learned density and energy of a 2-D EBM with the data on top; returns the path.

    Left: the density exp(-E) normalized on a ``grid_size``^2 grid (:func:`energy_on_grid`), with
    up to ``max_points`` data points ``(n, 2)``. Right: contours of E with the data and ``samples``
    ``(m, 2)`` of the model when given (:func:`draw_energy_landscape`). ``lims`` defaults to the
    data's range padded by 15% on each side. Written as PNG through
    :func:`measureflow._core.save_figure` (atomic).
    """
    data = check_particles(data, "data", dim=2)
    lims = _default_lims(data.detach().cpu()) if lims is None else _check_lims(lims)
    grid = energy_on_grid(energy_net, lims, grid_size)
    figure, axes = new_figure(2, 1, width=4.4, height=4.0)
    draw_energy_landscape(figure, axes[0, 0], axes[0, 1], grid, data, samples=samples,
                          max_points=max_points)
    if title is not None:
        figure.suptitle(title)
    return save_figure(figure, path)
