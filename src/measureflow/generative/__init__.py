"""Generative models learned from data: score-based diffusion models, energy-based models and
(in progress) adversarial and kernel models.

``train`` is the training loop they share (batches, EMA, checkpoints, exact resume), ``nets``
the networks they use (time-conditioned noise predictors, scalar energies); ``gan`` so far holds
the f-GAN table and the mode diagnostics.
"""

from measureflow.generative import diffusion, ebm, gan, nets, train

__all__ = [
    "diffusion",
    "ebm",
    "gan",
    "nets",
    "train",
]
