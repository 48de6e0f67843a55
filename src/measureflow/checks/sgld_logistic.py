"""Check: stochastic-gradient Langevin posteriors for Bayesian logistic regression.

Claim. SGLD, SGLD-CV and pSGLD posteriors for Bayesian logistic regression on the breast
cancer data (standardized features, an intercept, N(0, 1) prior) agree with a long MALA
reference: every posterior mean within 0.5 reference posterior standard deviations and the
median (over the 31 coefficients) within 0.2; every posterior standard deviation within 25%.
Held-out predictive accuracy and log-likelihood are reported, and the number of per-datum
gradient evaluations each sampler needed.

Reference. The posterior (31 dimensions, N = 398 training rows) has a Hessian with condition
number about 50 at the mode, so an isotropic MALA chain has an autocorrelation time of a few
hundred steps and needs very long chains to get split R-hat below 1.01. The reference therefore
runs MALA on the posterior *whitened* by its Laplace approximation: theta = mode + C z with
C C^T = H^{-1} (H the Hessian of L at the mode found by L-BFGS). This is a linear change of
variables with a constant Jacobian, so MALA on z targets the exact posterior, pushed forward;
only the proposal is better scaled. Its chains start at the mode plus small noise
(z ~ N(0, 0.1^2 I)), adapt the step size toward acceptance 0.574 during burn-in, and must
reach split R-hat < 1.01 on every coefficient; otherwise the check fails.

Stochastic-gradient samplers. Each runs ``n_chains`` chains from the mode plus N(0, 0.01^2 I)
noise, minibatches of 32 rows, a constant step (SGLD's stationary law is biased by O(h) and by
the minibatch noise; the steps below were chosen where the bias is well inside the tolerances,
and are reported), a burn-in long enough for the slowest direction (curvature ~1) to relax.
The comparison pools all kept draws; the Monte Carlo error of each sampler's estimates is
about 1 / sqrt(ESS) reference standard deviations for the means, reported with the ESS.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from measureflow import metrics, targets
from measureflow._core import make_generator
from measureflow.checks._figures import new_figure, save_figure, to_numpy
from measureflow.checks.base import CheckResult
from measureflow.data import breast_cancer
from measureflow.samplers import find_mode_counted, sample

__all__ = ["run"]

NAME = "sgld-logistic"
PRIOR_STD = 1.0
DATA_SEED = 0
BATCH_SIZE = 32
STEP_SIZES = {"sgld": 3e-3, "sgld-cv": 5e-3, "psgld": 3e-2}
MAX_MEAN_ERROR = 0.5
MEDIAN_MEAN_ERROR = 0.2
SD_RATIO_RANGE = (0.75, 1.25)
RHAT_MAX = 1.01
MAX_PREDICTIVE_DRAWS = 4000


@dataclass(frozen=True)
class _Settings:
    reference_chains: int
    reference_burn_in: int
    reference_steps: int
    n_chains: int
    burn_in: int
    n_steps: int
    thin: int


SETTINGS = {
    "quick": _Settings(
        reference_chains=16, reference_burn_in=500, reference_steps=3_000,
        n_chains=64, burn_in=1_000, n_steps=3_000, thin=5,
    ),
    "full": _Settings(
        reference_chains=32, reference_burn_in=2_000, reference_steps=20_000,
        n_chains=256, burn_in=3_000, n_steps=12_000, thin=10,
    ),
}


class _Whitened(targets.Target):
    """The posterior in coordinates z with theta = mode + factor z.

    L_z(z) = L(mode + factor z) and grad L_z = factor^T grad L; the Jacobian of the map is
    constant, so exp(-L_z) is the exact posterior pushed forward. Energy and gradient share
    one pass over the data (``energy_and_grad`` of the logistic target).
    """

    name = "whitened logistic posterior"

    def __init__(self, target: targets.LogisticRegression, mode: Tensor, factor: Tensor) -> None:
        super().__init__(target.dim)
        self._anchor = self._anchor.to(device=mode.device, dtype=mode.dtype)
        self.base = target
        self.register_buffer("mode", mode)
        self.register_buffer("factor", factor)

    def energy(self, x: Tensor) -> Tensor:
        return self.base.energy(self.mode + self._as_input(x) @ self.factor.T)

    def energy_and_grad(self, x: Tensor) -> tuple[Tensor, Tensor]:
        energy, gradient = self.base.energy_and_grad(self.mode + self._as_input(x) @ self.factor.T)
        return energy, gradient @ self.factor

    def grad_energy(self, x: Tensor) -> Tensor:
        return self.energy_and_grad(x)[1]


def _thinned(draws: Tensor, limit: int) -> Tensor:
    """At most ``limit`` rows of ``draws`` ``(m, d)``, evenly spaced."""
    stride = max(1, draws.shape[0] // limit)
    return draws[::stride][:limit]


def _compare(flat: Tensor, reference_mean: Tensor, reference_sd: Tensor) -> dict:
    mean_error = ((flat.mean(0) - reference_mean) / reference_sd).abs()
    sd_ratio = flat.std(0) / reference_sd
    return {
        "mean_error": [float(v) for v in mean_error],
        "sd_ratio": [float(v) for v in sd_ratio],
        "max_mean_error": float(mean_error.max()),
        "median_mean_error": float(mean_error.median()),
        "min_sd_ratio": float(sd_ratio.min()),
        "max_sd_ratio": float(sd_ratio.max()),
    }


def _meets(entry: dict) -> bool:
    low, high = SD_RATIO_RANGE
    return (
        entry["max_mean_error"] <= MAX_MEAN_ERROR
        and entry["median_mean_error"] <= MEDIAN_MEAN_ERROR
        and entry["min_sd_ratio"] >= low
        and entry["max_sd_ratio"] <= high
    )


def run(size: str, seed: int, device: str, out_dir: Path) -> CheckResult:
    settings = SETTINGS[size]
    data = breast_cancer(test_fraction=0.3, seed=DATA_SEED, dtype=torch.float64, device=device)
    target = targets.LogisticRegression(data.X_train, data.y_train, prior_std=PRIOR_STD)
    n_data, dim = target.n_terms, target.dim
    generator = make_generator(seed, device)

    mode, mode_evaluations = find_mode_counted(
        target, torch.zeros(1, dim, dtype=torch.float64, device=device)
    )
    # Every sampler here starts at the mode, so each is charged the mode search; the reference
    # also pays for the Hessian (autograd's Hessian of a full-data energy: d full gradients).
    mode_cost = mode_evaluations * n_data
    hessian_cost = dim * n_data
    hessian = torch.autograd.functional.hessian(lambda x: target.energy(x[None])[0], mode[0])
    factor = torch.linalg.cholesky(torch.linalg.inv(hessian))
    condition = torch.linalg.eigvalsh(hessian)
    start = 0.1 * torch.randn(
        settings.reference_chains, dim, generator=generator, dtype=torch.float64, device=device
    )
    reference_run = sample(
        _Whitened(target, mode, factor), "mala", n_chains=settings.reference_chains,
        n_steps=settings.reference_steps, burn_in=settings.reference_burn_in, step_size=0.5,
        init=start, generator=generator, device=device, dtype=torch.float64, progress=False,
        record_energy=False, diagnostics=False,
    )
    reference_chains = mode + reference_run.samples @ factor.T  # (S, C, d)
    reference_rhat = metrics.rhat(reference_chains)
    reference_ess = metrics.ess(reference_chains)
    reference_flat = reference_chains.reshape(-1, dim)
    reference_mean, reference_sd = reference_flat.mean(0), reference_flat.std(0)
    reference_ok = bool(reference_rhat.max() < RHAT_MAX)

    samplers: dict[str, dict] = {
        "mala (reference)": {
            "step_size": reference_run.step_size,
            "acceptance_rate": float(reference_run.acceptance.mean()),
            "n_chains": settings.reference_chains,
            "n_steps": settings.reference_burn_in + settings.reference_steps,
            "rhat_max": float(reference_rhat.max()),
            "ess_min": float(reference_ess.min()),
            # A full gradient costs N per-datum gradients.
            "data_grads_per_chain": float(
                reference_run.n_grad_evals * n_data + mode_cost + hessian_cost
            ),
            **target.predictive(_thinned(reference_flat, MAX_PREDICTIVE_DRAWS), data.X_test,
                                data.y_test),
        }
    }
    flats: dict[str, Tensor] = {}
    for name, step in STEP_SIZES.items():
        init = mode + 0.01 * torch.randn(
            settings.n_chains, dim, generator=generator, dtype=torch.float64, device=device
        )
        result = sample(
            target, name, n_chains=settings.n_chains, n_steps=settings.n_steps,
            burn_in=settings.burn_in, thin=settings.thin, step_size=step, batch_size=BATCH_SIZE,
            init=init, generator=generator, device=device, dtype=torch.float64, progress=False,
            record_energy=False,
        )
        flat = result.samples.reshape(-1, dim)
        flats[name] = flat
        entry = {
            "step_size": step,
            "batch_size": BATCH_SIZE,
            "n_chains": settings.n_chains,
            "n_steps": settings.burn_in + settings.n_steps,
            # The ESS of the mean (result.ess is the rank-normalized bulk ESS): the docstring's
            # 1 / sqrt(ESS) Monte Carlo error of the posterior means is about this one.
            "ess_min": float(metrics.ess(result.samples).min()),
            "data_grads_per_chain": result.n_data_grads + mode_cost,
            **_compare(flat, reference_mean, reference_sd),
            **target.predictive(_thinned(flat, MAX_PREDICTIVE_DRAWS), data.X_test, data.y_test),
        }
        entry["passed"] = _meets(entry)
        samplers[name] = entry

    passed = reference_ok and all(samplers[name]["passed"] for name in STEP_SIZES)
    figure = _figure(samplers, reference_flat, flats, reference_mean, reference_sd,
                     out_dir / f"{NAME}.png")

    def measured_line(name: str) -> str:
        entry = samplers[name]
        return (
            f"{name} (h={entry['step_size']:g}): max {entry['max_mean_error']:.3f}, median "
            f"{entry['median_mean_error']:.3f}, sd ratio [{entry['min_sd_ratio']:.3f}, "
            f"{entry['max_sd_ratio']:.3f}], accuracy {entry['accuracy']:.3f}, log-lik "
            f"{entry['mean_log_likelihood']:.4f}, {entry['data_grads_per_chain']:.3g} data "
            "grads/chain"
        )

    reference = samplers["mala (reference)"]
    return CheckResult(
        name=NAME,
        claim=(
            "SGLD, SGLD-CV and pSGLD posteriors for Bayesian logistic regression on breast cancer "
            "(standardized features, intercept, $N(0, 1)$ prior; 398 training / 171 test rows) "
            "agree with a long MALA reference: every posterior mean within 0.5 reference "
            "posterior sds, the median within 0.2, posterior sds within 25%. (Reference: MALA "
            "on the Laplace-whitened posterior, exact by a linear change of variables; "
            f"minibatches of {BATCH_SIZE}, constant steps "
            + ", ".join(f"{name} h={step:g}" for name, step in STEP_SIZES.items())
            + ".)"
        ),
        predicted=(
            f"|mean - ref| / ref sd: max <= {MAX_MEAN_ERROR:g}, median <= {MEDIAN_MEAN_ERROR:g};"
            f" sd / ref sd in [{SD_RATIO_RANGE[0]:g}, {SD_RATIO_RANGE[1]:g}]; reference "
            f"R-hat < {RHAT_MAX:g}"
        ),
        measured=(
            f"reference R-hat max {reference['rhat_max']:.4f}, ESS min {reference['ess_min']:.0f},"
            f" accuracy {reference['accuracy']:.3f}, log-lik "
            f"{reference['mean_log_likelihood']:.4f}, {reference['data_grads_per_chain']:.3g} "
            "data grads/chain; " + "; ".join(measured_line(name) for name in STEP_SIZES)
        ),
        tolerance=(
            "the stated bounds on all 31 coefficients for each of the three samplers (pooled "
            "kept draws of all chains vs the pooled reference); the reference must have split "
            f"R-hat < {RHAT_MAX:g} on every coefficient"
        ),
        passed=bool(passed),
        details={
            "n_train": n_data,
            "n_test": int(data.X_test.shape[0]),
            "dim": dim,
            "prior_std": PRIOR_STD,
            "data_split_seed": DATA_SEED,
            "hessian_condition_number": float(condition[-1] / condition[0]),
            "mode_predictive": target.predictive(mode, data.X_test, data.y_test),
            "reference_converged": reference_ok,
            "reference_mean": [float(v) for v in reference_mean],
            "reference_sd": [float(v) for v in reference_sd],
            "samplers": samplers,
        },
        figures=(figure,),
    )


def _figure(samplers: dict, reference: Tensor, flats: dict, reference_mean: Tensor,
            reference_sd: Tensor, path: Path) -> str:
    figure, axes = new_figure(3, 1, width=4.4, height=3.5)
    colours = {"sgld": "tab:blue", "sgld-cv": "tab:green", "psgld": "tab:red"}
    markers = {"sgld": "o", "sgld-cv": "s", "psgld": "^"}
    index = np.arange(reference.shape[1])
    axis = axes[0, 0]
    for name, colour in colours.items():
        axis.plot(index, samplers[name]["mean_error"], markers[name], color=colour, markersize=3.5,
                  label=f"{name} (median {samplers[name]['median_mean_error']:.2f})")
    axis.axhline(MAX_MEAN_ERROR, color="k", linestyle="--", linewidth=1.0, label="max allowed")
    axis.axhline(MEDIAN_MEAN_ERROR, color="k", linestyle=":", linewidth=1.0,
                 label="median allowed")
    axis.set_xlabel("coefficient (0 = intercept)")
    axis.set_ylabel("|mean - reference| / reference sd")
    axis.set_title("posterior means")
    axis.legend(fontsize=7)
    axis = axes[0, 1]
    for name, colour in colours.items():
        axis.plot(index, samplers[name]["sd_ratio"], markers[name], color=colour, markersize=3.5,
                  label=name)
    axis.axhspan(*SD_RATIO_RANGE, color="0.92", label="allowed")
    axis.axhline(1.0, color="k", linewidth=0.8)
    axis.set_xlabel("coefficient (0 = intercept)")
    axis.set_ylabel("sd / reference sd")
    axis.set_title("posterior standard deviations")
    axis.legend(fontsize=7)
    axis = axes[0, 2]
    # The coefficient whose SGLD mean is furthest from the reference, standardized.
    worst = int(np.argmax(samplers["sgld"]["mean_error"]))
    scale = float(reference_sd[worst])
    centre = float(reference_mean[worst])
    bins = np.linspace(-4.5, 4.5, 61)
    axis.hist((to_numpy(reference[:, worst]) - centre) / scale, bins=bins, density=True,
              color="0.7", label="MALA reference")
    for name, colour in colours.items():
        axis.hist((to_numpy(flats[name][:, worst]) - centre) / scale, bins=bins, density=True,
                  histtype="step", color=colour, label=name)
    axis.set_xlabel(f"(theta_{worst} - reference mean) / reference sd")
    axis.set_ylabel("density")
    axis.set_title(f"marginal of coefficient {worst} (worst SGLD mean)")
    axis.legend(fontsize=7)
    return save_figure(figure, path)
