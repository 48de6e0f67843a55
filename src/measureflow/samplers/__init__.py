"""Markov kernels toward a Gibbs measure exp(-beta L), each a pure ``init``/``step`` pair, one
driver (:func:`run`) that runs any of them over many chains at once, and :func:`sample` above it."""

from measureflow.samplers import annealed, infinite_langevin, mala, psgld, sghmc, sgld, ula
from measureflow.samplers._optimize import find_mode, find_mode_counted
from measureflow.samplers.api import sample
from measureflow.samplers.autostep import DEFAULT_STEP_SIZE_GRID, search_step_size
from measureflow.samplers.base import (
    DivergenceError,
    GradientCount,
    SamplerParams,
    SamplerSpec,
    StepSizeSearch,
)
from measureflow.samplers.driver import DualAveraging, SampleResult, run
from measureflow.samplers.graduated import GraduatedResult, graduated_descent
from measureflow.samplers.registry import SAMPLERS, get_sampler

__all__ = [
    "DEFAULT_STEP_SIZE_GRID",
    "SAMPLERS",
    "DivergenceError",
    "DualAveraging",
    "GradientCount",
    "GraduatedResult",
    "SampleResult",
    "SamplerParams",
    "SamplerSpec",
    "StepSizeSearch",
    "annealed",
    "find_mode",
    "find_mode_counted",
    "get_sampler",
    "graduated_descent",
    "infinite_langevin",
    "mala",
    "psgld",
    "run",
    "sample",
    "search_step_size",
    "sghmc",
    "sgld",
    "ula",
]
