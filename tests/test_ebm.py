"""Energy-based models: the ML gradient estimator, the replay buffer's Langevin chains, the PCD
fixed point, exact resume through the shared training loop, sampling with MALA, checkpoints."""

from __future__ import annotations

import math

import pytest
import torch
from stats_helpers import Z_MAX
from torch import nn

from measureflow.generative import TrainedModel
from measureflow.generative.ebm import (
    EBMTask,
    EnergyTarget,
    ReplayBuffer,
    ebm_loss,
    energy_landscape_figure,
    energy_on_grid,
    langevin,
    sample_ebm,
    train_ebm,
)
from measureflow.generative.train import EMA, save_checkpoint, train


class Quadratic(nn.Module):
    """E(x) = |x - m|^2 / (2 s^2) with parameters m (d,) and log s: p_theta = N(m, s^2 I) exactly."""

    def __init__(self, dim: int, mean: float = 0.0, std: float = 1.0, dtype=torch.float64) -> None:
        super().__init__()
        self.dim = dim
        self.mean = nn.Parameter(torch.full((dim,), float(mean), dtype=dtype))
        self.log_std = nn.Parameter(torch.tensor(math.log(std), dtype=dtype))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean).square().sum(-1) / (2 * torch.exp(2 * self.log_std))


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ------------------------------------------------------------------------------------------------
# The maximum-likelihood gradient estimator


def test_ml_gradient_matches_closed_form_nll_gradient():
    # Model p = N(m, s^2 I) in d = 3 with energy E = |x - m|^2 / (2 s^2), log Z = d log s + const.
    # For data nu = N(mu, sigma^2 I): NLL = E_nu|x - m|^2 / (2 s^2) + d log s, so
    #   dNLL/dm     = -(mu - m) / s^2,
    #   dNLL/dlog s = -E_nu|x - m|^2 / s^2 + d = -(d sigma^2 + |mu - m|^2) / s^2 + d.
    # The estimator is grad[mean_i E(x_i) - mean_j E(y_j)] with x_i ~ nu and y_j ~ p exact: a
    # difference of two sample means of the per-sample gradients g(x) = grad_theta E(x), i.e.
    # g_m(x) = -(x - m) / s^2 and g_logs(x) = -|x - m|^2 / s^2. Its standard error is
    # sqrt(Var g(x) / n + Var g(y) / n), estimated from the samples; we allow Z_MAX = 5 SE.
    d, n = 3, 20_000
    generator = _generator(0)
    model = Quadratic(d, mean=0.3, std=1.2)
    mu = torch.tensor([0.5, -0.2, 0.1], dtype=torch.float64)
    sigma = 0.8
    x_data = mu + sigma * torch.randn(n, d, generator=generator, dtype=torch.float64)
    with torch.no_grad():
        s = float(torch.exp(model.log_std))
        m = model.mean.detach().clone()
        x_model = m + s * torch.randn(n, d, generator=generator, dtype=torch.float64)
    loss, gap, regularizer = ebm_loss(model, x_data, x_model, alpha=0.0)
    loss.backward()
    estimate = torch.cat([model.mean.grad, model.log_std.grad[None]])

    truth_mean = -(mu - m) / s**2
    truth_log_std = -(d * sigma**2 + (mu - m).square().sum()) / s**2 + d
    truth = torch.cat([truth_mean, truth_log_std[None]])

    def per_sample(x):
        return torch.cat([-(x - m) / s**2, -(x - m).square().sum(-1, keepdim=True) / s**2], dim=1)

    se = (per_sample(x_data).var(0) / n + per_sample(x_model).var(0) / n).sqrt()
    z = (estimate - truth) / se
    assert bool((z.abs() < Z_MAX).all()), f"gradient off by {z.tolist()} standard errors"
    # The estimator is exactly the difference of the per-sample gradient means (no hidden terms).
    torch.testing.assert_close(estimate, per_sample(x_data).mean(0) - per_sample(x_model).mean(0))
    assert float(regularizer.detach()) == 0.0 and float(loss.detach()) == float(gap.detach())


def test_regularizer_gradient_is_alpha_times_squared_energy_gradient():
    # d/dtheta [alpha (mean E(x)^2 + mean E(y)^2)] = alpha (mean 2 E(x) g(x) + mean 2 E(y) g(y)).
    model = Quadratic(1, mean=0.2, std=0.7)
    x = torch.tensor([[0.0], [1.0], [-0.5]], dtype=torch.float64)
    y = torch.tensor([[0.4], [2.0]], dtype=torch.float64)
    alpha = 0.3
    loss, _, _ = ebm_loss(model, x, y, alpha)
    (grad_full,) = torch.autograd.grad(loss, model.mean)
    s2 = float(torch.exp(2 * model.log_std.detach()))
    m = float(model.mean.detach()[0])
    energy = lambda v: (v - m) ** 2 / (2 * s2)  # noqa: E731
    g = lambda v: -(v - m) / s2  # noqa: E731
    xs, ys = x.flatten().tolist(), y.flatten().tolist()
    contrastive = sum(g(v) for v in xs) / 3 - sum(g(v) for v in ys) / 2
    penalty = sum(2 * energy(v) * g(v) for v in xs) / 3 + sum(2 * energy(v) * g(v) for v in ys) / 2
    expected = contrastive + alpha * penalty
    assert float(grad_full) == pytest.approx(expected, rel=1e-12)


# ------------------------------------------------------------------------------------------------
# Langevin and the replay buffer


def test_langevin_reaches_ula_stationary_variance():
    # ULA on E = x^2 / (2 sigma^2) is x' = a x + sqrt(2h) z with a = 1 - h / sigma^2; from x_0 = 0
    # Var x_k = v (1 - a^(2k)), v = sigma^2 / (1 - h / (2 sigma^2)) (see checks/ula_bias.py). With
    # h = 0.2, sigma = 1: a = 0.8, k = 100 gives a^200 ~ 4e-20, so Var x_k = v = 1.1111 to all
    # digits, 11% above sigma^2. The sample variance of n independent chains has SE
    # sqrt((m4 - m2^2) / n); the mean has SE sqrt(v / n). Z_MAX = 5 for both.
    n, h = 40_000, 0.2
    x = langevin(lambda y: 0.5 * y.square().sum(-1), torch.zeros(n, 1, dtype=torch.float64),
                 n_steps=100, step_size=h, generator=_generator(1))
    v = 1.0 / (1 - h / 2)
    centred = x.flatten() - x.mean()
    m2, m4 = float(centred.square().mean()), float(centred.pow(4).mean())
    assert abs(float(x.mean())) < Z_MAX * math.sqrt(v / n)
    assert abs(m2 - v) < Z_MAX * math.sqrt((m4 - m2**2) / n)
    assert abs(m2 - 1.0) > 10 * math.sqrt((m4 - m2**2) / n)  # the O(h) bias is resolved


def test_langevin_gradient_clipping_bounds_the_drift():
    # With the same noise (same seed), one clipped step moves x by -h g min(1, c / |g|) + sqrt(2h) z.
    h, clip = 0.01, 2.0
    x0 = torch.tensor([[3.0, 4.0], [0.1, 0.0]], dtype=torch.float64)
    energy = lambda y: 10 * y.square().sum(-1)  # noqa: E731  grad = 20 y: |g| = 100 and 2
    moved = langevin(energy, x0, n_steps=1, step_size=h, generator=_generator(2), grad_clip=clip)
    z = torch.randn(x0.shape, generator=_generator(2), dtype=torch.float64)
    grad = 20 * x0
    scale = (clip / grad.norm(dim=-1, keepdim=True)).clamp(max=1.0)
    torch.testing.assert_close(moved, x0 - h * grad * scale + math.sqrt(2 * h) * z)


def test_buffer_shapes_write_back_and_reinit_statistics():
    # Chains parked at 100 (outside the init box [-3, 3]^2) and moved by 0 Langevin steps: after a
    # call, exactly the restarted chains are inside the box. Each chain restarts independently
    # with probability p = 0.05, so over T calls of B chains the count is Binomial(T B, p):
    # |count - T B p| < 5 sqrt(T B p (1 - p)).
    size, batch, calls, p = 5_000, 1_000, 10, 0.05
    buffer = ReplayBuffer(2, size, reinit_fraction=p, init_scale=3.0, dtype=torch.float64)
    generator = _generator(3)
    total = 0
    for _ in range(calls):
        buffer.load_state_dict({"states": torch.full((size, 2), 100.0, dtype=torch.float64)})
        batch_out = buffer.sample(lambda y: y.sum(-1), batch, n_steps=0, step_size=0.1,
                                  generator=generator)
        assert tuple(batch_out.states.shape) == (batch, 2)
        assert tuple(batch_out.index.shape) == (batch,) and batch_out.index.unique().numel() == batch
        inside = batch_out.states.abs().max(-1).values <= 3.0
        assert torch.equal(inside, batch_out.reinitialized)
        torch.testing.assert_close(buffer.states[batch_out.index], batch_out.states)
        untouched = torch.ones(size, dtype=torch.bool)
        untouched[batch_out.index] = False
        assert bool((buffer.states[untouched] == 100.0).all())
        total += int(batch_out.reinitialized.sum())
    trials = calls * batch
    assert abs(total - trials * p) < Z_MAX * math.sqrt(trials * p * (1 - p))


def test_buffer_is_deterministic_by_seed():
    def states(seed):
        buffer = ReplayBuffer(2, 300, reinit_fraction=0.1)
        for _ in range(3):
            buffer.sample(lambda y: 0.5 * y.square().sum(-1), 64, n_steps=5, step_size=0.05,
                          generator=_generator(seed))
        return buffer.states

    assert torch.equal(states(4), states(4))
    assert not torch.equal(states(4), states(5))


def test_buffer_rejects_bad_arguments():
    with pytest.raises(ValueError, match="reinit_fraction"):
        ReplayBuffer(2, 10, reinit_fraction=1.5)
    with pytest.raises(ValueError, match="init must be one of"):
        ReplayBuffer(2, 10, init="box")
    with pytest.raises(ValueError, match="batch_size"):
        ReplayBuffer(2, 10).sample(lambda y: y.sum(-1), 11, n_steps=1, step_size=0.1)
    with pytest.raises(ValueError, match="shape"):
        ReplayBuffer(2, 10).load_state_dict({"states": torch.zeros(10, 3)})


# ------------------------------------------------------------------------------------------------
# Training


def test_pcd_training_recovers_gaussian_mean_and_ula_biased_variance():
    # A quadratic EBM (p_theta = N(m, s^2)) trained by PCD on a fixed 1-D data set D. At the ML
    # fixed point the chains' law matches D's mean and variance v_D. The chains run ULA with step
    # h, whose stationary law under N(m, s^2) is N(m, s^2 / (1 - h / (2 s^2))), so the fixed point
    # is m = mean(D) and s^2 / (1 - h / (2 s^2)) = v_D, i.e. s^2 = (v_D + sqrt(v_D^2 - 2 h v_D)) / 2
    # (about v_D - h / 2: 0.05 below v_D for h = 0.1). Fluctuation at the end: with Adam (beta1 = 0)
    # each step moves a parameter by about lr in units of the gradient noise sigma_g, against a
    # restoring slope kappa ~ 1 / s^2, an AR(1) with stationary sd ~ sqrt(lr sigma_g / (2 kappa));
    # with 4096 chains and 4096 data per step sigma_g ~ sqrt(2 / 4096) ~ 0.022 and the final
    # lr = 2e-4, that is ~1.5e-3, and the EMA (decay 0.99) averages it further. Tolerance 0.012
    # (8x that) on m and on s^2: tight enough that the naive answer s^2 = v_D (0.05 away) fails.
    generator = _generator(6)
    data = 0.7 + 1.1 * torch.randn(20_000, 1, generator=generator, dtype=torch.float64)
    mean_d, var_d = float(data.mean()), float(data.var(unbiased=False))
    h, steps = 0.1, 600
    task = EBMTask(Quadratic(1, mean=0.0, std=1.0), lr=1e-2, alpha=0.0, ema_decay=0.99,
                   buffer_size=4096, reinit_fraction=0.0, n_langevin=10, step_size=h,
                   init="normal", init_scale=1.0, lr_decay_steps=steps, lr_final_fraction=0.02)
    train(task, data, n_steps=steps, batch_size=4096, generator=generator, progress=False, kind="ebm")
    learned = task.ema.model
    s2 = float(torch.exp(2 * learned.log_std))
    predicted_s2 = (var_d + math.sqrt(var_d**2 - 2 * h * var_d)) / 2
    assert abs(float(learned.mean[0]) - mean_d) < 0.012
    assert abs(s2 - predicted_s2) < 0.012
    assert abs(s2 - var_d) > 0.03


def _tiny_run(tmp_path, n_steps, *, stop_at=None, resume=False, name="run"):
    class Stop(Exception):
        pass

    def stop(step, out):
        if stop_at is not None and step == stop_at:
            raise Stop

    data = torch.randn(500, 2, generator=_generator(7))
    try:
        net, history = train_ebm(
            data, n_steps=n_steps, batch_size=32, generator=_generator(8), out_dir=tmp_path / name,
            resume=resume, progress=False, hidden=8, depth=2, buffer_size=64, reinit_fraction=0.1,
            n_langevin=3, checkpoint_every=10, log_every=5, on_checkpoint=stop, config={"data": "normal"},
        )
    except Stop:
        return None
    return net, history


def test_resume_equals_uninterrupted_run_bitwise(tmp_path):
    full_net, full_history = _tiny_run(tmp_path, 30, name="full")
    assert _tiny_run(tmp_path, 30, stop_at=10, name="split") is None
    resumed_net, resumed_history = _tiny_run(tmp_path, 30, resume=True, name="split")
    for a, b in zip(full_net.state_dict().values(), resumed_net.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    assert resumed_history.losses == full_history.losses
    full = torch.load(tmp_path / "full" / "checkpoint.pt", weights_only=True)
    split = torch.load(tmp_path / "split" / "checkpoint.pt", weights_only=True)
    assert torch.equal(full["buffer"]["states"], split["buffer"]["states"])
    for key in ("model",):
        for a, b in zip(full[key].values(), split[key].values(), strict=True):
            assert torch.equal(a, b)
    assert full["scheduler"] == split["scheduler"]
    assert resumed_history.resumed_from == 10


def load_ebm(path):
    return TrainedModel.load(path, family="ebm")


def test_trained_model_loads_an_ebm_and_refuses_bad_checkpoints(tmp_path):
    net, _ = _tiny_run(tmp_path, 10, name="ok")
    model = load_ebm(tmp_path / "ok")
    loaded, config = model.network, model.config
    x = torch.randn(7, 2, generator=_generator(9))
    torch.testing.assert_close(loaded(x), net(x), rtol=0, atol=0)
    assert config["data"] == "normal" and config["net"]["hidden"] == 8

    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes((tmp_path / "ok" / "checkpoint.pt").read_bytes()[:200])
    with pytest.raises(ValueError, match="truncated or corrupt"):
        load_ebm(truncated)
    other = tmp_path / "other.pt"
    save_checkpoint(other, {"kind": "diffusion", "step": 1, "config": {}, "ema": {}})
    with pytest.raises(ValueError, match="'diffusion' model"):
        load_ebm(other)
    no_net = tmp_path / "no_net.pt"
    save_checkpoint(no_net, {"kind": "ebm", "step": 1, "config": {}, "ema": {"model": {}}})
    with pytest.raises(ValueError, match="network settings"):
        load_ebm(no_net)
    payload = torch.load(tmp_path / "ok" / "checkpoint.pt", weights_only=True)
    payload["config"]["net"]["hidden"] = 9
    wrong = tmp_path / "wrong.pt"
    save_checkpoint(wrong, payload)
    with pytest.raises(ValueError, match="does not hold an? ebm model"):
        load_ebm(wrong)
    with pytest.raises(ValueError, match="no checkpoint"):
        load_ebm(tmp_path / "missing")


def test_train_ebm_refuses_reserved_config_keys():
    with pytest.raises(ValueError, match="must not use the key"):
        train_ebm(torch.zeros(10, 2), n_steps=1, generator=_generator(0), config={"net": 1})


def test_ebm_task_state_dict_has_model_optimizer_ema_buffer():
    task = EBMTask(Quadratic(2), buffer_size=16, n_langevin=1)
    task.step(torch.randn(8, 2, dtype=torch.float64), _generator(0))
    state = task.state_dict()
    assert {"model", "optimizer", "ema", "buffer"} <= set(state)
    assert isinstance(task.ema, EMA) and tuple(state["buffer"]["states"].shape) == (16, 2)


# ------------------------------------------------------------------------------------------------
# Sampling a trained energy


def test_sample_ebm_with_mala_draws_the_gibbs_measure():
    # exp(-E) for the quadratic energy is N(m, s^2 I) exactly; MALA leaves it invariant at any
    # step, so the final states of n independent chains (started at N(0, I), 300 steps, step
    # adapted in the first half) have mean m and variance s^2 up to Monte Carlo error: SE of the
    # mean sqrt(s^2 / n), of the variance sqrt(2 s^4 / n) (Gaussian), Z_MAX = 5.
    n = 4000
    energy = Quadratic(2, mean=0.5, std=0.6)
    x = sample_ebm(energy, n, n_steps=300, step_size=0.1, generator=_generator(10))
    assert tuple(x.shape) == (n, 2) and x.dtype == torch.float64
    s2 = 0.36
    assert bool(((x.mean(0) - 0.5).abs() < Z_MAX * math.sqrt(s2 / n)).all())
    assert bool(((x.var(0) - s2).abs() < Z_MAX * math.sqrt(2 * s2**2 / n)).all())


def test_energy_target_is_a_frozen_copy():
    energy = Quadratic(2, mean=0.0, std=1.0)
    target = EnergyTarget(energy)
    with torch.no_grad():
        energy.mean.fill_(5.0)
    point = torch.zeros(1, 2, dtype=torch.float64)
    assert float(target.energy(point)[0]) == 0.0
    torch.testing.assert_close(target.grad_energy(torch.ones(1, 2, dtype=torch.float64)),
                               torch.ones(1, 2, dtype=torch.float64))
    assert target.dtype == torch.float64 and target.dim == 2
    with pytest.raises(ValueError, match=r"\(n, 2\)"):
        target.energy(torch.zeros(3, 3, dtype=torch.float64))


def test_energy_grid_normalization_and_landscape_figure(tmp_path):
    # For E = |x|^2 / 2 the grid density on [-5, 5]^2 is the standard normal density up to the
    # trapezoid/midpoint error (~1e-3 relative at 101 points per axis) and the mass outside (~1e-6).
    energy = Quadratic(2, mean=0.0, std=1.0)
    grid = energy_on_grid(energy, ((-5, 5), (-5, 5)), grid_size=101)
    assert float(grid.density.sum()) * grid.cell_area == pytest.approx(1.0, abs=1e-12)
    centre = float(grid.density[50, 50])
    assert centre == pytest.approx(1 / (2 * math.pi), rel=5e-3)
    path = energy_landscape_figure(energy, torch.randn(100, 2, dtype=torch.float64), tmp_path / "e.png",
                                   grid_size=40)
    assert (tmp_path / "e.png").stat().st_size > 1000 and path.endswith("e.png")
    with pytest.raises(ValueError, match="2-D energy"):
        energy_on_grid(Quadratic(3), ((-1, 1), (-1, 1)))


def test_import_star():
    namespace: dict = {}
    exec("from measureflow.generative.ebm import *", namespace)
    assert "train_ebm" in namespace and "ReplayBuffer" in namespace
