"""``fit_critic``: a critic trained against fixed real and fake samples through the shared loop."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from measureflow._core import seeded_build
from measureflow.generative.gan.critic import CriticTask, fit_critic
from measureflow.generative.train import train

F64 = torch.float64


def _logistic(real_out, fake_out):
    """The original GAN's critic loss: -E log D(x) - E log(1 - D(y)), D = sigmoid(h)."""
    return nn.functional.softplus(-real_out).mean() + nn.functional.softplus(fake_out).mean()


def _samples(seed, n=400, m=300):
    generator = torch.Generator().manual_seed(seed)
    real = torch.randn(n, 2, generator=generator, dtype=F64) + torch.tensor([1.0, -0.5], dtype=F64)
    fake = torch.randn(m, 2, generator=generator, dtype=F64)
    return real, fake


def _linear(seed):
    return seeded_build(lambda: nn.Linear(2, 1).double(), torch.Generator().manual_seed(seed))


def test_full_batch_logistic_critic_reaches_the_logistic_regression_optimum():
    # Full batch, the loss is the (convex) logistic log-likelihood of the two samples with unequal
    # class sizes; its exact minimizer comes from L-BFGS on the same objective. 600 Adam steps at
    # 0.05 reach it to <= 3e-8 (measured on the samples of seeds 0-2); 1e-6 leaves a 30x margin and
    # is far below the distance between the start and the optimum (~1), so a wrong sign, a missing
    # step, a schedule or a wrong batch fails.
    real, fake = _samples(0)
    critic = _linear(0)
    history = fit_critic(critic, real, fake, loss=_logistic, n_steps=600, learning_rate=0.05,
                         generator=torch.Generator().manual_seed(0), log_every=100)
    reference = _linear(1)
    optimizer = torch.optim.LBFGS(reference.parameters(), max_iter=500, tolerance_grad=1e-12,
                                  tolerance_change=1e-15, line_search_fn="strong_wolfe")

    def closure():
        optimizer.zero_grad()
        value = _logistic(reference(real), reference(fake))
        value.backward()
        return value

    optimizer.step(closure)
    torch.testing.assert_close(critic.weight.detach(), reference.weight.detach(), rtol=0, atol=1e-6)
    torch.testing.assert_close(critic.bias.detach(), reference.bias.detach(), rtol=0, atol=1e-6)
    assert history.steps == [100, 200, 300, 400, 500, 600] and history.final_step == 600
    assert history.losses["loss"][-1] < history.losses["loss"][0]


def test_same_generator_same_critic_and_the_global_rng_is_untouched():
    real, fake = _samples(1)

    def run(seed):
        critic = _linear(0)
        fit_critic(critic, real, fake, loss=_logistic, n_steps=20, batch_size=16,
                   generator=torch.Generator().manual_seed(seed))
        return torch.cat([critic.weight.detach().flatten(), critic.bias.detach()])

    state = torch.get_rng_state()
    first, second, other = run(5), run(5), run(6)
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(first, second)
    assert not torch.equal(first, other)


def test_batches_penalty_and_after_step_are_wired_as_documented():
    real, fake = _samples(2, n=50, m=30)
    seen_shapes, penalty_calls, steps = [], [], []

    def loss(real_out, fake_out):
        seen_shapes.append((tuple(real_out.shape), tuple(fake_out.shape)))
        return fake_out.mean() - real_out.mean()

    def penalty(critic, real_batch, fake_batch, generator):
        drawn_from = isinstance(generator, torch.Generator)
        penalty_calls.append((real_batch.shape[0], fake_batch.shape[0], drawn_from))
        return 0.1 * critic.weight.square().sum()

    history = fit_critic(_linear(0), real, fake, loss=loss, n_steps=7,
                         generator=torch.Generator().manual_seed(0), penalty=penalty,
                         after_step=lambda step, critic: steps.append(step), log_every=7)
    assert seen_shapes == [((50, 1), (30, 1))] * 7  # full batch: all of each sample every step
    assert penalty_calls == [(50, 30, True)] * 7
    assert steps == list(range(1, 8))
    assert set(history.losses) == {"loss", "penalty"}

    seen_shapes.clear()
    history = fit_critic(_linear(0), real, fake, loss=loss, n_steps=3, batch_size=8,
                         generator=torch.Generator().manual_seed(0), penalty=lambda *arguments: None)
    assert seen_shapes == [((8, 1), (8, 1))] * 3
    assert history.losses["penalty"] == [0.0]  # a penalty of None (e.g. WGANGP(gp_weight=0)) is 0


def test_samplers_give_fresh_batches_exactly_as_a_hand_written_loop():
    # With samplers, fit_critic must be the plain loop: per step draw real then fake from the one
    # generator, one forward pass on both, Adam, cosine schedule. Same arithmetic in the same order,
    # so the parameters agree bitwise.
    def normal(shift):
        return lambda count, generator: shift + torch.randn(count, 2, generator=generator, dtype=F64)

    critic = _linear(0)
    fit_critic(critic, normal(1.0), normal(0.0), loss=_logistic, n_steps=25, batch_size=32,
               learning_rate=0.05, final_learning_rate=0.001, generator=torch.Generator().manual_seed(7))

    reference = _linear(0)
    generator = torch.Generator().manual_seed(7)
    optimizer = torch.optim.Adam(reference.parameters(), lr=0.05)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=25, eta_min=0.001)
    for _ in range(25):
        real, fake = normal(1.0)(32, generator), normal(0.0)(32, generator)
        out = reference(torch.cat([real, fake]))
        loss = _logistic(out[:32], out[32:])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
    assert torch.equal(critic.weight, reference.weight) and torch.equal(critic.bias, reference.bias)

    # A fixed sample on one side and a sampler on the other mix freely.
    mixed = _linear(0)
    fit_critic(mixed, _samples(0)[0], normal(0.0), loss=_logistic, n_steps=3, batch_size=8,
               generator=torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match="batch_size is needed"):
        fit_critic(_linear(0), normal(1.0), normal(0.0), loss=_logistic, n_steps=2,
                   generator=torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match=r"fake sampler must return a tensor of shape \(8, \.\.\.\)"):
        fit_critic(_linear(0), normal(1.0), lambda count, generator: torch.zeros(3, 2, dtype=F64),
                   loss=_logistic, n_steps=2, batch_size=8, generator=torch.Generator().manual_seed(0))


def test_weight_clipping_through_after_step_keeps_the_critic_in_the_box():
    # WGAN's constraint (Arjovsky et al. 2017): clip every parameter to [-c, c] after each step.
    real, fake = _samples(3)
    critic = seeded_build(lambda: nn.Sequential(nn.Linear(2, 16), nn.ReLU(), nn.Linear(16, 1)).double(),
                          torch.Generator().manual_seed(0))

    def clip(step, trained):
        with torch.no_grad():
            for parameter in trained.parameters():
                parameter.clamp_(-0.01, 0.01)

    fit_critic(critic, real, fake, loss=lambda r, f: f.mean() - r.mean(), n_steps=30, batch_size=64,
               learning_rate=0.01, generator=torch.Generator().manual_seed(0), after_step=clip)
    assert max(float(parameter.detach().abs().max()) for parameter in critic.parameters()) <= 0.01


def test_cosine_schedule_ends_at_the_final_learning_rate():
    real, fake = _samples(4)
    critic = _linear(0)
    optimizer = torch.optim.Adam(critic.parameters(), lr=0.1)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=10, eta_min=0.001)
    task = CriticTask(critic, fake, loss=_logistic, batch_size=None, optimizer=optimizer, schedule=schedule)
    train(task, real, n_steps=10, batch_size=None, generator=torch.Generator().manual_seed(0), progress=False)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.001)
    state = task.state_dict()
    assert state["completed"] == 10 and state["schedule"]["last_epoch"] == 10


def test_fit_critic_rejects_bad_arguments():
    real, fake = _samples(5)
    options = {"loss": _logistic, "n_steps": 2, "generator": torch.Generator().manual_seed(0)}
    with pytest.raises(TypeError, match="critic must be a torch.nn.Module"):
        fit_critic(lambda x: x, real, fake, **options)
    with pytest.raises(ValueError, match="same shape after the first dimension"):
        fit_critic(_linear(0), real, fake[:, :1], **options)
    with pytest.raises(ValueError, match="n_steps must be a positive integer"):
        fit_critic(_linear(0), real, fake, **{**options, "n_steps": 0})
    with pytest.raises(ValueError, match="betas must be two numbers"):
        fit_critic(_linear(0), real, fake, betas=(0.5, 1.0), **options)
    with pytest.raises(ValueError, match="final_learning_rate must lie in"):
        fit_critic(_linear(0), real, fake, learning_rate=0.01, final_learning_rate=0.1, **options)
    with pytest.raises(ValueError, match="must return a scalar tensor"):
        fit_critic(_linear(0), real, fake, **{**options, "loss": lambda r, f: r - f.mean()})
    with pytest.raises(TypeError, match="loss must be callable"):
        fit_critic(_linear(0), real, fake, **{**options, "loss": None})
