"""The MCMC reference posterior: closed-form agreement on the Gaussian linear simulator, the
Lotka-Volterra likelihood gradient against finite differences, a small LV run, failed rows as
rejections, and input validation."""

from __future__ import annotations

import math

import pytest
import torch

from measureflow.inference import (
    GaussianLinear,
    LogNormalPrior,
    LotkaVolterra,
    StochasticLotkaVolterra,
)
from measureflow.inference.mcmc import _Energy, mcmc_posterior
from measureflow.samplers import mala
from measureflow.targets import from_energy

TRUE_LV = torch.tensor([0.56, 0.026, 0.75, 0.025], dtype=torch.float64)


def test_gaussian_linear_mean_and_covariance_match_the_closed_form():
    simulator = GaussianLinear(dim=2)
    y = torch.tensor([0.7, -0.4], dtype=torch.float64)
    n_chains, n_steps = 16, 500
    result = mcmc_posterior(
        simulator, y, n_samples=n_chains * n_steps, n_chains=n_chains, n_steps=n_steps,
        burn_in=200, n_optimize=20, n_prior_draws=64, generator=torch.Generator().manual_seed(0),
    )
    mean, covariance = simulator.posterior(y)
    theta = result.theta
    assert theta.shape == (n_chains * n_steps, 2) and theta.dtype == torch.float64
    assert result.n_simulations == 0 and result.n_valid == 0 and not result.amortized
    details = result.details
    assert details["rhat"] < 1.01 and details["warnings"] == []
    assert details["n_likelihood_evaluations"] > details["n_likelihood_gradients"] > 0
    # n_samples = every kept draw, so the sample moments are those of the whole run, whose Monte
    # Carlo error is that of ESS independent draws: the mean's standard error is sd / sqrt(ESS)
    # (ESS: the per-parameter bulk ESS, which for a Gaussian target estimates the ESS of the mean);
    # a sample variance's is sigma^2 sqrt(2 / ESS) (Var s^2 = 2 sigma^4 / n for normals) and a
    # sample covariance's sqrt((s_11 s_22 + s_12^2) / ESS). The ESS of squares can fall below that
    # of the draws, so we use min(bulk, tail ESS) for the second moments and allow 5 standard
    # errors (two-sided normal tail 6e-7 per entry; 4 for the means, 6e-5 each).
    ess_bulk = torch.tensor(details["ess_bulk_per_parameter"], dtype=torch.float64)
    ess_low = torch.minimum(ess_bulk, torch.tensor(details["ess_tail_per_parameter"], dtype=torch.float64))
    sd = covariance.diagonal().sqrt()
    assert ((theta.mean(0) - mean).abs() <= 4 * sd / ess_bulk.sqrt()).all()
    ess_pair = torch.minimum(ess_low[:, None], ess_low[None, :])
    moment_sd = ((covariance.diagonal()[:, None] * covariance.diagonal()[None, :] + covariance**2)
                 / ess_pair).sqrt()  # on the diagonal: sigma_i^2 sqrt(2 / ESS)
    assert ((torch.cov(theta.T) - covariance).abs() <= 5 * moment_sd).all()


@pytest.fixture(scope="module")
def lv_observation():
    simulator = LotkaVolterra()
    return simulator, simulator.simulate(TRUE_LV[None], torch.Generator().manual_seed(0))[0]


def test_lv_log_likelihood_gradient_matches_finite_differences(lv_observation):
    simulator, y = lv_observation
    theta = TRUE_LV * torch.tensor([[1.0, 1.0, 1.0, 1.0], [1.03, 0.97, 1.02, 1.01],
                                    [0.96, 1.02, 0.99, 0.98]], dtype=torch.float64)
    position = theta.clone().requires_grad_(True)
    (gradient,) = torch.autograd.grad(simulator.log_likelihood(position, y).sum(), position)
    # Central differences with steps h_i = 1e-5 theta_i, all 8 x 3 perturbed rows in one batch.
    # Their error: truncation O(h^2) (relative 1e-10), and the solver's error changing with its
    # step sequence, ~1e-8 relative on the solution, ~1e-6 on the log-likelihood (20 terms of
    # size |z| / 0.1 = O(10) times 1e-8 / 0.1), divided by 2h ~ 1e-7: ~10, against gradients of
    # 1e2 to 1e4. A relative tolerance of 1e-3 on each row's gradient norm covers that.
    steps = 1e-5 * theta
    shifts = torch.eye(4, dtype=torch.float64)
    plus = theta[:, None, :] + steps[:, None, :] * shifts
    minus = theta[:, None, :] - steps[:, None, :] * shifts
    values = simulator.log_likelihood(torch.cat((plus, minus)).reshape(-1, 4), y).reshape(2, 3, 4)
    finite_difference = (values[0] - values[1]) / (2 * steps)
    error = (gradient - finite_difference).norm(dim=-1) / gradient.norm(dim=-1)
    assert (error < 1e-3).all(), error


def test_lv_small_run_gives_positive_finite_draws(lv_observation):
    simulator, y = lv_observation
    # Shapes and bookkeeping only: 3 chains of 4 kept steps have not converged (R-hat and ESS of such
    # a run may be anything, and its warnings say so). The prior is narrowed around the true
    # parameter (log-sd 0.05) so that every solve is an easy one: far prior draws make the ODE
    # take many small steps (seconds per call), which this test does not need to pay for.
    # A looser solver tolerance (1e-6) halves the ODE steps; 17 gradient evaluations in all.
    simulator = LotkaVolterra(tol=1e-6)
    simulator.prior = LogNormalPrior(torch.log(TRUE_LV), 0.05)
    result = mcmc_posterior(
        simulator, y, n_samples=12, n_chains=3, n_steps=4, burn_in=10, n_optimize=0,
        n_prior_draws=8, generator=torch.Generator().manual_seed(1),
    )
    assert result.theta.shape == (12, 4) and result.theta.dtype == torch.float64
    assert torch.isfinite(result.theta).all() and (result.theta > 0).all()
    details = result.details
    assert 0 <= details["acceptance_rate"] <= 1 and details["step_size"] > 0
    assert len(details["rhat_per_parameter"]) == 4 and details["warnings"]
    assert isinstance(details["warnings"], list)
    assert result.to_dict()["method"] == "mcmc"


def test_failed_rows_get_infinite_energy_and_are_rejected(lv_observation):
    simulator, y = lv_observation
    u_true = torch.log(TRUE_LV)[None]
    # A solver allowed 3 steps fails every row: NaN likelihood -> +inf energy, and the gradient
    # still computes (no exception escapes to the sampler).
    starved = from_energy(_Energy(LotkaVolterra(max_num_steps=3), y), 4)
    value, _ = starved.energy_and_grad(torch.cat((u_true, u_true + 0.1)))
    assert (value == math.inf).all()
    # exp(u) overflowing to inf is +inf energy too, while the other rows of the batch are unharmed.
    target = from_energy(_Energy(simulator, y), 4)
    u_overflow = torch.tensor([[800.0, -3.0, 0.0, -3.0]], dtype=torch.float64)
    value, gradient = target.energy_and_grad(torch.cat((u_overflow, u_true)))
    assert value[0] == math.inf and math.isfinite(value[1]) and torch.isfinite(gradient[1]).all()
    # A MALA step whose proposal lands there is a rejection, not a flagged fault (the driver
    # raises on flagged proposals): the noise is chosen so that the proposal is u_overflow.
    h = 1e-4
    for bad_target, bad_point in ((target, u_overflow), (starved, u_true + 0.1)):
        state = mala.init(u_true, target, mala.MALAParams(step_size=h))
        noise = (bad_point - state.position + h * state.grad) / math.sqrt(2 * h)
        uniform = torch.zeros(1, dtype=torch.float64)
        new_state, info = mala.transition(state, (noise, uniform), bad_target, h, 1.0)
        assert not bool(info.is_accepted[0]) and not bool(info.nonfinite_proposal[0])
        torch.testing.assert_close(new_state.position, state.position)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: mcmc_posterior(GaussianLinear(2), torch.zeros(3)), "must hold 2 values"),
        (lambda: mcmc_posterior(StochasticLotkaVolterra(), torch.ones(20)), "exact likelihood"),
        (lambda: mcmc_posterior(GaussianLinear(2), torch.zeros(2), n_samples=100, n_chains=2,
                                n_steps=10), "n_chains \\* n_steps"),
        (lambda: mcmc_posterior(GaussianLinear(2), torch.zeros(2), burn_in=3), "burn_in"),
    ],
)
def test_bad_input_raises_value_error(call, message):
    with pytest.raises(ValueError, match=message):
        call()
