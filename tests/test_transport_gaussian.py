"""The exact one-sample W_p to a normal, symmetric matrix powers, Kantorovich potentials (the LP
dual) and the shared Gaussian validation of ``measureflow.metrics``."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from measureflow.metrics import (
    KantorovichPotentials,
    gaussian_kl,
    gaussian_w2,
    kantorovich_potentials,
    symmetric_matrix_power,
    transport_plan,
    wasserstein,
    wasserstein_1d_to_normal,
)
from measureflow.metrics._validate import check_gaussian

F64 = torch.float64


# --------------------------------------------------------------------------------------------------
# wasserstein_1d_to_normal


def _quadrature_distance(sample: np.ndarray, mean: float, std: float, p: int) -> float:
    """W_p^p = int |F_n^-1(Phi(z)) - mean - std z|^p phi(z) dz by Gauss-Legendre, piece by piece.

    An independent route to the same integral: substitute u = Phi(z), split the line at the jumps
    z_i = Phi^-1(i / n) of the empirical quantile function and (for p = 1) at the kinks
    z = (x_(i) - mean) / std, truncate at +-12 (phi(12) ~ 1e-32), and integrate each smooth piece
    with 80 Gauss-Legendre nodes (a polynomial times a Gaussian: exact to rounding on these
    lengths)."""
    from scipy.special import ndtri

    values = np.sort(sample)
    n = values.size
    cuts = [-12.0, 12.0] + [float(ndtri(i / n)) for i in range(1, n)]
    if p == 1:
        cuts += [float(c) for c in (values - mean) / std]
    cuts = np.unique(np.clip(cuts, -12.0, 12.0))
    nodes, weights = np.polynomial.legendre.leggauss(80)
    total = 0.0
    for low, high in zip(cuts[:-1], cuts[1:], strict=True):
        z = 0.5 * (high - low) * nodes + 0.5 * (high + low)
        cdf = 0.5 * (1 + np.vectorize(math.erf)(z / math.sqrt(2)))
        cell = np.clip(np.floor(cdf * n).astype(int), 0, n - 1)
        integrand = np.abs(values[cell] - mean - std * z) ** p * np.exp(-0.5 * z**2) / math.sqrt(2 * math.pi)
        total += 0.5 * (high - low) * float((weights * integrand).sum())
    return total ** (1.0 / p)


@pytest.mark.parametrize("p", [1, 2])
def test_one_sample_normal_distance_matches_an_independent_quadrature(p):
    # Both are exact up to rounding (closed forms vs Gauss-Legendre on smooth pieces); 1e-10
    # relative leaves room for the ~n float64 terms summed by each.
    generator = torch.Generator().manual_seed(0)
    for n, mean, std in ((1, 0.3, 1.0), (2, 0.0, 0.5), (7, -1.0, 2.0), (40, 0.5, 0.05)):
        x = mean + 1.3 * std * torch.randn(n, generator=generator, dtype=F64) + 0.2 * std
        expected = _quadrature_distance(x.numpy(), mean, std, p)
        measured = float(wasserstein_1d_to_normal(x, mean, std, p=p))
        assert measured == pytest.approx(expected, rel=1e-10), (n, mean, std)


def test_one_sample_normal_distance_of_one_point_is_its_closed_form():
    # delta_c against N(0, s^2): W2^2 = c^2 + s^2 and W1 = E|c - s Z| = s (2 phi(a) + a (2 Phi(a) - 1)),
    # a = c / s (the mean of a folded normal).
    for c, s in ((0.0, 1.0), (0.7, 1.0), (-2.5, 0.3)):
        a = c / s
        phi, cdf = math.exp(-0.5 * a * a) / math.sqrt(2 * math.pi), 0.5 * (1 + math.erf(a / math.sqrt(2)))
        point = torch.tensor([c], dtype=F64)
        assert float(wasserstein_1d_to_normal(point, 0.0, s)) == pytest.approx(math.hypot(c, s), rel=1e-13)
        assert float(wasserstein_1d_to_normal(point, 0.0, s, p=1)) == pytest.approx(
            s * (2 * phi + a * (2 * cdf - 1)), rel=1e-12)


def test_one_sample_normal_distance_is_translation_and_scale_equivariant():
    x = torch.randn(300, generator=torch.Generator().manual_seed(1), dtype=F64)
    for p in (1, 2):
        base = float(wasserstein_1d_to_normal(x, 0.2, 1.5, p=p))
        shifted = float(wasserstein_1d_to_normal(x + 3.0, 3.2, 1.5, p=p))
        scaled = float(wasserstein_1d_to_normal(4.0 * x, 0.8, 6.0, p=p))
        assert shifted == pytest.approx(base, rel=1e-12)
        assert scaled == pytest.approx(4.0 * base, rel=1e-12)
        # W1 <= W2 (Jensen) for the same pair of measures.
    assert float(wasserstein_1d_to_normal(x, p=1)) <= float(wasserstein_1d_to_normal(x, p=2))


def test_one_sample_normal_distance_keeps_dtype_and_shape_and_validates():
    x32 = torch.randn(50, 1, generator=torch.Generator().manual_seed(2))
    result = wasserstein_1d_to_normal(x32)
    assert result.dtype == torch.float32 and result.shape == ()
    with pytest.raises(ValueError, match="p must be 1 or 2"):
        wasserstein_1d_to_normal(x32, p=3)
    with pytest.raises(ValueError, match="std must be finite and positive"):
        wasserstein_1d_to_normal(x32, std=0.0)
    with pytest.raises(ValueError, match="mean must be a finite real number"):
        wasserstein_1d_to_normal(x32, mean=math.nan)
    with pytest.raises(ValueError, match=r"shape \(n,\) or \(n, 1\)"):
        wasserstein_1d_to_normal(torch.zeros(5, 2))


# --------------------------------------------------------------------------------------------------
# symmetric_matrix_power


def _spd(d: int, seed: int) -> torch.Tensor:
    a = torch.randn(d, d, generator=torch.Generator().manual_seed(seed), dtype=F64)
    return a @ a.T + 0.5 * torch.eye(d, dtype=F64)


def test_matrix_powers_compose_and_invert():
    # Identities of the functional calculus, exact up to eigendecomposition rounding (~1e-14 for
    # these condition numbers; 1e-10 is a wide margin).
    s = _spd(4, 0)
    root = symmetric_matrix_power(s, 0.5)
    inverse_root = symmetric_matrix_power(s, -0.5)
    identity = torch.eye(4, dtype=F64)
    torch.testing.assert_close(root @ root, s, rtol=0, atol=1e-10)
    torch.testing.assert_close(inverse_root @ s @ inverse_root, identity, rtol=0, atol=1e-10)
    torch.testing.assert_close(symmetric_matrix_power(s, 1.0), s, rtol=0, atol=1e-10)
    torch.testing.assert_close(symmetric_matrix_power(s, 0.3) @ symmetric_matrix_power(s, 0.7), s,
                               rtol=0, atol=1e-10)
    torch.testing.assert_close(root, root.T, rtol=0, atol=1e-13)
    assert bool((torch.linalg.eigvalsh(root) > 0).all())


def test_matrix_power_is_batched_and_clamps_rounding_below_zero():
    batch = torch.stack([_spd(3, seed) for seed in range(5)])
    powered = symmetric_matrix_power(batch, 0.5)
    assert powered.shape == (5, 3, 3)
    for k in range(5):
        torch.testing.assert_close(powered[k], symmetric_matrix_power(batch[k], 0.5), rtol=0, atol=1e-12)
    # A PSD matrix whose smallest eigenvalue rounds to -1e-17: its square root is finite.
    v = torch.tensor([1.0, 1.0], dtype=F64) / math.sqrt(2)
    singular = torch.outer(v, v)
    torch.testing.assert_close(symmetric_matrix_power(singular, 0.5), singular, rtol=0, atol=1e-12)
    torch.testing.assert_close(symmetric_matrix_power(torch.diag(torch.tensor([4.0, 9.0])), 0.5),
                               torch.diag(torch.tensor([2.0, 3.0])))


def test_matrix_power_rejects_what_has_no_power():
    with pytest.raises(ValueError, match="positive definite for the negative power"):
        symmetric_matrix_power(torch.diag(torch.tensor([1.0, 0.0], dtype=F64)), -0.5)
    with pytest.raises(ValueError, match="matrix must be symmetric"):
        symmetric_matrix_power(torch.tensor([[1.0, 0.5], [0.0, 1.0]]), 0.5)
    with pytest.raises(ValueError, match="matrix must be positive semi-definite"):
        symmetric_matrix_power(torch.diag(torch.tensor([1.0, -1.0])), 0.5)
    with pytest.raises(ValueError, match=r"shape \(\.\.\., d, d\)"):
        symmetric_matrix_power(torch.ones(2, 3), 0.5)
    with pytest.raises(TypeError, match="power must be a finite real number"):
        symmetric_matrix_power(torch.eye(2), math.inf)


# --------------------------------------------------------------------------------------------------
# kantorovich_potentials


def _distance(x, y):
    # Direct differences: the matrix-product form of cdist loses ~1e-8 to cancellation.
    return torch.cdist(x, y, compute_mode="donot_use_mm_for_euclid_dist")


@pytest.mark.parametrize("p", [1, 2])
def test_potentials_close_the_duality_gap_and_satisfy_complementary_slackness(p):
    # LP duality is exact; the network simplex's potentials solve a triangular system along a
    # spanning tree in float64, so the gap and the violations are rounding (~1e-14 here); 1e-10
    # relative to the cost scale still catches a dual that is off by one pivot (~1/n = 1e-2).
    generator = torch.Generator().manual_seed(p)
    x = torch.randn(60, 2, generator=generator, dtype=F64)
    y = 0.5 + 1.5 * torch.rand(45, 2, generator=generator, dtype=F64)
    a = torch.rand(60, generator=generator, dtype=F64)
    dual = kantorovich_potentials(x, y, p, x_weights=a)
    assert isinstance(dual, KantorovichPotentials)
    assert dual.u.shape == (60,) and dual.v.shape == (45,)
    cost = float(wasserstein(x, y, p, x_weights=a)) ** p
    scale = float(_distance(x, y).pow(p).max())
    assert abs(float(dual.primal) - cost) <= 1e-10 * scale
    assert abs(float(dual.dual) - cost) <= 1e-10 * scale
    torch.testing.assert_close((a / a.sum()) @ dual.u + dual.v.mean(), dual.dual, rtol=0, atol=1e-12)
    slack = _distance(x, y).pow(p) - dual.u[:, None] - dual.v[None, :]
    assert float(-slack.min()) <= 1e-10 * scale
    torch.testing.assert_close(dual.max_violation, -slack.min(), rtol=0, atol=1e-12)
    plan = transport_plan(x, y, p, x_weights=a)
    assert float(slack[plan > 0].abs().max()) <= 1e-10 * scale


def test_p1_potential_is_a_kantorovich_rubinstein_critic():
    # For p = 1, f(z) = min_j |z - y_j| - v_j is 1-Lipschitz (an infimum of 1-Lipschitz functions)
    # and E_mu f - E_nu f = W1 (strong duality; Villani 2009, thm. 5.10).
    generator = torch.Generator().manual_seed(3)
    x = torch.randn(40, 2, generator=generator, dtype=F64)
    y = torch.randn(40, 2, generator=generator, dtype=F64) + torch.tensor([2.0, 0.0], dtype=F64)
    dual = kantorovich_potentials(x, y, p=1)

    def critic(z):
        return (_distance(z, y) - dual.v[None, :]).min(1).values

    w1 = float(wasserstein(x, y, p=1))
    assert float(critic(x).mean() - critic(y).mean()) == pytest.approx(w1, rel=1e-10)


def test_potentials_follow_the_input_dtype_and_serialize():
    x = torch.tensor([[0.0], [1.0]])
    dual = kantorovich_potentials(x, x + 3.0, p=1)
    assert dual.u.dtype == torch.float32 and dual.primal.dtype == torch.float32
    assert dual.to_dict()["primal"] == pytest.approx(3.0)
    with pytest.raises(ValueError, match="same dimension"):
        kantorovich_potentials(x, torch.zeros(2, 2))


# --------------------------------------------------------------------------------------------------
# the Gaussian validation shared by gaussian_w2 and gaussian_kl


def test_gaussian_validation_is_shared_and_symmetrizes():
    nearly = torch.tensor([[2.0, 0.5], [0.5 + 1e-12, 1.0]], dtype=F64)
    mean, cov = check_gaussian(torch.zeros(2, dtype=F64), nearly)
    torch.testing.assert_close(cov, cov.T, rtol=0, atol=0)
    # Not positive semi-definite: refused by default, left to the caller with semidefinite=False
    # (gaussian_kl then reports the failed Cholesky factorization in its own words).
    indefinite = torch.tensor([[1.0, 2.0], [2.0, 1.0]])
    with pytest.raises(ValueError, match="positive semi-definite"):
        check_gaussian(torch.zeros(2), indefinite)
    check_gaussian(torch.zeros(2), indefinite, semidefinite=False)
    for function in (gaussian_w2, gaussian_kl):
        with pytest.raises(ValueError, match=r"S1 must have shape \(\.\.\., 3, 3\)"):
            function(torch.zeros(3), torch.eye(2), torch.zeros(3), torch.eye(3))
        with pytest.raises(ValueError, match="S2 must be symmetric"):
            function(torch.zeros(2), torch.eye(2), torch.zeros(2), torch.tensor([[1.0, 0.5], [0.0, 1.0]]))
