r"""Neural posterior estimation (NPE) with a conditional normalizing flow: the baseline users pick today.

Papamakarios & Murray (2016), Greenberg, Nonnenmacher & Macke (2019): with pairs (theta_i, y_i)
drawn from the joint p(theta) p(y | theta), maximize

    sum_i log q_w(theta_i | y_i)

over a conditional density q_w. Since E_{p(theta, y)}[log q(theta | y)] = -E_{p(y)} KL(p(theta | y)
|| q(theta | y)) + const, the maximizer is the posterior for every y at once: the estimate is
**amortized** (one training, any observation). Single-round NPE with proposals equal to the prior
needs no correction.

Here q_w is a zuko neural spline flow (Durkan et al. 2019) on the standardized unconstrained
parameters u (``log theta`` for Lotka-Volterra), conditioned on the standardized observation
features c (``log y``) through its hypernetworks; sampling pushes N(0, I) noise drawn from the
caller's generator through the inverse transform. Training: Adam with a cosine decay, minibatches
of (u, c) pairs, and the weights with the lowest held-out negative log-likelihood kept (10% of
the simulations held out), as sbi does with early stopping.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from measureflow._core import check_count, seeded_build
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

__all__ = ["NPEPosterior", "npe"]


FLOWS = ("nsf", "maf")


def _conditional_flow(flow: str, p: int, k: int, transforms: int, hidden: int, bins: int) -> nn.Module:
    import zuko  # imported where used: zuko patches torch.distributions on import

    if flow == "maf":
        return zuko.flows.MAF(p, context=k, transforms=transforms, hidden_features=(hidden, hidden))
    return zuko.flows.NSF(p, context=k, bins=bins, transforms=transforms, hidden_features=(hidden, hidden))


class NPEPosterior:
    """The trained conditional flow q(u | c) with the coordinates around it: :meth:`sample` any
    observation, :meth:`log_prob` of standardized pairs."""

    def __init__(self, flow: nn.Module, data: TrainingSet) -> None:
        self.flow, self.data = flow.eval(), data

    def log_prob_standard(self, u: Tensor, c: Tensor) -> Tensor:
        """log q(u | c) in standardized coordinates, ``(n,)`` for ``(n, p)`` and ``(n, k)``."""
        return self.flow(c).log_prob(u)

    def sample(self, observation: Tensor, n: int, generator: torch.Generator | None = None) -> Tensor:
        """``n`` draws of theta ``(n, p)`` given one observation ``(d_y,)``; noise from ``generator``."""
        n = check_count(n, "n")
        c = self.data.encode_observation(observation)
        with torch.no_grad():
            distribution = self.flow(c.expand(n, -1))
            noise = torch.randn((n, self.data.p), generator=generator, dtype=c.dtype,
                                device=generator.device if generator is not None else c.device)
            u = distribution.transform.inv(noise.to(c.device))
        return self.data.to_theta(check_output_finite(u, "the NPE flow"))


def npe(simulator: Simulator, observation: Any, budget: int, *, n_samples: int = 10_000,
        n_steps: int | None = None, batch_size: int = 256, learning_rate: float = 1e-3,
        flow: str = "nsf", transforms: int = 5, hidden: int = 64, bins: int = 8, patience: int | None = 20,
        generator: torch.Generator | None = None, progress: bool = False, device: str = "cpu",
        simulations: tuple[Tensor, Tensor] | None = None) -> PosteriorResult:
    """Posterior draws by NPE (see the module docstring). Amortized: ``result.estimator.sample(y, n)``.

    ``flow``: ``"nsf"`` (neural spline flow, the default) or ``"maf"`` (masked affine
    autoregressive, sbi's default: cheaper per step, Gaussian-like conditionals). ``n_steps`` is at
    most 300 passes over the training rows, between 500 and 20,000 steps; the held-out loss is
    evaluated once per pass (every 10 to 100 steps) and the best weights are kept; training stops
    after ``patience`` evaluations without a new best (None: runs every step).
    """
    timer = Timer()
    n_samples = check_count(n_samples, "n_samples")
    data = training_set(simulator, observation, budget, generator, progress=progress, device=device,
                        simulations=simulations)
    if flow not in FLOWS:
        raise ValueError(f"unknown flow {flow!r}; choose one of {', '.join(FLOWS)}")
    if n_steps is None:
        n_steps = default_steps(data.train.shape[0], batch_size, epochs=300, minimum=500, maximum=20_000)
    n_steps = check_count(n_steps, "n_steps")
    kind = flow
    flow = seeded_build(lambda: _conditional_flow(kind, data.p, data.k, transforms, hidden, bins), generator)
    flow = flow.to(device)

    def nll(rows: Tensor, _generator: torch.Generator | None = None) -> Tensor:
        u, c = data.split(rows)
        return -flow(c).log_prob(u).mean()

    epoch = -(-data.train.shape[0] // batch_size)
    best = BestOnValidation(flow, lambda: nll(data.validation), every=min(max(epoch, 10), 100),
                            patience=patience)
    task = LossTask(flow, nll, n_steps=n_steps, learning_rate=learning_rate, after_step=best)
    history = fit(task, data, n_steps=n_steps, batch_size=batch_size, generator=generator, progress=progress,
                  description="npe")
    posterior = NPEPosterior(best.restore(), data)
    theta = posterior.sample(observation, n_samples, generator)
    return PosteriorResult(
        theta=theta, observation=data.observation, method="npe", n_simulations=data.n_simulations,
        n_valid=data.n_valid, amortized=True,
        wall_time=timer.elapsed(),
        details={"flow": kind, "n_steps": n_steps, "steps_run": task.completed,
                 "best_step": best.best_step, "validation_nll": best.best,
                 "final_train_loss": float(history.losses["loss"][-1])},
        estimator=posterior)
