"""The table of theory checks by name, in the order the demo runs them."""

from __future__ import annotations

from measureflow.checks import (
    annealed_rastrigin,
    distance_geometry,
    kantorovich_duality,
    langevin_stationary,
    mmd_unbiased,
    sgld_logistic,
    ula_bias,
    w2_sample_rate,
)
from measureflow.checks.base import CheckSpec

__all__ = ["CHECKS"]

CHECKS: dict[str, CheckSpec] = {
    "langevin-stationary": CheckSpec(
        "langevin-stationary",
        "GLD's stationary law is the Gibbs measure (double well, MALA and small-step ULA)",
        langevin_stationary.run,
    ),
    "ula-bias": CheckSpec(
        "ula-bias",
        "ULA's stationary variance on a Gaussian: closed form vs measurement; MALA unbiased",
        ula_bias.run,
    ),
    "annealed-rastrigin": CheckSpec(
        "annealed-rastrigin",
        "annealed Langevin beats gradient descent at finding Rastrigin's global basin (d = 10)",
        annealed_rastrigin.run,
    ),
    "sgld-logistic": CheckSpec(
        "sgld-logistic",
        "SGLD, SGLD-CV and pSGLD posteriors for logistic regression match a MALA reference",
        sgld_logistic.run,
    ),
    "mmd-unbiased": CheckSpec(
        "mmd-unbiased",
        "the U-statistic MMD^2 is unbiased against the Gaussian closed form; the V-statistic is not",
        mmd_unbiased.run,
    ),
    "kantorovich-duality": CheckSpec(
        "kantorovich-duality",
        "Kantorovich-Rubinstein duality: the LP dual equals the primal W1; a gradient-penalty "
        "critic certifies W1 from below",
        kantorovich_duality.run,
    ),
    "w2-sample-rate": CheckSpec(
        "w2-sample-rate",
        "sample W2 -> Gaussian closed form: n^(-1/2) with the CLT constant for d = 1, 2; "
        "bias n^(-2/5) at d = 5",
        w2_sample_rate.run,
    ),
    "distance-geometry": CheckSpec(
        "distance-geometry",
        "W1, W2, MMD grow continuously with a shift; KL blows up and JS saturates at log 2",
        distance_geometry.run,
    ),
}
