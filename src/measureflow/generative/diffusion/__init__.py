"""Score-based diffusion models: forward SDEs, exact and learned scores, denoising score matching,
reverse-time samplers and the probability-flow likelihood."""

from measureflow.generative.diffusion.family import DiffusionFamily, score_model
from measureflow.generative.diffusion.likelihood import LikelihoodResult, log_likelihood
from measureflow.generative.diffusion.losses import WEIGHTINGS, dsm_loss, log_noise_to_signal, sample_times
from measureflow.generative.diffusion.sampling import (
    SAMPLER_NAMES,
    ReverseResult,
    annealed_langevin,
    predictor_corrector,
    probability_flow,
    reverse_process,
    reverse_sde,
    sample,
)
from measureflow.generative.diffusion.score import GaussianMixtureScore, ScoreModel
from measureflow.generative.diffusion.sde import OU, SDE, SDE_NAMES, VESDE, VPSDE, SubVPSDE, make_sde
from measureflow.generative.diffusion.training import DiffusionTask, train_diffusion

__all__ = [
    "OU",
    "SAMPLER_NAMES",
    "SDE",
    "SDE_NAMES",
    "VESDE",
    "VPSDE",
    "WEIGHTINGS",
    "DiffusionTask",
    "GaussianMixtureScore",
    "LikelihoodResult",
    "DiffusionFamily",
    "ReverseResult",
    "ScoreModel",
    "SubVPSDE",
    "annealed_langevin",
    "dsm_loss",
    "log_likelihood",
    "log_noise_to_signal",
    "make_sde",
    "predictor_corrector",
    "probability_flow",
    "reverse_process",
    "reverse_sde",
    "sample",
    "sample_times",
    "score_model",
    "train_diffusion",
]
