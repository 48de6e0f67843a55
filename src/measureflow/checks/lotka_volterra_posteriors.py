r"""Check: on Lotka-Volterra, the generative-model posteriors approach the exact-likelihood reference as
the simulation budget grows, and beat rejection ABC at equal budget.

Claim (the notes' Bayesian inference with deep generative models, seed 003; Tran et al. 2017; the
simulation-based inference benchmark of Lueckmann et al. 2021 for the protocol). A conditional
generative model fitted to simulated pairs (theta, y) -- a normalizing flow (NPE), a conditional
diffusion model, a conditional generator against a ratio-estimating discriminator (LFVI) or
trained by MMD -- uses every simulation, while rejection ABC keeps only those that land near the
observation. At equal budget the generative methods are therefore closer to the posterior, and
they approach it as the budget grows.

Problem. The standard Lotka-Volterra benchmark (``measureflow.inference.LotkaVolterra``: log-normal
prior, 10 noisy observations of each population); one observation simulated at theta = (0.56,
0.026, 0.75, 0.025). Reference: MALA on the exact likelihood (``mcmc_posterior``), its rank R-hat
and bulk ESS reported (the check requires R-hat < 1.01, else the reference is not one).

Method. One bank of prior simulations; at each budget every method gets the bank's first
``budget`` rows (so methods are compared on the same simulations); SMC-ABC (full size) simulates
its own rounds. The neural methods train for a fixed number of steps per budget (stated in the
result). Each method's ``n_draws`` posterior draws are compared with as many reference draws on
log theta, where the posterior is nearly Gaussian, in two ways:

- C2ST (``metrics.c2st``, MLP classifier, 5 folds), the benchmark's measure: 1/2 when the two
  samples cannot be told apart. It saturates at 1 as soon as the supports barely overlap, which
  is the case for every method at 10^3 simulations here (the LV posterior is narrow: its sd in
  log theta is 0.02-0.06 against the prior's 0.5), so it cannot rank methods there;
- KL(N(m, S) || N(m_ref, S_ref)) between Gaussian fits of the two samples' moments ("moment KL"):
  it keeps ranking far-off posteriors (a method twice too wide and a method ten times too wide),
  and is 0 when mean and covariance agree. Its standard error comes from 50 bootstrap resamples of
  both samples.

Verdict, for each judged generative method: (a) from the smallest to the largest budget its moment
KL falls by more than Z = 3 standard errors of the difference or its C2ST falls by more than Z sd
of a difference (sqrt(2) x the binomial sd under H0, an upper bound under H1 as well), and the KL
does not rise by more than Z standard errors; (b) at every budget its moment KL is below rejection
ABC's by more than Z standard errors of the difference (C2ST cannot rank them: ABC's is 1).
The reference must have rank R-hat < 1.01 (full size; 1.05 at the quick size, whose 32 chains of
100 draws reach 1.02-1.03: enough for a reference against which KL values of 10-1000 are judged,
not for a published posterior). The MALA reference and the simulations use
``LotkaVolterra(tol=1e-6)`` at the quick size (a relative solution error of at most 5e-4 against
the observation noise's 0.1 in log units) and the default 1e-8 at the full size. The quick size
judges NPE, with the cheaper affine flow (``flow="maf"``), at 10^3 and 10^4; the full size judges
NPE, the diffusion posterior, LFVI and the MMD generator at 10^3, 10^4 and 10^5 and reports SMC-ABC.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from measureflow._core import make_generator
from measureflow.checks._figures import new_figure, save_figure
from measureflow.checks.base import CheckResult
from measureflow.inference import LotkaVolterra
from measureflow.inference.api import DEFAULT_PARAMETERS, METHODS
from measureflow.inference.base import simulate_budget
from measureflow.inference.mcmc import mcmc_posterior
from measureflow.metrics import c2st, gaussian_kl

__all__ = ["run"]

NAME = "lotka-volterra-posteriors"
Z = 3.0
GENERATIVE = ("npe", "diffusion", "lfvi", "mmd")


@dataclass(frozen=True)
class _Settings:
    budgets: tuple[int, ...]
    methods: tuple[str, ...]
    steps: dict[str, tuple[int, ...]]  # training steps per budget, per neural method
    n_draws: int
    reference_chains: int
    reference_steps: int
    reference_burn_in: int
    reference_optimize: int
    max_rhat: float
    tol: float
    options: dict[str, dict] = field(default_factory=dict)  # extra keywords per method


SETTINGS = {
    "quick": _Settings(
        budgets=(1_000, 10_000), methods=("abc", "npe"),
        steps={"npe": (600, 3_000)}, options={"npe": {"flow": "maf"}},
        n_draws=1_000, reference_chains=32, reference_steps=100, reference_burn_in=100, reference_optimize=60,
        max_rhat=1.05, tol=1e-6),
    "full": _Settings(
        budgets=(1_000, 10_000, 100_000),
        methods=("abc", "smc-abc", "npe", "diffusion", "lfvi", "mmd"),
        steps={"npe": (2_000, 5_000, 10_000), "diffusion": (4_000, 8_000, 15_000),
               "lfvi": (3_000, 6_000, 12_000), "mmd": (2_000, 4_000, 6_000)},
        n_draws=2_000, reference_chains=256, reference_steps=800, reference_burn_in=250,
        reference_optimize=100,
        max_rhat=1.01, tol=1e-8),
}


def run(size: str, seed: int, device: str, out_dir: Path) -> CheckResult:
    settings = SETTINGS[size]
    generator = make_generator(seed)
    simulator = LotkaVolterra(tol=settings.tol)
    truth = torch.tensor([DEFAULT_PARAMETERS["lotka-volterra"]], dtype=torch.float64)
    y_obs = simulator.simulate(truth, generator)[0]
    reference = mcmc_posterior(simulator, y_obs, n_samples=settings.n_draws,
                               n_chains=settings.reference_chains, n_steps=settings.reference_steps,
                               burn_in=settings.reference_burn_in, n_optimize=settings.reference_optimize,
                               generator=generator, device=device)
    reference_ok = reference.details["rhat"] < settings.max_rhat
    bank_theta, bank_y, _ = simulate_budget(simulator, max(settings.budgets), generator)
    # simulate_budget dropped failed rows; the methods' budgets count rows of the bank, which is
    # what they would have drawn themselves (failures included) up to these few dropped rows.
    bank = (bank_theta, bank_y)
    sd_null = 0.5 / math.sqrt(2 * settings.n_draws)
    accuracy: dict[str, list[float]] = {name: [] for name in settings.methods}
    moment_kl: dict[str, list[float]] = {name: [] for name in settings.methods}
    kl_se: dict[str, list[float]] = {name: [] for name in settings.methods}
    log_reference = reference.theta.log()
    wall: dict[str, list[float]] = {name: [] for name in settings.methods}
    draws: dict[str, torch.Tensor] = {}
    for index, budget in enumerate(settings.budgets):
        budget = min(budget, bank_theta.shape[0])
        for name in settings.methods:
            options = {"n_samples": settings.n_draws, "generator": generator, "device": device,
                       **settings.options.get(name, {})}
            if name in settings.steps:
                options["n_steps"] = settings.steps[name][index]
            if name != "smc-abc":
                options["simulations"] = bank
            result = METHODS[name].function(simulator, y_obs, budget, **options)
            log_theta = result.theta.log()
            score = c2st(log_theta, log_reference, classifier="mlp", generator=generator)
            accuracy[name].append(score.accuracy)
            value, se = _moment_kl(log_theta, log_reference, generator)
            moment_kl[name].append(value)
            kl_se[name].append(se)
            wall[name].append(result.wall_time)
            draws[name] = result.theta
    judged = [name for name in GENERATIVE if name in settings.methods]
    verdicts = {}
    diff_sd = math.sqrt(2) * sd_null
    for name in judged:
        values, errors = moment_kl[name], kl_se[name]
        kl_change, kl_change_se = values[0] - values[-1], math.hypot(errors[0], errors[-1])
        c2st_falls = accuracy[name][0] - accuracy[name][-1] > Z * diff_sd
        falls = (kl_change > Z * kl_change_se or c2st_falls) and kl_change > -Z * kl_change_se
        beats = all(abc - value > Z * math.hypot(abc_se, se) for abc, abc_se, value, se
                    in zip(moment_kl["abc"], kl_se["abc"], values, errors, strict=True))
        verdicts[name] = {"falls": falls, "beats_abc": beats}
    passed = reference_ok and all(v["falls"] and v["beats_abc"] for v in verdicts.values())
    figure = _figure(settings, accuracy, draws, reference.theta, out_dir / f"{NAME}.png")
    table = "; ".join(f"{name}: " + ", ".join(f"{c:.3f} ({k:.3g})" for c, k in
                                              zip(accuracy[name], moment_kl[name], strict=True))
                      for name in settings.methods)
    return CheckResult(
        name=NAME,
        claim=(
            "On Lotka-Volterra, posteriors learned by conditional generative models (NPE with a spline "
            "flow, a conditional diffusion model, LFVI" + (", an MMD generator" if "mmd" in judged else "")
            + ") approach the exact-likelihood MALA reference as the simulation budget grows, and beat "
            "rejection ABC at equal budget, measured on $\\log\\theta$ by C2ST and by the KL between "
            f"Gaussian fits (budgets {', '.join(f'{b:,}' for b in settings.budgets)})."
        ),
        predicted=(f"each of {', '.join(judged)}: moment KL (or C2ST) falls from the smallest to the "
                   f"largest budget, and KL is below rejection ABC's at every budget, by > {Z:g} SE; "
                   f"reference R-hat < {settings.max_rhat:g}"),
        measured=(f"C2ST (moment KL) per budget: {table}; reference R-hat "
                  f"{reference.details['rhat']:.4f}, bulk ESS {reference.details['ess_bulk']:.0f}"),
        tolerance=(f"Z = {Z:g} bootstrap SE of the KL differences; C2ST reported (its sd under H0 "
                   f"1/(2 sqrt({2 * settings.n_draws})) = {sd_null:.4f})"),
        passed=bool(passed),
        details={"budgets": list(settings.budgets), "c2st": accuracy, "moment_kl": moment_kl,
                 "moment_kl_se": kl_se, "wall_time_s": wall,
                 "verdicts": verdicts, "sd_null": sd_null, "reference": reference.details,
                 "steps": settings.steps,
                 "observation": y_obs.tolist(), "true_parameters": truth[0].tolist()},
        figures=(figure,),
    )


def _moment_kl(x: torch.Tensor, reference: torch.Tensor, generator: torch.Generator,
               n_bootstrap: int = 50) -> tuple[float, float]:
    """KL(N(mean(x), cov(x)) || N(mean(ref), cov(ref))) and its bootstrap standard error."""
    def kl(a: torch.Tensor, b: torch.Tensor) -> float:
        return float(gaussian_kl(a.mean(0), torch.cov(a.T), b.mean(0), torch.cov(b.T)))

    values = []
    for _ in range(n_bootstrap):  # resamples of both samples; the loop is over resamples only
        i = torch.randint(x.shape[0], (x.shape[0],), generator=generator)
        j = torch.randint(reference.shape[0], (reference.shape[0],), generator=generator)
        values.append(kl(x[i], reference[j]))
    return kl(x, reference), float(np.std(values, ddof=1))


def _figure(settings: _Settings, accuracy: dict[str, list[float]], draws: dict[str, torch.Tensor],
            reference: torch.Tensor, path: Path) -> str:
    figure, axes = new_figure(3, 1, width=4.4, height=3.7)
    axis = axes[0, 0]
    budgets = np.array(settings.budgets, dtype=float)
    for name, values in accuracy.items():
        axis.plot(budgets[: len(values)], values, "o-", label=name)
    axis.axhline(0.5, color="black", lw=0.8)
    axis.set_xscale("log")
    axis.set_xlabel("simulation budget")
    axis.set_ylabel("C2ST accuracy vs reference")
    axis.set_ylim(0.45, 1.02)
    axis.set_title("C2ST (1/2: indistinguishable)")
    axis.legend(fontsize=7)
    for axis, (i, j) in zip(axes[0, 1:], ((0, 1), (2, 3)), strict=True):
        ref = reference.log()[:1000].numpy()
        axis.scatter(ref[:, i], ref[:, j], s=2, color="black", alpha=0.4, label="MALA reference")
        for name, theta in draws.items():
            pts = theta.log()[:500].numpy()
            axis.scatter(pts[:, i], pts[:, j], s=2, alpha=0.35, label=name)
        names = LotkaVolterra.parameter_names
        axis.set_xlabel(f"log {names[i]}")
        axis.set_ylabel(f"log {names[j]}")
        axis.set_title(f"largest budget: log {names[i]} vs log {names[j]}")
        axis.legend(fontsize=6, markerscale=3)
    return save_figure(figure, path)
