"""Plain gradient descent (one network and batched) against ``train``, and the margin tools of the
implicit-bias check against closed forms."""

from __future__ import annotations

import copy
import math

import pytest
import torch

from measureflow.nets import (
    TwoLayer,
    batched_gradient_descent,
    batched_init,
    empirical_ntk,
    f1_dual_bound,
    f1_max_margin,
    f1_norm_on_data,
    gradient_descent,
    kernel_max_margin,
    normalized_margin,
    set_neurons,
    train,
    train_margin,
)

F64 = torch.float64


def _sphere(n: int, dim: int, seed: int = 0) -> torch.Tensor:
    points = torch.randn(n, dim, generator=torch.Generator().manual_seed(seed), dtype=F64)
    return torch.nn.functional.normalize(points, dim=1)


@pytest.mark.parametrize("loss", ["mse", "logistic"])
def test_gradient_descent_is_full_batch_sgd(loss):
    x = _sphere(12, 3)
    y = torch.sign(x[:, 0]) if loss == "logistic" else torch.sin(3 * x[:, 0])
    net = TwoLayer(3, 40, generator=torch.Generator().manual_seed(1), dtype=F64)
    reference = train(copy.deepcopy(net), x, y, loss=loss, optimizer="sgd", lr=0.7, n_steps=25,
                      progress=False)
    run = gradient_descent(net, x, y, lr=0.7, n_steps=25, loss=loss)
    torch.testing.assert_close(net.parameters_vector(), reference.model.parameters_vector())
    assert run.steps == 25 and run.losses.shape == run.movements.shape == (26,)
    assert float(run.movements[0]) == 0.0 and bool((run.losses[1:] < run.losses[:1]).all())


def test_gradient_descent_stops_at_the_target_and_tracks_the_kernel():
    x = _sphere(10, 3)
    y = x[:, 0]
    net = TwoLayer(3, 200, generator=torch.Generator().manual_seed(2), dtype=F64)
    kernel = empirical_ntk(net, x)
    run = gradient_descent(net, x, y, lr=2.0, n_steps=10_000, stop_loss=1e-4, kernel=kernel, kernel_every=5)
    assert float(run.losses[-1]) <= 1e-4 < float(run.losses[-2])  # the first iterate below the target
    assert run.kernel_steps[0] == 0 and run.kernel_steps[-1] == run.steps
    assert float(run.kernel_distance[0]) == 0.0 and float(run.kernel_distance[-1]) > 0
    with pytest.raises(ValueError, match="x must be"):
        gradient_descent(net, x[:, :2], y, lr=1.0, n_steps=1)
    with pytest.raises(ValueError, match="lr"):
        gradient_descent(net, x, y, lr=0.0, n_steps=1)
    with pytest.raises(ValueError, match="not finite|NaN"):
        gradient_descent(net, x, y.clone().fill_(math.nan), lr=1.0, n_steps=1)


def test_batched_descent_equals_train_on_each_network_even_when_padded():
    x = _sphere(9, 4)
    y = torch.cos(2 * x[:, 1])
    widths = (6, 10)
    generator = torch.Generator().manual_seed(3)
    nets = [TwoLayer(4, m, generator=generator, dtype=F64) for m in widths]
    a = torch.zeros(2, 10, dtype=F64)
    w = torch.zeros(2, 10, 4, dtype=F64)
    for index, net in enumerate(nets):  # width 6 padded with zero neurons to 10
        a[index, : net.width] = net.a.detach()
        w[index, : net.width] = net.w.detach()
    result = batched_gradient_descent(a, w, x, y, scale=torch.tensor([6**-0.5, 10**-0.5]), lr=0.5, n_steps=30,
                                      record_every=10)
    assert result.steps.tolist() == [0, 10, 20, 30]
    assert result.losses.shape == result.gradient_norms.shape == (4, 2)
    for index, net in enumerate(nets):
        trained = train(net, x, y, optimizer="sgd", lr=0.5, n_steps=30, progress=False,
                        monitor=None).model
        torch.testing.assert_close(result.a[index, : net.width], trained.a.detach())
        torch.testing.assert_close(result.w[index, : net.width], trained.w.detach())
        assert bool((result.a[index, net.width:] == 0).all())
        assert bool((result.w[index, net.width:] == 0).all())
        risk = 0.5 * (trained(x) - y).square().mean()
        torch.testing.assert_close(result.losses[-1, index], risk.detach())
    a0, w0 = batched_init(3, 5, 2, generator=torch.Generator().manual_seed(0))
    assert set(a0.unique().tolist()) == {-1.0, 1.0} and w0.shape == (3, 5, 2)
    with pytest.raises(ValueError, match="scale"):
        batched_gradient_descent(a0, w0, x[:, :2], y, scale=-1.0, lr=0.1, n_steps=1)


def test_f1_max_margin_of_two_orthogonal_points():
    # x_1 = e_1 (label +1), x_2 = e_2 (label -1): c = (1/2) delta_{e_1} - (1/2) delta_{e_2} gives margin
    # 1/2 with total mass 1, and no measure of mass 1 does better (the two constraints sum to
    # c_+ relu(u.e_1) - ... <= mass); the dual p = (1/2, 1/2) certifies it exactly on the circle.
    x = torch.eye(2, dtype=F64)
    y = torch.tensor([1.0, -1.0], dtype=F64)
    solution = f1_max_margin(x, y, n_directions=360)
    assert abs(solution.margin - 0.5) < 1e-9
    assert abs(f1_dual_bound(x, y, solution.dual) - 0.5) < 1e-9
    assert abs(float(solution.weights.abs().sum()) - 1) < 1e-9


def test_f1_lp_is_bracketed_by_its_exact_dual_and_grows_with_the_grid():
    generator = torch.Generator().manual_seed(4)
    x = torch.randn(12, 2, generator=generator, dtype=F64)
    y = torch.where(x[:, 0] * x[:, 1] > 0, 1.0, -1.0).to(F64)  # XOR: not linearly separable
    coarse, fine = f1_max_margin(x, y, n_directions=90), f1_max_margin(x, y, n_directions=360)
    upper = f1_dual_bound(x, y, fine.dual)
    assert coarse.margin <= fine.margin + 1e-12 <= upper + 2e-12  # nested grids, weak duality
    # The grid loses at most (pi / K) max ||x_i|| of the continuum value (module docstring).
    assert upper - fine.margin <= math.pi / 360 * float(x.norm(dim=1).max()) + 1e-9
    # The LP's classifier has F1 norm 1 on the data: both bounds of f1_norm_on_data bracket 1.
    values = torch.relu(x @ fine.directions.T) @ fine.weights
    bounds = f1_norm_on_data(values, x, directions=fine.directions)
    assert bounds.lower <= 1 + 1e-7 and bounds.grid <= 1 + 1e-7


def test_kernel_max_margin_of_a_linear_kernel_is_the_svm_margin():
    # Linear kernel of x_1 = (1, 0), x_2 = (0, 2), labels +1, -1: the max-margin direction is
    # h = (x_1 / 1 - ...) -- the SVM without offset maximizes min y_i <u, x_i> over unit u:
    # u = (2, -1) / sqrt(5) gives margin 2 / sqrt(5) on both points.
    x = torch.tensor([[1.0, 0.0], [0.0, 2.0]], dtype=F64)
    result = kernel_max_margin(x @ x.T, torch.tensor([1.0, -1.0]))
    assert abs(result.margin - 2 / math.sqrt(5)) < 1e-9
    torch.testing.assert_close(result.values * torch.tensor([1.0, -1.0], dtype=F64),
                               torch.full((2,), 2 / math.sqrt(5), dtype=F64))
    with pytest.raises(ValueError, match="positive definite"):
        kernel_max_margin(torch.ones(2, 2, dtype=F64), torch.tensor([1.0, -1.0]))


def test_normalized_margin_and_margin_training():
    net = set_neurons(TwoLayer(2, 2, scaling="mean-field", dtype=F64),
                      torch.tensor([[1.0, 1.0, 0.0], [-2.0, 0.0, 1.0]], dtype=F64))
    x = torch.eye(2, dtype=F64)
    margins = normalized_margin(net, x, torch.tensor([1.0, -1.0]))
    # f(e_1) = (1 - 0) / 2, f(e_2) = (0 - 2) / 2: margin 1/2; TV = (1 + 2) / 2; params (2 + 5) / 4.
    assert margins.margin == pytest.approx(0.5) and margins.f1_norm == pytest.approx(1.5)
    assert margins.parameter_norm == pytest.approx(7 / 4) and margins.f1_margin == pytest.approx(1 / 3)
    generator = torch.Generator().manual_seed(5)
    small = TwoLayer(2, 50, scaling="mean-field", generator=generator, dtype=F64)
    with torch.no_grad():  # a small initialization, as in Chizat & Bach
        small.a.mul_(0.01)
        small.w.mul_(0.01)
    run = train_margin(small, x, torch.tensor([1.0, -1.0]), lr=0.2 * 50, n_steps=2000)
    # The F1 max-margin of these two points is 1/2 (test above); GD on the exponential loss
    # approaches it from below, and never exceeds it (f1_margin <= gamma_F1 for every network).
    assert 0.45 < float(run.f1_margin[-1]) <= 0.5 + 1e-9
    assert bool((run.f1_margin[torch.isfinite(run.f1_margin)] <= 0.5 + 1e-9).all())
