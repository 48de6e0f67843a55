"""Minimizing a functional F[mu] of a probability measure: particle flows and simplex methods.

Particle Wasserstein gradient flows d_t mu = div(mu grad dF/dmu), realized by particles
dx/dt = -grad (dF/dmu)(x) (plus noise for entropy terms):

- functionals (``functionals``): :class:`Potential`, :class:`Interaction` (with the kernels
  :class:`QuadraticInteraction`, :class:`GaussianInteraction`, :class:`PowerInteraction`),
  :class:`Entropy` (noise or blob), :class:`KL` (the Fokker-Planck / Langevin flow),
  :class:`MMD` (the MMD flow), :class:`SVGD`; they add into a :class:`Sum`;
- the integrator :func:`run` -> :class:`FlowResult`, and :func:`flow_figure`;
- ``simplex``: minimizing over the probability simplex (sparsemax, Frank-Wolfe, projected
  gradient, mirror descent).
"""

from measureflow.flows import simplex
from measureflow.flows.figures import flow_figure
from measureflow.flows.functionals import (
    KL,
    MMD,
    SVGD,
    Entropy,
    Functional,
    GaussianInteraction,
    Interaction,
    Potential,
    PowerInteraction,
    QuadraticInteraction,
    Sum,
)
from measureflow.flows.integrator import FlowResult, run

__all__ = [
    "KL",
    "MMD",
    "SVGD",
    "Entropy",
    "FlowResult",
    "Functional",
    "GaussianInteraction",
    "Interaction",
    "Potential",
    "PowerInteraction",
    "QuadraticInteraction",
    "Sum",
    "flow_figure",
    "run",
    "simplex",
]
