r"""Check: three simplex methods reach one minimizer; Frank-Wolfe's gap and error decay at predicted rates.

Claim. (a) Conditional gradient (Frank-Wolfe with away steps and exact line search), projected
gradient (exact Euclidean projection, sparsemax) and mirror descent (exponentiated gradient) reach
the same minimizer of F over the simplex: the planted minimizer of a strongly convex quadratic whose
minimizer is sparse, and softmax(-c / eps) for the entropic objective <c, p> + eps sum p log p.
(b) As minimizers of ||p - x||^2 they all compute sparsemax(x), equal to its closed form
relu(x - tau(x)). (c) Plain Frank-Wolfe's optimality gap G(p) = p . grad F(p) - min grad F(p)
decays like 1/t: with exact line search both the best gap so far and the primal error have log-log
slope -1; with the open-loop step 2 / (t + 2) the gap has slope -1 and the primal error slope -2;
Jaggi's bounds hold at every step.

Derivation. The gap is the Frank-Wolfe duality gap, max_{q in Delta} <grad F(p), p - q>; for convex F
it bounds F(p) - F* from above, and it vanishes exactly at points with p . grad F = min grad F
(the KKT conditions, the seed's optimality condition). For convex F with curvature constant C_f
(for a quadratic, C_f = max_{i != j} (e_i - e_j)^T Q (e_i - e_j) exactly), Jaggi (2013, Theorems 1
and 2), with eta_t = 2 / (t + 2) or with line search, gives

    F(p_t) - F* <= 2 C_f / (t + 2)  (t >= 1),     min_{s <= t} G(p_s) <= 27 C_f / (4 (t + 2))  (t >= 2).

The gap bound speaks of the best gap so far, not of G(p_t): a single iterate's gap can jump up
after a step. These are upper bounds; which exponent is actually seen depends on where the
minimizer lies. We plant it in the relative interior of a face of dimension 3 of the 9-simplex
(4 of 10 coordinates positive) with strict complementarity (grad F exceeds its minimum by a margin
off the support), and F strongly convex. Then
- exact line search zig-zags between the face's vertices and cannot beat t^-(1 + delta) for any
  delta > 0 (Canon & Cullum 1968; Wolfe 1970): with Jaggi's upper bound the primal error is 1/t up
  to such factors, and so is the best gap (F - F* <= G, and G <= 27 C_f / (4 (t + 2))): predicted
  slope -1 for both;
- the open-loop rule is faster there: F(p_t) - F* = O(1/t^2) (Wirth, Kerdreux & Pokutta 2023;
  Wirth, Pena & Pokutta 2023): predicted slope -2. The gap is still of order 1/t: near p* the gap is
  proportional to the distance ||p_t - p*|| (p* is a strictly positive combination of the face's
  vertices, so max_j <grad F(p), p - e_j> >= c ||grad F(p) projected on the face|| ~ ||p - p*||),
  which is O(sqrt(F - F*)) = O(1/t) by strong convexity and Omega(1/t) because consecutive iterates
  are eta_t ||s_t - p_t|| >= (2 / (t + 2)) dist(p*, vertices) / 2 apart: predicted slope -1 for the
  per-iterate gap. (The brief for this check expected the open-loop primal error to decay like 1/t;
  measured and cited, it decays like 1/t^2, and it is the line-search error that decays like 1/t.)
Plain Frank-Wolfe therefore cannot reach a sparse minimizer to 1e-6 in a few thousand steps
(distance ~ 1/t); the away-step variant (Lacoste-Julien & Jaggi 2015) converges linearly for
strongly convex F over a polytope and is the one used for (a) and (b). Projected gradient with
h <= 1 / L converges linearly here (strong convexity), and mirror descent with h <= 1 / max|Q_ij|
(relative smoothness with respect to the entropy, Lu, Freund & Nesterov 2018) drives the off-support
coordinates to 0 geometrically at the margin's rate. On the entropic objective mirror descent is
exactly linear in log space: log p_{t+1} - log p* = (1 - h eps)(log p_t - log p*) up to constants.

Method. float64 throughout. (a) n = 10, Q = A A^T / n + I / 2 (A Gaussian), p* with 4 random support
coordinates and weights, c chosen by Quadratic.planted (margin 0.5) so that p* is the minimizer; the
truth is p*, cross-checked by exact KKT support enumeration. Entropic objective: c_i uniform on
[0, 2], eps = 1, truth softmax(-c / eps). (b) a batch of 8 points x in R^8, each built from a planted
sparsemax value (support 2 to 5, off-support scores at least 0.2 below the threshold), run as one
batch through each method. (c) plain Frank-Wolfe from the uniform distribution on the quadratic of
(a), both step rules, T steps; slopes are least-squares fits of log(mean over geometric bins) against
log(bin centre) on t in [T / 50, T] (12 bins; averaging within bins smooths the gap's step-to-step
oscillation without changing its order).

Verdict. (a), (b): max |p_method - p_truth| <= 1e-6 for every method, objective and batch row, and
the closed-form sparsemax equals the planted value to 1e-12. (c) every fitted slope within 0.1 of its
prediction (line search: primal error and best gap -1; open loop: gap -1, primal error -2), and
Jaggi's two bounds at every t. The allowance: the runs are deterministic, so what remains is
pre-asymptotic curvature of the log-log curves (the t^delta factors of the zig-zag, lower-order terms
of the O(1/t^2) expansion) and what is left of the gap's oscillation after bin averaging. Measured
over 15 instances (seeds 0-14) at T = 2000: line search primal -0.95 to -0.97, best gap -0.97 to
-1.00; open loop gap -1.00 to -1.01, primal -1.97 to -2.02; at T = 20000 the line-search slopes move
to -0.99, as the t^delta reading predicts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from measureflow.checks._figures import format_list, new_figure, save_figure, to_numpy
from measureflow.checks.base import CheckResult
from measureflow.flows import simplex

__all__ = ["binned_slope", "run"]

NAME = "simplex-methods"
DIM = 10
SUPPORT = 4
MARGIN = 0.5
ENTROPY_EPS = 1.0
SPARSEMAX_BATCH = 8
SPARSEMAX_DIM = 8
MINIMIZER_TOL = 1e-6
CLOSED_FORM_TOL = 1e-12
SLOPE_ALLOWANCE = 0.1
FIT_START_FRACTION = 1 / 50
N_BINS = 12
# Rounding allowance for the hard bounds (they are exact inequalities in exact arithmetic).
BOUND_SLACK = 1e-12


@dataclass(frozen=True)
class _Settings:
    rate_steps: int
    away_steps: int
    gradient_steps: int
    mirror_steps: int
    entropy_away_steps: int


SETTINGS = {
    "quick": _Settings(rate_steps=2000, away_steps=300, gradient_steps=400, mirror_steps=800,
                       entropy_away_steps=150),
    "full": _Settings(rate_steps=50_000, away_steps=1000, gradient_steps=2000, mirror_steps=4000,
                      entropy_away_steps=400),
}


def binned_slope(values: np.ndarray, start: int, n_bins: int = N_BINS) -> float:
    """Slope of log(mean of ``values[t]`` over geometric bins of t) against log(geometric bin centre).

    ``values`` is indexed by t = 0, ..., T; the bins split [start, T] evenly in log t.
    """
    last = len(values) - 1
    edges = np.unique(np.geomspace(start, last + 1, n_bins + 1).round().astype(int))
    centres, means = [], []
    for low, high in zip(edges[:-1], edges[1:], strict=True):
        steps = np.arange(low, high)
        centres.append(math.exp(np.log(steps).mean()))
        means.append(values[low:high].mean())
    return float(np.polyfit(np.log(centres), np.log(means), 1)[0])


def _planted_quadratic(generator: torch.Generator) -> tuple[simplex.Quadratic, Tensor]:
    matrix = torch.randn(DIM, DIM, generator=generator, dtype=torch.float64)
    hessian = matrix @ matrix.T / DIM + 0.5 * torch.eye(DIM, dtype=torch.float64)
    weights = torch.rand(SUPPORT, generator=generator, dtype=torch.float64) + 0.5
    support = torch.randperm(DIM, generator=generator)[:SUPPORT]
    minimizer = torch.zeros(DIM, dtype=torch.float64)
    minimizer[support] = weights / weights.sum()
    return simplex.Quadratic.planted(hessian, minimizer, margin=MARGIN), minimizer


def _planted_sparsemax(generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """Points x (B, n) with known sparsemax: p_i = x_i - tau on a support, x_i <= tau - 0.2 off it."""
    scores, values = [], []
    for _ in range(SPARSEMAX_BATCH):
        size = int(torch.randint(2, 6, (1,), generator=generator))
        support = torch.randperm(SPARSEMAX_DIM, generator=generator)[:size]
        weights = torch.rand(size, generator=generator, dtype=torch.float64) + 0.2
        value = torch.zeros(SPARSEMAX_DIM, dtype=torch.float64)
        value[support] = weights / weights.sum()
        tau = float(torch.randn(1, generator=generator, dtype=torch.float64))
        gaps = 0.2 + 0.8 * torch.rand(SPARSEMAX_DIM, generator=generator, dtype=torch.float64)
        scores.append(torch.where(value > 0, value + tau, tau - gaps))
        values.append(value)
    return torch.stack(scores), torch.stack(values)


def _max_error(result: simplex.SimplexResult, truth: Tensor) -> float:
    return float((result.p - truth).abs().max())


def run(size: str, seed: int, device: str, out_dir: Path) -> CheckResult:
    settings = SETTINGS[size]
    # The instances are drawn on the CPU so that a seed gives the same problem on every device;
    # the computation then runs on ``device``.
    generator = torch.Generator().manual_seed(int(seed))
    quadratic, planted = _planted_quadratic(generator)
    quadratic = simplex.Quadratic(quadratic.hessian.to(device), quadratic.linear.to(device))
    planted = planted.to(device)
    enumerated = quadratic.minimizer()
    uniform = torch.full((DIM,), 1 / DIM, dtype=torch.float64, device=device)
    smooth = float(torch.linalg.eigvalsh(quadratic.hessian).max())
    relative_smooth = float(quadratic.hessian.abs().max())

    # (a) the quadratic with a sparse minimizer
    runs_quadratic = {
        "frank_wolfe_away": simplex.frank_wolfe(
            quadratic.grad, uniform, settings.away_steps, line_search=quadratic, away_steps=True),
        "projected_gradient": simplex.projected_gradient(
            quadratic.grad, uniform, 1 / smooth, settings.gradient_steps, objective=quadratic),
        "mirror_descent": simplex.mirror_descent(
            quadratic.grad, uniform, 1 / relative_smooth, settings.mirror_steps, objective=quadratic),
    }
    errors_quadratic = {name: _max_error(result, planted) for name, result in runs_quadratic.items()}

    # (a) the entropic objective
    cost = 2 * torch.rand(DIM, generator=generator, dtype=torch.float64).to(device)
    entropic = simplex.EntropicLinear(cost, ENTROPY_EPS)
    gibbs = entropic.minimizer()
    # 1 / L of the entropy's Hessian eps / p_i on {p >= min p*}, halved.
    entropy_step = 0.5 * float(gibbs.min()) / ENTROPY_EPS
    runs_entropy = {
        "frank_wolfe_away": simplex.frank_wolfe(
            entropic.grad, uniform, settings.entropy_away_steps, line_search=entropic, away_steps=True),
        "projected_gradient": simplex.projected_gradient(
            entropic.grad, uniform, entropy_step, settings.gradient_steps),
        "mirror_descent": simplex.mirror_descent(
            entropic.grad, uniform, 0.5 / ENTROPY_EPS, 60),
    }
    errors_entropy = {name: _max_error(result, gibbs) for name, result in runs_entropy.items()}

    # (b) sparsemax as argmin ||p - x||^2, a batch of planted points
    scores, planted_sparsemax = (tensor.to(device) for tensor in _planted_sparsemax(generator))
    distance = simplex.SquaredDistance(scores)
    closed_form = simplex.sparsemax(scores)
    closed_form_error = float((closed_form - planted_sparsemax).abs().max())
    start = torch.full_like(scores, 1 / SPARSEMAX_DIM)
    runs_sparsemax = {
        "frank_wolfe_away": simplex.frank_wolfe(
            distance.grad, start, settings.away_steps, line_search=distance, away_steps=True),
        "projected_gradient": simplex.projected_gradient(distance.grad, start, 0.25, settings.gradient_steps),
        "mirror_descent": simplex.mirror_descent(distance.grad, start, 0.25, settings.mirror_steps),
    }
    errors_sparsemax = {name: _max_error(result, closed_form) for name, result in runs_sparsemax.items()}

    # (c) plain Frank-Wolfe rates on the quadratic
    steps = settings.rate_steps
    fit_start = max(2, round(steps * FIT_START_FRACTION))
    optimum = float(quadratic.value(planted))
    curvature = quadratic.curvature_constant()
    rate_runs = {
        "line_search": simplex.frank_wolfe(quadratic.grad, uniform, steps, line_search=quadratic),
        "open_loop": simplex.frank_wolfe(quadratic.grad, uniform, steps, objective=quadratic),
    }
    t = np.arange(steps + 1, dtype=np.float64)
    rates = {}
    for name, result in rate_runs.items():
        primal = to_numpy(result.values) - optimum
        gap = to_numpy(result.gap)
        best = to_numpy(result.best_gap)
        primal_bound = 2 * curvature / (t[1:] + 2)
        gap_bound = 27 * curvature / (4 * (t[2:] + 2))
        rates[name] = {
            "primal_slope": binned_slope(np.maximum(primal, 0.0), fit_start),
            "gap_slope": binned_slope(gap, fit_start),
            "best_gap_slope": binned_slope(best, fit_start),
            "primal_bound_holds": bool((primal[1:] <= primal_bound + BOUND_SLACK).all()),
            "gap_bound_holds": bool((best[2:] <= gap_bound + BOUND_SLACK).all()),
            "primal_times_t_at_T": float(primal[-1] * steps),
            "gap_times_t_at_T": float(gap[-1] * steps),
            "distance_at_T": _max_error(result, planted),
            "primal_error_at_T": float(primal[-1]),
        }
    line, open_loop = rates["line_search"], rates["open_loop"]
    rate_checks = {
        "line_search_primal": abs(line["primal_slope"] + 1) <= SLOPE_ALLOWANCE,
        "line_search_best_gap": abs(line["best_gap_slope"] + 1) <= SLOPE_ALLOWANCE,
        "open_loop_gap": abs(open_loop["gap_slope"] + 1) <= SLOPE_ALLOWANCE,
        "open_loop_primal": abs(open_loop["primal_slope"] + 2) <= SLOPE_ALLOWANCE,
        "jaggi_bounds": all(r["primal_bound_holds"] and r["gap_bound_holds"] for r in rates.values()),
    }
    minimizer_errors = [*errors_quadratic.values(), *errors_entropy.values(), *errors_sparsemax.values()]
    minimizers_ok = max(minimizer_errors) <= MINIMIZER_TOL
    closed_form_ok = closed_form_error <= CLOSED_FORM_TOL
    passed = minimizers_ok and closed_form_ok and all(rate_checks.values())

    figure = _figure(runs_quadratic, rate_runs, optimum, curvature, planted, runs_entropy, gibbs,
                     out_dir / f"{NAME}.png")
    return CheckResult(
        name=NAME,
        claim=(
            "Frank-Wolfe (away steps, exact line search), projected gradient and mirror descent reach "
            "the same minimizer over the simplex: a planted sparse minimizer of a strongly convex "
            f"quadratic (n = {DIM}, support {SUPPORT}) and $\\mathrm{{softmax}}(-c / \\varepsilon)$ for "
            "$\\langle c, p \\rangle + \\varepsilon \\sum p \\log p$; as "
            "$\\operatorname{argmin} \\|p - x\\|^2$ they "
            f"compute $\\mathrm{{sparsemax}}(x)$ ({SPARSEMAX_BATCH} points, one batch). Plain "
            "Frank-Wolfe's gap $p \\cdot \\nabla F - \\min \\nabla F$ decays like $1/t$: with exact line "
            "search the best gap and the primal error have slope $-1$ (Jaggi's $O(1/t)$ bound is tight "
            "on a face-interior minimizer, Canon & Cullum); with $\\eta = 2 / (t + 2)$ the gap has slope "
            f"$-1$ and the primal error $-2$ (Wirth et al. 2023). T = {steps} steps, fit on "
            f"$t \\in [{fit_start}, {steps}]$."
        ),
        predicted=(
            f"max |p - p*| <= {MINIMIZER_TOL:g} for 3 methods x 3 problems; slopes: line search primal "
            "-1, best gap -1; open loop gap -1, primal -2; F - F* <= 2 C_f / (t + 2) and "
            f"min_s G <= 27 C_f / (4 (t + 2)) at every t (C_f = {curvature:.4g})"
        ),
        measured=(
            f"max |p - p*|: quadratic {format_list(list(errors_quadratic.values()), 2)}, entropic "
            f"{format_list(list(errors_entropy.values()), 2)}, sparsemax "
            f"{format_list(list(errors_sparsemax.values()), 2)} (FW-away, PGD, MD); closed-form sparsemax "
            f"vs planted {closed_form_error:.1e}; slopes: line search primal {line['primal_slope']:.3f}, "
            f"best gap {line['best_gap_slope']:.3f}; open loop gap {open_loop['gap_slope']:.3f}, primal "
            f"{open_loop['primal_slope']:.3f}; Jaggi bounds hold: {rate_checks['jaggi_bounds']}"
        ),
        tolerance=(
            f"minimizers within {MINIMIZER_TOL:g} (max norm); closed form within {CLOSED_FORM_TOL:g}; "
            f"slopes within {SLOPE_ALLOWANCE:g} of the prediction: deterministic runs, the allowance "
            "covers pre-asymptotic curvature and the gap's oscillation left after averaging over "
            f"{N_BINS} geometric bins (measured over 15 instances: within 0.05 of -1 and 0.035 of -2); "
            "Jaggi's bounds exactly (rounding slack 1e-12)."
        ),
        passed=bool(passed),
        details={
            "dim": DIM,
            "support": SUPPORT,
            "margin": MARGIN,
            "planted_minimizer": planted.cpu().tolist(),
            "enumerated_minimizer_error": float((enumerated - planted).abs().max()),
            "curvature_constant": curvature,
            "step_sizes": {
                "projected_gradient_quadratic": 1 / smooth,
                "mirror_descent_quadratic": 1 / relative_smooth,
                "projected_gradient_entropic": entropy_step,
                "mirror_descent_entropic": 0.5 / ENTROPY_EPS,
                "sparsemax": 0.25,
            },
            "errors_quadratic": errors_quadratic,
            "errors_entropic": errors_entropy,
            "errors_sparsemax": errors_sparsemax,
            "final_gaps_quadratic": {name: float(r.gap[-1]) for name, r in runs_quadratic.items()},
            "closed_form_sparsemax_error": closed_form_error,
            "entropic_minimum": float(entropic.minimum()),
            "rate_steps": steps,
            "fit_range": [fit_start, steps],
            "rates": rates,
            "rate_checks": rate_checks,
            "minimizers_agree": bool(minimizers_ok),
        },
        figures=(figure,),
    )


def _figure(runs_quadratic, rate_runs, optimum, curvature, planted, runs_entropy, gibbs, path: Path) -> str:
    figure, axes = new_figure(2, 2, width=5.0, height=3.8)
    floor = 1e-17
    # Plot on a geometric grid of steps (at most ~400 points per curve): the axes are logarithmic,
    # and drawing every step of a long run only costs time.
    def grid(n_steps: int) -> np.ndarray:
        return np.unique(np.geomspace(1, n_steps, 400).round().astype(int))

    colors = {"open_loop": "tab:blue", "line_search": "tab:orange", "frank_wolfe_away": "tab:purple",
              "projected_gradient": "tab:green", "mirror_descent": "tab:red"}
    labels = {"open_loop": "FW, eta = 2/(t+2)", "line_search": "FW, line search",
              "frank_wolfe_away": "FW, away steps", "projected_gradient": "projected gradient",
              "mirror_descent": "mirror descent"}
    axis = axes[0, 0]
    # Open loop first and translucent: its gap oscillates and would hide the line-search curve.
    series = {"open_loop": rate_runs["open_loop"], "line_search": rate_runs["line_search"], **runs_quadratic}
    for name, result in series.items():
        gap = np.maximum(to_numpy(result.gap), floor)
        steps = grid(len(gap) - 1)
        axis.plot(steps, gap[steps], color=colors[name], linewidth=0.8, label=labels[name],
                  alpha=0.5 if name == "open_loop" else 1.0)
    steps = grid(rate_runs["open_loop"].n_steps)
    axis.plot(steps, 27 * curvature / (4 * (steps + 2)), "k--", linewidth=1.0,
              label="Jaggi: 27 C_f / (4 (t + 2))")
    anchor = steps[len(steps) // 10]
    reference = to_numpy(rate_runs["line_search"].gap)[anchor]
    axis.plot(steps, reference * anchor / steps, color="0.5", linewidth=0.8, linestyle="-.", label="slope -1")
    axis.set_xscale("log")
    axis.set_yscale("log")
    axis.set_ylim(1e-16, None)
    axis.set_xlabel("step t")
    axis.set_ylabel("gap p . grad F - min grad F")
    axis.set_title("optimality gap on the quadratic")
    axis.legend(fontsize=6)
    axis = axes[0, 1]
    for name in ("open_loop", "line_search"):
        result = rate_runs[name]
        primal = np.maximum(to_numpy(result.values) - optimum, floor)
        axis.plot(steps, primal[steps], color=colors[name], linewidth=0.8, label=f"{labels[name]}: F - F*",
                  alpha=0.5 if name == "open_loop" else 1.0)
        best = to_numpy(result.best_gap)
        axis.plot(steps, best[steps], color=colors[name], linewidth=0.8, linestyle=":",
                  label=f"{labels[name]}: best gap")
    axis.plot(steps, 2 * curvature / (steps + 2), "k--", linewidth=1.0, label="Jaggi: 2 C_f / (t + 2)")
    reference = (to_numpy(rate_runs["open_loop"].values) - optimum)[anchor]
    axis.plot(steps, reference * (anchor / steps) ** 2, color="0.5", linewidth=0.8, linestyle="-.",
              label="slope -2")
    axis.set_xscale("log")
    axis.set_yscale("log")
    axis.set_xlabel("step t")
    axis.set_ylabel("primal error / best gap")
    axis.set_title("plain FW: slope -1 (line search), -2 (open loop)")
    axis.legend(fontsize=6)
    for axis, runs, truth, title in (
        (axes[1, 0], runs_quadratic, planted, "quadratic: planted sparse minimizer"),
        (axes[1, 1], runs_entropy, gibbs, "entropic: softmax(-c / eps)"),
    ):
        index = np.arange(truth.shape[-1])
        width = 0.2
        axis.bar(index - 1.5 * width, to_numpy(truth), width, color="k", label="closed form / planted")
        for offset, (name, result) in zip((-0.5, 0.5, 1.5), runs.items(), strict=True):
            axis.bar(index + offset * width, to_numpy(result.p), width, color=colors[name],
                     label=labels[name])
        axis.set_xticks(index)
        axis.set_xlabel("coordinate i")
        axis.set_ylabel("p_i")
        axis.set_title(title)
        axis.legend(fontsize=6)
    return save_figure(figure, path)
