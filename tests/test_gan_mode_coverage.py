"""The closed forms behind the mode-coverage check (measureflow.checks.mode_coverage).

The check's predictions for exact mixture draws and its reference levels (a mode-free ring, modes
r times too wide) are tested against Monte Carlo with fixed seeds. Tolerances are 4 standard
errors of the Monte Carlo estimate (a false alarm below 1e-4 per comparison); where an
asymptotic law is used (Wilks' chi^2 for the KL statistic) its known O(1/N) error is stated and
is far below the Monte Carlo error.
"""

from __future__ import annotations

import math

import pytest
import torch
from scipy import stats

from measureflow.checks import mode_coverage as mc
from measureflow.data import MODE_STD, toy_mixture
from measureflow.generative.gan import LOSS_NAMES, mode_diagnostics, train_gan

Z = 4.0


def _ring_replicates(n: int, replicates: int, seed: int) -> list:
    spec = toy_mixture("8gaussians")
    generator = torch.Generator().manual_seed(seed)
    return [mode_diagnostics(spec.sample(n, generator), spec.means, MODE_STD,
                             n_std=mc.N_STD, min_count=mc.MIN_COUNT) for _ in range(replicates)]


def test_high_quality_probability_is_the_chi2_cdf():
    # In 2-D |Z|^2 ~ chi^2_2 = Exp(1/2); in 1-D P(|Z| <= 3) = erf(3 / sqrt 2).
    assert mc.high_quality_probability(3.0, 2) == pytest.approx(1 - math.exp(-4.5), abs=1e-14)
    assert mc.high_quality_probability(3.0, 1) == pytest.approx(math.erf(3 / math.sqrt(2)), abs=1e-14)
    assert mc.widened_mode_high_quality(1.0) == pytest.approx(1 - math.exp(-4.5), abs=1e-14)
    assert mc.widened_mode_high_quality(2.0) == pytest.approx(1 - math.exp(-4.5 / 4), abs=1e-14)


def test_reference_law_matches_exact_ring_draws():
    n, replicates = 2000, 200
    reports = _ring_replicates(n, replicates, seed=11)
    law = mc.reference_law(n, 8)
    hq = torch.tensor([report.high_quality_fraction for report in reports], dtype=torch.float64)
    # The mean of R independent Binomial(n, p)/n has standard error law.high_quality_se / sqrt(R).
    mean_se = law.high_quality_se / math.sqrt(replicates)
    assert abs(float(hq.mean()) - law.high_quality_fraction) <= Z * mean_se
    # The replicate spread estimates the binomial SE: relative SE of a sample sd is ~1/sqrt(2(R-1)).
    assert abs(float(hq.std()) / law.high_quality_se - 1) <= Z / math.sqrt(2 * (replicates - 1))
    # P(some mode uncovered) <= law.uncovered_bound < 1e-80 per replicate.
    assert law.uncovered_bound < 1e-80 and law.expected_covered == pytest.approx(8.0)
    assert all(report.n_covered == 8 for report in reports)
    # 2 N KL -> chi^2_7 (mean 7, variance 14); the Williams correction to the mean, (K^2 - 1) / (6 N)
    # ~ 0.005, is far below the 4-SE tolerance 4 sqrt(14 / 200) = 1.06.
    statistic = torch.tensor([2 * round(report.high_quality_fraction * n) * report.kl_to_uniform
                              for report in reports], dtype=torch.float64)
    assert abs(float(statistic.mean()) - 7) <= Z * math.sqrt(14 / replicates)


def test_kl_interval_covers_at_its_level():
    n, replicates, level = 2000, 400, 0.9
    reports = _ring_replicates(n, replicates, seed=12)
    inside = 0
    for report in reports:
        low, high = mc.kl_interval(round(report.high_quality_fraction * n), 8, level)
        inside += low <= report.kl_to_uniform <= high
    # Binomial coverage count: SE sqrt(level (1 - level) / R) = 0.015.
    assert abs(inside / replicates - level) <= Z * math.sqrt(level * (1 - level) / replicates)


def test_uniform_ring_high_quality_matches_monte_carlo():
    generator = torch.Generator().manual_seed(13)
    n = 200_000
    angles = 2 * math.pi * torch.rand(n, generator=generator, dtype=torch.float64)
    ring = 2.0 * torch.stack([torch.cos(angles), torch.sin(angles)], dim=1)
    measured = mode_diagnostics(ring, toy_mixture("8gaussians").means, MODE_STD).high_quality_fraction
    predicted = mc.uniform_ring_high_quality(8, 2.0, MODE_STD)
    assert predicted == pytest.approx(0.3823, abs=1e-4)
    assert abs(measured - predicted) <= Z * math.sqrt(predicted * (1 - predicted) / n)
    with pytest.raises(ValueError, match="overlap"):
        mc.uniform_ring_high_quality(8, 0.5, MODE_STD)


def test_widened_modes_match_monte_carlo():
    # Modes 2.55x too wide sit at the claimed level HQ = 0.5.
    ratio = math.sqrt(4.5 / math.log(2))
    spec = toy_mixture("8gaussians")
    generator = torch.Generator().manual_seed(14)
    n = 100_000
    components = torch.randint(0, 8, (n,), generator=generator)
    noise = ratio * MODE_STD * torch.randn(n, 2, generator=generator, dtype=torch.float64)
    measured = mode_diagnostics(spec.means[components] + noise, spec.means, MODE_STD).high_quality_fraction
    predicted = mc.widened_mode_high_quality(ratio)
    assert predicted == pytest.approx(0.5, abs=1e-12)
    assert abs(measured - predicted) <= Z * math.sqrt(predicted * (1 - predicted) / n)


def test_leakage_bound_dominates_the_exact_leakage():
    # Two centres 1 apart, std 0.2: a draw of mode 0 lies within 0.6 of centre 1 with probability
    # P(noncentral chi^2_2(nc = 25) <= 9), below the bound P(chi^2_2 >= 4) = exp(-2).
    centers = torch.tensor([[0.0, 0.0], [1.0, 0.0]], dtype=torch.float64)
    bound = mc.leakage_bound(centers, 0.2, 3.0)
    exact = float(stats.ncx2.cdf(9.0, 2, 25.0))
    assert bound == pytest.approx(math.exp(-2), rel=1e-12)
    assert 0 < exact < bound
    generator = torch.Generator().manual_seed(15)
    n = 100_000
    draws = 0.2 * torch.randn(n, 2, generator=generator, dtype=torch.float64)
    measured = float(((draws - centers[1]).norm(dim=1) <= 0.6).double().mean())
    assert abs(measured - exact) <= Z * math.sqrt(exact * (1 - exact) / n)
    assert mc.leakage_bound(toy_mixture("8gaussians").means, MODE_STD) < 1e-32
    assert mc.leakage_bound(toy_mixture("25gaussians").means, MODE_STD) < 1e-60
    assert mc.leakage_bound(centers, 0.2, 6.0) == 1.0


def test_recipes_cover_every_loss_and_train():
    assert set(mc.SETTINGS["quick"].toys) <= set(mc.SETTINGS["full"].toys) == set(mc.TOYS)
    assert set(mc.SETTINGS["quick"].losses) <= set(mc.SETTINGS["full"].losses) == set(LOSS_NAMES)
    assert set(mc.CLAIMED_QUALITY) <= set(mc.CLAIMED_COVERAGE) <= set(LOSS_NAMES)
    x = torch.randn(64, 2, generator=torch.Generator().manual_seed(16))
    for toy in mc.TOYS:
        assert set(mc.RECIPES[toy]) == set(LOSS_NAMES)
        for loss in LOSS_NAMES:
            # One step with each recipe's options: train_gan accepts them as they are.
            options = {**mc.RECIPES[toy][loss].options(), "n_steps": 1, "batch_size": 8}
            model, _ = train_gan(x, loss=loss, generator=torch.Generator().manual_seed(17), progress=False,
                                 **options)
            assert model.sample(3).shape == (3, 2)


def test_helpers_reject_bad_arguments():
    with pytest.raises(ValueError, match="n_std"):
        mc.high_quality_probability(0.0)
    with pytest.raises(ValueError, match="dim"):
        mc.high_quality_probability(3.0, 0)
    with pytest.raises(ValueError, match="ratio"):
        mc.widened_mode_high_quality(-1.0)
    with pytest.raises(ValueError, match="n_modes"):
        mc.kl_interval(100, 1)
    with pytest.raises(ValueError, match="level"):
        mc.kl_interval(100, 8, 1.0)
    with pytest.raises(ValueError, match="min_count"):
        mc.reference_law(100, 8, min_count=0)
    with pytest.raises(ValueError, match="centers"):
        mc.leakage_bound(torch.zeros(1, 2), 0.1)
