"""Networks for generative models: shapes, batches of one, time conditioning, gradients, smoothness."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from measureflow.generative.nets import EnergyMLP, MLPScore, SinusoidalEmbedding, UNet8


def seeded(factory, seed: int = 0):
    """Build a network under a forked, seeded global RNG (the caller's RNG is left untouched)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return factory()


def randomize_output(net: nn.Module, layer: nn.Module, seed: int = 1) -> nn.Module:
    """Give the zero-initialized output layer random weights, as after some training."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in layer.parameters():
            parameter.copy_(0.1 * torch.randn(parameter.shape, generator=generator, dtype=parameter.dtype))
    return net


def test_sinusoidal_embedding_matches_its_formula():
    embedding = SinusoidalEmbedding(8, max_period=100.0)
    t = torch.tensor([0.0, 0.3, 7.0, 250.0], dtype=torch.float64)
    frequencies = torch.tensor([100.0 ** (-j / 4) for j in range(4)], dtype=torch.float64)
    expected = torch.cat([torch.sin(t[:, None] * frequencies), torch.cos(t[:, None] * frequencies)], dim=1)
    torch.testing.assert_close(embedding(t), expected)
    assert embedding(torch.tensor([1.0])).shape == (1, 8)
    assert embedding(t.float()).dtype == torch.float32
    assert embedding.state_dict() == {}  # the frequencies are a constant, not state
    with pytest.raises(ValueError, match="even"):
        SinusoidalEmbedding(5)
    with pytest.raises(ValueError, match=r"shape \(n,\)"):
        embedding(torch.zeros(3, 1))


def test_mlp_score_shapes_zero_start_and_batch_independence():
    net = seeded(lambda: MLPScore(3, hidden=32, depth=3, time_dim=16))
    x = torch.randn(7, 3, generator=torch.Generator().manual_seed(0))
    t = torch.rand(7, generator=torch.Generator().manual_seed(1))
    # The output layer starts at zero: eps = 0 for every input.
    assert torch.equal(net(x, t), torch.zeros(7, 3))
    randomize_output(net, net.output)
    out = net(x, t)
    assert out.shape == (7, 3)
    assert net(x[:1], t[:1]).shape == (1, 3)
    # Each row depends on its own sample only (no batch statistics).
    torch.testing.assert_close(net(x[2:3], t[2:3]), out[2:3])
    # A 0-dim time is broadcast to the batch.
    torch.testing.assert_close(net(x, t[0]), net(x, t[0].expand(7)))
    assert net.double()(x.double(), t.double()).dtype == torch.float64


def test_mlp_score_is_conditioned_on_time():
    net = seeded(lambda: MLPScore(2, hidden=32, depth=2))
    randomize_output(net, net.output)
    x = torch.randn(16, 2, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        early, late = net(x, torch.full((16,), 0.1)), net(x, torch.full((16,), 0.9))
    # Different times must give clearly different outputs (relative change well above rounding).
    assert float((early - late).norm() / early.norm()) > 1e-2
    # The shifts reach every hidden layer: each layer's time projection receives a gradient.
    loss = net(x, torch.rand(16, generator=torch.Generator().manual_seed(2))).square().sum()
    loss.backward()
    assert float(net.shifts.weight.grad.abs().sum()) > 0
    for layer in net.layers:
        assert float(layer.weight.grad.abs().sum()) > 0


def test_mlp_score_is_deterministic_under_a_seeded_construction():
    first, again, other = (seeded(lambda: MLPScore(2, hidden=16, depth=2), seed) for seed in (5, 5, 6))
    for a, b in zip(first.state_dict().values(), again.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    assert not torch.equal(first.input.weight, other.input.weight)


def test_mlp_score_rejects_bad_shapes_and_options():
    net = MLPScore(2, hidden=8, depth=1, time_dim=4)
    with pytest.raises(ValueError, match=r"x must have shape \(n, 2\)"):
        net(torch.zeros(3, 3), torch.zeros(3))
    with pytest.raises(ValueError, match=r"x must have shape \(n, 2\)"):
        net(torch.zeros(2), torch.zeros(2))
    with pytest.raises(ValueError, match=r"t must have shape \(3,\)"):
        net(torch.zeros(3, 2), torch.zeros(2))
    with pytest.raises(ValueError, match=r"t must have shape \(3,\)"):
        net(torch.zeros(3, 2), torch.zeros(3, 1))
    bad_options = ({"dim": 0}, {"dim": 2, "hidden": 0}, {"dim": 2, "depth": 1.5},
                   {"dim": 2, "time_scale": -1.0})
    for options in bad_options:
        with pytest.raises(ValueError):
            MLPScore(**options)


def test_unet_shapes_size_and_gradient_flow():
    net = seeded(lambda: UNet8(channels=1, base=16, time_dim=32))
    assert sum(parameter.numel() for parameter in UNet8().parameters()) < 500_000
    x = torch.randn(4, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    t = torch.rand(4, generator=torch.Generator().manual_seed(1))
    assert torch.equal(net(x, t), torch.zeros_like(x))  # zero-initialized output convolution
    randomize_output(net, net.output)
    out = net(x, t)
    assert out.shape == (4, 1, 8, 8)
    assert net(x[:1], t[:1]).shape == (1, 1, 8, 8)
    torch.testing.assert_close(net(x[1:2], t[1:2]), out[1:2], rtol=1e-5, atol=1e-6)
    out.square().sum().backward()
    silent = [name for name, parameter in net.named_parameters()
              if parameter.grad is None or float(parameter.grad.abs().sum()) == 0]
    assert silent == []
    three = seeded(lambda: UNet8(channels=3, base=8, time_dim=16))
    assert three(torch.zeros(2, 3, 8, 8), torch.zeros(2)).shape == (2, 3, 8, 8)


def test_unet_is_conditioned_on_time_and_checks_shapes():
    net = seeded(lambda: UNet8(base=8, time_dim=16))
    randomize_output(net, net.output)
    x = torch.randn(3, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        early, late = net(x, torch.full((3,), 0.05)), net(x, torch.full((3,), 0.95))
    assert float((early - late).norm() / early.norm()) > 1e-2
    with pytest.raises(ValueError, match=r"x must have shape \(n, 1, 8, 8\)"):
        net(torch.zeros(3, 1, 16, 16), torch.zeros(3))
    with pytest.raises(ValueError, match=r"x must have shape \(n, 1, 8, 8\)"):
        net(torch.zeros(3, 64), torch.zeros(3))
    with pytest.raises(ValueError, match=r"t must have shape \(3,\)"):
        net(torch.zeros(3, 1, 8, 8), torch.zeros(4))


def test_energy_mlp_is_scalar_and_smooth():
    net = seeded(lambda: EnergyMLP(2, hidden=16, depth=3)).double()
    x = torch.randn(5, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    energy = net(x)
    assert energy.shape == (5,) and net(x[:1]).shape == (1,)
    # grad_x E by autograd equals a central difference: the energy is differentiable in x.
    # With step h the central difference errs by O(h^2 |E'''|) ~ 1e-10 here, plus rounding
    # ~1e-16 / h ~ 1e-11; a tolerance of 1e-7 is far above both and far below a wrong gradient.
    points = x.clone().requires_grad_(True)
    (gradient,) = torch.autograd.grad(net(points).sum(), points)
    h = 1e-5
    for coordinate in range(2):
        shift = torch.zeros(2, dtype=torch.float64)
        shift[coordinate] = h
        difference = (net(x + shift) - net(x - shift)) / (2 * h)
        torch.testing.assert_close(gradient[:, coordinate], difference, rtol=0, atol=1e-7)
    # SiLU, not ReLU: the gradient has no kinks, so the second derivative exists too.
    assert all(isinstance(module, nn.SiLU) for module in net.layers if not isinstance(module, nn.Linear))
    with pytest.raises(ValueError, match=r"x must have shape \(n, 2\)"):
        net(torch.zeros(3))
    assert math.isfinite(float(energy.detach().sum()))
