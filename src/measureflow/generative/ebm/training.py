r"""Maximum-likelihood training of an energy-based model with persistent Langevin chains.

The model is p_theta(x) = exp(-E_theta(x)) / Z_theta on R^d. Its negative log-likelihood on the
data distribution nu, NLL(theta) = E_nu[E_theta] + log Z_theta, has the gradient

    grad_theta NLL = E_nu[grad_theta E_theta(x)] - E_{p_theta}[grad_theta E_theta(x)]

(differentiate log Z_theta = log int exp(-E_theta): grad log Z = -E_{p_theta}[grad_theta E]).
Each step estimates it with a data batch x_1..x_B and model samples y_1..y_B taken from the
persistent Langevin chains of a :class:`~measureflow.generative.ebm.buffer.ReplayBuffer`, and
descends (Adam) the surrogate loss

    L = mean_i E(x_i) - mean_j E(y_j) + alpha * (mean_i E(x_i)^2 + mean_j E(y_j)^2),

whose theta-gradient (the y_j held fixed) is that estimate plus the gradient of the
energy-magnitude regularizer of Du & Mordatch (2019). The model is invariant to adding a constant
to E, so without the regularizer nothing pins the level of E and nothing stops the energies of
data and samples from running apart while the chains lag behind the model. The regularizer also
caps the contrast the loss can build: with E = -a on the data and +b on the samples the loss
-a - b + alpha (a^2 + b^2) is smallest at a = b = 1 / (2 alpha), a contrast of 1 / alpha. A
density whose modes are e^10 times denser than the gaps between them needs a contrast of 10
nats, so alpha must stay well below 1/10: we use alpha = 0.01 (measured: alpha = 1, Du &
Mordatch's value for images, learned an 8-mode Gaussian ring as a smooth annulus whose energy
spans about 1 nat).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from measureflow._core import check_count
from measureflow.generative.ebm.buffer import ReplayBuffer
from measureflow.generative.train import EMA, TrainTask

__all__ = ["EBMTask", "ScaledEnergy", "ebm_loss"]


def ebm_loss(energy: nn.Module, x_data: Tensor, x_model: Tensor, alpha: float = 0.0
             ) -> tuple[Tensor, Tensor, Tensor]:
    r"""The surrogate loss of maximum-likelihood EBM training and its two parts.

    For data ``x_data`` ``(B, d)`` and model samples ``x_model`` ``(B', d)`` (treated as constants:
    they are detached here), returns ``(loss, gap, regularizer)`` with

        gap = mean_i E(x_i) - mean_j E(y_j),
        regularizer = alpha (mean_i E(x_i)^2 + mean_j E(y_j)^2),   loss = gap + regularizer,

    so that grad_theta gap = mean_i grad_theta E(x_i) - mean_j grad_theta E(y_j), the Monte Carlo
    estimate of grad_theta NLL when the y_j are draws of p_theta.

    >>> energy = lambda x: 0.5 * x.square().sum(-1)
    >>> loss, gap, reg = ebm_loss(energy, torch.ones(2, 1), torch.zeros(3, 1), alpha=0.5)
    >>> float(loss), float(gap), float(reg)
    (0.625, 0.5, 0.125)
    """
    energy_data = energy(x_data)
    energy_model = energy(x_model.detach())
    gap = energy_data.mean() - energy_model.mean()
    regularizer = alpha * (energy_data.square().mean() + energy_model.square().mean())
    return gap + regularizer, gap, regularizer


class ScaledEnergy(nn.Module):
    r"""E(x) = net(s x): an energy network seen through a fixed input scale s; ``(n, d) -> (n,)``.

    Why: a SiLU MLP at PyTorch's default initialization is close to a low-degree polynomial of
    inputs of unit scale (its pre-activations are small), and maximum likelihood then spends
    thousands of steps on a smooth ring before it resolves the 8 modes of a Gaussian ring mixture
    (measured with the exact gradient computed on a grid: ~14x the MMD noise floor after 2,000
    Adam steps at s = 1, ~1.8x at s = 3). Scaling standardized inputs by s = 3 is the same as a
    three times larger first-layer initialization and lets the network bend at the scale of the
    modes from the start.

    >>> from measureflow.generative.nets import EnergyMLP
    >>> energy = ScaledEnergy(EnergyMLP(2, hidden=8, depth=1), input_scale=3.0)
    >>> tuple(energy(torch.zeros(4, 2)).shape), energy.dim
    ((4,), 2)
    """

    def __init__(self, net: nn.Module, input_scale: float = 1.0) -> None:
        super().__init__()
        if not isinstance(net, nn.Module):
            raise TypeError(f"net must be a torch.nn.Module, got {type(net).__name__}")
        input_scale = float(input_scale)
        if not math.isfinite(input_scale) or input_scale <= 0:
            raise ValueError(f"input_scale must be a finite positive number, got {input_scale!r}")
        self.net = net
        self.input_scale = input_scale
        dim = getattr(net, "dim", None)
        if isinstance(dim, int):
            self.dim = dim

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x * self.input_scale)

    def extra_repr(self) -> str:
        return f"input_scale={self.input_scale:g}"


class EBMTask(TrainTask):
    r"""One PCD step of maximum-likelihood EBM training (see the module docstring for the math).

    ``net`` is the energy ``(n, d) -> (n,)``. Per :meth:`step` on a data batch ``(B, d)``: the
    replay buffer advances B of its chains by ``n_langevin`` ULA steps of size ``step_size``
    under the current energy (restarting each with probability ``reinit_fraction`` from the init
    distribution, ``init`` on scale ``init_scale``; see :class:`ReplayBuffer`), then one Adam step
    (``lr``, ``betas``; beta1 = 0 by default, as is usual for EBMs, because the negatives move
    with the model and stale momentum chases them) on the loss L, then the EMA of the weights
    (decay ``ema_decay``) is updated. With ``lr_decay_steps`` the learning rate follows a cosine
    from ``lr`` down to ``lr * lr_final_fraction`` over that many steps (torch's
    ``CosineAnnealingLR``) and then stays there. All randomness comes from the generator
    :meth:`step` receives.

    ``step`` returns 0-dim detached tensors: ``loss`` (L), ``gap`` (mean E(data) - mean E(model
    samples), the contrastive term: strongly negative while the model puts too little mass on
    the data, then small; about -0.05 at the end on the ``ebm-mixture`` ring) and
    ``regularizer`` (alpha * (mean E(data)^2 + mean E(samples)^2)). ``state_dict`` holds
    ``model``, ``optimizer``, ``ema``, ``buffer`` (the chains) and ``scheduler`` (None without a
    schedule), so a resumed run is exact.

    >>> from measureflow.generative.nets import EnergyMLP
    >>> task = EBMTask(EnergyMLP(2, hidden=8, depth=1), buffer_size=64, n_langevin=2)
    >>> metrics = task.step(torch.randn(16, 2), torch.Generator().manual_seed(0))
    >>> sorted(metrics), metrics["loss"].ndim
    (['gap', 'loss', 'regularizer'], 0)
    """

    def __init__(
        self,
        net: nn.Module,
        *,
        lr: float = 2e-3,
        betas: tuple[float, float] = (0.0, 0.999),
        alpha: float = 0.01,
        ema_decay: float = 0.999,
        buffer_size: int = 256,
        reinit_fraction: float = 0.0,
        n_langevin: int = 10,
        step_size: float = 1e-2,
        grad_clip: float | None = None,
        init: str = "uniform",
        init_scale: float = 3.0,
        lr_decay_steps: int | None = None,
        lr_final_fraction: float = 0.1,
    ) -> None:
        if not isinstance(net, nn.Module):
            raise TypeError(f"net must be a torch.nn.Module, got {type(net).__name__}")
        like = next(iter(net.parameters()), None)
        if like is None:
            raise ValueError("net has no parameters to train")
        dim = getattr(net, "dim", None)
        if not isinstance(dim, int):
            raise ValueError(f"net must have an integer `dim` attribute (its input dimension), got {dim!r}")
        alpha = float(alpha)
        if not math.isfinite(alpha) or alpha < 0:
            raise ValueError(f"alpha must be a finite non-negative number, got {alpha!r}")
        lr = float(lr)
        if not math.isfinite(lr) or lr <= 0:
            raise ValueError(f"lr must be a finite positive number, got {lr!r}")
        self.n_langevin = check_count(n_langevin, "n_langevin")
        self.step_size = float(step_size)
        if not math.isfinite(self.step_size) or self.step_size <= 0:
            raise ValueError(f"step_size must be a finite positive number, got {step_size!r}")
        self.net = net
        self.alpha = alpha
        self.grad_clip = grad_clip
        self.optimizer = torch.optim.Adam(net.parameters(), lr=lr, betas=tuple(betas))
        self.scheduler = None
        if lr_decay_steps is not None:
            lr_decay_steps = check_count(lr_decay_steps, "lr_decay_steps")
            lr_final_fraction = float(lr_final_fraction)
            if not 0.0 <= lr_final_fraction <= 1.0:
                raise ValueError(f"lr_final_fraction must lie in [0, 1], got {lr_final_fraction!r}")
            self.scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(
                self.optimizer, T_max=lr_decay_steps, eta_min=lr * lr_final_fraction
            )
        self.ema = EMA(net, ema_decay)
        self.buffer = ReplayBuffer(dim, buffer_size, reinit_fraction=reinit_fraction, init=init,
                                   init_scale=init_scale, dtype=like.dtype, device=like.device)

    def step(self, batch: Tensor, generator: torch.Generator) -> dict[str, Tensor]:
        if batch.ndim != 2 or batch.shape[1] != self.buffer.dim:
            raise ValueError(f"batch must have shape (B, {self.buffer.dim}), got {tuple(batch.shape)}")
        negatives = self.buffer.sample(
            self.net, batch.shape[0], n_steps=self.n_langevin, step_size=self.step_size,
            generator=generator, grad_clip=self.grad_clip,
        ).states
        loss, gap, regularizer = ebm_loss(self.net, batch, negatives, self.alpha)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        if self.scheduler is not None and self.scheduler.last_epoch < self.scheduler.T_max:
            self.scheduler.step()
        self.ema.update(self.net)
        return {"loss": loss.detach(), "gap": gap.detach(), "regularizer": regularizer.detach()}

    def state_dict(self) -> dict[str, Any]:
        return {
            "model": self.net.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "ema": self.ema.state_dict(),
            "buffer": self.buffer.state_dict(),
            "scheduler": None if self.scheduler is None else self.scheduler.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for key in ("model", "optimizer", "ema", "buffer"):
            if key not in state:
                raise ValueError(f"an EBM training state needs the key {key!r}; it has {sorted(state)}")
        self.net.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.ema.load_state_dict(state["ema"])
        self.buffer.load_state_dict(state["buffer"])
        saved = state.get("scheduler")
        if (saved is None) != (self.scheduler is None):
            raise ValueError(
                "the saved EBM training state and this task disagree on the learning-rate schedule"
            )
        if self.scheduler is not None:
            self.scheduler.load_state_dict(saved)
