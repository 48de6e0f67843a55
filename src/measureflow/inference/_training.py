r"""The training set the neural posterior methods share, and their model selection on held-out data.

:func:`training_set` spends the budget (prior draws, batched simulations, NaN rows dropped), maps
parameters to unconstrained coordinates u (``log theta`` under a log-normal prior) and observations
to the simulator's features c (``log y`` for Lotka-Volterra), standardizes both with the training
rows' mean and sd, holds out a validation fraction, and packs each split as one tensor
``[u, c]`` ``(n, p + k)`` so that the shared loop :func:`measureflow.generative.train.train`
draws (u, c) pairs as rows. :class:`BestOnValidation` keeps the weights with the lowest held-out
loss (early stopping without stopping: the loop runs its steps and the best snapshot is returned).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from measureflow._core import check_count, check_positive, make_generator
from measureflow.generative.train import TrainHistory, TrainTask, train
from measureflow.inference.base import (
    Standardizer,
    check_budget,
    check_observation,
    from_unconstrained,
    simulate_budget,
    to_unconstrained,
)
from measureflow.inference.simulators import Simulator

__all__ = ["BestOnValidation", "LossTask", "TrainingSet", "default_steps", "fit", "training_set"]


@dataclass
class TrainingSet:
    """Standardized training pairs for a simulator and one observation (see the module docstring).

    ``train`` and ``validation`` are ``(n, p + k)`` float32 tensors ``[u, c]``; ``context`` is the
    observation's standardized features ``(1, k)``; ``p`` and ``k`` the two widths.
    """

    simulator: Simulator
    observation: Tensor
    train: Tensor
    validation: Tensor
    context: Tensor
    parameters: Standardizer
    features: Standardizer
    p: int
    k: int
    n_simulations: int
    n_valid: int

    def split(self, rows: Tensor) -> tuple[Tensor, Tensor]:
        """``(u, c)`` from packed rows ``(n, p + k)``."""
        return rows[:, : self.p], rows[:, self.p:]

    def encode_observation(self, observation: Tensor) -> Tensor:
        """An observation ``(d_y,)`` as standardized features ``(1, k)`` (float32)."""
        y = check_observation(self.simulator, observation)
        c = self.features.forward(self.simulator.observation_features(y[None]))
        return c.to(self.train.dtype)

    def to_theta(self, u_standard: Tensor) -> Tensor:
        """Standardized unconstrained draws ``(n, p)`` back to parameters theta (float64, CPU)."""
        u = self.parameters.inverse(u_standard.detach().to("cpu", torch.float64))
        return from_unconstrained(self.simulator, u)


def training_set(simulator: Simulator, observation: Tensor, budget: int, generator: torch.Generator | None, *,
                 validation_fraction: float = 0.1, progress: bool = False, device: str = "cpu",
                 simulations: tuple[Tensor, Tensor] | None = None) -> TrainingSet:
    """Simulate ``budget`` pairs and build the standardized :class:`TrainingSet` (see the module docstring).

    The validation rows are the last ``ceil(validation_fraction n_valid)`` of the (already random)
    simulated rows; the standardizers use the training rows only. ``simulations``: see
    :func:`~measureflow.inference.base.simulate_budget`."""
    budget = check_budget(budget, minimum=20)
    y_obs = check_observation(simulator, observation)
    theta, y, n_failed = simulate_budget(simulator, budget, generator, progress=progress,
                                         simulations=simulations)
    n_valid = int(theta.shape[0])
    n_validation = max(1, math.ceil(validation_fraction * n_valid))
    if n_valid - n_validation < 10:
        raise ValueError(f"only {n_valid} of {budget} simulations succeeded; raise the budget")
    u = to_unconstrained(simulator, theta)
    c = simulator.observation_features(y)
    parameters = Standardizer(u[:-n_validation])
    features = Standardizer(c[:-n_validation])
    packed = torch.cat([parameters.forward(u), features.forward(c)], dim=1)
    packed = packed.to(device=device, dtype=torch.float32)
    context = features.forward(simulator.observation_features(y_obs[None]))
    return TrainingSet(simulator=simulator, observation=y_obs, train=packed[:-n_validation],
                       validation=packed[-n_validation:],
                       context=context.to(device=device, dtype=torch.float32), parameters=parameters,
                       features=features, p=int(u.shape[1]),
                       k=int(c.shape[1]), n_simulations=budget, n_valid=n_valid)


def fit(task: TrainTask, data: TrainingSet, *, n_steps: int, batch_size: int,
        generator: torch.Generator | None, progress: bool, description: str) -> TrainHistory:
    """Run ``task`` on the shared loop over ``data.train`` (batches of at most the training size);
    ``generator=None`` draws a fresh seed, as everywhere else (the loop itself needs a generator)."""
    generator = generator if generator is not None else make_generator(None)
    return train(task, data.train, n_steps=n_steps, batch_size=min(batch_size, data.train.shape[0]),
                 generator=generator, progress=progress, description=description)


def default_steps(budget: int, batch_size: int, *, epochs: float, minimum: int, maximum: int) -> int:
    """``epochs`` passes over ``budget`` rows in batches of ``batch_size``, clipped to [minimum, maximum]:
    small budgets need many passes (and overfit without model selection), large ones fewer."""
    steps = math.ceil(epochs * budget / batch_size)
    return int(min(max(steps, minimum), maximum))


class BestOnValidation:
    """Every ``every`` steps, evaluate ``loss(validation)`` without gradients and keep a copy of
    ``model``'s weights if it is the lowest so far; :meth:`restore` loads the best copy. With
    ``patience``, :attr:`stop` turns true once ``patience`` evaluations in a row brought no new
    lowest value (early stopping, as sbi trains its density estimators).

    The held-out loss is the method's own objective on rows it never trained on (negative log
    likelihood for NPE, the DSM loss for diffusion), so the snapshot is the one that generalizes
    best, not the one that memorized the training rows last."""

    def __init__(self, model: nn.Module, loss: Callable[[], Tensor], every: int,
                 patience: int | None = None) -> None:
        self.model, self.loss, self.every = model, loss, check_count(every, "every")
        self.patience = None if patience is None else check_count(patience, "patience")
        self.stop = False
        self.best = math.inf
        self.best_step = 0
        self.state: dict[str, Tensor] | None = None
        self.history: list[tuple[int, float]] = []

    def __call__(self, step: int) -> None:
        if step % self.every:
            return
        with torch.no_grad():
            value = float(self.loss())
        self.history.append((step, value))
        if math.isfinite(value) and value < self.best:
            self.best, self.best_step = value, step
            self.state = copy.deepcopy(self.model.state_dict())
        elif self.patience is not None and step - self.best_step >= self.patience * self.every:
            self.stop = True

    def restore(self) -> nn.Module:
        if self.state is not None:
            self.model.load_state_dict(self.state)
        return self.model


class LossTask(TrainTask):
    r"""One Adam step on ``loss(batch, generator)`` (a scalar to minimize) per call: the learning rate
    decays on a cosine to 0 over ``n_steps``, the gradient norm is clipped at ``grad_clip``, and
    ``after_step(k)`` (e.g. a :class:`BestOnValidation`) is called with the number of completed steps."""

    def __init__(self, model: nn.Module, loss: Callable[[Tensor, torch.Generator], Tensor], *, n_steps: int,
                 learning_rate: float, grad_clip: float = 5.0,
                 after_step: Callable[[int], None] | None = None) -> None:
        self.model, self.loss = model, loss
        self.grad_clip = check_positive(grad_clip, "grad_clip")
        learning_rate = check_positive(learning_rate, "learning_rate")
        self.optimizer = torch.optim.Adam(model.parameters(), lr=learning_rate)
        self.scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(self.optimizer,
                                                                    T_max=check_count(n_steps, "n_steps"))
        self.after_step = after_step
        self.completed = 0

    @property
    def stop_requested(self) -> bool:
        """True when ``after_step`` asks to stop (a :class:`BestOnValidation` out of patience)."""
        return bool(getattr(self.after_step, "stop", False))

    def step(self, batch: Tensor, generator: torch.Generator) -> dict[str, Tensor]:
        with torch.enable_grad():
            loss = self.loss(batch, generator)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.grad_clip)
        self.optimizer.step()
        self.scheduler.step()
        self.completed += 1
        if self.after_step is not None:
            self.after_step(self.completed)
        return {"loss": loss.detach()}

    def state_dict(self) -> dict[str, Any]:
        return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(), "completed": self.completed}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.completed = int(state["completed"])
