r"""Mean-field training of a two-layer network as a Wasserstein gradient flow of its neurons.

The network f_rho(x) = int a sigma(w.x) d rho(a, w) is a function of the measure rho of its
neurons theta = (a, w) in R^{1+d}; with M neurons, rho = (1/M) sum_j delta_{theta_j} and
f_rho = (1/M) sum_j a_j sigma(w_j.x), the mean-field network. The risk
R[rho] = (1/n) sum_i l(y_i, f_rho(x_i)) has first variation
dR/drho(a, w) = (1/n) sum_i l'(y_i, f_rho(x_i)) a sigma(w.x_i), so its Wasserstein gradient flow
moves every neuron with the velocity of the text (Nitanda & Suzuki 2017; Chizat & Bach 2018;
Mei, Montanari & Nguyen 2018):

    v(a, w) = -(1/n) sum_i grad_{(a, w)} [a sigma(w.x_i)] l'(y_i, f_rho(x_i)).

Since dR/d theta_j = (1/M) grad dR/drho(theta_j), the particle flow with step h is gradient descent
on the parameters of ``TwoLayer(..., scaling="mean-field")`` with learning rate h M.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from measureflow._core import check_particles
from measureflow.flows import Functional
from measureflow.nets.activations import activation
from measureflow.nets.losses import loss_function
from measureflow.nets.two_layer import TwoLayer

__all__ = ["MeanFieldRisk", "neurons_of", "set_neurons"]


def neurons_of(model: TwoLayer) -> Tensor:
    """The neurons (a_j, w_j) of a network as particles ``(M, 1 + d)``."""
    return torch.cat([model.a.detach()[:, None], model.w.detach()], 1).clone()


@torch.no_grad()
def set_neurons(model: TwoLayer, particles: Tensor) -> TwoLayer:
    """Write particles ``(M, 1 + d)`` into the network's (a, w) in place; returns the network."""
    if particles.shape != (model.width, model.dim + 1):
        raise ValueError(f"particles must have shape ({model.width}, {model.dim + 1}), "
                         f"got {tuple(particles.shape)}")
    model.a.copy_(particles[:, 0])
    model.w.copy_(particles[:, 1:])
    return model


@dataclass(frozen=True, eq=False)
class MeanFieldRisk(Functional):
    r"""R[rho] = (1/n) sum_i l(y_i, f_rho(x_i)) over neurons rho, as a functional of ``flows``.

    Particles are neurons theta_j = (a_j, w_j) ``(M, 1 + d)``; ``x`` ``(n, d)`` and ``y``
    ``(n,)`` the training data; ``loss`` a name of :data:`measureflow.nets.LOSSES` or a Loss.
    With S = sigma(X W^T), D = sigma'(X W^T) ``(n, M)`` and g_i = l'(y_i, f(x_i)), the
    velocity is three matrix products:

        v_a = -(1/n) S^T g,     v_w = -(1/n) a * ((D * g)^T X).

    ``value`` is the risk, ``predict(particles, x)`` the network's output. The data are cast to
    the particles' dtype and device at each call (no copy when they already match).

    >>> x, y = torch.randn(20, 2), torch.randn(20)
    >>> F = MeanFieldRisk(x, y)
    >>> theta = torch.randn(100, 3)
    >>> F.velocity(theta).shape
    torch.Size([100, 3])
    """

    x: Any
    y: Any
    activation: Any = "relu"
    loss: Any = "mse"

    def __post_init__(self) -> None:
        inputs = check_particles(self.x, "x")
        targets = torch.as_tensor(self.y).to(inputs.dtype).reshape(-1)
        if targets.shape[0] != inputs.shape[0]:
            raise ValueError(f"y must have {inputs.shape[0]} entries (one per row of x), "
                             f"got {targets.shape[0]}")
        if not bool(torch.isfinite(targets).all()):
            raise ValueError("y contains NaN or infinite values")
        object.__setattr__(self, "x", inputs)
        object.__setattr__(self, "y", targets)
        object.__setattr__(self, "activation", activation(self.activation))
        object.__setattr__(self, "loss", loss_function(self.loss))

    def _data(self, particles: Tensor) -> tuple[Tensor, Tensor]:
        if particles.ndim != 2 or particles.shape[1] != self.x.shape[1] + 1:
            raise ValueError(
                f"particles must be neurons (a, w) of shape (M, {self.x.shape[1] + 1}), "
                f"got {tuple(particles.shape)}"
            )
        return (self.x.to(dtype=particles.dtype, device=particles.device),
                self.y.to(dtype=particles.dtype, device=particles.device))

    def predict(self, particles: Tensor, x: Tensor) -> Tensor:
        """f_rho(x) = (1/M) sum_j a_j sigma(w_j.x) at ``x`` ``(m, d)``: ``(m,)``."""
        a, w = particles[:, 0], particles[:, 1:]
        return self.activation(x @ w.T) @ a / particles.shape[0]

    def value(self, x: Tensor) -> Tensor:
        inputs, targets = self._data(x)
        return self.loss.value(self.predict(x, inputs), targets).mean()

    def velocity(self, x: Tensor, *, time: float = 0.0, generator: torch.Generator | None = None) -> Tensor:
        inputs, targets = self._data(x)
        a, w = x[:, 0], x[:, 1:]
        features, slopes = self.activation.both(inputs @ w.T)
        outputs = features @ a / x.shape[0]
        g = self.loss.derivative(outputs, targets) / inputs.shape[0]
        velocity = torch.empty_like(x)
        velocity[:, 0] = -(g @ features)
        # ((D * g)^T X)^T = (g * X)^T D: g scales the (n, d) inputs rather than an (n, M) copy of D,
        # and the product is (d, n) @ (n, M), several times faster than (M, n) @ (n, d) on the CPU.
        velocity[:, 1:] = -(((g[:, None] * inputs).T @ slopes) * a).T
        return velocity

    @property
    def label(self) -> str:
        return f"MeanFieldRisk({self.loss.name}, {self.activation.name})"

