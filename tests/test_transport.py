"""Tests of measureflow.metrics.transport: exact, entropic, sliced, 1-D and Gaussian optimal transport.

Tolerances: exact computations are compared at float64 rounding (rtol 1e-10 leaves a margin of
~1e4 over the ~1e-14 accumulated rounding of sums of at most a few hundred terms); Monte Carlo
estimates at Z_MAX = 5 standard errors (stats_helpers); the Sinkhorn solver's error is bounded
through its stopping rule (see SINKHORN_SLACK).
"""

from __future__ import annotations

import math

import numpy as np
import ot
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from stats_helpers import Z_MAX, assert_within_se, mean_and_cov_se

import measureflow.metrics.transport as transport
from measureflow.metrics.transport import (
    AffineMap,
    barycentric_map,
    gaussian_brenier_map,
    gaussian_w2,
    sinkhorn_divergence,
    sliced_wasserstein,
    transport_plan,
    wasserstein,
    wasserstein_1d,
    wasserstein_1d_grid,
)

F64 = torch.float64
EXACT = {"rtol": 1e-10, "atol": 1e-12}


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def randn(*shape: int, seed: int) -> torch.Tensor:
    return torch.randn(*shape, generator=gen(seed), dtype=F64)


def sinkhorn_slack(tol: float, x: torch.Tensor, y: torch.Tensor, p: float = 2) -> float:
    """Bound on the solver error of one Sinkhorn divergence stopped at marginal error ``tol``.

    The solver stops when the plans' marginals are within total variation ``tol``. Each OT_eps is
    returned as a dual value D <= OT_eps. The Gibbs plan P of the final potentials has primal
    value D + <r - a, f> (r its row marginal), within ``tol osc(f) <= tol max C`` of D, and
    rounding P onto the feasible set moves at most ``tol`` mass, changing <P, C> by at most
    ``2 tol max C`` (Altschuler, Weed, Rigollet 2017, lemma 7): each term is within about
    ``4 tol max C`` of OT_eps and S within ``8 tol max C``. This first-order bound is loose (the
    measured error is second order, orders of magnitude smaller); it is a bound, not a fit.
    """
    both = torch.cat([x, y])
    max_cost = float(torch.cdist(both, both).max()) ** p
    return 8 * tol * max(max_cost, 1.0)


# --------------------------------------------------------------------------------------------------
# exact OT: wasserstein, transport_plan, barycentric_map


@pytest.mark.parametrize("p", [1, 2, 3])
def test_wasserstein_of_a_translate_is_the_shift_length(p):
    # The identity coupling costs |s|^p, and W_p >= W_1 >= |mean difference| = |s|: W_p = |s|.
    x = randn(40, 3, seed=0)
    shift = torch.tensor([0.3, -1.2, 2.0], dtype=F64)
    torch.testing.assert_close(wasserstein(x, x + shift, p=p), shift.norm(), **EXACT)


@pytest.mark.parametrize("p", [1, 2])
def test_wasserstein_in_one_dimension_equals_the_quantile_formula(p):
    x, y = randn(25, seed=1), 2 * randn(40, seed=2) + 0.5
    a = torch.rand(25, generator=gen(3), dtype=F64)
    expected = wasserstein_1d(x, y, p=p, x_weights=a)
    torch.testing.assert_close(wasserstein(x[:, None], y[:, None], p=p, x_weights=a), expected, **EXACT)


def test_wasserstein_between_weighted_diracs_by_hand():
    # One point at the origin against 1/4 at (1, 0) and 3/4 at (0, 2): all mass moves,
    # W_p^p = 1/4 * 1 + 3/4 * 2^p.
    x = torch.zeros(1, 2, dtype=F64)
    y = torch.tensor([[1.0, 0.0], [0.0, 2.0]], dtype=F64)
    w = torch.tensor([1.0, 3.0], dtype=F64)  # normalized inside
    assert float(wasserstein(x, y, p=1, y_weights=w)) == pytest.approx(1.75, rel=1e-12)
    assert float(wasserstein(x, y, p=2, y_weights=w)) == pytest.approx(math.sqrt(3.25), rel=1e-12)
    # On the line: 0.6 at 0 and 0.4 at 3 against 1/2 at 1 and 1/2 at 2. The quantile functions
    # differ by 1 on (0, .5], by 2 on (.5, .6], by 1 on (.6, 1]: W_1 = 1.1, W_2^2 = 1.3.
    x1 = torch.tensor([[0.0], [3.0]], dtype=F64)
    y1 = torch.tensor([[1.0], [2.0]], dtype=F64)
    a = torch.tensor([0.6, 0.4], dtype=F64)
    assert float(wasserstein(x1, y1, p=1, x_weights=a)) == pytest.approx(1.1, rel=1e-12)
    assert float(wasserstein(x1, y1, p=2, x_weights=a)) == pytest.approx(math.sqrt(1.3), rel=1e-12)
    assert float(wasserstein_1d(x1, y1, p=2, x_weights=a)) == pytest.approx(math.sqrt(1.3), rel=1e-12)


def test_wasserstein_follows_dtype_and_takes_numpy():
    x, y = randn(10, 2, seed=4), randn(12, 2, seed=5)
    value = wasserstein(x.float(), y.float())
    assert value.dtype == torch.float32 and value.shape == ()
    torch.testing.assert_close(wasserstein(x.numpy(), y.numpy()), wasserstein(x, y), **EXACT)


def test_wasserstein_gradient_is_the_envelope_gradient():
    # d W_2^2 / d x_i = 2 sum_j P_ij (x_i - y_j) at the optimal plan P (held fixed), and
    # d W_2 = d W_2^2 / (2 W_2).
    x, y = randn(8, 2, seed=6), randn(6, 2, seed=7)
    plan = transport_plan(x, y)
    value = wasserstein(x.requires_grad_(), y)
    value.backward()
    with torch.no_grad():
        expected = 2 * (plan.sum(1, keepdim=True) * x - plan @ y) / (2 * value)
    torch.testing.assert_close(x.grad, expected, **EXACT)


def test_wasserstein_raises_when_the_simplex_stops_early():
    x, y = randn(30, 2, seed=8), randn(30, 2, seed=9)
    with pytest.raises(RuntimeError, match="max_iter=1 pivots"):
        wasserstein(x, y, max_iter=1)


def test_transport_plan_has_the_weights_as_marginals_and_the_optimal_cost():
    x, y = randn(15, 2, seed=10), randn(11, 2, seed=11)
    a = torch.rand(15, generator=gen(12), dtype=F64)
    b = torch.rand(11, generator=gen(13), dtype=F64)
    plan = transport_plan(x, y, p=2, x_weights=a, y_weights=b)
    assert plan.shape == (15, 11) and bool((plan >= 0).all())
    torch.testing.assert_close(plan.sum(1), a / a.sum(), **EXACT)
    torch.testing.assert_close(plan.sum(0), b / b.sum(), **EXACT)
    cost = (plan * torch.cdist(x, y).square()).sum()
    torch.testing.assert_close(cost.sqrt(), wasserstein(x, y, 2, a, b), **EXACT)
    # A vertex of the transport polytope: at most n + m - 1 non-zero entries.
    assert int((plan > 0).sum()) <= 15 + 11 - 1


def test_barycentric_map_of_a_translate_is_the_translation():
    x = randn(20, 2, seed=14)
    shift = torch.tensor([2.0, -1.0], dtype=F64)
    y = (x + shift)[torch.randperm(20, generator=gen(15))]
    torch.testing.assert_close(barycentric_map(x, y), x + shift, **EXACT)


def test_barycentric_map_of_equal_uniform_samples_is_a_permutation():
    x, y = randn(25, 3, seed=16), randn(25, 3, seed=17)
    image = barycentric_map(x, y)
    distance, match = torch.cdist(image, y).min(1)
    assert float(distance.max()) < 1e-12
    assert sorted(match.tolist()) == list(range(25))
    # and it is the optimal one: its cost is W_2^2
    torch.testing.assert_close((x - image).square().sum(1).mean(), wasserstein(x, y).square(), **EXACT)


def test_barycentric_map_of_a_zero_weight_point_is_nan():
    x, y = randn(4, 2, seed=18), randn(5, 2, seed=19)
    image = barycentric_map(x, y, x_weights=torch.tensor([1.0, 0.0, 1.0, 1.0]))
    assert bool(image[1].isnan().all()) and bool(image[[0, 2, 3]].isfinite().all())


# --------------------------------------------------------------------------------------------------
# the Sinkhorn divergence


POT_STOP = 1e-12  # POT's stopping rule: Euclidean norm of the column-marginal error


def entropic_ot_by_pot(x, y, a, b, eps, p):
    """OT_eps = <P, C> + eps KL(P | a (x) b) with POT's log-domain Sinkhorn plan (a warning, hence
    an error here, if it does not reach POT_STOP)."""
    cost = torch.cdist(x, y).pow(p).numpy()
    plan = ot.sinkhorn(a.numpy(), b.numpy(), cost, reg=eps, method="sinkhorn_log",
                       stopThr=POT_STOP, numItermax=20_000)
    product = np.outer(a.numpy(), b.numpy())
    support = plan > 0
    kl = np.sum(plan[support] * np.log(plan[support] / product[support]))
    return float(np.sum(plan * cost) + eps * kl), torch.from_numpy(plan)


@pytest.mark.parametrize(("p", "eps"), [(2, 2.0), (2, 1.0), (1, 0.5), (1.5, 0.5)])
def test_sinkhorn_divergence_matches_pot_for_the_same_definition(p, eps):
    x, y = randn(30, 2, seed=20), 1.5 * randn(20, 2, seed=21) + 0.5
    a = torch.rand(30, generator=gen(22), dtype=F64) + 0.1
    b = torch.rand(20, generator=gen(23), dtype=F64) + 0.1
    a, b = a / a.sum(), b / b.sum()
    expected = (entropic_ot_by_pot(x, y, a, b, eps, p)[0]
                - 0.5 * entropic_ot_by_pot(x, x, a, a, eps, p)[0]
                - 0.5 * entropic_ot_by_pot(y, y, b, b, eps, p)[0])
    tol = 1e-9
    value = sinkhorn_divergence(x, y, eps, p, a, b, tol=tol)
    # POT's plans have a TV marginal error <= sqrt(30) * POT_STOP (Cauchy-Schwarz), ours <= tol.
    assert abs(float(value) - expected) <= sinkhorn_slack(tol + math.sqrt(30) * POT_STOP, x, y, p)


def test_sinkhorn_divergence_default_tolerance_is_close_to_converged():
    x, y = randn(40, 2, seed=24), randn(40, 2, seed=25) + 0.5
    tight = sinkhorn_divergence(x, y, 0.1, tol=1e-9)
    assert abs(float(sinkhorn_divergence(x, y, 0.1)) - float(tight)) <= sinkhorn_slack(1e-2, x, y)


def test_sinkhorn_divergence_is_zero_on_equal_and_positive_on_different_measures():
    x = randn(30, 2, seed=26)
    tol = 1e-8
    assert abs(float(sinkhorn_divergence(x, x, 1.0, tol=tol))) <= sinkhorn_slack(tol, x, x)
    y = x + 0.3
    assert float(sinkhorn_divergence(x, y, 1.0, tol=tol)) > sinkhorn_slack(tol, x, y)


def test_sinkhorn_divergence_tends_to_w2_squared():
    # For uniform measures on n points, OT_eps(a, b) lies in [W, W + eps log n] (the KL of a
    # coupling is in [0, log n]) and OT_eps(a, a) in [0, eps log n]: |S_eps - W_2^2| <= eps log n.
    # (For measures with densities the bias is O(eps log(1/eps)) instead.)
    n = 30
    x, y = randn(n, 2, seed=27), randn(n, 2, seed=28) + torch.tensor([1.0, 0.0], dtype=F64)
    w2_squared = float(wasserstein(x, y)) ** 2
    errors = []
    for eps in [1.0, 0.1, 0.01]:
        tol = 1e-4  # small eps converges slowly: Sinkhorn's rate degrades like exp(-spread / eps)
        value = float(sinkhorn_divergence(x, y, eps, tol=tol, n_iters=20_000))
        errors.append(abs(value - w2_squared))
        assert errors[-1] <= eps * math.log(n) + sinkhorn_slack(tol, x, y)
    assert errors[0] > errors[1] > errors[2]


def test_sinkhorn_divergence_gradient_is_the_envelope_gradient():
    # dS/dx_i = sum_j P_ij dC(x_i, y_j)/dx_i - sum_k Q_ik dC(x_i, x_k)/dx_i with P, Q the entropic
    # plans of (a, b) and (a, a) (Feydy et al. 2019, prop. 2), here from POT converged to 1e-12;
    # for C = |x - y|^2 the derivative is 2 (x_i - y_j). Our error: potentials at marginal error
    # 1e-11 change each plan entry by that relative amount, times |dC| <= 2 max|x - y| ~ 20.
    x, y = randn(12, 2, seed=29), randn(9, 2, seed=30) + 1.0
    a, b = torch.full((12,), 1 / 12, dtype=F64), torch.full((9,), 1 / 9, dtype=F64)
    eps = 0.5
    _, plan_xy = entropic_ot_by_pot(x, y, a, b, eps, 2)
    _, plan_xx = entropic_ot_by_pot(x, x, a, a, eps, 2)
    expected = 2 * (plan_xy.sum(1, keepdim=True) * x - plan_xy @ y) - 2 * (
        plan_xx.sum(1, keepdim=True) * x - plan_xx @ x)
    leaf = x.clone().requires_grad_()
    sinkhorn_divergence(leaf, y, eps, tol=1e-11).backward()
    torch.testing.assert_close(leaf.grad, expected, rtol=0, atol=1e-8)


def test_sinkhorn_divergence_follows_dtype_and_warns_when_not_converged():
    x, y = randn(20, 2, seed=31), randn(20, 2, seed=32)
    assert sinkhorn_divergence(x.float(), y.float(), 0.5).dtype == torch.float32
    with pytest.warns(RuntimeWarning, match="did not converge in n_iters=1"):
        sinkhorn_divergence(x, y, 0.01, n_iters=1)


def test_sinkhorn_divergence_ignores_zero_weight_points():
    x, y = randn(12, 2, seed=35), randn(10, 2, seed=36)
    weights = torch.ones(12, dtype=F64)
    weights[[2, 7]] = 0
    keep = weights > 0
    tol = 1e-10
    dropped = sinkhorn_divergence(x[keep], y, 1.0, tol=tol)
    # Both runs stop at marginal error 1e-10: they agree within twice the solver slack.
    zeroed = sinkhorn_divergence(x, y, 1.0, x_weights=weights, tol=tol)
    assert abs(float(zeroed) - float(dropped)) <= 2 * sinkhorn_slack(tol, x, y)


def test_sinkhorn_divergence_blocks_agree_with_one_block(monkeypatch):
    x, y = randn(50, 3, seed=33), randn(40, 3, seed=34)
    whole = sinkhorn_divergence(x, y, 0.5, p=1.5, tol=1e-9)
    monkeypatch.setattr(transport, "_BLOCK_ELEMENTS", 7 * 40)  # 7-row blocks, a ragged last one
    torch.testing.assert_close(sinkhorn_divergence(x, y, 0.5, p=1.5, tol=1e-9), whole, **EXACT)


# --------------------------------------------------------------------------------------------------
# sliced Wasserstein


def test_sliced_w2_between_translates_integrates_over_the_sphere():
    # y = x + m exactly, so each projection has W_2^2 = (theta . m)^2 with no sampling noise:
    # the estimate is the mean of L draws of (theta . m)^2, whose mean is |m|^2 / d and whose
    # variance is |m|^4 Var(theta_1^2) = |m|^4 (3 / (d (d + 2)) - 1 / d^2) for theta uniform on
    # the sphere (E theta_1^4 = 3 / (d (d + 2))).
    d, n_projections = 5, 400
    x = randn(300, d, seed=35)
    m = torch.tensor([1.0, -2.0, 0.5, 0.0, 1.5], dtype=F64)
    truth = float(m.square().sum()) / d
    se = float(m.square().sum()) * math.sqrt((3 / (d * (d + 2)) - 1 / d**2) / n_projections)
    for directions in ["random", "quasi"]:  # the quasi error is below the random one's SE
        estimate = float(sliced_wasserstein(x, x + m, 2, n_projections, directions, gen(36))) ** 2
        assert_within_se(estimate, truth, se, f"SW_2^2 of a translate ({directions})")


def test_sliced_w2_between_gaussian_samples():
    # X ~ N(0, I), Y ~ N(m, I) independent, n each, in d dims: population SW_2^2 = |m|^2 / d.
    # Per direction, W_2^2 of the projected samples = (theta . (ybar - xbar))^2 + W_2^2 of the
    # centred projections. Averaged over theta: |m|^2/d + 2 m.delta/d + |delta|^2/d + centred part,
    # delta = (ybar - xbar) - m ~ N(0, 2 I / n). Fluctuations: directions (as in the test above,
    # variance |m|^4 (3/(d(d+2)) - 1/d^2) / L) and 2 m.delta / d (variance 8 |m|^2 / (n d^2)).
    # Upward bias: |delta|^2/d has mean 2/n; the centred part has mean (2/n) sum_i Var(Z_(i))
    # for standard normal order statistics, which is below 2 * 5 / n at n = 4000 (the sum grows
    # like log log n; simulated ~3.6 here). Bias bound 12/n, added to the Z_MAX * SE band.
    d, n, n_projections = 2, 4000, 1000
    m = torch.tensor([2.0, 0.0], dtype=F64)
    x = randn(n, d, seed=37)
    y = randn(n, d, seed=38) + m
    m2 = float(m.square().sum())
    truth = m2 / d
    se = math.sqrt(m2**2 * (3 / (d * (d + 2)) - 1 / d**2) / n_projections + 8 * m2 / (n * d**2))
    bias = 12 / n
    for directions in ["random", "quasi"]:
        estimate = float(sliced_wasserstein(x, y, 2, n_projections, directions, gen(39))) ** 2
        assert abs(estimate - truth) <= Z_MAX * se + bias, (directions, estimate, truth, se)


def test_quasi_directions_have_lower_variance_than_random():
    # Over generator seeds with the samples fixed (translates: only the directions vary). Measured
    # over 200 seeds at d = 5, L = 256: Var(random) / Var(quasi) ~ 17. With 20 seeds each the
    # ratio of sample variances is ~17 F(19, 19); F(19, 19) < 0.24 with probability 1e-3, so
    # asking for a ratio above 3 fails a correct implementation less than once in a thousand.
    d = 5
    x = randn(200, d, seed=40)
    m = torch.ones(d, dtype=F64)
    draws = {
        kind: torch.tensor([float(sliced_wasserstein(x, x + m, 2, 256, kind, gen(seed))) ** 2
                            for seed in range(20)])
        for kind in ["random", "quasi"]
    }
    assert float(draws["random"].var() / draws["quasi"].var()) > 3


def test_sliced_in_one_dimension_is_the_exact_distance():
    # For d = 1 the directions are +-1 and W_p is invariant under x -> -x.
    x, y = randn(30, 1, seed=41), randn(45, 1, seed=42)
    a = torch.rand(30, generator=gen(43), dtype=F64)
    for p in [1, 2]:
        torch.testing.assert_close(
            sliced_wasserstein(x, y, p, 8, generator=gen(44), x_weights=a),
            wasserstein_1d(x, y, p, x_weights=a), **EXACT)


def test_sliced_projection_chunks_agree_with_one_chunk(monkeypatch):
    x, y = randn(40, 3, seed=45), randn(30, 3, seed=46)
    whole = sliced_wasserstein(x, y, 2, 50, generator=gen(47))
    monkeypatch.setattr(transport, "_PROJECTION_ELEMENTS", 7 * 70)  # 7 projections per chunk
    torch.testing.assert_close(sliced_wasserstein(x, y, 2, 50, generator=gen(47)), whole, **EXACT)


def test_sliced_is_reproducible_and_follows_dtype():
    x, y = randn(20, 3, seed=48).float(), randn(20, 3, seed=49).float()
    first = sliced_wasserstein(x, y, generator=gen(50), directions="quasi")
    assert first.dtype == torch.float32
    assert float(first) == float(sliced_wasserstein(x, y, generator=gen(50), directions="quasi"))


# --------------------------------------------------------------------------------------------------
# one dimension


@pytest.mark.parametrize("p", [1, 1.5, 2])
def test_wasserstein_1d_matches_a_brute_force_linear_program(p):
    x, y = randn(17, seed=51), 1.3 * randn(23, seed=52) + 0.4
    a = torch.rand(17, generator=gen(53), dtype=F64)
    b = torch.rand(23, generator=gen(54), dtype=F64)
    for weights in [(None, None), (a, None), (a, b)]:
        wa = (weights[0] / weights[0].sum()).numpy() if weights[0] is not None else np.full(17, 1 / 17)
        wb = (weights[1] / weights[1].sum()).numpy() if weights[1] is not None else np.full(23, 1 / 23)
        cost = np.abs(x.numpy()[:, None] - y.numpy()[None, :]) ** p
        expected = ot.emd2(wa, wb, cost) ** (1 / p)
        value = wasserstein_1d(x, y, p, *weights)
        assert float(value) == pytest.approx(expected, rel=1e-10)


def test_wasserstein_1d_shapes():
    x, y = randn(6, seed=55), randn(4, seed=56)
    torch.testing.assert_close(wasserstein_1d(x[:, None], y[:, None]), wasserstein_1d(x, y), **EXACT)
    assert wasserstein_1d(x, y).shape == ()
    with pytest.raises(ValueError, match=r"shape \(n,\) or \(n, 1\), got shape \(6, 2\)"):
        wasserstein_1d(torch.zeros(6, 2), y)


# --------------------------------------------------------------------------------------------------
# densities on a grid


def cells(lo: float, hi: float, n: int) -> torch.Tensor:
    """Centres of n equal cells on [lo, hi]."""
    h = (hi - lo) / n
    return torch.linspace(lo + h / 2, hi - h / 2, n, dtype=F64)


def test_grid_w2_between_uniform_densities_is_exact():
    # Piecewise-constant densities are represented exactly. U[0, 1] vs U[2, 4]: the quantile
    # functions are u and 2 + 2u, so W_1 = int (2 + u) = 5/2 and W_2^2 = int (2 + u)^2 = 19/3.
    grid = cells(-1.0, 5.0, 60)
    p = ((grid > 0) & (grid < 1)).double()
    q = 3 * ((grid > 2) & (grid < 4)).double()  # unnormalized on purpose
    assert float(wasserstein_1d_grid(grid, p, q, p=1)) == pytest.approx(2.5, rel=1e-12)
    assert float(wasserstein_1d_grid(grid, p, q, p=2)) == pytest.approx(math.sqrt(19 / 3), rel=1e-12)


def test_grid_w_between_shifted_densities_and_across_a_gap():
    grid = cells(0.0, 10.0, 200)
    density = torch.exp(-((grid - 3) ** 2))
    for p in [1, 2, 3]:  # a shift by k cells of width h moves every quantile by k h
        value = wasserstein_1d_grid(grid, density, density.roll(7), p=p)
        assert float(value) == pytest.approx(7 * 0.05, rel=1e-10)
    # p = U[0, 1] + U[3, 4] (halves), q = U[1, 3]: F^-1 - G^-1 = -1 on (0, 1/2), +1 on (1/2, 1),
    # through the empty cells of p; W_p = 1 for every p.
    two = (((grid > 0) & (grid < 1)) | ((grid > 3) & (grid < 4))).double()
    middle = ((grid > 1) & (grid < 3)).double()
    for p in [1, 2, 4]:
        assert float(wasserstein_1d_grid(grid, two, middle, p=p)) == pytest.approx(1.0, rel=1e-12)


def test_grid_w2_between_gaussians_converges_at_second_order():
    # W_2^2(N(m1, s1^2), N(m2, s2^2)) = (m1 - m2)^2 + (s1 - s2)^2. Sampling the densities at cell
    # centres makes the cell masses midpoint-rule approximations: the CDFs are off by O(h^2), hence
    # W_2 too. Measured order from h = 0.2, 0.1, 0.05 must be 2 within 0.3; the tails beyond
    # [-12, 12] carry < 1e-11 of the mass.
    m1, s1, m2, s2 = 0.3, 1.0, -0.5, 1.7
    exact = math.sqrt((m1 - m2) ** 2 + (s1 - s2) ** 2)
    errors = []
    for n in [120, 240, 480]:
        grid = cells(-12.0, 12.0, n)
        p = torch.exp(-0.5 * ((grid - m1) / s1) ** 2)
        q = torch.exp(-0.5 * ((grid - m2) / s2) ** 2)
        errors.append(abs(float(wasserstein_1d_grid(grid, p, q)) - exact))
    orders = [math.log2(errors[i] / errors[i + 1]) for i in range(2)]
    assert all(abs(order - 2) < 0.3 for order in orders), (errors, orders)
    assert errors[-1] < 0.05**2  # h^2 at the finest grid, an O(1)-constant sanity bound


def test_grid_w_batches_over_leading_dimensions():
    grid = cells(-5.0, 5.0, 100)
    means = torch.tensor([-1.0, 0.0, 2.0], dtype=F64)
    p = torch.exp(-0.5 * (grid - means[:, None]) ** 2)
    q = torch.exp(-0.5 * (grid / 1.5) ** 2).expand(3, -1)
    batched = wasserstein_1d_grid(grid, p, q)
    assert batched.shape == (3,)
    single = torch.stack([wasserstein_1d_grid(grid, p[i], q[i]) for i in range(3)])
    torch.testing.assert_close(batched, single, **EXACT)


# --------------------------------------------------------------------------------------------------
# Gaussians


def random_covariance(d: int, seed: int) -> torch.Tensor:
    factor = randn(d, d, seed=seed)
    return factor @ factor.T + 0.1 * torch.eye(d, dtype=F64)


def test_gaussian_w2_commuting_case_closed_form():
    # Commuting covariances S_k = Q diag(l_k) Q^T: W_2^2 = |m1 - m2|^2 + sum (sqrt(l1) - sqrt(l2))^2.
    q, _ = torch.linalg.qr(randn(3, 3, seed=57))
    l1 = torch.tensor([0.5, 1.0, 4.0], dtype=F64)
    l2 = torch.tensor([2.0, 1.0, 0.25], dtype=F64)
    m1, m2 = torch.tensor([1.0, 0.0, -1.0], dtype=F64), torch.tensor([0.0, 2.0, 0.0], dtype=F64)
    s1, s2 = q @ torch.diag(l1) @ q.T, q @ torch.diag(l2) @ q.T
    expected = ((m1 - m2).square().sum() + (l1.sqrt() - l2.sqrt()).square().sum()).sqrt()
    torch.testing.assert_close(gaussian_w2(m1, s1, m2, s2), expected, **EXACT)
    # one dimension: sqrt((m1 - m2)^2 + (s1 - s2)^2)
    value = gaussian_w2(torch.tensor([1.0]), torch.tensor([[4.0]]), torch.tensor([0.0]),
                        torch.tensor([[9.0]]))
    assert float(value) == pytest.approx(math.sqrt(2.0), rel=1e-6)


def test_gaussian_w2_is_symmetric_and_batches():
    m = randn(4, 3, seed=58)
    covs = torch.stack([random_covariance(3, 60 + i) for i in range(4)])
    forward = gaussian_w2(m[:2], covs[:2], m[2:], covs[2:])
    torch.testing.assert_close(forward, gaussian_w2(m[2:], covs[2:], m[:2], covs[:2]), **EXACT)
    assert forward.shape == (2,)
    torch.testing.assert_close(forward[1], gaussian_w2(m[1], covs[1], m[3], covs[3]), **EXACT)
    assert float(gaussian_w2(m[0], covs[0], m[0], covs[0])) < 1e-6  # floor sqrt(eps tr S) ~ 1e-7


def test_brenier_map_pushes_n1_to_n2_exactly():
    s1, s2 = random_covariance(3, 64), random_covariance(3, 65)
    m1, m2 = randn(3, seed=66), randn(3, seed=67)
    t = gaussian_brenier_map(m1, s1, m2, s2)
    a = t.matrix
    torch.testing.assert_close(a, a.T, **EXACT)
    assert float(torch.linalg.eigvalsh(a).min()) > 0
    torch.testing.assert_close(a @ s1 @ a, s2, rtol=1e-9, atol=1e-10)
    torch.testing.assert_close(t(m1[None])[0], m2, **EXACT)
    assert set(t.to_dict()) == {"matrix", "shift"}


def test_brenier_map_samples_and_the_w2_identity():
    # For X ~ N(m1, S1), T(X) ~ N(m2, S2) and E|X - T(X)|^2 = W_2^2 (T is the optimal map).
    # Mean/covariance SEs from stats_helpers; the SE of the mean of Z = |X - T(X)|^2 is
    # std(Z) / sqrt(n) (sample standard deviation, n = 20000 draws).
    d, n = 3, 20_000
    s1, s2 = random_covariance(d, 68), random_covariance(d, 69)
    m1, m2 = randn(d, seed=70), randn(d, seed=71)
    t = gaussian_brenier_map(m1, s1, m2, s2)
    x = m1 + randn(n, d, seed=72) @ torch.linalg.cholesky(s1).T
    image = t(x)
    mean_se, cov_se = mean_and_cov_se(image, s2)
    assert_within_se(image.mean(0), m2, mean_se, "mean of T(X)")
    assert_within_se(torch.cov(image.T), s2, cov_se, "covariance of T(X)")
    z = (x - image).square().sum(1)
    w2_squared = float(gaussian_w2(m1, s1, m2, s2)) ** 2
    assert_within_se(z.mean(), w2_squared, z.std() / math.sqrt(n), "E|X - T(X)|^2 vs W_2^2")


def test_brenier_map_needs_positive_definite_s1():
    singular = torch.diag(torch.tensor([1.0, 0.0], dtype=F64))
    with pytest.raises(ValueError, match="S1 must be positive definite"):
        gaussian_brenier_map(torch.zeros(2), singular, torch.zeros(2), torch.eye(2))
    with pytest.raises(ValueError, match=r"x must have shape \(n, 2\)"):
        AffineMap(torch.eye(2), torch.zeros(2))(torch.zeros(3, 3))


# --------------------------------------------------------------------------------------------------
# properties (hypothesis)

coordinates = st.floats(-1.0, 1.0, allow_nan=False, width=64)


@st.composite
def point_cloud_pairs(draw, max_points: int = 6, max_dim: int = 3):
    d = draw(st.integers(1, max_dim))
    n = draw(st.integers(1, max_points))
    m = draw(st.integers(1, max_points))
    x = torch.tensor(draw(st.lists(st.lists(coordinates, min_size=d, max_size=d), min_size=n, max_size=n)),
                     dtype=F64)
    y = torch.tensor(draw(st.lists(st.lists(coordinates, min_size=d, max_size=d), min_size=m, max_size=m)),
                     dtype=F64)
    seed = draw(st.integers(0, 2**31 - 1))
    return x, y, torch.randperm(n, generator=gen(seed))


def metric_property_violations(distance, x, y, permutation, atol):
    """The properties that fail among: non-negativity, symmetry, zero on identical inputs,
    invariance to permuting samples (an empty list when all hold within ``atol``)."""
    forward = float(distance(x, y))
    checks = {
        "non-negative": forward >= -atol,
        "symmetric": abs(forward - float(distance(y, x))) <= atol,
        "zero on identical inputs": abs(float(distance(x, x))) <= atol,
        "permutation invariant": abs(forward - float(distance(x[permutation], y))) <= atol,
    }
    return [name for name, holds in checks.items() if not holds]


@settings(max_examples=25, deadline=None)
@given(point_cloud_pairs())
def test_properties_of_wasserstein(case):
    x, y, permutation = case
    # The LP optimum is unique; the solver's value differs only by rounding of n m terms <= 12^p.
    for p in [1, 2]:
        violations = metric_property_violations(lambda u, v, p=p: wasserstein(u, v, p), x, y, permutation,
                                                atol=1e-9)
        assert not violations, (p, violations)


@settings(max_examples=25, deadline=None)
@given(point_cloud_pairs())
def test_properties_of_sliced_wasserstein(case):
    x, y, permutation = case
    # Same seed, same directions: each 1-D term is exactly symmetric and permutation invariant.
    violations = metric_property_violations(lambda u, v: sliced_wasserstein(u, v, 2, 16, generator=gen(0)),
                                            x, y, permutation, atol=1e-9)
    assert not violations, violations


@settings(max_examples=25, deadline=None)
@given(point_cloud_pairs(max_dim=1))
def test_properties_of_wasserstein_1d(case):
    x, y, permutation = case
    violations = metric_property_violations(lambda u, v: wasserstein_1d(u, v, 1.5), x, y, permutation,
                                            atol=1e-9)
    assert not violations, violations


@settings(max_examples=25, deadline=None)
@given(point_cloud_pairs(max_points=5, max_dim=2))
def test_properties_of_sinkhorn_divergence(case):
    x, y, permutation = case
    tol = 1e-8
    # Points in [-1, 1]^2: max cost <= 8 = 2 eps, so the kernel exp(-C / eps) >= exp(-2) couples all
    # points and Sinkhorn converges fast (well-separated clusters at small eps are the slow case);
    # the solver slack is 8 * 1e-8 * 8 < 1e-6.
    violations = metric_property_violations(lambda u, v: sinkhorn_divergence(u, v, 4.0, tol=tol), x, y,
                                            permutation, atol=sinkhorn_slack(tol, x, y))
    assert not violations, violations


# --------------------------------------------------------------------------------------------------
# bad input


def test_bad_inputs_raise_clear_errors():
    x, y = randn(5, 2, seed=73), randn(4, 2, seed=74)
    with pytest.raises(ValueError, match=r"x must have shape \(n, d\), got shape \(5,\)"):
        wasserstein(x[:, 0], y)
    with pytest.raises(ValueError, match="same dimension d"):
        sliced_wasserstein(x, torch.zeros(4, 3, dtype=F64))
    with pytest.raises(ValueError, match="y contains 1 NaN"):
        sinkhorn_divergence(x, torch.tensor([[0.0, float("nan")]]), 0.1)
    for eps in [0.0, -1.0, float("inf")]:
        with pytest.raises(ValueError, match="eps must be finite and positive"):
            sinkhorn_divergence(x, y, eps)
    for function in [wasserstein, transport_plan, barycentric_map, sliced_wasserstein, wasserstein_1d]:
        with pytest.raises(ValueError, match=r"p must be a finite number >= 1.*got 0.5"):
            function(x[:, :1], y[:, :1], 0.5)
    with pytest.raises(TypeError, match="p must be a real number"):
        wasserstein(x, y, "2")
    with pytest.raises(ValueError, match="x_weights must be non-negative"):
        wasserstein(x, y, 2, torch.tensor([1.0, -1.0, 1.0, 1.0, 1.0]))
    with pytest.raises(ValueError, match=r"y_weights must have shape \(4,\)"):
        sinkhorn_divergence(x, y, 0.1, y_weights=torch.ones(5))
    with pytest.raises(ValueError, match=r"directions must be one of \('random', 'quasi'\), got 'sobol'"):
        sliced_wasserstein(x, y, directions="sobol")
    with pytest.raises(ValueError, match="n_projections must be a positive integer, got 0"):
        sliced_wasserstein(x, y, n_projections=0)
    with pytest.raises(ValueError, match="scaling must lie in"):
        sinkhorn_divergence(x, y, 0.1, scaling=1.5)


def test_bad_grid_inputs_raise_clear_errors():
    grid = cells(0.0, 1.0, 10)
    ones = torch.ones(10, dtype=F64)
    with pytest.raises(ValueError, match=r"strictly increasing, got grid\[4\] = 0.45 >= grid\[5\] = 0.45"):
        wasserstein_1d_grid(torch.cat([grid[:5], grid[4:9]]), ones, ones)
    with pytest.raises(ValueError, match=r"shape \(\.\.\., 10\)"):
        wasserstein_1d_grid(grid, torch.ones(9), torch.ones(9))
    with pytest.raises(ValueError, match="q_density has negative values"):
        wasserstein_1d_grid(grid, ones, -ones)
    with pytest.raises(ValueError, match="p_density has zero total mass"):
        wasserstein_1d_grid(grid, 0 * ones, ones)


def test_bad_gaussian_inputs_raise_clear_errors():
    eye = torch.eye(2, dtype=F64)
    zero = torch.zeros(2, dtype=F64)
    with pytest.raises(ValueError, match="S1 must be symmetric"):
        gaussian_w2(zero, torch.tensor([[1.0, 0.5], [0.0, 1.0]]), zero, eye)
    with pytest.raises(ValueError, match="S2 must be positive semi-definite.*-1"):
        gaussian_w2(zero, eye, zero, torch.diag(torch.tensor([1.0, -1.0])))
    with pytest.raises(ValueError, match=r"S2 must have shape \(\.\.\., 2, 2\)"):
        gaussian_w2(zero, eye, zero, torch.eye(3))
    with pytest.raises(ValueError, match="m1 contains 1 NaN"):
        gaussian_w2(torch.tensor([0.0, float("nan")]), eye, zero, eye)


def test_star_import_exports_the_public_names():
    namespace: dict = {}
    exec("from measureflow.metrics.transport import *", namespace)
    assert set(transport.__all__) <= set(namespace)
