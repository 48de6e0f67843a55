"""The closed forms and gradient helpers of the vanishing-gradients check (issue 6, item 2).

The check itself runs in tests/test_checks.py; here its ingredients are tested against
quadrature, finite differences, exact gradients of hand-written critics and the Monte Carlo
error of the unbiased MMD estimator.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from measureflow.checks.vanishing_gradients import (
    generator_gradient,
    gp_optimal_slope,
    mmd_generator_gradient,
    segment_mmd2,
    segment_mmd2_gradient,
    translated_segment,
)
from measureflow.generative.gan.losses import critic_loss, gradient_penalty


def _quadrature_segment_mmd2(theta: float, bandwidths, n_nodes: int = 80) -> float:
    """MMD^2 between {0} x U[0, 1] and {theta} x U[0, 1] from its definition, by a tensor
    Gauss-Legendre rule on [0, 1]^2 for E k(X, X'), E k(Y, Y') and E k(X, Y)."""
    nodes, weights = np.polynomial.legendre.leggauss(n_nodes)
    z, w = (nodes + 1) / 2, weights / 2
    dz = z[:, None] - z[None, :]
    ww = w[:, None] * w[None, :]
    total = 0.0
    for h in bandwidths:
        within = float((ww * np.exp(-dz**2 / (2 * h * h))).sum())
        cross = float((ww * np.exp(-(theta**2 + dz**2) / (2 * h * h))).sum())
        total += 2 * within - 2 * cross
    return total


@pytest.mark.parametrize("theta", [0.1, 0.5, 1.0, 3.0])
@pytest.mark.parametrize("bandwidths", [[0.25], [1.0], [0.5, 1.0, 2.0]])
def test_segment_mmd2_matches_quadrature(theta, bandwidths):
    # The integrands are entire functions of (z, z'); an 80-point Gauss-Legendre rule (exact for
    # polynomials of degree 159 per axis) is accurate to round-off for bandwidths >= 0.25
    # (the Taylor coefficients of exp(-t^2 / (2 h^2)) on |t| <= 1 fall below 1e-16 long before
    # degree 159), so only float64 round-off separates the two: 1e-12 is a safe bound.
    expected = _quadrature_segment_mmd2(theta, bandwidths)
    assert segment_mmd2(theta, bandwidths) == pytest.approx(expected, rel=1e-12, abs=1e-14)


@pytest.mark.parametrize("theta", [0.2, 1.0, 2.5])
def test_segment_mmd2_gradient_is_the_derivative(theta):
    # Central differences: truncation eps^2 |f'''| / 6 <= 1e-10 * 6 / 6 for these kernels
    # (|f'''| < 10), round-off 1e-16 / eps = 1e-11; 1e-8 bounds both with room.
    bandwidths, eps = [0.5, 1.0, 2.0], 1e-5
    difference = (segment_mmd2(theta + eps, bandwidths) - segment_mmd2(theta - eps, bandwidths)) / (2 * eps)
    assert segment_mmd2_gradient(theta, bandwidths) == pytest.approx(difference, abs=1e-8)
    assert segment_mmd2(0.0, bandwidths) == 0.0 and segment_mmd2_gradient(0.0, bandwidths) == 0.0


def test_mmd_generator_gradient_is_unbiased():
    # The U-statistic is unbiased for MMD^2 at every theta and the samples are reparametrized,
    # so its theta-derivative is unbiased for d MMD^2 / d theta: R independent replicates, mean
    # within 4 standard errors (false-alarm rate ~6e-5 for a normal mean).
    generator = torch.Generator().manual_seed(0)
    bandwidths, replicates, n = [0.5, 1.0, 2.0], 400, 32
    theta = torch.tensor(1.0, dtype=torch.float64, requires_grad=True)
    draws = torch.tensor([
        mmd_generator_gradient(theta, torch.rand(n, generator=generator, dtype=torch.float64),
                               torch.rand(n, generator=generator, dtype=torch.float64), bandwidths)
        for _ in range(replicates)
    ])
    se = float(draws.std() / math.sqrt(replicates))
    assert abs(float(draws.mean()) - segment_mmd2_gradient(1.0, bandwidths)) < 4 * se
    # The gradient is resolved: the test is not passing on noise alone.
    assert segment_mmd2_gradient(1.0, bandwidths) > 50 * se


@pytest.mark.parametrize(("theta", "gp_weight"), [(1.0, 10.0), (2.0, 10.0), (1.0, 2.0), (0.5, 1.0)])
def test_gp_optimal_slope_maximizes_the_penalized_objective(theta, gp_weight):
    # Among linear critics h_s(x) = -s x_1 the library's WGAN-GP objective on the two segments,
    # E_P h - E_Q h - lambda E (|grad h| - 1)^2 = s theta - lambda (s - 1)^2, is deterministic on
    # any sample (to round-off); its maximizer over a grid of spacing 1e-2 is within half a
    # spacing of s* (s* - 1 = theta / (2 lambda) >= 0.05 here, so the grid resolves it from 1).
    generator = torch.Generator().manual_seed(1)
    n = 64
    real = translated_segment(torch.tensor(0.0, dtype=torch.float64),
                              torch.rand(n, generator=generator, dtype=torch.float64))
    fake = translated_segment(torch.tensor(theta, dtype=torch.float64),
                              torch.rand(n, generator=generator, dtype=torch.float64))
    slopes = np.arange(0.5, 2.0, 1e-2)
    objectives = []
    for s in slopes:
        def critic(x, s=s):
            return -s * x[:, 0]
        loss = critic_loss("wgan-gp", critic(real), critic(fake)) + gp_weight * gradient_penalty(
            critic, real, fake, generator)
        objectives.append(-float(loss))
    exact = slopes * theta - gp_weight * (slopes - 1) ** 2
    measured = torch.tensor(objectives, dtype=torch.float64)
    torch.testing.assert_close(measured, torch.from_numpy(exact), rtol=0, atol=1e-10)
    best = slopes[int(np.argmax(objectives))]
    assert abs(best - gp_optimal_slope(theta, gp_weight)) <= 0.5e-2 + 1e-12


def test_js_gradient_vanishes_with_the_discriminators_confidence_and_wgan_does_not():
    # For h(x) = a - b x_1 the gradients are exact: D(G z) = sigmoid(a - b theta) and
    # d/dtheta E log(1 - D) = b sigmoid(a - b theta) -> 0 as a -> -inf (a confident
    # discriminator), while d/dtheta (-E h) = b for every a.
    theta = torch.tensor(1.0, dtype=torch.float64, requires_grad=True)
    z = torch.rand(16, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    b = 2.0
    for a in (0.0, -5.0, -20.0, -40.0):
        def critic(x, a=a):
            return a - b * x[:, 0]
        expected = b / (1 + math.exp(-(a - b)))
        assert generator_gradient("js", critic, theta, z) == pytest.approx(expected, rel=1e-12)
        assert generator_gradient("wgan-gp", critic, theta, z) == pytest.approx(b, rel=1e-12)
    # b sigmoid(-42) = 1.15e-18: seventeen orders of magnitude below WGAN-GP's b = 2.
    assert generator_gradient("js", lambda x: -40.0 - b * x[:, 0], theta, z) < 2e-18


def test_translated_segment_shape_and_gradient():
    theta = torch.tensor(0.7, dtype=torch.float64, requires_grad=True)
    points = translated_segment(theta, torch.linspace(0, 1, 5, dtype=torch.float64))
    assert points.shape == (5, 2) and points.dtype == torch.float64
    (grad,) = torch.autograd.grad(points[:, 0].sum() + points[:, 1].sum(), theta)
    assert float(grad) == 5.0


def test_bad_inputs_are_rejected():
    with pytest.raises(ValueError, match="bandwidths"):
        segment_mmd2(1.0, [])
    with pytest.raises(ValueError, match="bandwidths"):
        segment_mmd2_gradient(1.0, [1.0, -0.5])
    with pytest.raises(ValueError, match="gp_weight"):
        gp_optimal_slope(1.0, 0.0)
    with pytest.raises(ValueError, match="theta must be 0-d"):
        translated_segment(torch.zeros(2), torch.zeros(3))
