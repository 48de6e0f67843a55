r"""Check: Kantorovich-Rubinstein duality, W1 = sup over 1-Lipschitz f of E_mu f - E_nu f.

Claim. For two probability measures mu, nu on R^d with finite first moments,

    W1(mu, nu) = min_{pi in Pi(mu, nu)} E_pi |X - Y| = sup_{Lip(f) <= 1} E_mu f - E_nu f

(Kantorovich-Rubinstein; Villani 2009, thm. 5.10 and remark 6.5): the transport cost of the best
coupling equals the largest mean difference a 1-Lipschitz "critic" can produce. This is the
identity behind the Wasserstein GAN (Arjovsky et al. 2017), whose critic is a network kept
(approximately) 1-Lipschitz, here by the gradient penalty of Gulrajani et al. (2017).

Derivation. Weak duality is one line: for any coupling pi and any 1-Lipschitz f,
E_mu f - E_nu f = E_pi [f(X) - f(Y)] <= E_pi |X - Y|, so every 1-Lipschitz critic gives a lower
bound on W1. Strong duality (no gap) holds in general; for the two empirical measures
mu_n = (1/n) sum delta_{x_i}, nu_m = (1/m) sum delta_{y_j} it is LP duality for the transport
problem min <P, M> over P >= 0, P 1 = a, P^T 1 = b, M_ij = |x_i - y_j|, whose dual is
max a.u + b.v subject to u_i + v_j <= M_ij. A dual solution (u, v) gives the 1-Lipschitz
function f(z) = min_j (|z - y_j| - v_j) (an infimum of 1-Lipschitz functions) with f(x_i) >= u_i
and f(y_j) <= -v_j, so E f(x) - E f(y) >= a.u + b.v = W1: the sup is attained. Lipschitz-ness
is only needed on the support S = {x_i} U {y_j}: a function that is L-Lipschitz on S becomes,
divided by L, 1-Lipschitz on S and extends to a 1-Lipschitz function on R^d with the same
values on S (McShane 1934), which has the same mean difference. So for any network f,

    D(f) / L_S(f),   L_S(f) = max_{s != s' in S} |f(s) - f(s')| / |s - s'|,

is the value of a genuinely 1-Lipschitz critic and must lie below W1 (weak duality), and it can
come arbitrarily close to W1 (strong duality).

Method. mu: a mixture of 8 Gaussians (sd 0.2) on the circle of radius 2; nu: N((0.5, 0), 0.6^2 I),
n points each, float64. The means nearly agree, so the best linear critic f(z) = w.z, worth
|mean x - mean y| (0.4-0.6 against W1 ~ 1.3), is far from optimal: the mass must move radially and
the critic has to find the nonlinear Kantorovich potential. Primal: W1 of the empirical measures
by POT's network simplex (``measureflow.metrics.wasserstein``). (b) Exact dual:
``measureflow.metrics.kantorovich_potentials`` returns potentials (u, v); we report the relative duality gap
|a.u + b.v - W1| / W1 and the largest violation of u_i + v_j <= M_ij. (a) Network dual: a
2-64-64-1 ReLU MLP (float64, weights drawn from the check's generator) trained full-batch with
Adam (step 5e-3, cosine decay; ``measureflow.generative.gan.critic.fit_critic``) to maximize

    mean f(x) - mean f(y) - lambda mean max(0, |grad f(x_hat)| - 1)^2,    lambda = 100,

x_hat = t s_i + (1 - t) s_j with (s_i, s_j) random pairs of the support and t uniform, drawn
afresh every step. This is the gradient penalty of Gulrajani et al. (2017) in its one-sided
form (their sec. 4 mentions it; Petzka et al. 2018, "WGAN-LP"), on interpolates between all
support pairs rather than x-y pairs only: we want the constrained sup itself, and the one-sided
penalty only punishes violations of |grad f| <= 1 (a penalty method for that constraint, exact
as lambda -> oo), whereas the two-sided one also pushes |grad f| up to 1 where the optimal
potential is flatter; and L_S involves all pairs, not only x-y ones. Measured at quick size,
seeds 0-1: the standard two-sided lambda = 10 penalty on x-y interpolates leaves a certified gap
of ~4% (ReLU) to ~9% (softplus), this variant ~0.5-1%. ReLU networks are piecewise linear like
the optimal potential (Gulrajani et al. observe the same), and reached the gap ~5x faster than
softplus. After training we report the dual value D, the largest gradient norm L_grad over the
support and 2000 random interpolates (the "certified-ish" value D / max(L_grad, 1), not a
certificate: the max over finitely many points can miss a steeper spot), the exact Lipschitz
constant L_S on the support (all pairs) and the certified value D_cert = D / L_S.

Verdict and tolerances.
- LP duality: relative gap < 1e-9 and feasibility violation < 1e-9 W1. The network simplex
  works on float64 costs of order 1; its potentials solve a triangular system along a spanning
  tree, so their rounding error is ~ depth x 1e-16 (measured 1e-15 for the gap, 3e-13 for the
  violation); 1e-9 leaves a wide margin for that and still fails on any solver or bookkeeping
  error (a dual that is off by one pivot changes the value by ~1/n ~ 1e-3).
- Weak duality (a falsifiable inequality): D_cert <= W1 (1 + 1e-9). The only slack is the LP
  solver's rounding (above) and float64 evaluation of the network (~1e-15 relative).
- Strong duality reached by the network: (W1 - D_cert) / W1 < 3%. The penalty is soft, so the
  trained critic is slightly steeper than 1 somewhere (L_S ~ 1.01-1.02) and the rescaling costs
  about that much; with this budget the measured gap was 0.50-1.09% over seeds 0-4 at quick size
  (0.89, 0.50, 1.09, 1.01, 0.76%). 3% is ~2.7x the largest measured gap (the spread between seeds
  is a factor ~2) and far below the 55-70% gap of the best linear critic, so the check still
  fails when the critic does not find the nonlinear potential (or when W1 itself is wrong, by
  either inequality).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from threadpoolctl import threadpool_limits
from torch import Tensor, nn

from measureflow._core import make_generator
from measureflow.checks._figures import new_figure, save_figure, to_numpy
from measureflow.checks.base import CheckResult
from measureflow.generative.gan.critic import fit_critic
from measureflow.metrics import kantorovich_potentials, wasserstein

__all__ = ["run"]

NAME = "kantorovich-duality"
N_MODES = 8
RING_RADIUS = 2.0
MODE_STD = 0.2
NU_MEAN = (0.5, 0.0)
NU_STD = 0.6
HIDDEN = 64
PENALTY = 100.0
LEARNING_RATE = 5e-3
LP_TOLERANCE = 1e-9
NETWORK_TOLERANCE = 0.03
# Points of the support where the network's gradient norm is evaluated for L_grad (besides x, y).
N_GRADIENT_PROBES = 2000


@dataclass(frozen=True)
class _Settings:
    n: int
    n_steps: int
    record_every: int


SETTINGS = {
    "quick": _Settings(n=400, n_steps=1000, record_every=25),
    "full": _Settings(n=1000, n_steps=3000, record_every=50),
}


def _sample_mu(n: int, generator: torch.Generator, device: str) -> Tensor:
    """n points of the 8-Gaussian ring: a uniform mode k, then N(R (cos, sin)(2 pi k / 8), s^2 I)."""
    options = {"dtype": torch.float64, "device": device}
    mode = torch.randint(0, N_MODES, (n,), generator=generator, device=device)
    angle = 2 * math.pi * mode.to(torch.float64) / N_MODES
    centres = RING_RADIUS * torch.stack([angle.cos(), angle.sin()], dim=1)
    return centres + MODE_STD * torch.randn(n, 2, generator=generator, **options)


def _sample_nu(n: int, generator: torch.Generator, device: str) -> Tensor:
    options = {"dtype": torch.float64, "device": device}
    return torch.tensor(NU_MEAN, **options) + NU_STD * torch.randn(n, 2, generator=generator, **options)


def _make_critic(generator: torch.Generator, device: str) -> nn.Module:
    """A 2-H-H-1 ReLU MLP whose weights come from ``generator`` (the global RNG is untouched).

    ``skip_init`` builds the layers without their default initialization (which would draw from
    the global generator); we then apply torch's default Linear initialization with ``generator``.
    """
    layers = []
    for fan_in, fan_out in ((2, HIDDEN), (HIDDEN, HIDDEN), (HIDDEN, 1)):
        layer = torch.nn.utils.skip_init(nn.Linear, fan_in, fan_out, dtype=torch.float64, device=device)
        nn.init.kaiming_uniform_(layer.weight, a=math.sqrt(5), generator=generator)
        bound = 1 / math.sqrt(fan_in)
        with torch.no_grad():
            layer.bias.uniform_(-bound, bound, generator=generator)
        layers.append(layer)
    return nn.Sequential(layers[0], nn.ReLU(), layers[1], nn.ReLU(), layers[2])


def _interpolates(support: Tensor, count: int, generator: torch.Generator) -> Tensor:
    """``count`` points t s_i + (1 - t) s_j for uniform random pairs of the support and uniform t."""
    device = support.device
    i = torch.randint(0, support.shape[0], (count,), generator=generator, device=device)
    j = torch.randint(0, support.shape[0], (count,), generator=generator, device=device)
    t = torch.rand(count, 1, generator=generator, dtype=support.dtype, device=device)
    return t * support[i] + (1 - t) * support[j]


def _gradient_norms(critic: nn.Module, points: Tensor, create_graph: bool) -> Tensor:
    points = points.detach().requires_grad_(True)
    values = critic(points).sum()
    (gradient,) = torch.autograd.grad(values, points, create_graph=create_graph)
    return gradient.norm(dim=1)


def _support_lipschitz(values: Tensor, points: Tensor) -> float:
    """max_{s != s'} |f(s) - f(s')| / |s - s'| over all pairs of the finite set ``points``."""
    distance = torch.cdist(points, points, compute_mode="donot_use_mm_for_euclid_dist")
    difference = (values[:, None] - values[None, :]).abs()
    off_diagonal = distance > 0
    return float((difference[off_diagonal] / distance[off_diagonal]).max())


def _lp_dual(x: Tensor, y: Tensor) -> dict:
    """The exact primal cost and dual potentials for W1 of the two uniform empirical measures."""
    potentials = kantorovich_potentials(x, y, p=1)
    return {
        "primal": float(potentials.primal),
        "dual": float(potentials.dual),
        "violation": float(potentials.max_violation),
        "v": to_numpy(potentials.v),
    }


def _negative_dual(real_values: Tensor, fake_values: Tensor) -> Tensor:
    """-(mean f(x) - mean f(y)): the critic loss whose minimum is -W1 over 1-Lipschitz f."""
    return fake_values.mean() - real_values.mean()


def _one_sided_penalty(critic: nn.Module, real: Tensor, fake: Tensor, generator: torch.Generator) -> Tensor:
    """lambda mean max(0, |grad f(x_hat)| - 1)^2 over 2n interpolates of random support pairs."""
    support = torch.cat([real, fake])
    probes = _interpolates(support, real.shape[0] + fake.shape[0], generator)
    excess = (_gradient_norms(critic, probes, create_graph=True) - 1).clamp_min(0)
    return PENALTY * excess.square().mean()


def _record(history: list[dict], step: int, critic: nn.Module, support: Tensor, n: int) -> None:
    """Append the dual value D and the certified D / L_S of ``critic`` after ``step`` steps."""
    with torch.no_grad():
        values = critic(support)[:, 0]
    lipschitz = _support_lipschitz(values, support)
    value = float(values[:n].mean() - values[n:].mean())
    history.append({"step": step, "dual": value, "lipschitz_support": lipschitz,
                    "certified": value / lipschitz})


def _train_critic(x: Tensor, y: Tensor, support: Tensor, settings: _Settings,
                  generator: torch.Generator) -> tuple[nn.Module, list[dict]]:
    """Adam on -(mean f(x) - mean f(y)) + lambda mean max(0, |grad f(x_hat)| - 1)^2, full batch,
    cosine decay of the learning rate to 0; D and D / L_S recorded every ``record_every`` steps."""
    n = x.shape[0]
    critic = _make_critic(generator, str(x.device))
    history: list[dict] = []

    def record(step: int, trained: nn.Module) -> None:
        if step % settings.record_every == 0 or step == settings.n_steps:
            _record(history, step, trained, support, n)

    record(0, critic)
    fit_critic(critic, x, y, loss=_negative_dual, n_steps=settings.n_steps, generator=generator,
               learning_rate=LEARNING_RATE, final_learning_rate=0.0, penalty=_one_sided_penalty,
               after_step=record)
    return critic, history


def run(size: str, seed: int, device: str, out_dir: Path) -> CheckResult:
    settings = SETTINGS[size]
    generator = make_generator(seed, device)
    x = _sample_mu(settings.n, generator, device)
    y = _sample_nu(settings.n, generator, device)
    w1 = float(wasserstein(x, y, p=1))
    lp = _lp_dual(x, y)
    lp_gap = abs(lp["dual"] - w1) / w1
    lp_primal_gap = abs(lp["primal"] - w1) / w1
    lp_violation = max(lp["violation"], 0.0) / w1
    linear_bound = float((x.mean(0) - y.mean(0)).norm())

    support = torch.cat([x, y])
    # Single-threaded intra-op and BLAS pools while training: the tensors are small (~10^5
    # elements), so thread start-up dominates; measured 5 ms per step with one thread against
    # 400 ms with two on the loaded 2-core machines. Both pools are restored on exit.
    with threadpool_limits(limits=1):
        critic, history = _train_critic(x, y, support, settings, generator)
        with torch.no_grad():
            values = critic(support)[:, 0]
        dual = float(values[: settings.n].mean() - values[settings.n :].mean())
        probes = torch.cat([support, _interpolates(support, N_GRADIENT_PROBES, generator)])
        lipschitz_grad = float(_gradient_norms(critic, probes, create_graph=False).max())
        lipschitz_support = _support_lipschitz(values, support)
    certified = dual / lipschitz_support
    certified_grad = dual / max(lipschitz_grad, 1.0)
    gap = (w1 - certified) / w1

    lp_ok = lp_gap < LP_TOLERANCE and lp_primal_gap < LP_TOLERANCE and lp_violation < LP_TOLERANCE
    weak_ok = certified <= w1 * (1 + LP_TOLERANCE)
    strong_ok = gap < NETWORK_TOLERANCE
    figure = _figure(x, y, critic, lp, history, w1, linear_bound, out_dir / f"{NAME}.png")
    return CheckResult(
        name=NAME,
        claim=(
            "Kantorovich-Rubinstein duality: "
            "$W_1(\\mu, \\nu) = \\sup_{\\|f\\|_{\\mathrm{Lip}} \\le 1} E_\\mu f - E_\\nu f$. For two "
            "empirical measures in 2-D (8-Gaussian ring vs a Gaussian, "
            f"n = {settings.n} each) the exact LP dual equals POT's primal W1, and a gradient-"
            "penalty critic (one-sided WGAN-GP, ReLU MLP), rescaled to be exactly 1-Lipschitz "
            "on the support, comes within "
            f"{NETWORK_TOLERANCE:.0%} of W1 from below and never exceeds it (weak duality)."
        ),
        predicted=(
            f"W1 = {w1:.6f} (primal, POT); LP dual a.u + b.v = W1 exactly; network: "
            f"D / L_S <= W1 and >= {(1 - NETWORK_TOLERANCE) * w1:.4f}"
        ),
        measured=(
            f"LP dual {lp['dual']:.12f} (relative gap {lp_gap:.1e}, max violation of "
            f"u_i + v_j <= |x_i - y_j| {lp_violation:.1e} W1); network D = {dual:.5f}, "
            f"L_S = {lipschitz_support:.4f} (max |grad f| = {lipschitz_grad:.4f}), D / L_S = "
            f"{certified:.5f}, relative gap {gap:.2%} (D / max(L_grad, 1) = {certified_grad:.5f}); "
            f"best linear critic {linear_bound:.4f}"
        ),
        tolerance=(
            f"LP: relative gap and dual infeasibility < {LP_TOLERANCE:g} (float64 rounding in the "
            f"simplex's tree solves, ~1e-14); weak duality D / L_S <= W1 (1 + {LP_TOLERANCE:g}); "
            f"network: (W1 - D / L_S) / W1 < {NETWORK_TOLERANCE:.0%} (measured 0.5-1.1% over seeds "
            "0-4 at quick size; the soft one-sided gradient penalty leaves L_S ~ 1.01-1.02 and "
            "Adam stops short of the sup). L_S is the exact Lipschitz constant of f on the support (all "
            "pairs), which certifies D / L_S as the value of a 1-Lipschitz function (McShane "
            "extension)."
        ),
        passed=bool(lp_ok and weak_ok and strong_ok),
        details={
            "n": settings.n,
            "n_steps": settings.n_steps,
            "w1_primal": w1,
            "lp_primal": lp["primal"],
            "lp_dual": lp["dual"],
            "lp_relative_gap": lp_gap,
            "lp_relative_violation": lp_violation,
            "network_dual": dual,
            "lipschitz_gradient_max": lipschitz_grad,
            "lipschitz_support": lipschitz_support,
            "certified_dual": certified,
            "certified_dual_gradient_rescaled": certified_grad,
            "relative_gap": gap,
            "linear_critic_bound": linear_bound,
            "lp_duality_exact": lp_ok,
            "weak_duality_holds": weak_ok,
            "network_reaches_w1": strong_ok,
            "history": history,
        },
        figures=(figure,),
    )


def _figure(x: Tensor, y: Tensor, critic: nn.Module, lp: dict, history: list[dict], w1: float,
            linear_bound: float, path: Path) -> str:
    figure, axes = new_figure(4, 1, width=4.2, height=3.8)
    xs, ys = to_numpy(x), to_numpy(y)
    low = np.minimum(xs.min(0), ys.min(0)) - 0.5
    high = np.maximum(xs.max(0), ys.max(0)) + 0.5
    grid_x, grid_y = np.meshgrid(np.linspace(low[0], high[0], 120), np.linspace(low[1], high[1], 120))
    grid = torch.tensor(np.stack([grid_x.ravel(), grid_y.ravel()], 1), dtype=torch.float64,
                        device=x.device)
    with torch.no_grad():
        network = to_numpy(critic(grid)[:, 0]).reshape(grid_x.shape)
    # The LP's potential extended to the plane: f(z) = min_j |z - y_j| - v_j, 1-Lipschitz.
    distance = np.sqrt(((to_numpy(grid)[:, None, :] - ys[None, :, :]) ** 2).sum(-1))
    exact = (distance - lp["v"][None, :]).min(1).reshape(grid_x.shape)
    for axis, field, title in ((axes[0, 0], network, "learned critic f (one-sided gradient penalty)"),
                               (axes[0, 1], exact, "LP potential min_j |z - y_j| - v_j")):
        field = field - field.mean()
        mesh = axis.contourf(grid_x, grid_y, field, levels=20, cmap="coolwarm")
        axis.contour(grid_x, grid_y, field, levels=20, colors="k", linewidths=0.3, alpha=0.4)
        figure.colorbar(mesh, ax=axis, shrink=0.8)
        axis.scatter(xs[:, 0], xs[:, 1], s=3, color="tab:red", label="x ~ mu (ring)")
        axis.scatter(ys[:, 0], ys[:, 1], s=3, color="tab:blue", label="y ~ nu (Gaussian)")
        axis.set_aspect("equal")
        axis.set_title(title, fontsize=9)
        axis.legend(fontsize=7, loc="lower left")
    axis = axes[0, 2]
    steps = [row["step"] for row in history]
    axis.axhline(w1, color="k", linewidth=1.2, label=f"primal W1 = {w1:.4f}")
    axis.axhspan((1 - NETWORK_TOLERANCE) * w1, w1, color="0.9", label=f"within {NETWORK_TOLERANCE:.0%}")
    axis.axhline(linear_bound, color="gray", linestyle=":", label="best linear critic")
    axis.plot(steps, [row["dual"] for row in history], "-", color="tab:orange",
              label="D = mean f(x) - mean f(y)")
    axis.plot(steps, [row["certified"] for row in history], "-", color="tab:green",
              label="D / L_S (1-Lipschitz on support)")
    axis.set_xlabel("Adam step")
    axis.set_ylabel("dual value")
    axis.set_ylim(0, 1.15 * w1)
    axis.set_title("critic training vs primal W1", fontsize=9)
    axis.legend(fontsize=7, loc="lower right")
    axis = axes[0, 3]
    axis.axhline(NETWORK_TOLERANCE, color="tab:red", linestyle="--", label="tolerance")
    certified_gap = np.array([(w1 - row["certified"]) / w1 for row in history])
    axis.semilogy(steps, np.abs(certified_gap), "-", color="tab:green",
                  label="|W1 - D / L_S| / W1 (D / L_S <= W1)")
    axis.semilogy(steps, [abs(row["lipschitz_support"] - 1) for row in history], ":",
                  color="tab:purple", label="|L_S - 1|")
    axis.set_xlabel("Adam step")
    axis.set_ylabel("relative gap")
    axis.set_title("certified gap to the primal", fontsize=9)
    axis.legend(fontsize=7)
    return save_figure(figure, path)
