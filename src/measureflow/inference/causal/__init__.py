"""Causal direction between two variables: CGNN and Meta-CGNN (generative fits compared by MMD),
the additive-noise, IGCI and RECI baselines, synthetic and Tuebingen cause-effect pairs, and the
field's scoring (weighted accuracy, decision-rate curve). See :mod:`measureflow.inference.causal.api`."""

from measureflow.inference.causal.api import METHODS, Evaluation, decide, evaluate
from measureflow.inference.causal.base import DirectionResult
from measureflow.inference.causal.baselines import anm_direction, igci_direction, reci_direction
from measureflow.inference.causal.cgnn import cgnn_direction, cgnn_fits
from measureflow.inference.causal.meta import MetaCGNN, meta_cgnn_decide, train_meta_cgnn
from measureflow.inference.causal.pairs import (
    MECHANISMS,
    NOISE_LEVELS,
    CausePairs,
    read_pairs_csv,
    read_truth_csv,
    synthetic_pairs,
    tuebingen_pairs,
)

__all__ = [
    "MECHANISMS",
    "METHODS",
    "NOISE_LEVELS",
    "CausePairs",
    "DirectionResult",
    "Evaluation",
    "MetaCGNN",
    "anm_direction",
    "cgnn_direction",
    "cgnn_fits",
    "decide",
    "evaluate",
    "igci_direction",
    "meta_cgnn_decide",
    "read_pairs_csv",
    "read_truth_csv",
    "reci_direction",
    "synthetic_pairs",
    "train_meta_cgnn",
    "tuebingen_pairs",
]
