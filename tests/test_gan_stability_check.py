"""Tests of the gan-stability check's helpers, and of the library behaviour its derivation uses:
the per-point step of the particle generator under SGD, the wgan-gp game with gp_weight = 0,
and the divergence error it catches."""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch import nn

from measureflow.checks import gan_stability
from measureflow.checks.gan_stability import StableBand, critic_gradient_rms, stable_band
from measureflow.generative.gan import WGANGP
from measureflow.generative.gan.nets import ParticleGenerator
from measureflow.generative.gan.stability import Stability, theory_learning_rate
from measureflow.generative.gan.training import GANTask, train_gan
from measureflow.metrics import mmd2

# ---------------------------------------------------------------------------------------------
# stable_band


def test_stable_band_is_the_run_of_stable_ratios_around_the_best():
    ratios = [0.01, 0.1, 1.0, 10.0, 100.0, 1000.0]
    values = [0.9, 0.3, 0.12, 0.1, 0.19, 0.5]
    band = stable_band(ratios, values, factor=2.0)
    assert band.best_index == 3
    assert band.best_value == 0.1
    assert band.threshold == pytest.approx(0.2)
    assert band.stable == (False, False, True, True, True, False)
    assert (band.low, band.high) == (1.0, 100.0)
    assert band.contains(1.0) and band.contains(30.0) and not band.contains(0.1)


def test_stable_band_treats_none_nan_and_inf_as_diverged():
    band = stable_band([1.0, 10.0, 100.0, 1000.0], [0.1, None, math.nan, math.inf], factor=5.0)
    assert band.stable == (True, False, False, False)
    assert (band.low, band.high) == (1.0, 1.0)


def test_stable_band_does_not_bridge_an_unstable_gap():
    # The last value is within the factor but a degraded run separates it from the best.
    band = stable_band([1.0, 10.0, 100.0], [0.1, 0.5, 0.15], factor=2.0)
    assert band.stable == (True, False, True)
    assert (band.low, band.high) == (1.0, 1.0)
    assert not band.contains(100.0)


def test_stable_band_when_everything_diverged():
    band = stable_band([1.0, 10.0], [None, math.nan], factor=2.0)
    assert band.best_index is None and band.low is None and band.high is None
    assert band.stable == (False, False)
    assert not band.contains(1.0)
    assert json.loads(json.dumps(band.to_dict()))["stable"] == [False, False]


@pytest.mark.parametrize(("ratios", "values", "factor", "match"), [
    ([1.0, 10.0], [0.1], 2.0, "one length"),
    ([], [], 2.0, "non-empty"),
    ([10.0, 1.0], [0.1, 0.2], 2.0, "increasing"),
    ([1.0, 1.0], [0.1, 0.2], 2.0, "increasing"),
    ([1.0, 10.0], [0.1, 0.2], 0.5, "factor"),
    ([1.0, 10.0], [0.1, 0.2], True, "factor"),
])
def test_stable_band_rejects_bad_input(ratios, values, factor, match):
    with pytest.raises(ValueError, match=match):
        stable_band(ratios, values, factor)


def test_stable_band_result_type():
    assert isinstance(stable_band([1.0], [0.3], 1.0), StableBand)


# ---------------------------------------------------------------------------------------------
# critic_gradient_rms


def test_critic_gradient_rms_of_a_quadratic_critic_is_exact():
    # h(x) = -|x|^2 / 2 has grad h(x) = -x, so the RMS is sqrt(mean_j |x_j|^2).
    points = torch.tensor([[1.0, 2.0], [0.0, -3.0], [2.0, 2.0]], dtype=torch.float64)
    expected = math.sqrt((5.0 + 9.0 + 8.0) / 3)
    value = critic_gradient_rms(lambda x: -0.5 * x.square().sum(dim=1), points)
    assert value == pytest.approx(expected, rel=1e-12)


def test_critic_gradient_rms_works_under_no_grad_and_leaves_the_points_alone():
    points = torch.randn(6, 2, generator=torch.Generator().manual_seed(0))
    critic = nn.Sequential(nn.Linear(2, 1), nn.Flatten(0))
    with torch.no_grad():
        value = critic_gradient_rms(critic, points)
    # A linear critic w . x + b has the same gradient w at every point.
    assert value == pytest.approx(float(critic[0].weight.detach().norm()), rel=1e-6)
    assert not points.requires_grad and points.grad is None
    # Only the points were differentiated: nothing accumulated in the critic's weights.
    assert critic[0].weight.grad is None


@pytest.mark.parametrize("points", [torch.zeros(3), torch.zeros(0, 2), [[0.0, 0.0]]])
def test_critic_gradient_rms_rejects_bad_points(points):
    with pytest.raises(ValueError, match="points"):
        critic_gradient_rms(lambda x: x.sum(dim=1), points)


def test_held_out_mmd_equals_the_metrics_v_statistic():
    g = torch.Generator().manual_seed(0)
    heldout = torch.randn(300, 2, generator=g, dtype=torch.float64)
    points = 0.5 + torch.randn(40, 2, generator=g, dtype=torch.float64)
    evaluate = gan_stability._HeldOutMMD(heldout, (0.5, 1.0))
    expected = float(mmd2(points, heldout, bandwidth=[0.5, 1.0], unbiased=False))
    assert evaluate(points) == pytest.approx(expected, rel=1e-10)


# ---------------------------------------------------------------------------------------------
# The library behaviour the derivation relies on


class _LinearCritic(nn.Module):
    """h(x) = a . x: the same gradient a at every point."""

    def __init__(self, a: torch.Tensor) -> None:
        super().__init__()
        self.a = nn.Parameter(a.clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self.a


def test_sgd_moves_the_particles_by_the_per_point_step_lr_over_n():
    # Point j moves by lr (c_j / B) grad h(theta_j), c_j its count in the batch. With a linear
    # critic grad h = a everywhere and sum_j c_j = B, so the mean displacement over the N points
    # is exactly (lr / N) a whatever the counts: the per-point step gamma = lr / N of the check.
    n_points, lr = 16, 0.8
    particles = ParticleGenerator(n_points, 2, init=torch.zeros(n_points, 2, dtype=torch.float64))
    critic = _LinearCritic(torch.tensor([0.3, -0.4], dtype=torch.float64))
    task = GANTask(particles, critic, WGANGP(gp_weight=0.0), n_critic=1, generator_lr=lr, critic_lr=0.05,
                   optimizer="sgd", batch_size=64, ema_decay=0.0)
    before = particles.points.detach().clone()
    batch = torch.randn(64, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    task.step(batch, torch.Generator().manual_seed(2))
    displacement = (particles.points.detach() - before).mean(dim=0)
    # The critic step ran first; the generator step used the critic as it is now.
    expected = lr / n_points * critic.a.detach()
    torch.testing.assert_close(displacement, expected, rtol=1e-12, atol=1e-15)
    # ...and the counts do vary: not every point moved by the same amount.
    moves = (particles.points.detach() - before).norm(dim=1)
    assert float(moves.max() - moves.min()) > 0


def test_wgan_gp_with_zero_weight_is_the_plain_game():
    # gp_weight = 0 leaves the critic objective E_Q h - E_P h with no penalty (stability off):
    # no penalty is computed or logged.
    x = torch.randn(200, 2, generator=torch.Generator().manual_seed(0))
    net = {"generator": "particles", "n_points": 8, "critic_hidden": 8, "critic_depth": 1}
    _, history = train_gan(x, loss=WGANGP(gp_weight=0.0), n_steps=4,
                           generator=torch.Generator().manual_seed(1),
                           batch_size=32, n_critic=1, optimizer="sgd", generator_lr=0.1, critic_lr=0.1,
                           net=net, progress=False, log_every=2)
    assert "penalty" not in history.losses and len(history.losses["critic_loss"]) == 2


def test_train_gan_reports_divergence_in_the_words_the_check_catches():
    # An unconstrained critic at an absurd learning rate overflows within a few steps.
    x = torch.randn(200, 2, generator=torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match="diverged"):
        train_gan(x, loss=WGANGP(gp_weight=0.0), n_steps=40, generator=torch.Generator().manual_seed(1),
                  batch_size=32, n_critic=1, optimizer="sgd", generator_lr=1e3, critic_lr=1e30,
                  net={"generator": "particles", "n_points": 8, "critic_hidden": 8, "critic_depth": 1},
                  progress=False, log_every=5)


def test_gamma0_is_one_over_beta1_plus_beta2_for_the_checks_constants():
    # beta_1 = 7 alpha makes the paper's gamma_0 = 1/(7 alpha + beta_2) the 1/L of the derivation.
    stability = Stability(gan_stability.ALPHA, gan_stability.BETA1, gan_stability.BETA2)
    assert gan_stability.BETA1 == 7 * gan_stability.ALPHA
    assert theory_learning_rate(stability) == pytest.approx(1 / (gan_stability.BETA1 + gan_stability.BETA2))


# ---------------------------------------------------------------------------------------------
# The check end to end, at a toy size


def test_run_at_a_toy_size_writes_one_figure_and_json_safe_details(tmp_path, monkeypatch):
    tiny = gan_stability._Settings(ratios=(1.0, 1e5), n_steps=12, n_critic=1, n_snapshots=2, average_last=2,
                                   curve_ratios=(1.0,), baselines=("lipschitz",))
    monkeypatch.setitem(gan_stability.SETTINGS, "quick", tiny)
    result = gan_stability.run("quick", 0, "cpu", tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["gan-stability.png"]
    assert result.figures == (str(tmp_path / "gan-stability.png"),)
    details = json.loads(json.dumps(result.details, allow_nan=False))
    runs = details["runs"]
    assert set(runs) == {"regularized", "lipschitz"}
    assert [row["ratio"] for row in runs["regularized"]] == [1.0, 1e5]
    assert [row["curve"] for row in runs["regularized"]] == [True, False]
    # Every run keeps its snapshots (steps 6 and 12) when the final value averages the last two.
    first = runs["regularized"][0]
    assert [snap["step"] for snap in first["snapshots"]] == [6, 12]
    values = [snap["mmd2"] for snap in first["snapshots"]]
    assert first["final_mmd2"] == pytest.approx(sum(values) / 2)
    assert first["last_step_mmd2"] == pytest.approx(first["snapshots"][1]["mmd2"], rel=1e-12)
    assert details["gamma0"] == pytest.approx(1 / 17)
    assert isinstance(result.passed, bool)


def test_run_without_averaging_snapshots_only_the_plotted_runs(tmp_path, monkeypatch):
    tiny = gan_stability._Settings(ratios=(1.0, 10.0), n_steps=8, n_critic=1, n_snapshots=2, average_last=1,
                                   curve_ratios=(10.0,), baselines=())
    monkeypatch.setitem(gan_stability.SETTINGS, "quick", tiny)
    rows = gan_stability.run("quick", 1, "cpu", tmp_path).details["runs"]["regularized"]
    assert rows[0]["snapshots"] == [] and len(rows[1]["snapshots"]) == 2
    assert all(row["final_mmd2"] == row["last_step_mmd2"] for row in rows)
