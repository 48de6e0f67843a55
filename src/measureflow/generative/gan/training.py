r"""Training adversarial and kernel generative models on the shared training loop.

One generator step of :class:`GANTask`, for a :class:`~measureflow.generative.gan.objectives.GANObjective`:

1. ``n_critic`` critic steps, each on its own slice of the batch (the loop hands the task
   ``n_critic * batch_size`` rows) against fresh generated samples: minimize the objective's
   critic loss plus its penalty (and the RKHS penalty with ``stability``), then its
   ``after_critic_step`` hook (WGAN's clipping);
2. one generator step on ``batch_size`` fresh samples: minimize the objective's generator loss,
   then update the EMA of the generator.

The task never asks which game it plays: everything game-specific is a method of the objective.
``train_gan`` is the one entry point for the checks and the CLI;
:meth:`measureflow.generative.TrainedModel.load` rebuilds the EMA generator from its checkpoint.
The defaults of each objective (``objective.defaults``: learning rates of generator / critic,
optimizer, ``n_critic``) follow the papers where they fit small problems:

    js ns kl rkl pearson hellinger   Adam(0.5, 0.999)  lr 2e-4 / 2e-4  n_critic 1
    wgan                             RMSprop           lr 5e-5 / 5e-5  n_critic 5   clip 0.01
    wgan-gp                          Adam(0.5, 0.9)    lr 1e-3 / 1e-3  n_critic 5   lambda 10
    gmmn                             Adam(0.5, 0.999)  lr 1e-3         no critic
    mmd-gan                          Adam(0.5, 0.9)    lr 1e-4 / 1e-4  n_critic 5
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import torch
from torch import Tensor, nn

from measureflow._core import check_count, seeded_build
from measureflow.generative.gan.nets import Generator, ParticleGenerator
from measureflow.generative.gan.objectives import GANObjective, make_objective
from measureflow.generative.gan.stability import RandomFourierFeatures, Stability, rkhs_penalty
from measureflow.generative.train import EMA, TrainHistory, TrainTask, train
from measureflow.metrics import median_bandwidth

__all__ = [
    "CHECKPOINT_KIND",
    "OPTIMIZERS",
    "GANModel",
    "GANTask",
    "build_generator",
    "default_net_config",
    "train_gan",
]

CHECKPOINT_KIND = "gan"
OPTIMIZERS = ("adam", "rmsprop", "sgd")


def default_net_config(event_shape: tuple[int, ...]) -> dict[str, Any]:
    """Networks by data shape: 2-D toys (and other vectors of dimension <= 8): latent 8, 3 x 128
    MLPs; larger samples (e.g. 8 x 8 digits): latent 32, 3 x 256."""
    size = math.prod(event_shape)
    small = size <= 8
    return {"generator": "mlp", "latent_dim": 8 if small else 32, "hidden": 128 if small else 256, "depth": 3,
            "critic_hidden": 128 if small else 256, "critic_depth": 3, "features": 16}


def _check_net(net: dict[str, Any]) -> dict[str, Any]:
    allowed = {"generator", "latent_dim", "hidden", "depth", "n_points", "critic_hidden", "critic_depth",
               "features"}
    unknown = sorted(set(net) - allowed)
    if unknown:
        raise ValueError(f"unknown network options {unknown}; allowed: {', '.join(sorted(allowed))}")
    if net.get("generator", "mlp") not in ("mlp", "particles"):
        raise ValueError(f"unknown generator {net.get('generator')!r}; choose mlp or particles")
    return net


def build_generator(net: dict[str, Any], event_shape: tuple[int, ...]) -> nn.Module:
    """The generator described by ``net`` (see :func:`default_net_config`): an MLP
    :class:`~measureflow.generative.gan.nets.Generator`, or with ``{"generator": "particles",
    "n_points": N}`` a :class:`~measureflow.generative.gan.nets.ParticleGenerator`."""
    net = _check_net({**default_net_config(event_shape), **net})
    try:
        if net["generator"] == "particles":
            if "n_points" not in net:
                raise ValueError("a particle generator needs n_points")
            return ParticleGenerator(net["n_points"], event_shape)
        return Generator(net["latent_dim"], event_shape, hidden=net["hidden"], depth=net["depth"])
    except TypeError as error:
        raise ValueError(f"bad generator options: {error}") from None


def _optimizer(name: str, parameters, learning_rate: float,
               betas: tuple[float, float]) -> torch.optim.Optimizer:
    if name not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}; choose one of {', '.join(OPTIMIZERS)}")
    if name == "adam":
        return torch.optim.Adam(parameters, lr=learning_rate, betas=betas)
    if name == "rmsprop":
        return torch.optim.RMSprop(parameters, lr=learning_rate)
    return torch.optim.SGD(parameters, lr=learning_rate)


def _positive(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or value <= 0:
        raise ValueError(f"{name} must be a finite positive number, got {value!r}")
    return float(value)


class GANTask(TrainTask):
    """One generator step preceded by ``n_critic`` critic steps of ``objective`` (see the module
    docstring).

    ``generator`` and ``critic`` (``None`` when the objective needs none) are the networks;
    ``features`` the random Fourier features of the RKHS penalty (with ``stability``). The
    metrics are ``generator_loss`` and, with a critic, ``critic_loss`` (the critic's objective
    without penalties) and, when a penalty is charged, ``penalty``.
    """

    def __init__(self, generator: nn.Module, critic: nn.Module | None, objective: GANObjective | str, *,
                 n_critic: int, generator_lr: float, critic_lr: float, optimizer: str = "adam",
                 critic_optimizer: str | None = None, betas: tuple[float, float] = (0.5, 0.999),
                 stability: Stability | None = None, features: RandomFourierFeatures | None = None,
                 batch_size: int = 256, ema_decay: float = 0.999) -> None:
        objective = make_objective(objective)
        if (critic is None) == objective.needs_critic:
            needed = "with" if objective.needs_critic else "without"
            raise ValueError(f"{objective.name} trains {needed} a critic")
        if stability is not None and features is None:
            raise ValueError("the RKHS penalty of stability needs random Fourier features")
        self.generator, self.critic, self.objective = generator, critic, objective
        self.n_critic = check_count(n_critic, "n_critic") if critic is not None else 0
        self.stability, self.features = stability, features
        self.batch_size = check_count(batch_size, "batch_size")
        self.generator_optimizer = _optimizer(optimizer, generator.parameters(),
                                              _positive(generator_lr, "generator_lr"), betas)
        self.critic_optimizer = None if critic is None else _optimizer(
            optimizer if critic_optimizer is None else critic_optimizer, critic.parameters(),
            _positive(critic_lr, "critic_lr"), betas)
        self.ema = EMA(generator, ema_decay)
        # Only spectral norm behaves differently in training and evaluation mode (its power
        # iteration); switching modes walks the module tree, so it is done only where it matters.
        self._switch_modes = critic is not None and any(
            nn.utils.parametrize.is_parametrized(module) for module in critic.modules())

    def _critic_step(self, real: Tensor, generator: torch.Generator) -> tuple[Tensor, Tensor | None]:
        with torch.no_grad():
            fake = self.generator.sample(real.shape[0], generator)
        objective, out = self.objective.critic_objective(self.critic, real, fake)
        # Evaluation mode for the penalty: the interpolates see the same normalized weights,
        # without an extra power iteration.
        if self._switch_modes:
            self.critic.eval()
        penalty = self.objective.penalty(self.critic, real, fake, generator)
        if self._switch_modes:
            self.critic.train()
        if self.stability is not None:
            rkhs = rkhs_penalty(out, torch.cat([real, fake]), self.features, self.stability)
            penalty = rkhs if penalty is None else penalty + rkhs
        self.critic_optimizer.zero_grad(set_to_none=True)
        (objective if penalty is None else objective + penalty).backward()
        self.critic_optimizer.step()
        self.objective.after_critic_step(self.critic)
        return objective.detach(), None if penalty is None else penalty.detach()

    def step(self, batch: Tensor, generator: torch.Generator) -> dict[str, Tensor]:
        metrics: dict[str, Tensor] = {}
        if batch.shape[0] != max(self.n_critic, 1) * self.batch_size:
            raise ValueError(f"a step takes n_critic x batch_size = {max(self.n_critic, 1)} x "
                             f"{self.batch_size} rows (one slice per critic step), got {batch.shape[0]}")
        if self.critic is not None:
            if self._switch_modes:
                self.critic.train()
            self.critic.requires_grad_(True)
            objectives, penalties = [], []
            for real in batch.split(self.batch_size):
                objective, penalty = self._critic_step(real, generator)
                objectives.append(objective)
                penalties.append(penalty)
            metrics["critic_loss"] = objectives[0] if len(objectives) == 1 else torch.stack(objectives).mean()
            if penalties[0] is not None:
                metrics["penalty"] = penalties[0] if len(penalties) == 1 else torch.stack(penalties).mean()
            # The critic is a constant during the generator step: no gradients for its weights,
            # and (evaluation mode) no power iteration of its spectral norm.
            if self._switch_modes:
                self.critic.eval()
            self.critic.requires_grad_(False)
        fake = self.generator.sample(self.batch_size, generator)
        # Kernel losses compare with data: the first slice without a critic, the last (the
        # freshest for the critic) with one.
        real = batch[: self.batch_size] if self.critic is None else batch[-self.batch_size:]
        loss = self.objective.generator_objective(self.critic, real, fake)
        self.generator_optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.generator_optimizer.step()
        self.ema.update(self.generator)
        metrics["generator_loss"] = loss.detach()
        return metrics

    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {"model": self.generator.state_dict(),
                                 "generator_optimizer": self.generator_optimizer.state_dict(),
                                 "ema": self.ema.state_dict()}
        if self.critic is not None:
            state["critic"] = self.critic.state_dict()
            state["critic_optimizer"] = self.critic_optimizer.state_dict()
        if self.features is not None:
            state["features"] = self.features.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.generator.load_state_dict(state["model"])
        self.generator_optimizer.load_state_dict(state["generator_optimizer"])
        self.ema.load_state_dict(state["ema"])
        if self.critic is not None:
            self.critic.load_state_dict(state["critic"])
            self.critic_optimizer.load_state_dict(state["critic_optimizer"])
        if self.features is not None:
            self.features.load_state_dict(state["features"])


class GANModel(nn.Module):
    """A trained generator (the EMA weights) that draws samples in training units:
    ``sample(n, generator=None)`` ``(n, *event_shape)``, without gradients."""

    def __init__(self, generator: nn.Module) -> None:
        super().__init__()
        self.generator = generator
        self.event_shape = tuple(generator.out_shape)
        self.latent_dim = int(generator.latent_dim)

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        return self.generator.sample(n, generator)


def train_gan(x: Tensor, *, loss: GANObjective | str, n_steps: int, generator: torch.Generator,
              batch_size: int = 256, n_critic: int | None = None, generator_lr: float | None = None,
              critic_lr: float | None = None, optimizer: str | None = None,
              critic_optimizer: str | None = None,
              spectral_norm: bool = False, stability: Stability | None = None,
              net: dict[str, Any] | None = None, ema_decay: float = 0.999,
              extra_config: dict[str, Any] | None = None, **loop: Any) -> tuple[GANModel, TrainHistory]:
    """Train a generator of the samples ``x`` ``(n, d)`` or ``(n, C, H, W)`` (already standardized)
    with the objective ``loss`` (a :class:`~measureflow.generative.gan.objectives.GANObjective`, or
    one of :data:`~measureflow.generative.gan.objectives.LOSS_NAMES` with its default settings)
    for ``n_steps`` generator steps.

    ``None`` options take ``loss.defaults``; ``optimizer`` (``"adam"``, ``"rmsprop"``, ``"sgd"``)
    is the generator's and, unless ``critic_optimizer`` is given, the critic's. The stability
    regularizers of Chu, Minami & Fukumizu act with ``stability`` (a ``bandwidth`` of ``None``
    becomes the median pairwise distance of ``x``; their learning rate is
    :func:`~measureflow.generative.gan.theory_learning_rate`). ``spectral_norm`` normalizes the
    critic (implied by ``stability``; options the objective cannot take are refused). ``net``
    overrides :func:`default_net_config` (e.g. ``{"generator": "particles", "n_points": 64}``).
    The networks and random features are drawn from ``generator``. ``loop`` goes to
    :func:`~measureflow.generative.train.train` (``out_dir``, ``resume``, ``overwrite``,
    ``progress``, ``checkpoint_every``, ``log_every``, ``on_checkpoint``); a finished run resumed
    with a larger ``n_steps`` trains on. ``extra_config`` (JSON-like) is stored in the checkpoint.
    Returns the EMA generator as a :class:`GANModel` and the history.
    """
    objective = make_objective(loss)
    if x.dim() < 2 or x.shape[0] < 2:
        raise ValueError(f"x must have shape (n, ...) with n >= 2, got {tuple(x.shape)}")
    if not bool(torch.isfinite(x).all()):
        raise ValueError("x contains NaN or infinite values")
    if stability is not None and not isinstance(stability, Stability):
        raise TypeError(f"stability must be a Stability, got {type(stability).__name__}")
    objective.check_options(spectral_norm=bool(spectral_norm), stability=stability)
    objective = objective.fitted(x)
    defaults = objective.defaults
    event_shape = tuple(int(s) for s in x.shape[1:])
    net_config = _check_net({**default_net_config(event_shape), **(net or {})})
    optimizer = defaults.optimizer if optimizer is None else optimizer
    critic_optimizer = optimizer if critic_optimizer is None else critic_optimizer
    generator_lr = _positive(defaults.generator_lr if generator_lr is None else generator_lr, "generator_lr")
    if objective.needs_critic:
        n_critic = check_count(defaults.n_critic if n_critic is None else n_critic, "n_critic")
        critic_lr = _positive(defaults.critic_lr if critic_lr is None else critic_lr, "critic_lr")
    else:
        n_critic, critic_lr = 0, 0.0
    if stability is not None and stability.bandwidth is None:
        stability = dataclasses.replace(stability, bandwidth=median_bandwidth(x.reshape(x.shape[0], -1)))
    # n_steps is not part of the config: nothing depends on it (no learning-rate schedule), so a
    # finished run can be resumed with a larger n_steps to train it further.
    config = {"loss": objective.name, "objective": objective.config(), "event_shape": list(event_shape),
              "net": net_config, "batch_size": int(batch_size), "n_critic": n_critic,
              "generator_lr": generator_lr, "critic_lr": critic_lr, "optimizer": optimizer,
              "critic_optimizer": critic_optimizer,
              "spectral_norm": objective.uses_spectral_norm(bool(spectral_norm), stability),
              "stability": None if stability is None else stability.to_dict(),
              "ema_decay": float(ema_decay), **(extra_config or {})}

    def build() -> tuple[nn.Module, nn.Module | None, RandomFourierFeatures | None]:
        # Modules are built on the CPU and moved.
        model = build_generator(net_config, event_shape).to(device=x.device, dtype=x.dtype)
        critic = objective.build_critic(net_config, event_shape, bool(spectral_norm), stability)
        critic = None if critic is None else critic.to(device=x.device, dtype=x.dtype)
        features = None
        if stability is not None:
            features = RandomFourierFeatures(math.prod(event_shape), stability.n_features,
                                             stability.bandwidth, dtype=x.dtype).to(x.device)
        return model, critic, features

    model, critic, features = seeded_build(build, generator)
    # The objective's Adam betas where its default optimizer is Adam; otherwise torch's usual GAN choice.
    betas = defaults.betas if defaults.optimizer == "adam" else (0.5, 0.999)
    task = GANTask(model, critic, objective, n_critic=max(n_critic, 1), generator_lr=generator_lr,
                   critic_lr=critic_lr if objective.needs_critic else 1.0, optimizer=optimizer,
                   critic_optimizer=critic_optimizer, betas=betas, stability=stability, features=features,
                   batch_size=batch_size, ema_decay=ema_decay)
    loop.setdefault("description", f"gan ({objective.name})")
    history = train(task, x, n_steps=n_steps, batch_size=batch_size * max(task.n_critic, 1),
                    generator=generator, config=config, kind=CHECKPOINT_KIND, **loop)
    return GANModel(task.ema.model).eval(), history
