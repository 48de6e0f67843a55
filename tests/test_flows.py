"""Particle gradient flows: each functional's velocity against autograd of its value, closed-form
dynamics of the integrator, SVGD and the MMD flow on known targets, and bad input.

The exact identity behind the first group: for a functional evaluated at the empirical measure
mu_n = (1/n) sum_i delta_{x_i}, moving x_i by dx changes mu_n by (1/n) of a point mass, so
d F(mu_n) / d x_i = (1/n) grad (dF/dmu)(x_i) = -(1/n) velocity_i (chain rule). Hence
velocity = -n * autograd(value), exactly up to float64 rounding (tolerance 1e-10 absolute on
O(1) quantities, about 1e6 ulp of slack for the blocked sums).
"""

from __future__ import annotations

import math

import pytest
import torch

import measureflow as mf
from measureflow.flows import (
    KL,
    MMD,
    SVGD,
    Entropy,
    FlowResult,
    Interaction,
    Potential,
    Sum,
    flow_figure,
    run,
)
from measureflow.metrics import gaussian_kl, knn_entropy

F64 = torch.float64
Z_MAX = 5.0  # two-sided normal tail 6e-7 per comparison, as in tests/stats_helpers.py


def particles(n: int = 17, d: int = 2, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=F64)


def autograd_velocity(functional, x: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
    """-n / scale * d value / d x: the velocity implied by the value (scale = beta for KL)."""
    position = x.clone().requires_grad_(True)
    (gradient,) = torch.autograd.grad(functional.value(position), position)
    return -x.shape[0] * gradient / scale


def quartic(z: torch.Tensor) -> torch.Tensor:
    return (z**4).sum(1) + z[:, 0] * z[:, 1]


GAUSSIAN_2D = mf.targets.Gaussian(torch.zeros(2, dtype=F64),
                                  torch.tensor([[1.0, 0.3], [0.3, 0.5]], dtype=F64))
TARGET_SAMPLE = particles(11, seed=5) + 1.0

FUNCTIONALS = {
    "potential (autograd grad)": Potential(quartic),
    "potential (target)": Potential(GAUSSIAN_2D),
    "interaction quadratic": Interaction.quadratic(),
    "interaction gaussian": Interaction.gaussian(0.7),
    "interaction power a=2 b=1": Interaction.power(2.0, 1.0),
    "interaction power log": Interaction.power(2.0, 0.0),
    "interaction power singular": Interaction.power(3.0, -0.5),
    "interaction user W, autograd": Interaction(lambda z: z.square().sum(1).square(), block_size=4),
    "blob entropy": Entropy(beta=2.0, method="blob", bandwidth=0.6),
    "blob entropy, small blocks": Entropy(beta=0.5, method="blob", bandwidth=0.4, block_size=5),
    "mmd gaussian": MMD(TARGET_SAMPLE, bandwidth=0.9),
    "mmd imq": MMD(TARGET_SAMPLE, kernel="imq", bandwidth=0.9, block_size=4),
}


@pytest.mark.parametrize("name", list(FUNCTIONALS))
def test_velocity_is_minus_n_times_the_gradient_of_the_value(name):
    functional = FUNCTIONALS[name]
    x = particles()
    expected = autograd_velocity(functional, x)
    torch.testing.assert_close(functional.velocity(x), expected, rtol=0, atol=1e-10)
    assert functional.value(x).ndim == 0


def test_kl_blob_velocity_is_minus_n_over_beta_times_the_gradient_of_its_kl_value():
    # value = beta * F + log Z, so d value / d x_i = -(beta / n) velocity_i.
    beta = 2.5
    functional = KL(GAUSSIAN_2D, beta=beta, method="blob", bandwidth=0.5)
    x = particles()
    torch.testing.assert_close(functional.velocity(x), autograd_velocity(functional, x, scale=beta),
                               rtol=0, atol=1e-10)


def test_blocked_interaction_equals_unblocked():
    x = particles(n=23, d=3, seed=2)
    for make in (Interaction.power, Interaction.gaussian):
        small, whole = make(block_size=4), make(block_size=1000)
        torch.testing.assert_close(small.velocity(x), whole.velocity(x), rtol=0, atol=1e-13)
        torch.testing.assert_close(small.value(x), whole.value(x), rtol=0, atol=1e-14)


def test_interaction_against_the_direct_double_sum():
    x = particles(n=9, d=2, seed=3)
    a, b = 2.0, 1.0
    diff = x[:, None, :] - x[None, :, :]
    r = diff.norm(dim=2)
    off = ~torch.eye(9, dtype=torch.bool)
    grads = torch.where(off[:, :, None], (r.pow(a - 2) - r.pow(b - 2))[:, :, None] * diff, 0.0)
    values = torch.where(off, r.pow(a) / a - r.pow(b) / b, 0.0)
    functional = Interaction.power(a, b, block_size=4)
    torch.testing.assert_close(functional.velocity(x), -grads.sum(1) / 9, rtol=0, atol=1e-13)
    torch.testing.assert_close(functional.value(x), values.sum() / (2 * 81), rtol=0, atol=1e-14)


def test_svgd_against_the_direct_formula():
    target = mf.targets.GaussianMixture(torch.tensor([[0.0, 0.0], [3.0, 1.0]], dtype=F64), 0.5)
    x = 2 * particles(n=40, seed=4) + 1
    functional = SVGD(target)
    h = functional.kernel_bandwidth(x)
    # Liu & Wang's median heuristic exp(-r^2 / h_LW), h_LW = med^2 / log n, in our convention.
    assert h == pytest.approx(float(torch.pdist(x).median()) / math.sqrt(2 * math.log(40)), rel=1e-12)
    kernel = torch.exp(-torch.cdist(x, x).square() / (2 * h * h))
    score = target.score(x, 1.0)
    repulsion = ((x[:, None, :] - x[None, :, :]) * kernel[:, :, None]).sum(1) / h**2
    direct = (kernel @ score + repulsion) / 40
    torch.testing.assert_close(functional.velocity(x), direct, rtol=0, atol=1e-12)
    fixed = SVGD(target, beta=2.0, bandwidth=0.7, block_size=7)
    kernel = torch.exp(-torch.cdist(x, x).square() / (2 * 0.49))
    repulsion = ((x[:, None] - x[None]) * kernel[:, :, None]).sum(1) / 0.49
    direct = (kernel @ target.score(x, 2.0) + repulsion) / 40
    torch.testing.assert_close(fixed.velocity(x), direct, rtol=0, atol=1e-12)


def test_sum_adds_values_velocities_and_temperatures():
    x = particles()
    parts = (Potential(quartic), Interaction.gaussian(), Entropy(beta=2.0), Entropy(beta=4.0))
    total = parts[0] + parts[1] + (parts[2] + parts[3])
    assert isinstance(total, Sum) and len(total.terms) == 4
    torch.testing.assert_close(total.velocity(x), sum(p.velocity(x) for p in parts), rtol=0, atol=1e-14)
    torch.testing.assert_close(total.value(x), sum(p.value(x) for p in parts), rtol=0, atol=1e-14)
    # Independent noises add in variance: (1/2 + 1/4) int mu log mu.
    assert total.temperature == 0.75
    assert "Entropy(beta=2, noise)" in total.label


def test_mmd_velocity_without_noise_and_with_injected_noise():
    y = TARGET_SAMPLE
    x = particles()
    plain = MMD(y, bandwidth=0.9)
    noisy = MMD(y, bandwidth=0.9, noise_level=lambda t: 0.3 * math.exp(-t))
    # With noise the gradient is taken at x + beta_t u, u drawn from the generator.
    first = noisy.velocity(x, time=0.5, generator=torch.Generator().manual_seed(1))
    again = noisy.velocity(x, time=0.5, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(first, again, rtol=0, atol=0)
    u = torch.randn(x.shape, generator=torch.Generator().manual_seed(1), dtype=F64)
    shifted = x + 0.3 * math.exp(-0.5) * u
    # The witness gradient at the shifted points, with the particle sum still over x.
    h2 = 0.81

    def grad_mean_embedding(at, sample):
        k = torch.exp(-torch.cdist(at, sample).square() / (2 * h2))
        return -((at[:, None, :] - sample[None, :, :]) * k[:, :, None]).mean(1) / h2

    expected = -(grad_mean_embedding(shifted, x) - grad_mean_embedding(shifted, y))
    torch.testing.assert_close(first, expected, rtol=0, atol=1e-12)
    assert noisy.noise_at(100.0) < 1e-40
    assert MMD(y).kernel_bandwidth == pytest.approx(float(torch.pdist(y).median()))
    torch.testing.assert_close(plain.velocity(x), autograd_velocity(plain, x), rtol=0, atol=1e-10)


# --- the integrator on closed-form dynamics ---------------------------------------------------


def test_quadratic_attraction_contracts_to_the_mean_exactly():
    # dx_i/dt = -(x_i - mean): Euler gives x_i - mean <- (1 - h)(x_i - mean), mean fixed.
    x0 = particles(n=30, d=2, seed=6)
    result = run(Interaction.quadratic(), x0, 0.05, 40, progress=False, record_every=10)
    mean = x0.mean(0)
    torch.testing.assert_close(result.particles, mean + 0.95**40 * (x0 - mean), rtol=0, atol=1e-12)
    assert result.steps.tolist() == [0, 10, 20, 30, 40]
    torch.testing.assert_close(result.times, torch.tensor([0.0, 0.5, 1.0, 1.5, 2.0], dtype=F64))
    # F = 1/(4 n^2) sum_{i != j} |x_i - x_j|^2 shrinks like (1 - h)^(2k).
    torch.testing.assert_close(result.values, result.values[0] * 0.95 ** (2 * result.steps.to(F64)),
                               rtol=1e-12, atol=0)


def test_ornstein_uhlenbeck_moments_match_the_closed_form():
    # F = int |x|^2/2 dmu + (1/beta) int mu log mu from N(m0, s0^2 I): the particles follow
    # x <- (1 - h) x + sqrt(2h/beta) xi exactly (Euler-Maruyama of dx = -x dt + sqrt(2/beta) dB),
    # so after k steps, with a = 1 - h, each coordinate is Gaussian with
    #   mean m0 a^k,  variance s0^2 a^(2k) + (2h/beta) (1 - a^(2k)) / (1 - a^2).
    # The continuous-time law (mean m0 e^-t, variance s0^2 e^-2t + (1 - e^-2t)/beta) differs by
    # O(h); here that is ~2e-3, below the Monte Carlo SE (~4e-3), so we test the exact discrete law.
    # Standard errors from n independent particles: sqrt(var/n) for the mean and
    # sqrt((m4 - m2^2)/n) = var sqrt(2/n) (Gaussian) for the variance.
    n, beta, h, k = 20000, 2.0, 0.02, 50
    m0, s0 = 2.0, 0.5
    generator = torch.Generator().manual_seed(11)
    x0 = m0 + s0 * torch.randn(n, 2, generator=generator, dtype=F64)
    functional = Potential(lambda z: 0.5 * z.square().sum(1), grad=lambda z: z) + Entropy(beta)
    result = run(functional, x0, h, k, generator=generator, progress=False, record_values=False)
    a = 1 - h
    mean = m0 * a**k
    variance = s0**2 * a ** (2 * k) + (2 * h / beta) * (1 - a ** (2 * k)) / (1 - a**2)
    z_mean = (result.particles.mean(0) - mean) / math.sqrt(variance / n)
    z_variance = (result.particles.var(0) - variance) / (variance * math.sqrt(2 / n))
    assert float(z_mean.abs().max()) < Z_MAX, z_mean
    assert float(z_variance.abs().max()) < Z_MAX, z_variance
    assert result.temperature == 0.5 and result.values is None


def test_aggregation_with_newtonian_repulsion_fills_the_unit_disk():
    # W(z) = |z|^2/2 - log|z| in 2-D: v_i = -(x_i - mean) + (1/n) sum_{j != i} (x_i - x_j)/|x_i - x_j|^2.
    # Virial identity, for any configuration (sum_{i != j} of x_i.(x_i - x_j)/|x_i - x_j|^2 is
    # n(n - 1)/2 by symmetrizing): sum_i x_i.v_i = -sum_i |x_i - mean|^2 + (n - 1)/2. So at a
    # steady state the mean squared radius is exactly (n - 1)/(2n), and away from it the gap is
    # |(1/n) sum_i x_i.v_i| <= max|x - mean| max|v|. The continuum minimizer is the uniform
    # density 1/pi on the unit disk (Lap W = 2 - 2 pi delta; Fetecau, Huang & Kolokolnikov 2011),
    # whose mean squared radius is 1/2 and which puts half its mass inside radius 1/sqrt(2).
    n = 200
    functional = Interaction.power(2.0, 0.0)
    x = particles(n=n, seed=12)
    virial = (x * functional.velocity(x)).sum()
    centred = x - x.mean(0)
    assert float(virial) == pytest.approx(-float(centred.square().sum()) + (n - 1) / 2, rel=1e-12)

    result = run(functional, 0.3 * x, 0.05, 200, progress=False, record_values=False)
    centred = result.particles - result.particles.mean(0)
    residual = float(functional.velocity(result.particles).norm(dim=1).max())
    radius = centred.norm(dim=1)
    assert residual < 0.01
    gap = abs(float(radius.square().mean()) - (n - 1) / (2 * n))
    assert gap <= float(radius.max()) * residual + 1e-12
    # The particles' outer ring sits just inside the disk's edge (0.93 at n = 100, 0.96 at 300).
    assert 0.9 < float(radius.max()) <= 1.0
    # Half inside 1/sqrt(2): an i.i.d. uniform sample would miss by ~0.035 (1 binomial SE); the
    # steady state is more regular than that, so 0.05 is a loose bound that still detects a
    # non-uniform profile (a Gaussian of the same mean square radius puts 0.63 there).
    assert abs(float((radius < 1 / math.sqrt(2)).double().mean()) - 0.5) < 0.05


def test_noise_is_reproducible_from_the_generator():
    functional = KL(GAUSSIAN_2D, beta=1.0)
    x0 = particles(n=50)
    first = run(functional, x0, 0.1, 5, generator=torch.Generator().manual_seed(3), progress=False)
    again = run(functional, x0, 0.1, 5, generator=torch.Generator().manual_seed(3), progress=False)
    torch.testing.assert_close(first.particles, again.particles, rtol=0, atol=0)
    assert not torch.equal(first.particles, x0)


def test_kl_value_matches_the_gaussian_closed_form():
    # Particles exactly N(1, 0.5^2) in d = 1 against pi = N(0, 1): KL = 0.5 (s^2 + m^2 - 1) - log s.
    # The estimate is a mean over particles of -log rho_i - const + beta L(x_i) (k-NN entropy),
    # so its SE is about sd(per-particle terms) / sqrt(n); the k-NN bias in d = 1 is O((k/n)^2).
    n = 8000
    x = 1.0 + 0.5 * torch.randn(n, 1, generator=torch.Generator().manual_seed(2), dtype=F64)
    target = mf.targets.Gaussian(torch.zeros(1, dtype=F64), torch.ones(1, 1, dtype=F64))
    truth = float(gaussian_kl(torch.ones(1, dtype=F64), torch.full((1, 1), 0.25, dtype=F64),
                              torch.zeros(1, dtype=F64), torch.eye(1, dtype=F64)))
    estimate = float(KL(target).value(x))
    sorted_x = x[:, 0].sort().values
    spacing = torch.minimum(sorted_x.diff()[1:], sorted_x.diff()[:-1])  # a rough per-point log rho
    terms = -spacing.log() + target.energy(sorted_x[1:-1, None])
    standard_error = float(terms.std()) / math.sqrt(n)
    assert abs(estimate - truth) < Z_MAX * standard_error, (estimate, truth, standard_error)
    assert float(SVGD(target).value(x)) == pytest.approx(estimate, rel=1e-12)


def test_knn_entropy_of_a_gaussian():
    # H(N(0, S)) = 0.5 log det(2 pi e S); the Kozachenko-Leonenko estimator's SE is about
    # d * sd(log rho) / sqrt(n) (~0.02 here); 5 SE plus the O((k/n)^(2/d)) bias (~0.004).
    n, d = 4000, 2
    x = torch.randn(n, d, generator=torch.Generator().manual_seed(7), dtype=F64) * torch.tensor([1.0, 2.0])
    truth = 0.5 * d * math.log(2 * math.pi * math.e) + math.log(2.0)
    assert abs(float(knn_entropy(x)) - truth) < 5 * 0.02 + 0.004


def test_svgd_recovers_the_mean_and_covariance_of_a_gaussian():
    # SVGD's particles are a deterministic quadrature, not random draws: we require them to be
    # at least as accurate as n exact i.i.d. draws typically are. Each mean coordinate must lie
    # within 1 i.i.d. standard error sqrt(S_ii / n) and each covariance entry within 2,
    # sqrt((S_ii S_jj + S_ij^2) / n). At a finite n SVGD underestimates the variance (Ba et al.,
    # "Understanding the variance collapse of SVGD", ICLR 2022); here by about 0.75 SE for seeds
    # 0-3, and the mean error is ~0.05 SE. The start N((-2, 2), 0.5^2 I) is ~40 SE away, and the
    # run is long enough for |phi| < 0.01 (checked).
    n = 150
    mean = torch.tensor([1.0, -1.0], dtype=F64)
    cov = torch.tensor([[1.0, 0.6], [0.6, 0.8]], dtype=F64)
    target = mf.targets.Gaussian(mean, cov)
    x0 = torch.tensor([-2.0, 2.0], dtype=F64) + 0.5 * particles(n=n, seed=1)
    result = run(SVGD(target), x0, 0.3, 300, progress=False, record_every=50)
    x = result.particles
    mean_se = (cov.diagonal() / n).sqrt()
    cov_se = ((cov.diagonal()[:, None] * cov.diagonal()[None, :] + cov.square()) / n).sqrt()
    assert float(((x.mean(0) - mean) / mean_se).abs().max()) < 1.0
    assert float(((torch.cov(x.T) - cov) / cov_se).abs().max()) < 2.0
    assert float(SVGD(target).velocity(x).abs().max()) < 0.01
    assert float(((x0.mean(0) - mean) / mean_se).abs().max()) > 30
    # The KL estimate fell along the way.
    assert float(result.values[-1]) < 0.1 * float(result.values[0])


def test_mmd_flow_decreases_the_mmd_monotonically():
    # A gradient flow decreases F at rate int |v|^2 dmu; forward Euler with a step small against
    # the velocity's Lipschitz constant keeps every step a descent step.
    generator = torch.Generator().manual_seed(8)
    y = torch.randn(100, 2, generator=generator, dtype=F64)
    x0 = torch.randn(100, 2, generator=generator, dtype=F64) * 0.3 + torch.tensor([2.0, 0.0], dtype=F64)
    result = run(MMD(y), x0, 0.5, 300, progress=False, record_every=10)
    values = result.values
    assert bool((values.diff() <= 1e-15).all())
    assert float(values[-1]) < 0.02 * float(values[0])


def test_blob_kl_flow_decreases_its_regularized_value():
    target = mf.targets.Gaussian(torch.zeros(1, dtype=F64), torch.ones(1, 1, dtype=F64))
    functional = KL(target, beta=1.0, method="blob", bandwidth=0.3)
    x0 = 0.2 * particles(n=80, d=1, seed=9) + 2.0
    result = run(functional, x0, 0.01, 200, progress=False, record_every=20)
    assert bool((result.values.diff() < 0).all())
    assert float(result.particles.mean()) < 1.0  # moved toward the target's mean 0
    assert result.temperature == 0.0


def test_flow_result_summary_and_figures():
    x0 = particles(n=60)
    result = run(Potential(quartic) + Entropy(1.0), x0, 0.01, 20, generator=torch.Generator().manual_seed(0),
                 progress=False, n_keep=25)
    assert isinstance(result, FlowResult)
    assert result.snapshots.shape == (len(result.times), 25, 2)
    torch.testing.assert_close(result.snapshots[0], x0[:25])
    summary = result.to_dict()
    assert summary["n_particles"] == 60 and summary["dim"] == 2 and summary["n_steps"] == 20
    assert len(summary["values"]) == len(summary["times"]) and summary["final_time"] == pytest.approx(0.2)
    assert len(flow_figure(result, GAUSSIAN_2D).axes) == 4
    one_d = run(Potential(lambda z: z.square().sum(1)), particles(n=40, d=1), 0.1, 3, progress=False,
                record_values=False)
    assert len(flow_figure(one_d, n_panels=2).axes) == 2


# --- bad input ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"step_size": 0.0}, ValueError, "step_size"),
        ({"step_size": float("nan")}, ValueError, "step_size"),
        ({"n_steps": 0}, ValueError, "n_steps"),
        ({"record_every": 0}, ValueError, "record_every"),
        ({"x0": torch.zeros(5)}, ValueError, "x0 must have shape"),
        ({"x0": torch.tensor([[0.0], [float("nan")]])}, ValueError, "x0 contains 1 NaN"),
        ({"functional": lambda x: x}, TypeError, "Functional"),
    ],
)
def test_run_rejects_bad_input(kwargs, error, message):
    arguments = {"functional": Potential(quartic), "x0": particles(n=4), "step_size": 0.1, "n_steps": 3}
    arguments.update(kwargs)
    functional = arguments.pop("functional")
    x0 = arguments.pop("x0")
    with pytest.raises(error, match=message):
        run(functional, x0, progress=False, **arguments)


def test_divergence_names_the_step():
    # dx/dt = -4 x^3 from x = 10 with h = 1 overflows to inf within a few steps.
    functional = Potential(lambda z: z.pow(4).sum(1))
    with pytest.raises(ValueError, match=r"diverged at step \d+ .*reduce the step size"):
        run(functional, torch.full((3, 1), 10.0, dtype=F64), 1.0, 50, progress=False)


@pytest.mark.parametrize(
    ("make", "error", "message"),
    [
        (lambda: Entropy(beta=0.0), ValueError, "beta"),
        (lambda: Entropy(method="kde"), ValueError, "method"),
        (lambda: Entropy(bandwidth=0.5), ValueError, "blob"),
        (lambda: KL("gaussian"), TypeError, "Target"),
        (lambda: SVGD(GAUSSIAN_2D, bandwidth="scott"), ValueError, "median"),
        (lambda: SVGD(GAUSSIAN_2D, bandwidth=-1.0), ValueError, "bandwidth"),
        (lambda: MMD(TARGET_SAMPLE, kernel="laplace"), ValueError, "kernel"),
        (lambda: MMD(TARGET_SAMPLE, noise_level=-0.1), ValueError, "noise_level"),
        (lambda: MMD(torch.zeros(3)), ValueError, "target_samples"),
        (lambda: Interaction.power(a=1.0, b=2.0), ValueError, "b < a"),
        (lambda: Interaction(3.0), TypeError, "W must be a callable"),
        (lambda: Interaction.quadratic(block_size=0), ValueError, "block_size"),
        (lambda: Potential("V"), TypeError, "V must be"),
        (lambda: Sum(()), ValueError, "at least one"),
        (lambda: Sum((Potential(quartic), 1.0)), TypeError, "Functional"),
    ],
)
def test_functionals_reject_bad_arguments(make, error, message):
    with pytest.raises(error, match=message):
        make()


def test_dimension_mismatch_and_bad_shapes():
    with pytest.raises(ValueError, match="2-dimensional"):
        KL(GAUSSIAN_2D).velocity(particles(d=3))
    with pytest.raises(ValueError, match="target_samples has d = 2"):
        MMD(TARGET_SAMPLE).velocity(particles(d=1))
    with pytest.raises(ValueError, match=r"V must map x of shape \(17, 2\) to \(17,\)"):
        Potential(lambda z: z).value(particles())
    with pytest.raises(ValueError, match="finite"):
        Interaction.quadratic().velocity(torch.tensor([[0.0], [float("inf")]]))


def test_star_import():
    namespace: dict = {}
    exec("from measureflow.flows import *", namespace)
    assert {"run", "KL", "SVGD", "MMD", "Interaction", "simplex"} <= set(namespace)


def test_power_interaction_at_coinciding_particles():
    # For b > 1 the pair force |z|^(b-1) -> 0, so a duplicated particle feels only the others:
    # its velocity equals its velocity in the set without the duplicate, rescaled from n - 1 to n.
    x = torch.tensor([[0.0, 0.0], [0.0, 0.0], [1.0, 0.5], [-1.0, 0.2]], dtype=F64)
    velocity = Interaction.power(2.0, 1.5).velocity(x)
    assert bool(torch.isfinite(velocity).all())
    without = Interaction.power(2.0, 1.5).velocity(x[1:])
    torch.testing.assert_close(velocity[:2], (without[:1] * 3 / 4).expand(2, 2), rtol=0, atol=1e-14)
    # For b <= 1 the force is singular there: a clear error instead of NaN.
    with pytest.raises(ValueError, match="coincide"):
        Interaction.power(2.0, 1.0).velocity(x)
