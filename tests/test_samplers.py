"""Every sampler against a target with a known answer.

On a Gaussian target every Langevin-type kernel here is a linear recursion
z' = A z + B xi, whose stationary covariance solves the discrete Lyapunov equation
S = A S A^T + B B^T exactly (including the O(h) discretization bias and, for SGLD, the minibatch
noise). The tests compare the final states of many independent chains, which are independent
draws from the chain's law after a burn-in far longer than its mixing time, with that
prediction; standard errors come from those independent draws (see stats_helpers.py).
"""

from __future__ import annotations

import math

import pytest
import scipy.linalg
import torch
from stats_helpers import assert_within_se, double_well_moments, mean_and_cov_se

import measureflow as mf
from measureflow.samplers import annealed
from measureflow.targets import FiniteSumTarget

F64 = torch.float64
COV = torch.tensor([[1.0, 0.5], [0.5, 2.0]], dtype=F64)
MEAN = torch.tensor([1.0, -2.0], dtype=F64)


def lyapunov(a, q) -> torch.Tensor:
    """S solving S = A S A^T + Q."""
    return torch.as_tensor(scipy.linalg.solve_discrete_lyapunov(a.numpy(), q.numpy()))


def final_states(target, sampler, *, n_chains=4000, burn_in=600, seed=0, **kwargs):
    result = mf.sample(
        target, sampler, n_chains=n_chains, n_steps=1, burn_in=burn_in, seed=seed,
        progress=False, diagnostics=False, **kwargs,
    )
    return result.samples[-1], result


def ula_covariance(cov, step_size, beta):
    precision = torch.linalg.inv(cov)
    a = torch.eye(len(cov), dtype=F64) - step_size * precision
    return lyapunov(a, (2 * step_size / beta) * torch.eye(len(cov), dtype=F64))


def test_ula_stationary_covariance_has_the_predicted_bias():
    target = mf.targets.Gaussian(MEAN, COV)
    beta, step_size = 2.0, 0.3
    draws, _ = final_states(target, "ula", step_size=step_size, beta=beta, burn_in=400)
    predicted = ula_covariance(COV, step_size, beta)
    mean_se, cov_se = mean_and_cov_se(draws, predicted)
    assert_within_se(draws.mean(0), MEAN, mean_se, "ULA mean")
    assert_within_se(torch.cov(draws.T), predicted, cov_se, "ULA covariance vs Lyapunov")
    # The same data reject the exact covariance: ULA's O(h) bias is real and detected.
    z = (torch.cov(draws.T) - COV / beta) / cov_se
    assert float(z.abs().max()) > 5


def test_mala_is_exact_on_a_gaussian():
    target = mf.targets.Gaussian(MEAN, COV)
    beta = 2.0
    result = mf.sample(
        target, "mala", n_chains=4000, n_steps=200, burn_in=400, step_size=0.5, beta=beta,
        seed=1, progress=False, init=MEAN[None],
    )
    draws = result.samples[-1]
    mean_se, cov_se = mean_and_cov_se(draws, COV / beta)
    assert_within_se(draws.mean(0), MEAN, mean_se, "MALA mean")
    assert_within_se(torch.cov(draws.T), COV / beta, cov_se, "MALA covariance")
    # Dual averaging aims at 0.574; the averaged step it freezes lands near it (design
    # property of Hoffman & Gelman's scheme, not a Monte Carlo quantity): 0.05 is generous.
    assert abs(float(result.acceptance.mean()) - 0.574) < 0.05
    assert result.step_size != 0.5


@pytest.mark.parametrize("beta", [1.0, 4.0])
def test_mala_on_the_double_well_matches_quadrature(beta):
    target = mf.targets.DoubleWell(1).double()
    start = torch.rand(4000, 1, generator=torch.Generator().manual_seed(2), dtype=F64) * 3 - 1.5
    result = mf.sample(
        target, "mala", n_chains=4000, n_steps=500, burn_in=500, step_size=0.1, beta=beta,
        init=start, seed=3, progress=False,
    )
    draws = result.samples[-1, :, 0]
    moment2, moment4 = double_well_moments(target, beta)
    se = math.sqrt((moment4 - moment2**2) / draws.shape[0])
    assert_within_se(draws.square().mean(), moment2, se, "MALA double-well E[x^2]")


def test_sghmc_matches_its_lyapunov_covariance():
    # Full gradient on a non-finite-sum target: z = (x, r) follows
    # r' = (1 - h g) r - h P x + s xi,  x' = x + h r'  with s = sqrt(2 g h / beta).
    variance, step_size, friction, beta = 2.0, 0.2, 1.5, 1.0
    target = mf.targets.Gaussian(torch.zeros(1, dtype=F64), torch.tensor([[variance]], dtype=F64))
    draws, result = final_states(
        target, "sghmc", step_size=step_size, beta=beta, friction=friction, burn_in=800
    )
    h, p, s = step_size, 1 / variance, math.sqrt(2 * friction * step_size / beta)
    a = torch.tensor([[1 - h * h * p, h * (1 - h * friction)], [-h * p, 1 - h * friction]], dtype=F64)
    b = torch.tensor([[h * s], [s]], dtype=F64)
    predicted = lyapunov(a, b @ b.T)
    joint = torch.cat([draws, result.final_state.momentum], dim=1)
    mean_se, cov_se = mean_and_cov_se(joint, predicted)
    assert_within_se(joint.mean(0), torch.zeros(2), mean_se, "SGHMC mean")
    assert_within_se(torch.cov(joint.T), predicted, cov_se, "SGHMC joint covariance")


class GaussianLocation(FiniteSumTarget):
    """theta ~ N(0, tau^2), y_i | theta ~ N(theta, 1): data terms (theta - y_i)^2 / 2.

    Every term has the same Hessian, so the minibatch gradient is the exact P theta plus an
    additive noise -(N / b) sum_B y_i independent of theta, with variance N^2 var(y) / b (draws
    with replacement, var the population variance of the data).
    """

    name = "gaussian-location"

    def __init__(self, data, prior_std):
        super().__init__(1)
        self._anchor = self._anchor.to(F64)
        self.register_buffer("data", data)
        self.n_terms = data.shape[0]
        self.prior_std = prior_std

    def prior_energy(self, x):
        return 0.5 * x.square().sum(-1) / self.prior_std**2

    def data_energy(self, x, index):
        return 0.5 * (x - self.data[index]).square()

    def energy(self, x):
        return self.prior_energy(x) + 0.5 * (x - self.data).square().sum(-1)

    @property
    def precision(self):
        return self.n_terms + 1 / self.prior_std**2


def _location_target():
    data = 1 + 2 * torch.randn(100, generator=torch.Generator().manual_seed(4), dtype=F64)
    return GaussianLocation(data, prior_std=10.0)


def _fourth_moment_se(draws):
    """SE of the sample variance without assuming Gaussianity: sqrt((m4 - m2^2) / n)."""
    centred = draws - draws.mean()
    return math.sqrt(float((centred**4).mean() - centred.square().mean() ** 2) / draws.shape[0])


@pytest.mark.parametrize("sampler", ["sgld", "sgld-cv"])
def test_sgld_stationary_variance_includes_minibatch_noise(sampler):
    target = _location_target()
    step_size, batch_size, beta = 0.005, 10, 1.0
    draws, result = final_states(
        target, sampler, step_size=step_size, beta=beta, batch_size=batch_size, burn_in=300,
        init=torch.zeros(1, 1, dtype=F64),
    )
    p, n = target.precision, target.n_terms
    contraction = (1 - step_size * p) ** 2
    # SGLD: theta' - m = (1 - hP)(theta - m) + h eps + sqrt(2h / beta) xi.
    # SGLD-CV: the control variate cancels eps exactly (the noise does not depend on theta).
    noise_var = n**2 * target.data.var(unbiased=False) / batch_size
    gradient_noise = step_size**2 * noise_var if sampler == "sgld" else 0.0
    predicted = (gradient_noise + 2 * step_size / beta) / (1 - contraction)
    mean = float(target.data.sum() / p)
    x = draws[:, 0]
    assert_within_se(x.mean(), mean, math.sqrt(predicted / x.shape[0]), f"{sampler} mean")
    assert_within_se(x.var(), predicted, _fourth_moment_se(x), f"{sampler} variance")
    if sampler == "sgld":
        assert result.n_data_grads == 301 * batch_size
    else:  # two minibatch gradients per step, plus the mode search and the gradient at the mode
        setup = (result.final_state.mode_evaluations + 1) * target.n_terms
        assert result.n_data_grads == 301 * 2 * batch_size + setup


def test_psgld_adapts_to_the_scale_of_each_coordinate():
    # With a long memory (alpha = 0.999) the preconditioner G is nearly constant after burn-in,
    # so each coordinate j is a ULA chain with step h G_j, stationary variance
    # s_j^2 / (1 - h G_j / (2 s_j^2)). V_j tracks E[g_j^2] = v_j / s_j^4, so G_j ~ s_j: the
    # preconditioner learns each coordinate's scale (here 1 and 0.1).
    scales = torch.tensor([1.0, 0.1], dtype=F64)
    target = mf.targets.Gaussian(torch.zeros(2, dtype=F64), scales.square())
    step_size = 0.02
    # Start at the target's scale: V starts at the squared initial gradient and forgets it only
    # over a few 1 / (1 - alpha) = 1000 steps.
    start = scales * torch.randn(2000, 2, generator=torch.Generator().manual_seed(5), dtype=F64)
    draws, result = final_states(
        target, "psgld", step_size=step_size, alpha=0.999, burn_in=3000, n_chains=2000, seed=5,
        init=start,
    )
    gain = (1 / (1e-5 + result.final_state.square_avg.sqrt())).mean(0)
    ratio = float(gain[0] / gain[1])
    assert 7 < ratio < 13, f"preconditioner ratio {ratio} should be near the scale ratio 10"
    predicted = scales.square() / (1 - step_size * gain / (2 * scales.square()))
    se = torch.tensor([_fourth_moment_se(draws[:, j]) for j in range(2)])
    assert_within_se(draws.var(0), predicted, se, "pSGLD variances")


def test_psgld_correction_is_the_divergence_of_the_preconditioner():
    # Gamma_j = dG_j / dtheta_j with G(theta) = 1 / (eps + sqrt(alpha V_prev + (1 - alpha) g(theta)^2)),
    # g the minibatch gradient (minibatch and V_prev held fixed): compare with autograd.
    from measureflow.samplers import psgld

    features = torch.randn(50, 3, generator=torch.Generator().manual_seed(13), dtype=F64)
    target = mf.targets.LogisticRegression(features, (features[:, 0] > 0).to(F64))
    params = psgld.PSGLDParams(step_size=1e-3, alpha=0.9, epsilon=1e-3, batch_size=10)
    theta = 0.3 * torch.randn(1, target.dim, generator=torch.Generator().manual_seed(14), dtype=F64)
    index = target.sample_index(1, 10, torch.Generator().manual_seed(15))
    previous = torch.rand(1, target.dim, generator=torch.Generator().manual_seed(16), dtype=F64)

    def preconditioner(point):
        gradient = target.minibatch_grad_energy(point[None], index)[0]
        square_avg = params.alpha * previous[0] + (1 - params.alpha) * gradient.square()
        return 1 / (params.epsilon + square_avg.sqrt())

    jacobian = torch.autograd.functional.jacobian(preconditioner, theta[0])
    gradient = target.minibatch_grad_energy(theta, index)
    square_avg = params.alpha * previous + (1 - params.alpha) * gradient.square()
    gamma = psgld.preconditioner_divergence(
        square_avg, gradient, target.minibatch_hessian_diag(theta, index), params
    )
    torch.testing.assert_close(gamma[0], torch.diagonal(jacobian), rtol=1e-10, atol=1e-12)


def test_psgld_correction_term_runs_and_matches_without_it_for_long_memory():
    features = torch.randn(60, 2, generator=torch.Generator().manual_seed(6), dtype=F64)
    labels = (features[:, 0] > 0).to(F64)
    target = mf.targets.LogisticRegression(features, labels)
    results = [
        mf.sample(target, "psgld", n_chains=8, n_steps=20, burn_in=0, step_size=1e-3, seed=7,
                  batch_size=10, correction=flag, progress=False)
        for flag in (False, True)
    ]
    # Same random numbers; the correction is O(1 - alpha) * h: a small, non-zero change.
    difference = (results[0].samples - results[1].samples).abs().max()
    assert 0 < float(difference) < 1e-2
    # The correction doubles the per-step cost; both start with one minibatch gradient (V's start).
    start_cost = 10
    assert results[1].n_data_grads - start_cost == 2 * (results[0].n_data_grads - start_cost)


def test_annealed_finds_the_global_well_and_tracks_the_best_point():
    # Tilted double well: global minimum near x = -1, a local one near x = +1 where all chains
    # start. Gradient descent from +1 stays there; annealing crosses the barrier at high
    # temperature and settles in the deeper well as beta grows.
    target = mf.targets.from_energy(lambda x: ((x**2 - 1) ** 2 + 0.3 * x).sum(-1), dim=1)
    result = mf.sample(
        target, "annealed", n_chains=500, n_steps=3000, burn_in=0, step_size=0.01, beta=20.0,
        beta_start=0.5, schedule="geometric", init=torch.ones(1, 1), seed=8, progress=False,
    )
    best = result.best_position
    torch.testing.assert_close(target.energy(best), result.best_energy)
    assert bool((result.best_energy <= result.energy_trace.min(0).values + 1e-6).all())
    # At beta = 20 the deeper well holds exp(20 * 0.6) ~ 1.6e5 times more mass; chains that
    # cross at high temperature end there. Most do (the count is deterministic given the seed).
    assert float((best[:, 0] < 0).double().mean()) > 0.8


@pytest.mark.parametrize("schedule", annealed.SCHEDULES)
def test_annealing_schedules_hit_their_endpoints(schedule):
    params = annealed.AnnealedParams(step_size=0.1, beta=10.0, beta_start=0.5, schedule=schedule, horizon=100)
    betas = [annealed.beta_at(params, t) for t in range(0, 150)]
    assert betas[0] == pytest.approx(0.5) and betas[100] == pytest.approx(10.0)
    assert betas[-1] == pytest.approx(10.0)
    assert all(b2 >= b1 for b1, b2 in zip(betas, betas[1:], strict=False))


def test_driver_shapes_thinning_and_determinism():
    target = mf.targets.GaussianMixture.ring()
    kwargs = dict(n_chains=16, n_steps=40, burn_in=10, step_size=0.01, progress=False)
    first = mf.sample(target, "ula", seed=3, **kwargs)
    again = mf.sample(target, "ula", seed=3, **kwargs)
    other = mf.sample(target, "ula", seed=4, **kwargs)
    thinned = mf.sample(target, "ula", seed=3, thin=4, **kwargs)
    assert first.samples.shape == (40, 16, 2) and first.energy_trace.shape == (40, 16)
    assert first.ess.shape == (2,) and first.rhat.shape == (2,)
    torch.testing.assert_close(first.samples, again.samples)
    assert not torch.equal(first.samples, other.samples)
    torch.testing.assert_close(thinned.samples, first.samples[3::4])
    energies = target.energy(first.samples.reshape(-1, 2)).reshape(40, 16)
    torch.testing.assert_close(first.energy_trace, energies)
    summary = first.to_dict()
    assert summary["n_kept"] == 40 and summary["params"]["step_size"] == 0.01


def test_divergence_is_reported_with_the_step_size():
    with pytest.raises(ValueError, match=r"step_size=10.*smaller step size"):
        mf.sample(mf.targets.DoubleWell(), "ula", n_chains=4, n_steps=200, burn_in=0,
                  step_size=10.0, progress=False)


@pytest.mark.parametrize(
    "kwargs,error,message",
    [
        (dict(sampler="nope"), ValueError, "unknown sampler"),
        (dict(step_size=0.0), ValueError, "step_size"),
        (dict(step_size=-1.0), ValueError, "step_size"),
        (dict(beta=0.0), ValueError, "beta"),
        (dict(beta=float("inf")), ValueError, "beta"),
        (dict(n_chains=0), ValueError, "n_chains"),
        (dict(thin=0), ValueError, "thin"),
        (dict(init=torch.zeros(3)), ValueError, "init must have shape"),
        (dict(init=torch.full((4, 1), float("nan"))), ValueError, "NaN"),
        (dict(friction=2.0), TypeError, "no option"),
        (dict(sampler="sghmc", friction=-1.0), ValueError, "friction"),
        (dict(sampler="annealed", schedule="cubic"), ValueError, "schedule"),
        (dict(sampler="sgld", batch_size=0), ValueError, "batch_size"),
        (dict(sampler="sgld", compile=True), ValueError, "compile=True is available"),
    ],
)
def test_bad_arguments_raise_clear_errors(kwargs, error, message):
    arguments = dict(sampler="ula", n_chains=4, n_steps=5, burn_in=0, progress=False)
    arguments.update(kwargs)
    with pytest.raises(error, match=message):
        mf.sample(mf.targets.DoubleWell(), **arguments)


def test_target_must_be_a_target():
    with pytest.raises(TypeError, match="from_energy"):
        mf.sample(lambda x: x, "ula")


@pytest.mark.parametrize("name", sorted(mf.samplers.SAMPLERS))
def test_every_sampler_runs_in_float32_and_float64(name):
    features = torch.randn(30, 2, generator=torch.Generator().manual_seed(9))
    target = mf.targets.LogisticRegression(features, (features[:, 0] > 0).float())
    options = {} if name in ("ula", "mala", "annealed") else {"batch_size": 5}
    for dtype in (torch.float32, torch.float64):
        result = mf.sample(target, name, n_chains=4, n_steps=8, burn_in=2, step_size=1e-3,
                           progress=False, dtype=dtype, **options)
        assert result.samples.dtype == dtype and result.samples.shape == (8, 4, 3)
        assert bool(torch.isfinite(result.samples).all())


def test_find_mode_on_a_gaussian():
    target = mf.targets.Gaussian(MEAN, COV)
    mode = mf.samplers.find_mode(target, torch.zeros(1, 2, dtype=F64))
    torch.testing.assert_close(mode[0], MEAN)


@pytest.mark.parametrize("name", ["ula", "mala"])
def test_compiled_chain_equals_the_eager_chain(name):
    # compile=True compiles the deterministic transition and draws the same random numbers in
    # the same order, so in float64 the two chains agree to rounding.
    target = mf.targets.GaussianMixture.ring().double()
    kwargs = dict(n_chains=64, n_steps=30, burn_in=20, step_size=0.1, seed=11, progress=False)
    eager = mf.sample(target, name, **kwargs)
    compiled = mf.sample(target, name, compile=True, **kwargs)
    torch.testing.assert_close(compiled.samples, eager.samples, rtol=1e-9, atol=1e-9)
    assert compiled.step_size == pytest.approx(eager.step_size, rel=1e-9)


def test_compiled_chain_with_noise_drawn_ahead_on_a_helper_thread():
    # Above 2^17 random numbers per step the driver draws step t + 1's noise on a helper thread
    # while step t runs; the chain and the generator's final state must be unchanged.
    target = mf.targets.GaussianMixture.ring().double()
    generators = [torch.Generator().manual_seed(12) for _ in range(2)]
    kwargs = dict(n_chains=70000, n_steps=4, burn_in=2, step_size=0.05, progress=False,
                  diagnostics=False)
    eager = mf.sample(target, "ula", generator=generators[0], **kwargs)
    compiled = mf.sample(target, "ula", generator=generators[1], compile=True, **kwargs)
    torch.testing.assert_close(compiled.samples, eager.samples, rtol=1e-9, atol=1e-9)
    assert torch.equal(generators[0].get_state(), generators[1].get_state())


def test_divergence_is_a_divergence_error_and_a_value_error():
    # h * curvature = 10 * 100 > 2: ULA on L = 50 |x|^2 multiplies |x| by |1 - 100 h| = 999 per step.
    target = mf.targets.from_energy(lambda x: 50 * x.square().sum(1), 2)
    with pytest.raises(mf.samplers.DivergenceError, match=r"NaN/inf by step \d+ with step_size=10") as caught:
        mf.sample(target, "ula", n_chains=4, n_steps=200, burn_in=0, step_size=10.0, progress=False)
    assert isinstance(caught.value, ValueError)


# Per chain, for burn_in + n_steps = 15 steps on a finite sum of N = 30 terms with minibatches of
# b = 5: (gradient evaluations, per-datum gradients), init included. MALA and annealed Langevin
# cache the gradient at the start (one more full gradient); pSGLD starts V from one minibatch.
STEPS, TERMS, BATCH = 15, 30, 5
EXPECTED_COUNTS = {
    "ula": (STEPS, STEPS * TERMS),
    "mala": (STEPS + 1, (STEPS + 1) * TERMS),
    "annealed": (STEPS + 1, (STEPS + 1) * TERMS),
    "sgld": (STEPS, STEPS * BATCH),
    "sghmc": (STEPS, STEPS * BATCH),
    "psgld": (STEPS + 1, (STEPS + 1) * BATCH),
    "infinite-langevin": (STEPS, STEPS * BATCH),
}


@pytest.mark.parametrize("name", sorted(mf.samplers.SAMPLERS))
def test_gradient_counts_are_what_the_kernels_evaluate(name):
    features = torch.randn(TERMS, 2, generator=torch.Generator().manual_seed(9), dtype=F64)
    target = mf.targets.LogisticRegression(features, (features[:, 0] > 0).to(F64))
    options = {} if name in ("ula", "mala", "annealed") else {"batch_size": BATCH}
    result = mf.sample(target, name, n_chains=4, n_steps=10, burn_in=STEPS - 10, step_size=1e-3,
                       progress=False, **options)
    if name == "sgld-cv":
        # The mode search's gradients and the one at the mode, then one control-variate estimate
        # per step from two minibatch gradients on the same b terms.
        setup = result.final_state.mode_evaluations + 1
        expected = (setup + STEPS, setup * TERMS + STEPS * 2 * BATCH)
    else:
        expected = EXPECTED_COUNTS[name]
    assert (result.n_grad_evals, result.n_data_grads) == expected
    # Off a finite sum there are no per-datum gradients to report.
    plain = mf.sample(mf.targets.DoubleWell(), name, n_chains=2, n_steps=3, burn_in=0, step_size=1e-3,
                      progress=False, **({"batch_size": BATCH} if options else {}))
    assert plain.n_data_grads is None
