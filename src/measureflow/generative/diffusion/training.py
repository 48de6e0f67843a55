r"""Training a score model by denoising score matching, on the shared training loop.

``train_diffusion`` is the one entry point the checks and the CLI use: it builds the noise
predictor from a JSON-safe description, wraps it in a :class:`DiffusionTask` (Adam, linear
warm-up then cosine learning-rate decay, gradient-norm clipping, EMA of the weights) and runs
:func:`measureflow.generative.train.train`. ``load_diffusion`` rebuilds the trained model from
its checkpoint alone.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from measureflow._core import seeded_build
from measureflow.generative.diffusion.losses import WEIGHTINGS, dsm_loss
from measureflow.generative.diffusion.score import ScoreModel
from measureflow.generative.diffusion.sde import SDE, make_sde
from measureflow.generative.nets import MLPScore, UNet8
from measureflow.generative.train import EMA, TrainHistory, TrainTask, train

__all__ = [
    "CHECKPOINT_KIND",
    "NET_NAMES",
    "DiffusionTask",
    "build_score_net",
    "default_net_config",
    "train_diffusion",
]

CHECKPOINT_KIND = "diffusion"
NET_NAMES = ("mlp", "unet")


def default_net_config(event_shape: tuple[int, ...]) -> dict[str, Any]:
    """An MLP (4 x 256) for vectors ``(d,)``, the small U-Net for images ``(C, 8, 8)``."""
    if len(event_shape) == 1:
        return {"name": "mlp", "dim": int(event_shape[0]), "hidden": 256, "depth": 4}
    if len(event_shape) == 3:
        return {"name": "unet", "channels": int(event_shape[0]), "base": 32}
    raise ValueError(f"no default network for samples of shape {event_shape}; use vectors or (C, 8, 8)")


def build_score_net(config: dict[str, Any]) -> nn.Module:
    """The noise-prediction network described by ``config`` (``{"name": "mlp"|"unet", ...}``)."""
    options = dict(config)
    name = options.pop("name", None)
    if name not in NET_NAMES:
        raise ValueError(f"unknown score network {name!r}; choose one of {', '.join(NET_NAMES)}")
    try:
        return MLPScore(**options) if name == "mlp" else UNet8(**options)
    except TypeError as error:
        raise ValueError(f"bad options for the {name} network: {error}") from None


def _cosine_with_warmup(n_steps: int, warmup: int):
    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, n_steps - warmup)
        return 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))

    return factor


class DiffusionTask(TrainTask):
    r"""One DSM step: loss = E lambda(t)/sigma^2 |eps_theta(alpha x0 + sigma z, t) - z|^2
    (:func:`~measureflow.generative.diffusion.losses.dsm_loss`), Adam, gradient-norm clipping
    at ``grad_clip``, learning rate ``learning_rate`` warmed up linearly over ``warmup`` steps
    then decayed to 0 by a cosine over ``n_steps``, EMA of the weights with ``ema_decay``."""

    def __init__(self, net: nn.Module, sde: SDE, *, n_steps: int, learning_rate: float = 2e-3,
                 weighting: str = "sigma2", ema_decay: float = 0.999, grad_clip: float = 1.0,
                 warmup: int = 100) -> None:
        if weighting not in WEIGHTINGS:
            raise ValueError(f"unknown weighting {weighting!r}; choose one of {', '.join(WEIGHTINGS)}")
        if not learning_rate > 0 or not math.isfinite(learning_rate):
            raise ValueError(f"learning_rate must be finite and positive, got {learning_rate}")
        self.net, self.sde, self.weighting, self.grad_clip = net, sde, weighting, float(grad_clip)
        self.optimizer = torch.optim.Adam(net.parameters(), lr=learning_rate)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, _cosine_with_warmup(int(n_steps), min(int(warmup), max(1, int(n_steps) // 10))))
        self.ema = EMA(net, ema_decay)

    def step(self, batch: Tensor, generator: torch.Generator | None) -> dict[str, Tensor]:
        loss = dsm_loss(self.net, self.sde, batch, generator, self.weighting)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.net.parameters(), self.grad_clip)
        self.optimizer.step()
        self.scheduler.step()
        self.ema.update(self.net)
        return {"loss": loss.detach()}

    def state_dict(self) -> dict[str, Any]:
        return {"model": self.net.state_dict(), "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(), "ema": self.ema.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.net.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.ema.load_state_dict(state["ema"])


def train_diffusion(x: Tensor, *, n_steps: int, generator: torch.Generator, sde: SDE | None = None,
                    net: dict[str, Any] | None = None, batch_size: int = 512, learning_rate: float = 2e-3,
                    weighting: str = "sigma2", ema_decay: float = 0.999, grad_clip: float = 1.0,
                    out_dir: str | Path | None = None, resume: bool = False, overwrite: bool = False,
                    progress: bool = True, checkpoint_every: int | None = None,
                    extra_config: dict[str, Any] | None = None,
                    on_checkpoint=None) -> tuple[ScoreModel, TrainHistory]:
    """Fit a score model to the samples ``x`` ``(n, ...)`` (already standardized) by DSM.

    ``sde`` defaults to ``VPSDE()``; ``net`` to :func:`default_net_config` of the samples'
    shape. The network is initialized from ``generator`` (through a forked global RNG, so the
    caller's global seed is untouched). Returns the EMA model as a score and the history.
    ``extra_config`` (JSON-safe, e.g. the data's standardization) is stored in the checkpoint.
    """
    sde = sde if sde is not None else make_sde("vp")
    net_config = dict(net) if net is not None else default_net_config(tuple(x.shape[1:]))
    config = {"sde": sde.config(), "net": net_config, "n_steps": int(n_steps), "batch_size": int(batch_size),
              "learning_rate": float(learning_rate), "weighting": weighting, "ema_decay": float(ema_decay),
              "grad_clip": float(grad_clip), **(extra_config or {})}
    model = seeded_build(lambda: build_score_net(net_config), generator).to(x.device)
    task = DiffusionTask(model, sde, n_steps=n_steps, learning_rate=learning_rate, weighting=weighting,
                         ema_decay=ema_decay, grad_clip=grad_clip)
    history = train(task, x, n_steps=n_steps, batch_size=batch_size, generator=generator, out_dir=out_dir,
                    resume=resume, overwrite=overwrite, progress=progress, config=config,
                    kind=CHECKPOINT_KIND, checkpoint_every=checkpoint_every, on_checkpoint=on_checkpoint,
                    description="diffusion")
    return ScoreModel(task.ema.model, sde).eval(), history
