r"""Check: the forward OU process forgets the data at the log-Sobolev rate.

Claim. The forward process of a diffusion model, dX = -X dt + sqrt(2) dB (GLD for
L(x) = |x|^2 / 2 at beta = 1), drives any data law to N(0, I): the standard Gaussian satisfies a
log-Sobolev inequality with constant 1, so KL(p_t || N(0, I)) <= e^{-2t} KL(p_0 || N(0, I)).
For Gaussian data the rate 2 is attained when the data mean is off zero, while centred data
forget faster (rate 4).

Derivation. The OU transition is x_t = e^{-t} x_0 + sqrt(1 - e^{-2t}) z, so data N(m, S) gives
p_t = N(m_t, S_t), m_t = e^{-t} m, S_t = e^{-2t} S + (1 - e^{-2t}) I, and

    KL(p_t || N(0, I)) = (1/2) [tr S_t + |m_t|^2 - d - log det S_t].

As t -> oo, |m_t|^2 / 2 = e^{-2t} |m|^2 / 2 dominates (rate 2, the LSI rate, attained); with
m = 0 only the covariance term is left, which is (1/4) sum_i (e^{-2t}(s_i - 1))^2 + ... =
O(e^{-4t}) (rate 4, the bound holds with room).

Method. n particles drawn from the data law move by the exact OU transition over steps of
0.05 (a particle simulation of the process, not the formula for p_t). At each time the
plug-in KL of the Gaussian with the particles' mean and covariance is compared with the closed
form. Its standard error, by the delta method for Gaussian samples (independent mean and
covariance errors; Var tr(A dS) = 2 tr(A S A S) / n), is

    SE^2 = [m_t^T S_t m_t + (1/2) tr((S_t - I)^2)] / n,

plus the second-order term's variance d(d + 3) / (4 n^2), which dominates once KL is of order
d / n; the plug-in bias is d(d + 3) / (4 n) to leading order. The decay rate is the
least-squares slope of log KL against t over the window where KL is resolved (KL > 20 SE).

Verdict: every measured KL lies within 4 SE + bias of the closed form; every measured KL is
below the LSI bound e^{-2t} KL(0) + 4 SE + bias; the off-centre data's fitted rate is within
0.1 of 2; the centred data's fitted rate is within 0.2 of the exact curve's slope over the same
window, which exceeds 3 (faster than the bound, on its way to 4).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from measureflow._core import make_generator
from measureflow.checks._figures import format_list, new_figure, save_figure
from measureflow.checks.base import CheckResult

__all__ = ["gaussian_kl_to_standard", "run"]

NAME = "ou-forgets"
MEAN = (1.5, -1.0)
COVARIANCE = ((0.3, 0.2), (0.2, 0.5))
STEP = 0.05
Z_AGREE = 4.0
RATE_TOLERANCE = 0.1
RESOLVED_Z = 20.0


@dataclass(frozen=True)
class _Settings:
    n_particles: int
    t_end: float


SETTINGS = {"quick": _Settings(n_particles=200_000, t_end=3.0),
            "full": _Settings(n_particles=4_000_000, t_end=4.0)}


def gaussian_kl_to_standard(mean: Tensor, cov: Tensor) -> float:
    """KL(N(mean, cov) || N(0, I)) = (1/2)[tr cov + |mean|^2 - d - log det cov]."""
    d = mean.shape[0]
    return 0.5 * float(torch.trace(cov) + mean.square().sum() - d - torch.logdet(cov))


def _kl_standard_error(mean: Tensor, cov: Tensor, n: int) -> float:
    d = cov.shape[0]
    residual = cov - torch.eye(d, dtype=cov.dtype, device=cov.device)
    # First-order (delta-method) variance, plus the second-order term's, which dominates once
    # KL is of order d / n (the centred case at late times).
    first_order = float(mean @ cov @ mean + 0.5 * torch.trace(residual @ residual)) / n
    variance = first_order + d * (d + 3) / (4 * n**2)
    return math.sqrt(max(variance, 0.0))


def _run_case(mean: Tensor, cov: Tensor, times: np.ndarray, n: int, generator: torch.Generator) -> dict:
    d = mean.shape[0]
    chol = torch.linalg.cholesky(cov)
    x = mean + torch.randn(n, d, generator=generator, dtype=mean.dtype, device=mean.device) @ chol.T
    decay = math.exp(-STEP)
    spread = math.sqrt(-math.expm1(-2 * STEP))
    bias = d * (d + 3) / (4 * n)
    rows = []
    for index, t in enumerate(times):
        if index:
            n_steps = round((t - times[index - 1]) / STEP)
            for _ in range(n_steps):
                x = decay * x + spread * torch.randn(x.shape, generator=generator, dtype=x.dtype,
                                                     device=x.device)
        mean_t = math.exp(-t) * mean
        cov_t = math.exp(-2 * t) * cov + (1 - math.exp(-2 * t)) * torch.eye(d, dtype=cov.dtype,
                                                                           device=cov.device)
        exact = gaussian_kl_to_standard(mean_t, cov_t)
        measured = gaussian_kl_to_standard(x.mean(0), torch.cov(x.T))
        rows.append({"t": float(t), "exact": exact, "measured": measured,
                     "se": _kl_standard_error(mean_t, cov_t, n), "bias_bound": bias})
    kl0 = rows[0]["exact"]
    for row in rows:
        row["lsi_bound"] = math.exp(-2 * row["t"]) * kl0
        allowance = Z_AGREE * row["se"] + row["bias_bound"]
        row["agrees"] = abs(row["measured"] - row["exact"]) <= allowance
        row["below_bound"] = row["measured"] <= row["lsi_bound"] + allowance
        row["resolved"] = row["measured"] > RESOLVED_Z * row["se"] and row["t"] > 0
    window = [row for row in rows if row["resolved"]]
    late = window[len(window) // 3:] if len(window) >= 6 else window
    if len(late) >= 2:
        fit_t = [row["t"] for row in late]
        rate = float(-np.polyfit(fit_t, np.log([row["measured"] for row in late]), 1)[0])
        exact_rate = float(-np.polyfit(fit_t, np.log([row["exact"] for row in late]), 1)[0])
    else:
        rate = exact_rate = float("nan")
    return {"rows": rows, "rate": rate, "exact_window_rate": exact_rate,
            "fit_times": [row["t"] for row in late]}


def run(size: str, seed: int, device: str, out_dir: Path) -> CheckResult:
    settings = SETTINGS[size]
    generator = make_generator(seed, device)
    mean = torch.tensor(MEAN, dtype=torch.float64, device=device)
    cov = torch.tensor(COVARIANCE, dtype=torch.float64, device=device)
    times = np.round(np.arange(0.0, settings.t_end + 1e-9, 0.25), 10)
    shifted = _run_case(mean, cov, times, settings.n_particles, generator)
    centred = _run_case(torch.zeros_like(mean), cov, times, settings.n_particles, generator)
    agree = all(row["agrees"] for case in (shifted, centred) for row in case["rows"])
    bounded = all(row["below_bound"] for case in (shifted, centred) for row in case["rows"])
    rate_ok = abs(shifted["rate"] - 2.0) <= RATE_TOLERANCE
    # The centred curve reaches its asymptotic rate 4 only slowly; over the fit window its exact
    # slope is what the particles must reproduce (and it is far above the LSI rate 2).
    faster = (abs(centred["rate"] - centred["exact_window_rate"]) <= 2 * RATE_TOLERANCE
              and centred["exact_window_rate"] > 2.0 + 1.0)
    figure = _figure(shifted, centred, out_dir / f"{NAME}.png")
    worst = max(abs(row["measured"] - row["exact"]) / (Z_AGREE * row["se"] + row["bias_bound"])
                for case in (shifted, centred) for row in case["rows"])
    return CheckResult(
        name=NAME,
        claim=(
            "The forward OU process $dX = -X\\,dt + \\sqrt{2}\\,dB$ forgets the data: "
            "$\\mathrm{KL}(p_t \\| N(0, I)) \\le e^{-2t}\\,\\mathrm{KL}(p_0 \\| N(0, I))$ (log-Sobolev "
            "constant 1); for Gaussian data $N(m, S)$ the rate 2 is attained when $m \\ne 0$, and "
            "centred data forget at rate 4. "
            f"(m = {list(MEAN)}, S = {[list(row) for row in COVARIANCE]}; {settings.n_particles} "
            f"particles moved by exact OU steps of {STEP:g} to t = {settings.t_end:g}.)"
        ),
        predicted=(
            f"KL(t) = closed form; KL(t) <= e^(-2t) KL(0) (KL(0) = {shifted['rows'][0]['exact']:.4g} "
            f"off-centre, {centred['rows'][0]['exact']:.4g} centred); rate 2 off-centre, 4 centred"
        ),
        measured=(
            f"largest |KL_particles - KL_exact| = {worst:.2f} x the allowance; fitted rate "
            f"{shifted['rate']:.4f} off-centre (t in {format_list(shifted['fit_times'], 3)}), "
            f"{centred['rate']:.3f} centred (exact curve over the same window: "
            f"{centred['exact_window_rate']:.3f})"
        ),
        tolerance=(
            f"agreement within {Z_AGREE:g} SE + plug-in bias d(d+3)/(4n) (delta-method SE for "
            "Gaussian moments); LSI bound with the same allowance at every t; off-centre rate "
            f"within {RATE_TOLERANCE:g} of 2 (fit where KL > {RESOLVED_Z:g} SE, later two thirds); "
            f"centred rate within {2 * RATE_TOLERANCE:g} of the exact curve's slope over the same "
            "window, which must exceed 3 (faster than the LSI rate 2, approaching 4)"
        ),
        passed=bool(agree and bounded and rate_ok and faster),
        details={"off_centre": shifted, "centred": centred, "agree": agree, "below_lsi_bound": bounded,
                 "rate_ok": rate_ok, "centred_faster": faster, "n_particles": settings.n_particles},
        figures=(figure,),
    )


def _figure(shifted: dict, centred: dict, path: Path) -> str:
    figure, axes = new_figure(2, 1, width=4.8, height=4.6)
    axis = axes[0, 0]
    cases = ((shifted, "tab:red", "data off centre"), (centred, "tab:blue", "centred data"))
    for case, color, label in cases:
        rows = case["rows"]
        t = np.array([row["t"] for row in rows])
        axis.plot(t, [row["exact"] for row in rows], "-", color=color, linewidth=1.2,
                  label=f"{label}: exact")
        axis.errorbar(t, [row["measured"] for row in rows], yerr=[Z_AGREE * row["se"] for row in rows],
                      fmt="o", color=color, markersize=3, capsize=2, label=f"{label}: particles")
        axis.plot(t, [row["lsi_bound"] for row in rows], ":", color=color, linewidth=1.0,
                  label=f"{label}: LSI bound e^(-2t) KL(0)")
    axis.set_yscale("log")
    axis.set_xlabel("t")
    axis.set_ylabel("KL(p_t || N(0, I))")
    axis.set_title("forward OU forgets the data")
    # Legends go under the panels, where they cannot cover the curves.
    axis.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncols=2, frameon=False)
    axis = axes[0, 1]
    for case, color, label in ((shifted, "tab:red", "off centre"), (centred, "tab:blue", "centred")):
        rows = case["rows"]
        axis.plot([row["t"] for row in rows],
                  [(row["measured"] - row["exact"]) / row["se"] for row in rows], "o-", color=color,
                  markersize=3, label=label)
    axis.axhspan(-Z_AGREE, Z_AGREE, color="0.9", label="+- 4 SE")
    axis.set_xlabel("t")
    axis.set_ylabel("(particles - exact) / SE")
    axis.set_title(f"rates: {shifted['rate']:.3f} (pred. 2), {centred['rate']:.2f} (pred. 4)")
    axis.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncols=3, frameon=False)
    return save_figure(figure, path)
