r"""Check: averaged SGD in the NTK regime learns f* = T^r h at the rate T^(-2 r b / (2 r b + 1)).

Claim (Nitanda & Suzuki 2020, in the text). Let T_K f = int K_inf(., x) f(x) dP(x) have
eigenvalues mu_j = O(j^{-b}) and let f* = T_K^r h with h in L2(P), r in [1/2, 1]. Averaged SGD on
a wide two-layer network (NTK scaling, both layers trained, symmetric initialization so f_0 = 0),
one fresh sample (x_t, y_t = f*(x_t) + noise) per step, constant step alpha and regularization
lambda (theta - theta_0) with lambda = lambda_0 T^{-b / (2 r b + 1)}, reaches the excess risk
||f_bar_T - f*||^2_{L2(P)} = O(T^{-2 r b / (2 r b + 1)}).

Setting. Inputs x(t) = (cos t, sin t, 1) / sqrt(2), t uniform: K_inf (ReLU) is a function of
t - t', its eigenfunctions are the Fourier modes and its eigenvalues mu_k
(:func:`measureflow.nets.spectrum.circle_spectrum`) decay like k^{-2}; with two eigenfunctions
per frequency, mu_j ~ j^{-b} with the same b, measured by a least-squares fit of log mu_k on
log k over 8 <= k <= 64 (b = 2.01). Targets: f*(t) = sum_{k=1}^{64} mu_k^r c_k sqrt(2) cos(k t - p_k),
random phases p_k. For r = 1/2, c_k^2 = 1/k, the edge of L2 (sum c_k^2 diverges logarithmically
without the cut at 64), which makes the regularization bias lambda^{2r} sharp; for r = 1 every h
in L2 gives bias ~ lambda^2 ||h||^2 (ridge saturates at r = 1), and c_k^2 = 1/k^2 makes that limit
come quickly. Noise N(0, sigma^2). The step alpha = 1 = 1 / sup_x K(x, x).

Derivation of the verdict. The rate is an exponent for T -> infinity; at finite T the
bias-variance terms of averaged SGD are, in the eigenbasis (f*_j the coefficients of f*,
a_j = alpha (mu_j + lambda), g_j = (1 - (1 - a_j)^T) / (a_j T) the averaged population-gradient
factor),

    R(T) ~ sum_j f*_j^2 (lambda / (mu_j + lambda) + g_j mu_j / (mu_j + lambda))^2
           + (sigma^2 / T) sum_j (mu_j / (mu_j + lambda))^2 (1 - g_j)^2,

whose log-log slope over the measured range of T, computed from the exact spectrum, is the
``finite-T slope``; it tends to -2 r b / (2 r b + 1) as T grows but at these T the large low
eigenvalues (mu_1 = 0.2 is five times the k^{-2} law) bend it. The measured slope is the mean
over S seeds of each seed's least-squares slope of log excess risk on log T (common random
numbers: a seed's runs at the different T share its initialization and sample stream, the
seeds are independent), SE = sd / sqrt(S). Pass: |measured - predicted| < Z SE +
|finite-T slope - predicted| for both r (Z = 4, a two-sided false alarm 6e-5 for a Gaussian
mean; the second term is the computed distance to the asymptote, not a fit to the outcome); at
the full size also the r = 1 slope must be steeper than the r = 1/2 one by more than 2 SE of
the difference (the two rates are resolved; at quick size this is reported only, see SETTINGS).

Method. :func:`measureflow.nets.replicas.averaged_sgd_replicas` runs all (seed, T) pairs at once,
step for step the update of ``train(..., optimizer="averaged-sgd", batch_size=1)`` (tested to
agree); the excess risk is ||f_bar - f*||^2 by the trapezoidal rule on 1024 equally spaced
angles (exact for the trigonometric part, O(1024^-2) for the ReLU kinks). Quick size is an
honest small version: width 128 and T = 256 .. 4096; at larger T and small width the network's
finite-width kernel error flattens the curve (width 256 reaches slope -0.52 against a finite-T
slope of -0.62 over T = 4096 .. 32768 for r = 1/2), so the full size raises the width with T.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from measureflow._core import make_generator
from measureflow.checks._figures import format_list, new_figure, save_figure
from measureflow.checks.base import CheckResult
from measureflow.nets import TwoLayer, averaged_sgd_replicas, symmetrize
from measureflow.nets.spectrum import circle_inputs, circle_spectrum, eigenvalues_per_feature

__all__ = ["finite_horizon_risk", "run"]

NAME = "averaged-sgd"
OFFSET = 1.0
N_FREQUENCIES = 64
STEP_SIZE = 1.0
DECAY_FIT = (8, 64)  # frequencies over which b is fitted
N_GRID = 1024
Z = 4.0
Z_RESOLVED = 2.0


@dataclass(frozen=True)
class _Case:
    r: float
    coefficient_power: float  # c_k^2 = k^-power
    lambda_0: float
    noise: float


CASES = (_Case(r=0.5, coefficient_power=1.0, lambda_0=1.0, noise=0.2),
         _Case(r=1.0, coefficient_power=2.0, lambda_0=0.3, noise=0.05))


@dataclass(frozen=True)
class _Settings:
    width: int
    n_seeds: int
    horizons: tuple[int, ...]
    require_resolved: bool


# Quick does not require the two rates to be told apart: their predicted difference (0.13) is
# about 3 SE of the measured difference at 8 seeds, so "more than 2 SE" fails for about one seed
# in ten (seed 0 measures -0.068 +- 0.037). It is reported, and required at the full size.
SETTINGS = {
    "quick": _Settings(width=128, n_seeds=8, horizons=(256, 512, 1024, 2048, 4096), require_resolved=False),
    "full": _Settings(width=1024, n_seeds=24, horizons=(512, 1024, 2048, 4096, 8192, 16384),
                      require_resolved=True),
}


def finite_horizon_risk(mu: np.ndarray, coefficients: np.ndarray, noise: float, lam: float, alpha: float,
                        n_steps: int) -> float:
    """The bias-variance approximation R(T) of the module docstring, for eigenvalues ``mu`` and
    f*'s coefficients ``coefficients`` (both per eigenfunction, ``(J,)``)."""
    a = alpha * (mu + lam)
    g = -np.expm1(n_steps * np.log1p(-np.minimum(a, 1.0 - 1e-15))) / (a * n_steps)
    bias = np.sum(coefficients**2 * (lam / (mu + lam) + g * mu / (mu + lam)) ** 2)
    variance = noise**2 / n_steps * np.sum((mu / (mu + lam)) ** 2 * (1 - g) ** 2)
    return float(bias + variance)


def _slope(horizons: np.ndarray, values: np.ndarray) -> float:
    return float(np.polyfit(np.log(horizons), np.log(values), 1)[0])


def run(size: str, seed: int, device: str, out_dir: Path) -> CheckResult:
    settings = SETTINGS[size]
    generator = make_generator(seed, device)
    dtype = torch.float64
    mu = circle_spectrum(N_FREQUENCIES + 1, offset=OFFSET, device=device).cpu()
    k = torch.arange(N_FREQUENCIES + 1, dtype=dtype)
    fit = (k >= DECAY_FIT[0]) & (k <= DECAY_FIT[1])
    b = -_slope(k[fit].numpy(), mu[fit].numpy())
    horizons = np.array(settings.horizons)
    n_t, n_seeds = len(horizons), settings.n_seeds
    grid = 2 * math.pi * torch.arange(N_GRID, dtype=dtype, device=device) / N_GRID
    x_grid = circle_inputs(grid, OFFSET)
    k_dev = k.to(device)
    cases = []
    for case in CASES:
        exponent = b / (2 * case.r * b + 1)
        predicted = -2 * case.r * b / (2 * case.r * b + 1)
        lambdas = case.lambda_0 * horizons.astype(float) ** (-exponent)
        c = torch.zeros(N_FREQUENCIES + 1, dtype=dtype)
        c[1:] = k[1:] ** (-case.coefficient_power / 2)
        coefficients = mu**case.r * c  # on sqrt(2) cos(k t - p_k)
        phases = 2 * math.pi * torch.rand(N_FREQUENCIES + 1, generator=generator, dtype=dtype, device=device)
        weights = coefficients.to(device)

        def target(t: torch.Tensor, weights=weights, phases=phases) -> torch.Tensor:
            return (math.sqrt(2) * torch.cos(k_dev * t[..., None] - phases) * weights).sum(-1)

        # Finite-T slope of the bias-variance approximation, from the exact spectrum (sin and
        # cos of frequency k share mu_k; f* lies on one combination of the two).
        per_feature = eigenvalues_per_feature(mu).numpy()
        star = np.zeros_like(per_feature)
        star[0] = 0.0
        star[1::2] = coefficients[1:].numpy()
        approximation = [finite_horizon_risk(per_feature, star, case.noise, lam, STEP_SIZE, int(t))
                         for lam, t in zip(lambdas, horizons, strict=True)]
        finite_slope = _slope(horizons, np.array(approximation))

        # One network and one sample stream per seed, shared by its runs at every T.
        nets = [symmetrize(TwoLayer(x_grid.shape[1], settings.width, generator=generator, dtype=dtype,
                                    device=device)) for _ in range(n_seeds)]
        t_max = int(horizons.max())
        angles = 2 * math.pi * torch.rand(t_max, n_seeds, generator=generator, dtype=dtype, device=device)
        y = target(angles) + case.noise * torch.randn(t_max, n_seeds, generator=generator, dtype=dtype,
                                                      device=device)
        x = circle_inputs(angles.reshape(-1), OFFSET).reshape(t_max, n_seeds, -1)
        replicas = [(s, i) for s in range(n_seeds) for i in range(n_t)]
        columns = torch.tensor([s for s, _ in replicas], device=device)
        result = averaged_sgd_replicas(
            [nets[s] for s, _ in replicas], x[:, columns], y[:, columns], lr=STEP_SIZE,
            regularization=[float(lambdas[i]) for _, i in replicas],
            n_steps=[int(horizons[i]) for _, i in replicas])
        f_grid = target(grid)
        with torch.no_grad():
            risk = [float((model(x_grid) - f_grid).square().mean()) for model in result.averaged]
        risk = np.array(risk).reshape(n_seeds, n_t)
        slopes = np.array([_slope(horizons, risk[s]) for s in range(n_seeds)])
        measured = float(slopes.mean())
        se = float(slopes.std(ddof=1) / math.sqrt(n_seeds))
        allowance = Z * se + abs(finite_slope - predicted)
        cases.append({
            "r": case.r, "lambda_0": case.lambda_0, "noise": case.noise,
            "coefficient_power": case.coefficient_power, "lambdas": lambdas.tolist(),
            "predicted_slope": predicted, "finite_horizon_slope": finite_slope,
            "measured_slope": measured, "se": se, "allowance": allowance,
            "agrees": abs(measured - predicted) < allowance,
            "seed_slopes": slopes.tolist(), "mean_risk": risk.mean(0).tolist(),
            "approximate_risk": approximation, "target_norm2": float((f_grid**2).mean()),
        })
    difference = cases[1]["measured_slope"] - cases[0]["measured_slope"]
    difference_se = math.hypot(cases[0]["se"], cases[1]["se"])
    resolved = difference < -Z_RESOLVED * difference_se
    passed = all(case["agrees"] for case in cases) and (resolved or not settings.require_resolved)
    figure = _figure(cases, horizons, out_dir / f"{NAME}.png")
    return CheckResult(
        name=NAME,
        claim=(
            "Averaged SGD in the NTK regime (Nitanda & Suzuki 2020): for $f^* = T_K^r h$ on the circle "
            "$x = (\\cos t, \\sin t, 1) / \\sqrt{2}$, with $\\lambda = \\lambda_0 T^{-b/(2rb+1)}$ and a "
            "constant step, the excess risk falls like $T^{-2rb/(2rb+1)}$, $b$ the measured eigenvalue "
            f"decay (b = {b:.3f}). (r = 1/2 and 1; width {settings.width}, {n_seeds} seeds, "
            f"T = {list(settings.horizons)}, one fresh sample per step, alpha = {STEP_SIZE:g}.)"
        ),
        predicted=(
            f"slopes {format_list([c['predicted_slope'] for c in cases], 3)} for r = 1/2, 1 "
            f"(finite-T bias-variance slopes {format_list([c['finite_horizon_slope'] for c in cases], 3)})"
        ),
        measured=(
            f"slopes {format_list([c['measured_slope'] for c in cases], 3)} "
            f"+- {format_list([c['se'] for c in cases], 2)} (SE over seeds); r = 1 minus r = 1/2: "
            f"{difference:.3f} +- {difference_se:.3f}"
        ),
        tolerance=(
            f"|measured - predicted| < {Z:g} SE + |finite-T slope - predicted| = "
            f"{format_list([c['allowance'] for c in cases], 3)} for each r (the second term is the "
            "distance to the asymptote computed from the exact spectrum); and the r = 1 slope is "
            f"steeper than the r = 1/2 slope by more than {Z_RESOLVED:g} SE of the difference"
            + (" (required)." if settings.require_resolved else " (reported, not required at this size).")
        ),
        passed=bool(passed),
        details={
            "b": b, "offset": OFFSET, "step_size": STEP_SIZE, "width": settings.width,
            "n_seeds": n_seeds, "horizons": horizons.tolist(), "z": Z, "resolved": bool(resolved),
            "slope_difference": difference, "slope_difference_se": difference_se, "cases": cases,
        },
        figures=(figure,),
    )


def _figure(cases: list[dict], horizons: np.ndarray, path: Path) -> str:
    figure, axes = new_figure(2, 1, width=4.8, height=3.6)
    axis = axes[0, 0]
    for case, color in zip(cases, ("tab:blue", "tab:red"), strict=True):
        risk = np.array(case["mean_risk"])
        axis.loglog(horizons, risk, "o-", color=color, label=f"r = {case['r']:g} measured (seed mean)")
        anchor = risk[0] * (horizons / horizons[0]) ** case["predicted_slope"]
        axis.loglog(horizons, anchor, "--", color=color, linewidth=0.9,
                    label=f"T^({case['predicted_slope']:.2f})")
        approximation = np.array(case["approximate_risk"])
        axis.loglog(horizons, approximation, ":", color=color, linewidth=1.2, label="bias-variance approx.")
    axis.set_xlabel("T (samples = steps)")
    axis.set_ylabel("excess risk ||f_bar - f*||^2")
    axis.set_title("averaged SGD, lambda ~ T^(-b/(2rb+1))")
    axis.legend(fontsize=6)
    axis = axes[0, 1]
    for index, (case, color) in enumerate(zip(cases, ("tab:blue", "tab:red"), strict=True)):
        axis.errorbar([index], [case["measured_slope"]], yerr=[Z * case["se"]], fmt="o", color=color,
                      capsize=4, label=f"r = {case['r']:g} measured (+- {Z:g} SE)")
        axis.plot([index - 0.3, index + 0.3], [case["predicted_slope"]] * 2, "k-", linewidth=1.2)
        axis.plot([index - 0.3, index + 0.3], [case["finite_horizon_slope"]] * 2, "k:", linewidth=1.2)
    axis.set_xticks([0, 1], [f"r = {case['r']:g}" for case in cases])
    axis.set_xlim(-0.7, 1.7)
    axis.set_ylabel("log-log slope")
    axis.set_title("solid: -2rb/(2rb+1); dotted: finite T")
    axis.legend(fontsize=6)
    return save_figure(figure, path)
