r"""Training adversarial and kernel generative models on the shared training loop.

One generator step of :class:`GANTask` is

1. ``n_critic`` critic steps, each on its own slice of the batch (the loop hands the task
   ``n_critic * batch_size`` rows) against fresh generated samples: minimize
   :func:`~measureflow.generative.gan.losses.critic_loss` (+ ``gp_weight`` x the gradient
   penalty for ``wgan-gp``, + the RKHS penalty with ``stability``), then clip the weights to
   [-c, c] for ``wgan``; for ``mmd-gan`` maximize MMD^2 between the features;
2. one generator step on ``batch_size`` fresh samples: minimize
   :func:`~measureflow.generative.gan.losses.generator_loss` (or MMD^2 for ``gmmn`` and
   ``mmd-gan``), then update the EMA of the generator.

``train_gan`` is the one entry point for the checks and the CLI; ``load_gan`` rebuilds the EMA
generator from its checkpoint. Defaults per loss (learning rates of generator / critic,
optimizer, ``n_critic``) follow the papers where they fit small problems:

    js ns kl rkl pearson hellinger   Adam(0.5, 0.999)  lr 2e-4 / 2e-4  n_critic 1
    wgan                             RMSprop           lr 5e-5 / 5e-5  n_critic 5   clip 0.01
    wgan-gp                          Adam(0.5, 0.9)    lr 1e-3 / 1e-3  n_critic 5   lambda 10
                                     (Gulrajani et al.: beta_1 = 0, lr 1e-4; at 1e-4 the 2-D toys
                                     were still a blurry cloud after 5,000 steps, at 1e-3 the
                                     8-Gaussian ring had 8/8 modes after 2,000)
    gmmn                             Adam(0.5, 0.999)  lr 1e-3         no critic
    mmd-gan                          Adam(0.5, 0.9)    lr 1e-4 / 1e-4  n_critic 5

GMMN's kernel is the sum of Gaussians at ``bandwidths`` (default: the data's median pairwise
distance times 1/16, 1/8, 1/4, 1/2, 1, 2). MMD-GAN's kernel acts on [x, g_xi(x)]: the raw
sample concatenated with ``features`` learned outputs of a spectrally normalized critic
(bandwidths: the batch's root-mean-square feature distance times 1/4 ... 4), so the learned features can
only sharpen a kernel that already separates distributions.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from measureflow.generative.gan.losses import (
    LOSS_NAMES,
    critic_loss,
    generator_loss,
    gradient_penalty,
    mmd2_loss,
)
from measureflow.generative.gan.nets import Critic, Generator, ParticleGenerator, softplus_sharpness
from measureflow.generative.gan.stability import (
    RandomFourierFeatures,
    Stability,
    rkhs_penalty,
    theory_learning_rate,
)
from measureflow.generative.train import EMA, TrainHistory, TrainTask, load_checkpoint, train
from measureflow.metrics import median_bandwidth

__all__ = [
    "CHECKPOINT_KIND",
    "DEFAULTS",
    "GANModel",
    "GANTask",
    "LoadedGAN",
    "build_generator",
    "default_net_config",
    "load_gan",
    "train_gan",
]

CHECKPOINT_KIND = "gan"
_F_FAMILY = dict(n_critic=1, generator_lr=2e-4, critic_lr=2e-4, optimizer="adam", betas=(0.5, 0.999))
DEFAULTS: dict[str, dict[str, Any]] = {
    **{name: dict(_F_FAMILY) for name in ("js", "ns", "kl", "rkl", "pearson", "hellinger")},
    "wgan": dict(n_critic=5, generator_lr=5e-5, critic_lr=5e-5, optimizer="rmsprop", betas=(0.0, 0.0)),
    "wgan-gp": dict(n_critic=5, generator_lr=1e-3, critic_lr=1e-3, optimizer="adam", betas=(0.5, 0.9)),
    "gmmn": dict(n_critic=0, generator_lr=1e-3, critic_lr=0.0, optimizer="adam", betas=(0.5, 0.999)),
    "mmd-gan": dict(n_critic=5, generator_lr=1e-4, critic_lr=1e-4, optimizer="adam", betas=(0.5, 0.9)),
}
OPTIMIZERS = ("adam", "rmsprop", "sgd")
_GMMN_FACTORS = (1 / 16, 1 / 8, 1 / 4, 1 / 2, 1.0, 2.0)
_FEATURE_FACTORS = (0.25, 0.5, 1.0, 2.0, 4.0)


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


def _build_critic(loss: str, net: dict[str, Any], event_shape: tuple[int, ...], spectral_norm: bool,
                  stability: Stability | None) -> Critic | None:
    if loss == "gmmn":
        return None
    depth = net["critic_depth"]
    if stability is not None:
        return Critic(event_shape, net["critic_hidden"], depth, activation="softplus", spectral_norm=True,
                      lipschitz=stability.alpha,
                      sharpness=softplus_sharpness(stability.beta1, stability.alpha, depth))
    if loss == "mmd-gan":
        return Critic(event_shape, net["critic_hidden"], depth, out_dim=net["features"], spectral_norm=True)
    return Critic(event_shape, net["critic_hidden"], depth, spectral_norm=spectral_norm)


def _optimizer(name: str, parameters, learning_rate: float,
               betas: tuple[float, float]) -> torch.optim.Optimizer:
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
    """One generator step preceded by ``n_critic`` critic steps (see the module docstring).

    ``generator`` and ``critic`` (``None`` for ``gmmn``) are the networks; ``bandwidths`` the
    GMMN kernel's; ``features`` the random Fourier features of the RKHS penalty (with
    ``stability``). The metrics are ``generator_loss`` and, with a critic, ``critic_loss``
    (the critic's objective without penalties) and, for ``wgan-gp`` or with ``stability``,
    ``penalty``.
    """

    def __init__(self, generator: nn.Module, critic: nn.Module | None, loss: str, *, n_critic: int,
                 generator_lr: float, critic_lr: float, optimizer: str = "adam",
                 critic_optimizer: str | None = None,
                 betas: tuple[float, float] = (0.5, 0.999), clip_value: float = 0.01, gp_weight: float = 10.0,
                 stability: Stability | None = None, features: RandomFourierFeatures | None = None,
                 bandwidths: tuple[float, ...] = (), batch_size: int = 256, ema_decay: float = 0.999) -> None:
        if loss not in LOSS_NAMES:
            raise ValueError(f"unknown loss {loss!r}; choose one of {', '.join(LOSS_NAMES)}")
        critic_optimizer = optimizer if critic_optimizer is None else critic_optimizer
        for name in (optimizer, critic_optimizer):
            if name not in OPTIMIZERS:
                raise ValueError(f"unknown optimizer {name!r}; choose one of {', '.join(OPTIMIZERS)}")
        if (critic is None) != (loss == "gmmn"):
            raise ValueError("gmmn trains without a critic; every other loss needs one")
        if loss == "gmmn" and not bandwidths:
            raise ValueError("gmmn needs the kernel bandwidths")
        if stability is not None and features is None:
            raise ValueError("the RKHS penalty of stability needs random Fourier features")
        self.generator, self.critic, self.loss = generator, critic, loss
        self.n_critic = int(n_critic) if critic is not None else 0
        if critic is not None and self.n_critic < 1:
            raise ValueError(f"n_critic must be an integer >= 1, got {n_critic!r}")
        self.clip_value, self.gp_weight = float(clip_value), float(gp_weight)
        self.stability, self.features, self.bandwidths = stability, features, tuple(bandwidths)
        self.batch_size = int(batch_size)
        self.generator_optimizer = _optimizer(optimizer, generator.parameters(), _positive(generator_lr,
                                              "generator_lr"), betas)
        self.critic_optimizer = None if critic is None else _optimizer(
            critic_optimizer, critic.parameters(), _positive(critic_lr, "critic_lr"), betas)
        self.ema = EMA(generator, ema_decay)
        # Only spectral norm behaves differently in training and evaluation mode (its power
        # iteration); switching modes walks the module tree, so it is done only where it matters.
        self._switch_modes = critic is not None and any(
            nn.utils.parametrize.is_parametrized(module) for module in critic.modules())

    def _features(self, x: Tensor) -> Tensor:
        flat = x.reshape(x.shape[0], -1)
        return torch.cat([flat, self.critic(x)], dim=1)

    @staticmethod
    def _feature_bandwidths(a: Tensor, b: Tensor) -> list[float]:
        # A scale per batch from detached features, not a gradient path: the root-mean-square
        # pairwise distance sqrt(2 tr Cov), O(n d) where a median of distances would cost a sort of
        # n^2 / 2 values every critic step.
        with torch.no_grad():
            z = torch.cat([a, b])
            scale = float((2 * z.var(dim=0).sum()).sqrt().clamp_min(1e-6))
        return [scale * factor for factor in _FEATURE_FACTORS]

    def _critic_step(self, real: Tensor, generator: torch.Generator) -> tuple[Tensor, Tensor | None]:
        with torch.no_grad():
            fake = self.generator.sample(real.shape[0], generator)
        both = torch.cat([real, fake])
        n_real = real.shape[0]
        # One forward pass over real and generated points: with spectral norm, one power iteration
        # per critic step, and both halves scored by the same normalized weights.
        if self.loss == "mmd-gan":
            features = self._features(both)
            real_features, fake_features = features[:n_real], features[n_real:]
            objective = -mmd2_loss(real_features, fake_features,
                                   self._feature_bandwidths(real_features, fake_features))
            penalty = None
        else:
            out = self.critic(both)
            real_out, fake_out = out[:n_real], out[n_real:]
            objective = critic_loss(self.loss, real_out, fake_out)
            penalty = None
            if self.loss == "wgan-gp" and self.gp_weight > 0:
                # Evaluation mode: the interpolates see the same normalized weights, no extra
                # power iteration.
                if self._switch_modes:
                    self.critic.eval()
                penalty = self.gp_weight * gradient_penalty(self.critic, real, fake, generator)
                if self._switch_modes:
                    self.critic.train()
            if self.stability is not None:
                rkhs = rkhs_penalty(out, both, self.features, self.stability)
                penalty = rkhs if penalty is None else penalty + rkhs
        self.critic_optimizer.zero_grad(set_to_none=True)
        (objective if penalty is None else objective + penalty).backward()
        self.critic_optimizer.step()
        if self.loss == "wgan":
            with torch.no_grad():
                for parameter in self.critic.parameters():
                    parameter.clamp_(-self.clip_value, self.clip_value)
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
        if self.loss == "gmmn":
            loss = mmd2_loss(batch[: self.batch_size], fake, self.bandwidths)
        elif self.loss == "mmd-gan":
            real_features, fake_features = self._features(batch[-self.batch_size:]), self._features(fake)
            bandwidths = self._feature_bandwidths(real_features, fake_features)
            loss = mmd2_loss(real_features, fake_features, bandwidths)
        else:
            loss = generator_loss(self.loss, self.critic(fake))
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


def _resolve(loss: str, value: Any, key: str) -> Any:
    return DEFAULTS[loss][key] if value is None else value


def train_gan(x: Tensor, *, loss: str, n_steps: int, generator: torch.Generator, batch_size: int = 256,
              n_critic: int | None = None, generator_lr: float | str | None = None,
              critic_lr: float | None = None, optimizer: str | None = None,
              critic_optimizer: str | None = None, spectral_norm: bool = False,
              clip_value: float = 0.01, gp_weight: float = 10.0, stability: Stability | None = None,
              bandwidths: list[float] | None = None, net: dict[str, Any] | None = None,
              ema_decay: float = 0.999, out_dir: str | Path | None = None, resume: bool = False,
              overwrite: bool = False, progress: bool = True, checkpoint_every: int | None = None,
              log_every: int = 50, extra_config: dict[str, Any] | None = None,
              on_checkpoint=None) -> tuple[GANModel, TrainHistory]:
    """Train a generator of the samples ``x`` ``(n, d)`` or ``(n, C, H, W)`` (already standardized)
    with the objective ``loss`` (one of :data:`~measureflow.generative.gan.losses.LOSS_NAMES`)
    for ``n_steps`` generator steps.

    ``None`` options take the loss's :data:`DEFAULTS`; ``optimizer`` (``"adam"``, ``"rmsprop"``,
    ``"sgd"``) is the generator's and, unless ``critic_optimizer`` is given, the critic's;
    ``generator_lr="theory"`` uses gamma_0 = 1/(7 alpha + beta_2) of ``stability`` as the step
    per generated point: N gamma_0 for a particle generator of N points (see
    :func:`~measureflow.generative.gan.theory_learning_rate`); the theory is about gradient
    descent, so pair it with ``optimizer="sgd"`` (with Adam it is only a scale). A stability
    ``bandwidth`` of ``None`` becomes the median pairwise distance of ``x``.
    ``spectral_norm`` normalizes the critic (implied by ``stability``; refused with ``wgan``'s
    weight clipping). ``net`` overrides
    :func:`default_net_config` (e.g. ``{"generator": "particles", "n_points": 64}``). The networks
    and random features are drawn from ``generator`` (through a forked global RNG). Returns the
    EMA generator as a :class:`GANModel` and the history. ``out_dir``, ``resume``, ``overwrite``
    and the checkpoint options are those of :func:`~measureflow.generative.train.train`; a
    finished run resumed with a larger ``n_steps`` trains on.
    """
    if loss not in LOSS_NAMES:
        raise ValueError(f"unknown loss {loss!r}; choose one of {', '.join(LOSS_NAMES)}")
    if x.dim() < 2 or x.shape[0] < 2:
        raise ValueError(f"x must have shape (n, ...) with n >= 2, got {tuple(x.shape)}")
    if not bool(torch.isfinite(x).all()):
        raise ValueError("x contains NaN or infinite values")
    if stability is not None and not isinstance(stability, Stability):
        raise TypeError(f"stability must be a Stability, got {type(stability).__name__}")
    if loss == "wgan" and (spectral_norm or stability is not None):
        raise ValueError("wgan's weight clipping cannot be combined with spectral normalization or stability "
                         "(both constrain the Lipschitz constant); use wgan-gp or drop the option")
    if loss in ("gmmn", "mmd-gan") and stability is not None:
        raise ValueError(f"the stability regularizers act on a scalar critic; {loss} has none (use js, ns, "
                         "an f-GAN loss or wgan-gp)")
    if loss == "gmmn" and spectral_norm:
        raise ValueError("gmmn has no critic to normalize; drop --spectral-norm")
    net_config = _check_net({**default_net_config(tuple(int(s) for s in x.shape[1:])), **(net or {})})
    if generator_lr == "theory":
        if stability is None:
            raise ValueError("generator_lr='theory' (gamma_0 = 1/(7 alpha + beta_2)) needs a stability "
                             "triple")
        generator_lr = theory_learning_rate(stability)
        if net_config["generator"] == "particles":
            # The batch-mean loss moves each of the N points by lr / N times its gradient; gamma_0
            # is the step per point.
            generator_lr *= int(net_config.get("n_points", 1))
    elif isinstance(generator_lr, str):
        raise ValueError(f"generator_lr must be a positive number or 'theory', got {generator_lr!r}")
    n_critic = _resolve(loss, n_critic, "n_critic")
    optimizer = _resolve(loss, optimizer, "optimizer")
    critic_optimizer = optimizer if critic_optimizer is None else critic_optimizer
    for name in (optimizer, critic_optimizer):
        if name not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer {name!r}; choose one of {', '.join(OPTIMIZERS)}")
    generator_lr = _positive(_resolve(loss, generator_lr, "generator_lr"), "generator_lr")
    critic_lr = float(_resolve(loss, critic_lr, "critic_lr")) if loss != "gmmn" else 0.0
    if loss != "gmmn":
        _positive(critic_lr, "critic_lr")
        if isinstance(n_critic, bool) or not isinstance(n_critic, int) or n_critic < 1:
            raise ValueError(f"n_critic must be an integer >= 1, got {n_critic!r}")
    event_shape = tuple(int(s) for s in x.shape[1:])
    if stability is not None and stability.bandwidth is None:
        stability = dataclasses.replace(stability, bandwidth=median_bandwidth(x.reshape(x.shape[0], -1)))
    if loss == "gmmn":
        if bandwidths is None:
            median = float(median_bandwidth(x.reshape(x.shape[0], -1)))
            bandwidths = [median * factor for factor in _GMMN_FACTORS]
        bandwidths = [_positive(float(h), "bandwidth") for h in bandwidths]
    # n_steps is not part of the config: nothing depends on it (no learning-rate schedule), so a
    # finished run can be resumed with a larger n_steps to train it further.
    config = {"loss": loss, "event_shape": list(event_shape), "net": net_config,
              "batch_size": int(batch_size), "n_critic": int(n_critic) if loss != "gmmn" else 0,
              "generator_lr": generator_lr, "critic_lr": critic_lr, "optimizer": optimizer,
              "critic_optimizer": critic_optimizer,
              # MMD-GAN's feature map is always spectrally normalized.
              "spectral_norm": bool(spectral_norm or stability is not None or loss == "mmd-gan"),
              "clip_value": float(clip_value),
              "gp_weight": float(gp_weight), "stability": None if stability is None else stability.to_dict(),
              "bandwidths": bandwidths, "ema_decay": float(ema_decay), **(extra_config or {})}
    seed = int(torch.randint(0, 2**62, (1,), generator=generator, device=generator.device))
    with torch.random.fork_rng(devices=[]):
        # The CPU generator only (torch.manual_seed would also reseed every CUDA device, outside
        # the fork); modules are built on the CPU and moved.
        torch.default_generator.manual_seed(seed)
        model = build_generator(net_config, event_shape).to(device=x.device, dtype=x.dtype)
        critic = _build_critic(loss, net_config, event_shape, bool(spectral_norm), stability)
        critic = None if critic is None else critic.to(device=x.device, dtype=x.dtype)
        features = None
        if stability is not None:
            features = RandomFourierFeatures(math.prod(event_shape), stability.n_features,
                                             stability.bandwidth, dtype=x.dtype).to(x.device)
    # The loss's Adam betas where its default optimizer is Adam; otherwise torch's usual GAN choice.
    betas = DEFAULTS[loss]["betas"] if DEFAULTS[loss]["optimizer"] == "adam" else (0.5, 0.999)
    task = GANTask(model, critic, loss, n_critic=n_critic, generator_lr=generator_lr,
                   critic_lr=critic_lr if loss != "gmmn" else 1.0, optimizer=optimizer,
                   critic_optimizer=critic_optimizer, betas=betas,
                   clip_value=clip_value, gp_weight=gp_weight, stability=stability, features=features,
                   bandwidths=tuple(bandwidths or ()), batch_size=batch_size, ema_decay=ema_decay)
    history = train(task, x, n_steps=n_steps, batch_size=batch_size * max(task.n_critic, 1),
                    generator=generator, out_dir=out_dir, resume=resume, overwrite=overwrite,
                    progress=progress, config=config, kind=CHECKPOINT_KIND,
                    checkpoint_every=checkpoint_every, log_every=log_every,
                    on_checkpoint=on_checkpoint, description=f"gan ({loss})")
    return GANModel(task.ema.model).eval(), history


@dataclass(frozen=True)
class LoadedGAN:
    """A trained generator read back from its checkpoint: the EMA ``model``, the ``config`` it was
    trained with and the training ``step`` it reached."""

    model: GANModel
    config: dict[str, Any]
    step: int


def load_gan(path: str | Path, device: torch.device | str = "cpu") -> LoadedGAN:
    """Rebuild the EMA generator stored in the checkpoint ``path`` (a file or a run folder)."""
    payload = load_checkpoint(path, kind=CHECKPOINT_KIND, map_location=device)
    config = payload["config"]
    try:
        event_shape = tuple(int(s) for s in config["event_shape"])
        # The initial weights are overwritten at once: draw them without moving the caller's RNG.
        with torch.random.fork_rng(devices=[]):
            generator = build_generator(config["net"], event_shape)
        state = payload["ema"]["model"]
        dtype = next(iter(state.values())).dtype
        generator = generator.to(device=device, dtype=dtype)
        generator.load_state_dict(state)
    except (KeyError, RuntimeError, TypeError, StopIteration) as error:
        raise ValueError(f"checkpoint {str(path)!r} does not hold a GAN this version can read: "
                         f"{error}") from None
    return LoadedGAN(GANModel(generator).eval(), config, int(payload["step"]))
