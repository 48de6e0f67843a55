"""Implicit generative models X = f_theta(Z), Z ~ N(0, I), trained against a divergence between
the model and the data: the original GAN and its non-saturating variant, f-GAN (one table of f,
f* and activations), WGAN with weight clipping or gradient penalty, spectral normalization,
GMMN and MMD-GAN, and the stability regularizers of Chu, Minami & Fukumizu (2020); mode
diagnostics for Gaussian-mixture data.
"""

from measureflow.generative.gan.critic import CriticTask, fit_critic
from measureflow.generative.gan.divergences import F_DIVERGENCES, FDivergence, f_divergence, variational_bound
from measureflow.generative.gan.family import GANFamily
from measureflow.generative.gan.modes import ModeReport, mode_diagnostics
from measureflow.generative.gan.nets import Critic, Generator, ParticleGenerator, softplus_sharpness
from measureflow.generative.gan.objectives import (
    ADVERSARIAL_LOSSES,
    FGAN,
    GMMN,
    LOSS_NAMES,
    MMDGAN,
    OBJECTIVES,
    WGAN,
    WGANGP,
    GANObjective,
    TrainingDefaults,
    critic_loss,
    generator_loss,
    gradient_penalty,
    make_objective,
    mmd2_loss,
)
from measureflow.generative.gan.stability import (
    RandomFourierFeatures,
    Stability,
    parse_stability,
    rkhs_norm_squared,
    rkhs_penalty,
    theory_learning_rate,
)
from measureflow.generative.gan.training import (
    GANModel,
    GANTask,
    build_generator,
    default_net_config,
    train_gan,
)

__all__ = [
    "ADVERSARIAL_LOSSES", "FGAN", "F_DIVERGENCES", "GMMN", "LOSS_NAMES", "MMDGAN", "OBJECTIVES", "WGAN",
    "WGANGP", "Critic", "CriticTask", "FDivergence", "GANFamily", "GANModel", "GANObjective", "GANTask",
    "Generator", "ModeReport", "ParticleGenerator", "RandomFourierFeatures", "Stability", "TrainingDefaults",
    "build_generator", "critic_loss", "default_net_config", "f_divergence", "fit_critic", "generator_loss",
    "gradient_penalty", "make_objective", "mmd2_loss", "mode_diagnostics", "parse_stability",
    "rkhs_norm_squared", "rkhs_penalty", "softplus_sharpness", "theory_learning_rate", "train_gan",
    "variational_bound",
]
