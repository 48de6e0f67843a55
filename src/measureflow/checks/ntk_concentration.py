r"""Check: the empirical NTK at a random initialization concentrates around K_inf at the rate M^(-1/2),
inside the Hoeffding bound of the text.

Claim (seed 001, "ランダム初期値とNTKの正定値性", the lemma before "Optimization in NTK regime").
For n points x_i on the unit sphere and the two-layer ReLU network with a_j = +-1, w_j ~ N(0, I),
the NTK K_M at initialization satisfies ||K_M - K_inf||_F ~ M^(-1/2), and for the inner-layer
kernel

    P( ||K_M - K_inf||_F^2 <= n^2 log(2 n^2 / delta) / (2M) ) >= 1 - delta.

Derivation. Each entry is a mean of M i.i.d. terms, K_M,ij = (1/M) sum_j Z_ij(w_j), with mean
K_inf,ij (:func:`measureflow.nets.analytic_ntk`). Hence E ||K_M - K_inf||_F^2 = (1/M) sum_ij
Var Z_ij exactly, at every M: the root mean square of ||K_M - K_inf||_F is C^(1/2) M^(-1/2) with
no lower-order terms, whereas the mean of the norm itself (or of its log) carries O(1/M)
corrections. For the inner layer (train=("w",)) with ReLU,
Z_ij = (x_i . x_j) 1{w.x_i > 0} 1{w.x_j > 0} = c_ij B with B Bernoulli(K_inf,ij / c_ij), so

    C_w = sum_ij Var Z_ij = sum_ij K_inf,ij (c_ij - K_inf,ij),    c_ij = x_i . x_j,

in closed form. The Hoeffding part is stated for this kernel only, and we check it there: its
terms lie in an interval of length |c_ij| <= 1 (between 0 and c_ij), so Hoeffding gives
P(|K_M,ij - K_inf,ij| > s) <= 2 exp(-2 M s^2), i.e. |K_M,ij - K_inf,ij| <= sqrt(log(2/delta')/(2M))
with probability >= 1 - delta'; a union bound over the n^2 entries with delta' = delta / n^2
gives the lemma. The outer-layer terms relu(w.x_i) relu(w.x_j) of the full NTK are unbounded
(Gaussian tails), so Hoeffding does not apply to them; the M^(-1/2) rate still does.

Method. n points uniform on S^(d-1). For each width M on a geometric grid, D independent
initializations with both layers trained and D with the inner layer only (float64;
:func:`measureflow.nets.empirical_ntk` per draw, the closed form of two matrix products). Fits:
weighted least squares of log RMS_M = (1/2) log mean_D ||K_M - K_inf||_F^2 against log M, each
point with the delta-method standard error (1/2) sd / (mean sqrt(D)) of the D squared norms (the
widths use independent draws, so the points are independent).

Verdict, k = 3.29 (two-sided normal, false-alarm rate 1e-3 per comparison):
(a) both slopes (both layers; inner layer) within k SE of -1/2;
(b) inner layer, the level: the mean over all draws of M ||K_M - K_inf||_F^2 within k SE of C_w
    (SE = sd / sqrt(#draws), the draws independent);
(c) Hoeffding: the fraction of draws violating the lemma's bound is <= delta + k sqrt(delta
    (1 - delta) / #draws) (one-sided binomial), and the mean fraction of entries with
    |K_M,ij - K_inf,ij| > sqrt(log(2/delta)/(2M)) is <= delta + k SE (SE over draws); the slack
    (bound / measured) is reported: union bounds and Hoeffding's worst case make it large.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from measureflow._core import make_generator
from measureflow.checks._figures import format_list, new_figure, save_figure
from measureflow.checks._two_layer_runs import FALSE_ALARM, sphere_points, weighted_slope
from measureflow.checks.base import CheckResult
from measureflow.nets import TwoLayer, analytic_ntk, empirical_ntk

__all__ = ["inner_layer_variance", "run"]

NAME = "ntk-concentration"
DELTA = 0.05


@dataclass(frozen=True)
class _Settings:
    n_points: int
    dim: int
    widths: tuple[int, ...]
    n_draws: int


SETTINGS = {
    "quick": _Settings(n_points=16, dim=8, widths=(16, 64, 256, 1024, 4096), n_draws=100),
    "full": _Settings(n_points=32, dim=8, widths=(16, 64, 256, 1024, 4096, 16384, 65536), n_draws=1000),
}


def inner_layer_variance(x: Tensor) -> Tensor:
    """C_w = sum_ij K_ij (c_ij - K_ij): M E||K_M - K_inf||_F^2 for the inner-layer ReLU NTK (|x_i| = 1)."""
    kernel = analytic_ntk(x, train=("w",))
    return (kernel * (x @ x.T - kernel)).sum()


def _draws(x: Tensor, width: int, layers: tuple[str, ...], kernel: Tensor, n_draws: int,
           generator: torch.Generator, device: str) -> Tensor:
    """K_M - K_inf for ``n_draws`` independent initializations, ``(n_draws, n, n)``."""
    deviations = []
    for _ in range(n_draws):
        net = TwoLayer(x.shape[1], width, train=layers, generator=generator, dtype=torch.float64,
                       device=device)
        deviations.append(empirical_ntk(net, x) - kernel)
    return torch.stack(deviations)


def run(size: str, seed: int, device: str, out_dir: Path) -> CheckResult:
    settings = SETTINGS[size]
    generator = make_generator(seed, device)
    n = settings.n_points
    x = sphere_points(n, settings.dim, generator, device)
    kernels = {"both": analytic_ntk(x), "inner": analytic_ntk(x, train=("w",))}
    layers = {"both": ("a", "w"), "inner": ("w",)}
    constant = float(inner_layer_variance(x))
    critical = -float(torch.distributions.Normal(0.0, 1.0).icdf(torch.tensor(FALSE_ALARM / 2)))
    squared = {name: [] for name in kernels}  # per width: (D,) squared Frobenius deviations
    violations = 0
    entry_fractions = []
    slack = []
    for width in settings.widths:
        for name, kernel in kernels.items():
            deviation = _draws(x, width, layers[name], kernel, settings.n_draws, generator, device)
            norms = deviation.square().sum((1, 2)).cpu()
            squared[name].append(norms)
            if name == "inner":
                bound = n**2 * math.log(2 * n**2 / DELTA) / (2 * width)
                violations += int((norms > bound).sum())
                slack.append(bound / norms)
                entry = math.sqrt(math.log(2 / DELTA) / (2 * width))
                entry_fractions.append((deviation.abs() > entry).double().mean((1, 2)).cpu())

    log_width = torch.tensor([math.log(width) for width in settings.widths], dtype=torch.float64)
    fits, rms = {}, {}
    for name, per_width in squared.items():
        means = torch.stack([norms.mean() for norms in per_width])
        se = torch.stack([0.5 * norms.std() / (norms.mean() * math.sqrt(norms.numel()))
                          for norms in per_width])
        rms[name] = (means.sqrt(), se)
        fits[name] = weighted_slope(log_width, 0.5 * means.log(), se)
    scaled = torch.cat([norms * width
                        for norms, width in zip(squared["inner"], settings.widths, strict=True)])
    level, level_se = float(scaled.mean()), float(scaled.std() / math.sqrt(scaled.numel()))
    level_z = (level - constant) / level_se
    n_total = scaled.numel()
    violation_rate = violations / n_total
    violation_limit = DELTA + critical * math.sqrt(DELTA * (1 - DELTA) / n_total)
    fractions = torch.cat(entry_fractions)
    entry_rate = float(fractions.mean())
    entry_limit = DELTA + critical * float(fractions.std()) / math.sqrt(fractions.numel())
    slack_all = torch.cat(slack)
    # The mean of log ||K_M - K_inf||_F carries O(1/M) corrections; its slope is reported, not judged.
    log_means = [float(norms.sqrt().log().mean()) for norms in squared["both"]]
    log_mean_slope = float(np.polyfit(log_width.numpy(), log_means, 1)[0])

    slopes_ok = all(fit.agrees(-0.5) for fit in fits.values())
    level_ok = abs(level_z) <= critical
    hoeffding_ok = violation_rate <= violation_limit and entry_rate <= entry_limit
    figure = _figure(settings, rms, fits, squared["inner"], constant, out_dir / f"{NAME}.png")
    return CheckResult(
        name=NAME,
        claim=(
            "The empirical NTK at a random initialization concentrates: "
            "$\\|K_M - K_\\infty\\|_F \\sim M^{-1/2}$ (root mean square over draws, both layers and "
            "inner layer), and for the inner-layer kernel the text's Hoeffding bound "
            "$\\|K_M - K_\\infty\\|_F^2 \\le \\frac{n^2 \\log(2n^2/\\delta)}{2M}$ holds "
            f"with probability $\\ge 1 - \\delta$. (ReLU, n = {n} points on S^{settings.dim - 1}, "
            f"M = {format_list(settings.widths)}, {settings.n_draws} draws per width and kernel, "
            f"delta = {DELTA:g}, float64.)"
        ),
        predicted=(
            f"slopes -0.5; inner layer M E||K_M - K_inf||_F^2 = C_w = {constant:.4g} exactly; bound "
            f"violated in <= {DELTA:.0%} of draws and per entry (|dK_ij| > sqrt(log(2/delta)/(2M))) "
            f"in <= {DELTA:.0%} of entries"
        ),
        measured=(
            f"slope (both layers) {fits['both'].slope:.4f} +- {fits['both'].se:.4f} "
            f"(z = {fits['both'].z(-0.5):.2f}); slope (inner) {fits['inner'].slope:.4f} +- "
            f"{fits['inner'].se:.4f} (z = {fits['inner'].z(-0.5):.2f}); M ||dK||_F^2 = {level:.4g} +- "
            f"{level_se:.2g} (z = {level_z:.2f}); bound violated in {violations}/{n_total} draws, "
            f"entries beyond the per-entry bound {entry_rate:.2%}; slack bound / measured: median "
            f"{float(slack_all.median()):.3g}, min {float(slack_all.min()):.3g}; slope of the mean of "
            f"log ||dK||_F (both, not judged) {log_mean_slope:.4f}"
        ),
        tolerance=(
            f"|z| <= {critical:.2f} (two-sided normal, false-alarm rate {FALSE_ALARM:g} per comparison) "
            "for both slopes (weighted least squares, delta-method SE of each width's mean of D "
            "squared norms) and for the level C_w (SE over all draws); Hoeffding (one-sided): "
            f"violation rate <= delta + {critical:.2f} sqrt(delta (1 - delta) / {n_total}) = "
            f"{violation_limit:.4f}, per-entry rate <= delta + {critical:.2f} SE = {entry_limit:.4f}."
        ),
        passed=bool(slopes_ok and level_ok and hoeffding_ok),
        details={
            "delta": DELTA, "critical": critical, "constant_inner": constant,
            "fit_both": fits["both"].to_dict(), "fit_inner": fits["inner"].to_dict(),
            "rms_both": rms["both"][0].tolist(), "rms_inner": rms["inner"][0].tolist(),
            "level": level, "level_se": level_se, "level_z": level_z,
            "violations": violations, "n_draws_total": n_total, "violation_limit": violation_limit,
            "entry_rate": entry_rate, "entry_limit": entry_limit,
            "slack_median": float(slack_all.median()), "slack_min": float(slack_all.min()),
            "log_mean_slope_both": log_mean_slope,
            "slopes_ok": slopes_ok, "level_ok": level_ok, "hoeffding_ok": hoeffding_ok,
        },
        figures=(figure,),
    )


def _figure(settings, rms, fits, inner_squared, constant, path: Path) -> str:
    figure, axes = new_figure(2, 1, width=4.8, height=3.7)
    widths = np.array(settings.widths, dtype=float)
    grid = np.geomspace(widths.min(), widths.max(), 50)
    n = settings.n_points
    axis = axes[0, 0]
    for name, color, label in (("both", "tab:blue", "both layers"), ("inner", "tab:red", "inner layer")):
        values, se = rms[name]
        values = values.numpy()
        axis.errorbar(widths, values, yerr=[values * (1 - np.exp(-3 * se.numpy())),
                                            values * (np.exp(3 * se.numpy()) - 1)],
                      fmt="o", color=color, markersize=4, capsize=3, label=f"{label} (+- 3 SE)")
        fit = fits[name]
        axis.loglog(grid, np.exp(fit.intercept) * grid**fit.slope, "-", color=color, linewidth=1.0,
                    label=f"fit: slope {fit.slope:.3f} +- {fit.se:.3f}")
    axis.loglog(grid, np.sqrt(constant / grid), "k--", linewidth=1.0, label="inner: sqrt(C_w / M) predicted")
    axis.set_xlabel("width M")
    axis.set_ylabel("RMS over draws of ||K_M - K_inf||_F")
    axis.set_title("concentration of the NTK at initialization")
    axis.legend(fontsize=7)
    axis = axes[0, 1]
    for width, norms in zip(settings.widths, inner_squared, strict=True):
        values = (norms * width).numpy()
        spread = width * np.exp(np.linspace(-0.15, 0.15, values.size))  # a deterministic horizontal spread
        axis.plot(spread, values, ".", color="tab:red", markersize=2, alpha=0.5,
                  label="each draw" if width == settings.widths[0] else None)
    axis.axhline(n**2 * math.log(2 * n**2 / DELTA) / 2, color="tab:orange", linewidth=1.2,
                 label=f"Hoeffding bound n^2 log(2n^2/delta) / 2, delta = {DELTA:g}")
    axis.axhline(constant, color="k", linestyle="--", linewidth=1.0, label=f"exact mean C_w = {constant:.3g}")
    axis.set_xscale("log")
    axis.set_yscale("log")
    axis.set_xlabel("width M")
    axis.set_ylabel("M ||K_M - K_inf||_F^2 (inner layer), each draw")
    axis.set_title("the text's bound vs the measured distribution")
    axis.legend(fontsize=7)
    return save_figure(figure, path)
