"""The NTK spectrum on the circle and replicated averaged SGD (the spectral-bias and averaged-sgd checks
run at the quick size in test_checks.py)."""

from __future__ import annotations

import copy
import math

import pytest
import torch

from measureflow.nets import (
    Monitor,
    TwoLayer,
    analytic_ntk,
    averaged_sgd_replicas,
    empirical_ntk,
    symmetrize,
    train,
)
from measureflow.nets.spectrum import (
    circle_inputs,
    circle_spectrum,
    eigenvalues_per_feature,
    fourier_features,
    ntk_neuron_terms,
    relu_circle_spectrum,
)


def test_relu_spectrum_matches_the_closed_form_on_the_plain_circle():
    # Trapezoid with N = 4096 nodes: aliasing error sum_m (mu_{mN-k} + mu_{mN+k}) ~ 2 (pi^2/6) / (pi^2 N^2)
    # ~ 2e-8 for mu_k ~ 1/(pi^2 k^2); 1e-7 leaves a margin of 5.
    torch.testing.assert_close(circle_spectrum(40), relu_circle_spectrum(40), rtol=0, atol=1e-7)


@pytest.mark.parametrize("offset", [0.0, 1.0])
def test_spectrum_matches_the_gram_eigenvalues(offset):
    # On n equally spaced angles K/n is circulant: its eigenvalues are the n-point trapezoidal
    # sums, mu_k^(n) = mu_k + aliases, each k >= 1 twice (cos and sin). An independent eigh of
    # the Gram matrix must reproduce circle_spectrum(n_points=n) to rounding, and the fine-grid
    # spectrum within the aliasing sum (<= 2 * 0.04 * (pi^2/6) / (n - k)^2 < 2e-4 for k <= 8).
    n = 96
    angles = 2 * math.pi * torch.arange(n, dtype=torch.float64) / n
    x = circle_inputs(angles, offset)
    eigenvalues = torch.linalg.eigvalsh(analytic_ntk(x) / n).flip(0)
    grid = circle_spectrum(n // 2 + 1, offset=offset, n_points=n)
    multiplicities = torch.cat([grid[:1], grid[1:-1].repeat_interleave(2), grid[-1:]])
    expected = torch.sort(multiplicities, descending=True).values
    torch.testing.assert_close(eigenvalues, expected, rtol=0, atol=1e-12)
    fine = circle_spectrum(9, offset=offset)
    torch.testing.assert_close(grid[:9], fine, rtol=0, atol=2e-4)


def test_lifted_circle_has_all_frequencies_and_mercer_sum():
    mu = circle_spectrum(200, offset=1.0, n_points=8192)
    assert bool((mu > 0).all())
    # kappa(0) = K(x, x) = 1 for |x| = 1 (ReLU, both layers) = mu_0 + 2 sum_k mu_k; the tail beyond
    # k = 200 is about 2 * 0.036 / 200 = 3.6e-4.
    assert abs(float(mu[0] + 2 * mu[1:].sum()) - 1.0) < 5e-4
    k = torch.arange(64, 200, dtype=torch.float64)
    design = torch.stack([k.log(), torch.ones_like(k)], 1)
    slope = torch.linalg.lstsq(design, mu[64:200].log()[:, None]).solution[0, 0]
    assert abs(float(slope) + 2.0) < 0.02  # mu_k ~ k^-2 from the |t - t'| kink of the kernel


def test_fourier_features_diagonalize_the_kernel_operator():
    n = 64
    angles = 2 * math.pi * torch.arange(n, dtype=torch.float64) / n
    phi = fourier_features(angles, 6)
    torch.testing.assert_close(phi.T @ phi / n, torch.eye(11, dtype=torch.float64))
    gram = analytic_ntk(circle_inputs(angles, 1.0)) / n
    mu = circle_spectrum(6, offset=1.0, n_points=n)
    expected = torch.diag(eigenvalues_per_feature(mu))
    torch.testing.assert_close(phi.T @ gram @ phi / n, expected, rtol=0, atol=1e-12)


def test_inputs_and_spectrum_validate_their_arguments():
    with pytest.raises(ValueError, match="n_points"):
        circle_spectrum(10, n_points=17)
    with pytest.raises(ValueError, match="angles"):
        circle_inputs(torch.zeros(2, 2))
    with pytest.raises(ValueError, match="n_frequencies"):
        fourier_features(torch.zeros(3), 0)


def test_neuron_terms_average_to_the_projected_empirical_ntk():
    net = TwoLayer(3, 30, train=("w",), generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    x = torch.randn(7, 3, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    u = torch.randn(7, 3, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    torch.testing.assert_close(ntk_neuron_terms(net, x, u).mean(0), u.T @ empirical_ntk(net, x) @ u)


def test_symmetrize_zeroes_the_initial_output_and_keeps_the_kernel_law():
    net = symmetrize(TwoLayer(2, 8, generator=torch.Generator().manual_seed(0), dtype=torch.float64))
    x = torch.randn(5, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    assert float(net(x).detach().abs().max()) < 1e-14
    torch.testing.assert_close(net.w[4:], net.w[:4])
    torch.testing.assert_close(net.a[4:], -net.a[:4])
    with pytest.raises(ValueError, match="even"):
        symmetrize(TwoLayer(2, 5))


@pytest.mark.parametrize("layers", [("a", "w"), ("w",), ("a",)])
def test_replicated_averaged_sgd_equals_train(layers):
    # train(optimizer="averaged-sgd", batch_size=1) draws row randint(n, (1,), generator) per step;
    # feeding those rows as the stream must give the same iterates and average (float64; the
    # average is a running mean there and a sum / T here, equal to rounding).
    n, steps = 7, 40
    data = torch.Generator().manual_seed(3)
    x = torch.randn(n, 3, generator=data, dtype=torch.float64)
    y = torch.randn(n, generator=data, dtype=torch.float64)
    net = TwoLayer(3, 6, activation="tanh", train=layers, generator=torch.Generator().manual_seed(1),
                   dtype=torch.float64)
    start = copy.deepcopy(net)
    reference = train(net, x, y, optimizer="averaged-sgd", batch_size=1, lr=0.3, regularization=0.1,
                      n_steps=steps, generator=torch.Generator().manual_seed(5), progress=False,
                      monitor=Monitor(probe=False))
    draws = torch.Generator().manual_seed(5)
    rows = torch.cat([torch.randint(n, (1,), generator=draws) for _ in range(steps)])
    out = averaged_sgd_replicas([start], x[rows][:, None], y[rows][:, None], lr=0.3, regularization=0.1)
    for name in ("a", "w"):
        torch.testing.assert_close(getattr(out.models[0], name), getattr(reference.model, name),
                                   rtol=0, atol=1e-13)
        torch.testing.assert_close(getattr(out.averaged[0], name), getattr(reference.averaged, name),
                                   rtol=0, atol=1e-13)


def test_replicas_with_different_horizons_match_separate_runs():
    nets = [TwoLayer(2, 4, generator=torch.Generator().manual_seed(s), dtype=torch.float64) for s in range(3)]
    g = torch.Generator().manual_seed(9)
    x = torch.randn(30, 3, 2, generator=g, dtype=torch.float64)
    y = torch.randn(30, 3, generator=g, dtype=torch.float64)
    together = averaged_sgd_replicas(nets, x, y, lr=0.2, regularization=[0.0, 0.1, 0.3], n_steps=[10, 30, 20])
    for index, (lam, horizon) in enumerate([(0.0, 10), (0.1, 30), (0.3, 20)]):
        columns = slice(index, index + 1)
        alone = averaged_sgd_replicas([nets[index]], x[:horizon, columns], y[:horizon, columns],
                                      lr=0.2, regularization=lam)
        torch.testing.assert_close(together.averaged[index].w, alone.averaged[0].w)
        torch.testing.assert_close(together.models[index].a, alone.models[0].a)
    with pytest.raises(ValueError, match="n_steps"):
        averaged_sgd_replicas(nets, x, y, lr=0.2, n_steps=31)
