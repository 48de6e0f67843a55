"""The GAN losses by name, and the two estimators they use (gradient penalty, minibatch MMD^2).

The games themselves are objects in :mod:`~measureflow.generative.gan.objectives`; this module
keeps the functional forms ``critic_loss(name, real_out, fake_out)`` and
``generator_loss(name, fake_out)`` for code that works on a critic's raw outputs.
"""

from measureflow.generative.gan.objectives import (
    ADVERSARIAL_LOSSES,
    F_LOSS_ROWS,
    LOSS_NAMES,
    critic_loss,
    generator_loss,
    gradient_penalty,
    mmd2_loss,
)

__all__ = [
    "ADVERSARIAL_LOSSES",
    "F_LOSS_ROWS",
    "LOSS_NAMES",
    "critic_loss",
    "generator_loss",
    "gradient_penalty",
    "mmd2_loss",
]
