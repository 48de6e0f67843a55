r"""Check: a trained f-GAN critic's variational bound approaches the f-divergence, from below.

Claim. For two known densities P and Q and each f-divergence of the f-GAN table (KL, reverse KL,
2 x Jensen-Shannon, Pearson chi^2, squared Hellinger), maximizing the variational objective
E_P[g_f(v(x))] - E_Q[f*(g_f(v(x)))] over a critic network v on fresh samples drives it up to
D_f(P || Q), and never above it.

Derivation. Fenchel-Young gives f(u) >= t u - f*(t) for every u > 0 and t in dom f*, with
equality at t = f'(u). Put u = p(x)/q(x), t = T(x) = g_f(v(x)), multiply by q(x) and integrate:

    D_f(P || Q) = int q f(p/q) >= int p T - int q f*(T) = B_f(v)        for every critic v,

with equality iff T = f'(p/q) almost everywhere (Nguyen, Wainwright & Jordan 2010; Nowozin,
Cseke & Tomioka 2016, eq. 4-6). So B_f(v) <= D_f for any network, and the gap D_f - B_f(v)
= int q [f(u) - T u + f*(T)] >= 0 measures how far the activated critic is from f'(p/q). It is
not a Monte Carlo error: the bound is evaluated by quadrature, so what is left is the network's
approximation error plus the optimizer's (the last iterate of stochastic Adam is not the
maximizer). Neither has a closed form; what theory promises is that the gap is >= 0 and that it
can be made small by a flexible enough network trained long enough, so the check states a
tolerance on the relative gap and shows its decay over training.

Method. P = N(0, 1), Q = N(1, 1.25^2) in 1-D. Q is wider than P, so every divergence is finite
(Pearson chi^2 needs 2 var_Q > var_P) and p/q is bounded; the log-ratio is quadratic, so no
optimal critic is linear in x (a leaky-ReLU network must bend). For each divergence a fresh
``Critic`` (float64, leaky ReLU) is trained by Adam with a cosine decay of the learning rate to
1% of its start (the decay removes most of the last iterate's stochastic jitter) on fresh
batches of P and Q every step (``fit_critic`` with samplers), maximizing ``variational_bound``.
Fresh batches, not batches resampled from a fixed sample of the same total size: with a fixed
sample of n_steps x batch_size points a side, the reverse-KL gap over seeds 0-9 (quick) doubled
(mean 0.69% against 0.38%, worst 1.17% against 0.61%), its optimal critic -q/p living in P's
lower tail, which a fixed sample covers with the same few points every step. The bound of the trained
critic and the true value are then integrated by the trapezoid rule on a uniform grid covering
both means +- 12 standard deviations (spacing 0.005):

- truth: ``f_divergence`` by quadrature, against the closed forms for Gaussians where they
  exist (KL, reverse KL, Pearson chi^2, squared Hellinger); they must agree to 1e-8 (the
  trapezoid rule is spectrally accurate for smooth integrands that vanish at the ends);
- bound: B_f(v) on the grid (exact expectations of g_f(v) under P and of f*(g_f(v)) under Q,
  no sampling), with a quadrature-error allowance e = |B_h - B_2h| + |D_h - D_2h| + tail + 1e-9:
  the leaky-ReLU critic has kinks, where the trapezoid rule is only O(h^2), and halving the grid
  (every other node, weights 2h) bounds that error by about 3x; ``tail`` is the integrand's size
  at the two ends of the grid times the larger standard deviation, a bound on the part of the
  integrals outside the grid for integrands that decay at least like a Gaussian there.

Verdict, per divergence: (a) the bound never exceeds the truth by more than the quadrature
allowance e (Fenchel's inequality, which holds for every critic, so this tests the table and the
quadrature rather than the training); (b) the relative gap (D_f - B_f) / D_f is at most
``rel_gap`` (2% quick, 0.5% full); (c) the quadrature truth matches the closed form to 1e-8 where
one exists. Why these tolerances: they are not Monte Carlo errors but what the stated settings
reach, measured before fixing them. Quick (a 2 x 32 critic, 300 Adam steps at batch 512, learning
rate 0.02): over seeds 0-9 the worst relative gaps were kl 0.20%, reverse-kl 0.61%, js 0.16%,
pearson 0.55%, hellinger 0.30% (400 steps gave the same, so the gap has levelled off at what this
network and schedule reach); 2% is about 3x the worst. Full (3 x 64, 4,000 steps at batch 2,048,
learning rate 0.01): over seeds 0 and 1 the worst were reverse-kl 0.11% and <= 0.02% for the
others; 0.5% is about 4.5x that (a wider factor, since only two seeds were affordable at ~5 min
each). Reverse KL is the hardest: its optimal critic -q/p grows like exp(c x^2) in P's lower tail,
where P supplies few samples. A critic off by a visible amount, or a wrong row of the table,
fails (b) by far.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from measureflow._core import check_count, make_generator, seeded_build
from measureflow.checks._figures import format_list, new_figure, save_figure
from measureflow.checks.base import CheckResult
from measureflow.generative.gan.critic import fit_critic
from measureflow.generative.gan.divergences import F_DIVERGENCES, FDivergence, f_divergence, variational_bound
from measureflow.generative.gan.nets import Critic

__all__ = [
    "bound_by_quadrature",
    "gaussian_f_divergence",
    "quadrature_grid",
    "run",
    "train_critic",
    "trapezoid_weights",
]

NAME = "fgan-bound"
P_MEAN, P_STD = 0.0, 1.0
Q_MEAN, Q_STD = 1.0, 1.25
DIVERGENCES = ("kl", "reverse-kl", "js", "pearson", "hellinger")
GRID_STDS = 12.0
GRID_SPACING = 0.005
CLOSED_FORM_TOL = 1e-8
QUADRATURE_FLOOR = 1e-9
FINAL_LR_FRACTION = 0.01


@dataclass(frozen=True)
class _Settings:
    n_steps: int
    batch_size: int
    hidden: int
    depth: int
    learning_rate: float
    n_evals: int
    rel_gap: float


SETTINGS = {
    "quick": _Settings(n_steps=300, batch_size=512, hidden=32, depth=2, learning_rate=0.02, n_evals=20,
                       rel_gap=0.02),
    "full": _Settings(n_steps=4000, batch_size=2048, hidden=64, depth=3, learning_rate=0.01, n_evals=40,
                      rel_gap=0.005),
}


def trapezoid_weights(x: Tensor) -> Tensor:
    """Trapezoid-rule weights ``(k,)`` for the sorted nodes ``x`` ``(k,)``, k >= 2: w_i = (x_{i+1} -
    x_{i-1}) / 2 inside, half a cell at the ends, so sum_i w_i f(x_i) ~ int_{x_0}^{x_{k-1}} f.

    >>> x = torch.linspace(0.0, 1.0, 5, dtype=torch.float64)
    >>> trapezoid_weights(x).tolist()
    [0.125, 0.25, 0.25, 0.25, 0.125]
    """
    if not isinstance(x, Tensor) or x.dim() != 1 or x.numel() < 2:
        raise ValueError(f"x must be a 1-D tensor of at least 2 nodes, got {x!r:.80}")
    cells = torch.diff(x)
    if not bool((cells > 0).all()):
        raise ValueError("x must be strictly increasing (the nodes of a quadrature grid)")
    weights = torch.zeros_like(x)
    weights[:-1] += 0.5 * cells
    weights[1:] += 0.5 * cells
    return weights


def quadrature_grid(lo: float, hi: float, n_points: int, *, dtype: torch.dtype = torch.float64,
                    device: str | torch.device = "cpu") -> tuple[Tensor, Tensor]:
    """A uniform grid of ``n_points`` nodes on [lo, hi] and its trapezoid weights, both ``(n_points,)``.

    ``n_points`` must be odd, so that every other node (``x[::2]``) is the same grid at twice the
    spacing, which gives the quadrature-error estimate |Q_h - Q_2h|.

    >>> x, w = quadrature_grid(-10.0, 10.0, 2001)
    >>> round(float((w * torch.exp(-x**2 / 2)).sum() / math.sqrt(2 * math.pi)), 12)
    1.0
    """
    if isinstance(n_points, bool) or not isinstance(n_points, int) or n_points < 3 or n_points % 2 == 0:
        raise ValueError(f"n_points must be an odd integer >= 3, got {n_points!r}")
    if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
        raise ValueError(f"need finite lo < hi, got lo={lo!r}, hi={hi!r}")
    x = torch.linspace(lo, hi, n_points, dtype=dtype, device=device)
    return x, trapezoid_weights(x)


def bound_by_quadrature(critic_values: Tensor, log_p: Tensor, log_q: Tensor, weights: Tensor,
                        divergence: str | FDivergence) -> Tensor:
    """The variational bound B_f(v) = int p g_f(v) - int q f*(g_f(v)) by quadrature (scalar).

    ``critic_values`` are the raw critic outputs v, ``log_p``, ``log_q`` the log-densities and
    ``weights`` the quadrature weights, all ``(k,)`` at the same nodes. This is the exact
    (noise-free) value of the objective that ``variational_bound`` estimates from samples; for
    every v it is <= D_f(P || Q), with equality at g_f(v) = f'(p/q). Nodes where a density times
    its weight is exactly 0 contribute 0 (so a critic that is infinite where there is no mass
    does not turn the sum into nan).

    >>> x = torch.linspace(-12.0, 12.0, 4001, dtype=torch.float64)
    >>> w = trapezoid_weights(x)
    >>> log_p, log_q = -0.5 * (x - 1)**2, -0.5 * x**2          # both shifted by -log sqrt(2 pi)
    >>> log_p, log_q = log_p - 0.5 * math.log(2 * math.pi), log_q - 0.5 * math.log(2 * math.pi)
    >>> v_opt = 1 + (log_p - log_q)                             # T* = 1 + log(p/q) for KL
    >>> round(float(bound_by_quadrature(v_opt, log_p, log_q, w, "kl")), 9)   # KL = 1/2
    0.5
    """
    row = F_DIVERGENCES[divergence] if isinstance(divergence, str) and divergence in F_DIVERGENCES \
        else divergence
    if not isinstance(row, FDivergence):
        raise ValueError(f"unknown f-divergence {divergence!r}; choose one of {', '.join(F_DIVERGENCES)}")
    shapes = {tuple(t.shape) for t in (critic_values, log_p, log_q, weights)}
    if len(shapes) != 1 or critic_values.dim() != 1:
        raise ValueError("critic_values, log_p, log_q and weights must be 1-D tensors of one length, got "
                         f"shapes {[tuple(t.shape) for t in (critic_values, log_p, log_q, weights)]}")
    activated = row.activation(critic_values)
    mass_p = weights * torch.exp(log_p)
    mass_q = weights * torch.exp(log_q)
    zero = torch.zeros((), dtype=activated.dtype, device=activated.device)
    term_p = torch.where(mass_p == 0, zero, mass_p * activated)
    term_q = torch.where(mass_q == 0, zero, mass_q * row.conjugate(activated))
    return term_p.sum() - term_q.sum()


def gaussian_f_divergence(divergence: str, mean_p: float, std_p: float, mean_q: float, std_q: float) -> float:
    """D_f(N(m_p, s_p^2) || N(m_q, s_q^2)) in closed form (1-D), for the rows that have one:

    - ``kl``: log(s_q / s_p) + (s_p^2 + (m_p - m_q)^2) / (2 s_q^2) - 1/2;
    - ``reverse-kl``: the same with P and Q swapped (KL(Q || P));
    - ``pearson``: int p^2 / q - 1 = s_q^2 / (s_p sqrt(2 s_q^2 - s_p^2)) exp((m_p - m_q)^2 /
      (2 s_q^2 - s_p^2)) - 1, and +inf when 2 s_q^2 <= s_p^2 (q's tails too light);
    - ``hellinger``: int (sqrt p - sqrt q)^2 = 2 (1 - BC), BC = sqrt(2 s_p s_q / (s_p^2 + s_q^2))
      exp(-(m_p - m_q)^2 / (4 (s_p^2 + s_q^2))).

    >>> round(gaussian_f_divergence("kl", 1.0, 1.0, 0.0, 1.0), 12)
    0.5
    >>> round(gaussian_f_divergence("pearson", 1.0, 1.0, 0.0, 1.0), 6)   # e - 1
    1.718282
    """
    if divergence not in ("kl", "reverse-kl", "pearson", "hellinger"):
        raise ValueError(f"no closed form for {divergence!r}; choose one of "
                         "kl, reverse-kl, pearson, hellinger")
    for value, name in ((mean_p, "mean_p"), (mean_q, "mean_q")):
        if not math.isfinite(value):
            raise ValueError(f"{name} must be finite, got {value!r}")
    for value, name in ((std_p, "std_p"), (std_q, "std_q")):
        if not (math.isfinite(value) and value > 0):
            raise ValueError(f"{name} must be a finite positive number, got {value!r}")
    shift2 = (mean_p - mean_q) ** 2
    if divergence == "kl":
        return math.log(std_q / std_p) + (std_p**2 + shift2) / (2 * std_q**2) - 0.5
    if divergence == "reverse-kl":
        return math.log(std_p / std_q) + (std_q**2 + shift2) / (2 * std_p**2) - 0.5
    if divergence == "pearson":
        spread = 2 * std_q**2 - std_p**2
        if spread <= 0:
            return math.inf
        return std_q**2 / (std_p * math.sqrt(spread)) * math.exp(shift2 / spread) - 1
    total = std_p**2 + std_q**2
    return 2 * (1 - math.sqrt(2 * std_p * std_q / total) * math.exp(-shift2 / (4 * total)))


def train_critic(
    critic: torch.nn.Module,
    divergence: str | FDivergence,
    sample_p: Callable[[int, torch.Generator], Tensor],
    sample_q: Callable[[int, torch.Generator], Tensor],
    *,
    n_steps: int,
    batch_size: int,
    learning_rate: float,
    generator: torch.Generator,
    evaluate: Callable[[torch.nn.Module, int], object] | None = None,
    eval_steps: Sequence[int] = (),
) -> list[tuple[int, object]]:
    """Maximize the variational bound E_P[g_f(v)] - E_Q[f*(g_f(v))] over ``critic`` in place.

    Each of the ``n_steps`` Adam steps of :func:`~measureflow.generative.gan.critic.fit_critic`
    draws fresh batches ``sample_p(batch_size, generator)`` and ``sample_q(batch_size, generator)``
    (each ``(batch_size, *shape)``), runs the critic once on both and ascends
    ``variational_bound``; the learning rate decays from ``learning_rate`` to 1% of it on a cosine
    schedule.
    ``evaluate(critic, step)`` is called (under ``no_grad``) after each number of steps listed in
    ``eval_steps`` (0 = before training); returns the list of ``(step, evaluate(critic, step))``.

    >>> from measureflow._core import seeded_build
    >>> g = torch.Generator().manual_seed(0)
    >>> critic = seeded_build(lambda: Critic(1, hidden=8, depth=1).double(), g)
    >>> draw = lambda m: (lambda n, gen: m + torch.randn(n, 1, generator=gen, dtype=torch.float64))
    >>> history = train_critic(critic, "kl", draw(1.0), draw(0.0), n_steps=5, batch_size=16,
    ...                        learning_rate=0.01, generator=g, evaluate=lambda c, s: 1, eval_steps=[0, 5])
    >>> [step for step, _ in history]
    [0, 5]
    """
    n_steps = check_count(n_steps, "n_steps")
    batch_size = check_count(batch_size, "batch_size")
    if not (isinstance(learning_rate, (int, float)) and math.isfinite(learning_rate) and learning_rate > 0):
        raise ValueError(f"learning_rate must be a finite positive number, got {learning_rate!r}")
    wanted = sorted(set(eval_steps))
    if wanted and (wanted[0] < 0 or wanted[-1] > n_steps):
        raise ValueError(f"eval_steps must lie in [0, n_steps={n_steps}], got {list(eval_steps)}")
    if wanted and evaluate is None:
        raise ValueError("eval_steps given without an evaluate callable")
    history: list[tuple[int, object]] = []

    def record(step: int, trained: torch.nn.Module) -> None:
        if evaluate is not None and step in wanted:
            with torch.no_grad():
                history.append((step, evaluate(trained, step)))

    record(0, critic)
    fit_critic(critic, sample_p, sample_q,
               loss=lambda p_out, q_out: -variational_bound(p_out, q_out, divergence),
               n_steps=n_steps, generator=generator, batch_size=batch_size, learning_rate=learning_rate,
               final_learning_rate=FINAL_LR_FRACTION * learning_rate, after_step=record)
    return history


def _log_normal(x: Tensor, mean: float, std: float) -> Tensor:
    return -0.5 * ((x - mean) / std) ** 2 - math.log(std) - 0.5 * math.log(2 * math.pi)


def _gaussian_sampler(mean: float, std: float, device: str) -> Callable[[int, torch.Generator], Tensor]:
    def draw(n: int, generator: torch.Generator) -> Tensor:
        return mean + std * torch.randn(n, 1, generator=generator, dtype=torch.float64, device=device)
    return draw


@dataclass(frozen=True)
class _Grid:
    """Fine nodes x, weights w and the log-densities; the coarse grid is every other node."""

    x: Tensor
    weights: Tensor
    coarse_weights: Tensor
    log_p: Tensor
    log_q: Tensor


def _edge_size(values: Tensor, log_p: Tensor, log_q: Tensor, row: FDivergence) -> float:
    """The integrand |p g(v)| + |q f*(g(v))| at the two ends of the grid (for the tail allowance)."""
    ends = torch.tensor([0, values.numel() - 1], device=values.device)
    activated = row.activation(values[ends])
    size = (torch.exp(log_p[ends]) * activated).abs() \
        + (torch.exp(log_q[ends]) * row.conjugate(activated)).abs()
    return float(torch.nan_to_num(size, nan=math.inf).max())


def _evaluate(critic: torch.nn.Module, grid: _Grid, row: FDivergence) -> dict[str, float]:
    values = critic(grid.x[:, None])
    fine = float(bound_by_quadrature(values, grid.log_p, grid.log_q, grid.weights, row))
    coarse = float(bound_by_quadrature(values[::2], grid.log_p[::2], grid.log_q[::2], grid.coarse_weights,
                                       row))
    return {"bound": fine, "bound_coarse": coarse, "edge": _edge_size(values, grid.log_p, grid.log_q, row)}


def run(size: str, seed: int, device: str, out_dir: Path) -> CheckResult:
    settings = SETTINGS[size]
    generator = make_generator(seed, device)
    lo = min(P_MEAN - GRID_STDS * P_STD, Q_MEAN - GRID_STDS * Q_STD)
    hi = max(P_MEAN + GRID_STDS * P_STD, Q_MEAN + GRID_STDS * Q_STD)
    n_points = 2 * int(round((hi - lo) / (2 * GRID_SPACING))) + 1
    x, weights = quadrature_grid(lo, hi, n_points, device=device)
    grid = _Grid(x, weights, trapezoid_weights(x[::2]), _log_normal(x, P_MEAN, P_STD),
                 _log_normal(x, Q_MEAN, Q_STD))
    tail_length = max(P_STD, Q_STD)
    sample_p = _gaussian_sampler(P_MEAN, P_STD, device)
    sample_q = _gaussian_sampler(Q_MEAN, Q_STD, device)
    eval_steps = sorted({int(round(k * settings.n_steps / settings.n_evals))
                         for k in range(settings.n_evals + 1)})

    rows = []
    for name in DIVERGENCES:
        row = F_DIVERGENCES[name]
        truth = float(f_divergence(grid.log_p, grid.log_q, grid.weights, row))
        truth_coarse = float(f_divergence(grid.log_p[::2], grid.log_q[::2], grid.coarse_weights, row))
        closed = gaussian_f_divergence(name, P_MEAN, P_STD, Q_MEAN, Q_STD) \
            if name in ("kl", "reverse-kl", "pearson", "hellinger") else None
        critic = seeded_build(
            lambda: Critic(1, hidden=settings.hidden, depth=settings.depth).to(dtype=torch.float64), generator
        ).to(device)
        history = train_critic(
            critic, row, sample_p, sample_q, n_steps=settings.n_steps, batch_size=settings.batch_size,
            learning_rate=settings.learning_rate, generator=generator,
            evaluate=lambda c, _, row=row: _evaluate(c, grid, row), eval_steps=eval_steps)
        final = history[-1][1]
        allowance = (abs(final["bound"] - final["bound_coarse"]) + abs(truth - truth_coarse)
                     + tail_length * final["edge"] + QUADRATURE_FLOOR)
        gap = truth - final["bound"]
        rows.append({
            "divergence": name,
            "truth_quadrature": truth,
            "truth_closed_form": closed,
            "closed_form_error": None if closed is None else abs(truth - closed),
            "bound": final["bound"],
            "gap": gap,
            "relative_gap": gap / truth,
            "quadrature_allowance": allowance,
            "below_truth": bool(gap >= -allowance),
            "within_gap": bool(gap / truth <= settings.rel_gap),
            "closed_form_ok": bool(closed is None or abs(truth - closed) <= CLOSED_FORM_TOL),
            "steps": [step for step, _ in history],
            "bounds": [values["bound"] for _, values in history],
        })

    below = all(r["below_truth"] for r in rows)
    within = all(r["within_gap"] for r in rows)
    closed_ok = all(r["closed_form_ok"] for r in rows)
    figure = _figure(rows, settings, out_dir / f"{NAME}.png")
    worst = max(rows, key=lambda r: r["relative_gap"])
    return CheckResult(
        name=NAME,
        claim=(
            "f-GAN's variational bound $E_P[g_f(v)] - E_Q[f^*(g_f(v))]$ is below $D_f(P \\| Q)$ for every "
            "critic and a trained critic brings it close: $P = N(0, 1)$, $Q = N(1, 1.25^2)$, one critic "
            f"({settings.depth} x {settings.hidden}, {settings.n_steps} Adam steps at batch "
            f"{settings.batch_size}) per divergence ({', '.join(DIVERGENCES)}), bound and truth by "
            "quadrature."
        ),
        predicted=(
            f"D_f = {format_list([r['truth_quadrature'] for r in rows])} by quadrature (closed forms "
            f"{format_list([r['truth_closed_form'] for r in rows if r['truth_closed_form'] is not None])} "
            "for kl, reverse-kl, pearson, hellinger); bound <= D_f and relative gap <= "
            f"{settings.rel_gap:.1%}"
        ),
        measured=(
            f"bounds {format_list([r['bound'] for r in rows])}; relative gaps "
            f"{format_list([r['relative_gap'] for r in rows], 2)} (worst {worst['divergence']} "
            f"{worst['relative_gap']:.2%}); every bound below D_f by at least "
            f"{min(r['gap'] / r['quadrature_allowance'] for r in rows):.3g} quadrature allowances"
        ),
        tolerance=(
            "bound - D_f <= quadrature allowance (|B_h - B_2h| + |D_h - D_2h| + tail + 1e-9, trapezoid "
            f"at h = {GRID_SPACING:g}) for every divergence; (D_f - bound) / D_f <= {settings.rel_gap:.1%} "
            "(network and optimizer error, not Monte Carlo: about 3x the worst of seeds 0-9 at quick "
            "size, 4.5x the worst of seeds 0-1 at full size); quadrature truth vs closed form within "
            f"{CLOSED_FORM_TOL:g}."
        ),
        passed=bool(below and within and closed_ok),
        details={
            "p": {"mean": P_MEAN, "std": P_STD},
            "q": {"mean": Q_MEAN, "std": Q_STD},
            "grid": {"lo": lo, "hi": hi, "n_points": n_points},
            "settings": {"n_steps": settings.n_steps, "batch_size": settings.batch_size,
                         "hidden": settings.hidden, "depth": settings.depth,
                         "learning_rate": settings.learning_rate, "rel_gap": settings.rel_gap},
            "below_truth": below,
            "within_gap": within,
            "closed_form_ok": closed_ok,
            "rows": rows,
        },
        figures=(figure,),
    )


def _figure(rows: list[dict], settings: _Settings, path: Path) -> str:
    figure, axes = new_figure(2, 1, width=4.6, height=3.6)
    colors = ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple")
    axis = axes[0, 0]
    low = min(row["truth_quadrature"] for row in rows)
    for row, color in zip(rows, colors, strict=True):
        axis.plot(row["steps"], row["bounds"], "o-", color=color, markersize=2.5, linewidth=1.0,
                  label=f"{row['divergence']} (D_f = {row['truth_quadrature']:.3g})")
        axis.axhline(row["truth_quadrature"], color=color, linestyle="--", linewidth=0.9)
    # The first evaluations (an untrained critic) can sit far below zero and would flatten the rest.
    axis.set_ylim(-0.5 * low, 1.1 * max(row["truth_quadrature"] for row in rows))
    axis.set_xlabel("Adam step")
    axis.set_ylabel("variational bound (quadrature)")
    axis.set_title("trained bound (solid) vs D_f (dashed)", fontsize=9)
    axis.legend(fontsize=7, loc="lower right")
    axis = axes[0, 1]
    for row, color in zip(rows, colors, strict=True):
        gaps = (row["truth_quadrature"] - np.array(row["bounds"])) / row["truth_quadrature"]
        axis.plot(row["steps"], np.clip(gaps, 1e-6, None), "o-", color=color, markersize=2.5, linewidth=1.0,
                  label=row["divergence"])
    axis.axhline(settings.rel_gap, color="k", linestyle="--", linewidth=1.0,
                 label=f"tolerance {settings.rel_gap:.1%}")
    axis.set_yscale("log")
    axis.set_xlabel("Adam step")
    axis.set_ylabel("(D_f - bound) / D_f")
    axis.set_title(f"relative gap; P = N({P_MEAN:g}, {P_STD:g}^2), Q = N({Q_MEAN:g}, {Q_STD:g}^2)",
                   fontsize=9)
    axis.legend(fontsize=7)
    return save_figure(figure, path)
