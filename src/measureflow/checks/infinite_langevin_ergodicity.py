r"""Check: under strict dissipativity the semi-implicit Langevin chain in a Hilbert space forgets its
start geometrically, at least at the text's rate Lambda*_eta = (lam / mu_0 - M) / (1 + eta lam / mu_0).

Claim (seed 001, 補題 "離散時間ダイナミクスのGeometric ergodicity", case (i) Strict dissipative). If
grad L is M-Lipschitz and lam > M mu_0 (mu_0 the largest eigenvalue), the scheme
X' = S_eta (X - eta grad L(X) + sqrt(2 eta / beta) xi) has a unique stationary law mu_eta and
|E phi(X_n) - E phi(X^{mu_eta})| <= C (1 + |x_0|) exp(-Lambda*_eta n eta); for phi = L this is the
convergence of E L(X_n).

Derivation (why this Lambda*). Run two copies with the same noise (synchronous coupling). Their
difference obeys X' - Y' = S_eta (X - Y - eta (grad L(X) - grad L(Y))), and
||S_eta|| = 1 / (1 + eta lam / mu_0),
|grad L(X) - grad L(Y)| <= M |X - Y|, so path by path and step by step
|X_{n+1} - Y_{n+1}| <= (1 + eta M) / (1 + eta lam / mu_0) |X_n - Y_n| = (1 - eta Lambda*_eta) |X_n - Y_n|,
i.e. a contraction at rate -log(1 - eta Lambda*_eta) / eta >= Lambda*_eta per unit time. With Y_0 ~ mu_eta,
|E L(X_n) - E L(X^{mu_eta})| <= E|L(X_n) - L(Y_n)| <= G E|X_n - Y_n| (G a bound on |grad L|).

Set-up. The non-convex :class:`InfiniteWidthNetwork` f_W(x) = sum_j a_j tanh(w_j . x),
a_j = +-(j + 1)^-2, J neurons, inputs on the unit circle, squared loss with c = 1 / n, labels
|y_i| <= 0.8; mu = (j + 1)^-2 for both coordinates of w_j (mu_0 = 1). Its Hessian
c sum_i [grad f_i grad f_i^T + (f_i - y_i) hess f_i] has norm at most
M = c sum_i |x_i|^2 [sum_j a_j^2 + max|tanh''| max_j |a_j| (sum_j |a_j| + |y_i|)],
max|tanh''| = 4 / (3 sqrt 3)
(|tanh'| <= 1, |f| <= sum |a_j|): a valid Lipschitz constant. lam = 2 M mu_0, so lam > M mu_0.

Method. C chains run BURN_IN steps from 0 to Y_0 (approximately mu_eta); X_0 = Y_0 + R v_c with
independent random unit directions v_c (R = 10, far from the stationary cloud). Both copies run N
steps of ``"infinite-langevin"`` with the same seed, hence the same noise. Measured: the per-step
ratios |X_{n+1} - Y_{n+1}| / |X_n - Y_n| of every chain, and Delta_n = mean_c |L(X_n) - L(Y_n)| (the
coupling estimate of the distance of E L(X_n) to its limit; the coupling removes the Monte Carlo
noise of comparing two independent averages). The rate is the least-squares slope of log Delta_n
against t = n eta over the steps where 1e-12 < Delta_n < 1e-2 Delta_0 (past the first transient,
above rounding; the copies merge to the last bit once |X_n - Y_n| falls below rounding).

Verdict. (1) every per-step ratio (while |X_n - Y_n| > 1e-9) is at most 1 - eta Lambda*_eta, up to a
relative 1e-6 for rounding; (2) the fitted rate of Delta_n is at least Lambda*_eta. Both are
deterministic consequences of the derivation (no Monte Carlo tolerance is needed: the bound holds
path by path). The measured rate is also compared with the prior's own rate log(1 + eta lam / mu_0) / eta,
the contraction of S_eta alone (what a convex loss would give at least).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from measureflow._core import make_generator
from measureflow.checks._figures import new_figure, save_figure, to_numpy
from measureflow.checks.base import CheckResult
from measureflow.samplers import sample
from measureflow.targets.function_space import InfiniteWidthNetwork

__all__ = ["lipschitz_bound", "run"]

NAME = "infinite-langevin-ergodicity"
N_POINTS = 10
GAMMA = 2.0
DECAY = 2.0
STEP_SIZE = 0.05
BETA = 5.0
DISSIPATIVITY = 2.0  # lam = DISSIPATIVITY * M * mu_0
OFFSET = 10.0  # R
BURN_IN = 100
MAX_TANH_SECOND = 4 / (3 * math.sqrt(3))
RATIO_FLOOR = 1e-9  # |X_n - Y_n| above which the per-step ratio is tested
FIT_FLOOR = 1e-12


@dataclass(frozen=True)
class _Settings:
    n_neurons: int
    n_chains: int
    n_steps: int


SETTINGS = {"quick": _Settings(n_neurons=50, n_chains=50, n_steps=120),
            "full": _Settings(n_neurons=400, n_chains=400, n_steps=200)}


def lipschitz_bound(network: InfiniteWidthNetwork) -> float:
    """M >= ||hess L|| for the squared-loss tanh network (module docstring)."""
    outer = network.outer.abs()
    per_point = network.x.square().sum(1) * (outer.square().sum() + MAX_TANH_SECOND * outer.max()
                                             * (outer.sum() + network.y.abs()))
    return float(network.scale * per_point.sum())


def run(size: str, seed: int, device: str, out_dir: Path) -> CheckResult:
    settings = SETTINGS[size]
    generator = make_generator(seed, device)
    f64 = dict(dtype=torch.float64, device=device)
    angles = 2 * math.pi * torch.rand(N_POINTS, generator=generator, **f64)
    inputs = torch.stack([angles.cos(), angles.sin()], 1)
    network = InfiniteWidthNetwork(inputs, 0.8 * torch.sin(3 * angles), settings.n_neurons, gamma=GAMMA)
    mu = network.eigenvalues(DECAY)
    mu_0 = float(mu.max())
    lipschitz = lipschitz_bound(network)
    lam = DISSIPATIVITY * lipschitz * mu_0
    eta = STEP_SIZE
    bound_rate = (lam / mu_0 - lipschitz) / (1 + eta * lam / mu_0)
    bound_ratio = 1 - eta * bound_rate
    prior_rate = math.log(1 + eta * lam / mu_0) / eta
    options = dict(step_size=eta, beta=BETA, lam=lam, mu=mu, device=device, dtype=torch.float64,
                   diagnostics=False, progress=False)
    c = settings.n_chains
    burn = sample(network, "infinite-langevin", n_chains=c, n_steps=1, burn_in=BURN_IN,
                  init=torch.zeros(c, network.dim, **f64), generator=generator, record_energy=False,
                  **options)
    stationary_start = burn.final_state.position
    directions = torch.randn(c, network.dim, generator=generator, **f64)
    far_start = stationary_start + OFFSET * directions / directions.norm(dim=1, keepdim=True)
    noise_seed = int(torch.randint(0, 2**31 - 1, (1,), generator=generator, device=device))
    runs = [sample(network, "infinite-langevin", n_chains=c, n_steps=settings.n_steps, burn_in=0, init=start,
                   seed=noise_seed, **options) for start in (stationary_start, far_start)]
    near, far = runs
    distance = torch.cat([(far_start - stationary_start).norm(dim=1)[None],
                          (far.samples - near.samples).norm(dim=2)])  # (N + 1, C)
    initial_gap = (network.energy(far_start) - network.energy(stationary_start)).abs().mean()
    gaps = torch.cat([initial_gap[None], (far.energy_trace - near.energy_trace).abs().mean(1)])  # (N + 1,)
    signed = torch.cat([(network.energy(far_start) - network.energy(stationary_start)).mean()[None],
                        (far.energy_trace - near.energy_trace).mean(1)])
    tested = distance[:-1] > RATIO_FLOOR
    ratios = distance[1:][tested] / distance[:-1][tested]
    max_ratio = float(ratios.max())
    times = eta * np.arange(settings.n_steps + 1)
    gaps_np = to_numpy(gaps)
    window = (gaps_np > FIT_FLOOR) & (gaps_np < 1e-2 * gaps_np[0])
    fitted_rate = (float(-np.polyfit(times[window], np.log(gaps_np[window]), 1)[0])
                   if window.sum() >= 3 else 0.0)
    mean_distance = to_numpy(distance.mean(1))
    distance_window = (mean_distance > RATIO_FLOOR) & (mean_distance < 1e-2 * mean_distance[0])
    distance_rate = (float(-np.polyfit(times[distance_window], np.log(mean_distance[distance_window]), 1)[0])
                     if distance_window.sum() >= 3 else 0.0)
    ratio_ok = max_ratio <= bound_ratio * (1 + 1e-6)
    rate_ok = window.sum() >= 3 and fitted_rate >= bound_rate
    figure = _figure(times, gaps_np, to_numpy(signed), mean_distance, bound_rate, prior_rate, window,
                     out_dir / f"{NAME}.png")
    return CheckResult(
        name=NAME,
        claim=(
            "Geometric ergodicity of the semi-implicit scheme under strict dissipativity "
            "$\\lambda > M \\mu_0$: synchronously coupled chains contract by $1 - \\eta \\Lambda^*_\\eta$ "
            "per step, so $E\\, L(X_n)$ converges at rate "
            "$\\ge \\Lambda^*_\\eta = (\\lambda / \\mu_0 - M) / (1 + \\eta \\lambda / \\mu_0)$ per unit "
            "time. "
            f"(Non-convex tanh InfiniteWidthNetwork, {settings.n_neurons} neurons, gamma = {GAMMA:g}, "
            f"{N_POINTS} points; M = {lipschitz:.3f} (Hessian bound), lam = {lam:.3f}, mu_0 = {mu_0:g}, "
            f"eta = {eta:g}, beta = {BETA:g}; {c} coupled pairs, start {OFFSET:g} away, "
            f"{settings.n_steps} steps.)"
        ),
        predicted=(
            f"rate >= Lambda*_eta = {bound_rate:.3f} per unit time; per-step coupling ratio <= "
            f"{bound_ratio:.4f} (prior-only rate log(1 + eta lam / mu_0) / eta = {prior_rate:.3f})"
        ),
        measured=(
            f"fitted rate of E|L(X_n) - L(Y_n)|: {fitted_rate:.3f} (of E|X_n - Y_n|: {distance_rate:.3f}); "
            f"largest per-step ratio {max_ratio:.4f} over {int(tested.sum())} chain-steps"
        ),
        tolerance=(
            "deterministic bounds (path by path): every per-step ratio <= 1 - eta Lambda*_eta "
            f"(x (1 + 1e-6) for rounding, tested while |X_n - Y_n| > {RATIO_FLOOR:g}); "
            "the least-squares rate of "
            f"mean_c |L(X_n) - L(Y_n)| over {FIT_FLOOR:g} < Delta_n < 1e-2 Delta_0 must be >= Lambda*_eta."
        ),
        passed=bool(ratio_ok and rate_ok),
        details={"lipschitz_bound": lipschitz, "lam": lam, "mu_0": mu_0, "step_size": eta,
                 "lambda_star": bound_rate, "bound_ratio": bound_ratio, "prior_rate": prior_rate,
                 "fitted_rate_loss": fitted_rate, "fitted_rate_distance": distance_rate,
                 "max_ratio": max_ratio, "fit_steps": int(window.sum()), "ratio_ok": ratio_ok,
                 "rate_ok": bool(rate_ok), "loss_gap": gaps_np.tolist(),
                 "mean_distance": mean_distance.tolist()},
        figures=(figure,),
    )


def _figure(times, gaps, signed, distance, bound_rate, prior_rate, window, path: Path) -> str:
    figure, axes = new_figure(2, 1, width=4.8, height=3.8)
    left, right = axes[0, 0], axes[0, 1]
    positive = gaps > 0
    left.semilogy(times[positive], gaps[positive], "o-", markersize=2, color="tab:red",
                  label="E|L(X_n) - L(Y_n)| (coupled)")
    left.semilogy(times[positive], np.abs(signed[positive]), "-", color="tab:orange", linewidth=0.8,
                  label="|E L(X_n) - E L(Y_n)|")
    fitted = times[window]
    if fitted.size:
        anchor = gaps[window][0]
        left.semilogy(fitted, anchor * np.exp(-bound_rate * (fitted - fitted[0])), "k--",
                      label=f"rate Lambda* = {bound_rate:.2f}")
        left.semilogy(fitted, anchor * np.exp(-prior_rate * (fitted - fitted[0])), "k:",
                      label=f"prior rate {prior_rate:.2f}")
    left.set_xlabel("time t = n eta")
    left.set_ylabel("loss gap")
    left.set_title("E L(X_n) against its limit")
    left.legend(fontsize=7)
    right.semilogy(times, np.maximum(distance, 1e-300), "-", color="tab:blue", label="mean_c |X_n - Y_n|")
    right.semilogy(times, distance[0] * np.exp(-bound_rate * times), "k--", label="Lambda* bound")
    right.set_ylim(max(distance[distance > 0].min(), 1e-18), distance[0] * 2)
    right.set_xlabel("time t = n eta")
    right.set_ylabel("distance of the coupled chains")
    right.set_title("synchronous coupling")
    right.legend(fontsize=7)
    return save_figure(figure, path)
