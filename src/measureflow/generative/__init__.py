"""Generative models learned from data: score-based diffusion models, energy-based models, and
adversarial and kernel models (GAN, f-GAN, WGAN, GMMN, MMD-GAN).

``train`` is the training loop they share (batches, EMA, checkpoints, exact resume), ``nets``
the networks of the diffusion models and EBMs (time-conditioned noise predictors, scalar
energies); ``gan`` holds its own generators and critics.
"""

from measureflow.generative import diffusion, ebm, gan, nets, train

__all__ = [
    "diffusion",
    "ebm",
    "gan",
    "nets",
    "train",
]
