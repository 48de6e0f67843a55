"""Simulators of measureflow.inference: LV ODE accuracy and batching, noise law, likelihoods, the
Gaussian linear posterior, seeding, NaN rows and input validation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.integrate import solve_ivp

import measureflow as mf
from measureflow.inference import GaussianLinear, LotkaVolterra, StochasticLotkaVolterra

TIMES = np.arange(10) * 2.1


def _reference_solution(theta: np.ndarray) -> np.ndarray:
    """LV on the original (x, y) form by scipy's DOP853 at rtol 1e-11: (20,) as (x_1..x_10, y_1..y_10)."""
    a, b, c, d = theta
    result = solve_ivp(
        lambda t, z: [a * z[0] - b * z[0] * z[1], -c * z[1] + d * z[0] * z[1]],
        (0.0, 20.0), [30.0, 1.0], method="DOP853", rtol=1e-11, atol=1e-14, t_eval=TIMES,
    )
    assert result.success
    return result.y.reshape(-1)


@pytest.fixture(scope="module")
def lv_batch():
    simulator = LotkaVolterra()
    theta = simulator.prior.sample(32, torch.Generator().manual_seed(0))
    return simulator, theta, simulator.solve(theta)


def test_lv_matches_scipy_reference(lv_batch):
    # The reference's own error (rtol 1e-11) is negligible. Ours uses local tolerance 1e-8; the
    # global error then measured 1.2e-6 at worst over 64 draws (docstring), so 1e-5 leaves a
    # factor ~8 and still fails for an error the size of tol=1e-7's (2e-5) or worse.
    simulator, theta, solution = lv_batch
    for i in range(0, 32, 4):
        reference = _reference_solution(theta[i].numpy())
        np.testing.assert_allclose(solution[i].numpy(), reference, rtol=1e-5, atol=0)


def test_lv_batching_does_not_change_a_row(lv_batch):
    # A row alone takes its own (larger) steps; both results are within ~1.2e-6 of the truth, so
    # they agree to ~2.4e-6; 1e-5 allows for the margin above.
    simulator, theta, solution = lv_batch
    for i in (0, 31):
        alone = simulator.solve(theta[i])
        torch.testing.assert_close(alone[0], solution[i], rtol=1e-5, atol=0)


def test_lv_noise_is_lognormal_with_log_sd_0_1(lv_batch):
    simulator, theta, solution = lv_batch
    y = simulator.simulate(theta, torch.Generator().manual_seed(1))
    residual = (torch.log(y) - torch.log(solution.clamp(1e-10, 1e4))).reshape(-1) / 0.1
    n = residual.numel()  # 640 iid N(0, 1) under the claim
    # Sample mean has SE 1/sqrt(n); sample sd has relative SE ~ 1/sqrt(2 n) (normal data); 4 SE each.
    assert abs(float(residual.mean())) < 4 / math.sqrt(n)
    assert abs(float(residual.std()) - 1.0) < 4 / math.sqrt(2 * n)


def test_lv_log_likelihood_equals_direct_formula(lv_batch):
    simulator, theta, solution = lv_batch
    y = simulator.simulate(theta[:8], torch.Generator().manual_seed(2))
    mu = torch.log(solution[:8].clamp(1e-10, 1e4))
    direct = (
        -0.5 * ((torch.log(y) - mu) / 0.1) ** 2 - math.log(0.1 * math.sqrt(2 * math.pi)) - torch.log(y)
    ).sum(-1)
    # Same solution up to the batching agreement (~1e-5 relative in s, i.e. ~1e-5 in log s), which
    # moves each term by |z| * 1e-5 / 0.1 <~ 4e-4; 20 terms -> 1e-2 at the very worst.
    torch.testing.assert_close(simulator.log_likelihood(theta[:8], y), direct, rtol=0, atol=1e-2)
    # One observation shared by all rows broadcasts; a non-positive observation has density 0.
    shared = simulator.log_likelihood(theta[:2], y[0])
    assert shared.shape == (2,)
    bad = y[0].clone()
    bad[3] = -1.0
    assert simulator.log_likelihood(theta[:1], bad).item() == -math.inf


def test_lv_prior_log_prob_is_the_lognormal_density():
    prior = LotkaVolterra().prior
    theta = prior.sample(5, torch.Generator().manual_seed(3))
    log_mean = torch.tensor([-0.125, -3.0, -0.125, -3.0], dtype=torch.float64)
    dist = torch.distributions.LogNormal(log_mean, 0.5)
    torch.testing.assert_close(prior.log_prob(theta), dist.log_prob(theta).sum(-1))
    assert prior.log_prob(torch.tensor([[1.0, -1.0, 1.0, 1.0]])).item() == -math.inf


def test_lv_failed_rows_are_nan_and_the_others_valid(lv_batch):
    simulator, theta, solution = lv_batch
    # A negative beta makes both log-populations grow without bound: finite-time blow-up.
    batch = torch.cat((torch.tensor([[1.0, -1.0, 1.0, 1.0]], dtype=torch.float64), theta[:1]))
    out = simulator.solve(batch)
    assert torch.isnan(out[0]).all()
    assert simulator.failure_count == 1
    torch.testing.assert_close(out[1], solution[0], rtol=1e-5, atol=0)
    # A step limit no row can meet fails every row (by the split path) and NaN passes through
    # simulate and log_likelihood.
    starved = LotkaVolterra(max_num_steps=3)
    assert torch.isnan(starved.simulate(theta[:2], torch.Generator().manual_seed(4))).all()
    assert torch.isnan(starved.log_likelihood(theta[:2], solution[0])).all()
    assert starved.failure_count == 2


def test_simulate_is_seeded():
    for simulator in (LotkaVolterra(), StochasticLotkaVolterra(dt=0.03), GaussianLinear(3)):
        theta = simulator.prior.sample(3, torch.Generator().manual_seed(5))
        first = simulator.simulate(theta, torch.Generator().manual_seed(6))
        again = simulator.simulate(theta, torch.Generator().manual_seed(6))
        other = simulator.simulate(theta, torch.Generator().manual_seed(7))
        assert first.shape == (3, simulator.observation_dim)
        assert torch.equal(first, again)
        assert not torch.equal(first, other)


def test_stochastic_lv_shapes_and_noise_free_limit(lv_batch):
    simulator, theta, solution = lv_batch
    sde = StochasticLotkaVolterra(dt=0.01)
    y = sde.simulate(theta[:16], torch.Generator().manual_seed(8))
    assert y.shape == (16, 20) and torch.isfinite(y).all() and (y >= 0).all()
    assert not sde.has_likelihood
    # sigma = 0 is Euler's method for the ODE: global error O(dt), so dt = 0.001 lands within a few
    # percent of the accurate solution on the first observations (before errors build up).
    euler = StochasticLotkaVolterra(sigma=0.0, dt=0.001).simulate(theta[:4])
    first = [0, 1, 2, 10, 11, 12]
    torch.testing.assert_close(euler[:, first], solution[:4, first], rtol=0.1, atol=0)


def test_gaussian_linear_posterior_matches_conjugate_and_importance_sampling():
    generator = torch.Generator().manual_seed(9)
    matrix = torch.randn(3, 2, generator=generator, dtype=torch.float64)
    simulator = GaussianLinear(prior_scale=1.5, noise_scale=0.7, matrix=matrix)
    theta_true, y = simulator.sample_joint(1, generator)
    mean, cov = simulator.posterior(y[0])
    # Independent: condition the Gaussian joint of (theta, y) (Schur complement form).
    prior_cov = 1.5**2 * torch.eye(2, dtype=torch.float64)
    y_cov = matrix @ prior_cov @ matrix.T + 0.7**2 * torch.eye(3, dtype=torch.float64)
    gain = prior_cov @ matrix.T @ torch.linalg.inv(y_cov)
    torch.testing.assert_close(mean, gain @ y[0])
    torch.testing.assert_close(cov, prior_cov - gain @ matrix @ prior_cov)
    # Self-normalized importance sampling from the prior with likelihood weights. Its mean has
    # SE ~ sqrt(var_post / ESS); 5 SE per coordinate.
    draws = simulator.prior.sample(200_000, generator)
    log_w = simulator.log_likelihood(draws, y[0])
    w = torch.softmax(log_w, 0)
    ess = 1.0 / float((w**2).sum())
    is_mean = (w[:, None] * draws).sum(0)
    se = torch.sqrt(torch.diagonal(cov) / ess)
    assert ((is_mean - mean).abs() < 5 * se).all()
    is_var = (w[:, None] * (draws - is_mean) ** 2).sum(0)
    # The variance estimate's relative SE is ~ sqrt(2 / ESS) for Gaussian weights-targets; 5 SE.
    assert ((is_var / torch.diagonal(cov) - 1).abs() < 5 * math.sqrt(2 / ess)).all()


def test_gaussian_linear_identity_posterior_is_the_scalar_update():
    simulator = GaussianLinear(2, prior_scale=2.0, noise_scale=1.0)
    y = torch.tensor([1.0, -3.0], dtype=torch.float64)
    mean, cov = simulator.posterior(y)
    shrink = 4.0 / (4.0 + 1.0)
    torch.testing.assert_close(mean, shrink * y)
    torch.testing.assert_close(cov, shrink * 1.0 * torch.eye(2, dtype=torch.float64))


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: LotkaVolterra().simulate(torch.ones(3, 5)), r"shape \(n, 4\)"),
        (lambda: LotkaVolterra().simulate(torch.tensor([[1.0, math.nan, 1.0, 1.0]])), "NaN or infinite"),
        (lambda: LotkaVolterra(tol=0), "tol must be finite and positive"),
        (lambda: LotkaVolterra().log_likelihood(torch.ones(3, 4), torch.ones(2, 20)), "1 or 3 rows"),
        (lambda: StochasticLotkaVolterra(dt=0.04), "must divide"),
        (lambda: GaussianLinear(0), "dim must be a positive integer"),
        (lambda: GaussianLinear(2).posterior(torch.ones(2, 2)), "one observation"),
        (lambda: GaussianLinear(2).prior.sample(0), "n must be a positive integer"),
    ],
)
def test_bad_input_is_one_clear_value_error(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_exposed_as_mf_inference():
    assert mf.inference.LotkaVolterra.observation_dim == 20
    assert mf.inference.LotkaVolterra.parameter_names == ("alpha", "beta", "gamma", "delta")


def test_lv_row_with_vanishing_predators_is_valid_and_relatively_accurate():
    # A prior draw (from seed 0) whose predators fall to ~1e-27: a valid row (clamped to 1e-10 in
    # the observation), and the log-coordinates keep its relative accuracy where no fixed atol
    # could. Reference: DOP853 with atol 1e-40 (pure relative control), same 1e-5 bound as above.
    theta = np.array([7.1430, 0.0430, 0.4500, 0.0262])
    a, b, c, d = theta
    reference = solve_ivp(
        lambda t, z: [a * z[0] - b * z[0] * z[1], -c * z[1] + d * z[0] * z[1]],
        (0.0, 20.0), [30.0, 1.0], method="DOP853", rtol=1e-11, atol=1e-40, t_eval=TIMES,
    ).y.reshape(-1)
    assert reference.min() < 1e-20
    solution = LotkaVolterra().solve(torch.from_numpy(theta))
    np.testing.assert_allclose(solution[0].numpy(), reference, rtol=1e-5, atol=0)
