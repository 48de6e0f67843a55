"""HSIC and its gamma-approximation test (measureflow.metrics.independence)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import special

from measureflow.metrics import HSICTestResult, hsic, hsic_test, median_bandwidth
from measureflow.metrics.independence import _gamma_null, _log_gamma_sf


def _pair(seed: int, n: int, dependence: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, generator=gen, dtype=torch.float64)
    y = dependence * x**2 + torch.randn(n, generator=gen, dtype=torch.float64)
    return x, y


def _gaussian_gram(v: np.ndarray, h: float) -> np.ndarray:
    v = v.reshape(len(v), -1)
    sq = ((v[:, None, :] - v[None, :, :]) ** 2).sum(-1)
    return np.exp(-sq / (2 * h**2))


def _gretton_gamma(x: np.ndarray, y: np.ndarray, hx: float, hy: float) -> tuple[float, float, float]:
    """A line-by-line transcription of Gretton's hsicTestGamma.m (2008): (n HSIC_b, shape, scale)."""
    m = len(x)
    K, L = _gaussian_gram(x, hx), _gaussian_gram(y, hy)
    H = np.eye(m) - np.ones((m, m)) / m
    Kc, Lc = H @ K @ H, H @ L @ H
    test_stat = (Kc.T * Lc).sum() / m
    var_hsic = (Kc * Lc / 6) ** 2
    var_hsic = (var_hsic.sum() - np.trace(var_hsic)) / m / (m - 1)
    var_hsic = var_hsic * 72 * (m - 4) * (m - 5) / m / (m - 1) / (m - 2) / (m - 3)
    K, L = K - np.diag(np.diag(K)), L - np.diag(np.diag(L))
    mu_x, mu_y = K.sum() / m / (m - 1), L.sum() / m / (m - 1)
    m_hsic = (1 + mu_x * mu_y - mu_x - mu_y) / m
    return test_stat, m_hsic**2 / var_hsic, var_hsic * m / m_hsic


def test_statistic_matches_the_trace_formula():
    """HSIC_b = (1/n^2) tr(K H L H) with explicit matrices; both sides in float64, so the only
    difference is summation order (relative ~1e-15 for n = 40)."""
    x, y = _pair(0, 40, dependence=0.5)
    y2 = torch.stack([y, x * y], 1)  # a 2-d y
    hx, hy = 0.7, 1.3
    n = 40
    K, L = _gaussian_gram(x.numpy(), hx), _gaussian_gram(y2.numpy(), hy)
    H = np.eye(n) - 1.0 / n
    expected = np.trace(K @ H @ L @ H) / n**2
    assert float(hsic(x, y2, hx, hy)) == pytest.approx(expected, rel=1e-12)
    # The default bandwidths are the median heuristic on each sample.
    default = hsic(x, y2)
    explicit = hsic(x, y2, median_bandwidth(x[:, None]), median_bandwidth(y2))
    assert float(default) == pytest.approx(float(explicit), rel=1e-14)


def test_gamma_parameters_match_grettons_code():
    """shape, scale and n HSIC_b equal a transcription of hsicTestGamma.m (float64, summation order
    only: rel 1e-10), and p is the gamma survival function at n HSIC_b."""
    x, y = _pair(1, 60, dependence=0.3)
    hx, hy = 0.9, 1.1
    stat, shape, scale = _gretton_gamma(x.numpy(), y.numpy(), hx, hy)
    result = hsic_test(x, y, hx, hy)
    assert isinstance(result, HSICTestResult)
    assert 60 * result.statistic == pytest.approx(stat, rel=1e-10)
    assert result.shape == pytest.approx(shape, rel=1e-10)
    assert result.scale == pytest.approx(scale, rel=1e-10)
    assert result.p_value == pytest.approx(float(special.gammaincc(shape, stat / scale)), rel=1e-9)
    assert result.to_dict()["n"] == 60 and result.bandwidth_x == hx and result.bandwidth_y == hy


def _batched_p_values(x: torch.Tensor, y: torch.Tensor) -> np.ndarray:
    """p-values of hsic_test for a batch of pairs x, y ``(B, n)`` in one pass: the same median
    bandwidths and the same moment code (_gamma_null) as the public function."""
    n = x.shape[1]
    rows, cols = torch.triu_indices(n, n, 1)

    def gram(v: torch.Tensor) -> torch.Tensor:
        sq = (v[:, :, None] - v[:, None, :]).square()
        h2 = sq[:, rows, cols].median(-1).values  # median distance, squared (lower median)
        return torch.exp(sq / (-2 * h2[:, None, None]))

    statistic, shape, scale = _gamma_null(gram(x), gram(y), 1.0, 1.0)
    return special.gammaincc(shape.numpy(), (n * statistic / scale).numpy())


def test_level_under_independence():
    """Rejection rate at alpha = 0.05 over 800 independent Gaussian pairs of n = 100.

    The gamma approximation is not exact, so its true level alpha' is allowed in [0.04, 0.06] (a
    6000-pair run at n = 100 gave 0.053; Gretton et al. 2008 report accurate levels from n ~ 100).
    The count of rejections is Binomial(800, alpha'); at z = 3.5 the band is
    [800 * 0.04 - 3.5 sqrt(800 * 0.04 * 0.96), 800 * 0.06 + 3.5 sqrt(800 * 0.06 * 0.94)] = [12.6, 71.5].
    """
    gen = torch.Generator().manual_seed(0)
    n_pairs, n = 800, 100
    p_values = []
    for _ in range(4):  # chunks of 200 keep each (B, n, n) tensor at 16 MB
        x = torch.randn(200, n, generator=gen, dtype=torch.float64)
        y = torch.randn(200, n, generator=gen, dtype=torch.float64)
        p_values.append(_batched_p_values(x, y))
        if len(p_values) == 1:  # the batched path is the public function's
            assert p_values[0][0] == pytest.approx(hsic_test(x[0], y[0]).p_value, rel=1e-9)
    p_values = np.concatenate(p_values)
    assert p_values.shape == (n_pairs,) and np.all((p_values >= 0) & (p_values <= 1))
    rejections = int((p_values < 0.05).sum())
    low = n_pairs * 0.04 - 3.5 * math.sqrt(n_pairs * 0.04 * 0.96)
    high = n_pairs * 0.06 + 3.5 * math.sqrt(n_pairs * 0.06 * 0.94)
    assert low <= rejections <= high, f"{rejections} rejections, expected in [{low:.1f}, {high:.1f}]"


def test_strong_dependence_rejects():
    x, y = _pair(2, 100)
    noisy_square = x**2 + 0.1 * y  # uncorrelated with x, but a function of it
    result = hsic_test(x, noisy_square)
    assert result.p_value < 1e-6
    assert result.log_p_value == pytest.approx(math.log(result.p_value), rel=1e-12)
    # A deterministic relation on 1000 points: p underflows to 0 (log p < -745), its log stays finite.
    x, _ = _pair(3, 1000)
    result = hsic_test(x, torch.tanh(x), 0.3, 0.3)
    assert result.p_value == 0.0 and math.isfinite(result.log_p_value) and result.log_p_value < -745


@pytest.mark.parametrize("x", [800.0, 2500.0])
def test_log_gamma_survival_past_underflow(x):
    """Closed forms where gammaincc underflows: Q(1, x) = e^-x, Q(3, x) = e^-x (1 + x + x^2/2),
    Q(1/2, x) = erfc(sqrt x) = 2 Phi(-sqrt(2x)); the continued fraction converges to rounding."""
    assert special.gammaincc(1.0, x) == 0.0  # the regime under test
    assert _log_gamma_sf(1.0, x) == pytest.approx(-x, rel=1e-13)
    assert _log_gamma_sf(3.0, x) == pytest.approx(-x + math.log(1 + x + x**2 / 2), rel=1e-13)
    expected = math.log(2) + float(special.log_ndtr(-math.sqrt(2 * x)))
    assert _log_gamma_sf(0.5, x) == pytest.approx(expected, rel=1e-12)


def test_agrees_with_causal_learn_kci():
    """Against causal-learn's unconditional KCI test, which is HSIC with a gamma approximation.

    KCI_UInd z-scores each sample (ddof = 1) and, with est_width='manual', uses
    exp(-|a - b|^2 / (2 w^2)) on the z-scores; bandwidth w * sd on the raw data gives identical
    kernel matrices. Its statistic is sum((HKH) * (HLH)) = n^2 HSIC_b: equal to rounding. Its null
    mean of that statistic, tr(HKH) tr(HLH) / n, is exactly ((n - 1)/n)^2 n times ours (for
    k(a, a) = 1, tr(HKH)/n = (n - 1)/n (1 - mu_x)): equal to rounding after the factor.
    The null variances are different consistent estimators (KCI: the product 2 |HKH|_F^2 |HLH|_F^2
    / n^4 for n HSIC_b; Gretton: the joint sum of (HKH)_ij^2 (HLH)_ij^2), so their ratio is
    1 + O(n^{-1/2}) under independence (0.98 to 1.17 seen at n = 200): allowed within 0.7 and 1.4.
    (Under dependence only Gretton's is the variance of the statistic's null, and they part: 2.)
    For the p-values, in the normal limit p = Phi(-z), z = (T - m) / sqrt(v): a relative variance
    change delta moves z by z delta / 2, so p by at most max_z z phi(z) delta / 2 = 0.121 delta, and
    the mean factor 1 - 2/n moves z by 2 sqrt(shape) / n, p by at most 0.4 * 2 sqrt(shape) / n
    (0.007 at shape ~ 3 here); with delta <= 0.4: |dp| <= 0.049 + 0.007 < 0.06. On dependent pairs
    both tests must reject.
    """
    kci_module = pytest.importorskip("causallearn.utils.KCI.KCI")
    n = 200
    for seed, dependence in ((10, 0.0), (11, 0.0), (12, 0.0), (13, 1.0), (14, 1.0)):
        x, y = _pair(seed, n, dependence)
        width_x, width_y = 0.8, 1.2  # on the z-scored data
        kci = kci_module.KCI_UInd(est_width="manual", kwidthx=width_x, kwidthy=width_y)
        xs, ys = x.numpy()[:, None].copy(), y.numpy()[:, None].copy()
        p_kci, v_kci = kci.compute_pvalue(xs, ys)
        gram_x, gram_y = kci.kernel_matrix(xs, ys)
        _, centred_x, centred_y = kci.HSIC_V_statistic(gram_x, gram_y)
        shape_kci, scale_kci = kci.get_kappa(centred_x, centred_y)
        ours = hsic_test(x, y, width_x * float(x.std()), width_y * float(y.std()))
        assert n**2 * ours.statistic == pytest.approx(v_kci, rel=1e-10)
        mean_kci = shape_kci * scale_kci / n  # of n HSIC_b
        assert mean_kci == pytest.approx(((n - 1) / n) ** 2 * ours.shape * ours.scale, rel=1e-10)
        if dependence:
            assert ours.p_value < 1e-3 and p_kci < 1e-3
        else:
            variance_ratio = ours.shape * ours.scale**2 / (shape_kci * scale_kci**2 / n**2)
            assert 0.7 < variance_ratio < 1.4
            assert abs(ours.p_value - p_kci) < 0.06


@pytest.mark.parametrize(
    ("x", "y", "message"),
    [
        (torch.zeros(5), torch.zeros(5), "at least 6"),
        (torch.randn(10), torch.randn(11), "same number of observations"),
        (torch.tensor([1.0, float("nan"), 2, 3, 4, 5, 6]), torch.randn(7), "NaN"),
        (torch.randn(10, 2, 2), torch.randn(10), r"shape \(n,\) or \(n, d\)"),
    ],
)
def test_input_errors(x, y, message):
    with pytest.raises(ValueError, match=message):
        hsic_test(x, y)
    with pytest.raises(ValueError, match=message):
        hsic(x, y)


def test_bandwidth_and_constant_errors():
    x, y = _pair(4, 20)
    with pytest.raises(ValueError, match="bandwidth_x"):
        hsic_test(x, y, bandwidth_x=-1.0)
    with pytest.raises(ValueError, match="give a bandwidth explicitly"):
        hsic_test(torch.ones(20), y)  # the median heuristic on a constant sample
    with pytest.raises(ValueError, match="kernel matrix of x is constant"):
        hsic_test(torch.ones(20), y, bandwidth_x=1.0)
