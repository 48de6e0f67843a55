"""Figures of cause-effect decisions: the data and the fitted joints of a few pairs, and the
decision-rate curves of several methods."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from torch import Tensor

from measureflow._core import new_figure

__all__ = ["decision_rate_figure", "joints_figure"]

_MAX_POINTS = 1_500  # points per panel (more only hides the density)


def _numpy(x: Tensor) -> np.ndarray:
    return x.detach().cpu().double().numpy()[:_MAX_POINTS]


def joints_figure(names: Sequence[str], data: Sequence[tuple[Tensor, Tensor]], results: Sequence[Any],
                  truths: Sequence[int] | None, *, title: str) -> Any:
    """One row per pair: the standardized data ``(x, y)`` with the decision, and where the method
    generated them (CGNN, Meta-CGNN) the fitted joints (x, f(x, z)) and (g(y, z), y) over the data,
    with their MMD^2."""
    fitted = all("xy" in result.fitted and "yx" in result.fitted for result in results)
    n_cols = 3 if fitted else 1
    figure, axes = new_figure(n_cols, len(results), width=3.2, height=2.9)
    axes = np.asarray(axes).reshape(len(results), n_cols)
    for row, (name, (x, y), result) in enumerate(zip(names, data, results, strict=True)):
        x, y = _numpy((x - x.mean()) / x.std()), _numpy((y - y.mean()) / y.std())
        arrow = "x -> y" if result.direction == 1 else "y -> x"
        truth = "" if truths is None else f", truth {'x -> y' if truths[row] == 1 else 'y -> x'}"
        ax = axes[row, 0]
        ax.scatter(x, y, s=2, color="tab:blue", rasterized=True)
        ax.set_title(f"{name}: decided {arrow}{truth}", fontsize=8)
        if fitted:
            reference = _numpy(result.fitted["data"])
            for col, (label, key) in enumerate((("xy", "mmd_xy"), ("yx", "mmd_yx")), start=1):
                points = _numpy(result.fitted[label])
                value = result.details[key]
                value = float(np.mean(value)) if isinstance(value, list) else float(value)
                ax = axes[row, col]
                ax.scatter(reference[:, 0], reference[:, 1], s=2, color="0.75", rasterized=True)
                ax.scatter(points[:, 0], points[:, 1], s=2, color="tab:orange", rasterized=True)
                hypothesis = "x -> y: (x, f(x, z))" if label == "xy" else "y -> x: (g(y, z), y)"
                ax.set_title(f"fit {hypothesis}\nMMD$^2$ = {value:.2e}", fontsize=8)
        for ax in axes[row]:
            ax.set_xlabel("x")
            ax.set_ylabel("y")
    figure.suptitle(title, fontsize=10)
    return figure


def decision_rate_figure(curves: Mapping[str, tuple[Sequence[float], Sequence[float], float]], *,
                         title: str, n_effective: float | None = None) -> Any:
    """Weighted accuracy of the most confident decisions against the decision rate, one line per
    method ``{name: (rates, accuracies, auc)}``; with ``n_effective``, the band where chance lies
    with 95% probability (+-1.96 / (2 sqrt(n_eff r)) around 1/2 at rate r)."""
    figure, axes = new_figure(1, 1, width=5.5, height=4.0)
    ax = np.asarray(axes).ravel()[0]
    for name, (rates, accuracies, auc) in curves.items():
        ax.plot(rates, accuracies, label=f"{name} (AUC {auc:.2f})")
    if n_effective is not None:
        r = np.linspace(0.02, 1.0, 100)
        half = 1.96 / (2 * np.sqrt(n_effective * r))
        ax.fill_between(r, np.clip(0.5 - half, 0, 1), np.clip(0.5 + half, 0, 1), color="0.85",
                        label="chance, 95%")
    ax.axhline(0.5, color="0.5", lw=0.8)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("decision rate")
    ax.set_ylabel("weighted accuracy")
    ax.legend(fontsize=8, loc="lower left")
    ax.set_title(title, fontsize=10)
    return figure
