r"""Check: the loss landscape of a wide two-layer network. With M >= n neurons gradient descent from
a random initialization reaches zero training loss on every draw; with M much smaller than n a
measurable fraction of the draws stalls, although zero loss is reachable at that width.

Claim (seed 001, "Loss landscape"; Venturi, Bandeira & Bruna 2019). For n data points, a convex
loss and any continuous activation, the training error of f(x) = sum_{m <= M} a_m sigma(w_m . x)
with M >= n has no spurious valleys: every path-connected component of every sub-level set
contains a global minimizer, so every local minimum is global. The text adds that whether a
gradient method reaches the global minimum is a separate question; this check measures it: the
fraction of random initializations from which plain full-batch gradient descent interpolates, as a
function of M / n.

Set-up. n points uniform on S^(d-1) and labels y_i ~ N(0, 1) independent of x (no structure to
exploit: interpolating them is the hardest case and needs the network's full capacity). ReLU,
both layers trained, the text's initialization (a_m = +-1, w_m ~ N(0, I)) and the NTK scaling
s = M^(-1/2) (the scaling changes only the time scale of GD here, not which minima exist).
:func:`measureflow.nets.batched_gradient_descent` trains all draws of one width as one tensor
program: T steps on the mean squared risk R = (1/2n) sum_i (f(x_i) - y_i)^2 with step lr
(float64). Every width has (d + 1) M >= n parameters, so parameter counting alone does not rule
out interpolation at any width of the grid.

Outcome of a draw, from R_T / R_0 at the horizon T:
- success: R_T <= 1e-6 R_0 (zero training loss to six digits);
- stalled: R_T >= 1e-3 R_0, stuck three orders of magnitude above the successes;
- unresolved: in between (still descending; reported, and not allowed at M >= n).

Verdict.
1. Every draw at every M >= n succeeds. With B draws per width, zero failures in the W widths
   >= n bounds the failure rate by 1 - (1e-3)^(1 / (W B)) at confidence 1 - 1e-3 (reported).
2. At the small width M_s = n / 4 the stalled fraction is measurable: its one-sided Clopper-Pearson
   lower bound at confidence 1 - 1e-3 exceeds 2%; and at least one draw at M_s succeeds, which
   certifies that zero loss is reachable at that width, so the stalls are the optimizer's (a
   valley or plateau of the landscape) and not missing capacity. Power: the stalled rate at M_s
   measured over data sets is 0.2-0.47; at a rate of 0.25 the 2% bound fails by chance with
   probability 0.3% (B = 60, binomial), at 0.2 with 3%.
The success rate against M / n, with Clopper-Pearson intervals, is the figure, next to the risk
curves of the draws at M_s.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from scipy import stats

from measureflow._core import make_generator
from measureflow.checks._figures import format_list, new_figure, save_figure, to_numpy
from measureflow.checks._two_layer_runs import sphere_points
from measureflow.checks.base import CheckResult
from measureflow.nets import batched_gradient_descent, batched_init

__all__ = ["run"]

NAME = "landscape"
SUCCESS = 1e-6  # R_T / R_0 at or below: zero training loss
STALLED = 1e-3  # R_T / R_0 at or above: stalled
CONFIDENCE = 1e-3  # one-sided error rate of each binomial statement
MEASURABLE = 0.02  # the lower bound on the stalled fraction at M = n / 4 must exceed this
LR = 2.0  # about a third of the stability edge 2 n / lambda_max(K) of the tangent kernel here


@dataclass(frozen=True)
class _Settings:
    n_points: int
    dim: int
    widths: tuple[int, ...]
    n_draws: int
    n_steps: int


SETTINGS = {
    "quick": _Settings(n_points=32, dim=8, widths=(4, 8, 16, 32, 64), n_draws=60, n_steps=3000),
    "full": _Settings(n_points=32, dim=8, widths=(4, 6, 8, 12, 16, 24, 32, 48, 64), n_draws=250,
                      n_steps=6000),
}


def _clopper_pearson(successes: int, trials: int) -> tuple[float, float]:
    """The one-sided 1 - CONFIDENCE lower and upper bounds on a binomial rate."""
    lower = 0.0 if successes == 0 else float(stats.beta.ppf(CONFIDENCE, successes, trials - successes + 1))
    upper = 1.0 if successes == trials else float(
        stats.beta.ppf(1 - CONFIDENCE, successes + 1, trials - successes))
    return lower, upper


def run(size: str, seed: int, device: str, out_dir: Path) -> CheckResult:
    settings = SETTINGS[size]
    generator = make_generator(seed, device)
    n, d = settings.n_points, settings.dim
    x = sphere_points(n, d, generator, device)
    y = torch.randn(n, generator=generator, dtype=torch.float64, device=device)
    small = n // 4
    rows, curves = [], {}
    for width in settings.widths:
        a, w = batched_init(settings.n_draws, width, d, generator=generator, device=device)
        result = batched_gradient_descent(a, w, x, y, scale=width**-0.5, lr=LR, n_steps=settings.n_steps)
        ratio = (result.losses / result.losses[0]).cpu()  # (T, B)
        final = ratio[-1]
        halfway = ratio[len(ratio) // 2]
        stalled = final >= STALLED
        row = {"width": width, "ratio": width / n, "successes": int((final <= SUCCESS).sum()),
               "stalled": int(stalled.sum()), "unresolved": int(((final > SUCCESS) & ~stalled).sum()),
               "median_final_ratio": float(final.median()),
               # A stalled run that is only slow would still shrink over the second half.
               "stalled_second_half_decrease": float((final[stalled] / halfway[stalled]).median())
               if bool(stalled.any()) else None}
        row["success_bounds"] = _clopper_pearson(row["successes"], settings.n_draws)
        row["stalled_bounds"] = _clopper_pearson(row["stalled"], settings.n_draws)
        rows.append(row)
        if width == small:
            curves = {"steps": result.steps, "ratio": ratio}

    wide = [row for row in rows if row["width"] >= n]
    at_small = next(row for row in rows if row["width"] == small)
    all_wide = all(row["successes"] == settings.n_draws for row in wide)
    wide_draws = settings.n_draws * len(wide)
    failure_bound = 1 - CONFIDENCE ** (1 / wide_draws)
    stalled_lower = at_small["stalled_bounds"][0]
    passed = all_wide and stalled_lower > MEASURABLE and at_small["successes"] >= 1
    figure = _figure(rows, curves, settings, out_dir / f"{NAME}.png")
    rates = [row["successes"] / settings.n_draws for row in rows]
    decrease = at_small["stalled_second_half_decrease"]
    plateau = "n/a" if decrease is None else f"{decrease:.3f}"
    return CheckResult(
        name=NAME,
        claim=(
            "With width $M \\ge n$, gradient descent from a random initialization reaches zero training "
            "loss on every draw (no spurious valleys, Venturi, Bandeira & Bruna 2019); with $M$ much "
            "smaller than $n$ a measurable fraction stalls, although zero loss is reachable at that width. "
            f"(ReLU, both layers, NTK scaling, n = {n} points on $S^{{{d - 1}}}$ with random $N(0, 1)$ "
            f"labels, M = {format_list(settings.widths)}, {settings.n_draws} initializations each, "
            f"{settings.n_steps} full-batch GD steps at lr = {LR:g}; float64.)"
        ),
        predicted=(
            f"success rate 1 at every M >= n = {n}; at M = n / 4 = {small}: a stalled fraction > "
            f"{MEASURABLE:g} and at least one success"
        ),
        measured=(
            f"success rate by M / n = {format_list([row['ratio'] for row in rows], 3)}: "
            f"{format_list(rates, 3)} (stalled {[row['stalled'] for row in rows]}, unresolved "
            f"{[row['unresolved'] for row in rows]} of {settings.n_draws}); at M >= n: "
            f"{sum(row['successes'] for row in wide)}/{wide_draws} succeed, failure rate <= "
            f"{failure_bound:.3g}; at M = {small}: {at_small['stalled']} stalled "
            f"(rate >= {stalled_lower:.3f}), "
            f"{at_small['successes']} succeed; stalled runs' R_T / R_(T/2) median {plateau}"
        ),
        tolerance=(
            f"success: R_T <= {SUCCESS:g} R_0; stalled: R_T >= {STALLED:g} R_0. Every draw at M >= n must "
            f"succeed; at M = n / 4 the one-sided Clopper-Pearson lower bound (confidence "
            f"1 - {CONFIDENCE:g}) "
            f"on the stalled fraction must exceed {MEASURABLE:g} and one draw at least must succeed."
        ),
        passed=bool(passed),
        details={"rows": rows, "failure_rate_bound_wide": failure_bound, "lr": LR,
                 "n_steps": settings.n_steps},
        figures=(figure,),
    )


def _figure(rows, curves, settings, path: Path) -> str:
    figure, axes = new_figure(2, 1, width=5.2, height=4.0)
    left, right = axes[0, 0], axes[0, 1]
    ratios = np.array([row["ratio"] for row in rows])
    rates = np.array([row["successes"] / settings.n_draws for row in rows])
    lower = np.array([row["success_bounds"][0] for row in rows])
    upper = np.array([row["success_bounds"][1] for row in rows])
    stalled = np.array([row["stalled"] / settings.n_draws for row in rows])
    left.errorbar(ratios, rates, yerr=[rates - lower, upper - rates], fmt="o-", color="tab:blue", capsize=3,
                  label="reached zero loss")
    left.plot(ratios, stalled, "s--", color="tab:red", label=f"stalled (R_T >= {STALLED:g} R_0)")
    left.axvline(1.0, color="k", linestyle=":", linewidth=1, label="M = n")
    left.set_xscale("log", base=2)
    left.set_xlabel("M / n")
    left.set_ylabel("fraction of initializations")
    left.set_ylim(-0.03, 1.03)
    left.set_title(f"GD on n = {settings.n_points} random labels")
    left.legend(fontsize=7)
    if curves:
        steps = to_numpy(curves["steps"])
        ratio = to_numpy(curves["ratio"])
        final = ratio[-1]
        for index in range(ratio.shape[1]):
            color = ("tab:blue" if final[index] <= SUCCESS else
                     "tab:red" if final[index] >= STALLED else "tab:gray")
            right.semilogy(steps, np.maximum(ratio[:, index], 1e-30), color=color, linewidth=0.6, alpha=0.6)
        right.axhline(SUCCESS, color="k", linestyle=":", linewidth=1)
        right.axhline(STALLED, color="k", linestyle="--", linewidth=1)
        right.set_xlabel("GD step")
        right.set_ylabel("R_t / R_0")
        right.set_title(f"each draw at M = n / 4 = {settings.n_points // 4} (blue: zero loss, red: stalled)")
    return save_figure(figure, path)
