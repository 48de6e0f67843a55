r"""Check: the excess risk of gradient Langevin dynamics on a non-convex loss shrinks like d log(beta) / beta.

Claim (seed 001, "GLD/SGLD"; Raginsky, Rakhlin & Telgarsky, COLT 2017). For a dissipative, smooth
loss L on R^d, GLD X <- X - eta grad L(X) + sqrt(2 eta / beta) xi satisfies

    E L(X_k) - min L <= O~( (beta + d)(1 + eta^(1/4)) k eta                      [discretization]
                          + (beta + d) / sqrt(lambda*) exp(-lambda* k eta / (beta (d + beta)))  [mixing]
                          + d log(beta + 1) / beta ),                              [Gibbs measure]

so with a small step and enough iterations the expected excess loss is that of the Gibbs measure
pi_beta ~ exp(-beta L), of order d log(beta + 1) / beta, although L has spurious local minima that
gradient descent cannot leave.

Set-up. L(x) = sum_{i<d} l(x_i) with the tilted double well l(x) = (x^2 - 1)^2 + c x, c = 1.3, d = 4
(``mf.targets.DoubleWell(dim=4, tilt=1.3)``): per coordinate a global minimum at x = -1.134, a
spurious one at +0.754 (0.06 below the barrier top at x_max = +0.380, 2.62 above the global
minimum). The loss is separable, so under pi_beta the coordinates are independent and

    E_pi L - min L = d (E_{pi_1} l - min l),  pi_1(x) ~ exp(-beta l(x)),

a 1-D integral computed by the trapezoid rule on 65,537 points (error far below 1e-8): an exact
reference. For a non-degenerate unique global minimum Laplace's method gives
E_pi L - min L = d / (2 beta) + O(1 / beta^2) (equipartition), which the reference shows.

Method. ``n_chains`` chains start uniform on [-1.5, 1.5]^4. For each beta of the grid GLD is run
as MALA (``mf.sample(..., "mala")``): the Metropolis step removes the discretization term
exactly (its stationary law is pi_beta, not pi_beta plus an O(eta) bias), so what is measured is
the theorem's Gibbs term alone once the mixing term has decayed; the burn-in is long enough for
that (the spurious well's barrier is 0.06, so beta barrier <= 1 on the grid), and the
comparison with the exact reference is the test that it has. The measured excess is the mean
over chains of each chain's time average of L - min L over the kept samples; its standard error
is the standard deviation of the chain averages over sqrt(n_chains) (independent chains, so no
autocorrelation correction is needed).

Gradient descent from the same starts (:func:`measureflow.samplers.graduated.graduated_descent`
with the single scale delta = 0) at step 0.04 < 1 / max l'' on [-1.5, 1.5] = 1/23: the gradient
map x - h l'(x) is then increasing, so no iterate crosses the fixed point x_max, and a start ends
at a spurious minimum iff some coordinate starts above x_max. Predicted spurious fraction:
1 - q^d, q = (x_max + 1.5) / 3.

Verdict.
1. At every beta, |measured - exact| < 4 SE (the measurement is the Gibbs expectation).
2. The rate: the least-squares slope of log(measured excess) against log(beta) over the grid is
   at most the slope of the prediction d log(beta + 1) / beta over the same grid, plus 4 SE of
   the fitted slope (SE from the delta method, SE(log m) = SE(m) / m, propagated through the
   least-squares weights). The prediction is an upper bound with an unknown constant, so only
   its shape is compared: the measured excess must not fall more slowly than d log(beta) / beta.
3. Gradient descent's spurious fraction agrees with 1 - q^d within 4 binomial SE; GLD's fraction
   of chains with a coordinate past x_max at the end, at the largest beta, is below gradient
   descent's by more than 4 pooled binomial SE (noise leaves the spurious minima).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from measureflow import targets
from measureflow._core import make_generator
from measureflow.checks._figures import binomial_se, format_list, new_figure, save_figure
from measureflow.checks.base import CheckResult
from measureflow.samplers import sample
from measureflow.samplers.graduated import graduated_descent

__all__ = ["run"]

NAME = "langevin-excess-risk"
DIM = 4
TILT = 1.3
BOX = 1.5
BETAS = (1.0, 2.0, 4.0, 8.0, 16.0)
GD_STEP = 0.04
GD_STEPS = 500
MALA_STEP = 0.05
Z = 4.0


@dataclass(frozen=True)
class _Settings:
    n_chains: int
    burn_in: int
    n_kept: int
    thin: int


SETTINGS = {
    "quick": _Settings(n_chains=400, burn_in=1400, n_kept=50, thin=10),
    "full": _Settings(n_chains=4000, burn_in=4000, n_kept=400, thin=10),
}


def _critical_points() -> tuple[float, float, float]:
    """Roots of l'(x) = 4 x^3 - 4 x + c: global minimum, barrier top x_max, spurious minimum."""
    roots = np.sort(np.roots([4.0, 0.0, -4.0, TILT]).real)
    return float(roots[0]), float(roots[1]), float(roots[2])


def _exact_excess(target: targets.DoubleWell, beta: float, minimum: float) -> float:
    """d (E_{pi_1} l - min l) by the trapezoid rule on the target's exact 1-D Gibbs density."""
    grid = np.linspace(-4.0, 4.0, 65_537)
    log_density = -beta * target._energy_1d(grid)
    density = np.exp(log_density - log_density.max())
    density /= np.trapezoid(density, grid)
    return DIM * float(np.trapezoid((target._energy_1d(grid) - minimum) * density, grid))


def _weighted_slope(log_beta: np.ndarray, log_value: np.ndarray,
                    se: np.ndarray | None) -> tuple[float, float]:
    """Least-squares slope of log_value on log_beta (weights 1 / se^2 when given) and its SE."""
    weights = np.ones_like(log_beta) if se is None else 1 / se**2
    centre = np.sum(weights * log_beta) / np.sum(weights)
    spread = np.sum(weights * (log_beta - centre) ** 2)
    slope = float(np.sum(weights * (log_beta - centre) * log_value) / spread)
    return slope, (float(math.sqrt(1 / spread)) if se is not None else 0.0)


def run(size: str, seed: int, device: str, out_dir: Path) -> CheckResult:
    settings = SETTINGS[size]
    n = settings.n_chains
    target = targets.DoubleWell(dim=DIM, tilt=TILT).to(device=device, dtype=torch.float64)
    x_global, x_max, _ = _critical_points()
    minimum = float(target._energy_1d(np.array([x_global]))[0])
    generator = make_generator(seed, device)
    starts = (2 * torch.rand(n, DIM, generator=generator, dtype=torch.float64, device=device) - 1) * BOX

    rows = []
    final = None
    for beta in BETAS:
        result = sample(
            target, "mala", n_chains=n, n_steps=settings.n_kept * settings.thin, burn_in=settings.burn_in,
            step_size=MALA_STEP, beta=beta, init=starts, thin=settings.thin, generator=generator,
            device=device, dtype=torch.float64, diagnostics=False, progress=False,
        )
        chain_means = (result.energy_trace.double() - DIM * minimum).mean(0)
        measured = float(chain_means.mean())
        se = float(chain_means.std() / math.sqrt(n))
        exact = _exact_excess(target, beta, minimum)
        rows.append({"beta": beta, "measured": measured, "se": se, "exact": exact,
                     "z": (measured - exact) / se,
                     "laplace": DIM / (2 * beta), "bound_shape": DIM * math.log(beta + 1) / beta,
                     "acceptance": float(result.acceptance.mean()), "step_size": result.step_size})
        final = result.samples[-1]
    log_beta = np.log([row["beta"] for row in rows])
    measured = np.array([row["measured"] for row in rows])
    measured_slope, slope_se = _weighted_slope(log_beta, np.log(measured),
                                               np.array([row["se"] for row in rows]) / measured)
    predicted_slope, _ = _weighted_slope(log_beta, np.log([row["bound_shape"] for row in rows]), None)
    exact_slope, _ = _weighted_slope(log_beta, np.log([row["exact"] for row in rows]), None)

    descent = graduated_descent(target, starts, [0.0], GD_STEP, GD_STEPS)
    gd_spurious = int((descent.position > x_max).any(1).sum())
    q = (x_max + BOX) / (2 * BOX)
    gd_predicted = 1 - q**DIM
    gd_z = (gd_spurious / n - gd_predicted) / math.sqrt(gd_predicted * (1 - gd_predicted) / n)
    gld_spurious = int((final > x_max).any(1).sum())
    pooled = (gd_spurious + gld_spurious) / (2 * n)
    gap_z = (gd_spurious - gld_spurious) / n / math.sqrt(pooled * (1 - pooled) * 2 / n)

    agrees = all(abs(row["z"]) < Z for row in rows)
    rate_ok = measured_slope <= predicted_slope + Z * slope_se
    gd_ok = abs(gd_z) < Z and gap_z > Z
    figure = _figure(rows, gd_spurious / n, gld_spurious / n, n, gd_predicted, out_dir / f"{NAME}.png")
    return CheckResult(
        name=NAME,
        claim=(
            "GLD's expected excess loss on a non-convex loss is that of its Gibbs measure, "
            "$O(d \\log(\\beta) / \\beta)$ "
            "(Raginsky, Rakhlin & Telgarsky 2017), while gradient descent stays at spurious minima: "
            f"tilted double well $(x^2 - 1)^2 + {TILT:g} x$ in $d = {DIM}$, GLD run as MALA (no "
            f"discretization bias), beta = {format_list(BETAS, 3)}, {n} chains from uniform starts on "
            f"$[-{BOX:g}, {BOX:g}]^{{{DIM}}}$."
        ),
        predicted=(
            f"E L - min L = {format_list([row['exact'] for row in rows])} (exact Gibbs, quadrature; "
            f"-> d / (2 beta)); log-log slope <= {predicted_slope:.3f} (shape of d log(beta + 1) / beta; "
            f"exact slope {exact_slope:.3f}); GD spurious fraction 1 - q^d = {gd_predicted:.3f}"
        ),
        measured=(
            f"E L - min L = {format_list(measured.tolist())} "
            f"(z = {format_list([row['z'] for row in rows], 2)}); slope {measured_slope:.3f} +- "
            f"{slope_se:.3f}; GD spurious {gd_spurious}/{n} = {gd_spurious / n:.3f} "
            f"(z = {gd_z:.2f}), GLD at beta = {BETAS[-1]:g}: {gld_spurious}/{n} (gap z = {gap_z:.1f})"
        ),
        tolerance=(
            f"|measured - exact| < {Z:g} SE at every beta (SE: sd of chain averages / sqrt(chains)); "
            f"slope <= predicted slope + {Z:g} SE (delta-method weights); GD spurious fraction within "
            f"{Z:g} binomial SE "
            f"of 1 - q^d and above GLD's by > {Z:g} pooled binomial SE."
        ),
        passed=bool(agrees and rate_ok and gd_ok),
        details={
            "dim": DIM, "tilt": TILT, "n_chains": n, "x_global": x_global, "x_max": x_max,
            "min_loss": DIM * minimum,
            "rows": rows, "measured_slope": measured_slope, "slope_se": slope_se,
            "predicted_slope": predicted_slope, "exact_slope": exact_slope,
            "gd_spurious": gd_spurious, "gd_predicted_fraction": gd_predicted, "gd_z": gd_z,
            "gld_spurious": gld_spurious, "gap_z": gap_z,
            "gibbs_agrees": agrees, "rate_ok": rate_ok, "descent_ok": gd_ok,
        },
        figures=(figure,),
    )


def _figure(rows: list[dict], gd_fraction: float, gld_fraction: float, n: int, gd_predicted: float,
            path: Path) -> str:
    figure, axes = new_figure(2, 1, width=4.8, height=3.6)
    betas = np.array([row["beta"] for row in rows])
    axis = axes[0, 0]
    axis.errorbar(betas, [row["measured"] for row in rows], yerr=[Z * row["se"] for row in rows], fmt="o",
                  color="tab:red", capsize=3, label="GLD (MALA), +- 4 SE")
    axis.plot(betas, [row["exact"] for row in rows], "k-", label="exact Gibbs (quadrature)")
    axis.plot(betas, [row["laplace"] for row in rows], "k:", label="d / (2 beta)")
    shape = np.array([row["bound_shape"] for row in rows])
    axis.plot(betas, shape * rows[0]["exact"] / shape[0], "--", color="tab:blue",
              label="d log(beta+1)/beta (scaled)")
    axis.set_xscale("log")
    axis.set_yscale("log")
    axis.set_xlabel("beta")
    axis.set_ylabel("E L(X) - min L")
    axis.legend(fontsize=7)
    axis = axes[0, 1]
    fractions = [gd_fraction, gld_fraction]
    errors = [Z * max(binomial_se(round(f * n), n), 1 / n) for f in fractions]
    axis.bar(["gradient descent", f"GLD, beta = {rows[-1]['beta']:g}"], fractions, yerr=errors,
             color=["tab:gray", "tab:red"], capsize=4)
    axis.axhline(gd_predicted, color="k", linestyle="--", linewidth=1, label="1 - q^d (GD prediction)")
    axis.set_ylabel("fraction at a spurious minimum")
    axis.legend(fontsize=7)
    return save_figure(figure, path)
