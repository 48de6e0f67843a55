"""The table of samplers by name: the only place strings map to kernels."""

from __future__ import annotations

from measureflow.samplers import annealed, infinite_langevin, mala, psgld, sghmc, sgld, ula
from measureflow.samplers.base import SamplerSpec

__all__ = ["SAMPLERS", "get_sampler"]

SAMPLERS: dict[str, SamplerSpec] = {
    "ula": SamplerSpec(
        "ula", ula.ULAParams, ula.init, ula.step,
        "unadjusted Langevin (gradient Langevin dynamics, Euler-Maruyama)",
        draw=ula.draw,
        transition=ula.transition,
    ),
    "sgld": SamplerSpec(
        "sgld", sgld.SGLDParams, sgld.init, sgld.step,
        "stochastic gradient Langevin dynamics (Welling & Teh 2011)",
    ),
    "sgld-cv": SamplerSpec(
        "sgld-cv", sgld.SGLDParams, sgld.cv_init, sgld.cv_step,
        "SGLD with control-variate gradients centred at a mode (Baker et al. 2019)",
    ),
    "psgld": SamplerSpec(
        "psgld", psgld.PSGLDParams, psgld.init, psgld.step,
        "RMSprop-preconditioned SGLD (Li et al. 2016)",
    ),
    "sghmc": SamplerSpec(
        "sghmc", sghmc.SGHMCParams, sghmc.init, sghmc.step,
        "stochastic gradient HMC with friction (Chen, Fox & Guestrin 2014)",
    ),
    "mala": SamplerSpec(
        "mala", mala.MALAParams, mala.init, mala.step,
        "Metropolis-adjusted Langevin with step-size adaptation during burn-in",
        metropolis=True,
        target_acceptance=0.574,
        draw=mala.draw,
        transition=mala.transition,
    ),
    "infinite-langevin": SamplerSpec(
        "infinite-langevin", infinite_langevin.InfiniteLangevinParams, infinite_langevin.init,
        infinite_langevin.step,
        "Langevin in a Hilbert space: semi-implicit Euler with S = (I + h lam A)^-1, A = diag(1/mu_k)",
    ),
    "annealed": SamplerSpec(
        "annealed", annealed.AnnealedParams, annealed.init, annealed.step,
        "annealed Langevin for optimization: rising beta_t, best point per chain",
        configure=annealed.configure,
    ),
}


def get_sampler(name: str) -> SamplerSpec:
    """The registry entry for ``name``; a ``ValueError`` lists the known names otherwise."""
    if not isinstance(name, str) or name.lower() not in SAMPLERS:
        raise ValueError(f"unknown sampler {name!r}; choose one of {', '.join(SAMPLERS)}")
    return SAMPLERS[name.lower()]
