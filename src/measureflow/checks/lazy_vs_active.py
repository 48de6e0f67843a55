r"""Check: lazy versus active training. At a fixed training loss the weights have moved by a relative
amount ~ M^(-1/2) under the NTK scaling and by an amount of order one under the mean-field scaling.

Claim (seed 001, "ニつのスケーリング", "NTKと平均場の違い"). For f(x) = s(M) sum_j a_j relu(w_j . x)
with a_j = +-1, w_j ~ N(0, I), the scaling s(M) decides how far training moves the parameters
relative to their initial size: with s = M^(-1/2) (NTK) the network fits the data with a change
||theta - theta_0|| / ||theta_0|| -> 0 like M^(-1/2) ("lazy": it stays in the linearization around
theta_0); with s = 1/M (mean field) every neuron must move by O(1), so the relative change stays of
order one for every M ("active": feature learning, the neurons' measure is transported).

Derivation. ||theta_0||^2 = sum_j (a_j^2 + |w_j|^2) ~ M (1 + d). NTK: the outputs move by
J (theta - theta_0) with J J^T = K_M -> K_inf = O(1), so fitting a residual of size O(1) takes
||theta - theta_0|| = O(1) (in the linearized limit theta - theta_0 = J^T c with
c^T K c = ||theta - theta_0||^2 and c = O(1)): relative movement O(M^(-1/2)). Mean field with
lr = h M (``train``'s advice; :class:`measureflow.nets.MeanFieldRisk`'s flow with step h): each
neuron (a_j, w_j) follows the M-independent mean-field velocity at rate h, so after the
M-independent time needed to reach a given loss each neuron has moved O(1), the total by
O(M^(1/2)), and the relative movement tends to the mean-field limit's constant: slope 0. By
propagation of chaos the finite-M value differs from it by O(M^(-1/2)) fluctuations (mean zero to
first order), which the fit's scatter absorbs.

Method. n points uniform on S^(d-1), y = sin(pi x_1). For each width M on a geometric grid and
each of S independent initializations (float64), full-batch gradient descent on the mean loss
(1/2n) sum (f - y)^2 until the loss first falls below the fixed target Q L_ref, L_ref = |y|^2 / 2n
(the loss of f = 0, the initial loss of the mean-field limit). The target is the same for every
width and both scalings; a fraction of each run's own L_0 would put the random initial output
f_0 (O(M^(-1/2)) in mean field) into the target and bias the mean-field slope. The movement
||theta_k - theta_0|| / ||theta_0|| over both layers is read where the loss crosses the target,
interpolated between the last two iterates (linearly in log loss): without it the stop is
quantized to whole steps, a jitter of about 2% that is not small next to the mean-field scatter.
NTK: lr = 0.1 n / lambda_max(K_inf) (the kernel flow's step h = lr / n is a tenth of its
stability edge); mean field: lr = H M.

Verdict. For each scaling, least squares of log(movement) against log(M) over all runs (one
point per run); pass if |slope + 1/2| <= k SE (NTK) and |slope| <= k SE (mean field), with k the
Student-t(N - 2) quantile for a two-sided false-alarm rate of 1e-3, and every run must reach the
target. Weights follow the measured scatter: under the NTK scaling log(movement) scatters by the
same amount at every M (a random constant times M^(-1/2); measured sd 0.20-0.28 from M = 64 to
16384), so the points are weighted equally; under the mean-field scaling the scatter is the
O(M^(-1/2)) fluctuation of the particle system about its limit (measured sd x sqrt(M) = 0.53-0.69
over the same range), so the weights are proportional to M and sigma^2 is estimated from the
weighted residuals. The grid starts at M = 256: at M = 64 the mean-field movement is a few percent
above its limit (a finite-size correction; e.g. +4.5% on average over 12 data sets), which at
the mean-field fit's precision would read as a slope.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from measureflow._core import make_generator
from measureflow.checks._figures import format_list, new_figure, save_figure
from measureflow.checks._two_layer_runs import least_squares_slope, sphere_points, teacher
from measureflow.checks.base import CheckResult
from measureflow.nets import DescentRun, TwoLayer, analytic_ntk, gradient_descent

__all__ = ["movement_at_loss", "run"]

NAME = "lazy-vs-active"
TARGET_FRACTION = 0.1  # Q: stop at L <= Q |y|^2 / 2n
NTK_STEP = 0.25  # h lambda_max(K_inf) for the NTK runs
MEAN_FIELD_STEP = 0.5  # H: lr = H M for the mean-field runs
MAX_STEPS = 5000
PREDICTED = {"ntk": -0.5, "mean-field": 0.0}


@dataclass(frozen=True)
class _Settings:
    n_points: int
    dim: int
    widths: tuple[int, ...]
    n_seeds: int


SETTINGS = {
    "quick": _Settings(n_points=16, dim=8, widths=(256, 1024, 4096, 16384), n_seeds=4),
    "full": _Settings(n_points=32, dim=8, widths=(256, 1024, 4096, 16384, 65536), n_seeds=8),
}


def movement_at_loss(descent: DescentRun, target: float) -> float:
    """The movement where the loss crosses ``target``, interpolated between the last two iterates
    linearly in log(loss) (the loss decays about geometrically over one small step)."""
    if descent.steps == 0:
        return float(descent.movements[0])
    before, after = math.log(float(descent.losses[-2])), math.log(float(descent.losses[-1]))
    if not before > math.log(target) >= after:
        return float(descent.movements[-1])
    share = (before - math.log(target)) / (before - after)
    return float(descent.movements[-2] + share * (descent.movements[-1] - descent.movements[-2]))


def run(size: str, seed: int, device: str, out_dir: Path) -> CheckResult:
    settings = SETTINGS[size]
    generator = make_generator(seed, device)
    n = settings.n_points
    x = sphere_points(n, settings.dim, generator, device)
    y = teacher(x)
    lambda_max = float(torch.linalg.eigvalsh(analytic_ntk(x))[-1])
    reference = float(y.square().mean() / 2)  # the loss of f = 0, the mean-field limit's initial loss
    target = TARGET_FRACTION * reference
    rows = []
    for scaling in PREDICTED:
        for width in settings.widths:
            lr = NTK_STEP * n / lambda_max if scaling == "ntk" else MEAN_FIELD_STEP * width
            for replicate in range(settings.n_seeds):
                net = TwoLayer(settings.dim, width, scaling=scaling, generator=generator, dtype=torch.float64,
                               device=device)
                descent = gradient_descent(net, x, y, lr=lr, n_steps=MAX_STEPS, stop_loss=target)
                ratio = float(descent.losses[-1]) / reference
                rows.append({"scaling": scaling, "width": width, "replicate": replicate, "lr": lr,
                             "steps": descent.steps, "movement": movement_at_loss(descent, target),
                             "movement_at_stop": float(descent.movements[-1]), "loss_ratio": ratio,
                             "initial_loss": float(descent.losses[0]), "reached": ratio <= TARGET_FRACTION})

    fits = {}
    for scaling in PREDICTED:
        group = [row for row in rows if row["scaling"] == scaling]
        widths = torch.tensor([float(row["width"]) for row in group], dtype=torch.float64)
        # NTK: scale-free scatter (a random constant times M^(-1/2)): equal weights. Mean field: the
        # fluctuations about the limit are O(M^(-1/2)), so Var log(movement) ~ 1/M: weights M.
        log_movement = torch.tensor([math.log(row["movement"]) for row in group])
        fits[scaling] = least_squares_slope(widths.log(), log_movement,
                                            weights=widths if scaling == "mean-field" else None)
    reached = all(row["reached"] for row in rows)
    slopes_ok = all(fits[scaling].agrees(PREDICTED[scaling]) for scaling in PREDICTED)

    def summary(scaling: str, key: str) -> list[float]:
        return [float(np.mean([row[key] for row in rows
                               if row["scaling"] == scaling and row["width"] == width]))
                for width in settings.widths]

    figure = _figure(rows, fits, settings, out_dir / f"{NAME}.png")
    ntk, mf = fits["ntk"], fits["mean-field"]
    return CheckResult(
        name=NAME,
        claim=(
            "At a fixed training loss (where gradient descent first reaches $L = "
            f"{TARGET_FRACTION:g} |y|^2 / 2n$) the relative weight movement "
            "$\\|\\theta - \\theta_0\\| / \\|\\theta_0\\|$ "
            "falls like $M^{-1/2}$ under the NTK scaling (lazy) and stays of order one under the "
            "mean-field scaling (active). (ReLU, both layers, "
            f"n = {n} points on $S^{{{settings.dim - 1}}}$, $y = \\sin(\\pi x_1)$, "
            f"M = {format_list(settings.widths)}, {settings.n_seeds} initializations each; "
            f"NTK $\\mathrm{{lr}} = {NTK_STEP:g}\\, n / \\lambda_{{\\max}}(K_\\infty)$, "
            f"mean-field $\\mathrm{{lr}} = {MEAN_FIELD_STEP:g}\\, M$; float64.)"
        ),
        predicted="slope of log(movement) vs log(M): -0.5 (NTK), 0 (mean field)",
        measured=(
            f"NTK slope {ntk.slope:.3f} +- {ntk.se:.3f} (z = {ntk.z(-0.5):.2f}), movement by width "
            f"{format_list(summary('ntk', 'movement'), 3)}; mean-field slope {mf.slope:.4f} +- {mf.se:.4f} "
            f"(z = {mf.z(0.0):.2f}), movement {format_list(summary('mean-field', 'movement'), 3)}; steps "
            f"to the target (mean) NTK {format_list(summary('ntk', 'steps'), 3)}, mean field "
            f"{format_list(summary('mean-field', 'steps'), 3)}; L / L_ref at the stop in "
            f"[{min(row['loss_ratio'] for row in rows):.3f}, {max(row['loss_ratio'] for row in rows):.3f}]"
        ),
        tolerance=(
            f"|slope - predicted| <= {ntk.critical:.2f} SE, the Student-t({ntk.dof}) quantile for a "
            "two-sided "
            f"false-alarm rate of 1e-3, SE from the least-squares fit over {ntk.dof + 2} independent runs "
            "per scaling (equal weights under the NTK scaling, weights M under the mean-field scaling, "
            "whose scatter is O(M^(-1/2))); every run must reach the target loss within "
            f"{MAX_STEPS} steps."
        ),
        passed=bool(reached and slopes_ok),
        details={"fit_ntk": ntk.to_dict(), "fit_mean_field": mf.to_dict(), "all_reached": reached,
                 "lambda_max": lambda_max, "runs": rows},
        figures=(figure,),
    )


def _figure(rows, fits, settings, path: Path) -> str:
    figure, axes = new_figure(1, 1, width=5.6, height=4.2)
    axis = axes[0, 0]
    widths = np.array(settings.widths, dtype=float)
    grid = np.geomspace(widths.min(), widths.max(), 50)
    for scaling, color, label in (("ntk", "tab:blue", "NTK, s = M^-1/2"),
                                  ("mean-field", "tab:red", "mean field, s = 1/M")):
        group = [row for row in rows if row["scaling"] == scaling]
        axis.loglog([row["width"] for row in group], [row["movement"] for row in group], "o", color=color,
                    markersize=4, alpha=0.6, label=f"{label}, each init")
        fit = fits[scaling]
        axis.loglog(grid, np.exp(fit.intercept) * grid**fit.slope, "-", color=color, linewidth=1.2,
                    label=f"fit: slope {fit.slope:.3f} +- {fit.se:.3f}")
        log_m = np.log([row["width"] for row in group])
        log_v = np.log([row["movement"] for row in group])
        anchor = np.exp(np.mean(log_v) - PREDICTED[scaling] * np.mean(log_m))
        axis.loglog(grid, anchor * grid ** PREDICTED[scaling], "--", color="k", linewidth=0.9,
                    label=f"predicted slope {PREDICTED[scaling]:g}")
    axis.set_xlabel("width M")
    axis.set_ylabel(f"||theta - theta_0|| / ||theta_0|| at L = {TARGET_FRACTION:g} |y|^2 / 2n")
    axis.set_title("lazy (NTK) vs active (mean-field) training")
    axis.legend(fontsize=7)
    return save_figure(figure, path)
