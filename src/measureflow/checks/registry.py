"""The table of theory checks by name, in the order the demo runs them."""

from __future__ import annotations

from measureflow.checks import annealed_rastrigin, langevin_stationary, sgld_logistic, ula_bias
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
}
