"""The Fokker-Planck equation on a grid: the exact reference the particle methods are checked against.

- :class:`FokkerPlanck1D` / :class:`FokkerPlanck2D`: d_t mu = (1/beta) Laplacian mu + div(mu grad L)
  on a box with no-flux boundaries (gradient Langevin dynamics dX = -grad L dt + sqrt(2/beta) dB),
  Scharfetter-Gummel finite volumes whose discrete stationary state is exactly the discrete Gibbs
  density; exponential (1-D, exact in time) or implicit Euler time stepping.
- :class:`AggregationDiffusion1D`: d_t mu = div(mu grad(V + W * mu + (1/beta) log mu)), a positive,
  mass-conserving, free-energy-dissipating semi-implicit scheme.
- :func:`stationary_law_1d`: the exact stationary law of a 1-D Markov chain
  x' = m(x) + s xi on a grid (a transfer matrix of Gaussian cell masses), e.g. of ULA at a
  finite step.
"""

from measureflow.pde.aggregation import AggregationDiffusion1D, AggregationDiffusionSolution
from measureflow.pde.fokker_planck import FokkerPlanck1D, FokkerPlanckSolution
from measureflow.pde.fokker_planck_2d import FokkerPlanck2D, FokkerPlanck2DSolution
from measureflow.pde.markov_chain import MarkovChainLaw1D, chain_transition_matrix_1d, stationary_law_1d

__all__ = [
    "AggregationDiffusion1D",
    "AggregationDiffusionSolution",
    "FokkerPlanck1D",
    "FokkerPlanck2D",
    "FokkerPlanck2DSolution",
    "FokkerPlanckSolution",
    "MarkovChainLaw1D",
    "chain_transition_matrix_1d",
    "stationary_law_1d",
]
