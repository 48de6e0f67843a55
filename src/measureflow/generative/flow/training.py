r"""Training a normalizing flow by maximum likelihood, on the shared training loop.

Maximum likelihood minimizes the empirical cross-entropy

    L(theta) = -(1/B) sum_b log q_theta(x_b),   E_p[L] = KL(p || q_theta) + H(p),

so its minimizer over a flexible family is q_theta = p, and at any theta the excess of the
expected loss over the data's entropy H(p) is KL(p || q_theta) >= 0. ``train_flow`` builds the
flow from a JSON-safe config, wraps it in a :class:`FlowTask` (Adam, optional cosine decay of the
learning rate, gradient-norm clipping, EMA of the weights) and runs
:func:`measureflow.generative.train.train` with checkpoint kind ``"flow"``. The step draws no
randomness (the loss is exact, there is no noise), so a resumed run is exact.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from measureflow._core import check_count, check_positive, seeded_build
from measureflow.generative.flow.model import (
    build_flow,
    check_flow_config,
    default_flow_config,
    flow_log_prob,
)
from measureflow.generative.train import EMA, TrainHistory, TrainTask, train

__all__ = ["CHECKPOINT_KIND", "FlowTask", "train_flow"]

CHECKPOINT_KIND = "flow"


class FlowTask(TrainTask):
    r"""One maximum-likelihood step: loss = -mean_b log q_theta(x_b) (change of variables, see
    :mod:`~measureflow.generative.flow.model`), Adam at ``learning_rate``, decayed to 0 by a cosine
    over ``n_steps`` when ``cosine`` (lr_t = lr (1 + cos(pi t / n_steps)) / 2), gradient norm
    clipped at ``grad_clip`` (0: no clipping), EMA of the weights with ``ema_decay``."""

    def __init__(self, net: nn.Module, *, n_steps: int, learning_rate: float = 1e-3, cosine: bool = True,
                 ema_decay: float = 0.995, grad_clip: float = 5.0) -> None:
        if not isinstance(net, nn.Module):
            raise TypeError(f"net must be a torch.nn.Module (a flow from build_flow), "
                            f"got {type(net).__name__}")
        n_steps = check_count(n_steps, "n_steps")
        learning_rate = check_positive(learning_rate, "learning_rate")
        self.net, self.grad_clip = net, check_positive(grad_clip, "grad_clip", allow_zero=True)
        self.optimizer = torch.optim.Adam(net.parameters(), lr=learning_rate)
        self.scheduler = (torch.optim.lr_scheduler.CosineAnnealingLR(self.optimizer, T_max=n_steps)
                          if cosine else None)
        self.ema = EMA(net, ema_decay)

    def step(self, batch: Tensor, generator: torch.Generator | None) -> dict[str, Tensor]:
        loss = -flow_log_prob(self.net, batch).mean()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.net.parameters(), self.grad_clip)
        self.optimizer.step()
        if self.scheduler is not None:
            self.scheduler.step()
        self.ema.update(self.net)
        return {"loss": loss.detach()}

    def state_dict(self) -> dict[str, Any]:
        return {"model": self.net.state_dict(), "optimizer": self.optimizer.state_dict(),
                "scheduler": None if self.scheduler is None else self.scheduler.state_dict(),
                "ema": self.ema.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.net.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler is not None:
            self.scheduler.load_state_dict(state["scheduler"])
        self.ema.load_state_dict(state["ema"])


def train_flow(x: Tensor, *, n_steps: int, generator: torch.Generator, net: dict[str, Any] | None = None,
               batch_size: int = 512, learning_rate: float = 1e-3, cosine: bool = True,
               ema_decay: float = 0.995, grad_clip: float = 5.0, out_dir: str | Path | None = None,
               resume: bool = False, overwrite: bool = False, progress: bool = True,
               checkpoint_every: int | None = None, extra_config: dict[str, Any] | None = None,
               on_checkpoint: Callable[[int, Path], None] | None = None) -> tuple[nn.Module, TrainHistory]:
    r"""Fit a normalizing flow to the samples ``x`` ``(n, d)`` (already standardized) by maximum
    likelihood; returns the EMA flow (eval mode, no gradients) and the history.

    ``net`` is a flow config (:func:`~measureflow.generative.flow.build_flow`), by default
    :func:`~measureflow.generative.flow.default_flow_config` of ``d``. The flow is initialized from
    one draw of ``generator`` (:func:`measureflow._core.seeded_build`: the caller's global RNG is
    untouched); the same generator then draws the batches. ``extra_config`` (JSON-safe, e.g. the
    data's standardizer) is stored in the checkpoint beside the settings; ``out_dir``,
    ``resume``, ``overwrite``, ``checkpoint_every`` and ``on_checkpoint`` are those of
    :func:`~measureflow.generative.train.train`.

    >>> x = torch.randn(256, 2, generator=torch.Generator().manual_seed(0))
    >>> flow, history = train_flow(x, n_steps=20, generator=torch.Generator().manual_seed(1),
    ...                            net={"name": "maf", "features": 2, "transforms": 1, "hidden": [8]},
    ...                            batch_size=64, progress=False)
    >>> history.final_step, tuple(flow().log_prob(x).shape)
    (20, (256,))
    """
    if not isinstance(x, Tensor) or x.ndim != 2 or x.shape[0] < 1 or x.shape[1] < 1:
        shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise ValueError(f"x must be a tensor of shape (n, d) with n, d >= 1, got {shape}")
    if not x.is_floating_point():
        raise TypeError(f"x must be a floating tensor, got {x.dtype}")
    if not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator (seeded by the caller), "
                        f"got {type(generator).__name__}")
    net_config = check_flow_config(net) if net is not None else default_flow_config(int(x.shape[1]))
    if net_config["features"] != x.shape[1]:
        raise ValueError(f"the flow has {net_config['features']} features but x has {x.shape[1]} columns")
    config = {"net": net_config, "n_steps": n_steps, "batch_size": batch_size,
              "learning_rate": check_positive(learning_rate, "learning_rate"), "cosine": bool(cosine),
              "ema_decay": ema_decay, "grad_clip": grad_clip, **(extra_config or {})}
    model = seeded_build(lambda: build_flow(net_config), generator).to(device=x.device, dtype=x.dtype)
    task = FlowTask(model, n_steps=n_steps, learning_rate=learning_rate, cosine=cosine, ema_decay=ema_decay,
                    grad_clip=grad_clip)
    history = train(task, x, n_steps=n_steps, batch_size=batch_size, generator=generator, out_dir=out_dir,
                    resume=resume, overwrite=overwrite, progress=progress, config=config,
                    kind=CHECKPOINT_KIND, checkpoint_every=checkpoint_every, on_checkpoint=on_checkpoint,
                    description="flow")
    return task.ema.model, history
