r"""A conditional score-based diffusion model of the posterior (neural posterior score estimation).

Sharrock et al. (2024), Geffner, Papamakarios & Mnih (2023): the forward SDE of
:mod:`measureflow.generative.diffusion` acts on the parameters only, u_t = alpha(t) u_0 +
sigma(t) z, while the observation is a fixed context. Denoising score matching on simulated pairs,

    min_w E_{(u_0, c) ~ p, t, z} || eps_w(alpha(t) u_0 + sigma(t) z, t, c) - z ||^2,

learns -sigma(t) grad_u log p_t(u | c) for every c at once (the loss is an average over c of the
unconditional DSM loss of p(u | c)), so the estimate is **amortized**. Sampling runs the reverse
process of the same SDE with the score s(u, t) = -eps_w(u, t, c_obs) / sigma(t) from the prior
N(0, I) (VP SDE), by the samplers of :func:`measureflow.generative.diffusion.reverse_process`.

Network: :class:`~measureflow.generative.nets.MLPScore` with ``context_dim = k`` (the standardized
observation features shift every layer, as the time does). Training through the shared loop,
with the weights of the lowest held-out DSM loss kept (evaluated on fixed noise and times, so
the values are comparable between evaluations).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from measureflow._core import check_count, seeded_build
from measureflow.generative.diffusion.losses import dsm_loss
from measureflow.generative.diffusion.sampling import reverse_process
from measureflow.generative.diffusion.sde import VPSDE, broadcast_time
from measureflow.generative.nets import MLPScore
from measureflow.inference._training import (
    BestOnValidation,
    LossTask,
    TrainingSet,
    default_steps,
    fit,
    training_set,
)
from measureflow.inference.base import PosteriorResult, Timer, check_output_finite
from measureflow.inference.simulators import Simulator

__all__ = ["DiffusionPosterior", "diffusion_posterior"]

_VALIDATION_SEED = 20_240_607  # fixed noise for the held-out loss (any constant works)


class DiffusionPosterior:
    """The trained conditional noise predictor with its SDE and coordinates; :meth:`sample` serves any
    observation."""

    def __init__(self, net: MLPScore, sde: VPSDE, data: TrainingSet, *, sampler: str,
                 sampler_steps: int) -> None:
        self.net, self.sde, self.data = net.eval(), sde, data
        self.sampler, self.sampler_steps = sampler, sampler_steps

    def sample(self, observation: Tensor, n: int, generator: torch.Generator | None = None) -> Tensor:
        """``n`` draws of theta ``(n, p)`` given one observation ``(d_y,)``; all noise from ``generator``."""
        n = check_count(n, "n")
        c = self.data.encode_observation(observation)

        def score(u: Tensor, t: Tensor) -> Tensor:
            _, sigma = self.sde.marginal_coefficients(t)
            return -self.net(u, t, c.expand(u.shape[0], -1)) / broadcast_time(sigma, u)

        start = self.sde.prior_sample((n, self.data.p), generator, dtype=c.dtype, device=c.device)
        with torch.no_grad():
            u = reverse_process(score, self.sde, start, self.sampler_steps, method=self.sampler,
                                generator=generator).x
        return self.data.to_theta(check_output_finite(u, "the diffusion posterior"))


def diffusion_posterior(simulator: Simulator, observation: Any, budget: int, *, n_samples: int = 10_000,
                        n_steps: int | None = None, batch_size: int = 256, learning_rate: float = 1e-3,
                        hidden: int = 128, depth: int = 3, sampler: str = "sde", sampler_steps: int = 500,
                        generator: torch.Generator | None = None, progress: bool = False,
                        device: str = "cpu", simulations: tuple[Tensor, Tensor] | None = None,
                        ) -> PosteriorResult:
    """Posterior draws from a conditional diffusion model (see the module docstring). Amortized.

    ``n_steps`` defaults to 100 passes over the training rows, between 3,000 and 15,000 steps;
    ``sampler`` and ``sampler_steps`` choose the reverse-time sampler (``"sde"``: Euler-Maruyama on
    the reverse SDE; ``"ode"``: the probability-flow ODE; see ``reverse_process``).
    """
    timer = Timer()
    n_samples = check_count(n_samples, "n_samples")
    sampler_steps = check_count(sampler_steps, "sampler_steps")
    data = training_set(simulator, observation, budget, generator, progress=progress, device=device,
                        simulations=simulations)
    if n_steps is None:
        n_steps = default_steps(data.train.shape[0], batch_size, epochs=100, minimum=3_000, maximum=15_000)
    n_steps = check_count(n_steps, "n_steps")
    sde = VPSDE()
    net = seeded_build(lambda: MLPScore(data.p, hidden=hidden, depth=depth, context_dim=data.k), generator)
    net = net.to(device)

    def loss(rows: Tensor, step_generator: torch.Generator | None) -> Tensor:
        u, c = data.split(rows)
        return dsm_loss(lambda x, t: net(x, t, c), sde, u, step_generator)

    def validation_loss() -> Tensor:
        fixed = torch.Generator(device=data.validation.device).manual_seed(_VALIDATION_SEED)
        return loss(data.validation, fixed)

    best = BestOnValidation(net, validation_loss, every=max(n_steps // 40, 25))
    task = LossTask(net, loss, n_steps=n_steps, learning_rate=learning_rate, after_step=best)
    fit(task, data, n_steps=n_steps, batch_size=batch_size, generator=generator, progress=progress,
        description="diffusion")
    posterior = DiffusionPosterior(best.restore(), sde, data, sampler=sampler, sampler_steps=sampler_steps)
    theta = posterior.sample(data.observation, n_samples, generator)
    return PosteriorResult(theta=theta, observation=data.observation, method="diffusion",
                           n_simulations=data.n_simulations, n_valid=data.n_valid, amortized=True,
                           wall_time=timer.elapsed(),
                           details={"n_steps": n_steps, "best_step": best.best_step,
                                    "validation_dsm": best.best, "sampler": sampler,
                                    "sampler_steps": sampler_steps},
                           estimator=posterior)
