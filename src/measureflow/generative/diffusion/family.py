"""The diffusion family of :class:`~measureflow.generative.model.TrainedModel`: a noise-prediction
network (EMA weights) and its forward SDE, sampled by a reverse-time sampler and scored by the
probability-flow likelihood."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from measureflow.generative.diffusion.likelihood import log_likelihood
from measureflow.generative.diffusion.sampling import sample as reverse_sample
from measureflow.generative.diffusion.score import ScoreModel
from measureflow.generative.diffusion.sde import make_sde
from measureflow.generative.diffusion.training import CHECKPOINT_KIND, build_score_net
from measureflow.generative.model import ModelFamily, TrainedModel, register_family

__all__ = ["DiffusionFamily", "score_model"]


def _net_event_shape(net: dict[str, Any]) -> tuple[int, ...]:
    if net.get("name") == "mlp" and "dim" in net:
        return (int(net["dim"]),)
    if net.get("name") == "unet":
        return (int(net.get("channels", 1)), 8, 8)
    raise ValueError(f"the checkpoint's network {net.get('name')!r} has no known sample shape")


class DiffusionFamily(ModelFamily):
    """Score-based diffusion models (checkpoint kind ``"diffusion"``).

    ``sample`` options: ``method`` (``"sde"``, ``"ode"``, ``"ode-adaptive"``, ``"pc"``, ``"als"``;
    default ``"sde"``), ``n_steps`` (default 500) and the sampler's own options
    (:func:`~measureflow.generative.diffusion.reverse_process`). ``log_prob`` is the
    probability-flow log-likelihood (:func:`~measureflow.generative.diffusion.log_likelihood`,
    options ``exact``, ``rtol``, ``atol``).
    """

    kind = CHECKPOINT_KIND
    has_log_prob = True

    def build(self, config: dict[str, Any]) -> nn.Module:
        make_sde(**config["sde"])  # a malformed SDE is refused on load, not at the first sample
        return build_score_net(config["net"])

    def event_shape(self, config: dict[str, Any]) -> tuple[int, ...]:
        data = config.get("data") or {}
        if "event_shape" in data:
            return tuple(int(size) for size in data["event_shape"])
        return _net_event_shape(config.get("net") or {})

    def sample(self, network: nn.Module, config: dict[str, Any], n: int, *,
               generator: torch.Generator | None, method: str = "sde", n_steps: int = 500,
               **options: Any) -> Tensor:
        parameter = next(network.parameters())
        score = ScoreModel(network, make_sde(**config["sde"]))
        return reverse_sample(score, score.sde, n, self.event_shape(config), n_steps, method=method,
                              generator=generator, dtype=parameter.dtype, device=parameter.device, **options)

    def log_prob(self, network: nn.Module, config: dict[str, Any], x: Tensor, *,
                 generator: torch.Generator | None = None, **options: Any) -> Tensor:
        score = ScoreModel(network, make_sde(**config["sde"]))
        parameter = next(network.parameters())
        result = log_likelihood(score, score.sde, x.to(parameter.dtype), generator=generator, **options)
        return result.log_prob


def score_model(model: TrainedModel) -> ScoreModel:
    """The EMA network of a trained diffusion model as a score s(x, t), with its SDE as ``.sde``."""
    if model.kind != CHECKPOINT_KIND:
        raise ValueError(f"a {model.kind} model has no score network; load a diffusion checkpoint")
    return ScoreModel(model.network, make_sde(**model.config["sde"])).eval()


register_family(DiffusionFamily())
