"""measureflow.nets.mean_field_langevin: the free energy of mean-field Langevin dynamics as a flows
Sum (risk + weight decay + entropy by noise), its parts, and replicated systems."""

from __future__ import annotations

import math

import pytest
import torch
from stats_helpers import assert_within_se

import measureflow as mf
from measureflow.flows import Entropy, Interaction, Potential, Sum
from measureflow.metrics import knn_entropy
from measureflow.nets import MeanFieldRisk, TwoLayer, neurons_of
from measureflow.nets.mean_field_langevin import (
    FreeEnergy,
    ReplicatedMeanFieldRisk,
    WeightDecay,
    free_energy,
    mean_field_langevin,
    replica_free_energies,
)

F64 = torch.float64


def _generator(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _data(n: int = 12, d: int = 2, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.randn(n, d, generator=_generator(seed), dtype=F64)
    return x, torch.sin(2 * x[:, 0])


def _neurons(m: int, d: int = 2, seed: int = 3) -> torch.Tensor:
    return torch.randn(m, d + 1, generator=_generator(seed), dtype=F64)


def test_import_star():
    namespace: dict = {}
    exec("from measureflow.nets.mean_field_langevin import *", namespace)
    assert {"mean_field_langevin", "free_energy", "replica_free_energies", "FreeEnergy",
            "ReplicatedMeanFieldRisk", "WeightDecay"} <= set(namespace)


def test_sum_is_risk_plus_weight_decay_plus_entropy():
    x, y = _data()
    F = mean_field_langevin(x, y, weight_decay=0.3, beta=4.0)
    risk, decay, entropy = F.terms
    assert isinstance(F, Sum) and isinstance(risk, MeanFieldRisk) and risk.activation.name == "tanh"
    assert isinstance(decay, Potential) and isinstance(entropy, Entropy) and entropy.method == "noise"
    assert F.temperature == 0.25
    assert "weight_decay=0.3" in F.label
    theta = _neurons(40)
    # velocity: the risk's, minus lambda_0 theta, plus 0 (the entropy acts by noise).
    torch.testing.assert_close(F.velocity(theta), risk.velocity(theta) - 0.3 * theta)
    torch.testing.assert_close(entropy.velocity(theta), torch.zeros_like(theta))
    expected = risk.value(theta) + 0.15 * theta.square().sum(1).mean() - knn_entropy(theta) / 4.0
    torch.testing.assert_close(F.value(theta), expected)


def test_deterministic_part_is_a_gradient_of_the_particle_value():
    """Risk and weight decay are functionals of the empirical measure: d value / d theta_j = -v_j / M."""
    x, y = _data()
    F = mean_field_langevin(x, y, weight_decay=0.7, beta=math.inf, activation="sigmoid", loss="logistic")
    theta = _neurons(25).requires_grad_()
    (gradient,) = torch.autograd.grad(F.value(theta), theta)
    torch.testing.assert_close(F.velocity(theta.detach()), -25 * gradient)


def test_beta_inf_without_decay_is_the_mean_field_flow():
    x, y = _data()
    F = mean_field_langevin(x, y, activation="relu", weight_decay=0.0, beta=math.inf)
    assert len(F.terms) == 1 and F.temperature == 0.0
    theta = _neurons(30)
    flow = mf.flows.run(F, theta, step_size=0.1, n_steps=40, generator=_generator(5), progress=False)
    plain = mf.flows.run(MeanFieldRisk(x, y), theta, step_size=0.1, n_steps=40, progress=False)
    torch.testing.assert_close(flow.particles, plain.particles, rtol=0, atol=0)
    torch.testing.assert_close(flow.values, plain.values, rtol=0, atol=0)


def _noisy_gradient_descent(net: TwoLayer, x, y, *, lr: float, weight_decay: float, beta: float,
                            n_steps: int, generator: torch.Generator | None) -> torch.Tensor:
    """Gradient Langevin dynamics on the network's parameters Theta = (a, w), by autograd:
    Theta <- Theta - lr grad L + sqrt(2 lr / (beta M)) xi,
    L = (1/2n) |f - y|^2 + (lambda_0 / 2M) |Theta|^2."""
    width = net.width
    for _ in range(n_steps):
        loss = 0.5 * (net(x) - y).square().mean()
        loss = loss + weight_decay / (2 * width) * (net.a.square().sum() + net.w.square().sum())
        grad_a, grad_w = torch.autograd.grad(loss, (net.a, net.w))
        with torch.no_grad():
            step = torch.cat([grad_a[:, None], grad_w], 1)
            if generator is not None:
                noise = torch.randn(step.shape, generator=generator, dtype=step.dtype)
                step = step - math.sqrt(2 / (lr * beta * width)) * noise
            net.a.sub_(lr * step[:, 0])
            net.w.sub_(lr * step[:, 1:])
    return neurons_of(net)


@pytest.mark.parametrize("beta", [math.inf, 3.0])
def test_flow_is_gradient_langevin_on_the_parameters_with_step_h_m(beta):
    """Step h of the flow = noisy GD with lr = h M on R + (lambda_0 / 2M) |Theta|^2 at inverse
    temperature beta M (the noise sqrt(2 h / beta) = sqrt(2 lr / (beta M))), the same draws."""
    x, y = _data(n=20)
    width, h = 16, 0.05
    net = TwoLayer(2, width, activation="tanh", scaling="mean-field", generator=_generator(2), dtype=F64)
    F = mean_field_langevin(x, y, weight_decay=0.4, beta=beta)
    flow = mf.flows.run(F, neurons_of(net), step_size=h, n_steps=30, generator=_generator(7), progress=False)
    manual = _noisy_gradient_descent(net, x, y, lr=h * width, weight_decay=0.4, beta=beta, n_steps=30,
                                     generator=None if math.isinf(beta) else _generator(7))
    torch.testing.assert_close(flow.particles, manual)


def test_stationary_law_without_data_is_the_gaussian_of_the_weight_decay():
    """With the risk switched off (y = 0 and inputs of size 1e-4, so its velocity is < 1e-7) each
    coordinate is the Euler-Maruyama OU chain theta <- (1 - lambda h) theta + sqrt(2h/beta) xi,
    whose stationary variance is 1 / (beta lambda (1 - lambda h / 2)). After t = 30 (e^{-2 lambda t}
    = e^{-60}) from 0 the 3 x 2000 coordinates are independent draws; the SE of their sample variance
    is var sqrt(2 / (N - 1)) (Gaussian fourth moment)."""
    lam, beta, h = 1.0, 4.0, 0.05
    x = 1e-4 * torch.randn(10, 2, generator=_generator(1), dtype=F64)
    F = mean_field_langevin(x, torch.zeros(10, dtype=F64), weight_decay=lam, beta=beta)
    flow = mf.flows.run(F, torch.zeros(2000, 3, dtype=F64), step_size=h, n_steps=600,
                        generator=_generator(11), record_values=False, progress=False)
    draws = flow.particles.flatten()
    truth = 1 / (beta * lam * (1 - lam * h / 2))
    assert_within_se(draws.var(), truth, truth * math.sqrt(2 / (draws.numel() - 1)), "stationary variance")
    assert_within_se(draws.mean(), 0.0, math.sqrt(truth / draws.numel()), "stationary mean")


def test_free_energy_parts_add_up():
    x, y = _data()
    F = mean_field_langevin(x, y, weight_decay=0.2, beta=10.0)
    theta = _neurons(300)
    parts = free_energy(F, theta)
    assert isinstance(parts, FreeEnergy)
    assert parts.risk == float(F.terms[0].value(theta))
    assert parts.penalty == pytest.approx(0.1 * float(theta.square().sum(1).mean()), rel=1e-12)
    assert parts.entropy == float(knn_entropy(theta))
    assert parts.entropy_term == -parts.entropy / 10.0
    assert parts.value == parts.risk + parts.penalty + parts.entropy_term
    assert parts.value == pytest.approx(float(F.value(theta)), rel=1e-12, abs=1e-12)
    assert parts.to_dict()["free_energy"] == parts.value
    # A lone risk, and a Sum without entropy (beta = inf).
    assert free_energy(F.terms[0], theta).value == parts.risk
    deterministic = free_energy(mean_field_langevin(x, y, weight_decay=0.2, beta=math.inf), theta)
    assert deterministic.entropy is None and deterministic.entropy_term == 0.0
    assert deterministic.value == pytest.approx(parts.risk + parts.penalty, rel=1e-12)
    assert deterministic.to_dict()["beta"] is None


def test_weight_decay_potential():
    decay = WeightDecay(0.5)
    theta = _neurons(5)
    torch.testing.assert_close(decay(theta), 0.25 * theta.square().sum(1))
    torch.testing.assert_close(decay.grad(theta), 0.5 * theta)
    assert Potential(decay, grad=decay.grad).label == "Potential(weight_decay=0.5)"


def test_replicas_are_independent_systems():
    x, y = _data()
    risk = ReplicatedMeanFieldRisk(x, y, n_replicas=3, activation="tanh")
    theta = _neurons(3 * 20)
    blocks = theta.reshape(3, 20, 3)
    velocity = risk.velocity(theta).reshape(3, 20, 3)
    for index in range(3):
        torch.testing.assert_close(velocity[index], risk.single.velocity(blocks[index]))
    torch.testing.assert_close(risk.replica_risks(theta), torch.stack([risk.single.value(b) for b in blocks]))
    torch.testing.assert_close(risk.predict(theta, x)[1], risk.single.predict(blocks[1], x))
    # The flows identity d value / d theta_i = -(1 / (R M)) velocity_i.
    theta.requires_grad_()
    (gradient,) = torch.autograd.grad(risk.value(theta), theta)
    torch.testing.assert_close(risk.velocity(theta.detach()), -60 * gradient)


def test_replicated_deterministic_flow_equals_separate_flows():
    x, y = _data()
    theta = _neurons(2 * 15)
    together = mean_field_langevin(x, y, weight_decay=0.3, beta=math.inf, n_replicas=2)
    single = mean_field_langevin(x, y, weight_decay=0.3, beta=math.inf)
    flow = mf.flows.run(together, theta, step_size=0.1, n_steps=25, progress=False)
    for index in range(2):
        alone = mf.flows.run(single, theta[15 * index:15 * (index + 1)], step_size=0.1, n_steps=25,
                             progress=False)
        torch.testing.assert_close(flow.particles[15 * index:15 * (index + 1)], alone.particles)


def test_replica_free_energies():
    x, y = _data()
    together = mean_field_langevin(x, y, weight_decay=0.3, beta=2.0, n_replicas=4)
    single = mean_field_langevin(x, y, weight_decay=0.3, beta=2.0)
    theta = _neurons(4 * 50)
    parts = replica_free_energies(together, theta)
    assert len(parts) == 4
    for index, part in enumerate(parts):
        assert part == free_energy(single, theta[50 * index:50 * (index + 1)])
    assert replica_free_energies(single, theta[:50]) == (free_energy(single, theta[:50]),)


@pytest.mark.parametrize(("kwargs", "error", "match"), [
    ({"weight_decay": -0.1}, ValueError, "weight_decay"),
    ({"weight_decay": float("nan")}, ValueError, "weight_decay"),
    ({"weight_decay": math.inf}, ValueError, "weight_decay"),
    ({"weight_decay": "big"}, TypeError, "weight_decay"),
    ({"beta": 0.0}, ValueError, "beta"),
    ({"beta": -1.0}, ValueError, "beta"),
    ({"beta": float("nan")}, ValueError, "beta"),
    ({"beta": True}, TypeError, "beta"),
    ({"beta": "hot"}, TypeError, "beta"),
    ({"n_replicas": 0}, ValueError, "n_replicas"),
    ({"n_replicas": 2.0}, ValueError, "n_replicas"),
    ({"n_replicas": True}, ValueError, "n_replicas"),
    ({"activation": "cube"}, ValueError, "activation"),
])
def test_mean_field_langevin_validates(kwargs, error, match):
    x, y = _data()
    settings = {"weight_decay": 0.1, "beta": 1.0, **kwargs}
    with pytest.raises(error, match=match):
        mean_field_langevin(x, y, **settings)


def test_data_and_particles_are_validated():
    x, y = _data()
    with pytest.raises(ValueError, match="entries"):
        mean_field_langevin(x, y[:-1], weight_decay=0.1, beta=1.0)
    with pytest.raises(ValueError, match="NaN"):
        mean_field_langevin(x, torch.full_like(y, float("nan")), weight_decay=0.1, beta=1.0)
    with pytest.raises(ValueError, match="replicas"):
        ReplicatedMeanFieldRisk(x, y, n_replicas=3).velocity(_neurons(10))
    with pytest.raises(ValueError, match="replicas"):
        ReplicatedMeanFieldRisk(x, y, n_replicas=2).value(torch.zeros(10, 4, dtype=F64))


def test_free_energy_validates():
    x, y = _data()
    theta = _neurons(20)
    risk = MeanFieldRisk(x, y)
    with pytest.raises(ValueError, match="exactly one MeanFieldRisk"):
        free_energy(Potential(WeightDecay(1.0)) + Entropy(1.0), theta)
    with pytest.raises(ValueError, match="exactly one MeanFieldRisk"):
        free_energy(risk + risk, theta)
    with pytest.raises(ValueError, match="method='noise'"):
        free_energy(risk + Entropy(1.0, method="blob"), theta)
    with pytest.raises(ValueError, match="method='noise'"):
        free_energy(risk + Entropy(1.0) + Entropy(2.0), theta)
    with pytest.raises(ValueError, match="Interaction"):
        free_energy(risk + Interaction.quadratic(), theta)
    with pytest.raises(ValueError, match="replica_free_energies"):
        free_energy(mean_field_langevin(x, y, weight_decay=0.1, beta=1.0, n_replicas=2), _neurons(40))
    with pytest.raises(TypeError, match="Functional"):
        free_energy("risk", theta)
    with pytest.raises(ValueError, match="NaN"):
        free_energy(risk, torch.full((5, 3), float("nan")))
