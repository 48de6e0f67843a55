r"""The flow family of :class:`~measureflow.generative.model.TrainedModel`: a normalizing flow (EMA
weights) sampled by pushing Gaussian noise through T^{-1} and scored exactly by the change of
variables, log q(x) = log N(T(x); 0, I) + log|det dT/dx (x)|."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from measureflow.generative.flow.model import build_flow, check_flow_config, flow_log_prob, flow_sample
from measureflow.generative.flow.training import CHECKPOINT_KIND
from measureflow.generative.model import ModelFamily, register_family

__all__ = ["FlowFamily"]


class FlowFamily(ModelFamily):
    """Normalizing flows (checkpoint kind ``"flow"``). ``sample`` and ``log_prob`` take no options:
    both are exact and one pass through the flow (``sample`` draws its noise from ``generator``;
    ``log_prob`` uses no randomness)."""

    kind = CHECKPOINT_KIND
    has_log_prob = True

    def build(self, config: dict[str, Any]) -> nn.Module:
        return build_flow(config["net"])

    def event_shape(self, config: dict[str, Any]) -> tuple[int, ...]:
        return (check_flow_config(config["net"])["features"],)

    def sample(self, network: nn.Module, config: dict[str, Any], n: int, *,
               generator: torch.Generator | None, **options: Any) -> Tensor:
        _no_options(options, "sample")
        with torch.no_grad():
            return flow_sample(network, n, generator=generator)

    def log_prob(self, network: nn.Module, config: dict[str, Any], x: Tensor, *,
                 generator: torch.Generator | None = None, **options: Any) -> Tensor:
        _no_options(options, "log_prob")
        return flow_log_prob(network, x)


def _no_options(options: dict[str, Any], what: str) -> None:
    if options:
        raise ValueError(f"a flow's {what} takes no options, got {', '.join(sorted(options))}")


register_family(FlowFamily())
