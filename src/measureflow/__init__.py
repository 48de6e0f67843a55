"""measureflow: optimization and sampling in the space of probability measures, in PyTorch."""

from measureflow import (
    checks,
    data,
    flows,
    generative,
    inference,
    metrics,
    nets,
    pde,
    samplers,
    targets,
)
from measureflow.samplers import SampleResult, sample

__version__ = "0.1.0"

__all__ = [
    "SampleResult", "__version__", "checks", "data", "flows", "generative", "inference", "metrics", "nets",
    "pde",
    "sample",
    "samplers",
    "targets",
]
