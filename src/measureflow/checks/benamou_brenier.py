r"""Check: Benamou-Brenier, W2^2 is the least kinetic energy of a path between two measures.

Claim. (a) Between mu_0 = N(m0, S0) and mu_1 = N(m1, S1) on R^2, the displacement interpolation
mu_t = ((1 - t) id + t T)_# mu_0, T the Brenier map, has kinetic energy
int_0^1 int |v_t|^2 dmu_t dt = W2^2(mu_0, mu_1) (closed form), it is a constant-speed geodesic,
W2(mu_s, mu_t) = |t - s| W2(mu_0, mu_1), and every other straight-line path built from a map that
also pushes mu_0 to mu_1 costs more (Benamou & Brenier 2000: W2^2 is the minimum of the action
over all (rho_t, v_t) solving the continuity equation). (b) In 1-D, W2 to the Gibbs measure
computed from the Fokker-Planck grid solution by quantiles matches the closed form, and the
estimate from ULA particles matches it up to the Monte Carlo error and ULA's own (closed-form) bias.

Derivation. (a) Along x_t = (1 - t) x + t T(x) each particle moves on a straight line at constant
velocity T(x) - x, so the action is E|T(X) - X|^2, which for the Brenier map
T(x) = m1 + A (x - m0) (A the symmetric positive definite solution of A S0 A = S1) equals
W2^2 = |m0 - m1|^2 + tr(S0 + S1 - 2 (S0^{1/2} S1 S0^{1/2})^{1/2}) (two different formulas: the map
is ``gaussian_brenier_map``, the distance ``gaussian_w2``). mu_t = N((1 - t) m0 + t m1,
A_t S0 A_t), A_t = (1 - t) I + t A, and since A_t is symmetric positive definite it is the
Brenier map from mu_0 to mu_t, and A_t A_s^{-1} (also symmetric positive definite: A_t, A_s commute)
the one from mu_s to mu_t, whence W2(mu_s, mu_t) = |t - s| W2(mu_0, mu_1). Every linear map
M = S1^{1/2} Q S0^{-1/2} with Q orthogonal pushes N(m0, S0) to N(m1, S1) (its covariance is
S1^{1/2} Q Q^T S1^{1/2} = S1); its straight-line path has action
|m1 - m0|^2 + tr((M - I) S0 (M - I)^T) >= W2^2, with equality exactly at Q* = S1^{-1/2} A S0^{1/2}
(orthogonal with determinant +1). In 2-D Q runs over rotations R(theta) and reflections, so the
action is a function of one angle whose minimum over theta is W2^2, attained at theta*.
(b) For L(x) = x^2 / 2 the Fokker-Planck solution from N(m, v) is N(m e^{-t},
v e^{-2t} + (1 - e^{-2t}) / beta); ULA x <- (1 - h) x + sqrt(2 h / beta) xi after k steps has the law
N(a^k m, a^{2k} v + s^2 (1 - a^{2k}) / (1 - a^2)), a = 1 - h, s^2 = 2 h / beta. In 1-D
W2(N(m1, v1), N(m2, v2))^2 = (m1 - m2)^2 + (sqrt v1 - sqrt v2)^2.

Method. (a) The action in Eulerian form: at the midpoints t of K = 16 slices of [0, 1], n fresh
exact draws y ~ mu_t, the velocity field v_t(y) = (A - I) A_t^{-1} (y - m_t) + m1 - m0 evaluated
there, and int_0^1 E_{mu_t} |v_t|^2 dt by the midpoint rule (the per-slice energies are reported:
on a geodesic they are all W2^2), with the standard error of the K independent slice means. The
action of the competing maps is evaluated in closed form on a grid of angles (rotations and
reflections) and, as E|M(X - m0) + m1 - X|^2 from particles, at a few angles; the geodesic
identity with ``gaussian_w2`` on the interpolated covariances for all pairs s != t of a time grid.
(b) ``mf.pde.FokkerPlanck1D`` on the OU energy from N(2, 0.5^2), ``sol.w2()`` at times t; R
replicates of n ULA particles (step h), each giving W2(empirical, N(0, 1/beta)) exactly (the
integral of (x_(i) - Phi^{-1}(u))^2 over u in ((i - 1)/n, i/n] has a closed form:
``wasserstein_1d_to_normal``).

Verdict. (a) |particle action - W2^2| < 4 SE; min over the angle grid of the closed-form action
is >= W2^2 - 1e-10 and within the grid's resolution of it (quadratic in the spacing: 1e-6 relative
for 0.1 degree spacing), and every competing action >= W2^2 - 1e-10; geodesic defect
max |W2(mu_s, mu_t) - |t - s| W2| < 1e-10. (b) at every t: |grid - closed form| below the grid
tolerance (``GRID_RELATIVE_TOLERANCE`` x W2, second order in the cell width; the measured error
is reported) and |particle mean - ULA closed form| < 4 SE (SE of the mean of the R replicates).
Together they imply |particle mean - grid| < 4 SE + |ULA bias| + grid tolerance (triangle
inequality), which is reported, not voted on.
The Monte Carlo bias of the empirical W2 (E W2^2(mu_n, mu) ~ log log n / n for a Gaussian, i.e.
~1e-4 at n = 2e4, a W2 bias below 1e-3 even at the smallest W2 here) is below one SE; the false
alarm rate of the 4-SE comparisons is about 6e-5 each.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from measureflow import targets
from measureflow._core import make_generator
from measureflow.checks._figures import format_list, new_figure, save_figure, to_numpy
from measureflow.checks.base import CheckResult
from measureflow.metrics import (
    gaussian_brenier_map,
    gaussian_w2,
    symmetric_matrix_power,
    wasserstein_1d_to_normal,
)

__all__ = ["run"]

NAME = "benamou-brenier"
Z = 4.0
N_SLICES = 16
ANGLE_STEP_DEGREES = 0.1
# The displacement-interpolation identities hold in exact arithmetic; 1e-10 leaves room for the
# eigendecompositions in float64.
GEODESIC_TOLERANCE = 1e-10
# Second-order finite volumes on 1024 cells over [-8, 8] (dx = 0.016): relative error ~ dx^2 ~ 3e-4
# at worst; measured ~1e-5 (see details).
GRID_RELATIVE_TOLERANCE = 1e-3
OU_BETA = 1.0
OU_START = (2.0, 0.25)  # mean, variance
TIMES = (0.25, 0.5, 1.0, 2.0)


@dataclass(frozen=True)
class _Settings:
    n_particles: int
    n_replicates: int
    step_size: float
    n_cells: int


SETTINGS = {
    "quick": _Settings(n_particles=20_000, n_replicates=8, step_size=0.01, n_cells=1024),
    "full": _Settings(n_particles=200_000, n_replicates=20, step_size=0.002, n_cells=2048),
}


def _gaussians() -> tuple[Tensor, Tensor, Tensor, Tensor]:
    def rotated(angle: float, spectrum: tuple[float, float]) -> Tensor:
        rotation = _rotation(torch.tensor(math.radians(angle), dtype=torch.float64))
        return rotation @ torch.diag(torch.tensor(spectrum, dtype=torch.float64)) @ rotation.T

    m0 = torch.tensor([0.0, 0.0], dtype=torch.float64)
    m1 = torch.tensor([3.0, 1.0], dtype=torch.float64)
    return m0, rotated(30.0, (1.0, 0.25)), m1, rotated(-40.0, (2.0, 0.5))


def _rotation(angle: Tensor) -> Tensor:
    """(..., 2, 2) rotation matrices by ``angle`` (...)."""
    cos, sin = torch.cos(angle), torch.sin(angle)
    return torch.stack([torch.stack([cos, -sin], -1), torch.stack([sin, cos], -1)], -2)


def _linear_action(maps: Tensor, m0: Tensor, S0: Tensor, m1: Tensor) -> Tensor:  # noqa: N803
    """|m1 - m0|^2 + tr((M - I) S0 (M - I)^T) for a batch of maps ``(..., d, d)``."""
    excess = maps - torch.eye(S0.shape[0], dtype=S0.dtype)
    return (m1 - m0).square().sum() + torch.einsum("...ij,jk,...ik->...", excess, S0, excess)


def _particle_action(x0: Tensor, x1: Tensor) -> tuple[float, float]:
    """Lagrangian action E|x1 - x0|^2 of straight paths from x0 to x1 ``(n, d)``, and its SE."""
    per_particle = (x1 - x0).square().sum(-1)
    return float(per_particle.mean()), float(per_particle.std() / math.sqrt(per_particle.numel()))


def _eulerian_action(matrix: Tensor, m0: Tensor, S0: Tensor, m1: Tensor, n: int,  # noqa: N803
                     generator: torch.Generator, device: str) -> tuple[float, float, list[float]]:
    """int_0^1 int |v_t|^2 dmu_t dt for the displacement interpolation of T(x) = m1 + A (x - m0).

    mu_t = N(m_t, A_t S0 A_t), A_t = (1 - t) I + t A, m_t = (1 - t) m0 + t m1, and the Eulerian
    velocity field is v_t(y) = (A - I) A_t^{-1} (y - m_t) + m1 - m0 (the particle at y came from
    x = m0 + A_t^{-1} (y - m_t)). Fresh exact draws y ~ mu_t at the midpoints of ``N_SLICES``
    slices; returns the action (midpoint rule), its SE and the per-slice energies.
    """
    identity = torch.eye(m0.shape[0], dtype=torch.float64)
    factor = torch.linalg.cholesky(S0)
    energies, variances = [], []
    for k in range(N_SLICES):
        t = (k + 0.5) / N_SLICES
        a_t = (1 - t) * identity + t * matrix
        m_t = (1 - t) * m0 + t * m1
        z = torch.randn(n, m0.shape[0], generator=generator, dtype=torch.float64, device=device)
        y = z @ (a_t @ factor).T.to(device) + m_t.to(device)
        field = (matrix - identity) @ torch.linalg.inv(a_t)
        velocity = (y - m_t.to(device)) @ field.T.to(device) + (m1 - m0).to(device)
        squared = velocity.square().sum(-1)
        energies.append(float(squared.mean()))
        variances.append(float(squared.var()) / n)
    action = sum(energies) / N_SLICES
    return action, math.sqrt(sum(variances)) / N_SLICES, energies


def _gaussian_w2_1d(mean: float, variance: float, target_variance: float) -> float:
    return math.hypot(mean, math.sqrt(variance) - math.sqrt(target_variance))


def _geodesic_part(settings: _Settings, generator: torch.Generator, device: str) -> dict:
    m0, S0, m1, S1 = _gaussians()
    w2 = float(gaussian_w2(m0, S0, m1, S1))
    brenier = gaussian_brenier_map(m0, S0, m1, S1)  # on the CPU, like the closed forms

    def push(x: Tensor, matrix: Tensor) -> Tensor:
        return (x - m0.to(x.device)) @ matrix.T.to(x.device) + m1.to(x.device)

    action, action_se, slice_energies = _eulerian_action(
        brenier.matrix, m0, S0, m1, settings.n_particles, generator, device
    )
    x0 = torch.randn(settings.n_particles, 2, generator=generator, dtype=torch.float64, device=device)
    x0 = x0 @ torch.linalg.cholesky(S0).T.to(device) + m0.to(device)

    # Competing maps S1^{1/2} Q S0^{-1/2} over rotations and reflections Q.
    root1, inverse_root0 = symmetric_matrix_power(S1, 0.5), symmetric_matrix_power(S0, -0.5)
    angles = torch.arange(0.0, 360.0, ANGLE_STEP_DEGREES, dtype=torch.float64)
    rotations = _rotation(torch.deg2rad(angles))
    flip = torch.diag(torch.tensor([1.0, -1.0], dtype=torch.float64))
    rotation_actions = _linear_action(root1 @ rotations @ inverse_root0, m0, S0, m1)
    reflection_actions = _linear_action(root1 @ rotations @ flip @ inverse_root0, m0, S0, m1)
    optimal_q = symmetric_matrix_power(S1, -0.5) @ brenier.matrix @ symmetric_matrix_power(S0, 0.5)
    optimal_angle = math.degrees(math.atan2(float(optimal_q[1, 0]), float(optimal_q[0, 0]))) % 360
    # Particle actions of a few competing maps, to show the closed-form curve is what particles see.
    sample_angles = [optimal_angle + offset for offset in (-90.0, -30.0, 30.0, 90.0)]
    sampled = []
    for angle in sample_angles:
        matrix = root1 @ _rotation(torch.tensor(math.radians(angle), dtype=torch.float64)) @ inverse_root0
        sampled.append(_particle_action(x0, push(x0, matrix)))

    # Constant speed: W2(mu_s, mu_t) = |t - s| W2 on the closed-form interpolants.
    times = torch.linspace(0.0, 1.0, 11, dtype=torch.float64)
    identity = torch.eye(2, dtype=torch.float64)
    maps = (1 - times)[:, None, None] * identity + times[:, None, None] * brenier.matrix
    means = (1 - times)[:, None] * m0 + times[:, None] * m1
    covs = maps @ S0 @ maps.transpose(-1, -2)
    pairwise = gaussian_w2(means[:, None], covs[:, None], means[None], covs[None])
    # s = t is left out: there W2 = 0 sits on gaussian_w2's documented floor sqrt(eps tr S).
    off_diagonal = ~torch.eye(times.numel(), dtype=torch.bool)
    defect = (pairwise - (times[:, None] - times[None]).abs() * w2).abs()[off_diagonal]
    geodesic_defect = float(defect.max())

    minimum = float(torch.minimum(rotation_actions.min(), reflection_actions.min()))
    # Near theta*, action(theta) - W2^2 ~ c (theta - theta*)^2 with c = action''/2; half the grid
    # spacing bounds |theta - theta*| at the best grid point.
    half_step = math.radians(ANGLE_STEP_DEGREES) / 2
    curvature = float(
        (rotation_actions.roll(1) - 2 * rotation_actions + rotation_actions.roll(-1)).abs().max()
    ) / math.radians(ANGLE_STEP_DEGREES) ** 2
    resolution = 0.5 * curvature * half_step**2
    return {
        "w2_squared": w2**2,
        "particle_action": action,
        "particle_action_se": action_se,
        "particle_action_z": (action - w2**2) / action_se,
        "min_competing_action": minimum,
        "min_excess": minimum - w2**2,
        "angle_grid_resolution": resolution,
        "optimal_angle_degrees": optimal_angle,
        "optimal_q_determinant": float(torch.linalg.det(optimal_q)),
        "geodesic_defect": geodesic_defect,
        "sample_angles_degrees": sample_angles,
        "sampled_actions": [value for value, _ in sampled],
        "sampled_action_se": [se for _, se in sampled],
        "_angles": to_numpy(angles),
        "_rotation_actions": to_numpy(rotation_actions),
        "_reflection_actions": to_numpy(reflection_actions),
        "slice_energies": slice_energies,
        "_paths": to_numpy(torch.stack([x0[:60], push(x0[:60], brenier.matrix)])),
    }


def _grid_part(settings: _Settings, generator: torch.Generator, device: str) -> dict:
    from measureflow import pde  # the PDE layer sits above metrics; imported where it is needed

    mean0, variance0 = OU_START
    target_variance = 1.0 / OU_BETA
    target = targets.Gaussian(torch.zeros(1, dtype=torch.float64), torch.ones(1, 1, dtype=torch.float64))
    solver = pde.FokkerPlanck1D(target, OU_BETA, -8.0, 8.0, settings.n_cells)
    start = torch.exp(-0.5 * (solver.x - mean0).square() / variance0) / math.sqrt(2 * math.pi * variance0)
    solution = solver.solve(start, torch.tensor((0.0, *TIMES), dtype=torch.float64))
    grid_w2 = [float(value) for value in solution.w2()[1:]]
    exact = [
        _gaussian_w2_1d(mean0 * math.exp(-t), variance0 * math.exp(-2 * t)
                        + target_variance * (1 - math.exp(-2 * t)), target_variance)
        for t in TIMES
    ]

    h = settings.step_size
    contraction, noise = 1 - h, math.sqrt(2 * h / OU_BETA)
    steps = [round(t / h) for t in TIMES]
    stationary = noise**2 / (1 - contraction**2)
    ula_exact = [
        _gaussian_w2_1d(
            mean0 * contraction**k,
            contraction ** (2 * k) * variance0 + stationary * (1 - contraction ** (2 * k)),
            target_variance,
        )
        for k in steps
    ]
    estimates = np.zeros((settings.n_replicates, len(TIMES)))
    for replicate in range(settings.n_replicates):
        x = mean0 + math.sqrt(variance0) * torch.randn(
            settings.n_particles, generator=generator, dtype=torch.float64, device=device
        )
        done = 0
        for column, k in enumerate(steps):
            for _ in range(k - done):
                x = contraction * x + noise * torch.randn(
                    x.shape, generator=generator, dtype=x.dtype, device=x.device
                )
            done = k
            estimates[replicate, column] = float(wasserstein_1d_to_normal(x, 0.0, math.sqrt(target_variance)))
    particle_mean = estimates.mean(0)
    particle_se = estimates.std(0, ddof=1) / math.sqrt(settings.n_replicates)
    return {
        "times": list(TIMES),
        "grid_w2": grid_w2,
        "exact_w2": exact,
        "grid_error": [abs(g - e) for g, e in zip(grid_w2, exact, strict=True)],
        "grid_tolerance": [GRID_RELATIVE_TOLERANCE * e for e in exact],
        "ula_exact_w2": ula_exact,
        "ula_bias": [abs(u - e) for u, e in zip(ula_exact, exact, strict=True)],
        "particle_w2": particle_mean.tolist(),
        "particle_se": particle_se.tolist(),
        "mass_error": float((solution.mass() - 1).abs().max()),
    }


def run(size: str, seed: int, device: str, out_dir: Path) -> CheckResult:
    settings = SETTINGS[size]
    generator = make_generator(seed, device)
    geodesic = _geodesic_part(settings, generator, device)
    grid = _grid_part(settings, generator, device)

    action_ok = abs(geodesic["particle_action_z"]) < Z
    minimum_ok = -1e-10 <= geodesic["min_excess"] <= geodesic["angle_grid_resolution"] + 1e-10
    geodesic_ok = geodesic["geodesic_defect"] < GEODESIC_TOLERANCE
    grid_ok = all(e < tol for e, tol in zip(grid["grid_error"], grid["grid_tolerance"], strict=True))
    particles_ok = all(
        abs(p - u) < Z * se
        for p, u, se in zip(grid["particle_w2"], grid["ula_exact_w2"], grid["particle_se"], strict=True)
    )
    agreement = [
        abs(p - g) < Z * se + bias + tol
        for p, g, se, bias, tol in zip(grid["particle_w2"], grid["grid_w2"], grid["particle_se"],
                                       grid["ula_bias"], grid["grid_tolerance"], strict=True)
    ]
    figure = _figure(geodesic, grid, out_dir / f"{NAME}.png")
    details = {key: value for key, value in geodesic.items() if not key.startswith("_")}
    details.update({
        "grid": grid,
        "n_particles": settings.n_particles,
        "n_replicates": settings.n_replicates,
        "step_size": settings.step_size,
        "n_cells": settings.n_cells,
        "verdicts": {
            "action_equals_w2": action_ok, "brenier_minimizes": minimum_ok,
            "constant_speed": geodesic_ok, "grid_matches_closed_form": grid_ok,
            "particles_match_ula_law": particles_ok, "grid_matches_particles": all(agreement),
        },
    })
    return CheckResult(
        name=NAME,
        claim=(
            "Benamou-Brenier: between two 2-D Gaussians the displacement interpolation has kinetic "
            "energy $W_2^2$ and constant speed, and other transport paths cost more; in 1-D the grid "
            "Fokker-Planck solution's quantile $W_2$ to the Gibbs measure matches the closed form and "
            f"ULA particles (OU, beta = {OU_BETA:g}, start N({OU_START[0]:g}, {OU_START[1]:g}), "
            f"t = {format_list(TIMES, 3)})."
        ),
        predicted=(
            f"action = W2^2 = {geodesic['w2_squared']:.6f}; min competing action = W2^2; "
            f"W2(mu_s, mu_t) = |t - s| W2; 1-D W2(mu_t, pi) = {format_list(grid['exact_w2'])} "
            f"(ULA law: {format_list(grid['ula_exact_w2'])})"
        ),
        measured=(
            f"Eulerian action {geodesic['particle_action']:.6f} (z = {geodesic['particle_action_z']:.2f}); "
            f"min competing - W2^2 = {geodesic['min_excess']:.2e} at angle resolution "
            f"{geodesic['angle_grid_resolution']:.1e}; geodesic defect {geodesic['geodesic_defect']:.1e}; "
            f"grid {format_list(grid['grid_w2'])} (errors {format_list(grid['grid_error'], 2)}); "
            f"particles {format_list(grid['particle_w2'])} +- {format_list(grid['particle_se'], 2)}"
        ),
        tolerance=(
            f"|action - W2^2| < {Z:g} SE; 0 <= min competing - W2^2 <= grid resolution; geodesic defect "
            f"< {GEODESIC_TOLERANCE:g}; grid error < {GRID_RELATIVE_TOLERANCE:g} x W2; particles vs ULA "
            f"law < {Z:g} SE (hence particles vs grid < {Z:g} SE + |ULA bias| + grid tolerance)"
        ),
        # The grid-vs-particles agreement follows from the two comparisons before it by the triangle
        # inequality; it is reported, not voted on.
        passed=bool(action_ok and minimum_ok and geodesic_ok and grid_ok and particles_ok),
        details=details,
        figures=(figure,),
    )


def _figure(geodesic: dict, grid: dict, path: Path) -> str:
    figure, axes = new_figure(3, 1, width=4.2, height=3.5)
    axis = axes[0, 0]
    paths = geodesic["_paths"]
    for start, end in zip(paths[0], paths[1], strict=True):
        axis.plot([start[0], end[0]], [start[1], end[1]], color="tab:blue", alpha=0.35, linewidth=0.8)
    axis.scatter(paths[0][:, 0], paths[0][:, 1], s=6, color="tab:blue", label="mu_0")
    axis.scatter(paths[1][:, 0], paths[1][:, 1], s=6, color="tab:red", label="T(x) ~ mu_1")
    axis.set_title("displacement interpolation (straight lines)")
    axis.set_aspect("equal", adjustable="datalim")
    axis.legend(fontsize=7)

    axis = axes[0, 1]
    axis.plot(geodesic["_angles"], geodesic["_rotation_actions"], color="tab:blue",
              label="S1^1/2 R(theta) S0^-1/2 (closed form)")
    axis.plot(geodesic["_angles"], geodesic["_reflection_actions"], color="tab:orange",
              label="with a reflection")
    axis.plot(np.mod(geodesic["sample_angles_degrees"], 360), geodesic["sampled_actions"], "ko",
              markersize=4, label="particles")
    axis.axhline(geodesic["w2_squared"], color="k", linestyle="--", linewidth=1, label="W2^2")
    axis.axvline(geodesic["optimal_angle_degrees"], color="gray", linestyle=":", linewidth=1)
    axis.set_xlabel("theta (degrees)")
    axis.set_ylabel("kinetic energy of the path")
    axis.set_title("Brenier's map has the least action")
    axis.legend(fontsize=7)

    axis = axes[0, 2]
    times = grid["times"]
    axis.plot(times, grid["exact_w2"], "k-", label="closed form")
    axis.plot(times, grid["grid_w2"], "s", color="tab:green", markerfacecolor="none",
              label="grid (quantiles)")
    axis.errorbar(times, grid["particle_w2"], yerr=[Z * se for se in grid["particle_se"]], fmt="o",
                  color="tab:red", markersize=3, capsize=3, label="ULA particles (+- 4 SE)")
    axis.set_yscale("log")
    axis.set_xlabel("t")
    axis.set_ylabel("W2(mu_t, pi)")
    axis.set_title("1-D OU: grid vs particles")
    axis.legend(fontsize=7)
    return save_figure(figure, path)
