"""Implicit generative models X = f_theta(Z), Z ~ N(0, I), trained against a divergence between
the model and the data: the original GAN and its non-saturating variant, f-GAN (one table of f,
f* and activations), WGAN with weight clipping or gradient penalty, spectral normalization,
GMMN and MMD-GAN, and the stability regularizers of Chu, Minami & Fukumizu (2020); mode
diagnostics for Gaussian-mixture data.
"""

from measureflow.generative.gan.divergences import F_DIVERGENCES, FDivergence, f_divergence, variational_bound
from measureflow.generative.gan.losses import (
    ADVERSARIAL_LOSSES,
    LOSS_NAMES,
    critic_loss,
    generator_loss,
    gradient_penalty,
    mmd2_loss,
)
from measureflow.generative.gan.modes import ModeReport, mode_diagnostics
from measureflow.generative.gan.nets import Critic, Generator, ParticleGenerator, softplus_sharpness
from measureflow.generative.gan.stability import (
    RandomFourierFeatures,
    Stability,
    parse_stability,
    rkhs_norm_squared,
    rkhs_penalty,
    theory_learning_rate,
)
from measureflow.generative.gan.training import (
    DEFAULTS,
    GANModel,
    GANTask,
    LoadedGAN,
    build_generator,
    default_net_config,
    load_gan,
    train_gan,
)

__all__ = [
    "ADVERSARIAL_LOSSES", "DEFAULTS", "F_DIVERGENCES", "LOSS_NAMES", "Critic", "FDivergence", "GANModel",
    "GANTask", "Generator", "LoadedGAN", "ModeReport", "ParticleGenerator", "RandomFourierFeatures",
    "Stability", "build_generator", "critic_loss", "default_net_config", "f_divergence", "generator_loss",
    "gradient_penalty", "load_gan", "mmd2_loss", "mode_diagnostics", "parse_stability", "rkhs_norm_squared",
    "rkhs_penalty", "softplus_sharpness", "theory_learning_rate", "train_gan", "variational_bound",
]
