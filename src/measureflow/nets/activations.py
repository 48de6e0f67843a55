r"""Activation functions sigma with their derivatives, for two-layer networks and their kernels.

Each activation is a small frozen object with ``__call__`` (sigma) and ``derivative`` (sigma'),
both elementwise; the closed-form NTK and the mean-field velocity need sigma' explicitly, so
autograd is never asked for it. :data:`ACTIVATIONS` maps the names the API accepts to objects.

>>> z = torch.tensor([-1.0, 0.5])
>>> ReLU()(z), ReLU().derivative(z)
(tensor([0.0000, 0.5000]), tensor([0., 1.]))
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass

import torch
from torch import Tensor

from measureflow._core import check_positive

__all__ = ["ACTIVATIONS", "Activation", "Erf", "ReLU", "Sigmoid", "SmoothReLU", "Tanh", "activation"]


class Activation(ABC):
    """sigma: R -> R applied elementwise, with its derivative sigma'."""

    name = "activation"

    @abstractmethod
    def __call__(self, z: Tensor) -> Tensor:
        """sigma(z), elementwise."""

    @abstractmethod
    def derivative(self, z: Tensor) -> Tensor:
        """sigma'(z), elementwise."""

    def both(self, z: Tensor) -> tuple[Tensor, Tensor]:
        """(sigma(z), sigma'(z)); subclasses share work between the two where they can."""
        return self(z), self.derivative(z)


@dataclass(frozen=True)
class ReLU(Activation):
    """sigma(z) = max(z, 0), sigma'(z) = 1{z > 0} (0 at the kink)."""

    name = "relu"

    def __call__(self, z: Tensor) -> Tensor:
        return torch.relu(z)

    def derivative(self, z: Tensor) -> Tensor:
        return (z > 0).to(z.dtype)


@dataclass(frozen=True)
class SmoothReLU(Activation):
    """The smooth ReLU sigma(z) = log(1 + exp(s z)) / s (softplus of sharpness s); sigma' = sigmoid(s z).

    As s -> infinity it tends to the ReLU, uniformly within log(2) / s.
    """

    sharpness: float = 5.0
    name = "smooth-relu"

    def __post_init__(self) -> None:
        check_positive(self.sharpness, "sharpness")

    def __call__(self, z: Tensor) -> Tensor:
        return torch.nn.functional.softplus(z, beta=self.sharpness, threshold=20.0)

    def derivative(self, z: Tensor) -> Tensor:
        return torch.sigmoid(self.sharpness * z)


@dataclass(frozen=True)
class Sigmoid(Activation):
    """sigma(z) = 1 / (1 + exp(-z)), sigma' = sigma (1 - sigma)."""

    name = "sigmoid"

    def __call__(self, z: Tensor) -> Tensor:
        return torch.sigmoid(z)

    def derivative(self, z: Tensor) -> Tensor:
        s = torch.sigmoid(z)
        return s * (1 - s)

    def both(self, z: Tensor) -> tuple[Tensor, Tensor]:
        s = torch.sigmoid(z)
        return s, s * (1 - s)


@dataclass(frozen=True)
class Tanh(Activation):
    """sigma(z) = tanh z, sigma' = 1 - tanh^2 z."""

    name = "tanh"

    def __call__(self, z: Tensor) -> Tensor:
        return torch.tanh(z)

    def derivative(self, z: Tensor) -> Tensor:
        return 1 - torch.tanh(z).square()

    def both(self, z: Tensor) -> tuple[Tensor, Tensor]:
        t = torch.tanh(z)
        return t, 1 - t.square()


@dataclass(frozen=True)
class Erf(Activation):
    """sigma(z) = erf z, sigma'(z) = (2 / sqrt(pi)) exp(-z^2)."""

    name = "erf"

    def __call__(self, z: Tensor) -> Tensor:
        return torch.erf(z)

    def derivative(self, z: Tensor) -> Tensor:
        return (2 / math.sqrt(math.pi)) * torch.exp(-z.square())


ACTIVATIONS: dict[str, Activation] = {
    "relu": ReLU(),
    "smooth-relu": SmoothReLU(),
    "sigmoid": Sigmoid(),
    "tanh": Tanh(),
    "erf": Erf(),
}
"""The activations by name; ``"smooth-relu"`` has sharpness 5 (use ``SmoothReLU(s)`` for another)."""


def activation(value: str | Activation) -> Activation:
    """An :class:`Activation` from a name of :data:`ACTIVATIONS` or an Activation object."""
    if isinstance(value, Activation):
        return value
    if isinstance(value, str) and value in ACTIVATIONS:
        return ACTIVATIONS[value]
    raise ValueError(
        f"unknown activation {value!r}; choose one of {', '.join(ACTIVATIONS)} or pass an Activation "
        "object such as SmoothReLU(sharpness=10)"
    )
