r"""Check: de Bruijn's identity d/dt KL(mu_t || pi) = -(1/beta) I(mu_t || pi) along Langevin dynamics.

Claim. For GLD dX = -L'(X) dt + sqrt(2 / beta) dB, whose law solves the Fokker-Planck equation
d_t mu = d_x(mu (L' + (1/beta) d_x log mu)), the relative entropy to pi = exp(-beta L) / Z
decreases at the rate of the relative Fisher information:

    d/dt KL(mu_t || pi) = -(1/beta) I(mu_t || pi),   I(mu || pi) = int |d_x log(mu / pi)|^2 dmu.

Derivation. With v_t = -(L' + (1/beta) d_x log mu_t) = (1/beta) d_x log(pi / mu_t) the equation
is the continuity equation d_t mu = -d_x(v mu); then
d/dt int mu log(mu / pi) = int log(mu / pi) d_t mu (the term int d_t mu vanishes) =
int v d_x log(mu / pi) dmu (integration by parts, no flux through the boundary)
= -(1/beta) int |d_x log(mu / pi)|^2 dmu. On the grid (``measureflow.pde.fokker_planck``) the
same summation by parts holds exactly for the Scharfetter-Gummel scheme, with the discrete KL
K_h = sum p log(p / g) dx and the face Fisher information I_h of
``FokkerPlanckSolution.fisher()``: dK_h/dt = -(1/beta) I_h for every grid, and K_h, I_h converge
to the continuum values at O(dx^2).

Method. The double well L = (x^2 - 1)^2 at beta = 2 on [-2.5, 2.5] (beta L = 30 at the edges, so
the box holds all but e^-30 of pi), started from the narrow Gaussian N(-1, 0.15^2) in the left well:
KL falls from ~1 through a fast relaxation inside the well (rate ~ L''(1) = 8) and the slow
transfer of half the mass over the barrier. The exponential method gives p_t exactly in time on
three grids n, 2n, 4n. At times t_k (log-spaced in [0.01, 10]) the derivative dK/dt is taken
(i) by the 5-point central difference of kl() with step delta_k = 1% of t_k and again with
delta_k / 2, and (ii) exactly from the semi-discrete equation, sum_i (A p)_i log(p_i / g_i) dx.
Errors are relative to (1/beta) I_h(t_k).

Verdict. (a) On every grid the finite-difference derivative matches -(1/beta) I_h within its
truncation error: max_k relative error <= 2 x (Richardson estimate |D_delta - D_delta/2| 16/15)
+ 1e-9 (rounding of the differenced KL values); (b) the exact semi-discrete derivative matches
to 1e-9 relative (sum (A p) log(p/g) dx = -(1/beta) I_h is an identity of the scheme, true for
any p by summation by parts: a check of the code, not of the theory, which (a), (c), (d) test);
(c) the grid quantities converge to the continuum at the scheme's order: the
observed orders log2(|X_n - X_2n| / |X_2n - X_4n|) of X = KL, I and dK/dt (max over t) lie in
[1.7, 2.3]; (d) the continuum identity then holds on the finest grid within
e_cont = max_k (|D + I/beta| + |D_4n - D_2n|/3 + |I_4n - I_2n|/(3 beta)) / (I/beta) <= 1e-3
(the Richardson estimates of the O(dx^2) distance of each side from its continuum value).
The check is deterministic (no random numbers); ``seed`` and ``device`` are not used: the grid
solver runs in float64 on the CPU.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from measureflow.checks._figures import format_list, new_figure, save_figure
from measureflow.checks.base import CheckResult
from measureflow.pde import FokkerPlanck1D
from measureflow.targets import DoubleWell

__all__ = ["run"]

NAME = "de-bruijn"
BETA = 2.0
LO, HI = -2.5, 2.5
START_MEAN, START_STD = -1.0, 0.15
T_MIN, T_MAX = 0.01, 10.0
RELATIVE_DELTA = 0.01
ROUNDING = 1e-9
ORDER_RANGE = (1.7, 2.3)
CONTINUUM_TOLERANCE = 1e-3
STENCIL = (1.0, -8.0, 0.0, 8.0, -1.0)  # 5-point central difference / (12 delta), fourth order


@dataclass(frozen=True)
class _Settings:
    base_cells: int
    n_times: int


# Quick: grids 200/400/800 (one eigh of an 800 x 800 tridiagonal matrix ~0.1 s); full: 500..2000.
SETTINGS = {"quick": _Settings(base_cells=200, n_times=25), "full": _Settings(base_cells=500, n_times=61)}


def _grid_run(n: int, at: Tensor) -> dict[str, Tensor]:
    """KL, Fisher, the difference quotients at two steps and the exact derivative on an n-cell grid."""
    solver = FokkerPlanck1D(DoubleWell(), BETA, LO, HI, n)
    start = torch.exp(-(((solver.x - START_MEAN) / START_STD) ** 2) / 2)
    offsets = torch.arange(-2, 3, dtype=torch.float64)
    weights = torch.tensor(STENCIL, dtype=torch.float64)
    out: dict[str, Tensor] = {}
    for key, fraction in (("fd", RELATIVE_DELTA), ("fd_half", RELATIVE_DELTA / 2)):
        delta = fraction * at
        times = (at[:, None] + offsets * delta[:, None]).reshape(-1)
        solution = solver.solve(start, times)
        kl = solution.kl().reshape(-1, 5)
        out[key] = (kl * weights).sum(-1) / (12 * delta)
        if key == "fd":
            out["kl"] = kl[:, 2]
            out["fisher"] = solution.fisher().reshape(-1, 5)[:, 2]
            p = solution.p.reshape(-1, 5, n)[:, 2]
            log_ratio = (p.clamp_min(1e-300) / solver.gibbs).log()
            out["exact"] = ((p @ solver.generator().T) * log_ratio).sum(-1) * solver.dx
    out["gap"] = torch.tensor(solver.spectral_gap())
    return out


def _order(coarse: Tensor, middle: Tensor, fine: Tensor) -> float:
    return float(np.log2(float((coarse - middle).abs().max()) / float((middle - fine).abs().max())))


def run(size: str, seed: int, device: str, out_dir: Path) -> CheckResult:
    settings = SETTINGS[size]
    at = torch.logspace(np.log10(T_MIN), np.log10(T_MAX), settings.n_times, dtype=torch.float64)
    cells = [settings.base_cells * k for k in (1, 2, 4)]
    grids = [_grid_run(n, at) for n in cells]

    rows = []
    for n, grid in zip(cells, grids, strict=True):
        rate = grid["fisher"] / BETA
        error_fd = (grid["fd"] + rate).abs() / rate
        truncation = (grid["fd"] - grid["fd_half"]).abs() * 16 / 15 / rate
        error_exact = (grid["exact"] + rate).abs() / rate
        tolerance = 2 * float(truncation.max()) + ROUNDING
        rows.append({
            "n": n,
            "max_rel_error_fd": float(error_fd.max()),
            "max_rel_error_fd_half_step": float(((grid["fd_half"] + rate).abs() / rate).max()),
            "fd_truncation_estimate": float(truncation.max()),
            "fd_tolerance": tolerance,
            "fd_ok": float(error_fd.max()) <= tolerance,
            "max_rel_error_exact_derivative": float(error_exact.max()),
            "exact_ok": float(error_exact.max()) <= ROUNDING,
            "spectral_gap": float(grid["gap"]),
        })
    orders = {key: _order(grids[0][key], grids[1][key], grids[2][key]) for key in ("kl", "fisher", "fd")}
    orders_ok = all(ORDER_RANGE[0] <= value <= ORDER_RANGE[1] for value in orders.values())
    fine, middle = grids[2], grids[1]
    rate = fine["fisher"] / BETA
    continuum = (
        (fine["fd"] + rate).abs()
        + (fine["fd"] - middle["fd"]).abs() / 3
        + (fine["fisher"] - middle["fisher"]).abs() / (3 * BETA)
    ) / rate
    continuum_error = float(continuum.max())
    passed = (
        all(row["fd_ok"] and row["exact_ok"] for row in rows)
        and orders_ok
        and continuum_error <= CONTINUUM_TOLERANCE
    )
    figure = _figure(at, grids, cells, out_dir / f"{NAME}.png")
    return CheckResult(
        name=NAME,
        claim=(
            "de Bruijn's identity along gradient Langevin dynamics: "
            "$\\frac{d}{dt} \\mathrm{KL}(\\mu_t \\| \\pi) = -\\frac{1}{\\beta} I(\\mu_t \\| \\pi)$, on "
            "the Fokker-Planck grid solution for the double well "
            f"$L = (x^2 - 1)^2$, beta = {BETA:g}, box [{LO:g}, {HI:g}], start N({START_MEAN:g}, "
            f"{START_STD:g}^2); {settings.n_times} times in [{T_MIN:g}, {T_MAX:g}], grids n = {cells}."
        ),
        predicted=(
            "dKL/dt + I/beta = 0 exactly on every grid (discrete summation by parts), so only the "
            "time-differencing error remains; grid KL, I and dKL/dt converge at O(dx^2)"
        ),
        measured=(
            f"max relative error of the 5-point dKL/dt vs -(1/beta) I: "
            f"{format_list([row['max_rel_error_fd'] for row in rows], 3)} (n = {cells}; "
            f"{format_list([row['max_rel_error_fd_half_step'] for row in rows], 3)} with half the step); "
            f"exact semi-discrete derivative: "
            f"{format_list([row['max_rel_error_exact_derivative'] for row in rows], 3)}; observed "
            f"orders in dx: KL {orders['kl']:.3f}, I {orders['fisher']:.3f}, dKL/dt {orders['fd']:.3f}; "
            f"continuum identity at n = {cells[-1]}: relative error <= {continuum_error:.2e}"
        ),
        tolerance=(
            "finite-difference error <= 2 x its Richardson estimate |D_delta - D_delta/2| 16/15 "
            f"+ {ROUNDING:g} (rounding); exact derivative <= {ROUNDING:g}; observed orders in "
            f"[{ORDER_RANGE[0]:g}, {ORDER_RANGE[1]:g}]; continuum bound <= {CONTINUUM_TOLERANCE:g}"
        ),
        passed=bool(passed),
        details={
            "beta": BETA,
            "box": [LO, HI],
            "start": [START_MEAN, START_STD],
            "times": at.tolist(),
            "relative_delta": RELATIVE_DELTA,
            "grids": rows,
            "observed_orders": orders,
            "continuum_relative_error": continuum_error,
            "kl": fine["kl"].tolist(),
            "fisher_over_beta": rate.tolist(),
            "dkl_dt": fine["fd"].tolist(),
            "deterministic": True,
        },
        figures=(figure,),
    )


def _figure(at: Tensor, grids: list[dict[str, Tensor]], cells: list[int], path: Path) -> str:
    figure, axes = new_figure(3, 1, width=4.2, height=3.4)
    t = at.numpy()
    fine = grids[-1]
    axis = axes[0, 0]
    axis.loglog(t, fine["kl"].numpy(), "k.-", linewidth=1.2)
    axis.set_xlabel("t")
    axis.set_title(f"KL(p_t || pi), n = {cells[-1]}")
    axis = axes[0, 1]
    axis.loglog(t, fine["fisher"].numpy() / BETA, "-", color="tab:blue", linewidth=1.6, label="I / beta")
    axis.loglog(t, -fine["fd"].numpy(), "o", color="tab:red", markersize=3.5, fillstyle="none",
                label="-dKL/dt (5-point)")
    axis.set_xlabel("t")
    axis.set_title("de Bruijn: -dKL/dt vs I / beta")
    axis.legend(fontsize=7)
    axis = axes[0, 2]
    for n, grid, colour in zip(cells, grids, ("tab:orange", "tab:green", "tab:purple"), strict=True):
        rate = grid["fisher"] / BETA
        axis.semilogy(t, ((grid["fd"] + rate).abs() / rate).numpy(), "-", color=colour, label=f"FD, n = {n}")
        exact = ((grid["exact"] + rate).abs() / rate).clamp_min(1e-17).numpy()
        axis.semilogy(t, exact, ":", color=colour, label=f"exact, n = {n}")
    axis.set_xscale("log")
    axis.set_xlabel("t")
    axis.set_title("relative error |dKL/dt + I/beta| / (I/beta)")
    axis.legend(fontsize=6)
    return save_figure(figure, path)
