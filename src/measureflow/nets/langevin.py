r"""Gradient Langevin dynamics as a torch optimizer: SGD plus Gaussian noise (GLD / SGLD).

One step of :class:`LangevinSGD` on every parameter tensor theta with gradient g is

    theta <- theta - lr g + sqrt(2 lr / beta) xi,      xi ~ N(0, I),

the Euler-Maruyama discretization of d theta = -grad L(theta) dt + sqrt(2 / beta) dB, whose
stationary law is the Gibbs measure exp(-beta L) up to an O(lr) bias. With the exact gradient
of L this is GLD (the unadjusted Langevin algorithm); with an unbiased minibatch gradient it is
SGLD (Welling & Teh 2011), the setting of Raginsky, Rakhlin & Telgarsky (2017).

Randomness: the noise is drawn from the ``generator`` handed to :meth:`LangevinSGD.step` (or
the one given at construction), parameter by parameter in the order of the parameter groups,
on the generator's device and then moved to the parameter's. The optimizer holds no random
state of its own, so its ``state_dict`` is SGD's (the generator is the caller's to save;
:func:`measureflow.nets.train` passes the loop's generator, whose state the checkpoint holds,
which makes a resumed run equal the uninterrupted one).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor

from measureflow._core import check_positive

__all__ = ["LangevinSGD"]


class LangevinSGD(torch.optim.Optimizer):
    r"""SGD with injected Gaussian noise: theta <- theta - lr grad + sqrt(2 lr / beta) xi.

    ``lr`` is the step size h and ``beta`` the inverse temperature of the Gibbs measure
    exp(-beta L) the iterates sample (L: the loss whose gradient fills ``.grad``). The noise is
    added to every parameter of the groups, also to one whose ``.grad`` is ``None`` (its
    gradient is read as zero: a parameter the loss does not see diffuses freely, as in the
    continuous dynamics).

    For a quadratic loss L(theta) = a (theta - m)^2 / 2 the iterates form the AR(1) chain
    theta' - m = (1 - h a)(theta - m) + sqrt(2 h / beta) xi, stationary for 0 < h a < 2 with
    variance (2 h / beta) / (1 - (1 - h a)^2) = 1 / (beta a (1 - h a / 2)).

    >>> theta = torch.nn.Parameter(torch.zeros(3))
    >>> optimizer = LangevinSGD([theta], lr=0.1, beta=50.0)
    >>> theta.grad = torch.ones(3)
    >>> optimizer.step(generator=torch.Generator().manual_seed(0))
    >>> noise = torch.randn(3, generator=torch.Generator().manual_seed(0))
    >>> torch.testing.assert_close(theta.detach(), -0.1 + (2 * 0.1 / 50.0) ** 0.5 * noise)
    """

    def __init__(self, params: Iterable[Tensor] | Iterable[dict[str, Any]], lr: float, beta: float,
                 generator: torch.Generator | None = None) -> None:
        lr = check_positive(lr, "lr")
        beta = check_positive(beta, "beta")
        if generator is not None and not isinstance(generator, torch.Generator):
            raise TypeError(f"generator must be a torch.Generator or None, got {type(generator).__name__}")
        super().__init__(params, {"lr": lr, "beta": beta})
        # Deliberately not a param-group entry: a generator is not state_dict material.
        self.generator = generator

    @torch.no_grad()
    def step(self, closure: Callable[[], Tensor] | None = None, *,
             generator: torch.Generator | None = None) -> Tensor | None:
        """One Langevin step; ``generator`` (default: the one given at construction) draws xi."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        generator = self.generator if generator is None else generator
        for group in self.param_groups:
            lr, beta = group["lr"], group["beta"]
            scale = math.sqrt(2 * lr / beta)
            for parameter in group["params"]:
                if generator is None:
                    noise = torch.randn_like(parameter)
                else:
                    noise = torch.randn(parameter.shape, generator=generator, dtype=parameter.dtype,
                                        device=generator.device).to(parameter.device)
                if parameter.grad is not None:
                    parameter.add_(parameter.grad, alpha=-lr)
                parameter.add_(noise, alpha=scale)
        return loss
