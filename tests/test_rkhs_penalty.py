"""RKHSPenalized: a loss plus (lam / 2) sum_k x_k^2 / mu_k as one target (the explicit scheme's energy)."""

from __future__ import annotations

import pytest
import torch

import measureflow as mf
from measureflow.targets.function_space import HilbertRegression
from measureflow.targets.rkhs_penalty import RKHSPenalized

F64 = torch.float64


def _regression(n_modes: int = 6) -> HilbertRegression:
    generator = torch.Generator().manual_seed(3)
    t = torch.rand(8, generator=generator, dtype=F64)
    return HilbertRegression(t, torch.sin(4 * t), n_modes)


def test_energy_and_gradient_add_the_penalty_and_match_autograd():
    loss = _regression()
    mu = torch.arange(1, 7, dtype=F64).pow(-2.0)
    target = RKHSPenalized(loss, 0.7, mu)
    x = torch.randn(5, 6, generator=torch.Generator().manual_seed(4), dtype=F64)
    expected = loss.energy(x) + 0.35 * (x.square() / mu).sum(1)
    torch.testing.assert_close(target.energy(x), expected, rtol=1e-14, atol=0)
    energy, gradient = target.energy_and_grad(x)
    auto = mf.targets.base.autograd_energy_and_grad(target.energy, x)
    torch.testing.assert_close(energy, auto[0])
    torch.testing.assert_close(gradient, auto[1])
    torch.testing.assert_close(target.grad_energy(x), auto[1])


def test_ula_on_it_is_the_semi_implicit_scheme_without_the_implicit_part():
    # Explicit Euler on the penalized energy, X' = X - h (grad L + lam X / mu) + sqrt(2 h) xi, and the
    # semi-implicit X' = (X - h grad L + sqrt(2 h) xi) / (1 + h lam / mu) consume the same noise; from the
    # same X the two differ by exactly the implicit factor, checked after one step.
    loss = _regression()
    mu = torch.arange(1, 7, dtype=F64).pow(-1.5)
    start = torch.randn(3, 6, generator=torch.Generator().manual_seed(5), dtype=F64)
    kwargs = dict(n_chains=3, n_steps=1, burn_in=0, step_size=0.01, init=start, seed=2, progress=False,
                  diagnostics=False)
    explicit = mf.sample(RKHSPenalized(loss, 0.5, mu), "ula", **kwargs).samples[-1]
    semi = mf.sample(loss, "infinite-langevin", lam=0.5, mu=mu, **kwargs).samples[-1]
    free = explicit + 0.01 * 0.5 * start / mu  # X - h grad L + sqrt(2h) xi
    torch.testing.assert_close(semi, free / (1 + 0.01 * 0.5 / mu))


def test_moves_with_the_base_and_refuses_bad_input():
    target = RKHSPenalized(_regression(), 1.0, torch.ones(6, dtype=F64)).float()
    assert target.dtype == torch.float32 and target.mu.dtype == torch.float32
    assert target.base.features.dtype == torch.float32
    with pytest.raises(ValueError, match="mu"):
        RKHSPenalized(_regression(), 1.0, torch.ones(5))
    with pytest.raises(ValueError, match="mu"):
        RKHSPenalized(_regression(), 1.0, torch.tensor([1.0, 1, 1, 1, 1, 0]))
    with pytest.raises(ValueError, match="lam"):
        RKHSPenalized(_regression(), -1.0, torch.ones(6))
    with pytest.raises(TypeError, match="Target"):
        RKHSPenalized(lambda x: x, 1.0, torch.ones(6))
