"""MMD: blocked sums against dense formulas, unbiasedness against the Gaussian closed form, the
V-statistic's known bias, the permutation test's level and power, and memory that does not grow
with n * m."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from stats_helpers import assert_within_se

from measureflow.metrics import kernels
from measureflow.metrics.kernels import (
    EnergyKernel,
    GaussianKernel,
    IMQKernel,
    LaplaceKernel,
    make_kernel,
    median_bandwidth,
    pairwise_sum,
)
from measureflow.metrics.mmd import gaussian_mmd2, mmd2, mmd_test, mmd_witness

F64 = torch.float64
KERNEL_CASES = [("gaussian", 1.3), ("gaussian", (0.5, 2.0)), ("imq", 0.7), ("laplace", 1.1), ("energy", None)]


def dense_mmd2(x, y, kernel, unbiased):
    """The textbook formula on full kernel matrices (small n only)."""
    kxx, kyy, kxy = kernel(x, x), kernel(y, y), kernel(x, y)
    n, m = x.shape[0], y.shape[0]
    if unbiased:
        return ((kxx.sum() - kxx.diagonal().sum()) / (n * (n - 1))
                + (kyy.sum() - kyy.diagonal().sum()) / (m * (m - 1)) - 2 * kxy.mean())
    return kxx.mean() + kyy.mean() - 2 * kxy.mean()


@pytest.mark.parametrize("name,bandwidth", KERNEL_CASES)
@pytest.mark.parametrize("unbiased", [True, False])
def test_blocked_equals_dense(name, bandwidth, unbiased):
    # Same arithmetic in a different order: float64 agreement to rounding (1e-12 of the terms).
    g = torch.Generator().manual_seed(1)
    x = torch.randn(203, 3, generator=g, dtype=F64)
    y = torch.randn(150, 3, generator=g, dtype=F64) * 1.2 + 0.3
    kernel = make_kernel(name, bandwidth, x, y)
    expected = dense_mmd2(x, y, kernel, unbiased)
    for block_size in (17, 64, 1024):
        value = mmd2(x, y, name, bandwidth, unbiased=unbiased, block_size=block_size)
        assert abs(float(value - expected)) < 1e-12, (block_size, float(value), float(expected))


def test_compiled_blocks_agree_with_eager():
    # float32 block sums: each of the ~3e5 terms carries a relative rounding error near 1e-7, so
    # totals agree to about 1e-6 relative; MMD^2 here is ~1e-2, its terms ~0.5.
    g = torch.Generator().manual_seed(2)
    x = torch.randn(700, 2, generator=g)
    y = torch.randn(600, 2, generator=g) + 0.2
    eager = mmd2(x, y, bandwidth=1.0, compile=False, block_size=256)
    compiled = mmd2(x, y, bandwidth=1.0, compile=True, block_size=256)
    assert abs(float(compiled - eager)) < 2e-6
    assert abs(float(eager - dense_mmd2(x.double(), y.double(), GaussianKernel(1.0), True))) < 2e-6


def test_gaussian_mmd2_closed_form_in_one_dimension():
    # 1-D: E exp(-(X-Y)^2/(2h^2)) = h / sqrt(h^2 + v) exp(-dm^2 / (2 (h^2 + v))), v = s1^2 + s2^2.
    def mean_kernel(dm, v, h):
        return h / math.sqrt(h**2 + v) * math.exp(-(dm**2) / (2 * (h**2 + v)))

    m1, s1, m2, s2, h = 0.3, 0.8, -0.5, 1.4, 0.9
    expected = (mean_kernel(0, 2 * s1**2, h) + mean_kernel(0, 2 * s2**2, h)
                - 2 * mean_kernel(m1 - m2, s1**2 + s2**2, h))
    value = gaussian_mmd2(torch.tensor([m1], dtype=F64), torch.tensor([[s1**2]], dtype=F64),
                          torch.tensor([m2], dtype=F64), torch.tensor([[s2**2]], dtype=F64), h)
    assert abs(float(value) - expected) < 1e-14


def correlated_gaussians(dim):
    g = torch.Generator().manual_seed(3)
    a = torch.randn(dim, dim, generator=g, dtype=F64) / math.sqrt(dim)
    cov1 = a @ a.T + 0.5 * torch.eye(dim, dtype=F64)
    cov2 = torch.diag(torch.linspace(0.5, 1.5, dim, dtype=F64))
    mean1 = torch.zeros(dim, dtype=F64)
    mean2 = torch.full((dim,), 0.25, dtype=F64)
    return mean1, cov1, mean2, cov2


def draw(mean, cov, n, generator):
    chol = torch.linalg.cholesky(cov)
    return mean + torch.randn(n, mean.shape[0], generator=generator, dtype=F64) @ chol.T


def test_unbiased_estimator_is_unbiased_and_v_statistic_has_its_known_bias():
    # Over R = 300 independent pairs of samples, the mean of the U-statistic estimates MMD^2 with
    # standard error sd/sqrt(R), sd measured across the repetitions. The V-statistic's mean is
    # MMD^2 + (k(0) - E k(X, X')) / n + (k(0) - E k(Y, Y')) / m exactly (its diagonal terms), and
    # E k(X, X') is again a closed form.
    mean1, cov1, mean2, cov2 = correlated_gaussians(3)
    h, n, m, reps = 1.5, 40, 60, 300
    g = torch.Generator().manual_seed(4)
    u_values, v_values = [], []
    for _ in range(reps):
        x, y = draw(mean1, cov1, n, g), draw(mean2, cov2, m, g)
        u_values.append(float(mmd2(x, y, bandwidth=h)))
        v_values.append(float(mmd2(x, y, bandwidth=h, unbiased=False)))
    u_values, v_values = torch.tensor(u_values, dtype=F64), torch.tensor(v_values, dtype=F64)
    truth = gaussian_mmd2(mean1, cov1, mean2, cov2, h)
    assert float(gaussian_mmd2(mean1, cov1, mean1, cov1, h)) == pytest.approx(0.0, abs=1e-14)
    eye = torch.eye(3, dtype=F64)
    mean_kxx = torch.linalg.det(eye + 2 * cov1 / h**2) ** -0.5
    mean_kyy = torch.linalg.det(eye + 2 * cov2 / h**2) ** -0.5
    v_expected = truth + (1 - mean_kxx) / n + (1 - mean_kyy) / m
    se = math.sqrt(reps)
    assert_within_se(u_values.mean(), truth, u_values.std() / se, "mean of unbiased MMD^2")
    assert_within_se(v_values.mean(), v_expected, v_values.std() / se, "mean of biased MMD^2")
    # The bias is large enough here (> 10 SE) that the V-statistic alone would fail the first check.
    assert float((v_expected - truth) / (v_values.std() / se)) > 10


def test_energy_distance_against_its_gaussian_closed_form():
    # 1-D: E|Z| for Z ~ N(mu, s^2) is s sqrt(2/pi) exp(-mu^2/(2s^2)) + mu (1 - 2 Phi(-mu/s)), so the
    # energy distance 2E|X-Y| - E|X-X'| - E|Y-Y'| is known; the U-statistic is unbiased for it.
    from scipy.stats import norm

    def mean_abs(mu, s):
        return s * math.sqrt(2 / math.pi) * math.exp(-(mu**2) / (2 * s**2)) + mu * (1 - 2 * norm.cdf(-mu / s))

    m1, s1, m2, s2 = 0.0, 1.0, 0.7, 1.5
    truth = (2 * mean_abs(m1 - m2, math.hypot(s1, s2)) - mean_abs(0, math.sqrt(2) * s1)
             - mean_abs(0, math.sqrt(2) * s2))
    g = torch.Generator().manual_seed(5)
    values = torch.tensor([
        float(mmd2(m1 + s1 * torch.randn(80, 1, generator=g, dtype=F64),
                   m2 + s2 * torch.randn(80, 1, generator=g, dtype=F64), "energy"))
        for _ in range(200)
    ], dtype=F64)
    assert_within_se(values.mean(), truth, values.std() / math.sqrt(200), "energy distance")


def test_median_bandwidth_matches_numpy_and_is_deterministic():
    g = torch.Generator().manual_seed(6)
    x, y = torch.randn(30, 2, generator=g, dtype=F64), torch.randn(25, 2, generator=g, dtype=F64)
    pooled = torch.cat([x, y]).numpy()
    distances = np.linalg.norm(pooled[:, None] - pooled[None], axis=-1)[np.triu_indices(55, 1)]
    assert median_bandwidth(x, y) == pytest.approx(float(np.median(distances)), rel=1e-12)
    big = torch.randn(5000, 2, generator=g)
    assert median_bandwidth(big) == median_bandwidth(big)


def test_witness_function():
    g = torch.Generator().manual_seed(7)
    x = torch.randn(120, 2, generator=g, dtype=F64)
    y = torch.randn(90, 2, generator=g, dtype=F64) + torch.tensor([1.0, 0.0], dtype=F64)
    kernel = GaussianKernel(0.8)
    at = torch.randn(40, 2, generator=g, dtype=F64)
    expected = kernel(at, x).mean(1) - kernel(at, y).mean(1)
    witness = mmd_witness(x, y, at, bandwidth=0.8, block_size=16)
    assert torch.allclose(witness, expected, atol=1e-14, rtol=0)
    # E_x f - E_y f is the V-statistic, exactly.
    gap = mmd_witness(x, y, x, bandwidth=0.8).mean() - mmd_witness(x, y, y, bandwidth=0.8).mean()
    assert abs(float(gap - mmd2(x, y, bandwidth=0.8, unbiased=False))) < 1e-14
    # Positive where x lives (left), negative where y lives (right).
    signs = mmd_witness(x, y, torch.tensor([[-1.0, 0.0], [2.0, 0.0]], dtype=F64), bandwidth=0.8).sign()
    assert signs.tolist() == [1.0, -1.0]


def test_permutation_test_statistic_matches_mmd2():
    g = torch.Generator().manual_seed(8)
    x, y = torch.randn(60, 2, generator=g, dtype=F64), torch.randn(45, 2, generator=g, dtype=F64)
    for unbiased in (True, False):
        result = mmd_test(x, y, bandwidth=1.0, unbiased=unbiased, n_permutations=20, generator=g,
                          block_size=32)
        expected = float(mmd2(x, y, bandwidth=1.0, unbiased=unbiased))
        assert result.statistic == pytest.approx(expected, abs=1e-13)
        assert result.null_statistics.shape == (20,)


def test_permutation_test_level_and_power():
    # Level: under H0 the p-value is super-uniform, P(p <= a) <= a. Over 300 null data sets, the
    # rejection count at a = 0.1 is at most Binomial(300, 0.1): mean 30, sd 5.2; we fail above
    # 30 + 5 sd = 56 (and below 30 - 5 sd = 4, which would mean a grossly conservative test).
    g = torch.Generator().manual_seed(9)
    rejections = 0
    for _ in range(300):
        x, y = torch.randn(30, 2, generator=g), torch.randn(30, 2, generator=g)
        rejections += mmd_test(x, y, n_permutations=99, generator=g).p_value <= 0.1
    assert 4 <= rejections <= 56, rejections
    # Power: a unit shift with 100 points each is detected every time (the statistic sits many
    # null standard deviations out); the smallest p-value with 199 permutations is 1/200.
    for _ in range(5):
        x, y = torch.randn(100, 2, generator=g), torch.randn(100, 2, generator=g) + 1.0
        assert mmd_test(x, y, n_permutations=199, generator=g).p_value == pytest.approx(1 / 200)


def test_deterministic_given_generator():
    x, y = torch.randn(50, 2), torch.randn(50, 2)
    a = mmd_test(x, y, generator=torch.Generator().manual_seed(3))
    b = mmd_test(x, y, generator=torch.Generator().manual_seed(3))
    assert a.p_value == b.p_value and torch.equal(a.null_statistics, b.null_statistics)


def test_memory_does_not_grow_with_n_times_m():
    # n = m = 20,000 in 2-D: one dense float32 kernel matrix would take 1.6 GB. The blocked
    # estimator's blocks are 1024 x 1024 (4 MiB each, a few alive at once), so the process's
    # peak resident size may grow by little more than that during the call: we allow 200 MB
    # (an eighth of one dense matrix), measured from the resident size just before the call, in
    # a fresh process so the peak is this computation's. (Eager blocks: the compiled ones use
    # the same block memory, and compiling takes longer.)
    code = (
        "import torch\n"
        "from measureflow.metrics import mmd2\n"
        "def peak_kib():\n"
        "    return next(int(line.split()[1]) for line in open('/proc/self/status')\n"
        "                if line.startswith('VmHWM'))\n"
        "g = torch.Generator().manual_seed(0)\n"
        "x = torch.randn(20000, 2, generator=g); y = torch.randn(20000, 2, generator=g)\n"
        # Writing 5 to clear_refs resets the peak (VmHWM) to the current resident size, so the
        # peak read afterwards is this call's, not the imports'.
        "open('/proc/self/clear_refs', 'w').write('5')\n"
        "before = peak_kib()\n"
        "value = float(mmd2(x, y, bandwidth=1.0, block_size=1024, compile=False))\n"
        "print(value, peak_kib() - before)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         timeout=300)
    value, growth_kib = out.stdout.split()
    # Same law, so the U-statistic is degenerate: n MMD^2 -> sum_l lambda_l (z_l^2 - 2) with
    # z_l ~ N(0, 2) for n = m (Gretton et al. 2012, Thm 12), variance 8 sum lambda_l^2 =
    # 8 E k~(X, X')^2 <= 8 E k(X, X')^2 = 8 E exp(-|Z|^2), Z ~ N(0, 2I) in 2-D, = 8 / 5. So its
    # sd is at most sqrt(1.6) / n = 6.3e-5; we allow 5 sd.
    assert abs(float(value)) < 5 * 6.3e-5
    assert int(growth_kib) < 200_000, f"resident size grew by {int(growth_kib) / 1e3:.0f} MB"


samples = st.integers(min_value=2, max_value=12).flatmap(
    lambda n: st.tuples(st.just(n), st.integers(min_value=2, max_value=12), st.integers(0, 2**31 - 1))
)


@settings(max_examples=25, deadline=None)
@given(samples, st.sampled_from(KERNEL_CASES))
def test_mmd_properties(sizes, case):
    n, m, seed = sizes
    name, bandwidth = case
    g = torch.Generator().manual_seed(seed)
    x, y = torch.randn(n, 2, generator=g, dtype=F64), torch.randn(m, 2, generator=g, dtype=F64) + 0.5
    for unbiased in (True, False):
        value = mmd2(x, y, name, bandwidth, unbiased=unbiased, block_size=5)
        # Symmetry and invariance to the order of the samples (exact up to summation order).
        assert float(mmd2(y, x, name, bandwidth, unbiased=unbiased)) == pytest.approx(float(value), abs=1e-12)
        shuffled = mmd2(x[torch.randperm(n, generator=g)], y[torch.randperm(m, generator=g)], name,
                        bandwidth, unbiased=unbiased, block_size=3)
        assert float(shuffled) == pytest.approx(float(value), abs=1e-12)
    # The V-statistic is a squared RKHS norm: non-negative, and zero on identical samples.
    assert float(mmd2(x, y, name, bandwidth, unbiased=False)) >= 0
    assert float(mmd2(x, x.clone(), name, bandwidth, unbiased=False)) == pytest.approx(0.0, abs=1e-12)


def test_kernel_objects_and_sums():
    x = torch.tensor([[0.0, 0.0], [3.0, 4.0]], dtype=F64)
    assert float(GaussianKernel(5.0)(x, x)[0, 1]) == pytest.approx(math.exp(-0.5))
    assert float(IMQKernel(5.0)(x, x)[0, 1]) == pytest.approx(2**-0.5)
    assert float(LaplaceKernel(5.0)(x, x)[0, 1]) == pytest.approx(math.exp(-1))
    assert float(EnergyKernel()(x, x)[0, 1]) == pytest.approx(-5.0)
    assert float(GaussianKernel((1.0, 5.0))(x, x)[0, 0]) == 2.0
    assert float(pairwise_sum(x, None, EnergyKernel(), exclude_diagonal=True)) == pytest.approx(-10.0)


@pytest.mark.parametrize(
    "call,message",
    [
        (lambda: mmd2(torch.zeros(5, 2), torch.zeros(5, 3)), "same dimension"),
        (lambda: mmd2(torch.zeros(5), torch.zeros(5, 1)), r"shape \(n, d\)"),
        (lambda: mmd2(torch.full((5, 2), float("nan")), torch.zeros(5, 2)), "NaN"),
        (lambda: mmd2(torch.randn(5, 2), torch.randn(5, 2), "cauchy"), "unknown kernel"),
        (lambda: mmd2(torch.randn(5, 2), torch.randn(5, 2), bandwidth=-1.0), "positive"),
        (lambda: mmd2(torch.randn(5, 2), torch.randn(5, 2), bandwidth=[]), "non-empty"),
        (lambda: mmd2(torch.randn(5, 2), torch.randn(5, 2), "energy", 1.0), "no bandwidth"),
        (lambda: mmd2(torch.randn(1, 2), torch.randn(5, 2)), "at least 2"),
        (lambda: mmd2(torch.randn(5, 2), torch.randn(5, 2), block_size=0), "block_size"),
        (lambda: mmd_test(torch.randn(5, 2), torch.randn(5, 2), n_permutations=0), "n_permutations"),
        (lambda: median_bandwidth(torch.zeros(4, 2)), "coincide"),
    ],
)
def test_bad_input(call, message):
    with pytest.raises((ValueError, TypeError), match=message):
        call()


def test_numpy_input_and_dtype():
    x = np.random.default_rng(0).normal(size=(20, 2))
    value = mmd2(x, x + 1.0, bandwidth=1.0)
    assert value.dtype == F64 and float(value) > 0
    assert mmd2(torch.randn(10, 2), torch.randn(10, 2), bandwidth=1.0).dtype == torch.float32
    assert kernels.KERNELS.keys() == {"gaussian", "imq", "laplace", "energy"}
