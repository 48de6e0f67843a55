r"""Check: under the strong low-noise condition, infinite-dimensional Langevin dynamics on an
infinite-width network finds the Bayes classifier, with a failure probability that falls with the
inverse temperature beta and with the sample size n.

Claim (seed 001, "(参考) 判別問題における速い収束"; Suzuki 2020, arXiv:2007.05824). Binary labels
with the strong low-noise condition |P(Y = 1 | X) - 1/2| >= delta (a.s.), P_X with a density
bounded below on its support, a smooth activation and the truth in the model, f* = f_{W*} for
f_W(x) = sum_j a_j sigma(w_j . x). For the iterates W_k of the semi-implicit Langevin scheme on
the logistic loss with the RKHS penalty, for n large enough and beta <= n,

    E[ P(W_k : P_X[sign f_{W_k}(X) != sign f*(X)] != 0) ] <~ exp(-c beta delta^(2m/(2m-d))) + Xi_k,

Xi_k the optimization (mixing and discretization) error: the classifier of a draw is the Bayes
classifier sign f* with a probability that tends to one exponentially fast.

What the bound predicts here. The constant c is not given, so the falsifiable content is the
direction and the shape: (i) at a fixed, large enough n the failure probability falls with beta,
and its exponential rate -d log P / d beta is positive; (ii) at a fixed, large enough beta it falls
with n (n enters through "n large enough": a draw concentrates, at rate beta, around the
regularized empirical minimizer, whose classifier is the Bayes one once the data pin the decision
boundary inside the noise-free gap; the probability that they do not falls exponentially in n by
the same margin argument, Nitanda & Suzuki 2019), with a positive exponential rate in n.

Set-up. f_W(x) = sum_{j<K} a_j tanh(w_j . x), a_j = (-1)^j (j + 1)^-1
(:class:`measureflow.targets.function_space.InfiniteWidthNetwork`, K = 16 neurons, d = 2), the truth
W* with three active neurons (``TRUTH_ROWS``) and the rest zero. P_X is uniform on
{x in [-1, 1]^2 : |f*(x)| >= m}, m = 0.3: the strong low-noise condition needs no mass where the
Bayes decision is a coin flip, and with a density bounded below across the decision boundary the
event "sign f_W = sign f* P_X-a.s." would have probability zero for any continuous posterior.
Labels y = sign f*(x), flipped independently with probability q = 0.1, so E[y | x] = 0.8 sign f*(x)
(delta = 0.4) and the Bayes classifier is sign f*. Each chain runs the sampler ``infinite-langevin``
(X <- S_eta (X - eta grad L(X) + sqrt(2 eta / beta) xi), S_eta = (I + eta lam A)^-1) on the
logistic loss L(W) = (1/n) sum_i log(1 + exp(-y_i f_W(x_i))) with A = diag(1 / mu),
mu_j = (j + 1)^-2 for both coordinates of w_j, lam = 0.01, eta = 0.5, from W = 0 for T steps (150 at quick
size, 400 at full); the last state is the draw. (Measured while choosing T, one data set, 200-400
chains: the grid disagreement and the event frequency read every 200 steps from T = 200 to 1,600
stay within their Monte Carlo error at beta = 10 and beta = 300, n = 64, and at beta = 300, n = 16;
T = 150 and T = 400 agreed within about 2 SE on the quick grid.)

Many data sets at once. The quantity bounded is an expectation over data sets, which is where most
of its variance lives at small n, so every point of the curves averages D independent data sets.
To run them as one sampler call, data set i is embedded in its own block of input coordinates:
the network input is R^(D d), data set i's points are zero outside block i, so neuron j sees it
only through the block-i part w_j^(i) of its weight. The loss is then a sum over data sets of
separate losses in the blocks W^(i), the penalty sum_j mu_j^-1 |w_j|^2 splits over blocks the same
way (mu is repeated over all D d coordinates of w_j), and the noise is i.i.d. per coordinate: one
chain of this network is exactly D independent chains, one per data set, each the K-neuron
network above (scale = 1/n per data set). C chains give C draws per data set.

Measured. On a 48 x 48 midpoint grid of the square restricted to the support (the test grid), for
every draw: the event that the classifier is not the Bayes one somewhere on the grid (the
theorem's event), and the fraction of the grid where it differs (P(sign f_W(X) != sign f*(X)) for
X uniform on the grid, the excess risk over (1 - 2q)). Curve (i): n fixed, beta on a grid;
curve (ii): beta fixed, n on a grid, the smaller data sets being prefixes of the larger
(nested). P_j = mean over data sets i of the per-data-set event frequency p_ji (over its C draws).

Verdict, per curve, on the event probability; data sets are the independent units, so every
standard error is over the D data sets (chains within a data set share it) and every comparison is
paired by data set. With t = the Student-t(D - 1) quantile at one-sided level 1e-3:
1. monotone: for each adjacent pair of grid points, the paired increase mean_i (p_{j+1,i} - p_ji)
   is at most t standard errors (a rise would have to be significant at 1e-3 to fail);
2. positive exponential rate: the average rate over the grid, c = log(P_1 / P_J) / (x_J - x_1),
   has the sign of P_1 - P_J, so its sign is judged by the paired drop mean_i (p_1i - p_Ji), which
   must exceed t standard errors (the same test on the log scale has far less power: log P_J
   carries the relative error of a few events). c itself is reported with a delete-one-data-set
   jackknife standard error (which carries the correlation of the points of one curve through the
   shared data sets), computed on P + 1 / (2 D C) (the continuity correction keeps a zero count
   finite), and so is the least-squares rate (slope of log P against x), not judged: the bound is
   exp(-c beta) plus the optimization and data terms, so log P need not be straight over the grid.
The grid disagreement fraction is reported and plotted beside it, not judged.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from scipy import stats
from torch import Tensor

from measureflow._core import make_generator
from measureflow.checks._figures import format_list, new_figure, save_figure
from measureflow.checks.base import CheckResult
from measureflow.samplers import sample
from measureflow.targets.function_space import InfiniteWidthNetwork

__all__ = ["run"]

NAME = "bayes-classifier"
N_NEURONS = 16
INPUT_DIM = 2
TRUTH_ROWS = ((2.0, 1.0), (-1.0, 2.0), (1.5, -1.5))  # w*_0, w*_1, w*_2; w*_j = 0 for j >= 3
MARGIN = 0.3  # supp P_X = {|f*| >= m}
FLIP = 0.1  # label noise q: E[y | x] = (1 - 2q) sign f*(x)
DECAY = 2.0  # mu_j = (j + 1)^-2
LAM = 0.01
STEP_SIZE = 0.5
GRID = 48
LEVEL = 1e-3  # one-sided level of every test
DTYPE = torch.float32


@dataclass(frozen=True)
class _Curve:
    """One curve: the (n, beta) points, with D data sets x C chains at each."""

    n_datasets: int
    n_chains: int
    sizes: tuple[int, ...]
    betas: tuple[float, ...]

    @property
    def points(self) -> list[tuple[int, float]]:
        return [(n, beta) for n in self.sizes for beta in self.betas]


@dataclass(frozen=True)
class _Settings:
    n_steps: int
    beta_curve: _Curve  # n fixed
    n_curve: _Curve  # beta fixed


SETTINGS = {
    "quick": _Settings(n_steps=150,
                       beta_curve=_Curve(24, 8, sizes=(64,), betas=(10.0, 30.0, 100.0, 300.0)),
                       n_curve=_Curve(48, 4, sizes=(4, 8, 16, 32, 64), betas=(300.0,))),
    "full": _Settings(n_steps=400,
                      beta_curve=_Curve(48, 16, sizes=(128,), betas=(3.0, 10.0, 30.0, 100.0, 300.0, 1000.0)),
                      n_curve=_Curve(96, 8, sizes=(4, 8, 16, 32, 64, 128), betas=(1000.0,))),
}


def _truth(device: str) -> tuple[InfiniteWidthNetwork, Tensor]:
    """A K-neuron network on R^2 (its data unused: only ``outputs`` is called) and W* ``(1, K d)``."""
    reference = InfiniteWidthNetwork(torch.zeros(1, INPUT_DIM, dtype=DTYPE, device=device),
                                     torch.ones(1, dtype=DTYPE, device=device), N_NEURONS, loss="logistic")
    w_star = torch.zeros(N_NEURONS, INPUT_DIM, dtype=DTYPE, device=device)
    w_star[: len(TRUTH_ROWS)] = torch.tensor(TRUTH_ROWS, dtype=DTYPE, device=device)
    return reference, w_star.reshape(1, -1)


def _draw_inputs(count: int, truth, generator: torch.Generator, device: str) -> Tensor:
    """``count`` points uniform on {x in [-1, 1]^2 : |f*(x)| >= m} by rejection, ``(count, 2)``."""
    reference, w_star = truth
    kept: list[Tensor] = []
    total = 0
    while total < count:
        x = 2 * torch.rand(2 * count + 16, INPUT_DIM, generator=generator, dtype=DTYPE, device=device) - 1
        x = x[reference.outputs(w_star, x)[0].abs() >= MARGIN]
        kept.append(x)
        total += x.shape[0]
    return torch.cat(kept)[:count]


def _datasets(curve: _Curve, truth, generator: torch.Generator, device: str) -> tuple[Tensor, Tensor]:
    """D nested data streams of the curve's largest size: inputs ``(D, n_max, 2)``, labels ``(D, n_max)``."""
    reference, w_star = truth
    n_max = max(curve.sizes)
    x = torch.stack([_draw_inputs(n_max, truth, generator, device) for _ in range(curve.n_datasets)])
    clean = torch.sign(reference.outputs(w_star, x.reshape(-1, INPUT_DIM))[0]).reshape(x.shape[:2])
    flips = torch.rand(clean.shape, generator=generator, dtype=DTYPE, device=device) < FLIP
    return x, torch.where(flips, -clean, clean)


def _block_network(x: Tensor, y: Tensor) -> InfiniteWidthNetwork:
    """Data set i ``x[i]`` ``(n, 2)`` placed in input block i of R^(D 2): one network whose chains are
    D independent chains, one per data set (see the module docstring); loss scale 1/n per data set."""
    n_datasets, n, dim = x.shape
    inputs = x.new_zeros(n_datasets, n, n_datasets, dim)
    index = torch.arange(n_datasets, device=x.device)
    inputs[index, :, index, :] = x
    return InfiniteWidthNetwork(inputs.reshape(n_datasets * n, n_datasets * dim), y.reshape(-1), N_NEURONS,
                                loss="logistic", scale=1.0 / n)


def _draws(x: Tensor, y: Tensor, beta: float, n_chains: int, n_steps: int,
           generator: torch.Generator) -> Tensor:
    """The last states of C chains, split per data set: ``(D, C, K 2)``."""
    target = _block_network(x, y)
    result = sample(target, "infinite-langevin", n_chains=n_chains, n_steps=1, burn_in=n_steps - 1,
                    step_size=STEP_SIZE, beta=beta, lam=LAM, mu=target.eigenvalues(DECAY),
                    init=x.new_zeros(1, target.dim), generator=generator, progress=False, diagnostics=False,
                    record_energy=False)
    n_datasets = x.shape[0]
    weights = result.samples[-1].reshape(n_chains, N_NEURONS, n_datasets, INPUT_DIM)
    return weights.permute(2, 0, 1, 3).reshape(n_datasets, n_chains, -1)


def _errors(draws: Tensor, truth, grid: Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Per data set and chain ``(D, C)``: whether sign f_W != sign f* somewhere on the grid, and where."""
    reference, w_star = truth
    bayes = torch.sign(reference.outputs(w_star, grid)[0])
    n_datasets, n_chains, _ = draws.shape
    wrong = torch.sign(reference.outputs(draws.reshape(n_datasets * n_chains, -1), grid)) != bayes
    wrong = wrong.reshape(n_datasets, n_chains, -1)
    return wrong.any(-1).cpu().double().numpy(), wrong.double().mean(-1).cpu().numpy()


def _rates(positions: np.ndarray, probabilities: np.ndarray, floor: float) -> tuple[float, float]:
    """The average exponential rate log(P_first / P_last) / (x_last - x_first) and the least-squares
    slope of log P against x (negated), both on log(P + floor)."""
    logs = np.log(probabilities + floor)
    return (float((logs[0] - logs[-1]) / (positions[-1] - positions[0])),
            float(-np.polyfit(positions, logs, 1)[0]))


def _judge(positions: tuple[float, ...], events: list[np.ndarray], critical: float) -> dict:
    """Monotonicity (paired increases) and the exponential rates with their jackknife SEs."""
    per_dataset = np.stack([event.mean(1) for event in events])  # (J, D)
    n_points, n_datasets = per_dataset.shape
    floor = 0.5 / (n_datasets * events[0].shape[1])
    x = np.asarray(positions, dtype=float)
    increases = []
    for j in range(n_points - 1):
        change = per_dataset[j + 1] - per_dataset[j]
        se = float(change.std(ddof=1) / math.sqrt(n_datasets))
        increases.append({"mean": float(change.mean()), "se": se,
                          "ok": bool(change.mean() <= critical * se)})
    drop = per_dataset[0] - per_dataset[-1]
    drop_se = float(drop.std(ddof=1) / math.sqrt(n_datasets))
    rate, fitted = _rates(x, per_dataset.mean(1), floor)
    leave_one_out = np.array([_rates(x, np.delete(per_dataset, i, axis=1).mean(1), floor)
                              for i in range(n_datasets)])  # (D, 2)
    spread = np.square(leave_one_out - leave_one_out.mean(0)).sum(0)
    rate_se, fitted_se = (float(math.sqrt((n_datasets - 1) / n_datasets * value)) for value in spread)
    return {"probability": per_dataset.mean(1).tolist(),
            "se": (per_dataset.std(1, ddof=1) / math.sqrt(n_datasets)).tolist(),
            "increases": increases, "monotone": all(step["ok"] for step in increases),
            "drop": float(drop.mean()), "drop_se": drop_se,
            "rate": rate, "rate_se": rate_se, "rate_positive": bool(drop.mean() > critical * drop_se),
            "fitted_rate": fitted, "fitted_rate_se": fitted_se}


def _measure(curve: _Curve, n_steps: int, truth, grid: Tensor, generator: torch.Generator,
             device: str) -> dict:
    """Run every point of ``curve`` on its own D data sets and judge it."""
    x, y = _datasets(curve, truth, generator, device)
    events, disagreement = [], []
    for n, beta in curve.points:
        event, fraction = _errors(_draws(x[:, :n], y[:, :n], beta, curve.n_chains, n_steps, generator),
                                  truth, grid)
        events.append(event)
        disagreement.append(float(fraction.mean()))
    positions = curve.betas if len(curve.betas) > 1 else tuple(float(n) for n in curve.sizes)
    critical = float(stats.t.ppf(1 - LEVEL, curve.n_datasets - 1))
    return {**_judge(positions, events, critical), "disagreement": disagreement, "positions": list(positions),
            "critical_t": critical, "n_datasets": curve.n_datasets, "n_chains": curve.n_chains}


def run(size: str, seed: int, device: str, out_dir: Path) -> CheckResult:
    settings = SETTINGS[size]
    generator = make_generator(seed, device)
    truth = _truth(device)
    cells = (torch.arange(GRID, dtype=DTYPE, device=device) + 0.5) / GRID * 2 - 1
    grid = torch.cartesian_prod(cells, cells)
    grid = grid[truth[0].outputs(truth[1], grid)[0].abs() >= MARGIN]
    curves = {"beta": _measure(settings.beta_curve, settings.n_steps, truth, grid, generator, device),
              "n": _measure(settings.n_curve, settings.n_steps, truth, grid, generator, device)}
    passed = all(curve["monotone"] and curve["rate_positive"] for curve in curves.values())
    figure = _figure(curves, settings, out_dir / f"{NAME}.png")
    beta_curve, n_curve = settings.beta_curve, settings.n_curve

    def described(curve: dict, unit: str) -> str:
        worst = max(step["mean"] / step["se"] if step["se"] > 0 else 0.0 for step in curve["increases"])
        z = curve["drop"] / curve["drop_se"] if curve["drop_se"] > 0 else math.inf
        return (f"P(not Bayes) {format_list(curve['probability'], 3)}, grid disagreement "
                f"{format_list(curve['disagreement'], 3)}; P_first - P_last = {curve['drop']:.3f} +- "
                f"{curve['drop_se']:.3f} (z = {z:.1f}); average rate {curve['rate']:.3g} +- "
                f"{curve['rate_se']:.2g} per unit {unit}, least-squares rate "
                f"{curve['fitted_rate']:.3g} +- {curve['fitted_rate_se']:.2g}; largest paired step change "
                f"{worst:+.1f} SE")

    return CheckResult(
        name=NAME,
        claim=(
            "Under the strong low-noise condition with the truth in the model (Suzuki 2020), the "
            "probability that a draw of infinite-dimensional Langevin dynamics on an infinite-width network "
            "(logistic loss) does not give the Bayes classifier falls exponentially with $\\beta$ and "
            "with $n$. "
            f"($f_W = \\sum_j (-1)^j (j+1)^{{-1}} \\tanh(w_j \\cdot x)$, K = {N_NEURONS}, d = {INPUT_DIM}; "
            f"$P_X$ uniform on $\\{{|f^*| \\ge {MARGIN:g}\\}}$ in $[-1, 1]^2$, labels "
            f"$\\operatorname{{sign}} f^*$ flipped w.p. {FLIP:g}; lam = {LAM:g}, "
            f"$\\mu_j = (j+1)^{{-{DECAY:g}}}$, eta = {STEP_SIZE:g}, "
            f"{settings.n_steps} steps from W = 0; "
            f"beta = {format_list(beta_curve.betas)} at n = {beta_curve.sizes[0]} "
            f"({beta_curve.n_datasets} data sets x {beta_curve.n_chains} chains per point); "
            f"n = {format_list(n_curve.sizes)} at beta = "
            f"{n_curve.betas[0]:g} ({n_curve.n_datasets} nested data streams x {n_curve.n_chains} chains); "
            "float32.)"
        ),
        predicted=(
            "P(sign f_W != sign f* somewhere on the test grid) non-increasing in beta (n fixed) and in n "
            "(beta fixed), with a positive exponential rate -d log P / d beta and -d log P / d n"
        ),
        measured=f"vs beta: {described(curves['beta'], 'beta')}; vs n: {described(curves['n'], 'n')}",
        tolerance=(
            "data sets are the independent units: every paired increase between adjacent points at most "
            f"t SE and the paired drop P_first - P_last more than t SE above 0, t the Student-t(D - 1) "
            f"one-sided {LEVEL:g} quantile ({curves['beta']['critical_t']:.2f} for the beta curve, D = "
            f"{beta_curve.n_datasets}; {curves['n']['critical_t']:.2f} for the n curve, D = "
            f"{n_curve.n_datasets}); rates with delete-one-data-set jackknife SE, reported"
        ),
        passed=bool(passed),
        details={"curves": curves, "grid_points": int(grid.shape[0]), "n_steps": settings.n_steps},
        figures=(figure,),
    )


def _figure(curves: dict, settings: _Settings, path: Path) -> str:
    figure, axes = new_figure(2, 1, width=4.8, height=3.8)
    panels = (("beta", f"inverse temperature beta (n = {settings.beta_curve.sizes[0]})", True),
              ("n", f"sample size n (beta = {settings.n_curve.betas[0]:g})", False))
    for axis, (key, label, log_x) in zip(axes[0], panels, strict=True):
        curve = curves[key]
        positions = curve["positions"]
        floor = 0.5 / (curve["n_datasets"] * curve["n_chains"])
        x = np.asarray(positions, dtype=float)
        probability = np.asarray(curve["probability"])
        se = np.asarray(curve["se"])
        axis.errorbar(x, np.maximum(probability, floor), yerr=se, fmt="o-", color="tab:blue", capsize=3,
                      label="P(classifier != Bayes on the grid)")
        axis.plot(x, np.maximum(curve["disagreement"], floor), "s--", color="tab:red",
                  label="P(sign f_W(X) != sign f*(X)), X on the grid")
        start = math.log(probability[0] + floor)
        dense = np.linspace(x[0], x[-1], 200)
        axis.plot(dense, np.exp(start - curve["rate"] * (dense - x[0])), ":", color="k",
                  label=f"average rate c = {curve['rate']:.3g} +- {curve['rate_se']:.2g}")
        if log_x:
            axis.set_xscale("log")
        axis.set_yscale("log")
        axis.set_xlabel(label)
        axis.set_ylabel("probability")
        axis.legend(fontsize=6)
    axes[0, 0].set_title("falls with beta")
    axes[0, 1].set_title("falls with n")
    return save_figure(figure, path)
