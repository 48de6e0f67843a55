"""Figures of a posterior: a corner plot (marginals and pairs) and a posterior predictive check."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from torch import Tensor

from measureflow._core import new_figure

__all__ = ["corner_figure", "predictive_figure"]

_COLORS = ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown", "tab:pink",
           "tab:gray")
_MAX_POINTS = 2_000  # points per pair panel (more only hides the density)


def _numpy(x: Tensor | np.ndarray) -> np.ndarray:
    return x.detach().cpu().double().numpy() if isinstance(x, Tensor) else np.asarray(x, dtype=float)


def corner_figure(samples: Mapping[str, Tensor | np.ndarray], names: Sequence[str], *, title: str,
                  truth: Sequence[float] | None = None, log_scale: bool = False) -> Any:
    """A p x p corner plot of one or more sample sets ``{label: (n, p)}``: histograms on the diagonal,
    scatter plots of pairs below it; ``truth`` (p values) drawn as lines; ``log_scale`` puts every
    axis on a log scale (positive parameters such as Lotka-Volterra's)."""
    p = len(names)
    figure, axes = new_figure(p, p, width=2.3, height=2.1)
    sets = {label: _numpy(values) for label, values in samples.items()}
    transform = np.log10 if log_scale else (lambda v: v)
    for (label, values), color in zip(sets.items(), _COLORS, strict=False):
        shown = transform(values[np.isfinite(values).all(1)][:_MAX_POINTS * 5])
        for i in range(p):
            axes[i, i].hist(shown[:, i], bins=40, density=True, histtype="step", color=color, label=label)
            for j in range(i):
                pts = shown[:_MAX_POINTS]
                axes[i, j].scatter(pts[:, j], pts[:, i], s=1.5, alpha=0.3, color=color, rasterized=True)
    for i in range(p):
        for j in range(p):
            axis = axes[i, j]
            if j > i:
                axis.set_visible(False)
                continue
            if truth is not None:
                axis.axvline(transform(truth[j]), color="black", lw=0.8)
                if j < i:
                    axis.axhline(transform(truth[i]), color="black", lw=0.8)
            prefix = "log10 " if log_scale else ""
            if i == p - 1:
                axis.set_xlabel(prefix + names[j])
            if j == 0 and i > 0:
                axis.set_ylabel(prefix + names[i])
            axis.tick_params(labelsize=7)
    axes[0, 0].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.05, 1.0))
    figure.suptitle(title)
    return figure


def predictive_figure(times: Tensor | np.ndarray, observation: Tensor | np.ndarray,
                      predictive: Tensor | np.ndarray, series: Sequence[str], *, title: str,
                      log_scale: bool = True) -> Any:
    """Posterior predictive check: simulated data ``(n, s * T)`` (``s`` series of ``T`` times, flattened
    series by series) as the median and the 50% and 90% bands per series, against the observation
    ``(s * T,)`` as points. NaN rows (failed simulations) are skipped."""
    t = _numpy(times)
    y_obs = _numpy(observation).reshape(len(series), -1)
    draws = _numpy(predictive)
    draws = draws[np.isfinite(draws).all(1)].reshape(-1, len(series), t.shape[0])
    figure, axes = new_figure(len(series), 1, width=4.6, height=3.3)
    for index, (name, color) in enumerate(zip(series, _COLORS, strict=False)):
        axis = axes[0, index]
        if draws.shape[0]:
            q05, q25, q50, q75, q95 = np.quantile(draws[:, index], [0.05, 0.25, 0.5, 0.75, 0.95], axis=0)
            axis.fill_between(t, q05, q95, color=color, alpha=0.2, label="90% predictive")
            axis.fill_between(t, q25, q75, color=color, alpha=0.4, label="50% predictive")
            axis.plot(t, q50, color=color, lw=1.2, label="predictive median")
        axis.plot(t, y_obs[index], "o", color="black", ms=4, label="observation")
        if log_scale:
            axis.set_yscale("log")
        axis.set_xlabel("t")
        axis.set_title(name)
        axis.legend(fontsize=7)
    figure.suptitle(f"{title} ({draws.shape[0]} simulations)")
    return figure
