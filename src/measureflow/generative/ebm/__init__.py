"""Energy-based models p(x) ∝ exp(-E(x)) trained by maximum likelihood with persistent Langevin
chains (a replay buffer), sampled with MALA through the samplers of ``measureflow.samplers``, and
drawn as an energy landscape."""

from measureflow.generative.ebm.api import EBM_KIND, build_energy_net, net_settings, train_ebm
from measureflow.generative.ebm.buffer import INIT_DISTRIBUTIONS, BufferBatch, ReplayBuffer, langevin
from measureflow.generative.ebm.family import EBMFamily
from measureflow.generative.ebm.landscape import (
    EnergyGrid,
    draw_energy_landscape,
    energy_landscape_figure,
    energy_on_grid,
)
from measureflow.generative.ebm.sampling import EnergyTarget, energy_dim, sample_ebm
from measureflow.generative.ebm.training import EBMTask, ScaledEnergy, ebm_loss

__all__ = [
    "EBM_KIND",
    "INIT_DISTRIBUTIONS",
    "BufferBatch",
    "EBMFamily",
    "EBMTask",
    "EnergyGrid",
    "EnergyTarget",
    "ReplayBuffer",
    "ScaledEnergy",
    "build_energy_net",
    "draw_energy_landscape",
    "energy_dim",
    "energy_landscape_figure",
    "ebm_loss",
    "energy_on_grid",
    "langevin",
    "net_settings",
    "sample_ebm",
    "train_ebm",
]
