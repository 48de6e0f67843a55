"""Noisy training of finite networks (Langevin SGD in nets.train) and graduated optimization
(Gaussian smoothing of targets, graduated descent)."""

from __future__ import annotations

import math

import pytest
import torch
from stats_helpers import Z_MAX, assert_within_se
from torch import nn

import measureflow as mf
from measureflow.nets import Monitor, TwoLayer, train
from measureflow.nets.langevin import LangevinSGD
from measureflow.samplers.graduated import graduated_descent
from measureflow.targets.smoothing import SmoothedTarget, has_closed_form, smoothed_energy

F64 = torch.float64


def _generator(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ---------------------------------------------------------------------------------------------
# Langevin SGD


def test_langevin_step_is_sgd_plus_scaled_noise_from_the_generator():
    first = nn.Parameter(torch.randn(3, 2, generator=_generator(1), dtype=F64))
    second = nn.Parameter(torch.randn(4, generator=_generator(2), dtype=F64))
    start = [first.detach().clone(), second.detach().clone()]
    grads = [torch.randn(3, 2, generator=_generator(3), dtype=F64), None]  # the second sees no loss
    first.grad = grads[0]
    optimizer = LangevinSGD([first, second], lr=0.2, beta=8.0)
    optimizer.step(generator=_generator(4))
    replay = _generator(4)
    scale = math.sqrt(2 * 0.2 / 8.0)
    expected_first = start[0] - 0.2 * grads[0] + scale * torch.randn(3, 2, generator=replay, dtype=F64)
    expected_second = start[1] + scale * torch.randn(4, generator=replay, dtype=F64)  # noise, no drift
    torch.testing.assert_close(first.detach(), expected_first)  # equal up to the order of rounding
    torch.testing.assert_close(second.detach(), expected_second)
    assert "generator" not in optimizer.state_dict()["param_groups"][0]


class _Diagonal(nn.Module):
    """f(x) = x . w: with rows x_r = sqrt(n a_r) e_r the mean squared loss is
    sum_r a_r (w_r - m_r)^2 / 2, K independent quadratics of curvature a_r."""

    def __init__(self, start: torch.Tensor) -> None:
        super().__init__()
        self.w = nn.Parameter(start.clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self.w


def test_langevin_training_samples_ulas_stationary_gaussian_of_a_quadratic_loss():
    # Each coordinate is the AR(1) chain e' = (1 - h a) e + sqrt(2 h / beta) xi (e = w - m), whose
    # stationary law is N(0, v) with v = (2 h / beta) / (1 - (1 - h a)^2) = 1 / (beta a (1 - h a / 2)).
    # Started at e = 0, after k steps e ~ N(0, v (1 - (1 - h a)^(2k))): at |1 - h a| <= 0.75 and
    # k = 150 the deficit is below 1e-37. Then q = e^2 / v ~ chi^2_1 exactly, mean 1, variance 2,
    # and the K / 3 coordinates of one curvature are independent: mean(q) has SE sqrt(2 / (K / 3)).
    n_per_curvature, h, beta = 800, 0.5, 4.0
    curvatures = torch.tensor([0.5, 1.0, 1.5], dtype=F64).repeat_interleave(n_per_curvature)
    n = curvatures.numel()
    minimum = torch.randn(n, generator=_generator(5), dtype=F64)
    scale = torch.sqrt(n * curvatures)
    x, y = torch.diag(scale), scale * minimum
    model = _Diagonal(minimum)
    train(model, x, y, optimizer="langevin", lr=h, beta=beta, n_steps=150,
          monitor=Monitor(probe=False, every=150), progress=False, generator=_generator(6))
    variance = 1 / (beta * curvatures * (1 - h * curvatures / 2))
    ratio = ((model.w.detach() - minimum).square() / variance).reshape(3, n_per_curvature).mean(1)
    se = math.sqrt(2 / n_per_curvature)
    assert_within_se(ratio, torch.ones(3), torch.full((3,), se), "ULA stationary variance / closed form")
    # the discretization bias is resolved: against the Gibbs variance 1 / (beta a) alone the ratio
    # would be 1 / (1 - h a / 2) = 1.6 at a = 1.5, 12 SE away
    unbiased_ratio = ratio[2] / (1 - h * 1.5 / 2)
    assert float(unbiased_ratio - 1) > Z_MAX * se


def test_langevin_training_resumes_bitwise(tmp_path):
    x = nn.functional.normalize(torch.randn(12, 2, generator=_generator(5), dtype=F64), dim=1)
    y = x[:, 0] * x[:, 1]

    def run(n_steps, folder, resume=False):
        net = TwoLayer(2, 30, generator=_generator(), dtype=F64)
        return train(net, x, y, optimizer="langevin", beta=50.0, lr=0.2, n_steps=n_steps, batch_size=4,
                     out_dir=folder, resume=resume, progress=False, generator=_generator(1))

    whole = run(20, tmp_path / "whole")
    run(10, tmp_path / "split")
    resumed = run(20, tmp_path / "split", resume=True)
    torch.testing.assert_close(resumed.model.w, whole.model.w, rtol=0, atol=0)
    torch.testing.assert_close(resumed.model.a, whole.model.a, rtol=0, atol=0)
    for key in ("train_loss", "movement"):
        torch.testing.assert_close(resumed.trace[key], whole.trace[key], rtol=0, atol=0)
    noiseless = train(TwoLayer(2, 30, generator=_generator(), dtype=F64), x, y, lr=0.2, n_steps=20,
                      batch_size=4, progress=False, generator=_generator(1))
    assert not torch.equal(noiseless.model.w, whole.model.w)  # the noise did act


@pytest.mark.parametrize("kwargs, match", [
    ({"optimizer": "langevin"}, "needs beta"),
    ({"optimizer": "langevin", "beta": 0.0}, "beta"),
    ({"optimizer": "langevin", "beta": float("inf")}, "beta"),
    ({"optimizer": "sgd", "beta": 2.0}, "takes no beta"),
])
def test_langevin_beta_is_validated(kwargs, match):
    x = torch.randn(6, 2, generator=_generator())
    with pytest.raises(ValueError, match=match):
        train(TwoLayer(2, 5), x, x[:, 0], progress=False, n_steps=2, **kwargs)


# ---------------------------------------------------------------------------------------------
# Gaussian smoothing


def _points(dim: int, seed: int = 7) -> torch.Tensor:
    return 2 * torch.randn(5, dim, generator=_generator(seed), dtype=F64)


@pytest.mark.parametrize("target", [
    mf.targets.Rastrigin(dim=2, amplitude=10.0),
    mf.targets.DoubleWell(dim=2, tilt=0.7),
    mf.targets.Gaussian(torch.tensor([0.5, -1.0]), torch.tensor([[2.0, 0.3], [0.3, 0.5]])),
], ids=["rastrigin", "double-well", "gaussian"])
def test_closed_form_smoothing_matches_monte_carlo_within_its_standard_error(target):
    # The Monte Carlo value is the mean of S i.i.d. terms L(x + delta u_s): unbiased, with
    # standard error sd_s / sqrt(S) (estimated from the same S terms; at S = 20,000 the SE
    # itself is known to ~1%). Same for every gradient coordinate. 5 SE per comparison.
    target = target.to(dtype=F64)
    x = _points(2)
    for delta in (0.15, 0.4, 1.0):
        exact = smoothed_energy(target, x, delta)
        assert exact.energy_se is None
        estimate = smoothed_energy(target, x, delta, n_samples=20_000, generator=_generator(8))
        assert_within_se(estimate.energy, exact.energy, estimate.energy_se, f"L_delta at delta={delta}")
        assert_within_se(estimate.grad, exact.grad, estimate.grad_se, f"grad L_delta at delta={delta}")


@pytest.mark.parametrize("target", [mf.targets.Rastrigin(dim=3), mf.targets.DoubleWell(dim=3)],
                         ids=["rastrigin", "double-well"])
def test_smoothed_gradients_equal_autograd(target):
    target = target.to(dtype=F64)
    x = _points(3)
    for n_samples in (None, 64):  # closed form; Monte Carlo with its fixed draws
        smoothed = SmoothedTarget(target, 0.3, n_samples=n_samples, generator=_generator(9))
        position = x.clone().requires_grad_(True)
        (autograd,) = torch.autograd.grad(smoothed.energy(position).sum(), position)
        value, gradient = smoothed.energy_and_grad(x)
        torch.testing.assert_close(gradient, autograd)
        torch.testing.assert_close(value, smoothed.energy(x))


def test_rastrigin_smoothing_is_the_damped_cosine():
    target = mf.targets.Rastrigin(dim=1, amplitude=10.0).to(dtype=F64)
    x = torch.linspace(-2, 2, 9, dtype=F64)[:, None]
    delta = 0.35
    damped = 10 * math.exp(-2 * math.pi**2 * delta**2)
    expected = 10 + x[:, 0] ** 2 + delta**2 - damped * torch.cos(2 * math.pi * x[:, 0])
    torch.testing.assert_close(SmoothedTarget(target, delta).energy(x), expected)


def test_smoothing_contract():
    rastrigin = mf.targets.Rastrigin(dim=2).to(dtype=F64)
    x = _points(2)
    torch.testing.assert_close(SmoothedTarget(rastrigin, 0.0).energy(x), rastrigin.energy(x))
    unsmoothed = SmoothedTarget(rastrigin, 0.0, n_samples=8)
    torch.testing.assert_close(unsmoothed.grad_energy(x), rastrigin.grad_energy(x))
    again = SmoothedTarget(rastrigin, 0.5, n_samples=16, generator=_generator(3))
    first = SmoothedTarget(rastrigin, 0.5, n_samples=16, generator=_generator(3))
    torch.testing.assert_close(again.energy(x), first.energy(x), rtol=0, atol=0)  # reproducible draws
    assert has_closed_form(rastrigin) and not has_closed_form(mf.targets.Banana())
    banana = mf.targets.Banana()
    with pytest.raises(ValueError, match="n_samples"):
        SmoothedTarget(banana, 0.5)
    with pytest.raises(ValueError, match="n_samples"):
        SmoothedTarget(banana, 0.5, n_samples=1)
    with pytest.raises(ValueError, match="delta"):
        SmoothedTarget(rastrigin, -0.1)
    with pytest.raises(ValueError, match="NaN"):
        smoothed_energy(rastrigin, torch.full((1, 2), math.nan, dtype=F64), 0.1)
    # a smoothed target is a Target: the samplers take it
    result = mf.sample(SmoothedTarget(rastrigin, 0.6), "ula", n_chains=8, n_steps=20, step_size=0.01,
                       burn_in=0, seed=0, dtype=F64, diagnostics=False, progress=False)
    assert result.samples.shape == (20, 8, 2)


# ---------------------------------------------------------------------------------------------
# Graduated descent

TILT = 0.5


def _tilted_double_well():
    # L(x) = (x^2 - 1)^2 + c x: global well near -1.06, spurious one near +0.93, barrier top near
    # +0.13. Gaussian smoothing leaves the linear term and adds 6 delta^2 x^2 + const, so
    # L_delta'(x) = 4 x^3 + (12 delta^2 - 4) x + c: convex for delta >= 1/sqrt(3) = 0.577, with
    # its one minimum at x < 0 (c > 0); still bimodal for delta = 0.2 (12 delta^2 = 0.48 < 4).
    return mf.targets.from_energy(lambda x: ((x**2 - 1) ** 2 + TILT * x).sum(-1), dim=1).to(dtype=F64)


def test_graduated_descent_leaves_the_wrong_basin_of_a_tilted_double_well():
    target = _tilted_double_well()
    starts = torch.linspace(0.5, 1.5, 6, dtype=F64)[:, None]  # all in the spurious basin
    result = graduated_descent(target, starts, [0.6, 0.3, 0.0], 0.05, 300, n_samples=512,
                               generator=_generator(2))
    global_minimum = -1.0574  # root of 4 x^3 - 4 x + 0.5 near -1
    torch.testing.assert_close(result.position, torch.full_like(starts, global_minimum), atol=1e-3, rtol=0)
    assert result.stage_positions.shape == (4, 6, 1) and result.stage_energy.shape == (4, 6)
    assert result.n_grad_evals == 2 * 300 * 512 + 300
    for deltas in ([0.0], [0.2, 0.0]):  # plain descent and a too-small smoothing stay in the wrong well
        stuck = graduated_descent(target, starts, deltas, 0.05, 300, n_samples=512, generator=_generator(2))
        assert bool((stuck.position > 0.9).all())


def test_graduated_descent_on_rastrigin_reaches_the_global_basin_from_everywhere():
    # L_delta is convex once 4 pi^2 A exp(-2 pi^2 delta^2) < 2, i.e. delta > 0.517 at A = 10; 0 is
    # its minimum and stays a minimum of every L_delta, so the schedule tracks it down to delta = 0.
    target = mf.targets.Rastrigin(dim=4).to(dtype=F64)
    starts = target.initial_positions(200, _generator(4))
    deltas = [0.6, 0.3, 0.15, 0.0]
    # 1 / max L_delta'' = 1 / (2 + 4 pi^2 A exp(-2 pi^2 delta^2)) per stage: stable, and fast on the
    # nearly quadratic first stage
    steps = [1 / (2 + 4 * math.pi**2 * 10 * math.exp(-2 * math.pi**2 * delta**2)) for delta in deltas]
    result = graduated_descent(target, starts, deltas, steps, 300)
    assert bool(target.in_global_basin(result.position).all())
    plain = graduated_descent(target, starts, [0.0], steps[-1], 1200)
    assert float(target.in_global_basin(plain.position).double().mean()) < 0.05


def test_graduated_descent_validates():
    target = mf.targets.Rastrigin(dim=2)
    x0 = torch.zeros(3, 2)
    with pytest.raises(ValueError, match="non-increasing"):
        graduated_descent(target, x0, [0.1, 0.5], 0.01, 10)
    with pytest.raises(ValueError, match="one per stage"):
        graduated_descent(target, x0, [0.5, 0.1], [0.01], 10)
    with pytest.raises(ValueError, match="x0"):
        graduated_descent(target, torch.zeros(3, 5), [0.5], 0.01, 10)
    with pytest.raises(ValueError, match="diverged"):
        graduated_descent(target, x0 + 0.3, [0.0], 10.0, 200)


def test_stationary_law_of_an_ar1_chain_is_its_gaussian():
    # X' = a X + s xi has the stationary law N(0, s^2 / (1 - a^2)). On 2,000 cells of [-8, 8] (the
    # variance is 1.78, so the box holds 6 sd; escaped mass ~ 2e-9) the grid law's mean and variance
    # match it to the midpoint rule's O(dx^2) = O(6e-5) error.
    from measureflow.pde import stationary_law_1d

    a, s = 0.6, 1.067
    law = stationary_law_1d(lambda x: a * x, s, -8.0, 8.0, 2000)
    variance = s**2 / (1 - a**2)
    mean = float((law.masses * law.x).sum())
    second = float((law.masses * law.x.square()).sum())
    assert abs(mean) < 1e-9 and abs(second / variance - 1) < 1e-3 and law.escaped < 1e-6
    assert abs(law.probability(0.0) - 0.5) < 1e-3


def test_stationary_law_validates_its_arguments():
    import pytest

    from measureflow.pde import stationary_law_1d

    with pytest.raises(ValueError, match="noise_std"):
        stationary_law_1d(lambda x: x, 0.0, -1.0, 1.0, 10)
    with pytest.raises(ValueError, match="hi must exceed lo"):
        stationary_law_1d(lambda x: x, 1.0, 1.0, -1.0, 10)
    with pytest.raises(ValueError, match="shape"):
        stationary_law_1d(lambda x: x[:3], 1.0, -1.0, 1.0, 10)
    with pytest.raises(ValueError, match="outside"):
        stationary_law_1d(lambda x: x + 100.0, 0.01, -1.0, 1.0, 10)
