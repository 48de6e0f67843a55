"""ESS and split R-hat against chains whose answers are known in closed form."""

from __future__ import annotations

import math

import pytest
import torch

import measureflow as mf

F64 = torch.float64


def ar1_chains(rho: float, n_steps: int, n_chains: int, dim: int, seed: int) -> torch.Tensor:
    """Stationary AR(1) chains x' = rho x + sqrt(1 - rho^2) xi with unit marginal variance."""
    generator = torch.Generator().manual_seed(seed)
    noise = torch.randn(n_steps, n_chains, dim, generator=generator, dtype=F64)
    chains = torch.empty_like(noise)
    chains[0] = noise[0]
    scale = math.sqrt(1 - rho**2)
    for t in range(1, n_steps):
        chains[t] = rho * chains[t - 1] + scale * noise[t]
    return chains


@pytest.mark.parametrize("rho", [0.0, 0.5, 0.9])
def test_ess_of_ar1_chains(rho):
    # For AR(1), the integrated autocorrelation time is (1 + rho) / (1 - rho), so
    # ESS = m n (1 - rho) / (1 + rho). The estimate's relative standard deviation is about
    # sqrt(2 (2M + 1) / (m n)) for a truncation lag M (Sokal 1997); with M <= 60 and
    # m n = 40,000 that is below 6% (measured over 200 seeds at rho = 0.9: 6.4%), so 30% is
    # about 4.7 standard deviations.
    chains = ar1_chains(rho, 5000, 8, 3, seed=int(rho * 10))
    expected = 40000 * (1 - rho) / (1 + rho)
    estimate = mf.metrics.ess(chains)
    assert estimate.shape == (3,)
    assert bool(((estimate / expected - 1).abs() < 0.3).all()), (estimate, expected)


def test_autocorrelation_matches_direct_sum():
    chains = ar1_chains(0.7, 64, 2, 1, seed=1)
    centred = chains - chains.mean(0)
    direct = torch.stack([(centred[: 64 - t] * centred[t:]).sum(0) / 64 for t in range(64)])
    torch.testing.assert_close(mf.metrics.autocorrelation(chains), direct)


def test_rhat_near_one_for_agreeing_chains_and_large_for_disagreeing():
    chains = ar1_chains(0.5, 4000, 4, 2, seed=2)
    # For stationary chains R-hat - 1 is O(1 / n): far below 0.01 here.
    assert bool((mf.metrics.rhat(chains) - 1).abs().max() < 0.01)
    shifted = chains.clone()
    shifted[:, 0] += 3.0
    assert bool((mf.metrics.rhat(shifted) > 1.5).all())
    # A trend within chains is caught by the split: first and second halves disagree.
    trending = chains + torch.linspace(0, 4, 4000, dtype=F64)[:, None, None]
    assert bool((mf.metrics.rhat(trending) > 1.1).all())


@pytest.mark.parametrize(
    "value,message",
    [
        (torch.zeros(10, 2), r"\(n_steps, n_chains, d\)"),
        (torch.zeros(2, 2, 1), "at least 4 steps"),
        (torch.full((10, 2, 1), float("nan")), "NaN"),
    ],
)
def test_diagnostics_validate_input(value, message):
    with pytest.raises(ValueError, match=message):
        mf.metrics.ess(value)


def test_numpy_input_is_accepted():
    chains = ar1_chains(0.0, 100, 4, 1, seed=3).numpy()
    assert mf.metrics.rhat(chains).shape == (1,)


def test_agrees_with_arviz():
    # Reference values from ArviZ 0.23.4 on these exact chains (ar1_chains(0.8, 2000, 4, 3,
    # seed=5), with chain 1 shifted by 0.3 in every coordinate), computed once outside the suite:
    # arviz.ess(x, method="mean") and arviz.rhat(x, method="split") with x = chains[:, :, j].T.
    chains = ar1_chains(0.8, 2000, 4, 3, seed=5)
    chains[:, 1] += 0.3
    arviz_ess = torch.tensor([653.1890424718619, 678.7231991657449, 823.6094321729362], dtype=F64)
    arviz_rhat = torch.tensor([1.013009744607636, 1.0201403288607465, 1.007654295140706], dtype=F64)
    torch.testing.assert_close(mf.metrics.ess(chains), arviz_ess, rtol=1e-9, atol=0)
    torch.testing.assert_close(mf.metrics.rhat(chains), arviz_rhat, rtol=1e-9, atol=0)
