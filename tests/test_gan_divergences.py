"""The f-GAN table against its defining identities, closed forms and quadrature; mode diagnostics."""

from __future__ import annotations

import math

import pytest
import torch

from measureflow.generative.gan import (
    F_DIVERGENCES,
    FDivergence,
    f_divergence,
    mode_diagnostics,
    variational_bound,
)
from measureflow.generative.gan.divergences import log_density_ratio

GRID = torch.linspace(-14.0, 14.0, 14_001, dtype=torch.float64)
WEIGHTS = torch.full_like(GRID, float(GRID[1] - GRID[0]))
# Two Gaussians whose ratio p/q stays bounded enough for every divergence in the table (Pearson
# chi^2 needs 2 s_q^2 > s_p^2).
M_P, S_P, M_Q, S_Q = 0.8, 0.9, 0.0, 1.2


def _log_normal(x, m, s):
    return -0.5 * ((x - m) / s) ** 2 - math.log(s) - 0.5 * math.log(2 * math.pi)


LOG_P, LOG_Q = _log_normal(GRID, M_P, S_P), _log_normal(GRID, M_Q, S_Q)


@pytest.mark.parametrize("name", F_DIVERGENCES)
def test_table_rows_satisfy_fenchel_equality_and_f_of_one_is_zero(name):
    # f(1) = 0 (gan: f(1) = -log 4, the offset of its value 2 JS - log 4); Fenchel-Young with
    # equality at t = f'(u): f*(f'(u)) = u f'(u) - f(u); f'(u) by
    # central differences (step 1e-6, error ~1e-10) equals the tabulated optimal critic; and the
    # activation maps every real v into the domain of f* (f* finite there).
    row = F_DIVERGENCES[name]
    u = torch.logspace(-2, 2, 41, dtype=torch.float64)
    f_one = -math.log(4) if name == "gan" else 0.0
    assert float(row.f(torch.ones(1, dtype=torch.float64))) == pytest.approx(f_one, abs=1e-15)
    t = row.optimal_critic(u)
    assert torch.allclose(row.conjugate(t), u * t - row.f(u), rtol=1e-10, atol=1e-10)
    derivative = (row.f(u + 1e-6 * u) - row.f(u - 1e-6 * u)) / (2e-6 * u)
    assert torch.allclose(derivative, t, rtol=1e-6, atol=1e-8)
    v = torch.linspace(-20, 20, 81, dtype=torch.float64)
    assert bool(torch.isfinite(row.conjugate(row.activation(v))).all())
    # Fenchel-Young inequality f*(t) >= u t - f(u) for every (u, t) pair on a grid.
    uu, tt = torch.meshgrid(u, row.activation(v), indexing="ij")
    assert bool((row.conjugate(tt) >= uu * tt - row.f(uu) - 1e-9).all())


@pytest.mark.parametrize("name", F_DIVERGENCES)
def test_closed_form_conjugate_of_the_activation(name):
    # f*(g_f(v)) in closed form equals the composition in float64 where the composition is
    # accurate (|v| <= 10; beyond, 1 - g(v) cancels for Hellinger), and stays finite in float32
    # far beyond (v = +-80), where composing overflows or rounds g_f(v) onto the edge of f*'s
    # domain for some rows.
    row = F_DIVERGENCES[name]
    v = torch.linspace(-10, 10, 81, dtype=torch.float64)
    assert torch.allclose(row.activated_conjugate(v), row.conjugate(row.activation(v)), rtol=1e-9, atol=1e-9)
    wide = torch.linspace(-80, 80, 161, dtype=torch.float32)
    assert bool(torch.isfinite(row.activated_conjugate(wide)).all())


@pytest.mark.parametrize("name", F_DIVERGENCES)
def test_log_density_ratio_inverts_the_optimal_critic(name):
    # Round trip: for a grid of ratios u, the raw critic output at the optimum, v* = g_f^{-1}(f'(u)),
    # found by bisection on the activation (independent of the closed forms), maps back to log u.
    # 200 halvings of [-300, 300] end at float64 resolution (pearson's v* = 2(u - 1) reaches 198);
    # g_f' >= 0.01 at every v* these u reach, so the error in v* is below 1e-12 and 1e-10 leaves room.
    row = F_DIVERGENCES[name]
    u = torch.logspace(-2, 2, 41, dtype=torch.float64)
    t = row.optimal_critic(u)
    low, high = torch.full_like(t, -300.0), torch.full_like(t, 300.0)
    for _ in range(200):
        middle = 0.5 * (low + high)
        below = row.activation(middle) < t
        low, high = torch.where(below, middle, low), torch.where(below, high, middle)
    v_star = 0.5 * (low + high)
    assert torch.allclose(row.activation(v_star), t, rtol=0, atol=1e-12)
    assert torch.allclose(log_density_ratio(v_star, name), torch.log(u), rtol=0, atol=1e-10)
    assert log_density_ratio(v_star, row).shape == u.shape


def test_log_density_ratio_edges_and_refusals():
    # Pearson's u = 1 + v/2 is no ratio for v < -2: its nearest ratio 0 gives log u = -inf, not nan.
    v = torch.tensor([-5.0, -2.0, -1.0], dtype=torch.float64)
    out = log_density_ratio(v, "pearson")
    assert out[:2].tolist() == [-math.inf, -math.inf] and out[2] == pytest.approx(math.log(0.5))
    bare = FDivergence(*[getattr(F_DIVERGENCES["kl"], field) for field in
                         ("name", "f", "conjugate", "activation", "optimal_critic", "activated_conjugate")])
    with pytest.raises(ValueError, match="no log_ratio"):
        log_density_ratio(v, bare)
    with pytest.raises(ValueError, match="unknown f-divergence"):
        log_density_ratio(v, "tv")


def test_quadrature_matches_closed_forms():
    # Gaussians: KL = log(s_q/s_p) + (s_p^2 + (m_p - m_q)^2)/(2 s_q^2) - 1/2; squared Hellinger
    # (with f = (sqrt u - 1)^2, no 1/2) = 2 (1 - BC), BC = sqrt(2 s_p s_q/(s_p^2 + s_q^2))
    # exp(-(m_p - m_q)^2 / (4 (s_p^2 + s_q^2))); reverse KL = KL(Q || P). The trapezoid rule on
    # 14,001 points over [-14, 14] is accurate far below 1e-8 for these smooth integrands.
    kl = math.log(S_Q / S_P) + (S_P**2 + (M_P - M_Q) ** 2) / (2 * S_Q**2) - 0.5
    reverse = math.log(S_P / S_Q) + (S_Q**2 + (M_P - M_Q) ** 2) / (2 * S_P**2) - 0.5
    bc = math.sqrt(2 * S_P * S_Q / (S_P**2 + S_Q**2))
    bc *= math.exp(-((M_P - M_Q) ** 2) / (4 * (S_P**2 + S_Q**2)))
    assert float(f_divergence(LOG_P, LOG_Q, WEIGHTS, "kl")) == pytest.approx(kl, abs=1e-8)
    assert float(f_divergence(LOG_P, LOG_Q, WEIGHTS, "reverse-kl")) == pytest.approx(reverse, abs=1e-8)
    assert float(f_divergence(LOG_P, LOG_Q, WEIGHTS, "hellinger")) == pytest.approx(2 * (1 - bc), abs=1e-8)
    # js is 2 JS = KL(P || M) + KL(Q || M) and gan is that minus log 4, both by direct quadrature.
    log_m = torch.logaddexp(LOG_P, LOG_Q) - math.log(2)
    two_js = float((WEIGHTS * (LOG_P.exp() * (LOG_P - log_m) + LOG_Q.exp() * (LOG_Q - log_m))).sum())
    assert float(f_divergence(LOG_P, LOG_Q, WEIGHTS, "js")) == pytest.approx(two_js, abs=1e-8)
    assert float(f_divergence(LOG_P, LOG_Q, WEIGHTS, "gan")) == pytest.approx(two_js - math.log(4), abs=1e-8)


@pytest.mark.parametrize("name", F_DIVERGENCES)
def test_bound_is_tight_at_the_optimal_critic_and_lower_elsewhere(name):
    # With the activated critic T* = f'(p/q), E_P[T*] - E_Q[f*(T*)] = D_f exactly (quadrature);
    # estimated from 200,000 samples of each it agrees within 4 standard errors (from the two
    # samples' variances); a perturbed critic gives a strictly smaller value.
    row = F_DIVERGENCES[name]
    divergence = float(f_divergence(LOG_P, LOG_Q, WEIGHTS, name))
    t_star = row.optimal_critic(torch.exp(LOG_P - LOG_Q))
    exact_bound = float((WEIGHTS * (LOG_P.exp() * t_star - LOG_Q.exp() * row.conjugate(t_star))).sum())
    assert exact_bound == pytest.approx(divergence, abs=1e-8)
    g = torch.Generator().manual_seed(3)
    n = 200_000
    x_p = M_P + S_P * torch.randn(n, generator=g, dtype=torch.float64)
    x_q = M_Q + S_Q * torch.randn(n, generator=g, dtype=torch.float64)

    def critic_output(x, shift=0.0):
        t = row.optimal_critic(torch.exp(_log_normal(x, M_P, S_P) - _log_normal(x, M_Q, S_Q)))
        # Invert the activation numerically by bisection on v, so the raw critic v gives T exactly.
        low, high = torch.full_like(t, -60.0), torch.full_like(t, 60.0)
        for _ in range(200):
            middle = 0.5 * (low + high)
            below = row.activation(middle) < t
            low, high = torch.where(below, middle, low), torch.where(below, high, middle)
        return 0.5 * (low + high) + shift

    estimate = float(variational_bound(critic_output(x_p), critic_output(x_q), name))
    terms_p = row.activation(critic_output(x_p))
    terms_q = row.conjugate(row.activation(critic_output(x_q)))
    se = math.sqrt(float(terms_p.var()) / n + float(terms_q.var()) / n)
    assert abs(estimate - divergence) < 4 * se
    worse = float(variational_bound(critic_output(x_p, 0.3), critic_output(x_q, 0.3), name))
    assert worse < estimate


def test_variational_bound_rejects_bad_input():
    with pytest.raises(ValueError, match="unknown f-divergence"):
        variational_bound(torch.zeros(2), torch.zeros(2), "tv")
    with pytest.raises(ValueError, match="1-D"):
        variational_bound(torch.zeros(2, 1), torch.zeros(2), "kl")


def test_mode_diagnostics_counts_modes_quality_and_balance():
    # 8 modes on a ring of radius 2, std 0.02: 100 exact draws in each of 5 modes, 10 in a sixth
    # (below min_count 20), 40 far-off samples. Covered: 5; high quality: 510 / 550; histogram KL
    # to uniform computed by hand.
    g = torch.Generator().manual_seed(0)
    angles = torch.arange(8) * 2 * math.pi / 8
    centers = 2 * torch.stack([torch.cos(angles), torch.sin(angles)], 1)
    parts = [centers[k] + 0.02 * torch.randn(100, 2, generator=g) for k in range(5)]
    parts.append(centers[5] + 0.02 * torch.randn(10, 2, generator=g))
    parts.append(torch.full((40, 2), 10.0))
    report = mode_diagnostics(torch.cat(parts), centers, 0.02)
    # A 2-D Gaussian draw lies beyond 3 std with probability exp(-9/2) = 0.011: up to a few of the
    # 510 can fall out; each mode keeps >= 90 of its 100 with overwhelming probability.
    assert report.n_covered == 5
    assert report.counts[:5].min() >= 90 and report.counts[6:].sum() == 0
    assert report.high_quality_fraction == pytest.approx(float(report.counts.sum()) / 550)
    histogram = report.counts.double() / report.counts.sum()
    expected = float(sum(h * math.log(8 * h) for h in histogram.tolist() if h > 0))
    assert report.kl_to_uniform == pytest.approx(expected)
    assert report.to_dict()["n_modes"] == 8
    nothing = mode_diagnostics(torch.full((5, 2), 50.0), centers, 0.02)
    assert nothing.n_covered == 0 and nothing.high_quality_fraction == 0 and math.isinf(nothing.kl_to_uniform)
    # Non-finite rows (a diverged generator) are low-quality samples, not an error.
    broken = torch.cat([torch.tensor([[0.0, 0.0]] * 30), torch.full((10, 2), float("nan")),
                        torch.tensor([[float("inf"), 0.0]] * 10)])
    report = mode_diagnostics(broken, torch.tensor([[0.0, 0.0], [5.0, 0.0]]), std=0.2)
    assert report.counts.tolist() == [30, 0] and report.high_quality_fraction == 30 / 50
    with pytest.raises(ValueError, match="agree"):
        mode_diagnostics(torch.zeros(3, 3), centers, 0.02)
    with pytest.raises(ValueError, match="std"):
        mode_diagnostics(torch.zeros(3, 2), centers, 0.0)
