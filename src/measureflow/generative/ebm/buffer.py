r"""Persistent Langevin chains for maximum-likelihood training of energy-based models.

The negative log-likelihood of the model p_theta(x) = exp(-E_theta(x)) / Z_theta has gradient

    grad_theta NLL(theta) = E_data[grad_theta E_theta(x)] - E_{p_theta}[grad_theta E_theta(x)],

and the second expectation needs samples of the model. Persistent contrastive divergence (PCD,
Tieleman 2008) keeps a set of chains alive across training steps, so each step only has to move
them a little toward the (slowly changing) model; a small fraction is restarted from a broad
distribution every step so the chains keep exploring (the replay buffer of Du & Mordatch 2019).

The chains move by the unadjusted Langevin algorithm (ULA), the Euler-Maruyama discretization of
dX = -grad E(X) dt + sqrt(2) dB, whose stationary law is close to p_theta for a small step h:

    x <- x - h grad_x E(x) + sqrt(2 h) z,     z ~ N(0, I).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

import torch
from torch import Tensor

from measureflow._core import check_count, check_positive

__all__ = ["INIT_DISTRIBUTIONS", "BufferBatch", "ReplayBuffer", "langevin"]

INIT_DISTRIBUTIONS = ("uniform", "normal")


@contextlib.contextmanager
def _frozen(energy: Callable[[Tensor], Tensor]) -> Iterator[None]:
    """Switch off ``requires_grad`` of a module's parameters for the duration (and restore it):
    the chains need grad_x E only, and a graph through the parameters would cost a backward pass
    into every weight at each Langevin step."""
    if not isinstance(energy, torch.nn.Module):
        yield
        return
    flags = [(parameter, parameter.requires_grad) for parameter in energy.parameters()]
    try:
        for parameter, _ in flags:
            parameter.requires_grad_(False)
        yield
    finally:
        for parameter, flag in flags:
            parameter.requires_grad_(flag)


def langevin(
    energy: Callable[[Tensor], Tensor],
    x: Tensor,
    *,
    n_steps: int,
    step_size: float,
    generator: torch.Generator | None = None,
    grad_clip: float | None = None,
) -> Tensor:
    """``n_steps`` ULA steps x <- x - h g(x) + sqrt(2 h) z from ``x`` ``(n, d)``; returns ``(n, d)``.

    g(x) = grad_x E(x), computed by autograd (the energy maps ``(n, d) -> (n,)``); with
    ``grad_clip = c`` each chain's gradient is rescaled to norm at most c, g <- g min(1, c / |g|),
    which keeps early training stable where the energy is steep but makes the chain no longer an
    exact discretization of the Langevin diffusion (leave it ``None`` once the energy is tame).
    The noise z comes from ``generator``, one ``(n, d)`` draw per step in order. Works inside
    ``torch.no_grad``; the result is detached, dtype and device follow ``x``.

    >>> x = langevin(lambda y: 0.5 * y.square().sum(-1), torch.zeros(4, 2), n_steps=3,
    ...              step_size=0.1, generator=torch.Generator().manual_seed(0))
    >>> tuple(x.shape)
    (4, 2)
    """
    n_steps = int(n_steps)
    if n_steps < 0:
        raise ValueError(f"n_steps must be a non-negative integer, got {n_steps}")
    step_size = check_positive(step_size, "step_size")
    if grad_clip is not None:
        grad_clip = check_positive(grad_clip, "grad_clip")
    if x.ndim != 2:
        raise ValueError(f"x must have shape (n, d), got {tuple(x.shape)}")
    noise_scale = math.sqrt(2 * step_size)
    x = x.detach().clone()
    with _frozen(energy), torch.enable_grad():
        for _ in range(n_steps):
            position = x.requires_grad_(True)
            value = energy(position)
            if value.shape != x.shape[:1]:
                raise ValueError(f"energy must map (n, d) to (n,), got shape {tuple(value.shape)}")
            (gradient,) = torch.autograd.grad(value.sum(), position)
            if grad_clip is not None:
                norm = gradient.norm(dim=-1, keepdim=True)
                gradient = gradient * (grad_clip / norm.clamp(min=grad_clip))
            noise = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
            x = (position.detach() - step_size * gradient + noise_scale * noise).detach()
    return x


class BufferBatch(NamedTuple):
    """What :meth:`ReplayBuffer.sample` returns."""

    states: Tensor  # (batch_size, d), the chains after this step's Langevin moves
    index: Tensor  # (batch_size,) long, their slots in the buffer
    reinitialized: Tensor  # (batch_size,) bool, which chains restarted from the init distribution


class ReplayBuffer:
    """``buffer_size`` persistent Langevin chains on R^d (the model samples of PCD training).

    Each :meth:`sample` call picks ``batch_size`` distinct chains uniformly at random, restarts
    each of them independently with probability ``reinit_fraction`` from the broad init
    distribution (so the number restarted is Binomial(batch_size, reinit_fraction)), moves them
    by ``n_steps`` ULA steps (:func:`langevin`) under the current energy, writes them back and
    returns them. The init distribution is ``"uniform"`` on the box [-s, s]^d (default; s =
    ``init_scale`` = 3 covers standardized data out to three standard deviations, and a flat start
    has no preferred mode) or ``"normal"``, N(0, s^2 I). The buffer itself is filled from the init
    distribution on first use (or by :meth:`reset`) with the generator passed then, so all of its
    randomness comes from the caller's generator. Draws per call, in order: a permutation of the
    slots, ``batch_size`` uniforms (restart decisions), ``batch_size`` init points, the Langevin
    noise.

    >>> buffer = ReplayBuffer(2, buffer_size=100)
    >>> batch = buffer.sample(lambda x: x.square().sum(-1), 16, n_steps=2, step_size=0.01,
    ...                       generator=torch.Generator().manual_seed(0))
    >>> tuple(batch.states.shape), tuple(buffer.states.shape)
    ((16, 2), (100, 2))
    """

    def __init__(
        self,
        dim: int,
        buffer_size: int = 10_000,
        *,
        reinit_fraction: float = 0.05,
        init: str = "uniform",
        init_scale: float = 3.0,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str = "cpu",
    ) -> None:
        dim, buffer_size = check_count(dim, "dim"), check_count(buffer_size, "buffer_size")
        reinit_fraction = float(reinit_fraction)
        if not 0.0 <= reinit_fraction <= 1.0:
            raise ValueError(f"reinit_fraction must lie in [0, 1], got {reinit_fraction}")
        if init not in INIT_DISTRIBUTIONS:
            raise ValueError(f"init must be one of {', '.join(INIT_DISTRIBUTIONS)}, got {init!r}")
        self.dim = int(dim)
        self.buffer_size = int(buffer_size)
        self.reinit_fraction = reinit_fraction
        self.init = init
        self.init_scale = check_positive(init_scale, "init_scale")
        self.states = torch.empty(0, self.dim, dtype=dtype, device=device)

    @property
    def filled(self) -> bool:
        """Whether the chains exist yet (they are drawn on first use)."""
        return self.states.shape[0] == self.buffer_size

    def draw_init(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """``n`` draws ``(n, d)`` from the init distribution."""
        shape = (int(n), self.dim)
        options = {"generator": generator, "dtype": self.states.dtype, "device": self.states.device}
        if self.init == "uniform":
            return (2 * torch.rand(shape, **options) - 1) * self.init_scale
        return torch.randn(shape, **options) * self.init_scale

    def reset(self, generator: torch.Generator | None = None) -> None:
        """Fill all chains afresh from the init distribution."""
        self.states = self.draw_init(self.buffer_size, generator)

    def sample(
        self,
        energy: Callable[[Tensor], Tensor],
        batch_size: int,
        *,
        n_steps: int,
        step_size: float,
        generator: torch.Generator | None = None,
        grad_clip: float | None = None,
    ) -> BufferBatch:
        """Advance ``batch_size`` random chains (see the class docstring) and return them."""
        batch_size = int(batch_size)
        if not 1 <= batch_size <= self.buffer_size:
            raise ValueError(
                f"batch_size must lie in [1, buffer_size = {self.buffer_size}], got {batch_size}"
            )
        if not self.filled:
            self.reset(generator)
        device = self.states.device
        index = torch.randperm(self.buffer_size, generator=generator, device=device)[:batch_size]
        restart = (
            torch.rand(batch_size, generator=generator, dtype=torch.float64, device=device)
            < self.reinit_fraction
        )
        fresh = self.draw_init(batch_size, generator)
        start = torch.where(restart[:, None], fresh, self.states[index])
        moved = langevin(energy, start, n_steps=n_steps, step_size=step_size, generator=generator,
                         grad_clip=grad_clip)
        self.states[index] = moved
        return BufferBatch(moved, index, restart)

    def state_dict(self) -> dict[str, Any]:
        """The chains and settings (tensors and plain numbers, loadable with weights_only=True)."""
        return {
            "states": self.states.clone(),
            "buffer_size": self.buffer_size,
            "reinit_fraction": self.reinit_fraction,
            "init": self.init,
            "init_scale": self.init_scale,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the chains saved by :meth:`state_dict` (the settings must agree)."""
        if not isinstance(state, dict) or "states" not in state:
            raise ValueError("replay buffer state must be a dict with a 'states' tensor")
        states = state["states"]
        if not isinstance(states, Tensor) or states.ndim != 2 or states.shape[1] != self.dim or (
            states.shape[0] not in (0, self.buffer_size)
        ):
            shape = tuple(states.shape) if isinstance(states, Tensor) else type(states).__name__
            raise ValueError(
                f"replay buffer states must have shape ({self.buffer_size}, {self.dim}) "
                f"(or (0, {self.dim}) before first use), got {shape}"
            )
        for key in ("buffer_size", "reinit_fraction", "init", "init_scale"):
            if key in state and state[key] != getattr(self, key):
                raise ValueError(
                    f"replay buffer setting {key} = {state[key]!r} in the saved state differs from "
                    f"this buffer's {getattr(self, key)!r}"
                )
        self.states = states.to(dtype=self.states.dtype, device=self.states.device).clone()
