r"""Pointwise losses l(y, f) for training networks, with their derivatives l'(y, f) = dl/df.

- ``"mse"``: l = (f - y)^2 / 2, l' = f - y (regression);
- ``"logistic"``: l = log(1 + exp(-y f)), l' = -y sigmoid(-y f) (labels y in {-1, +1});
- ``"exp"``: l = exp(-y f), l' = -y exp(-y f) (labels y in {-1, +1}).

The empirical risk is the mean (1/n) sum_i l(y_i, f(x_i)).

>>> LOSSES["logistic"].value(torch.tensor([0.0]), torch.tensor([1.0]))
tensor([0.6931])
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["LOSSES", "ExpLoss", "LogisticLoss", "Loss", "SquaredLoss", "loss_function"]


class Loss(ABC):
    """l(y, f) elementwise with its derivative in f; ``classification`` says labels are +-1."""

    name = "loss"
    classification = False

    @abstractmethod
    def value(self, f: Tensor, y: Tensor) -> Tensor:
        """l(y, f), elementwise."""

    @abstractmethod
    def derivative(self, f: Tensor, y: Tensor) -> Tensor:
        """dl/df (y, f), elementwise."""


@dataclass(frozen=True)
class SquaredLoss(Loss):
    """l = (f - y)^2 / 2."""

    name = "mse"

    def value(self, f: Tensor, y: Tensor) -> Tensor:
        return 0.5 * (f - y).square()

    def derivative(self, f: Tensor, y: Tensor) -> Tensor:
        return f - y


@dataclass(frozen=True)
class LogisticLoss(Loss):
    """l = log(1 + exp(-y f)), computed as softplus(-y f) (no overflow for large margins)."""

    name = "logistic"
    classification = True

    def value(self, f: Tensor, y: Tensor) -> Tensor:
        return torch.nn.functional.softplus(-y * f)

    def derivative(self, f: Tensor, y: Tensor) -> Tensor:
        return -y * torch.sigmoid(-y * f)


@dataclass(frozen=True)
class ExpLoss(Loss):
    """l = exp(-y f)."""

    name = "exp"
    classification = True

    def value(self, f: Tensor, y: Tensor) -> Tensor:
        return torch.exp(-y * f)

    def derivative(self, f: Tensor, y: Tensor) -> Tensor:
        return -y * torch.exp(-y * f)


LOSSES: dict[str, Loss] = {"mse": SquaredLoss(), "logistic": LogisticLoss(), "exp": ExpLoss()}


def loss_function(value: str | Loss) -> Loss:
    """A :class:`Loss` from a name of :data:`LOSSES` or a Loss object."""
    if isinstance(value, Loss):
        return value
    if isinstance(value, str) and value in LOSSES:
        return LOSSES[value]
    raise ValueError(f"unknown loss {value!r}; choose one of {', '.join(LOSSES)}")
