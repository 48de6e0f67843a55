r"""The objectives of adversarial and kernel generative models, one object per family.

Data P (samples x), model Q_theta = law of G(z), critic outputs v = h(x) (raw, before any
activation). Every loss here is one to *minimize*. A :class:`GANObjective` holds all that a
training step needs to know about its game:

- ``critic_loss`` and ``generator_loss`` (on the critic's raw outputs for a scalar critic, on
  the networks themselves otherwise);
- whether it needs a critic (``needs_critic``), its output dimension, and the training defaults
  (``defaults``: critic steps per generator step, learning rates, optimizer);
- the critic's output activation g_f (``critic_activation``, as a formula);
- a ``penalty`` added to the critic's loss (the gradient penalty of WGAN-GP), and
  ``after_critic_step`` (WGAN's weight clipping);
- which options it admits (spectral normalization, the stability regularizers).

The families:

- :class:`FGAN` (Nowozin, Cseke & Tomioka 2016), one per row of the f-divergence table of
  :mod:`~measureflow.generative.gan.divergences`: the critic maximizes
  B(h) = E_P[g_f(h(x))] - E_Q[f*(g_f(h(G z)))] <= D_f(P || Q_theta); the generator minimizes B,
  i.e. its loss is -E_Q[f*(g_f(h(G z)))]. The row ``"gan"`` is the original minimax GAN
  (g(v) = log sigmoid(v), f*(g(v)) = -log(1 - sigmoid(v)); the game's value at the optimal
  critic is 2 JS - log 4; Goodfellow et al. 2014). With ``non_saturating=True`` the generator
  minimizes -E_Q[g(h(G z))] = -E_Q log D(G z) instead: the same fixed points, with gradients that
  do not vanish when D(G z) -> 0.
- :class:`WGAN` (Arjovsky et al. 2017) and :class:`WGANGP` (Gulrajani et al. 2017): the
  Kantorovich-Rubinstein dual W1(P, Q) = sup_{Lip h <= 1} E_P h - E_Q h; critic loss
  E_Q h - E_P h, generator loss -E_Q h; the Lipschitz constraint by weight clipping after each
  critic step, or by the gradient penalty lambda E (|grad h(x_hat)| - 1)^2.
- :class:`GMMN` (Li, Swersky & Zemel 2015; Dziugaite et al. 2015): no critic; the generator
  minimizes MMD^2 with a fixed sum of Gaussian kernels (:func:`mmd2_loss`).
- :class:`MMDGAN` (Li et al. 2017): MMD^2 between learned features [x, g_xi(x)]; the
  (spectrally normalized) feature map maximizes it, the generator minimizes it.

The name table (:data:`OBJECTIVES`, :func:`make_objective`) is the registry edge the CLI and
the checks use: adding a family is a class here and one entry in that table.
"""

from __future__ import annotations

import abc
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from measureflow._core import check_positive
from measureflow.generative.gan.divergences import F_DIVERGENCES, variational_bound
from measureflow.generative.gan.nets import Critic, softplus_sharpness
from measureflow.generative.gan.stability import Stability
from measureflow.metrics import median_bandwidth

__all__ = [
    "ADVERSARIAL_LOSSES",
    "FGAN",
    "F_LOSS_ROWS",
    "GMMN",
    "LOSS_NAMES",
    "MMDGAN",
    "OBJECTIVES",
    "WGAN",
    "WGANGP",
    "GANObjective",
    "TrainingDefaults",
    "critic_loss",
    "generator_loss",
    "gradient_penalty",
    "make_objective",
    "mmd2_loss",
]


@dataclass(frozen=True)
class TrainingDefaults:
    """The settings an objective trains with unless told otherwise: critic steps per generator
    step, the two learning rates, the optimizer (``"adam"``, ``"rmsprop"``, ``"sgd"``) and Adam's betas."""

    n_critic: int
    generator_lr: float
    critic_lr: float
    optimizer: str
    betas: tuple[float, float] = (0.5, 0.999)


def _check_outputs(*outputs: Tensor) -> None:
    for out in outputs:
        if not isinstance(out, Tensor) or out.dim() != 1 or out.numel() == 0:
            shape = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
            raise ValueError(f"critic outputs must be non-empty 1-D tensors (one value per sample), "
                             f"got {shape}")


def gradient_penalty(critic: Callable[[Tensor], Tensor], real: Tensor, fake: Tensor,
                     generator: torch.Generator | None = None) -> Tensor:
    r"""E (||grad_x h(x_hat)||_2 - 1)^2 over x_hat = u x + (1 - u) y, u ~ U(0, 1) one per row,
    for data ``real`` and generated ``fake`` of the same shape ``(n, ...)`` (Gulrajani et al.
    2017). Differentiable in the critic's parameters (built with ``create_graph=True``); the
    gradient does not flow into ``fake``.

    >>> h = lambda x: 3 * x.sum(dim=1)           # |grad h| = 3 sqrt(2) everywhere
    >>> round(float(gradient_penalty(h, torch.zeros(5, 2), torch.ones(5, 2))), 4)
    10.5147
    """
    if real.shape != fake.shape:
        raise ValueError(f"real and fake must have the same shape, got {tuple(real.shape)} and "
                         f"{tuple(fake.shape)}")
    shape = (real.shape[0],) + (1,) * (real.dim() - 1)
    u = torch.rand(shape, generator=generator, dtype=real.dtype, device=real.device)
    x_hat = (u * real.detach() + (1 - u) * fake.detach()).requires_grad_(True)
    out = critic(x_hat)
    (grad,) = torch.autograd.grad(out.sum(), x_hat, create_graph=True)
    norm = grad.reshape(grad.shape[0], -1).norm(dim=1)
    return ((norm - 1) ** 2).mean()


def mmd2_loss(x: Tensor, y: Tensor, bandwidths: Sequence[float]) -> Tensor:
    r"""Unbiased MMD^2(x, y) with k = sum_h exp(-|a - b|^2 / (2 h^2)) over ``bandwidths``,
    differentiable in both samples; rows ``(n, ...)`` and ``(m, ...)`` are flattened::

        1/(n(n-1)) sum_{i != i'} k(x_i, x_i') + 1/(m(m-1)) sum_{j != j'} k(y_j, y_j')
            - 2/(nm) sum_{i, j} k(x_i, y_j)

    Dense O((n + m)^2) kernel matrices: meant for minibatches (use
    :func:`measureflow.metrics.mmd2` to evaluate large samples).

    >>> x = torch.zeros(3, 2); y = torch.zeros(3, 2)
    >>> float(mmd2_loss(x, y, [1.0]))
    0.0
    """
    x, y = x.reshape(x.shape[0], -1), y.reshape(y.shape[0], -1)
    if x.shape[1] != y.shape[1] or x.shape[0] < 2 or y.shape[0] < 2:
        raise ValueError(f"x (n, d) and y (m, d) need n, m >= 2 and the same d, got {tuple(x.shape)} and "
                         f"{tuple(y.shape)}")
    bandwidths = [float(h) for h in bandwidths]
    if not bandwidths or any(not h > 0 for h in bandwidths):
        raise ValueError(f"bandwidths must be a non-empty list of positive numbers, got {bandwidths}")
    n, m = x.shape[0], y.shape[0]
    z = torch.cat([x, y])
    # Squared distances from the Gram matrix (one matmul), clamped at 0 against round-off.
    squared_norms = (z * z).sum(dim=1)
    d2 = (squared_norms[:, None] + squared_norms[None, :] - 2 * z @ z.T).clamp_min(0)
    # Exponents are clamped at -80 (e^-80 ~ 2e-35, far below the estimator's resolution): results
    # that would be subnormal make exp and its backward an order of magnitude slower on CPUs.
    kernel = sum(torch.exp((d2 * (-0.5 / (h * h))).clamp_min(-80.0)) for h in bandwidths)
    k_xx, k_yy, k_xy = kernel[:n, :n], kernel[n:, n:], kernel[:n, n:]
    within_x = (k_xx.sum() - k_xx.diagonal().sum()) / (n * (n - 1))
    within_y = (k_yy.sum() - k_yy.diagonal().sum()) / (m * (m - 1))
    return within_x + within_y - 2 * k_xy.mean()


class GANObjective(abc.ABC):
    """One family's game (see the module docstring). Subclasses with a scalar critic implement
    :meth:`critic_loss` and :meth:`generator_loss` on the critic's raw outputs; the others
    override :meth:`critic_objective` / :meth:`generator_objective`, which see the networks."""

    name: str
    defaults: TrainingDefaults
    needs_critic: ClassVar[bool] = True
    scalar_critic: ClassVar[bool] = True  # one output per sample: the stability regularizers apply
    spectral_norm_allowed: ClassVar[bool] = True
    critic_activation: str = "v (identity)"

    # --- the game on a scalar critic's raw outputs ---------------------------------------

    def critic_loss(self, real_out: Tensor, fake_out: Tensor) -> Tensor:
        """The critic's loss from its outputs on data ``(n,)`` and on generated samples ``(m,)``."""
        raise ValueError(f"{self.name} has no scalar critic; use critic_objective")

    def generator_loss(self, fake_out: Tensor) -> Tensor:
        """The generator's loss from the critic's outputs on its samples ``(m,)``."""
        raise ValueError(f"{self.name} has no scalar critic; use generator_objective")

    # --- the game on the networks (what a training step calls) -----------------------------

    def critic_objective(self, critic: nn.Module, real: Tensor,
                         fake: Tensor) -> tuple[Tensor, Tensor | None]:
        """(loss, raw outputs on ``cat([real, fake])`` or None) for one critic step. Real and
        generated points go through the critic in one pass: with spectral norm that is one power
        iteration per step, and both halves are scored by the same normalized weights."""
        out = critic(torch.cat([real, fake]))
        return self.critic_loss(out[: real.shape[0]], out[real.shape[0]:]), out

    def generator_objective(self, critic: nn.Module | None, real: Tensor, fake: Tensor) -> Tensor:
        """The generator's loss on fresh samples ``fake`` (``real``: a data batch, for kernel losses)."""
        return self.generator_loss(critic(fake))

    def penalty(self, critic: nn.Module, real: Tensor, fake: Tensor,
                generator: torch.Generator | None) -> Tensor | None:
        """A penalty added to the critic's loss (None: none)."""
        return None

    def after_critic_step(self, critic: nn.Module) -> None:  # noqa: B027 (a hook; most games need none)
        """Called after each critic update (e.g. to clip the weights)."""

    # --- set-up --------------------------------------------------------------------------

    def check_options(self, *, spectral_norm: bool, stability: Stability | None) -> None:
        """Refuse options this game cannot take, with the reason."""
        if stability is not None and not self.scalar_critic:
            raise ValueError(f"the stability regularizers act on a scalar critic; {self.name} has none "
                             "(use js, ns, an f-GAN loss or wgan-gp)")
        if spectral_norm and not self.spectral_norm_allowed:
            raise ValueError(f"{self.name} cannot be combined with --spectral-norm")

    def fitted(self, x: Tensor) -> GANObjective:
        """This objective with its data-dependent settings (e.g. kernel bandwidths) fixed from ``x``."""
        return self

    def build_critic(self, net: dict[str, Any], event_shape: tuple[int, ...], spectral_norm: bool,
                     stability: Stability | None) -> nn.Module | None:
        """The critic network: a scalar MLP critic; with ``stability``, the smooth, spectrally
        normalized critic whose Lipschitz constant and gradient smoothness the theory bounds."""
        depth = net["critic_depth"]
        if stability is not None:
            return Critic(event_shape, net["critic_hidden"], depth, activation="softplus", spectral_norm=True,
                          lipschitz=stability.alpha,
                          sharpness=softplus_sharpness(stability.beta1, stability.alpha, depth))
        return Critic(event_shape, net["critic_hidden"], depth, spectral_norm=spectral_norm)

    def uses_spectral_norm(self, spectral_norm: bool, stability: Stability | None) -> bool:
        """Whether the critic this objective builds is spectrally normalized."""
        return bool(spectral_norm or stability is not None)

    def config(self) -> dict[str, Any]:
        """The objective's name and settings, JSON-safe (stored in checkpoints)."""
        return {"name": self.name}

    def __repr__(self) -> str:
        settings = ", ".join(f"{key}={value!r}" for key, value in self.config().items() if key != "name")
        return f"{type(self).__name__}({settings})"


_F_DEFAULTS = TrainingDefaults(n_critic=1, generator_lr=2e-4, critic_lr=2e-4, optimizer="adam")
# Loss name -> row of the f-GAN table.
F_LOSS_ROWS = {"js": "gan", "ns": "gan", "kl": "kl", "rkl": "reverse-kl", "pearson": "pearson",
               "hellinger": "hellinger"}
_ROW_NAMES = {row: name for name, row in F_LOSS_ROWS.items() if name != "ns"}


class FGAN(GANObjective):
    """The f-GAN game of the f-divergence ``row`` (``"gan"`` is the original minimax GAN);
    ``non_saturating=True`` swaps in the generator loss -E_Q g_f(v) (for ``"gan"``: -E log D(G z))."""

    defaults = _F_DEFAULTS

    def __init__(self, row: str = "gan", *, non_saturating: bool = False) -> None:
        if row not in _ROW_NAMES:
            raise ValueError(f"unknown f-divergence row {row!r}; choose one of {', '.join(_ROW_NAMES)}")
        self.row, self.non_saturating = row, bool(non_saturating)
        self.name = "ns" if self.non_saturating and row == "gan" else _ROW_NAMES[row]
        if self.non_saturating and row != "gan":
            self.name = f"{_ROW_NAMES[row]}-ns"
        self.divergence = F_DIVERGENCES[row]
        self.critic_activation = f"g_f of the {row} row"

    def critic_loss(self, real_out: Tensor, fake_out: Tensor) -> Tensor:
        """-B(h) = -(E_P g_f(v) - E_Q f*(g_f(v)))."""
        _check_outputs(real_out, fake_out)
        return -variational_bound(real_out, fake_out, self.row)

    def generator_loss(self, fake_out: Tensor) -> Tensor:
        """-E_Q f*(g_f(v)) (minimax), or -E_Q g_f(v) (non-saturating)."""
        _check_outputs(fake_out)
        if self.non_saturating:
            return -self.divergence.activation(fake_out).mean()
        return -self.divergence.activated_conjugate(fake_out).mean()

    def config(self) -> dict[str, Any]:
        return {"name": self.name, "row": self.row, "non_saturating": self.non_saturating}


class _Wasserstein(GANObjective):
    def critic_loss(self, real_out: Tensor, fake_out: Tensor) -> Tensor:
        """E_Q h - E_P h."""
        _check_outputs(real_out, fake_out)
        return fake_out.mean() - real_out.mean()

    def generator_loss(self, fake_out: Tensor) -> Tensor:
        """-E_Q h."""
        _check_outputs(fake_out)
        return -fake_out.mean()


class WGAN(_Wasserstein):
    """WGAN with weight clipping: every critic weight is clipped to [-c, c] after each critic step."""

    name = "wgan"
    defaults = TrainingDefaults(n_critic=5, generator_lr=5e-5, critic_lr=5e-5, optimizer="rmsprop",
                                betas=(0.0, 0.0))
    spectral_norm_allowed = False

    def __init__(self, clip_value: float = 0.01) -> None:
        self.clip_value = check_positive(clip_value, "clip_value")

    def check_options(self, *, spectral_norm: bool, stability: Stability | None) -> None:
        if spectral_norm or stability is not None:
            raise ValueError("wgan's weight clipping cannot be combined with spectral normalization or "
                             "stability (both constrain the Lipschitz constant); use wgan-gp or drop the "
                             "option")

    @torch.no_grad()
    def after_critic_step(self, critic: nn.Module) -> None:
        for parameter in critic.parameters():
            parameter.clamp_(-self.clip_value, self.clip_value)

    def config(self) -> dict[str, Any]:
        return {"name": self.name, "clip_value": self.clip_value}


class WGANGP(_Wasserstein):
    """WGAN with the gradient penalty ``gp_weight`` x E (|grad h(x_hat)| - 1)^2 (0: the plain game)."""

    name = "wgan-gp"
    # Gulrajani et al. use beta_1 = 0 and lr 1e-4; at 1e-4 the 2-D toys were still a blurry cloud
    # after 5,000 steps, at 1e-3 the 8-Gaussian ring had 8/8 modes after 2,000.
    defaults = TrainingDefaults(n_critic=5, generator_lr=1e-3, critic_lr=1e-3, optimizer="adam",
                                betas=(0.5, 0.9))

    def __init__(self, gp_weight: float = 10.0) -> None:
        self.gp_weight = check_positive(gp_weight, "gp_weight", allow_zero=True)

    def penalty(self, critic: nn.Module, real: Tensor, fake: Tensor,
                generator: torch.Generator | None) -> Tensor | None:
        if self.gp_weight == 0:
            return None
        return self.gp_weight * gradient_penalty(critic, real, fake, generator)

    def config(self) -> dict[str, Any]:
        return {"name": self.name, "gp_weight": self.gp_weight}


_GMMN_FACTORS = (1 / 16, 1 / 8, 1 / 4, 1 / 2, 1.0, 2.0)


class GMMN(GANObjective):
    """GMMN: no critic; the generator minimizes MMD^2 with the sum of Gaussian kernels at
    ``bandwidths`` (None: the data's median pairwise distance times 1/16, 1/8, 1/4, 1/2, 1, 2,
    fixed by :meth:`fitted`)."""

    name = "gmmn"
    defaults = TrainingDefaults(n_critic=0, generator_lr=1e-3, critic_lr=0.0, optimizer="adam")
    needs_critic = False
    scalar_critic = False
    spectral_norm_allowed = False
    critic_activation = "none (no critic)"

    def __init__(self, bandwidths: Sequence[float] | None = None) -> None:
        if bandwidths is not None:
            bandwidths = [float(h) for h in bandwidths]
            if not bandwidths or any(not (math.isfinite(h) and h > 0) for h in bandwidths):
                raise ValueError(f"bandwidths must be finite positive numbers, got {bandwidths}")
        self.bandwidths = None if bandwidths is None else tuple(bandwidths)

    def check_options(self, *, spectral_norm: bool, stability: Stability | None) -> None:
        if spectral_norm:
            raise ValueError("gmmn has no critic to normalize; drop --spectral-norm")
        super().check_options(spectral_norm=False, stability=stability)

    def fitted(self, x: Tensor) -> GMMN:
        if self.bandwidths is not None:
            return self
        median = float(median_bandwidth(x.reshape(x.shape[0], -1)))
        return GMMN([median * factor for factor in _GMMN_FACTORS])

    def build_critic(self, net: dict[str, Any], event_shape: tuple[int, ...], spectral_norm: bool,
                     stability: Stability | None) -> None:
        return None

    def uses_spectral_norm(self, spectral_norm: bool, stability: Stability | None) -> bool:
        return False

    def generator_objective(self, critic: nn.Module | None, real: Tensor, fake: Tensor) -> Tensor:
        if self.bandwidths is None:
            raise ValueError("gmmn needs its kernel bandwidths; call fitted(x) on the data first")
        return mmd2_loss(real, fake, self.bandwidths)

    def config(self) -> dict[str, Any]:
        return {"name": self.name, "bandwidths": None if self.bandwidths is None else list(self.bandwidths)}


_FEATURE_FACTORS = (0.25, 0.5, 1.0, 2.0, 4.0)


class MMDGAN(GANObjective):
    """MMD-GAN: MMD^2 with Gaussian kernels on [x, g_xi(x)], the raw sample concatenated with the
    ``features`` outputs of a spectrally normalized critic (bandwidths: the batch's
    root-mean-square feature distance times 1/4 ... 4), so the learned features can only sharpen
    a kernel that already separates distributions. The critic maximizes MMD^2, the generator
    minimizes it."""

    name = "mmd-gan"
    defaults = TrainingDefaults(n_critic=5, generator_lr=1e-4, critic_lr=1e-4, optimizer="adam",
                                betas=(0.5, 0.9))
    scalar_critic = False
    critic_activation = "v (identity), a feature vector"

    def _features(self, critic: nn.Module, x: Tensor) -> Tensor:
        return torch.cat([x.reshape(x.shape[0], -1), critic(x)], dim=1)

    @staticmethod
    def _bandwidths(a: Tensor, b: Tensor) -> list[float]:
        # A scale per batch from detached features, not a gradient path: the root-mean-square
        # pairwise distance sqrt(2 tr Cov), O(n d) where a median of distances would cost a sort of
        # n^2 / 2 values every critic step.
        with torch.no_grad():
            scale = float((2 * torch.cat([a, b]).var(dim=0).sum()).sqrt().clamp_min(1e-6))
        return [scale * factor for factor in _FEATURE_FACTORS]

    def _mmd2(self, critic: nn.Module, real: Tensor, fake: Tensor) -> Tensor:
        features = self._features(critic, torch.cat([real, fake]))
        real_features, fake_features = features[: real.shape[0]], features[real.shape[0]:]
        return mmd2_loss(real_features, fake_features, self._bandwidths(real_features, fake_features))

    def critic_objective(self, critic: nn.Module, real: Tensor, fake: Tensor) -> tuple[Tensor, None]:
        return -self._mmd2(critic, real, fake), None

    def generator_objective(self, critic: nn.Module | None, real: Tensor, fake: Tensor) -> Tensor:
        real_features, fake_features = self._features(critic, real), self._features(critic, fake)
        return mmd2_loss(real_features, fake_features, self._bandwidths(real_features, fake_features))

    def build_critic(self, net: dict[str, Any], event_shape: tuple[int, ...], spectral_norm: bool,
                     stability: Stability | None) -> nn.Module:
        # The feature map is always spectrally normalized: unconstrained features can blow the
        # kernel's scale up and the generator's gradients with it.
        return Critic(event_shape, net["critic_hidden"], net["critic_depth"], out_dim=net["features"],
                      spectral_norm=True)

    def uses_spectral_norm(self, spectral_norm: bool, stability: Stability | None) -> bool:
        return True


# The registry edge: names as the CLI, the checks and the configs spell them.
OBJECTIVES: dict[str, Callable[..., GANObjective]] = {
    "js": lambda: FGAN("gan"),
    "ns": lambda: FGAN("gan", non_saturating=True),
    "kl": lambda: FGAN("kl"),
    "rkl": lambda: FGAN("reverse-kl"),
    "pearson": lambda: FGAN("pearson"),
    "hellinger": lambda: FGAN("hellinger"),
    "wgan": WGAN,
    "wgan-gp": WGANGP,
    "gmmn": GMMN,
    "mmd-gan": MMDGAN,
}
LOSS_NAMES = tuple(OBJECTIVES)
# The names whose critic outputs one value per sample (critic_loss / generator_loss apply).
ADVERSARIAL_LOSSES = tuple(name for name in LOSS_NAMES if OBJECTIVES[name]().scalar_critic)


def make_objective(name: str | GANObjective, **options: Any) -> GANObjective:
    """The objective called ``name`` (one of :data:`LOSS_NAMES`) with its ``options`` (``clip_value``
    for wgan, ``gp_weight`` for wgan-gp, ``bandwidths`` for gmmn); an objective passes through."""
    if isinstance(name, GANObjective):
        if options:
            raise ValueError(f"options {sorted(options)} apply to a name, not to an objective object")
        return name
    if name not in OBJECTIVES:
        raise ValueError(f"unknown loss {name!r}; choose one of {', '.join(LOSS_NAMES)}")
    try:
        return OBJECTIVES[name](**options)
    except TypeError:
        raise ValueError(f"the {name} objective takes no options {sorted(options)}") from None


def _scalar(name: str) -> GANObjective:
    objective = make_objective(name)
    if not objective.scalar_critic:
        raise ValueError(f"unknown loss {name!r} here; choose one of {', '.join(ADVERSARIAL_LOSSES)}")
    return objective


def critic_loss(loss: str, real_out: Tensor, fake_out: Tensor) -> Tensor:
    """The critic's loss of the objective named ``loss`` from raw outputs on data ``(n,)`` and on
    generated samples ``(m,)`` (penalties not included: see :func:`gradient_penalty`).

    >>> v = torch.zeros(4)
    >>> round(float(critic_loss("js", v, v)), 4)   # D = 1/2 everywhere: -2 log(1/2) = log 4
    1.3863
    """
    return _scalar(loss).critic_loss(real_out, fake_out)


def generator_loss(loss: str, fake_out: Tensor) -> Tensor:
    """The generator's loss of the objective named ``loss`` from the critic's raw outputs ``(m,)``.

    >>> v = torch.zeros(4)
    >>> round(float(generator_loss("js", v)), 4), round(float(generator_loss("ns", v)), 4)
    (-0.6931, 0.6931)
    """
    return _scalar(loss).generator_loss(fake_out)
