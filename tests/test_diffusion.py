"""Forward SDEs, exact mixture scores, reverse samplers, DSM and the probability-flow likelihood,
against closed forms."""

from __future__ import annotations

import math

import pytest
import torch

from measureflow.generative.diffusion import (
    OU,
    VESDE,
    VPSDE,
    GaussianMixtureScore,
    SubVPSDE,
    dsm_loss,
    log_likelihood,
    log_noise_to_signal,
    make_sde,
    predictor_corrector,
    probability_flow,
    reverse_sde,
    sample,
    sample_times,
)
from measureflow.generative.diffusion.sampling import annealed_langevin, noise_levels

SDES = {
    "ou": lambda: OU(),
    "vp-linear": lambda: VPSDE(),
    "vp-cosine": lambda: VPSDE(schedule="cosine"),
    "subvp": lambda: SubVPSDE(),
    "ve": lambda: VESDE(),
}


def _generator(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("name", SDES)
def test_marginal_coefficients_solve_the_moment_equations(name):
    # For dX = f X dt + g dB: alpha' = f alpha and (sigma^2)' = 2 f sigma^2 + g^2. Central
    # differences with step 1e-5 in float64 have truncation error ~ h^2 |third derivative| ~ 1e-8
    # relative and rounding ~ 1e-16 / 1e-5 = 1e-11; 1e-6 relative is a safe bound.
    sde = SDES[name]()
    t = torch.linspace(0.05, 0.95 * sde.T, 9, dtype=torch.float64)
    h = 1e-5
    alpha, sigma = sde.marginal_coefficients(t)
    alpha_plus, sigma_plus = sde.marginal_coefficients(t + h)
    alpha_minus, sigma_minus = sde.marginal_coefficients(t - h)
    f, g = sde.drift_coefficient(t), sde.diffusion(t)
    d_alpha = (alpha_plus - alpha_minus) / (2 * h)
    d_variance = (sigma_plus**2 - sigma_minus**2) / (2 * h)
    assert torch.allclose(d_alpha, f * alpha, rtol=1e-6, atol=1e-9)
    assert torch.allclose(d_variance, 2 * f * sigma**2 + g**2, rtol=1e-6, atol=1e-9)
    alpha0, sigma0 = sde.marginal_coefficients(torch.zeros((), dtype=torch.float64))
    assert float(alpha0) == pytest.approx(1.0) and float(sigma0) == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("name", SDES)
def test_prior_matches_the_end_marginal(name):
    # p_T(x | x0 = 0) = N(0, sigma(T)^2 I) should be the prior up to the documented mismatch.
    sde = SDES[name]()
    alpha, sigma = sde.marginal_coefficients(torch.tensor(sde.T, dtype=torch.float64))
    assert float(sigma) == pytest.approx(sde.prior_std, rel=2e-3)
    assert float(alpha) < 0.05 or name == "ve"


def test_make_sde_round_trip_and_errors():
    for name in SDES:
        sde = SDES[name]()
        rebuilt = make_sde(**sde.config())
        assert rebuilt.config() == sde.config()
    with pytest.raises(ValueError, match="unknown SDE"):
        make_sde("vpp")
    with pytest.raises(ValueError, match="schedule"):
        VPSDE(schedule="quadratic")
    with pytest.raises(ValueError, match="sigma_max"):
        VESDE(sigma_min=1.0, sigma_max=0.5)
    with pytest.raises(ValueError, match="bad options"):
        make_sde("ou", beta_min=0.1)


def test_forward_simulation_matches_the_transition_kernel():
    # Euler-Maruyama on dX = f X dt + g dB from x0 = 1.5 with 400 steps to t = 0.6 (VP):
    # the discretization bias of the mean and variance is O(dt) = O(1e-3) relative; the MC
    # standard errors for n = 40,000 are sd/sqrt(n) for the mean and var*sqrt(2/n) for the
    # variance. Tolerance: 4 SE + 3e-3 relative.
    sde = VPSDE()
    n, n_steps, t_end = 40_000, 400, 0.6
    g = _generator(3)
    x = torch.full((n, 1), 1.5, dtype=torch.float64)
    dt = t_end / n_steps
    for i in range(n_steps):
        t = torch.tensor(i * dt, dtype=torch.float64)
        x = x + sde.drift(x, t) * dt + sde.diffusion(t) * math.sqrt(dt) * torch.randn(
            x.shape, generator=g, dtype=torch.float64)
    mean, std = sde.marginal(torch.tensor([[1.5]], dtype=torch.float64), torch.tensor([t_end]))
    mean, variance = float(mean), float(std) ** 2
    assert abs(float(x.mean()) - mean) < 4 * math.sqrt(variance / n) + 3e-3 * abs(mean)
    assert abs(float(x.var()) - variance) < 4 * variance * math.sqrt(2 / n) + 3e-3 * variance


def _mixture(sde):
    means = torch.tensor([[2.0, 0.0], [-1.0, 1.5], [0.0, -2.0]], dtype=torch.float64)
    covs = torch.stack([
        0.1 * torch.eye(2, dtype=torch.float64),
        torch.tensor([[0.3, 0.1], [0.1, 0.2]], dtype=torch.float64),
        0.05 * torch.eye(2, dtype=torch.float64),
    ])
    weights = torch.tensor([0.5, 0.3, 0.2], dtype=torch.float64)
    return GaussianMixtureScore(means, covs, weights, sde)


def test_mixture_score_is_the_gradient_of_its_log_density():
    mixture = _mixture(VPSDE())
    x = torch.randn(64, 2, generator=_generator(), dtype=torch.float64).requires_grad_(True)
    t = torch.rand(64, generator=_generator(1), dtype=torch.float64)
    (gradient,) = torch.autograd.grad(mixture.log_prob(x, t).sum(), x)
    assert torch.allclose(mixture(x.detach(), t), gradient, atol=1e-10)


@pytest.mark.parametrize("t", [0.0, 0.05, 0.5])
def test_mixture_density_integrates_to_one(t):
    # Trapezoid rule on a 400^2 grid over [-7, 7]^2: the density is smooth (narrowest std 0.22)
    # and its mass outside the box is < 1e-10, so the quadrature error is far below 1e-4.
    mixture = _mixture(VPSDE())
    axis = torch.linspace(-7, 7, 400, dtype=torch.float64)
    grid = torch.cartesian_prod(axis, axis)
    density = mixture.log_prob(grid, torch.full((grid.shape[0],), t, dtype=torch.float64)).exp()
    step = float(axis[1] - axis[0])
    assert float(density.sum()) * step**2 == pytest.approx(1.0, abs=1e-4)


def _gaussian_flow_map(sde, m, s, x_T, t_end):  # noqa: N803
    """Exact probability-flow map from T to t_end for N(m, s^2) data: affine between marginals."""
    alpha_T, sigma_T = sde.marginal_coefficients(torch.tensor(sde.T, dtype=torch.float64))
    alpha_e, sigma_e = sde.marginal_coefficients(torch.tensor(t_end, dtype=torch.float64))
    sd_T = torch.sqrt(alpha_T**2 * s**2 + sigma_T**2)
    sd_e = torch.sqrt(alpha_e**2 * s**2 + sigma_e**2)
    return alpha_e * m + sd_e / sd_T * (x_T - alpha_T * m)


@pytest.mark.parametrize("name", ["ou", "vp-linear", "ve"])
def test_heun_probability_flow_matches_the_exact_map_at_second_order(name):
    # For Gaussian data the probability-flow map between marginals is the monotone affine map;
    # Heun's global error is O(h^2): each halving of h must divide the error by about 4; the
    # observed order log2(e_h / e_{h/2}) must lie in [1.7, 2.5] (asymptotic regime).
    sde = SDES[name]()
    m, s = 0.7, 0.5
    score = _mixture_1d(sde, m, s)
    x_T = torch.linspace(-2, 2, 9, dtype=torch.float64)[:, None] * sde.prior_std
    exact = _gaussian_flow_map(sde, m, s, x_T, sde.t_min)
    errors = [float((probability_flow(score, sde, x_T, n).x - exact).abs().max()) for n in (50, 100, 200)]
    orders = [math.log2(errors[i] / errors[i + 1]) for i in range(2)]
    assert all(1.7 <= order <= 2.5 for order in orders), orders


def _mixture_1d(sde, m, s):
    return GaussianMixtureScore(torch.tensor([[m]], dtype=torch.float64),
                                torch.tensor([[[s**2]]], dtype=torch.float64), torch.ones(1), sde)


def test_adaptive_flow_matches_the_exact_map():
    sde = VPSDE()
    score = _mixture_1d(sde, 0.7, 0.5)
    x_T = torch.linspace(-2, 2, 9, dtype=torch.float64)[:, None]
    result = probability_flow(score, sde, x_T, method="dopri5", rtol=1e-8, atol=1e-8)
    exact = _gaussian_flow_map(sde, 0.7, 0.5, x_T, sde.t_min)
    assert float((result.x - exact).abs().max()) < 1e-5
    assert result.n_evaluations > 0


def _gaussian_moments_within(x, mean, variance, n, slack):
    """Sample mean/variance against (mean, variance): 4 standard errors plus ``slack`` (relative,
    the discretization bias allowed)."""
    mean_ok = abs(float(x.mean()) - mean) < 4 * math.sqrt(variance / n) + slack * math.sqrt(variance)
    var_ok = abs(float(x.var()) - variance) < 4 * variance * math.sqrt(2 / n) + slack * variance
    return mean_ok, var_ok


@pytest.mark.parametrize("sampler", ["sde", "pc", "als"])
def test_stochastic_samplers_recover_gaussian_data(sampler):
    # Data N(0.7, 0.5^2) in 1-D with the exact score. 20,000 samples: SE(mean) = 0.0035,
    # SE(var) = 0.0025. Discretization: Euler-Maruyama with 500 steps has O(h) = O(2e-3) bias in
    # the moments (x a constant of order beta_max = 20 near t = 1, contracted on the way down),
    # measured at < 1%; we allow 3% relative. Annealed Langevin has a larger, known bias: its
    # steps a_l = 0.2 sigma_l^2 stop moving the chains once sigma_l << the data's scale, so they
    # freeze with a variance slightly above s^2 (measured +7.5% with 100 levels, +2.8% with 200);
    # with 200 levels we allow 6%.
    sde = VESDE() if sampler == "als" else VPSDE()
    m, s, n = 0.7, 0.5, 20_000
    g = _generator(5)
    score = _mixture_1d(sde, m, s)
    x_T = sde.prior_sample((n, 1), g, dtype=torch.float64)
    if sampler == "sde":
        x = reverse_sde(score, sde, x_T, 500, generator=g).x
    elif sampler == "pc":
        x = predictor_corrector(score, sde, x_T, 250, generator=g).x
    else:
        x = annealed_langevin(score, sde, x_T, 200, 10, generator=g).x
    mean_ok, var_ok = _gaussian_moments_within(x, m, s**2, n, 0.06 if sampler == "als" else 0.03)
    assert mean_ok and var_ok


def test_reverse_sde_on_a_mixture_reaches_the_noise_floor():
    # Exact score, 300 steps: the MMD^2 (V-statistic) to fresh data must be within 2x the
    # same statistic between two fresh data sets of the same size (the noise floor; its
    # spread over seeds is about +-30% at n = 2000).
    from measureflow.metrics import mmd2

    sde = VPSDE()
    mixture = _mixture(sde)
    g = _generator(7)
    data, fresh = mixture.sample(2000, g), mixture.sample(2000, g)
    floor = float(mmd2(data, fresh, bandwidth=0.3, unbiased=False))
    x = sample(mixture, sde, 2000, 2, n_steps=300, generator=g, dtype=torch.float64)
    assert float(mmd2(x, data, bandwidth=0.3, unbiased=False)) < 2 * floor


def test_samplers_record_trajectories_and_count_evaluations():
    sde = VPSDE()
    score = _mixture_1d(sde, 0.0, 1.0)
    x_T = sde.prior_sample((30, 1), _generator(), dtype=torch.float64)
    result = reverse_sde(score, sde, x_T, 20, generator=_generator(1), record_every=5, n_keep=10)
    assert result.n_evaluations == 20
    assert tuple(result.trajectory.shape) == (5, 10, 1)
    assert result.times[0] == pytest.approx(sde.T) and result.times[-1] == pytest.approx(sde.t_min)
    assert probability_flow(score, sde, x_T, 20).n_evaluations == 40
    assert predictor_corrector(score, sde, x_T, 20, n_corrector=2, generator=_generator()).n_evaluations == 60


def test_samplers_handle_images_and_reject_bad_input():
    sde = VPSDE()
    images = sample(lambda x, t: -x, sde, 3, (1, 4, 4), n_steps=5, generator=_generator())
    assert tuple(images.shape) == (3, 1, 4, 4)
    with pytest.raises(ValueError, match="unknown sampler"):
        sample(lambda x, t: -x, sde, 3, 2, method="ddim")
    with pytest.raises(ValueError, match="n_steps"):
        reverse_sde(lambda x, t: -x, sde, torch.zeros(3, 2), 0)
    with pytest.raises(ValueError, match="NaN"):
        reverse_sde(lambda x, t: -x, sde, torch.full((3, 2), float("nan")), 5)
    with pytest.raises(ValueError, match="NaN/inf"):
        reverse_sde(lambda x, t: torch.full_like(x, float("inf")), sde, torch.zeros(3, 2), 5)


def test_noise_levels_are_geometric_in_noise_to_signal():
    sde = VESDE()
    times = noise_levels(sde, 6, 0.01)
    alpha, sigma = sde.marginal_coefficients(times)
    ratios = (sigma / alpha).log()
    steps = ratios[1:] - ratios[:-1]
    assert torch.allclose(steps, steps.mean().expand_as(steps), atol=1e-4)
    assert float(sigma[0]) == pytest.approx(10.0, rel=1e-3)
    assert float(sigma[-1]) == pytest.approx(0.01, rel=1e-3)


def test_exact_noise_predictor_attains_the_minimal_dsm_loss():
    # Data N(0, s^2 I): x_t ~ N(0, v I), v = alpha^2 s^2 + sigma^2, and the optimal noise
    # predictor is eps*(x, t) = sigma x / v, with per-dimension loss 1 - sigma^2 / v. The DSM
    # loss of eps* is the U(t_min, T) average of that, computed here by quadrature. Its MC
    # error for n = 200,000 draws of (t, x0, z): the per-sample loss has variance below 2, so
    # SE < sqrt(2 / n) = 0.0032; tolerance 4 SE = 0.013. A predictor scaled by 1.2 must lose.
    sde, s, n = VPSDE(), 0.6, 200_000

    def optimal(x, t, scale=1.0):
        alpha, sigma = sde.marginal_coefficients(t)
        return scale * (sigma / (alpha**2 * s**2 + sigma**2))[:, None] * x

    grid = torch.linspace(sde.t_min, sde.T, 20_001, dtype=torch.float64)
    alpha, sigma = sde.marginal_coefficients(grid)
    expected = float(torch.trapezoid(1 - sigma**2 / (alpha**2 * s**2 + sigma**2), grid)) / (sde.T - sde.t_min)
    x0 = s * torch.randn(n, 2, generator=_generator(2), dtype=torch.float64)
    measured = float(dsm_loss(optimal, sde, x0, _generator(3)))
    worse = float(dsm_loss(lambda x, t: optimal(x, t, 1.2), sde, x0, _generator(3)))
    assert measured == pytest.approx(expected, abs=4 * math.sqrt(2 / n))
    assert worse > measured


@pytest.mark.parametrize("name", SDES)
def test_likelihood_weighting_draws_times_with_density_g2_over_sigma2(name):
    # The density g^2/sigma^2 is lambda'(t) with lambda = log(sigma^2/alpha^2), so its CDF is
    # exactly (lambda(t) - lambda(t_min)) / (lambda(T) - lambda(t_min)). Kolmogorov-Smirnov
    # distance of 40,000 draws to it: the 0.1% critical value is 1.95 / sqrt(n) = 0.0098.
    # lambda' = g^2/sigma^2 itself is checked against central differences.
    sde, n = SDES[name](), 40_000
    t, weight = sample_times(sde, n, _generator(4), "likelihood", dtype=torch.float64)
    assert bool((weight == 1).all()) and float(t.min()) >= sde.t_min and float(t.max()) <= sde.T
    ends = log_noise_to_signal(sde, torch.tensor([sde.t_min, sde.T], dtype=torch.float64))
    model_cdf = (log_noise_to_signal(sde, torch.sort(t).values) - ends[0]) / (ends[1] - ends[0])
    empirical = torch.arange(1, n + 1, dtype=torch.float64) / n
    assert float((model_cdf - empirical).abs().max()) < 1.95 / math.sqrt(n)
    grid = torch.linspace(0.1, 0.9, 5, dtype=torch.float64) * sde.T
    _, sigma = sde.marginal_coefficients(grid)
    derivative = (log_noise_to_signal(sde, grid + 1e-6) - log_noise_to_signal(sde, grid - 1e-6)) / 2e-6
    assert torch.allclose(derivative, sde.diffusion(grid) ** 2 / sigma**2, rtol=1e-6)
    with pytest.raises(ValueError, match="unknown weighting"):
        sample_times(sde, 3, None, "elbo")


def test_exact_likelihood_matches_the_mixture_density():
    # With the exact score, the ODE likelihood is log p_{t_min}(x) up to the solver tolerance
    # (rtol = atol = 1e-7 -> errors ~1e-5) and the prior mismatch at T. Pointwise that mismatch
    # is about alpha(T) |mu| |x_T| (the mixture's mean shift), 0.01 for VP's alpha(T) = 0.0066;
    # OU with T = 12 has alpha(T) = 6e-6, so the total error stays below 1e-3.
    sde = OU(T=12.0)
    mixture = _mixture(sde)
    x = mixture.sample(20, _generator(8))
    result = log_likelihood(mixture, sde, x, rtol=1e-7, atol=1e-7)
    truth = mixture.log_prob(x, torch.full((20,), sde.t_min, dtype=torch.float64))
    assert result.exact
    assert float((result.log_prob - truth).abs().max()) < 1e-3


def test_hutchinson_likelihood_is_unbiased():
    # d = 12 Gaussian data N(0, Q diag(s^2) Q^T) with a random rotation Q (with a diagonal
    # Jacobian, Rademacher probes would make the estimate exact): the Hutchinson estimate's mean
    # over 400 independent probes (rows) equals the exact log-density; its spread per row is the
    # probe noise, so the tolerance is 4 standard errors of the row mean plus the solver error 1e-3.
    sde = VPSDE()
    dim, n = 12, 400
    variances = torch.linspace(0.2, 2.0, dim, dtype=torch.float64)
    rotation, _ = torch.linalg.qr(torch.randn(dim, dim, generator=_generator(12), dtype=torch.float64))
    covariance = rotation @ torch.diag(variances) @ rotation.T
    score = GaussianMixtureScore(torch.zeros(1, dim, dtype=torch.float64), covariance[None],
                                 torch.ones(1), sde)
    x = torch.randn(1, dim, generator=_generator(9), dtype=torch.float64).expand(n, dim).contiguous()
    estimate = log_likelihood(score, sde, x, generator=_generator(10), rtol=1e-6, atol=1e-6)
    truth = float(score.log_prob(x[:1], torch.tensor([sde.t_min], dtype=torch.float64)))
    assert not estimate.exact
    spread = float(estimate.log_prob.std())
    assert spread > 0
    assert abs(float(estimate.log_prob.mean()) - truth) < 4 * spread / math.sqrt(n) + 1e-3


def test_forward_path_has_the_exact_marginals():
    # 20,000 paths of the VP SDE from x0 = 1.5 through 6 exact transitions: at every time the
    # mean and variance match alpha(t) x0 and sigma(t)^2 within 4 SE.
    sde, n = VPSDE(), 20_000
    times = torch.tensor([0.0, 0.05, 0.1, 0.3, 0.6, 1.0], dtype=torch.float64)
    paths = sde.forward_path(torch.full((n, 1), 1.5, dtype=torch.float64), times, _generator(11))
    assert tuple(paths.shape) == (6, n, 1)
    means, stds = sde.marginal(torch.full((6, 1), 1.5, dtype=torch.float64), times)
    for k in range(1, 6):
        variance = float(stds[k]) ** 2
        mean_ok, var_ok = _gaussian_moments_within(paths[k], float(means[k]), variance, n, 0.0)
        assert mean_ok and var_ok
    with pytest.raises(ValueError, match="increasing"):
        sde.forward_path(torch.zeros(3, 1), torch.tensor([0.5, 0.1]))
