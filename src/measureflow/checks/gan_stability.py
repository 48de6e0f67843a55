r"""Check: the stability of the RKHS-regularized GAN against the generator's learning rate.

Claim (Chu, Minami & Fukumizu, ICLR 2020, Theorem 1 and their experiment). When the critic is
alpha-Lipschitz, beta_1-smooth and pays the RKHS penalty ||h||_H^2 / (2 beta_2), the generator's
objective is L-smooth, so gradient descent with a step gamma <= 1/L reaches stationarity. With
a generator of N free points and beta_1 = 7 alpha, 1/L is the learning rate gamma_0 =
1/(7 alpha + beta_2) of their experiment, where the sample quality (FID) was best for gamma /
gamma_0 between about 1 and 10^3. Here, on a 2-D toy with the MMD^2 to held-out data in place of
FID: sweeping gamma / gamma_0 over decades, no step up to gamma_0 diverges, the run at gamma_0
converges (to an MMD^2 below that of as many i.i.d. data points), and too large steps degrade
or diverge. The stable band (final MMD^2 within a factor 2 of the best) is reported; too small
steps are only slow: they are reported, not failed.

Derivation. Particles theta = (theta_1, ..., theta_N), P_theta = (1/N) sum_j delta_{theta_j}.
The library's critic h maximizes E_P h - E_Q h - ||h||_H^2 / (2 beta_2) over alpha-Lipschitz,
beta_1-smooth networks; with phi = -h this is the paper's game for the loss l(mu) = I(mu = P_D),
whose conjugate is l*(phi) = E_{P_D} phi: min_mu max_phi E_mu phi - E_{P_D} phi -
||phi||_H^2 / (2 beta_2). Its value J(mu) has first variation Phi_mu = -h*_mu (h*_mu the optimal
critic). The generator's loss is -(1/B) sum_i h(theta_{z_i}) over a batch of B indices z_i drawn
uniformly, so one SGD step with learning rate lr moves point j by lr (c_j / B) grad h(theta_j),
c_j ~ Binomial(B, 1/N) its count in the batch. In expectation that is

    theta_j <- theta_j - gamma grad Phi_mu(theta_j),      gamma = lr / N,

gradient descent with step gamma on F(theta) = N J(P_theta), since dF/dtheta_j =
grad Phi_mu(theta_j). **gamma is the step of each point along the critic's gradient; the
library's learning rate is N gamma.** F is (beta_1 + beta_2)-smooth: by (D2),
|grad Phi_mu(x) - grad Phi_mu(y)| <= beta_1 |x - y|, by (D3) |grad Phi_mu(x) - grad Phi_nu(x)|
<= beta_2 W1(mu, nu), and W1(P_theta, P_theta') <= (1/N) sum_j |theta_j - theta'_j| <=
|theta - theta'| / sqrt(N), so by Minkowski's inequality

    |grad F(theta) - grad F(theta')| <= beta_1 |theta - theta'| + sqrt(N) beta_2 W1
                                      <= (beta_1 + beta_2) |theta - theta'|.

This is Theorem 1's L = alpha B + A^2 (beta_1 + beta_2) with B = 0 and A = 1 in this per-point
parametrization (A^2 = 1/N for the library's mean over the batch, whence the factor N in lr).
The descent lemma gives F(theta_{k+1}) <= F(theta_k) - (gamma/2) |grad F(theta_k)|^2 for gamma
<= 1/L, so sum_k |grad F(theta_k)|^2 < infinity: stationarity. With beta_1 = 7 alpha, 1/L =
1/(7 alpha + beta_2) = gamma_0 (:func:`~measureflow.generative.gan.stability.theory_learning_rate`).
(D3)'s constant for the Gaussian kernel of bandwidth s is beta_2 / s^2 (grad_x grad_y k has
norm <= 1/s^2); s = 1 in standardized units keeps it beta_2. Why this is a check and not a
proof: the theorem takes the optimal critic, we train it by SGD alongside (D1 and D2 hold for
every weight by construction, D3 only at the optimum); the RKHS norm is estimated with random
features; the counts c_j make the steps random (relative spread sqrt(N / B) = 0.5). The paper
found the best results well above gamma_0: the bound is sufficient, not tight.

Method. Data: 8 Gaussians, 20,000 training and 2,000 held-out points, both standardized by the
training mean and std. Generator: N = 64 free points (``net={"generator": "particles"}``),
started at N(0, I) draws. Critic: 2 hidden layers of 64, spectral norm scaled by alpha = 1,
softplus of sharpness 4 beta_1 / (alpha K) = 14 (beta_1 = 7, K = 2), RKHS penalty with beta_2
= 10 (64 random Fourier features, bandwidth 1), so gamma_0 = 1/17. ``train_gan(loss="wgan-gp",
stability=...)`` with ``WGANGP(gp_weight=0.0)``: the wgan-gp critic loss E_Q h - E_P h is exactly the paper's
game (with phi = -h) and gp_weight = 0 removes the gradient penalty (the Lipschitz constraint
is spectral normalization by alpha, as in the paper); ``"js"`` would regularize another loss J
(also covered by Theorem 1, but not their experiment), and ``"wgan"`` is refused with stability
(weight clipping). ``optimizer="sgd"`` makes the generator's update plain gradient descent; the
critic is trained by SGD too, at learning rate 1 (gradient descent for both players, as in the
theory). One critic step per
generator step, batch 256, no EMA (``ema_decay=0``: the theorem is about the iterates). Every
gamma reuses one training seed (same initial points, critic, batches): the runs differ only by
gamma. MMD^2: V-statistic between the N-point measure P_theta and the held-out sample, sum of
Gaussian kernels at bandwidths 0.5 and 1 (the 8 modes are 1.08 apart on a ring of radius 1.41
in standardized units; finer scales only measure how 64 points quantize each mode's spread of
0.07, the same for every gamma, and would compress the range). The final MMD^2 is that of the
last step (quick) or the mean over the last quarter of training (full: 3 snapshots 250 steps
apart; near the best level one point hopping between modes moves the MMD^2 by up to 2x).
Context: the MMD^2 of N standard normal points (the starting law) and of N i.i.d. data points.
Stationarity: the root mean square over the points of |grad h(theta_j)| under the critic of the
same step, the per-point generator gradient (snapshots through checkpoints in a temporary
folder).

Baselines (full size): the same game with ``stability=None``: ``"lipschitz"`` (spectral norm
only, leaky-ReLU critic: (D1) with alpha = 1, but grad h jumps, so neither (D2) nor (D3)) and
``"none"`` (an unconstrained critic: E_P h - E_Q h is unbounded whenever P != Q).

Verdict: the stable band is the run of consecutive gammas around the best whose final MMD^2 is
finite and at most 2 x the best. Pass iff (a) no run with gamma <= gamma_0 diverges, (b) the
run at gamma_0 converges: its final MMD^2 is at most that of N i.i.d. data points (the points
describe the data at least as well as a fresh sample of the same size), (c) the largest gamma
of the sweep is outside the band (degraded beyond 2 x the best, or diverged): the band's upper
edge is resolved. Whether gamma_0 itself is in the band is reported, not judged: it is a
statement about speed within a step budget (at 2,000 steps the best step was 0.3 gamma_0 and
gamma_0 reached 4x the best; at 400 steps gamma_0 was the best), while the theorem is about
stability.
"""

from __future__ import annotations

import math
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from measureflow._core import make_generator
from measureflow.checks._figures import format_list, new_figure, save_figure
from measureflow.checks.base import CheckResult
from measureflow.data import Standardizer, toy_2d
from measureflow.generative.gan.nets import Critic, softplus_sharpness
from measureflow.generative.gan.objectives import WGANGP
from measureflow.generative.gan.stability import Stability, theory_learning_rate
from measureflow.generative.gan.training import CHECKPOINT_KIND, train_gan
from measureflow.generative.train import load_checkpoint
from measureflow.metrics import GaussianKernel

__all__ = ["SETTINGS", "StableBand", "critic_gradient_rms", "run", "stable_band"]

NAME = "gan-stability"
TOY = "8gaussians"
N_TRAIN = 20_000
N_HELDOUT = 2_000
N_CONTEXT = 20
ALPHA, BETA1, BETA2 = 1.0, 7.0, 10.0
KERNEL_BANDWIDTH = 1.0
N_FEATURES = 64
N_POINTS = 64
BATCH_SIZE = 256
CRITIC_HIDDEN, CRITIC_DEPTH = 64, 2
CRITIC_LR = 1.0
EVAL_BANDWIDTHS = (0.5, 1.0)
STABLE_FACTOR = 2.0


@dataclass(frozen=True)
class _Settings:
    ratios: tuple[float, ...]
    n_steps: int
    n_critic: int
    n_snapshots: int
    average_last: int
    curve_ratios: tuple[float, ...]
    baselines: tuple[str, ...]


# Quick: one run per decade, snapshots for the curves of three of them, no baselines (about 20 s
# on one core); the final MMD^2 is that of the last step. Full: half decades from 10^-2 to 10^4,
# five times the steps, both baselines, 8 snapshots of every run, and the final MMD^2 is the mean
# of the last 3 (the last quarter of training): near its best level a single point hopping from
# one mode to the next moves the MMD^2 of 64 points by up to a factor 2 between snapshots.
SETTINGS = {
    "quick": _Settings(ratios=(0.1, 1.0, 10.0, 100.0, 1000.0), n_steps=400, n_critic=1,
                       n_snapshots=4, average_last=1, curve_ratios=(0.1, 1.0, 100.0), baselines=()),
    "full": _Settings(ratios=tuple(float(10 ** (k / 2)) for k in range(-4, 9)), n_steps=2000, n_critic=1,
                      n_snapshots=8, average_last=3, curve_ratios=(0.01, 1.0, 100.0, 1000.0),
                      baselines=("lipschitz", "none")),
}


@dataclass(frozen=True)
class StableBand:
    """The stable range of a learning-rate sweep: ``stable[i]`` says whether run i ended finite
    with a value at most ``threshold`` = factor x ``best_value``; ``low`` .. ``high`` are the
    ratios bounding the run of consecutive stable entries that holds the best (``best_index``);
    all ``None``/empty when every run diverged."""

    best_index: int | None
    best_value: float | None
    threshold: float | None
    stable: tuple[bool, ...]
    low: float | None
    high: float | None

    def contains(self, ratio: float) -> bool:
        """Whether ``ratio`` lies in [low, high]."""
        return self.low is not None and self.low <= ratio <= self.high

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["stable"] = list(self.stable)
        return data


def stable_band(ratios: Sequence[float], values: Sequence[float | None], factor: float) -> StableBand:
    """The stable band of final values ``values`` (lower is better; ``None``, NaN or inf for a run
    that diverged) at increasing ``ratios``: the best finite value v*, the runs with a finite
    value <= ``factor`` v*, and the ratios bounding the consecutive stable runs around the best.

    >>> band = stable_band([0.1, 1, 10, 100], [0.5, 0.12, 0.1, None], factor=2.0)
    >>> band.stable, band.low, band.high
    ((False, True, True, False), 1.0, 10.0)
    """
    ratios = [float(r) for r in ratios]
    if len(ratios) != len(values) or not ratios:
        raise ValueError(f"ratios and values must be non-empty and of one length, got {len(ratios)} and "
                         f"{len(values)}")
    if any(b <= a for a, b in zip(ratios, ratios[1:], strict=False)):
        raise ValueError(f"ratios must be strictly increasing, got {ratios}")
    if isinstance(factor, bool) or not isinstance(factor, (int, float)) or not factor >= 1:
        raise ValueError(f"factor must be a number >= 1, got {factor!r}")
    finite = [v is not None and math.isfinite(v) for v in values]
    if not any(finite):
        return StableBand(None, None, None, tuple(False for _ in ratios), None, None)
    best = min((i for i in range(len(values)) if finite[i]), key=lambda i: values[i])
    threshold = factor * float(values[best])
    stable = tuple(finite[i] and float(values[i]) <= threshold for i in range(len(values)))
    low = high = best
    while low > 0 and stable[low - 1]:
        low -= 1
    while high < len(values) - 1 and stable[high + 1]:
        high += 1
    return StableBand(best, float(values[best]), threshold, stable, ratios[low], ratios[high])


def critic_gradient_rms(critic: torch.nn.Module, points: Tensor) -> float:
    """sqrt(mean_j |grad h(theta_j)|^2) for the critic h and the points ``points`` ``(N, d)``: the
    root mean square of the per-point generator gradient (zero at a stationary configuration).

    >>> h = lambda x: x @ torch.tensor([3.0, 4.0])
    >>> critic_gradient_rms(h, torch.zeros(5, 2))
    5.0
    """
    if not isinstance(points, Tensor) or points.dim() != 2 or points.shape[0] < 1:
        shape = tuple(points.shape) if isinstance(points, Tensor) else type(points).__name__
        raise ValueError(f"points must be a tensor of shape (N, d) with N >= 1, got {shape}")
    with torch.enable_grad():
        x = points.detach().clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(critic(x).sum(), x)
    return float(grad.square().sum(dim=1).mean().sqrt())


def _stability() -> Stability:
    return Stability(ALPHA, BETA1, BETA2, bandwidth=KERNEL_BANDWIDTH, n_features=N_FEATURES)


def _critic_like(game: str) -> Critic:
    """A critic of the architecture train_gan builds for ``game``, to load a checkpoint's weights
    into (a strict state-dict load would fail loudly if the two ever differed)."""
    # Building draws initial weights from the global RNG; they are overwritten, so leave it as it was.
    with torch.random.fork_rng(devices=[]):
        if game == "regularized":
            return Critic(2, CRITIC_HIDDEN, CRITIC_DEPTH, activation="softplus", spectral_norm=True,
                          lipschitz=ALPHA, sharpness=softplus_sharpness(BETA1, ALPHA, CRITIC_DEPTH))
        return Critic(2, CRITIC_HIDDEN, CRITIC_DEPTH, spectral_norm=game == "lipschitz")


class _HeldOutMMD:
    """MMD^2 V-statistic of N points against the fixed held-out sample y ``(m, d)``: the value of
    ``mmd2(points, y, bandwidth=EVAL_BANDWIDTHS, unbiased=False)``, with the m^2 self-term of y
    computed once instead of at every one of the check's hundred-odd evaluations."""

    def __init__(self, heldout: Tensor, bandwidths: Sequence[float] = EVAL_BANDWIDTHS) -> None:
        self.kernel = GaussianKernel(tuple(bandwidths))
        self.heldout = heldout
        self.self_term = float(self.kernel(heldout, heldout).mean())

    def __call__(self, points: Tensor) -> float:
        points = points.to(self.heldout)
        return (float(self.kernel(points, points).mean()) + self.self_term
                - 2 * float(self.kernel(points, self.heldout).mean()))


def _train_one(game: str, ratio: float, gamma0: float, x: Tensor, evaluate: _HeldOutMMD, train_seed: int,
               settings: _Settings, curve: bool, device: str) -> dict[str, Any]:
    # Snapshots go through checkpoints, each of which also draws a loss figure (about 0.3 s):
    # only the runs whose curves are plotted or whose last snapshots are averaged write them,
    # into a scratch folder.
    snapshotted = curve or settings.average_last > 1
    gamma = ratio * gamma0
    snapshots: list[dict[str, float]] = []

    def snapshot(step: int, path: Path) -> None:
        payload = load_checkpoint(path, kind=CHECKPOINT_KIND, map_location=device)
        points = payload["model"]["points"]
        critic = _critic_like(game).to(device=points.device, dtype=points.dtype)
        critic.load_state_dict(payload["critic"])
        critic.eval()
        snapshots.append({"step": step, "mmd2": evaluate(points),
                          "gradient_rms": critic_gradient_rms(critic, points)})

    start = time.perf_counter()
    diverged, message, points = False, None, None
    with tempfile.TemporaryDirectory() as scratch:
        try:
            model, _ = train_gan(
                x, loss=WGANGP(gp_weight=0.0), n_steps=settings.n_steps,
                generator=make_generator(train_seed, device), batch_size=BATCH_SIZE,
                n_critic=settings.n_critic, generator_lr=N_POINTS * gamma, critic_lr=CRITIC_LR,
                optimizer="sgd",
                stability=_stability() if game == "regularized" else None, spectral_norm=game == "lipschitz",
                net={"generator": "particles", "n_points": N_POINTS, "critic_hidden": CRITIC_HIDDEN,
                     "critic_depth": CRITIC_DEPTH},
                # No EMA: the theorem is about the iterates (with decay 0 the "EMA" is the iterate).
                ema_decay=0.0, progress=False, log_every=max(1, settings.n_steps // 10),
                out_dir=scratch if snapshotted else None,
                checkpoint_every=max(1, settings.n_steps // settings.n_snapshots) if snapshotted else None,
                on_checkpoint=snapshot if snapshotted else None)
            points = model.generator.points.detach()
        except ValueError as error:
            # train_gan stops a run whose losses became non-finite; that is a measured outcome.
            if "diverged" not in str(error):
                raise
            diverged, message = True, str(error).splitlines()[0][:200]
    last_mmd2 = None if points is None else evaluate(points)
    final_mmd2 = last_mmd2
    if last_mmd2 is not None and settings.average_last > 1:
        final_mmd2 = float(np.mean([snap["mmd2"] for snap in snapshots[-settings.average_last:]]))
    return {"game": game, "ratio": ratio, "gamma": gamma, "generator_lr": N_POINTS * gamma,
            "diverged": diverged, "message": message, "final_mmd2": final_mmd2, "last_step_mmd2": last_mmd2,
            "final_gradient_rms": snapshots[-1]["gradient_rms"] if snapshots and not diverged else None,
            "curve": curve, "snapshots": snapshots, "wall_time": time.perf_counter() - start}


def run(size: str, seed: int, device: str, out_dir: Path) -> CheckResult:
    settings = SETTINGS[size]
    generator = make_generator(seed, device)
    raw = toy_2d(TOY, N_TRAIN, generator, dtype=torch.float64, device=device)
    standardizer = Standardizer.fit(raw)
    x = standardizer.forward(raw)
    heldout = standardizer.forward(toy_2d(TOY, N_HELDOUT, generator, dtype=torch.float64, device=device))
    evaluate = _HeldOutMMD(heldout)
    gamma0 = theory_learning_rate(_stability())
    context = {
        "start_law_mmd2": float(np.mean([
            evaluate(torch.randn(N_POINTS, 2, generator=generator, dtype=torch.float64, device=device))
            for _ in range(N_CONTEXT)])),
        "iid_data_mmd2": float(np.mean([
            evaluate(x[torch.randint(N_TRAIN, (N_POINTS,), generator=generator, device=device)])
            for _ in range(N_CONTEXT)])),
    }
    # One training seed for every run: the runs of a sweep differ only by their learning rate.
    train_seed = int(torch.randint(0, 2**62, (1,), generator=generator, device=generator.device))
    games = ("regularized", *settings.baselines)
    runs = {game: [_train_one(game, ratio, gamma0, x, evaluate, train_seed, settings,
                              game == "regularized" and ratio in settings.curve_ratios, device)
                   for ratio in settings.ratios] for game in games}
    bands = {game: stable_band(settings.ratios, [row["final_mmd2"] for row in rows], STABLE_FACTOR)
             for game, rows in runs.items()}

    regularized = runs["regularized"]
    band = bands["regularized"]
    small_ok = all(not row["diverged"] for row in regularized if row["ratio"] <= 1.0)
    at_gamma0 = next(row for row in regularized if row["ratio"] == 1.0)
    gamma0_in_band = band.contains(1.0)
    converged_at_gamma0 = (not at_gamma0["diverged"]
                           and at_gamma0["final_mmd2"] <= context["iid_data_mmd2"])
    edge_resolved = band.best_index is not None and not band.stable[-1]
    slow = [row["ratio"] for row in regularized
            if band.low is not None and row["ratio"] < band.low and not row["diverged"]]
    figure = _figure(runs, bands, context, settings, out_dir / f"{NAME}.png")

    def describe(rows: list[dict], game_band: StableBand) -> str:
        values = ["diverged" if row["diverged"] else f"{row['final_mmd2']:.3g}" for row in rows]
        band_text = ("none" if game_band.low is None
                     else f"[{game_band.low:g}, {game_band.high:g}] gamma_0")
        return f"final MMD^2 [{', '.join(values)}], stable band {band_text}"

    if at_gamma0["diverged"] or band.best_value is None:
        at_text = "diverged"
    else:
        at_text = f"{at_gamma0['final_mmd2']:.3g} ({at_gamma0['final_mmd2'] / band.best_value:.2f} x best)"
    measured = (f"gamma/gamma_0 = {format_list(settings.ratios, 3)}: regularized "
                f"{describe(regularized, band)}; at gamma_0 MMD^2 {at_text}")
    for game in settings.baselines:
        measured += f"; {game} {describe(runs[game], bands[game])}"
    measured += (f"; context: N(0, I) start {context['start_law_mmd2']:.3g}, {N_POINTS} i.i.d. data points "
                 f"{context['iid_data_mmd2']:.3g}")
    if slow:
        measured += (f"; too slow in {settings.n_steps} steps (below the band): gamma/gamma_0 = "
                     f"{format_list(slow, 3)}")
    return CheckResult(
        name=NAME,
        claim=(
            "Chu, Minami & Fukumizu's stability theorem on the RKHS-regularized GAN ($\\alpha$-Lipschitz, "
            "$\\beta_1$-smooth critic, penalty $\\|h\\|_H^2 / (2 \\beta_2)$): with $N$ free points, gradient "
            "descent with a per-point step "
            "$\\gamma \\le \\gamma_0 = 1/(7 \\alpha + \\beta_2) = 1/(\\beta_1 + \\beta_2)$ reaches "
            "stationarity. Sweeping $\\gamma / \\gamma_0$ over decades on 8 Gaussians ($\\mathrm{MMD}^2$ to "
            "held-out data in place of FID): nothing diverges up to $\\gamma_0$, the points trained at "
            f"$\\gamma_0$ represent the data at least as well as {N_POINTS} i.i.d. data points, too large "
            "steps degrade or diverge; the stable band is reported. "
            f"(alpha = {ALPHA:g}, beta_1 = {BETA1:g}, beta_2 = {BETA2:g}, "
            f"gamma_0 = {gamma0:.4g}; N = {N_POINTS}, {settings.n_steps} SGD steps, library learning "
            "rate $N \\gamma$.)"
        ),
        predicted=(
            "no divergence for gamma <= gamma_0; final MMD^2 at gamma_0 <= that of "
            f"{N_POINTS} i.i.d. data points ({context['iid_data_mmd2']:.3g}); the largest "
            f"gamma/gamma_0 = {settings.ratios[-1]:g} outside it (the paper: best FID for gamma/gamma_0 "
            "about 1 to 10^3)"
        ),
        measured=measured,
        tolerance=(
            f"stable band = consecutive gammas around the best with finite final MMD^2 <= "
            f"{STABLE_FACTOR:g} x the best (V-statistic of the {N_POINTS}-point measure against "
            f"{N_HELDOUT} held-out points, Gaussian kernels at bandwidths {list(EVAL_BANDWIDTHS)}; "
            + ("last step" if settings.average_last == 1 else
               f"mean of the last {settings.average_last} of {settings.n_snapshots} snapshots")
            + "); a run whose losses turn non-finite counts as diverged; runs below the band are "
            "reported as too slow for the step budget, not failed"
        ),
        passed=bool(small_ok and converged_at_gamma0 and edge_resolved),
        details={
            "gamma0": gamma0,
            "alpha": ALPHA, "beta1": BETA1, "beta2": BETA2,
            "n_points": N_POINTS, "batch_size": BATCH_SIZE, "n_steps": settings.n_steps,
            "n_critic": settings.n_critic, "critic_lr": CRITIC_LR, "eval_bandwidths": list(EVAL_BANDWIDTHS),
            "stable_factor": STABLE_FACTOR,
            "no_divergence_up_to_gamma0": small_ok, "converged_at_gamma0": converged_at_gamma0,
            "gamma0_in_band": gamma0_in_band,
            "upper_edge_resolved": edge_resolved, "too_slow": slow,
            "context": context,
            "bands": {game: game_band.to_dict() for game, game_band in bands.items()},
            "runs": runs,
        },
        figures=(figure,),
    )


_COLORS = {"regularized": "tab:blue", "lipschitz": "tab:orange", "none": "tab:red"}
_LABELS = {"regularized": "regularized (alpha, beta_1, beta_2)", "lipschitz": "spectral norm only",
           "none": "unconstrained critic"}


def _figure(runs: dict[str, list[dict]], bands: dict[str, StableBand], context: dict[str, float],
            settings: _Settings, path: Path) -> str:
    figure, axes = new_figure(3, 1, width=4.6, height=3.7)
    axis = axes[0, 0]
    finite = [row["final_mmd2"] for rows in runs.values() for row in rows if row["final_mmd2"] is not None]
    top = 2.0 * max(finite + [context["start_law_mmd2"]])
    band = bands["regularized"]
    if band.low is not None:
        axis.axvspan(band.low, band.high, color="tab:blue", alpha=0.12,
                     label=f"stable band (<= {STABLE_FACTOR:g} x best)")
    for index, (game, rows) in enumerate(runs.items()):
        ratios = [row["ratio"] for row in rows if row["final_mmd2"] is not None]
        values = [row["final_mmd2"] for row in rows if row["final_mmd2"] is not None]
        axis.plot(ratios, values, "o-", color=_COLORS[game], markersize=4, label=_LABELS[game])
        broken = [row["ratio"] for row in rows if row["final_mmd2"] is None]
        if broken:
            # One row of crosses per game above the curves, so that they do not hide each other.
            axis.plot(broken, [top * 0.8**index] * len(broken), "x", color=_COLORS[game], markersize=7,
                      label=f"{_LABELS[game]}: diverged")
    axis.axvline(1.0, color="k", linestyle="--", linewidth=1.0, label="gamma = gamma_0")
    axis.axhline(context["start_law_mmd2"], color="0.5", linestyle=":", label="start law N(0, I)")
    axis.axhline(context["iid_data_mmd2"], color="0.5", linestyle="-.",
                 label=f"{N_POINTS} i.i.d. data points")
    axis.set_xscale("log")
    axis.set_yscale("log")
    axis.set_xlabel("gamma / gamma_0")
    axis.set_ylabel("final MMD^2 to held-out data")
    axis.set_title(f"after {settings.n_steps} generator steps", fontsize=9)
    axis.legend(fontsize=6)
    curves = [row for row in runs["regularized"] if row["curve"] and row["snapshots"]]
    colors = [f"C{i}" for i in range(len(curves))]
    for key, axis, label in (("mmd2", axes[0, 1], "MMD^2 to held-out data"),
                             ("gradient_rms", axes[0, 2], "RMS |grad h| at the points")):
        for row, color in zip(curves, colors, strict=True):
            steps = [snap["step"] for snap in row["snapshots"]]
            values = [max(snap[key], 1e-12) for snap in row["snapshots"]]
            tag = " (diverged)" if row["diverged"] else ""
            axis.plot(steps, values, "o-", color=color, markersize=3,
                      label=f"gamma = {row['ratio']:g} gamma_0{tag}")
        if key == "mmd2":
            axis.axhline(context["start_law_mmd2"], color="0.5", linestyle=":", label="start law N(0, I)")
        axis.set_yscale("log")
        axis.set_xlabel("generator step")
        axis.set_ylabel(label)
        axis.set_title("regularized game over training", fontsize=9)
        if curves:
            axis.legend(fontsize=6)
    return save_figure(figure, path)
