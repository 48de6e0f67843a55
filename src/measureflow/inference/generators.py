r"""Implicit posteriors: a conditional generator theta = f_w(y, z), z ~ N(0, I), fitted to the joint.

Both methods here match joints (the notes' view p(theta, y) = q(theta, y)): with y drawn from
the simulations' marginal p(y) and q(theta, y) = p(y) q_w(theta | y), q = p on the joint iff
q_w(. | y) = p(. | y) for p(y)-almost every y. The generator never needs a density, and both are
**amortized**: one training serves every observation. They learn in standardized coordinates u
(``log theta`` for Lotka-Volterra) given standardized features c (``log y``); see
:mod:`~measureflow.inference.base`.

- :func:`lfvi`, likelihood-free variational inference (Tran, Ranganath & Blei 2017). A
  discriminator r(u, c) is trained to tell the simulated pairs (u_i, c_i) ~ p from generated
  pairs (f_w(c_i, z_i), c_i) ~ q with an f-GAN critic loss (any row of
  :mod:`~measureflow.generative.gan.divergences`); at its optimum the critic gives the log ratio
  log p(u, c) / q(u, c) (:func:`~measureflow.generative.gan.divergences.log_density_ratio`). The
  generator minimizes the reverse KL of the joint, estimated with the ratio:

      KL(q || p) = E_q[log q / p] ~ -E_{c ~ p(y), z} [ r(f_w(c, z), c) ],

  Tran et al.'s objective (their eq. 7, with q(y) = p(y)), so the fit is the variational
  posterior of KL(q(theta | y) || p(theta | y)) averaged over y. One critic step and one
  generator step alternate (``critic_steps`` sets the ratio).
- :func:`mmd_posterior`, a conditional GMMN: minimize the unbiased MMD^2 between the simulated
  pairs and the generated pairs with the same c (:func:`~measureflow.generative.gan.objectives.mmd2_loss`,
  a sum of Gaussian kernels). The kernel is on the joint; the context coordinates are scaled by
  ``context_weight`` (default sqrt(p / k)), so that p parameter coordinates and k feature
  coordinates weigh equally in the distance instead of the k = 20 features drowning the 4
  parameters.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from measureflow._core import check_count, check_positive, seeded_build
from measureflow.generative.gan.divergences import log_density_ratio
from measureflow.generative.gan.nets import Critic
from measureflow.generative.gan.objectives import F_LOSS_ROWS, FGAN, mmd2_loss
from measureflow.generative.train import TrainTask
from measureflow.inference._training import LossTask, TrainingSet, default_steps, fit, training_set
from measureflow.inference.base import PosteriorResult, Timer, check_output_finite
from measureflow.inference.simulators import Simulator

__all__ = ["RATIO_LOSSES", "ConditionalGenerator", "GeneratorPosterior", "lfvi", "mmd_posterior"]

#: The critic losses that estimate a density ratio (the f-GAN rows; WGAN critics do not).
RATIO_LOSSES = tuple(F_LOSS_ROWS)


class ConditionalGenerator(nn.Module):
    r"""u = f_w(c, z): an MLP on ``[c, z]`` ``(n, k + latent_dim)`` -> ``(n, p)``, SiLU hidden layers, a
    linear output. ``latent_dim`` defaults to p (the posterior's dimension)."""

    def __init__(self, p: int, k: int, latent_dim: int | None = None, hidden: int = 128,
                 depth: int = 3) -> None:
        super().__init__()
        self.p, self.k = check_count(p, "p"), check_count(k, "k")
        self.latent_dim = check_count(latent_dim if latent_dim is not None else p, "latent_dim")
        layers: list[nn.Module] = []
        width = self.k + self.latent_dim
        for _ in range(check_count(depth, "depth")):
            layers += [nn.Linear(width, check_count(hidden, "hidden")), nn.SiLU()]
            width = hidden
        layers.append(nn.Linear(width, self.p))
        self.body = nn.Sequential(*layers)

    def forward(self, c: Tensor, z: Tensor) -> Tensor:
        return self.body(torch.cat([c, z], dim=1))

    def noise(self, n: int, generator: torch.Generator | None, like: Tensor) -> Tensor:
        """z ~ N(0, I) ``(n, latent_dim)`` from ``generator``, in ``like``'s dtype and device."""
        device = generator.device if generator is not None else like.device
        z = torch.randn((n, self.latent_dim), generator=generator, dtype=like.dtype, device=device)
        return z.to(like.device)


class GeneratorPosterior:
    """A trained :class:`ConditionalGenerator` with its coordinates: :meth:`sample` any observation."""

    def __init__(self, net: ConditionalGenerator, data: TrainingSet, name: str) -> None:
        self.net, self.data, self.name = net.eval(), data, name

    def sample(self, observation: Tensor, n: int, generator: torch.Generator | None = None) -> Tensor:
        """``n`` draws of theta ``(n, p)`` given one observation ``(d_y,)``; z drawn from ``generator``."""
        n = check_count(n, "n")
        c = self.data.encode_observation(observation).expand(n, -1)
        with torch.no_grad():
            u = self.net(c, self.net.noise(n, generator, c))
        return self.data.to_theta(check_output_finite(u, f"the {self.name} generator"))


class _LFVITask(TrainTask):
    """``critic_steps`` critic updates on the f-GAN critic loss, then one generator update on the
    reverse-KL estimate -E_q log_ratio(r(f(c, z), c)), per step (see the module docstring)."""

    def __init__(self, net: ConditionalGenerator, critic: nn.Module, data: TrainingSet, objective: FGAN, *,
                 critic_steps: int, learning_rate: float, critic_learning_rate: float, n_steps: int) -> None:
        self.net, self.critic, self.data, self.objective = net, critic, data, objective
        self.critic_steps = critic_steps
        # Adam with beta1 = 0.5, the usual choice for adversarial games (less momentum to overshoot).
        self.optimizer = torch.optim.Adam(net.parameters(), lr=learning_rate, betas=(0.5, 0.999))
        self.critic_optimizer = torch.optim.Adam(critic.parameters(), lr=critic_learning_rate,
                                                 betas=(0.5, 0.999))
        self.schedules = [torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=n_steps)
                          for opt in (self.optimizer, self.critic_optimizer)]

    def _fake(self, c: Tensor, generator: torch.Generator) -> Tensor:
        return torch.cat([self.net(c, self.net.noise(c.shape[0], generator, c)), c], dim=1)

    def step(self, batch: Tensor, generator: torch.Generator) -> dict[str, Tensor]:
        _, c = self.data.split(batch)
        with torch.enable_grad():
            for _ in range(self.critic_steps):
                with torch.no_grad():
                    fake = self._fake(c, generator)
                critic_loss, _ = self.objective.critic_objective(self.critic, batch, fake)
                self.critic_optimizer.zero_grad(set_to_none=True)
                critic_loss.backward()
                self.critic_optimizer.step()
            log_ratio = log_density_ratio(self.critic(self._fake(c, generator)), self.objective.row)
            generator_loss = -log_ratio.mean()  # KL(q || p) estimate
            self.optimizer.zero_grad(set_to_none=True)
            generator_loss.backward()
        self.optimizer.step()
        for schedule in self.schedules:
            schedule.step()
        return {"critic": critic_loss.detach(), "kl": generator_loss.detach()}

    def state_dict(self) -> dict[str, Any]:
        return {"model": self.net.state_dict(), "critic": self.critic.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "critic_optimizer": self.critic_optimizer.state_dict(),
                "schedules": [s.state_dict() for s in self.schedules]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.net.load_state_dict(state["model"])
        self.critic.load_state_dict(state["critic"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.critic_optimizer.load_state_dict(state["critic_optimizer"])
        for schedule, saved in zip(self.schedules, state["schedules"], strict=True):
            schedule.load_state_dict(saved)


def _objective(loss: str) -> FGAN:
    if loss not in RATIO_LOSSES:
        raise ValueError(f"LFVI needs a critic that estimates a density ratio: loss must be one of "
                         f"{', '.join(RATIO_LOSSES)}, got {loss!r}")
    return FGAN(F_LOSS_ROWS[loss], non_saturating=(loss == "ns"))


def _result(method: str, posterior: GeneratorPosterior, data: TrainingSet, n_samples: int,
            generator: torch.Generator | None, timer: Timer, details: dict[str, Any]) -> PosteriorResult:
    theta = posterior.sample(data.observation, n_samples, generator)
    return PosteriorResult(theta=theta, observation=data.observation, method=method,
                           n_simulations=data.n_simulations, n_valid=data.n_valid, amortized=True,
                           wall_time=timer.elapsed(), details=details, estimator=posterior)


def lfvi(simulator: Simulator, observation: Any, budget: int, *, n_samples: int = 10_000, loss: str = "js",
         n_steps: int | None = None, batch_size: int = 256, critic_steps: int = 2,
         learning_rate: float = 5e-4, critic_learning_rate: float = 1e-3, hidden: int = 128,
         latent_dim: int | None = None, generator: torch.Generator | None = None, progress: bool = False,
         device: str = "cpu", simulations: tuple[Tensor, Tensor] | None = None) -> PosteriorResult:
    """Posterior draws by likelihood-free variational inference (see the module docstring).

    ``loss`` names the critic's f-GAN loss (``js`` = logistic regression on the two joints, ``kl``,
    ``rkl``, ``pearson``, ``hellinger``; ``ns`` trains the critic as ``js``): any of them estimates
    log p / q at its optimum. ``n_steps`` defaults to 60 passes over the training rows, between
    3,000 and 12,000 steps. Amortized: ``result.estimator.sample(y, n)``.
    """
    timer = Timer()
    n_samples = check_count(n_samples, "n_samples")
    objective = _objective(loss)
    critic_steps = check_count(critic_steps, "critic_steps")
    data = training_set(simulator, observation, budget, generator, progress=progress, device=device,
                        simulations=simulations)
    if n_steps is None:
        n_steps = default_steps(data.train.shape[0], batch_size, epochs=60, minimum=3_000, maximum=12_000)
    n_steps = check_count(n_steps, "n_steps")
    net = seeded_build(lambda: ConditionalGenerator(data.p, data.k, latent_dim, hidden), generator).to(device)
    critic = seeded_build(lambda: Critic(data.p + data.k, hidden, 3), generator).to(device)
    task = _LFVITask(net, critic, data, objective, critic_steps=critic_steps, n_steps=n_steps,
                     learning_rate=check_positive(learning_rate, "learning_rate"),
                     critic_learning_rate=check_positive(critic_learning_rate, "critic_learning_rate"))
    history = fit(task, data, n_steps=n_steps, batch_size=batch_size, generator=generator,
                  progress=progress, description="lfvi")
    details = {"loss": loss, "n_steps": n_steps, "critic_steps": critic_steps,
               "final_kl_estimate": float(history.losses["kl"][-1]),
               "final_critic_loss": float(history.losses["critic"][-1])}
    return _result("lfvi", GeneratorPosterior(net, data, "LFVI"), data, n_samples, generator, timer, details)


def _bandwidths(data: TrainingSet, context_weight: float, scales: Sequence[float]) -> list[float]:
    """Kernel bandwidths: ``scales`` times the median pairwise distance of (a subsample of) the
    weighted training pairs (the median heuristic, spread over a decade each way)."""
    rows = data.train[:1_000]
    u, c = data.split(rows)
    joint = torch.cat([u, context_weight * c], dim=1)
    median = float(torch.cdist(joint, joint).median())
    return [scale * median for scale in scales]


def mmd_posterior(simulator: Simulator, observation: Any, budget: int, *, n_samples: int = 10_000,
                  n_steps: int | None = None, batch_size: int = 256, learning_rate: float = 1e-3,
                  hidden: int = 128, latent_dim: int | None = None, context_weight: float | None = None,
                  bandwidth_scales: Sequence[float] = (0.05, 0.1, 0.2, 0.5, 1.0),
                  generator: torch.Generator | None = None, progress: bool = False, device: str = "cpu",
                  simulations: tuple[Tensor, Tensor] | None = None) -> PosteriorResult:
    """Posterior draws by a conditional generator trained by MMD on the joint (see the module docstring).

    Batches of ``batch_size`` simulated pairs against generated pairs with the same contexts;
    bandwidths are ``bandwidth_scales`` times the median distance of weighted pairs (small scales
    resolve the posterior's width, which is much smaller than the prior's). ``n_steps`` defaults to
    60 passes, between 3,000 and 12,000 steps. Amortized.
    """
    timer = Timer()
    n_samples = check_count(n_samples, "n_samples")
    data = training_set(simulator, observation, budget, generator, progress=progress, device=device,
                        simulations=simulations)
    weight = (math.sqrt(data.p / data.k) if context_weight is None
              else check_positive(context_weight, "context_weight"))
    bandwidths = _bandwidths(data, weight, bandwidth_scales)
    if n_steps is None:
        n_steps = default_steps(data.train.shape[0], batch_size, epochs=60, minimum=3_000, maximum=12_000)
    n_steps = check_count(n_steps, "n_steps")
    net = seeded_build(lambda: ConditionalGenerator(data.p, data.k, latent_dim, hidden), generator).to(device)

    def loss(rows: Tensor, step_generator: torch.Generator) -> Tensor:
        u, c = data.split(rows)
        fake = net(c, net.noise(c.shape[0], step_generator, c))
        return mmd2_loss(torch.cat([u, weight * c], 1), torch.cat([fake, weight * c], 1), bandwidths)

    task = LossTask(net, loss, n_steps=n_steps, learning_rate=learning_rate)
    history = fit(task, data, n_steps=n_steps, batch_size=batch_size, generator=generator,
                  progress=progress, description="mmd")
    details = {"n_steps": n_steps, "bandwidths": bandwidths, "context_weight": weight,
               "final_mmd2": float(history.losses["loss"][-1])}
    return _result("mmd", GeneratorPosterior(copy.deepcopy(net), data, "MMD"), data, n_samples, generator,
                   timer, details)
