r"""Check: an energy-based model trained by maximum likelihood learns a 2-D Gaussian mixture.

Claim. An energy network E trained by maximum likelihood, with the model expectation of the
gradient E_data[grad_theta E] - E_model[grad_theta E] estimated by persistent Langevin chains,
learns a Gibbs measure exp(-E) / Z whose samples match the data: MMD^2 to fresh data is within 3x
the noise floor (the same statistic between two fresh data sets of the same size), and the energy
landscape shows every mode of the mixture.

The mixture. 8 equal-weight isotropic Gaussians of std 0.3 centred on the circle of radius 2 at
angles 2 pi k / 8 (float64, :class:`measureflow.data.toys.MixtureSpec`), standardized by its
exact per-coordinate std sqrt(2^2 / 2 + 0.3^2) = 1.4457, so the modes sit at radius 1.383 with std
0.2075, 1.059 apart: the density at the midpoint of two neighbours is 7.7% of that at a centre (a
2.56-nat barrier). Why not the sharper toy ``8gaussians`` (std 0.1, a 28.6-nat barrier): Langevin
chains never cross such barriers, so the model samples of PCD never move mass between modes and
maximum likelihood cannot fix the relative depths of the wells; they random-walk with the
gradient noise, and the learned Gibbs measure ends with badly unequal mode weights while chains
started uniformly still look like the data. Measured with these settings (but EMA 0.99, h = 0.002 as the
sharper modes need): the learned Gibbs measure was 72x and 56x the noise floor (population
value; mode masses off by up to 15x) for seeds 0 and 1, while MALA from uniform starts gave 3.3x
and 2.2x. At std 0.3 the chains cross often enough to carry the weights.

Method. Train ``train_ebm`` (EnergyMLP 3 x 64 SiLU behind an input scale of 3; batch 256; PCD
with 256 persistent chains, 10 ULA steps of h = 0.01 per training step; Adam 2e-3 with cosine
decay; alpha = 0.01; EMA 0.999) on ``n_data`` standardized draws. Then sample the EMA energy's Gibbs
measure: draw ``n_proposals`` points from the broad init distribution of the replay buffer
(uniform on [-3, 3]^2), resample ``R * n`` of them with probabilities proportional to exp(-E)
(sampling importance resampling), and run MALA (step size adapted during the first half, then
frozen) from them. Why this is honest: SIR from a distribution that covers the support is a
consistent sampler of exp(-E) that knows nothing of the data or of the training chains, and MALA
leaves exp(-E) exactly invariant, so it can only bring the law closer to exp(-E) and it breaks up
the duplicates of resampling. Neither starting from the replay buffer (the training's own
chains, which the fit has matched to the data whatever exp(-E) says) nor from plain uniform draws
(each chain stays in the basin it falls into, so the mode weights reflect basin areas, not
exp(-E)) samples the Gibbs measure's mode weights; MALA from plain uniform starts is reported for
comparison in ``details``.

MMD. Biased V-statistic with a Gaussian kernel of bandwidth 0.3 (``measureflow.metrics.mmd2``),
in float64, between n model samples and n fresh data, repeated on R disjoint sample sets with
fresh data each time and averaged; the noise floor is the average of the same statistic over R
pairs of fresh data sets of size n. Averaging R repetitions shrinks the spread of both (one
V-statistic at n = 2000 varies by 35-40% of its mean: measured over the floors of seeds 0-2).
For reference the population value MMD^2(exp(-E)/Z, mixture) is computed without sampling: the
kernel sums of the grid quadrature of exp(-E) against itself (separable on the grid) and against
the mixture (Gaussian integrals in closed form), beside the expected floor 2 (1 - E k(X, X')) / n.

Modes (crisp): for every centre c_k of the mixture, (a) the learned energy has a strict local
minimum on the grid over [-3, 3]^2 (200 x 200 quick, 300 x 300 full; lower than its 8
neighbours) within one mode std (0.2075) of c_k, (b) the learned density at c_k exceeds that at
the midpoint towards each neighbouring centre by at least a factor e (E(midpoint) - E(c_k) >= 1
nat; the data's own ratio is 2.56 nats), and (c) the learned Gibbs mass of c_k's Voronoi cell
(grid quadrature) lies in [1/16, 1/4], i.e. within a factor 2 of the true 1/8. Sanity: the mass
of the learned density in the outer band 2.5 < max(|x1|, |x2|) <= 3 of the window is below 1e-3,
so the window (and the SIR proposal) covers the learned measure.

Verdict: pass when the MMD ratio is <= 3, all three mode conditions hold for all 8 modes, and the
window covers the measure.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from measureflow._core import make_generator
from measureflow.checks._figures import format_list, new_figure, save_figure, to_numpy
from measureflow.checks.base import CheckResult
from measureflow.data.toys import MixtureSpec
from measureflow.generative.ebm import draw_energy_landscape, energy_on_grid, sample_ebm, train_ebm
from measureflow.generative.ebm.landscape import EnergyGrid
from measureflow.metrics import mmd2

__all__ = ["SETTINGS", "mixture", "run"]

NAME = "ebm-mixture"
N_MODES = 8
RADIUS = 2.0
MODE_STD = 0.3
BANDWIDTH = 0.3
MMD_FACTOR = 3.0
BOX = 3.0  # the replay buffer's init distribution is uniform on [-BOX, BOX]^2 (standardized units)
BAND = 0.5
MAX_BAND_MASS = 1e-3
MIN_BARRIER = 1.0
MASS_RANGE = (0.5 / N_MODES, 2.0 / N_MODES)
MALA_STEP = 0.01


@dataclass(frozen=True)
class _Settings:
    n_data: int
    n_steps: int
    n_eval: int  # model samples and fresh data per MMD repetition
    n_repeats: int
    n_proposals: int
    n_mala: int
    grid_size: int


# Quick: ~17-20 s of training on one core (3,000 steps of ~6 ms) and ~3 s for sampling, metrics and
# the figure. Full: 12,000 steps (~100 s) and n = 3,000 per MMD repetition, as in the learned-score check.
SETTINGS = {
    "quick": _Settings(n_data=10_000, n_steps=3_000, n_eval=2_000, n_repeats=6, n_proposals=200_000,
                       n_mala=100, grid_size=200),
    "full": _Settings(n_data=50_000, n_steps=12_000, n_eval=3_000, n_repeats=6, n_proposals=1_000_000,
                      n_mala=200, grid_size=300),
}

# train_ebm's settings for this check (its defaults, written out so the check does not move with them).
TRAINING = {
    "batch_size": 256, "hidden": 64, "depth": 3, "input_scale": 3.0, "lr": 2e-3, "alpha": 0.01,
    "ema_decay": 0.999, "buffer_size": 256, "reinit_fraction": 0.0, "n_langevin": 10, "step_size": 0.01,
    "init": "uniform", "init_scale": BOX, "lr_schedule": "cosine",
}


def mixture() -> tuple[MixtureSpec, float]:
    """The 8-mode ring mixture (radius 2, std 0.3, float64) and its exact per-coordinate std."""
    angles = 2 * math.pi * torch.arange(N_MODES, dtype=torch.float64) / N_MODES
    means = RADIUS * torch.stack([torch.cos(angles), torch.sin(angles)], dim=1)
    covs = MODE_STD**2 * torch.eye(2, dtype=torch.float64).expand(N_MODES, 2, 2).clone()
    weights = torch.full((N_MODES,), 1.0 / N_MODES, dtype=torch.float64)
    spec = MixtureSpec("ring8", means, covs, weights)
    return spec, math.sqrt(float(spec.covariance().diagonal().mean()))


def _kernel_mean_mixture(points: Tensor, means: Tensor, variance: float) -> Tensor:
    """E k(x, Y), Y ~ (1/K) sum_k N(mu_k, v I) in 2-D, Gaussian kernel of bandwidth h: the
    convolution of two Gaussians, h^2 / (h^2 + v) exp(-|x - mu_k|^2 / (2 (h^2 + v))), averaged over k."""
    spread = BANDWIDTH**2 + variance
    d2 = (points[:, None, :] - means[None]).square().sum(-1)
    return (BANDWIDTH**2 / spread * torch.exp(-d2 / (2 * spread))).mean(1)


def _population_mmd2(grid: EnergyGrid, means: Tensor, variance: float) -> tuple[float, float]:
    """(MMD^2 between the grid quadrature of exp(-E)/Z and the mixture, E k(X, X') of the mixture)."""
    weights = (grid.density.double() * grid.cell_area)
    weights = weights / weights.sum()
    x, y = grid.x.double(), grid.y.double()
    kernel_x = torch.exp(-(x[:, None] - x[None]).square() / (2 * BANDWIDTH**2))
    kernel_y = torch.exp(-(y[:, None] - y[None]).square() / (2 * BANDWIDTH**2))
    # The Gaussian kernel factorizes over the coordinates of a tensor grid: sum_ij,kl w_ij w_kl k = tr(...)
    model_model = float((weights * (kernel_y @ weights @ kernel_x)).sum())
    model_data = float(weights.flatten() @ _kernel_mean_mixture(grid.points.double(), means, variance))
    spread = BANDWIDTH**2 + 2 * variance
    d2 = (means[:, None] - means[None]).square().sum(-1)
    data_data = float((BANDWIDTH**2 / spread * torch.exp(-d2 / (2 * spread))).mean())
    return model_model + data_data - 2 * model_data, data_data


def _local_minima(energy: Tensor) -> Tensor:
    """Boolean (G, G) mask of interior grid points strictly lower than their 8 neighbours."""
    centre = energy[1:-1, 1:-1]
    mask = torch.ones_like(centre, dtype=torch.bool)
    size = energy.shape[0]
    for di in (-1, 0, 1):
        for dj in (-1, 0, 1):
            if di or dj:
                mask &= centre < energy[1 + di: size - 1 + di, 1 + dj: size - 1 + dj]
    full = torch.zeros_like(energy, dtype=torch.bool)
    full[1:-1, 1:-1] = mask
    return full


def _mode_report(net: torch.nn.Module, grid: EnergyGrid, centres: Tensor, spec: MixtureSpec,
                 scale: float, radius: float) -> list[dict]:
    points = grid.points.double()
    minima = points[_local_minima(grid.energy.double()).flatten()]
    mass = (grid.density.double() * grid.cell_area).flatten()
    mass = mass / mass.sum()
    cell = torch.cdist(points, centres).argmin(1)
    k = centres.shape[0]
    with torch.no_grad():
        at_centres = net(centres.to(grid.energy.dtype)).double()
        rows = []
        for index in range(k):
            distances = (minima - centres[index]).norm(dim=-1)
            nearest = float(distances.min()) if minima.shape[0] else math.inf
            barriers = []
            true_barriers = []
            for neighbour in ((index - 1) % k, (index + 1) % k):
                midpoint = 0.5 * (centres[index] + centres[neighbour])
                at_midpoint = net(midpoint[None].to(grid.energy.dtype)).double()[0]
                barriers.append(float(at_midpoint - at_centres[index]))
                pair = torch.stack([centres[index], midpoint]) * scale
                log_p = spec.log_prob(pair)
                true_barriers.append(float(log_p[0] - log_p[1]))
            rows.append({
                "centre": [float(v) for v in centres[index]],
                "nearest_minimum_distance": nearest,
                "has_minimum": nearest <= radius,
                "barriers_nats": barriers,
                "true_barriers_nats": true_barriers,
                "separated": min(barriers) >= MIN_BARRIER,
                "mass": float(mass[cell == index].sum()),
            })
    for row in rows:
        row["mass_ok"] = MASS_RANGE[0] <= row["mass"] <= MASS_RANGE[1]
    return rows


def run(size: str, seed: int, device: str, out_dir: Path) -> CheckResult:
    settings = SETTINGS[size]
    start_time = time.perf_counter()
    generator = make_generator(seed, device)
    spec, scale = mixture()
    spec = spec.to(device)
    centres = spec.means / scale
    mode_std = MODE_STD / scale

    def fresh(n: int) -> Tensor:
        return spec.sample(n, generator) / scale

    data = fresh(settings.n_data).float()
    net, history = train_ebm(data, n_steps=settings.n_steps, generator=generator, progress=False,
                             **TRAINING)
    train_time = time.perf_counter() - start_time
    net64 = copy.deepcopy(net).double()

    # The Gibbs measure on a grid: landscape, modes, masses, the population MMD.
    window = ((-BOX, BOX), (-BOX, BOX))
    grid = energy_on_grid(net64, window, settings.grid_size)
    modes = _mode_report(net64, grid, centres, spec, scale, mode_std)
    points = grid.points
    band = points.abs().max(-1).values > BOX - BAND
    band_mass = float((grid.density.double().flatten() * grid.cell_area)[band].sum())
    population, data_data = _population_mmd2(grid, centres, mode_std**2)
    expected_floor = 2 * (1 - data_data) / settings.n_eval

    # Samples: SIR from the broad init distribution, then MALA.
    n_total = settings.n_eval * settings.n_repeats
    proposals = (2 * torch.rand(settings.n_proposals, 2, generator=generator, dtype=torch.float64,
                                device=device) - 1) * BOX
    with torch.no_grad():
        log_weights = -torch.cat([net64(chunk) for chunk in proposals.split(65_536)])
    probabilities = torch.softmax(log_weights, 0)
    sir_ess = float(1.0 / probabilities.square().sum())
    chosen = torch.multinomial(probabilities, n_total, replacement=True, generator=generator)
    # MALA runs in the network's float32 (several times faster than float64 on these CPUs; the
    # chains' accuracy is set by the sampler, not by rounding); the MMDs are taken in float64.
    samples = sample_ebm(net, n_total, n_steps=settings.n_mala, step_size=MALA_STEP,
                         generator=generator, init=proposals[chosen].float()).double()
    # For comparison only: MALA from plain uniform starts (mode weights set by basin areas).
    uniform_start = (2 * torch.rand(settings.n_eval, 2, generator=generator, dtype=torch.float64,
                                    device=device) - 1) * BOX
    basin_samples = sample_ebm(net, settings.n_eval, n_steps=settings.n_mala, step_size=MALA_STEP,
                               generator=generator, init=uniform_start.float()).double()

    model_mmd, floor_mmd = [], []
    n = settings.n_eval
    for repeat in range(settings.n_repeats):
        part = slice(repeat * n, (repeat + 1) * n)
        model_mmd.append(float(mmd2(samples[part], fresh(n), bandwidth=BANDWIDTH, unbiased=False)))
        floor_mmd.append(float(mmd2(fresh(n), fresh(n), bandwidth=BANDWIDTH, unbiased=False)))
    floor = float(np.mean(floor_mmd))
    ratio = float(np.mean(model_mmd)) / floor
    basin_ratio = float(mmd2(basin_samples, fresh(n), bandwidth=BANDWIDTH, unbiased=False)) / floor

    mmd_ok = ratio <= MMD_FACTOR
    minima_ok = all(row["has_minimum"] for row in modes)
    barriers_ok = all(row["separated"] for row in modes)
    masses_ok = all(row["mass_ok"] for row in modes)
    window_ok = band_mass < MAX_BAND_MASS
    passed = bool(mmd_ok and minima_ok and barriers_ok and masses_ok and window_ok)

    figure = _figure(grid, data, samples, history, out_dir / f"{NAME}.png", centres)
    masses = [row["mass"] for row in modes]
    barriers = [min(row["barriers_nats"]) for row in modes]
    distances = [row["nearest_minimum_distance"] for row in modes]
    return CheckResult(
        name=NAME,
        claim=(
            "Maximum-likelihood EBM training with persistent Langevin chains learns a 2-D Gaussian "
            "mixture (8 modes of std 0.3 on a circle of radius 2, standardized): MALA samples of the "
            "learned Gibbs measure $e^{-E}$ match fresh data ($\\mathrm{MMD}^2$, Gaussian kernel $h = 0.3$, "
            f"within {MMD_FACTOR:g}x the noise floor) and the energy landscape shows every mode."
        ),
        predicted=(
            f"MMD^2 / floor <= {MMD_FACTOR:g}; every centre has a grid minimum within "
            f"{mode_std:.3f}, a barrier >= {MIN_BARRIER:g} nat to each neighbour (data: "
            f"{modes[0]['true_barriers_nats'][0]:.2f} nats), Gibbs mass in "
            f"[{MASS_RANGE[0]:.4g}, {MASS_RANGE[1]:.4g}] (truth 1/8)"
        ),
        measured=(
            f"MMD^2 / floor = {ratio:.2f} (model {np.mean(model_mmd):.3g}, floor {floor:.3g}; "
            f"population value {1 + population / expected_floor:.2f}x the expected floor); "
            f"minimum distances {format_list(distances, 2)}; barriers {format_list(barriers, 3)} nats; "
            f"masses {format_list(masses, 3)}; outer-band mass {band_mass:.2g}"
        ),
        tolerance=(
            f"MMD ratio = mean of {settings.n_repeats} model-vs-fresh-data V-statistics (n = {n} each) "
            f"over the mean of {settings.n_repeats} fresh-vs-fresh ones, <= {MMD_FACTOR:g}; all 8 "
            "modes must pass the minimum, barrier and mass tests; the learned density's mass in the "
            f"outer band of the [-{BOX:g}, {BOX:g}]^2 window must be < {MAX_BAND_MASS:g}."
        ),
        passed=passed,
        details={
            "mixture": {"n_modes": N_MODES, "radius": RADIUS, "mode_std": MODE_STD, "scale": scale},
            "settings": {**settings.__dict__, **TRAINING},
            "train_time_s": train_time,
            "final_losses": {key: values[-1] for key, values in history.losses.items() if values},
            "mmd_ratio": ratio,
            "mmd_model": model_mmd,
            "mmd_floor": floor_mmd,
            "mmd_ratio_mala_from_uniform_start": basin_ratio,
            "population_mmd2": population,
            "expected_floor": expected_floor,
            "population_ratio": 1 + population / expected_floor,
            "sir_effective_sample_size": sir_ess,
            "outer_band_mass": band_mass,
            "modes": modes,
            "mmd_ok": mmd_ok,
            "minima_ok": minima_ok,
            "barriers_ok": barriers_ok,
            "masses_ok": masses_ok,
            "window_ok": window_ok,
        },
        figures=(figure,),
        wall_time=time.perf_counter() - start_time,
    )


def _figure(grid: EnergyGrid, data: Tensor, samples: Tensor, history, path: Path, centres: Tensor) -> str:
    figure, axes = new_figure(2, 2, width=4.6, height=4.0)
    draw_energy_landscape(figure, axes[0, 0], axes[0, 1], grid, data, max_points=3000)
    centre_points = to_numpy(centres)
    axes[0, 1].scatter(centre_points[:, 0], centre_points[:, 1], marker="x", color="k", s=25,
                       label="mixture centres")
    axes[0, 1].legend(loc="upper right", fontsize=7, markerscale=1.5)
    axis = axes[1, 0]
    shown = to_numpy(data[:3000])
    model = to_numpy(samples[:3000])
    axis.scatter(shown[:, 0], shown[:, 1], s=2, color="tab:blue", alpha=0.4, linewidths=0, label="data")
    axis.scatter(model[:, 0], model[:, 1], s=2, color="tab:orange", alpha=0.4, linewidths=0,
                 label="EBM samples (SIR + MALA)")
    axis.set_xlim(-BOX, BOX)
    axis.set_ylim(-BOX, BOX)
    axis.set_aspect("equal")
    axis.legend(loc="upper right", fontsize=7, markerscale=4)
    axis.set_title("samples of exp(-E) vs data")
    axis = axes[1, 1]
    steps = np.asarray(history.steps)
    for key, color in (("loss", "C0"), ("gap", "C1"), ("regularizer", "C2")):
        if history.losses.get(key):
            axis.plot(steps, history.losses[key], color=color, linewidth=1.0, label=key)
    axis.axhline(0.0, color="gray", linewidth=0.6)
    axis.set_xlabel("training step")
    axis.set_ylabel("window mean")
    axis.set_title("training: loss, contrastive gap, regularizer")
    axis.legend(fontsize=7)
    return save_figure(figure, path)
