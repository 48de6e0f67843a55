r"""Check: noise smooths the loss. (a) Noisy gradient descent on a 1-D loss with a sharp deep
and a flat shallow minimum puts more and more of its stationary mass on the flat one as the step
eta grows, while eta stays below the sharp well's stability limit; (b) graduated optimization on
Rastrigin reaches the global basin from the starts that the smoothed loss's global basin
predicts; gradient descent does not.

Part (a): sharp vs flat minima (seed 001, "Sharp minima vs flat minima", "ノイズによる平滑化効果",
Kleinberg, Li & Yuan 2018). The text analyses SGD as gradient descent with additive gradient
noise, x_t = x_{t-1} - eta (L'(x_{t-1}) + sigma xi_t), xi_t ~ N(0, 1) of a fixed scale sigma
(y_t = x_t + eta xi_t then descends E L(y - eta xi) in expectation). That chain, simulated
here, is X' = m(X) + s xi with drift map m(x) = x - eta L'(x) and s = eta sigma: ULA at step eta
and inverse temperature beta = 2 / (eta sigma^2), so the effective temperature eta sigma^2 / 2
grows with eta. Loss (Gaussian wells at -+a on a quadratic bowl)

    L(y) = c y^2 / 2 - D_s exp(-(y + a)^2 / (2 w_s^2)) - D_f exp(-(y - a)^2 / (2 w_f^2)),

c = 4, a = 0.2, sharp D_s = 1, w_s = 0.1 (L'' = 104 at its minimum -0.189, L = -0.943), flat
D_f = 0.6, w_f = 0.15 (L'' ~ 31, minimum 0.172, L = -0.531), saddle at 0.012. Gradient descent
is stable in the sharp well for eta < 2 / L''(sharp) = 0.0192; every eta in ``ETAS`` (0.006 to
0.018) is below it, so what moves the mass is the noise, not an unstable sharp well. Its
Gaussian smoothing is closed form: L_delta(y) = c (y^2 + delta^2) / 2 - sum D w / v exp(-(y -+ a)^2
/ (2 v^2)), v^2 = w^2 + delta^2.

Exact reference: the stationary law of the chain itself (ULA's law, not the Gibbs measure),
computed by :func:`measureflow.pde.markov_chain.stationary_law_1d`: the transfer operator of
the Gaussian transition between 1000 cells of [-1.5, 1.5] and its left eigenvector of
eigenvalue 1 (grid error O(dx^2 / s^2), dx / s <= 0.075; mass leaving the box < 1e-6).
Prediction: the stationary fraction p(eta) of the flat basin (y > saddle) increases with eta.
Heuristic compared, not judged: the Gibbs measure exp(-beta L_delta) of the smoothed loss at
delta = eta sigma (the text's "L bar"), and exp(-beta L) of the raw loss, at the same beta.

Method (a): n chains (vectorized) start at the sharp minimum (where plain gradient descent
stays), run ``burn_in`` steps of :func:`measureflow.samplers.ula.step`; the flat-basin count at
the end, one sample per chain, is Binomial(n, p_burn) with p_burn -> p(eta) geometrically (the
fraction after half the burn-in is reported as a mixing diagnostic).

Verdict (a): for every eta |count / n - p(eta)| <= 4 sqrt(p (1 - p) / n), and p(eta) is strictly
increasing over ``ETAS`` with the largest minus the smallest above 8 binomial SE of the measured
fractions (the rise is then also visible in the measurements, not only in the exact law).

Part (b): graduated optimization.

Claim (seed 001, "noise as smoothing", "graduated optimization"; Kleinberg, Li & Yuan 2018;
Hazan, Levy & Shalev-Shwartz 2016). Descending the Gaussian smoothing L_delta(x) = E L(x + delta u)
instead of L sees only the coarse shape of L; with delta decreased to 0 in stages, the method
ends in the basin of the global minimum of L whenever the first stage does so for L_delta1.

Set-up. Rastrigin L(x) = A d + sum_i (x_i^2 - A cos 2 pi x_i), A = 10, d = 3, starts uniform on
[-5.12, 5.12]^3. Its smoothing is explicit (E cos 2 pi (x + delta u) = exp(-2 pi^2 delta^2)
cos 2 pi x):

    L_delta(x) = A d + sum_i (x_i^2 + delta^2 - A exp(-2 pi^2 delta^2) cos 2 pi x_i),

separable, with 0 its global minimizer for every delta. In 1-D the basin of 0 under gradient
descent on L_delta is the interval (-b(delta), b(delta)), b the first local maximum of L_delta
beyond 0 (infinite when there is none: L_delta is convex for delta > 0.517, and the ripples at
+-1 vanish already near delta = 0.42). Gradient descent at a step below 1 / max L_delta'' makes
the map x - h L_delta'(x) increasing, so no iterate crosses a local maximum: a coordinate ends
at 0 iff it starts within b. Each later stage starts at a minimum of the previous L_delta, and
the minima at 0 and near the integers persist as delta decreases (A exp(-2 pi^2 delta^2) only
grows), so the final cell is fixed by the first stage. Prediction: the fraction of starts that
reach the global basin is p(delta_1) = (min(b(delta_1), 5.12) / 5.12)^d, and for plain
gradient descent (delta = 0, b = 1/2) p_GD = (0.5 / 5.12)^d = 0.00093.

Method. :func:`measureflow.samplers.graduated.graduated_descent` with the closed-form smoothing,
schedules delta_1, delta_1 / 2, delta_1 / 4, 0 for delta_1 in ``FIRST_DELTAS``, step
1 / (2 + 4 pi^2 A exp(-2 pi^2 delta^2)) = 1 / max L_delta'' per stage, ``n_stage_steps`` steps
per stage; gradient descent is the schedule (0,) from the same starts with as many steps. b is
located on a grid of spacing 2.6e-5 from the sign change of L_delta'.

Verdict (b). The success count of n starts is Binomial(n, p) (outcome = "all coordinates start
within b", exactly, as derived). For every schedule and for gradient descent, |measured - p|
<= 4 sqrt(p (1 - p) / n) (for p = 1: every start succeeds); and the widest schedule succeeds
more often than gradient descent by more than 4 pooled binomial SE.

The check passes when both parts pass.
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
from measureflow.checks._figures import format_list, new_figure, save_figure
from measureflow.checks.base import CheckResult
from measureflow.pde.markov_chain import stationary_law_1d
from measureflow.samplers import ula
from measureflow.samplers.graduated import graduated_descent
from measureflow.targets import Target
from measureflow.targets.smoothing import SmoothedTarget

__all__ = ["run"]

NAME = "noise-smooths"
DIM = 3
AMPLITUDE = 10.0
BOX = 5.12
FIRST_DELTAS = (0.3, 0.4, 0.45, 0.6)
Z = 4.0
# Part (a): the sharp/flat loss, the gradient-noise scale and the steps (all below 2 / L''(sharp)).
BOWL, OFFSET = 4.0, 0.2
SHARP_DEPTH, SHARP_WIDTH = 1.0, 0.1
FLAT_DEPTH, FLAT_WIDTH = 0.6, 0.15
SIGMA = 6.7
ETAS = (0.006, 0.01, 0.014, 0.018)
BOX_A, N_CELLS = 1.5, 1000
RISE_SE = 8.0


@dataclass(frozen=True)
class _Settings:
    n_starts: int
    n_stage_steps: int
    n_chains: int
    burn_in: int


SETTINGS = {
    "quick": _Settings(n_starts=2000, n_stage_steps=300, n_chains=5000, burn_in=800),
    "full": _Settings(n_starts=20_000, n_stage_steps=600, n_chains=50_000, burn_in=4000),
}


class _SharpFlat(Target):
    """L(y) = c (y^2 + delta^2) / 2 - sum_k D_k (w_k / v_k) exp(-(y - m_k)^2 / (2 v_k^2)),
    v_k^2 = w_k^2 + delta^2: the sharp/flat loss of part (a) smoothed at delta (delta = 0: L)."""

    name = "sharp-flat"

    def __init__(self, delta: float = 0.0) -> None:
        super().__init__(1)
        self.delta = float(delta)
        self.wells = ((-OFFSET, SHARP_DEPTH, SHARP_WIDTH), (OFFSET, FLAT_DEPTH, FLAT_WIDTH))

    def energy_and_grad(self, x: Tensor) -> tuple[Tensor, Tensor]:
        y = x[:, 0]
        energy = BOWL * (y**2 + self.delta**2) / 2
        slope = BOWL * y
        for centre, depth, width in self.wells:
            variance = width**2 + self.delta**2
            well = depth * width / math.sqrt(variance) * torch.exp(-(y - centre) ** 2 / (2 * variance))
            energy = energy - well
            slope = slope + well * (y - centre) / variance
        return energy, slope[:, None]

    def energy(self, x: Tensor) -> Tensor:
        return self.energy_and_grad(x)[0]

    def grad_energy(self, x: Tensor) -> Tensor:
        return self.energy_and_grad(x)[1]


def _critical_points(device: str) -> tuple[float, float, float]:
    """(sharp minimum, saddle, flat minimum) of L from the sign changes of L' on a fine grid."""
    y = torch.linspace(-BOX_A, BOX_A, 300_001, dtype=torch.float64, device=device)
    slope = _SharpFlat().grad_energy(y[:, None])[:, 0]
    changes = torch.nonzero(torch.sign(slope[:-1]) != torch.sign(slope[1:]))[:, 0]
    if changes.numel() != 3:
        raise RuntimeError(f"the sharp/flat loss should have 3 critical points, found {changes.numel()}")
    return tuple(float(y[index]) for index in changes)  # type: ignore[return-value]


def _gibbs_fraction(target: Target, beta: float, split: float, device: str) -> float:
    y = torch.linspace(-BOX_A, BOX_A, 30_001, dtype=torch.float64, device=device)
    energy = target.energy(y[:, None])
    weight = torch.exp(-beta * (energy - energy.min()))
    return float(weight[y > split].sum() / weight.sum())


def _part_a(settings: _Settings, generator: torch.Generator, device: str) -> dict:
    loss = _SharpFlat().to(device=device, dtype=torch.float64)
    sharp, saddle, flat = _critical_points(device)
    curvature = float(torch.func.grad(lambda t: loss.grad_energy(t[None, None])[0, 0])(
        torch.tensor(sharp, dtype=torch.float64, device=device)))
    n, rows = settings.n_chains, []
    for eta in ETAS:
        beta = 2 / (eta * SIGMA**2)  # ULA's noise sqrt(2 eta / beta) = eta sigma
        law = stationary_law_1d(lambda y, eta=eta: y - eta * loss.grad_energy(y[:, None])[:, 0],
                                eta * SIGMA, -BOX_A, BOX_A, N_CELLS, device=device)
        exact = law.probability(saddle)
        state = ula.init(torch.full((n, 1), sharp, dtype=torch.float64, device=device), loss,
                         ula.ULAParams(step_size=eta, beta=beta))
        params = ula.ULAParams(step_size=eta, beta=beta)
        halfway = math.nan
        for t in range(settings.burn_in):
            state, _ = ula.step(state, loss, params, generator=generator)
            if t + 1 == settings.burn_in // 2:
                halfway = float((state.position[:, 0] > saddle).double().mean())
        count = int((state.position[:, 0] > saddle).sum())
        se = math.sqrt(exact * (1 - exact) / n)
        rows.append({"eta": eta, "temperature": eta * SIGMA**2 / 2, "exact": exact, "count": count,
                     "measured": count / n, "z": (count / n - exact) / se, "halfway": halfway,
                     "smoothed_gibbs": _gibbs_fraction(_SharpFlat(eta * SIGMA).to(device=device,
                                                                                  dtype=torch.float64),
                                                       beta, saddle, device),
                     "raw_gibbs": _gibbs_fraction(loss, beta, saddle, device),
                     "escaped": law.escaped, "density": law.density.cpu().tolist()})
    exact = [row["exact"] for row in rows]
    increasing = all(later > earlier for earlier, later in zip(exact, exact[1:], strict=False))
    rise_se = math.sqrt(sum(rows[k]["measured"] * (1 - rows[k]["measured"]) / n for k in (0, -1)))
    rise_z = (rows[-1]["measured"] - rows[0]["measured"]) / rise_se
    agrees = all(abs(row["z"]) <= Z for row in rows)
    return {"rows": rows, "sharp": sharp, "saddle": saddle, "flat": flat, "sharp_curvature": curvature,
            "stability_eta": 2 / curvature, "increasing": increasing, "rise_z": rise_z, "agrees": agrees,
            "passed": bool(increasing and agrees and rise_z > RISE_SE and max(ETAS) < 2 / curvature),
            "grid_x": law.x.cpu().tolist(), "n_chains": n, "burn_in": settings.burn_in}


def _stable_step(delta: float) -> float:
    """1 / max L_delta'' = 1 / (2 + 4 pi^2 A exp(-2 pi^2 delta^2))."""
    return 1.0 / (2 + 4 * math.pi**2 * AMPLITUDE * math.exp(-2 * math.pi**2 * delta**2))


def _basin_half_width(delta: float, device: str) -> float:
    """b(delta): the first local maximum of the 1-D L_delta beyond 0 (inf if none on [0, BOX])."""
    line = targets.Rastrigin(dim=1, amplitude=AMPLITUDE).to(device=device, dtype=torch.float64)
    x = torch.linspace(0, BOX, 200_001, dtype=torch.float64, device=device)[:, None]
    slope = SmoothedTarget(line, delta).grad_energy(x)[:, 0] if delta > 0 else line.grad_energy(x)[:, 0]
    crossings = torch.nonzero((slope[:-1] > 0) & (slope[1:] <= 0))
    return float(x[crossings[0, 0], 0]) if crossings.numel() else math.inf


def _z(successes: int, n: int, p: float) -> float:
    if p >= 1.0:
        return 0.0 if successes == n else -math.inf
    return (successes / n - p) / math.sqrt(p * (1 - p) / n)


def run(size: str, seed: int, device: str, out_dir: Path) -> CheckResult:
    settings = SETTINGS[size]
    n, n_stage = settings.n_starts, settings.n_stage_steps
    target = targets.Rastrigin(dim=DIM, amplitude=AMPLITUDE).to(device=device, dtype=torch.float64)
    generator = make_generator(seed, device)
    part_a = _part_a(settings, generator, device)
    rows_a = part_a["rows"]
    starts = (2 * torch.rand(n, DIM, generator=generator, dtype=torch.float64, device=device) - 1) * BOX

    rows = []
    for first in (*FIRST_DELTAS, 0.0):
        deltas = [first, first / 2, first / 4, 0.0] if first > 0 else [0.0]
        steps = [_stable_step(delta) for delta in deltas]
        count = n_stage if first > 0 else 4 * n_stage
        result = graduated_descent(target, starts, deltas, steps, count)
        success = target.in_global_basin(result.position)
        half_width = _basin_half_width(first, device)
        in_basin = (starts.abs() < half_width).all(1)
        predicted = (min(half_width, BOX) / BOX) ** DIM
        successes = int(success.sum())
        finite_width = half_width if math.isfinite(half_width) else None
        rows.append({"first_delta": first, "basin_half_width": finite_width,
                     "predicted": predicted, "successes": successes, "rate": successes / n,
                     "z": _z(successes, n, predicted),
                     "agreement": float((success == in_basin).double().mean()),
                     "final_energy_median": float(target.energy(result.position).median())})
    descent, widest = rows[-1], rows[-2]
    pooled = (widest["successes"] + descent["successes"]) / (2 * n)
    gap_z = (widest["rate"] - descent["rate"]) / math.sqrt(max(pooled * (1 - pooled), 1e-300) * 2 / n)
    agrees = all(abs(row["z"]) <= Z for row in rows)
    passed = agrees and gap_z > Z and part_a["passed"]
    figure = _figure(rows, n, out_dir / f"{NAME}.png", part_a)
    labels = [f"{row['first_delta']:g}" for row in rows[:-1]]
    return CheckResult(
        name=NAME,
        claim=(
            "(a) Noisy gradient descent $x - \\eta (L'(x) + \\sigma \\xi)$ ($\\sigma = 6.7$) on a 1-D loss "
            "with a sharp deep and a flat shallow minimum puts a growing share of its stationary law on "
            f"the flat one as $\\eta$ grows over {format_list(list(ETAS))}, all below the sharp well's "
            f"stability limit {part_a['stability_eta']:.4f}. (b) "
            "Gaussian smoothing removes spurious minima: graduated descent on Rastrigin ($d = 3$, "
            "$A = 10$) with the schedule $\\delta_1, \\delta_1/2, \\delta_1/4, 0$ reaches the global basin "
            "from exactly the starts that lie in the basin of the global minimum of $L_{\\delta_1}$, so "
            "its success rate is $(b(\\delta_1) / 5.12)^d$; gradient descent from the same starts only "
            f"from the central cell. (delta_1 = {', '.join(labels)}; {n} uniform starts on "
            "$[-5.12, 5.12]^3$.)"
        ),
        predicted=(
            f"(a) exact stationary flat fraction {format_list([row['exact'] for row in rows_a])} "
            "(increasing; "
            f"smoothed-loss Gibbs {format_list([row['smoothed_gibbs'] for row in rows_a])}, raw Gibbs "
            f"{format_list([row['raw_gibbs'] for row in rows_a])}). (b) "
            f"success rates {format_list([row['predicted'] for row in rows[:-1]])} for delta_1 = "
            f"{', '.join(labels)}; gradient descent {descent['predicted']:.5f}"
        ),
        measured=(
            f"(a) flat fraction of {part_a['n_chains']} chains "
            f"{format_list([row['measured'] for row in rows_a])} "
            f"(z = {format_list([row['z'] for row in rows_a], 2)}; rise {part_a['rise_z']:.0f} SE). "
            f"(b) success rates {format_list([row['rate'] for row in rows[:-1]])} "
            f"(z = {format_list([row['z'] for row in rows[:-1]], 2)}); gradient descent "
            f"{descent['successes']}/{n} (z = {descent['z']:.2f}); per-start agreement with the predicted "
            "basin "
            f"{format_list([row['agreement'] for row in rows], 5)}; widest vs GD gap z = {gap_z:.0f}"
        ),
        tolerance=(
            f"(a) |fraction - p(eta)| <= {Z:g} binomial SE for every eta, p(eta) increasing, measured rise > "
            f"{RISE_SE:g} SE. (b) |rate - p| <= {Z:g} binomial SE sqrt(p (1 - p) / n) for every schedule "
            "and for gradient "
            "descent "
            f"(p = 1: all starts succeed); the widest schedule beats gradient descent by > {Z:g} pooled SE."
        ),
        passed=bool(passed),
        details={"dim": DIM, "amplitude": AMPLITUDE, "n_starts": n, "n_stage_steps": n_stage,
                 "rows": rows, "gap_z": gap_z,
                 "part_a": {key: value for key, value in part_a.items() if key != "grid_x"}
                 | {"rows": [{k: v for k, v in row.items() if k != "density"} for row in rows_a]}},
        figures=(figure,),
    )


def _figure(rows: list[dict], n: int, path: Path, part_a: dict) -> str:
    figure, axes = new_figure(2, 2, width=4.8, height=3.6)
    axis = axes[0, 0]
    grid = np.asarray(part_a["grid_x"])
    for row in part_a["rows"]:
        axis.plot(grid, row["density"], label=f"eta={row['eta']:g}")
    axis.plot(grid, _SharpFlat().energy(torch.as_tensor(grid)[:, None]).numpy(), color="0.4",
              linewidth=0.8, label="L")
    axis.axvline(part_a["saddle"], color="0.7", linestyle=":")
    axis.set_xlim(-0.8, 0.8)
    axis.set_xlabel("y")
    axis.set_ylabel("exact stationary density / loss")
    axis.set_title("(a) sharp (left) vs flat (right)", fontsize=9)
    axis.legend(fontsize=7)
    axis = axes[0, 1]
    etas = [row["eta"] for row in part_a["rows"]]
    n_chains = part_a["n_chains"]
    axis.errorbar(etas, [row["measured"] for row in part_a["rows"]],
                  yerr=[Z * math.sqrt(row["exact"] * (1 - row["exact"]) / n_chains)
                        for row in part_a["rows"]],
                  fmt="o", capsize=3, label="chains (+- 4 SE of exact)")
    axis.plot(etas, [row["exact"] for row in part_a["rows"]], "k-", label="exact (transfer operator)")
    axis.plot(etas, [row["smoothed_gibbs"] for row in part_a["rows"]], "--", label="Gibbs of smoothed L")
    axis.plot(etas, [row["raw_gibbs"] for row in part_a["rows"]], ":", label="Gibbs of L")
    axis.set_xlabel(f"eta (GD stable in sharp well below {part_a['stability_eta']:.4f})")
    axis.set_ylabel("fraction in the flat basin")
    axis.legend(fontsize=7)
    axis = axes[1, 0]
    line = targets.Rastrigin(dim=1, amplitude=AMPLITUDE).to(dtype=torch.float64)
    x = torch.linspace(-3, 3, 1201, dtype=torch.float64)[:, None]
    axis.plot(x[:, 0].numpy(), line.energy(x).numpy(), color="0.6", linewidth=0.8, label="L (1-D)")
    for delta in (0.3, 0.45, 0.6):
        axis.plot(x[:, 0].numpy(), SmoothedTarget(line, delta).energy(x).numpy(),
                  label=f"L_delta, delta={delta:g}")
    axis.set_xlabel("x")
    axis.set_ylabel("loss")
    axis.legend(fontsize=7)
    axis = axes[1, 1]
    labels = [f"{row['first_delta']:g}" if row["first_delta"] > 0 else "GD" for row in rows]
    positions = np.arange(len(rows))
    axis.bar(positions, [row["rate"] for row in rows], color="tab:blue", alpha=0.7, label="measured")
    errors = [Z * math.sqrt(row["predicted"] * (1 - row["predicted"]) / n) for row in rows]
    axis.errorbar(positions, [row["predicted"] for row in rows], yerr=errors, fmt="_", color="k",
                  markersize=14, capsize=4, label="(b/5.12)^d +- 4 SE")
    axis.set_xticks(positions, labels)
    axis.set_xlabel("first delta")
    axis.set_ylabel("fraction reaching the global basin")
    axis.legend(fontsize=7)
    return save_figure(figure, path)
