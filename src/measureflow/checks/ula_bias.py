r"""Check: ULA's discretization bias on a Gaussian target, in closed form.

Claim. For the Gaussian target N(0, sigma^2) (energy L(x) = x^2 / (2 sigma^2), Gibbs measure
exp(-beta L) = N(0, sigma^2 / beta)) and step h, ULA's stationary variance has a closed form;
the measured variance agrees with it within Monte Carlo error at every step, and MALA's variance
matches sigma^2 / beta.

Derivation. With our convention x <- x - h grad L(x) + sqrt(2 h / beta) xi and
grad L(x) = x / sigma^2, one ULA step is the AR(1) recursion

    x' = a x + s xi,      a = 1 - h / sigma^2,   s^2 = 2 h / beta,   xi ~ N(0, 1).

For 0 < h < 2 sigma^2 we have |a| < 1 and the chain has a Gaussian stationary law whose variance
v solves v = a^2 v + s^2:

    v(h) = s^2 / (1 - a^2) = (2 h / beta) / (2 h / sigma^2 - h^2 / sigma^4)
         = (sigma^2 / beta) / (1 - h / (2 sigma^2)),

larger than the target's sigma^2 / beta by the factor 1 / (1 - h / (2 sigma^2)) = 1 + O(h).
From any start x_0 the variance approaches v(h) geometrically:
Var x_k - v(h) = a^(2k) (Var x_0 - v(h)). MALA's accept/reject makes exp(-beta L) exactly
invariant, so its variance is sigma^2 / beta at every step size.

Method. ``n_chains`` independent chains start from exact draws of N(0, sigma^2 / beta) and run
k(h) = ceil(20 / |log |a||) steps, after which the remaining transient a^(2k) <= e^(-40) is far
below the Monte Carlo error; the final states are ``n_chains`` independent draws of the law at
step k. Their sample variance has standard error sqrt((m4 - m2^2) / n) (m2, m4 the sample
central moments), which needs no autocorrelation correction because the draws come from
independent chains. Verdict: for every step |ULA - v(h)| < 4 SE and |MALA - sigma^2 / beta|
< 4 SE, and at the largest step ULA's variance is more than 10 SE from sigma^2 / beta (the bias
is real and resolved).
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
from measureflow.samplers import sample

__all__ = ["run", "ula_stationary_variance"]

NAME = "ula-bias"
SIGMA = 1.5
BETA = 2.0
# Steps as multiples of sigma^2; ULA is stable for h < 2 sigma^2.
RELATIVE_STEPS = (0.05, 0.1, 0.2, 0.4, 0.8, 1.2)
Z_AGREE = 4.0
Z_RESOLVED = 10.0


MIN_MALA_ACCEPTANCE = 0.2


@dataclass(frozen=True)
class _Settings:
    n_chains: int


# Quick: below torch's 32768-element parallel grain size, so every op stays single-threaded.
SETTINGS = {"quick": _Settings(n_chains=30_000), "full": _Settings(n_chains=1_000_000)}


def ula_stationary_variance(step_size: float, sigma: float, beta: float) -> float:
    """(sigma^2 / beta) / (1 - h / (2 sigma^2)): ULA's stationary variance on N(0, sigma^2)."""
    return (sigma**2 / beta) / (1 - step_size / (2 * sigma**2))


def _variance_and_se(draws: Tensor) -> tuple[float, float]:
    """Sample variance of independent draws ``(n, 1)`` and its standard error sqrt((m4 - m2^2) / n)."""
    centred = draws.reshape(-1).double() - draws.double().mean()
    m2 = float(centred.square().mean())
    m4 = float(centred.pow(4).mean())
    n = centred.numel()
    return m2 * n / (n - 1), math.sqrt(max(m4 - m2**2, 0.0) / n)


def run(size: str, seed: int, device: str, out_dir: Path) -> CheckResult:
    settings = SETTINGS[size]
    n = settings.n_chains
    variance = SIGMA**2 / BETA
    target = targets.Gaussian(
        torch.zeros(1, dtype=torch.float64), torch.full((1, 1), SIGMA**2, dtype=torch.float64)
    ).to(device)
    generator = make_generator(seed, device)
    rows = []
    for relative in RELATIVE_STEPS:
        step = relative * SIGMA**2
        contraction = abs(1 - step / SIGMA**2)
        n_steps = math.ceil(20 / -math.log(contraction))
        predicted = ula_stationary_variance(step, SIGMA, BETA)
        row = {"step_size": step, "n_steps": n_steps, "ula_predicted": predicted}
        for sampler in ("ula", "mala"):
            start = target.sample(n, beta=BETA, generator=generator)
            result = sample(
                target, sampler, n_chains=n, n_steps=n_steps, burn_in=0, step_size=step,
                beta=BETA, init=start, thin=n_steps, generator=generator, device=device,
                dtype=torch.float64, adapt_step_size=False, record_energy=False,
                diagnostics=False, progress=False,
            )
            measured, se = _variance_and_se(result.samples[-1])
            reference = predicted if sampler == "ula" else variance
            row[f"{sampler}_variance"] = measured
            row[f"{sampler}_se"] = se
            row[f"{sampler}_z"] = (measured - reference) / se
            if result.acceptance is not None:
                row["mala_acceptance"] = float(result.acceptance.mean())
        row["ula_z_from_target"] = (row["ula_variance"] - variance) / row["ula_se"]
        rows.append(row)

    ula_ok = all(abs(row["ula_z"]) < Z_AGREE for row in rows)
    # The chains start from exact draws, so a kernel that never moved would also "agree":
    # MALA must also accept a fair share of its proposals.
    mala_moves = all(row["mala_acceptance"] >= MIN_MALA_ACCEPTANCE for row in rows)
    mala_ok = all(abs(row["mala_z"]) < Z_AGREE for row in rows) and mala_moves
    resolved = abs(rows[-1]["ula_z_from_target"]) > Z_RESOLVED
    figure = _figure(rows, variance, out_dir / f"{NAME}.png")
    steps = [row["step_size"] for row in rows]
    return CheckResult(
        name=NAME,
        claim=(
            "ULA's discretization bias: for a Gaussian target $N(0, \\sigma^2)$ and step $h$, ULA's "
            "stationary variance is $\\frac{\\sigma^2 / \\beta}{1 - h / (2 \\sigma^2)}$ in closed form; "
            "the measured variance agrees within Monte Carlo error, and MALA's matches "
            f"$\\sigma^2 / \\beta$. (sigma = {SIGMA:g}, beta = {BETA:g}, h = {format_list(steps, 3)}; "
            f"{n} independent chains per sampler and step, started from exact draws.)"
        ),
        predicted=(
            f"ULA variance {format_list([row['ula_predicted'] for row in rows])}; "
            f"MALA variance {variance:g} at every step"
        ),
        measured=(
            f"ULA {format_list([row['ula_variance'] for row in rows])} "
            f"(z = {format_list([row['ula_z'] for row in rows], 2)}); "
            f"MALA {format_list([row['mala_variance'] for row in rows])} "
            f"(z = {format_list([row['mala_z'] for row in rows], 2)}); "
            f"ULA at h = {steps[-1]:g} is {rows[-1]['ula_z_from_target']:.0f} SE from "
            f"sigma^2 / beta"
        ),
        tolerance=(
            f"|measured - predicted| < {Z_AGREE:g} SE for every step and both samplers, SE = "
            "sqrt((m4 - m2^2) / n) from the final states of n independent chains (no "
            f"autocorrelation); ULA at the largest step must be > {Z_RESOLVED:g} SE from "
            f"sigma^2 / beta; MALA must accept at least {MIN_MALA_ACCEPTANCE:.0%} of its "
            "proposals at every step (the start is exact, so a chain that never moved would "
            "agree trivially)."
        ),
        passed=bool(ula_ok and mala_ok and resolved),
        details={
            "sigma": SIGMA,
            "beta": BETA,
            "target_variance": variance,
            "n_chains": n,
            "ula_agrees": ula_ok,
            "mala_agrees": mala_ok,
            "mala_acceptance": [row["mala_acceptance"] for row in rows],
            "bias_resolved_at_largest_step": resolved,
            "rows": rows,
        },
        figures=(figure,),
    )


def _figure(rows: list[dict], variance: float, path: Path) -> str:
    figure, axes = new_figure(2, 1, width=4.8, height=3.6)
    steps = np.array([row["step_size"] for row in rows])
    curve = np.linspace(0.0, steps.max() * 1.05, 200)
    axis = axes[0, 0]
    axis.plot(curve, [ula_stationary_variance(h, SIGMA, BETA) for h in curve], "k-",
              linewidth=1.2, label="ULA prediction (s^2/b) / (1 - h/(2 s^2))")
    axis.axhline(variance, color="gray", linestyle="--", linewidth=1.0, label="target s^2/b")
    axis.errorbar(steps, [row["ula_variance"] for row in rows],
                  yerr=[Z_AGREE * row["ula_se"] for row in rows], fmt="o", color="tab:red",
                  markersize=4, capsize=3, label="ULA measured (+- 4 SE)")
    axis.errorbar(steps, [row["mala_variance"] for row in rows],
                  yerr=[Z_AGREE * row["mala_se"] for row in rows], fmt="s", color="tab:blue",
                  markersize=4, capsize=3, label="MALA measured (+- 4 SE)")
    axis.set_xlabel("step size h")
    axis.set_ylabel("stationary variance")
    axis.set_title(f"N(0, {SIGMA:g}^2) at beta = {BETA:g}")
    axis.legend(fontsize=7)
    axis = axes[0, 1]
    axis.axhspan(-Z_AGREE, Z_AGREE, color="0.9", label="+- 4 SE")
    axis.plot(steps, [row["ula_z"] for row in rows], "o-", color="tab:red",
              label="ULA vs closed form")
    axis.plot(steps, [row["mala_z"] for row in rows], "s-", color="tab:blue",
              label="MALA vs s^2/b")
    axis.set_xscale("log")
    axis.set_xlabel("step size h")
    axis.set_ylabel("(measured - predicted) / SE")
    axis.set_title("standardized error")
    axis.legend(fontsize=7)
    return save_figure(figure, path)
