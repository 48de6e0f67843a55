"""Generative models learned from data: score-based diffusion models and energy-based models.

``train`` is the training loop they share (batches, EMA, checkpoints, exact resume), ``nets``
the networks they use (time-conditioned noise predictors, scalar energies).
"""

from measureflow.generative import diffusion, ebm, gan, nets, train

__all__ = [
    "diffusion",
    "ebm",
    "gan",
    "nets",
    "train",
]
