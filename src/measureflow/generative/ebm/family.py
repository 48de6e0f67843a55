"""The EBM family of :class:`~measureflow.generative.model.TrainedModel`: an energy network E (EMA
weights) whose Gibbs measure exp(-E) is sampled by MALA chains; the density is unnormalized, so
the family has no ``log_prob`` (use the network's energy directly)."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from measureflow.generative.ebm.api import EBM_KIND, build_energy_net, net_settings
from measureflow.generative.ebm.sampling import sample_ebm
from measureflow.generative.model import ModelFamily, register_family

__all__ = ["EBMFamily"]


class EBMFamily(ModelFamily):
    """Energy-based models (checkpoint kind ``"ebm"``). ``sample`` options: ``n_steps`` (default
    1000) MALA steps per chain from N(0, I), ``step_size`` (default 0.01, adapted over the first
    half), and those of :func:`~measureflow.generative.ebm.sample_ebm` (``progress``, ``init``...)."""

    kind = EBM_KIND

    def build(self, config: dict[str, Any]) -> nn.Module:
        return build_energy_net(**net_settings(config, "config"))

    def event_shape(self, config: dict[str, Any]) -> tuple[int, ...]:
        return (net_settings(config, "config")["dim"],)

    def sample(self, network: nn.Module, config: dict[str, Any], n: int, *,
               generator: torch.Generator | None, n_steps: int = 1000, step_size: float = 0.01,
               **options: Any) -> Tensor:
        return sample_ebm(network, n, n_steps=n_steps, step_size=step_size, generator=generator, **options)


register_family(EBMFamily())
