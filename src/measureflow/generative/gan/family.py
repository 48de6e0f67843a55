"""The GAN family of :class:`~measureflow.generative.model.TrainedModel`: a generator X = G(Z),
Z ~ N(0, I) (EMA weights), whatever objective trained it; no tractable density."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from measureflow.generative.gan.training import CHECKPOINT_KIND, build_generator
from measureflow.generative.model import ModelFamily, register_family

__all__ = ["GANFamily"]


class GANFamily(ModelFamily):
    """Adversarial and kernel generators (checkpoint kind ``"gan"``): ``sample`` draws G(Z)."""

    kind = CHECKPOINT_KIND

    def build(self, config: dict[str, Any]) -> nn.Module:
        return build_generator(config["net"], self.event_shape(config))

    def event_shape(self, config: dict[str, Any]) -> tuple[int, ...]:
        return tuple(int(size) for size in config["event_shape"])

    def sample(self, network: nn.Module, config: dict[str, Any], n: int, *,
               generator: torch.Generator | None, **options: Any) -> Tensor:
        if options:
            raise ValueError(f"a GAN samples G(Z) and takes no sampler options, got {', '.join(options)}")
        return network.sample(n, generator)


register_family(GANFamily())
