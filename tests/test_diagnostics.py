"""ESS and R-hat against chains whose answers are known in closed form, and against ArviZ."""

from __future__ import annotations

import math
import warnings

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


# --- Rank-normalized diagnostics (Vehtari et al. 2021) against ArviZ on the same arrays ---


def _arviz():
    # ArviZ 0.23 announces its coming refactor with a FutureWarning on import (pytest turns
    # warnings into errors); the notice is about ArviZ, not about these tests.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        import arviz
    return arviz


def _case(kind: str, seed: int) -> torch.Tensor:
    """Chains ``(n, m, d)`` in float64 for the comparison; each kind stresses one path."""
    generator = torch.Generator().manual_seed(seed)
    if kind == "ar1":  # stationary, well mixed: Geyer's sequence cut by its sign
        return ar1_chains(0.5, 200, 4, 3, seed)
    if kind == "odd_length":  # the middle draw dropped by the split, kept by the quantiles
        return ar1_chains(0.3, 101, 3, 2, seed)
    if kind == "random_walk":  # non-stationary: R-hat far above 1, the sequence cut by length
        return torch.randn(60, 4, 2, generator=generator, dtype=F64).cumsum(0)
    if kind == "stuck_chain":  # one chain in another place: poorly mixed
        chains = ar1_chains(0.9, 300, 4, 2, seed)
        chains[:, 0] += 2.0
        return chains
    if kind == "scale":  # equal means, unequal scales: only the folded R-hat sees it
        chains = torch.randn(150, 4, 2, generator=generator, dtype=F64)
        chains[:, 2:] *= 3.0
        return chains
    if kind == "ties":  # values on a grid of 1/2, and MALA-like repeated draws
        chains = torch.round(2 * ar1_chains(0.6, 120, 3, 2, seed)) / 2
        chains[1::3] = chains[0::3][: chains[1::3].shape[0]]
        return chains
    if kind == "heavy_tails":  # Cauchy draws: no mean, the ranks are still fine
        uniform = torch.rand(200, 4, 2, generator=generator, dtype=F64)
        return torch.tan(math.pi * (uniform - 0.5))
    if kind == "shortest":  # 4 draws, 2 chains: split chains of 2 draws
        return torch.randn(4, 2, 1, generator=generator, dtype=F64)
    raise AssertionError(kind)


CASES = ["ar1", "odd_length", "random_walk", "stuck_chain", "scale", "ties", "heavy_tails", "shortest"]


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("kind", CASES)
def test_rank_diagnostics_agree_with_arviz(kind, seed):
    # Same arrays, same estimators: only float64 round-off separates the two. The largest
    # rounding path is the autocovariance by FFT: each lag's value carries an error of about
    # eps log2(F) var (eps = 2.2e-16, F <= 1024 the FFT length here), and tau sums at most
    # n <= 300 of them, so tau's relative error is below n eps log2(F) / tau_min ~ 3e-12 with
    # tau >= 1 / log10(m n) > 0.2; Phi^-1 (both Cephes' ndtri) and the ranks add nothing
    # comparable. rtol = 1e-10 leaves a factor 30. Discrete choices (Geyer's cut, ties, which
    # side of a quantile a draw falls) are made on identically rounded numbers: the quantile
    # and the median are evaluated in ArviZ's order of operations (measured agreement: 4e-15).
    az = _arviz()
    chains = _case(kind, seed)
    dataset = az.convert_to_dataset(chains.permute(1, 0, 2).numpy())  # ArviZ: (chain, draw, ...)

    def reference(function, method):
        return torch.from_numpy(function(dataset, method=method)["x"].values)

    for ours, function, method in [
        (mf.metrics.rhat_rank, az.rhat, "rank"),
        (mf.metrics.ess_bulk, az.ess, "bulk"),
        (mf.metrics.ess_tail, az.ess, "tail"),
        (mf.metrics.ess, az.ess, "mean"),
        (mf.metrics.rhat, az.rhat, "split"),
    ]:
        torch.testing.assert_close(ours(chains), reference(function, method), rtol=1e-10, atol=0,
                                   msg=f"{ours.__name__} vs arviz method={method!r}")
    # The shared computation returns the very same numbers.
    together = mf.metrics.rank_diagnostics(chains)
    separate = (mf.metrics.rhat_rank(chains), mf.metrics.ess_bulk(chains), mf.metrics.ess_tail(chains))
    for combined, alone in zip(together, separate, strict=True):
        assert torch.equal(combined, alone)


def test_rank_diagnostics_of_float32_chains_are_computed_in_float64():
    chains = ar1_chains(0.5, 200, 4, 2, seed=9)
    single = mf.metrics.rank_diagnostics(chains.float())
    double = mf.metrics.rank_diagnostics(chains.float().double())
    for value_single, value_double in zip(single, double, strict=True):
        assert value_single.dtype == F64 and torch.equal(value_single, value_double)


def test_rank_rhat_sees_chains_that_differ_only_in_scale():
    # Chains 2 and 3 are N(0, 9), chains 0 and 1 N(0, 1), all i.i.d.: every chain mean is 0, so
    # the classical split R-hat is 1 + O(1/n) (measured 0.9993, 1.0006); the folded draws
    # |x - median| differ in mean between the groups, and the rank R-hat tends to 1.170 as
    # n -> infinity (measured with n = 200,000), 1.16 here. Bars: 1.01 and 1.1.
    chains = torch.randn(1000, 4, 2, generator=torch.Generator().manual_seed(7), dtype=F64)
    chains[:, 2:] *= 3.0
    assert bool((mf.metrics.rhat(chains) < 1.01).all())
    assert bool((mf.metrics.rhat_rank(chains) > 1.1).all())


def test_rank_diagnostics_of_frozen_and_constant_chains():
    # Chains that never move: zero within-chain variance, so R-hat is infinite (ArviZ returns
    # about 5e15 there, its variance of equal numbers being round-off, not zero); all draws
    # equal: R-hat undefined (NaN, as ArviZ), and every ESS is m n (ArviZ's constant rule).
    starts = torch.tensor([[-1.0], [0.0], [2.0], [3.0]], dtype=F64)
    frozen = starts[None].expand(40, 4, 1)
    rhat_value, bulk, tail = mf.metrics.rank_diagnostics(frozen)
    assert bool(torch.isinf(rhat_value).all())
    constant = torch.ones(40, 4, 1, dtype=F64)
    rhat_value, bulk, tail = mf.metrics.rank_diagnostics(constant)
    assert bool(torch.isnan(rhat_value).all())
    assert float(bulk) == 160.0 and float(tail) == 160.0


def test_rank_diagnostics_validate_like_the_classical_ones():
    for function in (mf.metrics.rhat_rank, mf.metrics.ess_bulk, mf.metrics.ess_tail):
        with pytest.raises(ValueError, match="at least 4 steps"):
            function(torch.zeros(3, 2, 1))
        with pytest.raises(ValueError, match="NaN"):
            function(torch.full((10, 2, 1), float("nan")))


def test_rank_diagnostics_in_coordinate_blocks_equal_the_whole(monkeypatch):
    # The coordinates are processed in blocks to bound memory; the split must not change anything.
    chains = torch.round(2 * ar1_chains(0.5, 50, 3, 5, seed=4)) / 2
    whole = mf.metrics.rank_diagnostics(chains)
    from measureflow.metrics import diagnostics

    monkeypatch.setattr(diagnostics, "_BLOCK_NUMBERS", 2 * 50 * 3)  # two coordinates per block
    # Equal up to the rounding of FFTs batched differently (a few ulp; rtol as above).
    for blocked, full in zip(mf.metrics.rank_diagnostics(chains), whole, strict=True):
        torch.testing.assert_close(blocked, full, rtol=1e-10, atol=0)
    torch.testing.assert_close(mf.metrics.ess_tail(chains), whole[2], rtol=1e-10, atol=0)


@pytest.mark.parametrize("kind", ["odd_length", "random_walk", "scale", "ties", "shortest"])
def test_numpy_and_torch_paths_agree(kind, monkeypatch):
    # On the CPU the rank diagnostics run through numpy (integer-key sort, merged folded runs,
    # pocketfft); other devices use the torch code, forced here on the CPU. The two differ only
    # by the FFTs' round-off, bounded as in test_rank_diagnostics_agree_with_arviz (rtol 1e-10).
    # Draws that are float32 numbers take the integer-key sort, other float64 ones np.argsort.
    from measureflow.metrics import diagnostics

    for chains in (_case(kind, 3), _case(kind, 3).float()):
        fast = mf.metrics.rank_diagnostics(chains)
        monkeypatch.setattr(diagnostics, "_NUMPY_ON_CPU", False)
        reference = mf.metrics.rank_diagnostics(chains)
        monkeypatch.setattr(diagnostics, "_NUMPY_ON_CPU", True)
        for ours, theirs in zip(fast, reference, strict=True):
            torch.testing.assert_close(ours, theirs, rtol=1e-10, atol=0, equal_nan=True)
