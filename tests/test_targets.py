"""Targets: analytic gradients against autograd, normalizers against quadrature, exact samplers
against closed-form moments, finite-sum gradients against full ones, and input validation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from stats_helpers import assert_within_se, double_well_moments, mean_and_cov_se

import measureflow as mf
from measureflow.targets.base import autograd_energy_and_grad

torch.set_default_dtype(torch.float32)
F64 = torch.float64


def _targets():
    generator = torch.Generator().manual_seed(0)
    a = torch.randn(3, 3, generator=generator, dtype=F64)
    means = torch.randn(4, 3, generator=generator, dtype=F64) * 2
    covs = torch.stack([torch.eye(3, dtype=F64) + 0.3 * torch.ones(3, 3, dtype=F64)] * 4)
    features = torch.randn(40, 3, generator=generator, dtype=F64)
    labels = (torch.rand(40, generator=generator, dtype=F64) < 0.5).to(F64)
    return {
        "gaussian": mf.targets.Gaussian(torch.ones(3, dtype=F64), a @ a.T + torch.eye(3, dtype=F64)),
        "mixture-iso": mf.targets.GaussianMixture(means, torch.tensor([0.5, 1.0, 1.5, 2.0])),
        "mixture-full": mf.targets.GaussianMixture(means, covs, torch.tensor([1.0, 2.0, 3.0, 4.0])),
        "double-well": mf.targets.DoubleWell(3).double(),
        "rastrigin": mf.targets.Rastrigin(3).double(),
        "banana": mf.targets.Banana(3).double(),
        "funnel": mf.targets.Funnel(3).double(),
        "logistic": mf.targets.LogisticRegression(features, labels, prior_std=2.0),
    }


@pytest.mark.parametrize("name", list(_targets()))
def test_analytic_gradient_matches_autograd(name):
    target = _targets()[name]
    x = torch.randn(16, target.dim, generator=torch.Generator().manual_seed(1), dtype=F64)
    energy, gradient = target.energy_and_grad(x)
    reference_energy, reference_gradient = autograd_energy_and_grad(target.energy, x)
    torch.testing.assert_close(energy, reference_energy)
    torch.testing.assert_close(gradient, reference_gradient)
    torch.testing.assert_close(target.grad_energy(x), reference_gradient)
    assert energy.shape == (16,) and gradient.shape == (16, target.dim)


def _grid_integral_2d(log_density, lo, hi, n=801):
    axis = torch.linspace(lo, hi, n, dtype=F64)
    xx, yy = torch.meshgrid(axis, axis, indexing="ij")
    values = log_density(torch.stack([xx.flatten(), yy.flatten()], -1)).exp().reshape(n, n)
    return float(torch.trapezoid(torch.trapezoid(values, axis), axis))


COV_2D = torch.tensor([[2.0, 0.6], [0.6, 1.0]], dtype=F64)


@pytest.mark.parametrize("beta", [1.0, 2.5])
@pytest.mark.parametrize(
    "target,box",
    [
        (mf.targets.Gaussian(torch.tensor([0.5, -1.0], dtype=F64), COV_2D), 12),
        (mf.targets.Banana(scale=1.0, curvature=0.5).double(), 12),
        (mf.targets.Funnel(dim=2, scale=1.0).double(), 12),
        (mf.targets.DoubleWell(2).double(), 4),
        (mf.targets.Rastrigin(2, amplitude=2.0).double(), 8),
    ],
)
def test_log_prob_is_normalized(target, box, beta):
    # The integrands are smooth and negligible at the box edge; an 801^2 trapezoid rule is
    # accurate to well below 1e-4 for these scales.
    assert target.is_normalized(beta)
    total = _grid_integral_2d(lambda x: target.log_prob(x, beta), -box, box)
    assert abs(total - 1) < 1e-4


def test_mixture_log_prob_is_normalized_at_beta_one_only():
    mixture = mf.targets.GaussianMixture.ring(4, radius=2.0, std=0.7).double()
    assert abs(_grid_integral_2d(mixture.log_prob, -7, 7) - 1) < 1e-4
    assert not mixture.is_normalized(2.0)
    with pytest.raises(ValueError, match="beta = 1"):
        mixture.sample(5, beta=2.0)


def test_gaussian_sampler_moments():
    cov = torch.tensor([[2.0, 0.6], [0.6, 1.0]], dtype=F64)
    target = mf.targets.Gaussian(torch.tensor([0.5, -1.0], dtype=F64), cov)
    beta = 2.0
    draws = target.sample(20000, beta=beta, generator=torch.Generator().manual_seed(2))
    mean_se, cov_se = mean_and_cov_se(draws, cov / beta)
    assert_within_se(draws.mean(0), target.mean, mean_se, "Gaussian mean")
    assert_within_se(torch.cov(draws.T), cov / beta, cov_se, "Gaussian covariance")


def test_banana_and_funnel_samplers_match_closed_forms():
    generator = torch.Generator().manual_seed(3)
    n, beta = 40000, 2.0
    banana = mf.targets.Banana(scale=2.0, curvature=0.5).double()
    x = banana.sample(n, beta=beta, generator=generator)
    # x1 ~ N(0, s^2/beta) and the residual x2 - b (x1^2 - s^2) ~ N(0, 1/beta), independent.
    residual = x[:, 1] - 0.5 * (x[:, 0].square() - 4.0)
    white = torch.stack([x[:, 0] / math.sqrt(4.0 / beta), residual * math.sqrt(beta)], -1)
    mean_se, cov_se = mean_and_cov_se(white, torch.eye(2, dtype=F64))
    assert_within_se(white.mean(0), torch.zeros(2), mean_se, "banana whitened mean")
    assert_within_se(torch.cov(white.T), torch.eye(2, dtype=F64), cov_se, "banana whitened cov")

    funnel = mf.targets.Funnel(dim=4).double()
    draws = funnel.sample(n, beta=beta, generator=generator)
    mean_v, var_v = -9 * (beta - 1) * 3 / (2 * beta), 9 / beta
    assert_within_se(draws[:, 0].mean(), mean_v, math.sqrt(var_v / n), "funnel v mean")
    white = draws[:, 1:] * torch.exp(-0.5 * draws[:, :1]) * math.sqrt(beta)
    assert_within_se(white.var(0), torch.ones(3), math.sqrt(2 / n), "funnel conditional var")


@pytest.mark.parametrize("beta", [1.0, 4.0])
def test_double_well_sampler_matches_quadrature(beta):
    target = mf.targets.DoubleWell(1).double()
    draws = target.sample(40000, beta=beta, generator=torch.Generator().manual_seed(4))[:, 0]
    moment2, moment4 = double_well_moments(target, beta)
    se = math.sqrt((moment4 - moment2**2) / draws.shape[0])
    assert_within_se(draws.square().mean(), moment2, se, "double well E[x^2]")
    assert abs(float(draws.mean())) < 5 * math.sqrt(moment2 / draws.shape[0])


def test_mixture_sampler_moments():
    means = torch.tensor([[3.0, 0.0], [-1.0, 2.0]], dtype=F64)
    covs = torch.stack([torch.eye(2, dtype=F64), torch.tensor([[1.0, 0.5], [0.5, 2.0]], dtype=F64)])
    weights = torch.tensor([0.25, 0.75], dtype=F64)
    target = mf.targets.GaussianMixture(means, covs, weights)
    draws = target.sample(40000, generator=torch.Generator().manual_seed(5))
    mean = weights @ means
    second = sum(w * (c + torch.outer(m, m)) for w, m, c in zip(weights, means, covs, strict=True))
    cov = second - torch.outer(mean, mean)
    # Mixture draws are not Gaussian: use the plain CLT standard error of the mean, and for the
    # covariance the fourth-moment form Var(s_ij) ~= (E[c_i^2 c_j^2] - S_ij^2) / n, c = x - mean.
    n = draws.shape[0]
    assert_within_se(draws.mean(0), mean, (torch.diagonal(cov) / n).sqrt(), "mixture mean")
    centred = draws - mean
    products = centred[:, :, None] * centred[:, None, :]
    cov_se = ((products.square().mean(0) - cov.square()) / n).sqrt()
    assert_within_se(torch.cov(draws.T), cov, cov_se, "mixture covariance")


def test_logistic_minibatch_gradients():
    target = _targets()["logistic"]
    x = torch.randn(5, target.dim, generator=torch.Generator().manual_seed(6), dtype=F64)
    full_index = torch.arange(target.n_terms).expand(5, -1)
    # The whole data set as the minibatch reproduces the exact gradient and Hessian diagonal.
    torch.testing.assert_close(target.minibatch_grad_energy(x, full_index), target.grad_energy(x))
    hessian = torch.stack(
        [torch.autograd.functional.hessian(lambda y: target.energy(y[None])[0], point) for point in x]
    )
    torch.testing.assert_close(
        target.minibatch_hessian_diag(x, full_index), torch.diagonal(hessian, dim1=-2, dim2=-1)
    )
    # The generic autograd path of FiniteSumTarget agrees with the analytic override.
    index = target.sample_index(5, 7, torch.Generator().manual_seed(7))
    generic = mf.targets.FiniteSumTarget.minibatch_grad_energy(target, x, index)
    torch.testing.assert_close(target.minibatch_grad_energy(x, index), generic)


def test_minibatch_gradient_is_unbiased():
    target = _targets()["logistic"]
    x = torch.randn(1, target.dim, generator=torch.Generator().manual_seed(8), dtype=F64)
    n_batches = 20000
    index = target.sample_index(n_batches, 4, torch.Generator().manual_seed(9))
    estimates = target.minibatch_grad_energy(x.expand(n_batches, -1), index)
    se = estimates.std(0) / math.sqrt(n_batches)
    assert_within_se(estimates.mean(0), target.grad_energy(x)[0], se, "minibatch gradient")


def test_hutchinson_hessian_diagonal_is_unbiased():
    target = _targets()["logistic"]
    x = torch.randn(1, target.dim, generator=torch.Generator().manual_seed(10), dtype=F64)
    n_probes = 20000
    index = torch.arange(target.n_terms).expand(n_probes, -1)
    estimates = mf.targets.FiniteSumTarget.minibatch_hessian_diag(
        target, x.expand(n_probes, -1), index, torch.Generator().manual_seed(11)
    )
    exact = target.minibatch_hessian_diag(x, index[:1])[0]
    se = estimates.std(0) / math.sqrt(n_probes)
    assert_within_se(estimates.mean(0), exact, se.clamp_min(1e-12), "Hutchinson diagonal")


def test_predictive_on_separable_data():
    features = torch.tensor([[-2.0], [-1.0], [1.0], [2.0]], dtype=F64)
    labels = torch.tensor([0.0, 0.0, 1.0, 1.0], dtype=F64)
    target = mf.targets.LogisticRegression(features, labels)
    theta = torch.tensor([[0.0, 5.0]], dtype=F64)
    result = target.predictive(theta, features, labels)
    assert result["accuracy"] == 1.0
    expected = float(torch.nn.functional.logsigmoid(torch.tensor([10.0, 5.0, 5.0, 10.0])).mean())
    assert abs(result["mean_log_likelihood"] - expected) < 1e-6


def test_from_energy_and_user_errors():
    target = mf.targets.from_energy(lambda x: (x**4).sum(-1), dim=2)
    x = torch.tensor([[1.0, 2.0]])
    torch.testing.assert_close(target.grad_energy(x), 4 * x**3)
    assert not target.is_normalized() and not target.has_sampler
    with pytest.raises(ValueError, match="no exact sampler"):
        target.sample(3)
    with pytest.raises(ValueError, match=r"shape \(n, 2\)"):
        target.energy(torch.zeros(3))
    bad = mf.targets.from_energy(lambda x: x.sum(), dim=2)
    with pytest.raises(ValueError, match=r"must map"):
        bad.energy(x)
    with pytest.raises(TypeError, match="callable"):
        mf.targets.from_energy(3, dim=2)


@pytest.mark.parametrize(
    "build,message",
    [
        (lambda: mf.targets.Gaussian(torch.zeros(2), torch.tensor([[1.0, 2.0], [2.0, 1.0]])),
         "positive definite"),
        (lambda: mf.targets.Gaussian(torch.zeros(2), torch.eye(3)), "shape"),
        (lambda: mf.targets.Gaussian(torch.tensor([0.0, float("nan")]), torch.eye(2)), "NaN"),
        (lambda: mf.targets.GaussianMixture(torch.zeros(2, 2), weights=torch.tensor([1.0, -1.0])),
         "positive"),
        (lambda: mf.targets.DoubleWell(0), "positive integer"),
        (lambda: mf.targets.GaussianMixture(torch.zeros(1, 2), torch.tensor([[[1.0, 0.9], [0.0, 1.0]]])),
         "symmetric"),
        (lambda: mf.targets.LogisticRegression(torch.zeros(3, 2), torch.tensor([0.0, 1.0, 2.0])),
         "0 or 1"),
        (lambda: mf.targets.Rastrigin(2, amplitude=-1), "positive"),
    ],
)
def test_bad_parameters_raise(build, message):
    with pytest.raises(ValueError, match=message):
        build()


def test_log_prob_rejects_bad_beta():
    with pytest.raises(ValueError, match="beta"):
        mf.targets.DoubleWell().log_prob(torch.zeros(1, 1), beta=0.0)
    with pytest.raises(ValueError, match="beta"):
        mf.targets.DoubleWell().log_prob(torch.zeros(1, 1), beta=float("nan"))


def test_targets_move_dtype():
    target = mf.targets.GaussianMixture.ring().to(torch.float64)
    assert target.dtype == torch.float64 and target.means.dtype == torch.float64
    assert target.sample(2, generator=torch.Generator().manual_seed(0)).dtype == torch.float64


def test_numpy_input_accepted():
    target = mf.targets.Gaussian(np.zeros(2), np.eye(2))
    assert target.dtype == torch.float64
