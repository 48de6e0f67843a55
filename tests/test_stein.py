"""Kernel Stein discrepancy: the Stein kernel's algebra against autograd, the U-statistic's mean
against a quadrature value of KSD^2, and the automatic step size of unadjusted samplers."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from stats_helpers import assert_within_se

import measureflow as mf
from measureflow.metrics.stein import imq_stein_kernel, ksd, ksd_squared

F64 = torch.float64


def autograd_stein_kernel(x, y, score, c=1.0, b=-0.5):
    """k_p(x, y) from its definition, with every derivative of k = (c^2 + |x-y|^2)^b by autograd."""
    x = x.clone().requires_grad_(True)
    y = y.clone().requires_grad_(True)
    k = (c**2 + (x - y).square().sum()) ** b
    grad_x, grad_y = torch.autograd.grad(k, (x, y), create_graph=True)
    trace = sum(torch.autograd.grad(grad_y[i], x, retain_graph=True)[0][i] for i in range(x.shape[0]))
    sx, sy = score(x.detach()), score(y.detach())
    return float((sx @ sy * k + sx @ grad_y + sy @ grad_x + trace).detach())


def test_stein_kernel_matches_its_definition():
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(4, 3, generator=g, dtype=F64), torch.randn(5, 3, generator=g, dtype=F64)

    def score(z):
        return -z * torch.tensor([1.0, 2.0, 0.5], dtype=F64) + 0.3

    for c, b in ((1.0, -0.5), (0.7, -0.3)):
        matrix = imq_stein_kernel(x, score(x), y, score(y), c, b)
        expected = torch.tensor([[autograd_stein_kernel(xi, yj, score, c, b) for yj in y] for xi in x],
                                dtype=F64)
        assert torch.allclose(matrix, expected, atol=1e-12, rtol=1e-12)


def population_ksd2(mean, std, c=1.0, b=-0.5, n_nodes=300):
    """E_{x, x' ~ N(mean, std^2)} k_p(x, x') for p = N(0, 1) in 1-D, by Gauss-Hermite product
    quadrature. The IMQ kernel has complex poles at |x - x'| = i c, which slows the rule's
    convergence: at q = p (exact value 0) it gives 2e-6 with 80 nodes, 5e-9 with 150 and 3e-13
    with 300, far below the Monte Carlo standard errors compared with it."""
    nodes, weights = np.polynomial.hermite.hermgauss(n_nodes)
    points = torch.tensor(mean + std * math.sqrt(2) * nodes, dtype=F64)[:, None]
    w = torch.tensor(weights / math.sqrt(math.pi), dtype=F64)
    matrix = imq_stein_kernel(points, -points, points, -points, c, b)
    return float(w @ matrix @ w)


@pytest.mark.parametrize("mean,std", [(0.0, 1.0), (0.5, 1.0), (0.0, 0.6)])
def test_unbiased_ksd2_matches_quadrature(mean, std):
    # Mean of 200 U-statistics of n = 100 exact draws from q = N(mean, std^2) against p = N(0, 1);
    # standard error from their spread. At q = p the population value is exactly 0.
    truth = population_ksd2(mean, std)
    if mean == 0.0 and std == 1.0:
        assert abs(truth) < 1e-12
    g = torch.Generator().manual_seed(1)
    values = torch.tensor([
        float(ksd_squared(mean + std * torch.randn(100, 1, generator=g, dtype=F64), lambda z: -z,
                          unbiased=True))
        for _ in range(200)
    ], dtype=F64)
    assert_within_se(values.mean(), truth, values.std() / math.sqrt(200), f"KSD^2 of N({mean}, {std}^2)")


def test_v_statistic_adds_the_diagonal_and_blocks_do_not_matter():
    g = torch.Generator().manual_seed(2)
    x = torch.randn(301, 2, generator=g, dtype=F64) * 1.3

    def score(z):
        return -z

    n = x.shape[0]
    diagonal = imq_stein_kernel(x, score(x), x, score(x)).diagonal().sum()
    u, v = ksd_squared(x, score, unbiased=True), ksd_squared(x, score)
    assert float(v) == pytest.approx(float(u * (n - 1) / n + diagonal / n**2), rel=1e-12)
    assert float(ksd_squared(x, score, block_size=7)) == pytest.approx(float(v), rel=1e-12)
    assert float(ksd(x, score)) == pytest.approx(math.sqrt(float(v)), rel=1e-12)
    # Score values may be given instead of the function.
    assert float(ksd(x, score(x))) == float(ksd(x, score))


def test_ksd_ranks_biased_samples():
    # ULA on N(0, 1) with step h has the stationary law N(0, 1 / (1 - h/2)): larger h, larger KSD.
    g = torch.Generator().manual_seed(3)
    values = [float(ksd(torch.randn(2000, 1, generator=g, dtype=F64) / math.sqrt(1 - h / 2), lambda z: -z))
              for h in (0.01, 0.5, 1.0, 1.5)]
    assert values == sorted(values), values


def test_auto_step_size_avoids_both_failure_modes():
    # Chains started at x = 4 on N(0, 1): a step of 1e-4 has moved them by ~1e-4 * 500 * 4 in the
    # pilots (still near 4), a step of 1 leaves ULA's stationary variance at 2. The search must
    # rank both below a moderate step and pick one in between.
    target = mf.targets.Gaussian(torch.zeros(1, dtype=F64), torch.eye(1, dtype=F64))
    result = mf.sample(target, "ula", n_chains=400, n_steps=200, burn_in=0, step_size="auto",
                       init=torch.full((1, 1), 4.0, dtype=F64), progress=False, seed=0)
    search = result.step_size_search
    assert search.grid == mf.samplers.DEFAULT_STEP_SIZE_GRID
    assert 1e-2 <= result.step_size <= 0.32
    scores = dict(zip(search.grid, search.ksd_squared, strict=True))
    assert scores[1e-4] > scores[result.step_size] and scores[1.0] > scores[result.step_size]
    assert result.to_dict()["step_size_search"]["step_size"] == result.step_size
    again = mf.sample(target, "ula", n_chains=400, n_steps=200, burn_in=0, step_size="auto",
                      init=torch.full((1, 1), 4.0, dtype=F64), progress=False, seed=0)
    assert again.step_size_search == search


def test_auto_step_size_for_sgld_and_a_diverging_grid():
    data = mf.data.breast_cancer(seed=0)
    target = mf.targets.LogisticRegression(data.X_train, data.y_train, prior_std=1.0)
    result = mf.sample(target, "sgld", n_chains=50, n_steps=20, burn_in=0, step_size="auto",
                       step_size_grid=(1e-5, 1e-4, 1e-3, 10.0), n_pilot_steps=100, n_pilot_chains=50,
                       batch_size=32, progress=False)
    # h = 10 blows up: NaN/inf (scored inf) or astronomically large.
    assert result.step_size_search.ksd_squared[-1] > 1e6
    assert result.step_size in (1e-5, 1e-4, 1e-3)


@pytest.mark.parametrize(
    "call,message",
    [
        (lambda: ksd(torch.randn(5, 2), lambda z: z[:, :1]), "shape of x"),
        (lambda: ksd(torch.randn(5, 2), lambda z: z * float("nan")), "NaN"),
        (lambda: ksd(torch.randn(5, 2), lambda z: -z, b=-1.5), r"\(-1, 0\)"),
        (lambda: ksd(torch.randn(5, 2), lambda z: -z, c=0.0), "positive"),
        (lambda: ksd_squared(torch.randn(1, 2), lambda z: -z, unbiased=True), "at least 2"),
        (lambda: mf.sample(mf.targets.DoubleWell(), "mala", step_size="auto"), "sets its own"),
        (lambda: mf.sample(mf.targets.DoubleWell(), "ula", step_size="fast"), "'auto'"),
        (lambda: mf.sample(mf.targets.DoubleWell(), "ula", step_size="auto", step_size_grid=()),
         "at least one"),
        (lambda: mf.sample(mf.targets.DoubleWell(), "ula", step_size="auto",
                           step_size_grid=(5.0, 10.0), progress=False), "every pilot run diverged"),
    ],
)
def test_bad_input(call, message):
    with pytest.raises((ValueError, TypeError), match=message):
        call()
