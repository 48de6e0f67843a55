"""measureflow.nets: the two-layer network, its activations and losses, the empirical and analytic
NTK, the lazy-limit predictor, the mean-field functional and the training loop."""

from __future__ import annotations

import math

import pytest
import torch
from stats_helpers import assert_within_se
from torch import nn

import measureflow as mf
from measureflow.nets import (
    ACTIVATIONS,
    LOSSES,
    OPTIMIZERS,
    MeanFieldRisk,
    Monitor,
    SmoothReLU,
    TwoLayer,
    analytic_ntk,
    empirical_ntk,
    neurons_of,
    ntk_regression,
    train,
)

F64 = torch.float64


def _generator(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _sphere(n: int, d: int, seed: int = 1) -> torch.Tensor:
    return nn.functional.normalize(torch.randn(n, d, generator=_generator(seed), dtype=F64), dim=1)


class _Wrapped(nn.Module):
    """A module that is not a TwoLayer, so empirical_ntk takes the torch.func path."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x):
        return self.inner(x)


# ---------------------------------------------------------------------------------------------
# The network


def test_initialization_follows_the_text():
    net = TwoLayer(3, 40_000, generator=_generator(), dtype=F64)
    assert net.a.shape == (40_000,) and net.w.shape == (40_000, 3)
    assert set(net.a.unique().tolist()) == {-1.0, 1.0}
    # a_j = +-1 with probability 1/2: the mean has SE 1/sqrt(M); w_j ~ N(0, I): mean SE
    # 1/sqrt(M), variance SE sqrt(2/M) per coordinate.
    m = net.width
    assert_within_se(net.a.mean(), 0.0, 1 / math.sqrt(m), "mean of a")
    assert_within_se(net.w.mean(0), torch.zeros(3), torch.full((3,), 1 / math.sqrt(m)), "mean of w")
    assert_within_se(net.w.var(0), torch.ones(3), torch.full((3,), math.sqrt(2 / m)), "variance of w")
    assert net.scale == pytest.approx(1 / math.sqrt(m))
    assert TwoLayer(3, 10, scaling="mean-field").scale == pytest.approx(0.1)


def test_forward_is_the_formula_and_batched():
    net = TwoLayer(2, 7, activation="tanh", scaling="mean-field", generator=_generator(), dtype=F64)
    x = torch.randn(5, 2, dtype=F64, generator=_generator(3))
    expected = torch.stack([(net.a * torch.tanh(net.w @ point)).sum() / 7 for point in x])
    torch.testing.assert_close(net(x), expected)
    assert net(x[:1]).shape == (1,)


def test_same_generator_same_network_and_frozen_layers():
    first = TwoLayer(2, 5, generator=_generator(4))
    second = TwoLayer(2, 5, generator=_generator(4))
    torch.testing.assert_close(first.w, second.w)
    frozen = TwoLayer(2, 5, train=("w",))
    assert not frozen.a.requires_grad and frozen.w.requires_grad
    assert [name for name, p in frozen.named_parameters() if p.requires_grad] == ["w"]
    assert frozen.parameters_vector().shape == (10,)


@pytest.mark.parametrize("kwargs, match", [
    ({"width": 0}, "width"),
    ({"scaling": "lazy"}, "scaling"),
    ({"activation": "gelu"}, "activation"),
    ({"train": ("a", "b")}, "train"),
])
def test_bad_network_settings(kwargs, match):
    settings = {"dim": 2, "width": 4, **kwargs}
    with pytest.raises(ValueError, match=match):
        TwoLayer(**settings)


def test_wrong_input_shape_is_refused():
    with pytest.raises(ValueError, match=r"\(n, 3\)"):
        TwoLayer(3, 4)(torch.zeros(5, 2))


def test_config_round_trip():
    net = TwoLayer(2, 6, activation=SmoothReLU(7.0), scaling="mean-field", train=("a",))
    copy = TwoLayer.from_config(net.config())
    assert copy.config() == net.config()
    assert copy.activation == SmoothReLU(7.0)


@pytest.mark.parametrize("name", list(ACTIVATIONS))
def test_activation_derivatives_match_autograd(name):
    act = ACTIVATIONS[name]
    z = torch.linspace(-3, 3, 101, dtype=F64).requires_grad_()
    (gradient,) = torch.autograd.grad(act(z).sum(), z)
    # the ReLU's kink at 0 is not on this grid (spacing 0.06, symmetric, 0 is the 51st point);
    # torch's relu gradient at 0 is 0, as is ours
    torch.testing.assert_close(act.derivative(z.detach()), gradient)
    value, slope = act.both(z.detach())
    torch.testing.assert_close(value, act(z.detach()))
    torch.testing.assert_close(slope, gradient)


@pytest.mark.parametrize("name", list(LOSSES))
def test_loss_derivatives_match_autograd(name):
    loss = LOSSES[name]
    f = torch.linspace(-2, 2, 9, dtype=F64).requires_grad_()
    y = torch.tensor([1.0, -1.0] * 4 + [1.0], dtype=F64)
    (gradient,) = torch.autograd.grad(loss.value(f, y).sum(), f)
    torch.testing.assert_close(loss.derivative(f.detach(), y), gradient)


# ---------------------------------------------------------------------------------------------
# Empirical NTK


@pytest.mark.parametrize("activation", ["relu", "tanh", "erf", "smooth-relu"])
@pytest.mark.parametrize("layers", [("a", "w"), ("a",), ("w",)])
def test_closed_form_ntk_equals_the_torch_func_path(activation, layers):
    net = TwoLayer(3, 30, activation=activation, train=layers, generator=_generator(), dtype=F64)
    x1, x2 = torch.randn(7, 3, dtype=F64, generator=_generator(5)), torch.randn(4, 3, dtype=F64)
    torch.testing.assert_close(empirical_ntk(net, x1, x2), empirical_ntk(_Wrapped(net), x1, x2))
    torch.testing.assert_close(empirical_ntk(net, x1), empirical_ntk(_Wrapped(net), x1, block_size=3))


def test_closed_form_ntk_blocks_over_neurons():
    net = TwoLayer(3, 50, generator=_generator(), dtype=F64)
    x = torch.randn(6, 3, dtype=F64)
    torch.testing.assert_close(empirical_ntk(net, x, block_size=7), empirical_ntk(net, x))


def test_functorch_ntk_of_a_generic_mlp_is_the_jacobian_gram():
    torch.manual_seed(0)  # the test's own module initialization; the library never seeds
    mlp = nn.Sequential(nn.Linear(2, 8), nn.Tanh(), nn.Linear(8, 1)).double()
    x = torch.randn(5, 2, dtype=F64)
    rows = []
    for point in x:
        grads = torch.autograd.grad(mlp(point[None]).sum(), list(mlp.parameters()))
        rows.append(torch.cat([g.reshape(-1) for g in grads]))
    jacobian = torch.stack(rows)
    torch.testing.assert_close(empirical_ntk(mlp, x), jacobian @ jacobian.T)


def test_vector_output_models_are_refused():
    with pytest.raises(ValueError, match="scalar-output"):
        empirical_ntk(nn.Linear(3, 2), torch.randn(4, 3))


# ---------------------------------------------------------------------------------------------
# Analytic NTK


@pytest.mark.parametrize("activation", ["relu", "erf", "tanh", "sigmoid", "smooth-relu"])
def test_analytic_ntk_is_the_mean_of_the_empirical_terms(activation):
    """K_M is the average of M i.i.d. terms with mean K_inf: compare every entry within 5 SE,
    the SE from the terms' own sample standard deviation over the M neurons."""
    m = 100_000
    net = TwoLayer(3, m, activation=activation, generator=_generator(7), dtype=F64)
    x = 1.3 * _sphere(5, 3)
    value, slope = net.features(x)
    outer = (x @ x.T)[:, :, None] * slope[:, None, :] * slope[None, :, :]
    terms = value[:, None, :] * value[None, :, :] + outer
    estimate = terms.mean(-1)
    se = terms.std(-1) / math.sqrt(m)
    torch.testing.assert_close(estimate, empirical_ntk(net, x))
    assert_within_se(estimate, analytic_ntk(x, activation=activation), se, f"{activation} NTK")


def test_analytic_ntk_layers_add_and_relu_closed_form():
    x = _sphere(6, 4)
    both = analytic_ntk(x)
    torch.testing.assert_close(analytic_ntk(x, train=("a",)) + analytic_ntk(x, train=("w",)), both)
    # on the unit sphere the diagonal is E[relu(u)^2] + E[1{u>0}] = 1/2 + 1/2
    torch.testing.assert_close(torch.diagonal(both), torch.ones(6, dtype=F64))


def test_erf_closed_form_equals_quadrature():
    from measureflow.nets.ntk import _gauss_hermite

    # the default node count 48 r^2 (r the largest norm) keeps the error near 1e-9 up to r = 2
    for radius in (0.5, 1.0, 2.0):
        x = radius * _sphere(5, 3, seed=2) * torch.linspace(0.5, 1.0, 5, dtype=F64)[:, None]
        norm = x.norm(dim=1)[:, None]
        nodes = max(48, math.ceil(48 * radius**2))
        value, slope = _gauss_hermite(mf.nets.Erf(), x, x, norm, norm.T, x @ x.T, nodes, ("a", "w"))
        torch.testing.assert_close(value + (x @ x.T) * slope, analytic_ntk(x, activation="erf"),
                                   rtol=0, atol=1e-7)


def test_analytic_ntk_between_two_sets():
    x1, x2 = _sphere(4, 3), _sphere(3, 3, seed=9)
    full = analytic_ntk(torch.cat([x1, x2]))
    torch.testing.assert_close(analytic_ntk(x1, x2), full[:4, 4:])
    torch.testing.assert_close(analytic_ntk(x1, x2, activation="tanh"),
                               analytic_ntk(torch.cat([x1, x2]), activation="tanh")[:4, 4:])


# ---------------------------------------------------------------------------------------------
# The lazy-limit predictor


def _kernel_problem():
    x = _sphere(8, 3)
    kernel = analytic_ntk(x)
    y = torch.randn(8, dtype=F64, generator=_generator(3))
    return x, kernel, y


def test_ntk_regression_follows_the_matrix_exponential():
    _, kernel, y = _kernel_problem()
    f0 = 0.1 * torch.randn(8, dtype=F64, generator=_generator(4))
    for t in (0.0, 0.3, 5.0):
        expected = f0 + (torch.eye(8, dtype=F64) - torch.linalg.matrix_exp(-t * kernel)) @ (y - f0)
        torch.testing.assert_close(ntk_regression(kernel, y, t=t, f0_train=f0).train, expected)
    converged = ntk_regression(kernel, y, f0_train=f0)
    torch.testing.assert_close(converged.train, y)
    torch.testing.assert_close(converged.coefficients, torch.linalg.solve(kernel, y - f0))


def test_ntk_regression_ridge_and_test_extension():
    x, kernel, y = _kernel_problem()
    x_test = _sphere(5, 3, seed=11)
    cross = analytic_ntk(x_test, x)
    prediction = ntk_regression(kernel, y, cross, ridge=0.5)
    coefficients = torch.linalg.solve(kernel + 0.5 * torch.eye(8, dtype=F64), y)
    torch.testing.assert_close(prediction.test, cross @ coefficients)
    # the training rows as test points reproduce the training predictions
    on_train = ntk_regression(kernel, y, kernel, t=2.0)
    torch.testing.assert_close(on_train.test, on_train.train)
    # with ridge, the time-t solution tends to the ridge solution as t grows
    late = ntk_regression(kernel, y, cross, t=1e4, ridge=0.5)
    torch.testing.assert_close(late.test, prediction.test)


@pytest.mark.parametrize("kwargs, match", [
    ({"K_train": torch.ones(3, 2)}, "square"),
    ({"y": torch.ones(4)}, "y must have shape"),
    ({"t": -1.0}, "t must be"),
    ({"ridge": float("nan")}, "ridge"),
    ({"K_test": torch.ones(2, 4)}, "K_test"),
])
def test_ntk_regression_validates(kwargs, match):
    settings = {"K_train": torch.eye(3), "y": torch.ones(3), **kwargs}
    with pytest.raises(ValueError, match=match):
        ntk_regression(**settings)


# ---------------------------------------------------------------------------------------------
# Mean field


@pytest.mark.parametrize("loss", list(LOSSES))
def test_mean_field_velocity_is_minus_m_times_the_gradient_of_the_risk(loss):
    """value(theta) is R at the empirical measure, so d value / d theta_j = -(1/M) v(theta_j)."""
    x = torch.randn(15, 2, dtype=F64, generator=_generator(1))
    y = torch.sign(torch.randn(15, dtype=F64, generator=_generator(2)))
    risk = MeanFieldRisk(x, y, activation="tanh", loss=loss)
    theta = torch.randn(12, 3, dtype=F64, generator=_generator(3)).requires_grad_()
    (gradient,) = torch.autograd.grad(risk.value(theta), theta)
    torch.testing.assert_close(risk.velocity(theta.detach()), -12 * gradient)


def test_mean_field_flow_is_gradient_descent_with_the_step_scaled_by_m():
    x = torch.randn(30, 2, dtype=F64, generator=_generator(1))
    y = torch.randn(30, dtype=F64, generator=_generator(2))
    net = TwoLayer(2, 40, scaling="mean-field", generator=_generator(3), dtype=F64)
    risk = MeanFieldRisk(x, y)
    flow = mf.flows.run(risk, neurons_of(net), step_size=0.2, n_steps=60, progress=False)
    result = train(net, x, y, lr=0.2 * 40, n_steps=60, monitor=Monitor(probe=False), progress=False,
                   generator=_generator())
    torch.testing.assert_close(flow.particles, neurons_of(net))
    torch.testing.assert_close(flow.values[-1], result.trace["train_loss"][-1])
    assert float(flow.values[-1]) < float(flow.values[0])


def test_mean_field_risk_validates():
    with pytest.raises(ValueError, match="entries"):
        MeanFieldRisk(torch.zeros(4, 2), torch.zeros(3))
    with pytest.raises(ValueError, match="neurons"):
        MeanFieldRisk(torch.zeros(4, 2), torch.zeros(4)).velocity(torch.zeros(5, 2))


# ---------------------------------------------------------------------------------------------
# Training


def _regression(n: int = 12):
    x = _sphere(n, 2, seed=5)
    return x, x[:, 0] * x[:, 1]


@pytest.mark.parametrize("optimizer", OPTIMIZERS)
def test_every_optimizer_lowers_the_training_risk(optimizer):
    x, y = _regression()
    net = TwoLayer(2, 100, generator=_generator(), dtype=F64)
    lr = {"adam": 0.02, "rmsprop": 0.01, "adagrad": 0.1}.get(optimizer, 0.5)
    # Langevin at beta = 1e6: noise sqrt(2 lr / beta) = 1e-3 per step, well below the descent
    temperature = {"beta": 1e6} if optimizer == "langevin" else {}
    result = train(net, x, y, optimizer=optimizer, lr=lr, n_steps=100, progress=False, generator=_generator(),
                   **temperature)
    losses = result.trace["train_loss"]
    assert float(losses[-1]) < 0.5 * float(losses[0])
    assert result.trace["steps"].tolist() == list(range(0, 101, 10))
    assert (result.averaged is not None) == (optimizer == "averaged-sgd")


def test_averaged_sgd_returns_the_mean_of_the_iterates_with_regularization_toward_the_start():
    x, y = _regression()
    net = TwoLayer(2, 20, generator=_generator(), dtype=F64)
    start = [p.detach().clone() for p in net.parameters()]
    # the same run by hand: one random row per step (the loop's draws), theta_0 .. theta_{T-1}
    manual = TwoLayer(2, 20, generator=_generator(), dtype=F64)
    generator = _generator(9)
    result = train(net, x, y, optimizer="averaged-sgd", lr=0.3, n_steps=25, batch_size=1, regularization=0.1,
                   monitor=Monitor(probe=False), progress=False, generator=generator)
    replay = _generator(9)
    data = torch.cat([x, y[:, None]], 1)
    total = [torch.zeros_like(p) for p in manual.parameters()]
    for _ in range(25):
        row = data[torch.randint(12, (1,), generator=replay)]
        for acc, p in zip(total, manual.parameters(), strict=True):
            acc += p.detach()
        loss = 0.5 * (manual(row[:, :2]) - row[:, 2]).square().mean()
        grads = torch.autograd.grad(loss, list(manual.parameters()))
        with torch.no_grad():
            for p, g, p0 in zip(manual.parameters(), grads, start, strict=True):
                p -= 0.3 * (g + 0.1 * (p - p0))
    torch.testing.assert_close(net.w, manual.w)
    torch.testing.assert_close(result.averaged.w, total[1] / 25)
    torch.testing.assert_close(result.averaged.a, total[0] / 25)


def test_monitor_records_movement_drift_test_loss_and_projections():
    x, y = _regression(16)
    x_test, y_test = _regression(10)
    net = TwoLayer(2, 200, generator=_generator(), dtype=F64)
    kernel = empirical_ntk(net, x)
    _, vectors = torch.linalg.eigh(kernel)
    monitor = Monitor(x_test=x_test, y_test=y_test, probe=x[:8], directions=vectors[:, -3:], every=5)
    result = train(net, x, y, lr=0.5, n_steps=20, monitor=monitor, progress=False, generator=_generator())
    trace = result.trace
    assert trace["steps"].tolist() == [0, 5, 10, 15, 20]
    assert trace["movement"][0] == 0 and trace["ntk_drift"][0] == 0
    assert bool((trace["movement"][1:] > 0).all()) and bool((trace["ntk_drift"][1:] > 0).all())
    assert trace["projections"].shape == (5, 3)
    torch.testing.assert_close(trace["projections"][-1], vectors[:, -3:].T @ (net(x) - y).detach())
    test_risk = 0.5 * (net(x_test) - y_test).square().mean()
    torch.testing.assert_close(trace["test_loss"][-1], test_risk.detach())
    # the top eigen-directions of K_0 are learned first: their residual shrinks fastest
    assert float(trace["projections"][-1].abs()[-1]) < float(trace["projections"][0].abs()[-1])


def test_resume_equals_an_uninterrupted_run(tmp_path):
    x, y = _regression()

    def run(n_steps, folder, resume=False):
        net = TwoLayer(2, 30, generator=_generator(), dtype=F64)
        return train(net, x, y, optimizer="averaged-sgd", lr=0.2, n_steps=n_steps, batch_size=4,
                     out_dir=folder, resume=resume, progress=False, generator=_generator(1))

    whole = run(20, tmp_path / "whole")
    run(10, tmp_path / "split")
    resumed = run(20, tmp_path / "split", resume=True)
    torch.testing.assert_close(resumed.model.w, whole.model.w, rtol=0, atol=0)
    torch.testing.assert_close(resumed.averaged.w, whole.averaged.w, rtol=0, atol=0)
    for key in ("train_loss", "movement", "ntk_drift"):
        torch.testing.assert_close(resumed.trace[key], whole.trace[key], rtol=0, atol=0)


@pytest.mark.parametrize("kwargs, match", [
    ({"optimizer": "lbfgs"}, "optimizer"),
    ({"loss": "hinge"}, "loss"),
    ({"lr": 0.0}, "lr"),
    ({"momentum": 1.0}, "momentum"),
    ({"loss": "logistic"}, r"\{-1, \+1\}"),
    ({"monitor": Monitor(every=0)}, "every"),
])
def test_training_settings_are_validated(kwargs, match):
    x, y = _regression()
    with pytest.raises(ValueError, match=match):
        train(TwoLayer(2, 5), x, y + 0.5, progress=False, **kwargs)


def test_bad_data_is_refused():
    net = TwoLayer(2, 5)
    with pytest.raises(ValueError, match="NaN"):
        train(net, torch.tensor([[float("nan"), 0.0]]), torch.zeros(1), progress=False)
    with pytest.raises(ValueError, match="columns"):
        train(net, torch.zeros(3, 3), torch.zeros(3), progress=False)
    with pytest.raises(ValueError, match="entries"):
        train(net, torch.zeros(3, 2), torch.zeros(2), progress=False)
