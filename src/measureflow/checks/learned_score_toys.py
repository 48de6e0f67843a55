r"""Check: a score learned by denoising score matching generates 2-D toy data.

Claim. Training a noise-prediction network by denoising score matching and sampling the reverse
process with it reproduces the data: on moons, 8 Gaussians and a checkerboard, the MMD^2 between
generated and fresh data (n = 3,000 each, biased V-statistic, Gaussian kernel of bandwidth 0.3
on standardized data) comes within 20x the noise floor after only 3,000 training steps, and
within 5x at full size. On 8 Gaussians, where the exact score is known, the learned sampler's
gap to the exact-score sampler shrinks with training; and the model's exact probability-flow
NLL of test data is at least the true NLL (their difference is KL(p || q) >= 0), and close to it.

Derivation. DSM's optimum is the score of p_t (Vincent 2011), so a network that reaches it
turns every sampler of :mod:`~measureflow.generative.diffusion.sampling` into an exact-score
sampler, whose error is only the discretization, measured separately (check
``reverse-exact-score``). The floor is E MMD^2_V between two independent samples of size n,
which is (2/n)(E k(x, x) - E k(x, x')) > 0 for the V-statistic. For the likelihood: with p the
data law at t_min and q the model's, E_p[-log q] - E_p[-log p] = KL(p || q) >= 0, estimated
on the same test points (paired), with standard error from their spread.

Method. Each toy: 100,000 training draws, standardized by their mean and std; VP SDE (linear
schedule); a residual MLP with sinusoidal time embedding predicting the noise (3 x 128 at batch
256 for the quick size, the default 4 x 256 at batch 512 for the full one); Adam with cosine
decay, EMA 0.999. Samples: the probability-flow ODE (Heun, 100 steps) from the EMA
weights, 3,000 points, against 3,000 fresh data points; the floor is the mean of 4 replicates
of data vs data. On 8 Gaussians the learned and the exact-score samplers are compared at
several training steps, and the NLL is computed on 300 test points with the exact divergence.

Verdict: every toy's MMD^2 <= FACTOR x floor (20 after 3,000 steps, quick; 5 at full size);
the NLL difference (model - true) is > -3 SE (the KL is non-negative) and below 0.25 nats.
"""

from __future__ import annotations

import math
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from measureflow._core import make_generator
from measureflow.checks._figures import format_list, new_figure, save_figure, to_numpy
from measureflow.checks.base import CheckResult
from measureflow.data import Standardizer, toy_2d, toy_mixture
from measureflow.generative import TrainedModel
from measureflow.generative.diffusion import (
    VPSDE,
    GaussianMixtureScore,
    log_likelihood,
    probability_flow,
    score_model,
)
from measureflow.generative.diffusion.training import train_diffusion
from measureflow.metrics import mmd2

__all__ = ["run"]

NAME = "learned-score-toys"
TOYS = ("moons", "8gaussians", "checkerboard")
BANDWIDTH = 0.3
N_EVAL = 3000
N_TRAIN = 100_000
N_FLOOR = 4
SAMPLER_STEPS = 100
N_NLL = 300
NLL_Z = 3.0
NLL_GAP_MAX = 0.25


@dataclass(frozen=True)
class _Settings:
    n_steps: int
    factor: float
    n_snapshots: int
    hidden: int
    depth: int
    batch_size: int


# Quick: a 3 x 128 MLP at batch 256 (a quarter of the default's arithmetic per step), so three
# toys x 3,000 steps fit in the demo; full: the default 4 x 256 MLP at batch 512.
SETTINGS = {"quick": _Settings(n_steps=3000, factor=20.0, n_snapshots=3, hidden=128, depth=3, batch_size=256),
            "full": _Settings(n_steps=30_000, factor=5.0, n_snapshots=6, hidden=256, depth=4, batch_size=512)}


def _ode_samples(score, sde, n: int, generator: torch.Generator, device: str) -> torch.Tensor:
    start = sde.prior_sample((n, 2), generator, device=device)
    return probability_flow(score, sde, start, SAMPLER_STEPS).x


def _floor(name: str, standardizer: Standardizer, generator: torch.Generator, device: str) -> float:
    values = []
    for _ in range(N_FLOOR):
        a = standardizer.forward(toy_2d(name, N_EVAL, generator, device=device))
        b = standardizer.forward(toy_2d(name, N_EVAL, generator, device=device))
        values.append(float(mmd2(a, b, bandwidth=BANDWIDTH, unbiased=False)))
    return float(np.mean(values))


def _standardized_mixture(standardizer: Standardizer, sde, device: str) -> GaussianMixtureScore:
    spec = toy_mixture("8gaussians")
    mean = standardizer.mean.to(torch.float64).cpu()
    std = standardizer.std.to(torch.float64).cpu()
    means = (spec.means - mean) / std
    covs = spec.covs / (std[:, None] * std[None, :])
    return GaussianMixtureScore(means.to(device), covs.to(device), spec.weights.to(device), sde)


def run(size: str, seed: int, device: str, out_dir: Path) -> CheckResult:
    settings = SETTINGS[size]
    generator = make_generator(seed, device)
    # Snapshots draw from their own generator, so training does not depend on how often they run.
    snapshot_generator = make_generator(seed + 1_000_003, device)
    sde = VPSDE()
    results, samples_for_figure = {}, {}
    snapshots: list[dict] = []
    nll: dict = {}
    for name in TOYS:
        train = toy_2d(name, N_TRAIN, generator, device=device)
        standardizer = Standardizer.fit(train)
        x = standardizer.forward(train)
        floor = _floor(name, standardizer, generator, device)
        exact = _standardized_mixture(standardizer, sde, device) if name == "8gaussians" else None
        snapshot_every = max(1, settings.n_steps // settings.n_snapshots)
        with tempfile.TemporaryDirectory() as scratch:

            def snapshot(step: int, path: Path, *, exact=exact, standardizer=standardizer,
                         floor=floor, name=name) -> None:
                if exact is None:
                    return
                loaded = score_model(TrainedModel.load(path, device=device))
                fresh = standardizer.forward(toy_2d(name, N_EVAL, snapshot_generator, device=device))
                learned = _ode_samples(loaded, sde, N_EVAL, snapshot_generator, device)
                reference = _ode_samples(exact, sde, N_EVAL, snapshot_generator, device).float()
                snapshots.append({
                    "step": step,
                    "learned_ratio": float(mmd2(learned, fresh, bandwidth=BANDWIDTH, unbiased=False)) / floor,
                    "exact_ratio": float(mmd2(reference, fresh, bandwidth=BANDWIDTH, unbiased=False)) / floor,
                })

            net = {"name": "mlp", "dim": 2, "hidden": settings.hidden, "depth": settings.depth}
            score, history = train_diffusion(
                x, n_steps=settings.n_steps, generator=generator, sde=sde, net=net,
                batch_size=settings.batch_size, out_dir=scratch, progress=False,
                checkpoint_every=snapshot_every, on_checkpoint=snapshot)
        fresh = standardizer.forward(toy_2d(name, N_EVAL, generator, device=device))
        generated = _ode_samples(score, sde, N_EVAL, generator, device)
        ratio = float(mmd2(generated, fresh, bandwidth=BANDWIDTH, unbiased=False)) / floor
        results[name] = {"mmd2_ratio": ratio, "floor": floor, "final_loss": history.losses["loss"][-1]}
        samples_for_figure[name] = (to_numpy(fresh[:1500]), to_numpy(generated[:1500]))
        if exact is not None:
            test = standardizer.forward(toy_2d(name, N_NLL, generator, device=device)).double()
            with torch.no_grad():
                model = -log_likelihood(lambda y, t, s=score: s(y.float(), t.float()).double(), sde, test,
                                        rtol=1e-5, atol=1e-5).log_prob
            truth = -exact.log_prob(test, torch.full((N_NLL,), sde.t_min, dtype=torch.float64,
                                                     device=test.device))
            difference = model - truth
            log_det = standardizer.log_abs_det()
            nll = {"model_nll": float(model.mean()) + log_det, "true_nll": float(truth.mean()) + log_det,
                   "difference": float(difference.mean()),
                   "difference_se": float(difference.std() / math.sqrt(N_NLL)), "units": "data units, nats"}
    toys_ok = all(results[name]["mmd2_ratio"] <= settings.factor for name in TOYS)
    kl_ok = bool(nll) and -NLL_Z * nll["difference_se"] < nll["difference"] < NLL_GAP_MAX
    figure = _figure(samples_for_figure, results, snapshots, nll, out_dir / f"{NAME}.png")
    return CheckResult(
        name=NAME,
        claim=(
            "A score learned by denoising score matching generates the toy data: $\\mathrm{MMD}^2$ to "
            f"fresh data within {settings.factor:g}x the noise floor after {settings.n_steps} training "
            "steps (moons, 8 Gaussians, checkerboard; n = 3,000, V-statistic, bandwidth 0.3 on "
            "standardized data); on 8 Gaussians the model's probability-flow NLL of test data is at "
            "least the true NLL and close to it."
        ),
        predicted=(
            f"MMD^2 / floor <= {settings.factor:g} for each toy; NLL_model - NLL_true = KL >= 0 "
            f"(> -{NLL_Z:g} SE) and < {NLL_GAP_MAX:g} nats"
        ),
        measured=(
            "MMD^2 / floor: " + ", ".join(f"{name} {results[name]['mmd2_ratio']:.2f}" for name in TOYS)
            + f"; NLL model {nll.get('model_nll', float('nan')):.4f} vs true "
            f"{nll.get('true_nll', float('nan')):.4f} nats (difference "
            f"{nll.get('difference', float('nan')):.4f}"
            f" +- {nll.get('difference_se', float('nan')):.4f}); learned/exact MMD^2 ratios over training "
            f"{format_list([row['learned_ratio'] for row in snapshots], 3)} / "
            f"{format_list([row['exact_ratio'] for row in snapshots], 3)}"
        ),
        tolerance=(
            f"floor = mean of {N_FLOOR} data-vs-data V-statistics at n = {N_EVAL}; samples by the "
            f"probability-flow ODE (Heun, {SAMPLER_STEPS} steps) from the EMA weights; NLL on "
            f"{N_NLL} test points, paired difference with its standard error"
        ),
        passed=bool(toys_ok and kl_ok),
        details={"toys": results, "snapshots": snapshots, "nll": nll, "n_steps": settings.n_steps},
        figures=(figure,),
    )


def _figure(samples: dict, results: dict, snapshots: list[dict], nll: dict, path: Path) -> str:
    figure, axes = new_figure(len(samples) + 1, 1, width=3.6, height=3.5)
    for axis, (name, (data, generated)) in zip(axes[0], samples.items(), strict=False):
        axis.scatter(data[:, 0], data[:, 1], s=2, color="0.6", label="data")
        axis.scatter(generated[:, 0], generated[:, 1], s=2, color="tab:red", alpha=0.6, label="generated")
        axis.set_title(f"{name}: MMD^2 = {results[name]['mmd2_ratio']:.1f} x floor", fontsize=9)
        axis.set_aspect("equal")
        axis.legend(fontsize=6, markerscale=4)
    axis = axes[0, -1]
    if snapshots:
        steps = [row["step"] for row in snapshots]
        axis.plot(steps, [row["learned_ratio"] for row in snapshots], "o-", color="tab:red",
                  label="learned score")
        axis.plot(steps, [row["exact_ratio"] for row in snapshots], "s--", color="tab:blue",
                  label="exact score")
        axis.axhline(1.0, color="0.5", linestyle=":", label="noise floor")
        axis.set_yscale("log")
    axis.set_xlabel("training step")
    axis.set_ylabel("MMD^2 / floor (8 Gaussians)")
    title = "gap to the exact-score sampler"
    if nll:
        title += f"\nNLL {nll['model_nll']:.3f} vs true {nll['true_nll']:.3f}"
    axis.set_title(title, fontsize=9)
    axis.legend(fontsize=7)
    return save_figure(figure, path)
