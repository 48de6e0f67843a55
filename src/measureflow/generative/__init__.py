"""Generative models learned from data: score-based diffusion models, energy-based models, and
adversarial and kernel models (GAN, f-GAN, WGAN, GMMN, MMD-GAN).

``train`` is the training loop they share (batches, EMA, checkpoints, exact resume), ``nets``
the networks of the diffusion models and EBMs (time-conditioned noise predictors, scalar
energies); ``gan`` holds its own generators and critics.
"""

from measureflow.generative import diffusion, ebm, flow, gan, nets, train
from measureflow.generative.model import ModelFamily, TrainedModel, family_names, get_family, register_family

__all__ = [
    "ModelFamily",
    "TrainedModel",
    "family_names",
    "get_family",
    "register_family",
    "diffusion",
    "ebm",
    "flow",
    "gan",
    "nets",
    "train",
]
