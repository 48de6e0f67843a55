r"""Check: mean-field Langevin dynamics. The noisy mean-field flow of a two-layer network's neurons
forgets its initialization (a wide and a concentrated start reach the same free energy), decreases
the free energy along the way, and the finite-M system's stationary risk decreases in M toward its
mean-field limit.

Claim (seed 001, "平均場解析" with "ノイズありのダイナミクス: McKean-Vlasov過程", and the noisy
objective (1/n) sum_i l_i(f_W(x_i)) + (lambda_0 / 2) ||W||_F^2 at temperature 1/beta; Mei, Montanari
& Nguyen 2018; Nitanda, Wu & Suzuki 2022; Chizat 2022). The neurons theta_j = (a_j, w_j) of
f(x) = (1/M) sum_j a_j tanh(w_j.x) follow d theta = [v_rho(theta) - lambda_0 theta] dt +
sqrt(2 / beta) dB, the Wasserstein gradient flow (with noise for the entropy) of the free energy

    F[rho] = R[rho] + (lambda_0 / 2) E_rho |theta|^2 - H[rho] / beta,

with weight decay on the whole neuron (see :mod:`measureflow.nets.mean_field_langevin`). F is
strictly convex in rho, so it has one minimizer rho* and F(rho_t) decreases to F(rho*) from any
start; and the M-neuron system is Langevin dynamics on R^{M(1+d)} with the unique stationary law
~ exp(-beta M L(Theta)), L = R + (lambda_0 / 2M) ||Theta||^2, whose risk tends to R(rho*) as M grows.

Set-up. n points on the unit circle (d = 2), y = 2 sin(pi x_1), squared loss, tanh (smooth, odd),
lambda_0 = 0.5, beta = 5, Euler-Maruyama step h = 0.1
(:func:`measureflow.nets.mean_field_langevin.mean_field_langevin` driven by
:func:`measureflow.flows.run`). Independent replicates run as one tensor program
(``n_replicas``). Two starts: wide, theta ~ N(0, 2^2 I) (F_0 = 2.2-2.8 over seeds 0-2), and
concentrated, theta ~ N(0, 0.05^2 I) (the text's small initialization; F_0 = 1.5-2.0), against a
stationary F of 0.2-0.7. The concentrated start sits at the origin: an off-centre cluster must first
send half its mass to the mirror mode -theta (tanh is odd, so theta and -theta make the same
neuron), which takes about 15 time units here, too long for the quick size. Every record (every 0.5
time units) gives F_hat = R + penalty - H_hat / beta per replicate
(:func:`~measureflow.nets.mean_field_langevin.replica_free_energies`), H_hat the k-NN
(Kozachenko-Leonenko, k = 5) entropy of the replicate's M neurons.

Verdict (false-alarm rate 1e-3 for each statement).
1. Same limit. Each replicate's F_hat averaged over its stationary tail t >= t_burn; the two starts'
   means differ by at most t_{2B-2} SE, SE = sqrt(s_w^2 / B + s_c^2 / B) from the spread of the B
   replicates per start, t the two-sided Student quantile (pooled variance, 2B - 2 dof).
2. Monotone up to noise. The noise of one record: sigma = the standard deviation of F_hat over the
   stationary tail records of all replicates (around each start's mean): the fluctuation of the
   particle measure plus the error of the k-NN entropy; its parts (risk, penalty, H_hat / beta) are
   reported. If E F_hat(t) is non-increasing, F_hat(t) - F_hat(s) <= eps_t - eps_s <= 2 max |eps| for
   s < t, and by the union bound over the N records (Gaussian noise of sd sigma),
   P(max |eps| > z sigma) <= 2 N (1 - Phi(z)) = 1e-3. So every replicate's largest rise
   max_{s < t} F_hat(t) - F_hat(s) must be <= 2 z sigma. The bound assumes the noise at every record
   is at most the stationary sigma. Early on it is larger (seed 0, wide start: sd over replicates
   0.16 at t = 0 from the penalty of the wide cloud, 0.015 at t = 2, against sigma = 0.006), but
   there F_hat falls faster than the noise: expected falls per record 1.1, 0.52, 0.26, 0.13, 0.06,
   0.02 against increment sds 0.06, 0.07, 0.02, 0.014, 0.007, 0.015 over t = 0 to 3.
3. Risk decreasing in M. At widths M_k (R_k = P / M_k replicates each, P neurons in all; start
   N(0, I / (beta lambda_0)), the stationary law without the risk), the stationary risk r_k = mean
   over replicates of the tail-averaged risk, SE from their spread. Propagation of chaos (Chen, Ren
   & Wang 2022; Suzuki, Wu & Nitanda 2023) puts the M-neuron system within O(1/M) of rho*^(x M), so
   r_k = R_oo + C / M_k + O(M_k^-2). For the squared loss the excess is (1/2n) sum_i Var f_M(x_i),
   the variance of the network's O(M^-1/2) fluctuation about f_rho* (> 0), plus the O(1/M) shift of
   E f_M times the residual, whose sign theory does not fix; in the linear-Gaussian case (f = mean
   theta, n = 1) the shift vanishes and C = 1 / (2 beta (1 + lambda_0)) exactly. So the sign C > 0
   is the measured claim. Weighted least squares of r_k on 1 / M_k (weights 1 / SE_k^2) must give
   (a) C / SE_C >= z_{1e-3} (one-sided); (b) chi^2 of the residuals within its 1 - 1e-3 quantile
   (the 1/M law describes the grid); (c) agreement with the large-M reference, the stationary risk
   of the 2B replicates of width M_ref of statements 1-2 (both starts):
   |r_ref - (R_oo + C / M_ref)| <= t_nu SE_diff, nu by Welch-Satterthwaite from the reference's
   2B - 1 dof. Reported beside C: C_iid = (1/2n) sum_i Var_rho(a tanh(w.x_i)) over the reference
   neurons, the excess if the M neurons were independent draws from rho*, for scale only: the
   interaction changes it (in the linear case C = C_iid lambda_0 / (1 + lambda_0)) and the shift
   term adds to it with either sign (seed 0: C = 0.097 +- 0.021 at quick size, 0.154 +- 0.007 at
   full size, against C_iid = 0.105).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from scipy import stats

from measureflow._core import make_generator
from measureflow.checks._figures import format_list, new_figure, save_figure
from measureflow.checks._two_layer_runs import sphere_points, teacher
from measureflow.checks.base import CheckResult
from measureflow.flows import run as run_flow
from measureflow.nets.mean_field_langevin import mean_field_langevin, replica_free_energies

__all__ = ["run"]

NAME = "mean-field-langevin"
WEIGHT_DECAY = 0.5  # lambda_0
BETA = 5.0
STEP = 0.1  # h, in flow time
AMPLITUDE = 2.0  # y = AMPLITUDE sin(pi x_1)
WIDE_STD = 2.0
CONCENTRATED_STD = 0.05
RECORD_TIME = 0.5  # flow time between records
FALSE_ALARM = 1e-3


@dataclass(frozen=True)
class _Settings:
    n_points: int
    width: int  # M of statements 1-2, the large-M reference of statement 3
    n_replicas: int  # B per start
    horizon: float
    burn_in: float
    widths: tuple[int, ...]  # the grid of statement 3
    grid_neurons: int  # P: neurons per grid width (R_k = P / M_k replicates)
    grid_horizon: float
    grid_burn_in: float


SETTINGS = {
    "quick": _Settings(n_points=16, width=400, n_replicas=6, horizon=16.0, burn_in=6.0,
                       widths=(8, 16, 32, 64, 128), grid_neurons=2048, grid_horizon=30.0, grid_burn_in=6.0),
    "full": _Settings(n_points=16, width=1000, n_replicas=10, horizon=30.0, burn_in=10.0,
                      widths=(8, 16, 32, 64, 128, 256), grid_neurons=8192, grid_horizon=60.0,
                      grid_burn_in=10.0),
}


def _flow(functional, x0: torch.Tensor, horizon: float, generator: torch.Generator):
    n_steps = round(horizon / STEP)
    return run_flow(functional, x0, STEP, n_steps, generator=generator,
                    record_every=round(RECORD_TIME / STEP), n_keep=x0.shape[0], record_values=False,
                    progress=False)


def _parts_along(functional, flow) -> dict[str, np.ndarray]:
    """Free energy and parts of every replicate at every record: arrays (T, B)."""
    rows = [replica_free_energies(functional, snapshot) for snapshot in flow.snapshots]
    return {key: np.array([[getattr(part, key) for part in row] for row in rows])
            for key in ("value", "risk", "penalty", "entropy_term")}


def _weighted_fit(inverse_width: np.ndarray, values: np.ndarray, se: np.ndarray):
    """r = R_oo + C / M by weighted least squares: (coefficients, covariance, chi^2)."""
    design = np.stack([np.ones_like(inverse_width), inverse_width], 1)
    weights = se**-2
    covariance = np.linalg.inv(design.T @ (weights[:, None] * design))
    coefficients = covariance @ design.T @ (weights * values)
    chi2 = float(np.sum(weights * (values - design @ coefficients) ** 2))
    return coefficients, covariance, chi2


def run(size: str, seed: int, device: str, out_dir: Path) -> CheckResult:
    settings = SETTINGS[size]
    generator = make_generator(seed, device)
    x = sphere_points(settings.n_points, 2, generator, device)
    y = AMPLITUDE * teacher(x)
    width, replicas = settings.width, settings.n_replicas
    functional = mean_field_langevin(x, y, weight_decay=WEIGHT_DECAY, beta=BETA, n_replicas=replicas)
    shape = (replicas * width, 3)
    starts = {
        "wide": WIDE_STD * torch.randn(shape, generator=generator, dtype=torch.float64, device=device),
        "concentrated": CONCENTRATED_STD * torch.randn(shape, generator=generator, dtype=torch.float64,
                                                       device=device),
    }
    curves, tails = {}, {}
    for name, x0 in starts.items():
        flow = _flow(functional, x0, settings.horizon, generator)
        curves[name] = {"times": flow.times.numpy(), **_parts_along(functional, flow)}
        tail = flow.times.numpy() >= settings.burn_in
        tails[name] = {key: values[tail] for key, values in curves[name].items() if key != "times"}
        if name == "wide":
            stationary_neurons = flow.particles
    # 1. The same stationary free energy: replicate means over the tail, pooled two-sample t.
    means = {name: tail["value"].mean(0) for name, tail in tails.items()}
    difference = float(means["wide"].mean() - means["concentrated"].mean())
    se_difference = math.sqrt(sum(float(m.var(ddof=1)) / replicas for m in means.values()))
    t_same = float(stats.t.ppf(1 - FALSE_ALARM / 2, 2 * replicas - 2))
    same = abs(difference) <= t_same * se_difference
    # 2. Monotone up to the noise of one record.
    noise = {key: float(np.sqrt(np.mean(np.concatenate(
        [(tail[key] - tail[key].mean()).ravel() ** 2 for tail in tails.values()]))))
        for key in ("value", "risk", "penalty", "entropy_term")}
    n_records = sum(curve["value"].size for curve in curves.values())
    z_rise = float(stats.norm.ppf(1 - FALSE_ALARM / (2 * n_records)))
    allowed_rise = 2 * z_rise * noise["value"]
    rises = {name: float(np.max(curve["value"] - np.minimum.accumulate(curve["value"], axis=0)))
             for name, curve in curves.items()}
    monotone = max(rises.values()) <= allowed_rise
    # 3. Stationary risk against M.
    grid = _risk_grid(x, y, settings, generator, device)
    coefficients, covariance, chi2 = _weighted_fit(1 / grid["widths"], grid["risk"], grid["se"])
    limit, slope = float(coefficients[0]), float(coefficients[1])
    slope_se = math.sqrt(covariance[1, 1])
    z_slope = float(stats.norm.ppf(1 - FALSE_ALARM))
    chi2_max = float(stats.chi2.ppf(1 - FALSE_ALARM, len(grid["widths"]) - 2))
    reference = np.concatenate([tail["risk"].mean(0) for tail in tails.values()])  # (2B,)
    reference_se = float(reference.std(ddof=1) / math.sqrt(reference.size))
    at_reference = np.array([1.0, 1.0 / width])
    prediction_var = float(at_reference @ covariance @ at_reference)
    reference_gap = float(reference.mean()) - float(at_reference @ coefficients)
    gap_se = math.sqrt(reference_se**2 + prediction_var)
    welch_dof = gap_se**4 / (reference_se**4 / (reference.size - 1))
    t_reference = float(stats.t.ppf(1 - FALSE_ALARM / 2, welch_dof))
    trend = slope / slope_se >= z_slope and chi2 <= chi2_max and abs(reference_gap) <= t_reference * gap_se
    c_iid = _iid_excess(functional.terms[0].single, x, stationary_neurons)

    limit_f = float(np.mean([m.mean() for m in means.values()]))
    figure = _figure(curves, limit_f, allowed_rise, grid, coefficients, reference, width,
                     out_dir / f"{NAME}.png")
    final_means = {name: float(m.mean()) for name, m in means.items()}
    return CheckResult(
        name=NAME,
        claim=(
            "Mean-field Langevin dynamics of a two-layer tanh network (neurons moved by the risk's "
            "velocity, weight decay $\\lambda_0 |\\theta|^2 / 2$ and noise at temperature $1/\\beta$) "
            "forgets its start: a wide and a concentrated initialization reach the same free energy "
            "$F = R + \\lambda_0 E|\\theta|^2 / 2 - H / \\beta$, $F$ decreases along the flow, and the "
            "stationary risk of $M$ neurons decreases in $M$ toward its mean-field limit. "
            f"(n = {settings.n_points} points on the circle, $y = {AMPLITUDE:g} \\sin(\\pi x_1)$, lambda_0 = "
            f"{WEIGHT_DECAY:g}, beta = {BETA:g}, h = {STEP:g}; M = {width}, {replicas} replicates per start "
            f"over $t \\le {settings.horizon:g}$; risk at M = {format_list(settings.widths)} with "
            f"{settings.grid_neurons} neurons per width over $t \\le {settings.grid_horizon:g}$; float64.)"
        ),
        predicted=(
            "1. F_wide - F_concentrated = 0 at stationarity; 2. no rise of F beyond the estimator's noise; "
            "3. risk(M) = R_oo + C / M with C > 0, meeting the large-M reference"
        ),
        measured=(
            f"1. tail F: wide {final_means['wide']:.4f}, concentrated {final_means['concentrated']:.4f}, "
            f"difference {difference:.2e} +- {se_difference:.1e} (t = {difference / se_difference:.2f}); "
            f"2. largest rise {max(rises.values()):.4f} (wide {rises['wide']:.4f}, concentrated "
            f"{rises['concentrated']:.4f}) against 2 z sigma = {allowed_rise:.4f} (sigma = "
            f"{noise['value']:.4f}: risk {noise['risk']:.4f}, penalty {noise['penalty']:.4f}, H/beta "
            f"{noise['entropy_term']:.4f}); F from {curves['wide']['value'][0].mean():.3f} (wide) and "
            f"{curves['concentrated']['value'][0].mean():.3f} (concentrated) to {final_means['wide']:.3f}; "
            f"3. risk {format_list(grid['risk'].tolist(), 5)} at M = {format_list(settings.widths)}: "
            f"R_oo = {limit:.4f} +- {math.sqrt(covariance[0, 0]):.4f}, C = {slope:.4f} +- {slope_se:.4f} "
            f"(z = {slope / slope_se:.1f}; C_iid = {c_iid:.4f}), chi^2 = {chi2:.2f} on "
            f"{len(grid['widths']) - 2} dof; reference at M = {width}: {reference.mean():.4f} vs fit "
            f"{at_reference @ coefficients:.4f} (t = {reference_gap / gap_se:.2f})"
        ),
        tolerance=(
            f"false-alarm rate {FALSE_ALARM:g} each: 1. |difference| <= t_{2 * replicas - 2} SE = "
            f"{t_same:.2f} SE from the replicate spread; 2. every replicate's rise max_(s<t) F(t) - F(s) <= "
            f"2 z sigma, z = {z_rise:.2f} (union bound over {n_records} records), sigma the stationary "
            f"sd of one record; 3. C / SE_C >= {z_slope:.2f}, chi^2 <= {chi2_max:.2f}, |reference - fit| <= "
            f"t_{welch_dof:.0f} SE = {t_reference:.2f} SE"
        ),
        passed=bool(same and monotone and trend),
        details={
            "same_limit": {"tail_means": {name: m.tolist() for name, m in means.items()},
                           "difference": difference, "se": se_difference, "critical": t_same, "passed": same},
            "monotone": {"rises": rises, "noise": noise, "z": z_rise, "allowed_rise": allowed_rise,
                         "n_records": n_records, "passed": monotone},
            "risk_vs_width": {"widths": settings.widths, "risk": grid["risk"].tolist(),
                              "se": grid["se"].tolist(), "replicates": grid["replicates"],
                              "limit": limit, "slope": slope, "slope_se": slope_se, "chi2": chi2,
                              "chi2_max": chi2_max, "reference": float(reference.mean()),
                              "reference_se": reference_se, "reference_gap": reference_gap, "gap_se": gap_se,
                              "critical": t_reference, "c_iid": c_iid, "passed": trend},
            "times": curves["wide"]["times"].tolist(),
            "free_energy_mean": {name: curve["value"].mean(1).tolist() for name, curve in curves.items()},
        },
        figures=(figure,),
    )


def _risk_grid(x, y, settings: _Settings, generator, device) -> dict:
    """Stationary risk at each width of the grid: replicate means of the tail-averaged risk."""
    risks, errors, counts = [], [], []
    for width in settings.widths:
        replicas = settings.grid_neurons // width
        functional = mean_field_langevin(x, y, weight_decay=WEIGHT_DECAY, beta=BETA, n_replicas=replicas)
        x0 = torch.randn(replicas * width, 3, generator=generator, dtype=torch.float64, device=device)
        flow = _flow(functional, x0 / math.sqrt(BETA * WEIGHT_DECAY), settings.grid_horizon, generator)
        tail = flow.snapshots[(flow.times >= settings.grid_burn_in).to(flow.snapshots.device)]
        per_replica = torch.stack([functional.terms[0].replica_risks(snapshot) for snapshot in tail]).mean(0)
        risks.append(float(per_replica.mean()))
        errors.append(float(per_replica.std() / math.sqrt(replicas)))
        counts.append(replicas)
    return {"widths": np.array(settings.widths, dtype=float), "risk": np.array(risks), "se": np.array(errors),
            "replicates": counts}


def _iid_excess(risk, x: torch.Tensor, neurons: torch.Tensor) -> float:
    """(1/2n) sum_i Var_rho(a sigma(w.x_i)) over the given neurons: the 1/M risk excess of i.i.d. neurons."""
    terms = risk.activation(x @ neurons[:, 1:].T) * neurons[:, 0]  # (n, M)
    return float(terms.var(1).mean() / 2)


def _figure(curves, limit_f, allowed_rise, grid, coefficients, reference, width, path: Path) -> str:
    figure, axes = new_figure(3, 1, width=4.6, height=3.7)
    left, middle, right = axes[0, 0], axes[0, 1], axes[0, 2]
    colors = {"wide": "tab:blue", "concentrated": "tab:red"}
    for name, curve in curves.items():
        times = curve["times"]
        left.plot(times, curve["value"] - limit_f, color=colors[name], linewidth=0.5, alpha=0.4)
        left.plot(times, curve["value"].mean(1) - limit_f, color=colors[name], linewidth=1.5,
                  label=f"{name} start")
        for key, style in (("risk", "-"), ("penalty", "--"), ("entropy_term", ":")):
            middle.plot(times, curve[key].mean(1), style, color=colors[name],
                        label=f"{key.replace('_term', ' -H/beta')} ({name})")
    left.axhspan(-allowed_rise, allowed_rise, color="0.85", label="+- allowed rise 2 z sigma")
    left.set_yscale("symlog", linthresh=allowed_rise)
    left.set_xlabel("flow time t")
    left.set_ylabel(f"F(t) - F_stationary  (F_stationary = {limit_f:.4f})")
    left.set_title(f"F = R + lambda_0 E|theta|^2/2 - H/beta, M = {width}")
    left.legend(fontsize=7)
    middle.set_xlabel("flow time t")
    middle.set_ylabel("part of F (replicate mean)")
    middle.set_title("risk, weight decay, -H/beta")
    middle.legend(fontsize=6)
    widths = grid["widths"]
    right.errorbar(widths, grid["risk"], yerr=grid["se"], fmt="o", color="k", capsize=3,
                   label="stationary risk")
    dense = np.geomspace(widths.min(), width, 100)
    right.plot(dense, coefficients[0] + coefficients[1] / dense, color="tab:green",
               label=f"fit {coefficients[0]:.4f} + {coefficients[1]:.3f} / M")
    right.errorbar([width], [reference.mean()], yerr=[reference.std(ddof=1) / math.sqrt(reference.size)],
                   fmt="s", color="tab:purple", capsize=3, label=f"reference M = {width}")
    right.set_xscale("log", base=2)
    right.set_xlabel("neurons M")
    right.set_ylabel("stationary risk")
    right.set_title("risk decreases in M")
    right.legend(fontsize=7)
    return save_figure(figure, path)
