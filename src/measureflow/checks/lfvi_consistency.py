r"""Check: likelihood-free variational inference recovers a posterior known in closed form, and its
classifier two-sample accuracy against that posterior falls toward 1/2 as the simulation budget grows.

Claim (Tran, Ranganath & Blei 2017; the joint-matching view of the notes, p(theta, y) = q(theta, y)).
A conditional generator theta = f_w(y, z) trained against a discriminator that estimates
log p(theta, y) / q(theta, y) minimizes E_{p(y)} KL(q_w(theta | y) || p(theta | y)) (its objective is
KL(q || p) of the joints with q(y) = p(y)); with a flexible enough generator and critic the minimum
is the posterior itself. The simulations are the only data, so the fit improves with the budget:
C2ST accuracy -> 1/2 (indistinguishable) and the moments -> the closed form.

Model. ``GaussianLinear`` with p = d = 2, A = [[1, 0.8], [0, 0.6]], prior N(0, I), noise sd 0.5:
the posterior N(mu, Sigma), Sigma = (A^T A / 0.25 + I)^-1, mu = Sigma A^T y / 0.25, is correlated
(rho = -0.66 here), so a generator that ignores the correlation is caught. The observation is one
simulation at theta = (0.5, -0.3).

Method. For each budget n (simulations), ``measureflow.inference.lfvi`` with the js (logistic)
critic, the same network sizes and the same number of training steps at every budget (the budget
is the only variable). Its ``n_draws`` posterior draws against as many exact posterior draws:

- C2ST (``metrics.c2st``, the MLP classifier, 5-fold) accuracy; under H0 (equal laws) the
  held-out accuracy of N = 2 n_draws points has sd 1/(2 sqrt N) (binomial), 0.011 at n_draws = 1000;
- the Gaussian KL(N(m_hat, S_hat) || N(mu, Sigma)) of the draws' moments (what a moment mismatch costs).

Verdict. (a) At the largest budget the C2ST accuracy is at most 1/2 + 3 sd_H0 + ``allowance``
(``allowance`` = 0.05 quick, 0.03 full: the approximation error a finite network and a finite
number of adversarial steps leave, set from runs at these settings, measured before fixing it:
quick seeds 0 and 1 gave 0.53 and 0.51 at the largest budget). (b) The accuracy falls toward 1/2: the
largest budget's excess accuracy (accuracy - 1/2) is below the smallest budget's by more than
3 sd of the difference (sqrt(2) sd_H0, an upper bound for the sd under H1 as well, since a
binomial's sd is largest at 1/2).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from measureflow._core import make_generator
from measureflow.checks._figures import new_figure, save_figure
from measureflow.checks.base import CheckResult
from measureflow.inference import GaussianLinear
from measureflow.inference.generators import lfvi
from measureflow.metrics import c2st, gaussian_kl

__all__ = ["run"]

NAME = "lfvi-consistency"
MATRIX = ((1.0, 0.8), (0.0, 0.6))
TRUE_THETA = (0.5, -0.3)
Z = 3.0


@dataclass(frozen=True)
class _Settings:
    budgets: tuple[int, ...]
    n_steps: int
    hidden: int
    n_draws: int
    allowance: float


SETTINGS = {
    "quick": _Settings(budgets=(100, 1_000, 5_000), n_steps=600, hidden=64, n_draws=1_000, allowance=0.05),
    "full": _Settings(budgets=(100, 1_000, 5_000, 25_000), n_steps=4_000, hidden=128, n_draws=2_000,
                      allowance=0.03),
}


def run(size: str, seed: int, device: str, out_dir: Path) -> CheckResult:
    settings = SETTINGS[size]
    generator = make_generator(seed)
    simulator = GaussianLinear(2, matrix=torch.tensor(MATRIX, dtype=torch.float64))
    y_obs = simulator.simulate(torch.tensor([TRUE_THETA], dtype=torch.float64), generator)[0]
    mean, covariance = simulator.posterior(y_obs)
    exact = torch.distributions.MultivariateNormal(mean, covariance)
    sd_null = 0.5 / math.sqrt(2 * settings.n_draws)
    rows = []
    draws = {}
    for budget in settings.budgets:
        result = lfvi(simulator, y_obs, budget, n_samples=settings.n_draws, n_steps=settings.n_steps,
                      hidden=settings.hidden, generator=generator, device=device)
        theta = result.theta
        reference = exact.sample((settings.n_draws,))
        accuracy = c2st(theta, reference, classifier="mlp", generator=generator).accuracy
        moment_kl = float(gaussian_kl(theta.mean(0), torch.cov(theta.T), mean, covariance))
        rows.append({"budget": budget, "c2st": accuracy, "gaussian_kl": moment_kl,
                     "mean": theta.mean(0).tolist(), "sd": theta.std(0).tolist(),
                     "correlation": float(torch.corrcoef(theta.T)[0, 1]), "wall_time_s": result.wall_time})
        draws[budget] = theta
    first, last = rows[0], rows[-1]
    bound = 0.5 + Z * sd_null + settings.allowance
    close = last["c2st"] <= bound
    drop = (first["c2st"] - last["c2st"]) / (math.sqrt(2) * sd_null)
    falls = drop > Z
    exact_sd = covariance.diagonal().sqrt()
    exact_rho = float(covariance[0, 1] / (exact_sd[0] * exact_sd[1]))
    figure = _figure(rows, draws, exact.sample((settings.n_draws,)), bound, out_dir / f"{NAME}.png")
    table = ", ".join(f"{row['budget']:,}: {row['c2st']:.3f}" for row in rows)
    return CheckResult(
        name=NAME,
        claim=(
            "Likelihood-free variational inference (Tran et al. 2017: a conditional generator "
            "$\\theta = f_w(y, z)$ against a discriminator estimating $\\log p(\\theta, y) / q(\\theta, y)$) "
            "recovers the closed-form posterior of a Gaussian linear model, and its C2ST accuracy "
            "against the exact posterior falls toward $1/2$ as the simulation budget grows "
            f"(budgets {', '.join(f'{b:,}' for b in settings.budgets)}, {settings.n_steps:,} steps each)."
        ),
        predicted=(f"C2ST -> 1/2; at the largest budget <= {bound:.3f}; the excess over 1/2 falls by > "
                   f"{Z:g} sd from the smallest to the largest budget; posterior sd "
                   f"{', '.join(f'{v:.3f}' for v in exact_sd)}, correlation {exact_rho:.3f}"),
        measured=(f"C2ST {table}; fall {drop:.1f} sd; largest budget: sd "
                  f"{', '.join(f'{v:.3f}' for v in last['sd'])}, correlation {last['correlation']:.3f}, "
                  f"moment KL {last['gaussian_kl']:.4f}"),
        tolerance=(f"1/2 + {Z:g} x {sd_null:.4f} (binomial sd of the held-out accuracy under H0) + "
                   f"{settings.allowance:g} (network/optimization allowance, module docstring); fall > "
                   f"{Z:g} x sqrt(2) x {sd_null:.4f}"),
        passed=bool(close and falls),
        details={"rows": rows, "bound": bound, "sd_null": sd_null, "fall_sd": drop,
                 "posterior_mean": mean.tolist(), "posterior_covariance": covariance.tolist()},
        figures=(figure,),
    )


def _figure(rows: list[dict], draws: dict[int, torch.Tensor], exact: torch.Tensor, bound: float,
            path: Path) -> str:
    figure, axes = new_figure(2, 1, width=4.6, height=3.8)
    axis = axes[0, 0]
    budgets = np.array([row["budget"] for row in rows], dtype=float)
    axis.plot(budgets, [row["c2st"] for row in rows], "o-", color="tab:blue", label="LFVI vs exact")
    axis.axhline(0.5, color="black", lw=0.8, label="1/2 (indistinguishable)")
    axis.axhline(bound, color="tab:red", ls=":", lw=1.0, label="bound at the largest budget")
    axis.set_xscale("log")
    axis.set_xlabel("simulation budget")
    axis.set_ylabel("C2ST accuracy")
    axis.set_title("C2ST against the closed-form posterior")
    axis.legend(fontsize=7)
    axis = axes[0, 1]
    shown = exact[:1000].numpy()
    axis.scatter(shown[:, 0], shown[:, 1], s=2, alpha=0.4, color="black", label="exact posterior")
    for (budget, theta), color in zip(draws.items(), ("tab:orange", "tab:green", "tab:blue", "tab:purple"),
                                      strict=False):
        pts = theta[:1000].numpy()
        axis.scatter(pts[:, 0], pts[:, 1], s=2, alpha=0.3, color=color, label=f"LFVI, budget {budget:,}")
    axis.set_xlabel("theta_1")
    axis.set_ylabel("theta_2")
    axis.set_title("posterior draws")
    axis.legend(fontsize=7, markerscale=4)
    return save_figure(figure, path)
