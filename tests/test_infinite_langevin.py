"""The infinite-dimensional Langevin sampler (semi-implicit Euler) and the function-space targets."""

from __future__ import annotations

import math

import pytest
import torch

import measureflow as mf
from measureflow.targets import HilbertRegression, InfiniteWidthNetwork, basis_functions

F64 = torch.float64


def _flat(dim: int) -> mf.targets.Target:
    return mf.targets.from_energy(lambda x: x.new_zeros(x.shape[0]), dim, grad_energy=torch.zeros_like)


def test_lam_zero_is_ula_draw_for_draw():
    target = mf.targets.GaussianMixture.ring().double()
    kwargs = dict(n_chains=16, n_steps=25, burn_in=5, step_size=0.05, seed=4, progress=False)
    ula = mf.sample(target, "ula", **kwargs)
    ours = mf.sample(target, "infinite-langevin", lam=0.0, **kwargs)
    assert torch.equal(ula.samples, ours.samples)


def test_stationary_variance_of_the_semi_implicit_scheme_without_loss():
    # L = 0: per mode X' = s (X + sqrt(2 h / beta) xi), s = 1 / (1 + h lam / mu_k), whose stationary
    # variance is V_k = (2 h / beta) s^2 / (1 - s^2) (derived in the module). The burn-in of 400
    # steps leaves (s^2)^400 <= (1 / (1 + 0.02 * 0.5))^800 = 3e-4 of the initial variance 1 in the
    # slowest mode, below the tolerance. Estimate: the variance over 4,000 chains x 4 draws 50 steps
    # apart; draws of one chain are correlated, so the SE is bounded by the one-draw-per-chain value
    # sqrt(2 / 4000) = 2.2% of V_k; 6 SE = 13% relative, checked on every mode (K = 40: a 6-sigma
    # event somewhere among 40 modes has probability < 1e-7).
    dim, h, lam, beta = 40, 0.02, 0.5, 2.0
    result = mf.sample(_flat(dim).double(), "infinite-langevin", n_chains=4000, n_steps=200, thin=50,
                       burn_in=400, step_size=h, beta=beta, lam=lam, decay=2.0, progress=False)
    mu = torch.arange(1, dim + 1, dtype=F64).pow(-2.0)
    s = 1 / (1 + h * lam / mu)
    predicted = (2 * h / beta) * s.square() / (1 - s.square())
    measured = result.samples.reshape(-1, dim).var(0)
    assert bool(((measured / predicted - 1).abs() < 6 * math.sqrt(2 / 4000)).all())
    # The explicit scheme's stability limit 2 mu_K / lam = 0.0025 is 8x below h = 0.02.
    assert h > 5 * 2 * float(mu[-1]) / lam


def test_explicit_mu_equals_decay_and_minibatches_are_used():
    target = HilbertRegression(torch.rand(30, generator=torch.Generator().manual_seed(1), dtype=F64),
                               torch.randn(30, generator=torch.Generator().manual_seed(2), dtype=F64), 12)
    kwargs = dict(n_chains=5, n_steps=10, burn_in=0, step_size=0.01, lam=1.0, seed=0, progress=False)
    with_decay = mf.sample(target, "infinite-langevin", decay=1.5, **kwargs)
    with_mu = mf.sample(target, "infinite-langevin", mu=torch.arange(1, 13, dtype=F64).pow(-1.5), **kwargs)
    torch.testing.assert_close(with_decay.samples, with_mu.samples)
    batched = mf.sample(target, "infinite-langevin", decay=1.5, batch_size=4, **kwargs)
    assert batched.n_data_grads == 4 * 10 and with_decay.n_data_grads == 30 * 10  # per chain


@pytest.mark.parametrize(("options", "match"), [
    ({"lam": -1.0}, "lam"),
    ({"mu": torch.tensor([1.0, -1.0])}, "mu"),
    ({"mu": torch.ones(3), "decay": 2.0}, "not both"),
    ({"decay": 0.0}, "decay"),
    ({"mu": torch.ones(5)}, "dimension"),
    ({"batch_size": 0}, "batch_size"),
])
def test_bad_options_are_refused(options, match):
    with pytest.raises(ValueError, match=match):
        mf.sample(_flat(3), "infinite-langevin", n_chains=2, n_steps=2, burn_in=0, step_size=0.1,
                  progress=False, **options)


def test_divergence_is_reported_by_the_driver():
    # A steep quadratic loss explicit in the gradient: h * curvature = 10 > 2 diverges.
    target = mf.targets.from_energy(lambda x: 50 * x.square().sum(1), 3)
    with pytest.raises(ValueError, match="smaller step size"):
        mf.sample(target, "infinite-langevin", lam=1.0, n_chains=4, n_steps=400, burn_in=0, step_size=0.2,
                  progress=False)


@pytest.mark.parametrize("basis", ["sine", "fourier"])
def test_bases_are_orthonormal(basis):
    n = 512
    nodes = torch.arange(n, dtype=F64)
    t = (nodes + 0.5) / n if basis == "sine" else 2 * math.pi * nodes / n
    phi = basis_functions(t, 9, basis)
    # Midpoint / trapezoid rules are exact for these trigonometric products below the Nyquist
    # frequency, up to rounding.
    torch.testing.assert_close(phi.T @ phi / n, torch.eye(9, dtype=F64), atol=1e-12, rtol=0)


@pytest.mark.parametrize("loss", ["squared", "logistic"])
def test_function_space_gradients_match_autograd_and_minibatches_are_unbiased(loss):
    generator = torch.Generator().manual_seed(5)
    t = torch.rand(20, generator=generator, dtype=F64)
    y = torch.sign(torch.randn(20, generator=generator, dtype=F64))
    x_net = torch.randn(20, 3, generator=generator, dtype=F64)
    targets = [HilbertRegression(t, y, 7, loss=loss),
               HilbertRegression(2 * math.pi * t, y, 7, basis="fourier", loss=loss, scale=0.3),
               InfiniteWidthNetwork(x_net, y, 6, gamma=1.0, loss=loss)]
    for target in targets:
        state = torch.randn(4, target.dim, generator=generator, dtype=F64)
        energy, gradient = target.energy_and_grad(state)
        auto = mf.targets.base.autograd_energy_and_grad(target.energy, state)
        torch.testing.assert_close(gradient, auto[1])
        # Every minibatch of all n indices in order is the full gradient; random minibatches average to it.
        full = torch.arange(target.n_terms).expand(4, -1)
        torch.testing.assert_close(target.minibatch_grad_energy(state, full), gradient)
        torch.testing.assert_close(target.minibatch_energy(state, full), energy)


def test_gaussian_posterior_is_the_ridge_solution_and_infinite_width_outputs():
    generator = torch.Generator().manual_seed(6)
    t = torch.rand(15, generator=generator, dtype=F64)
    y = torch.sin(3 * t) + 0.1 * torch.randn(15, generator=generator, dtype=F64)
    target = HilbertRegression(t, y, 10, scale=4.0)
    mu = torch.arange(1, 11, dtype=F64).pow(-2.0)
    posterior = target.gaussian_posterior(lam=0.5, mu=mu, beta=2.0)
    # The mean minimizes L(x) + (lam/2) sum x_k^2 / mu_k: its gradient vanishes there.
    gradient = target.grad_energy(posterior.mean[None])[0] + 0.5 * posterior.mean / mu
    assert float(gradient.abs().max()) < 1e-10
    assert posterior.variances.shape == (10,) and bool((posterior.variances > 0).all())
    inputs = torch.randn(5, 2, generator=generator, dtype=F64)
    network = InfiniteWidthNetwork(inputs, torch.zeros(5, dtype=F64), 4)
    w = torch.randn(3, 8, generator=generator, dtype=F64)
    expected = torch.tanh(w.reshape(3, 4, 2) @ network.x.T).transpose(1, 2) @ network.outer
    torch.testing.assert_close(network.outputs(w, network.x), expected)
    assert network.eigenvalues(2.0).tolist() == [1.0, 1.0, 0.25, 0.25, 1 / 9, 1 / 9, 1 / 16, 1 / 16]
    with pytest.raises(ValueError, match="gamma"):
        InfiniteWidthNetwork(network.x, network.y, 4, gamma=0.5)
    with pytest.raises(ValueError, match="logistic"):
        HilbertRegression(t, y, 4, loss="logistic")
