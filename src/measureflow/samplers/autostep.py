"""Choosing the step size of an unadjusted sampler by the kernel Stein discrepancy of pilot runs.

An unadjusted sampler (ULA, SGLD, SGHMC) trades bias for speed through its step size: too small
and a short run has not left its starting point, too large and its stationary law is far from
the target. Neither error is visible in the samples alone, but both are in the kernel Stein
discrepancy to the target, which needs only the target's score. Following Gorham & Mackey
(ICML 2017, section 5.2, where KSD selects SGLD's step size), we run one short pilot per step
size on a grid and keep the step size whose final pilot positions have the smallest KSD.
The pilots' final positions are independent across chains, so the U-statistic is unbiased.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from measureflow._core import check_count, check_positive
from measureflow.metrics.stein import ksd_squared
from measureflow.samplers.base import DivergenceError, SamplerParams, SamplerSpec, StepSizeSearch
from measureflow.samplers.driver import run
from measureflow.targets import Target

__all__ = ["DEFAULT_STEP_SIZE_GRID", "StepSizeSearch", "search_step_size"]

#: Nine step sizes, a factor sqrt(10) apart, from 1e-4 to 1.
DEFAULT_STEP_SIZE_GRID: tuple[float, ...] = tuple(10 ** (k / 2) for k in range(-8, 1))


def search_step_size(
    target: Target,
    spec: SamplerSpec,
    params: SamplerParams,
    position: Tensor,
    generator: torch.Generator | None,
    grid: Sequence[float] = DEFAULT_STEP_SIZE_GRID,
    n_pilot_steps: int = 500,
) -> StepSizeSearch:
    """Run ``n_pilot_steps`` steps of ``spec`` from ``position`` ``(n_pilot, d)`` per grid value.

    Scores each pilot by the unbiased IMQ KSD^2 of its final positions against pi_beta (score
    -beta grad L), and returns the search with the minimizing step size. The U-statistic, not
    the V-statistic: the latter adds the same positive floor E k_p(x, x) / n to every pilot,
    which drowns the differences between good step sizes when n is a few hundred. A pilot that diverges
    scores inf. The pilots draw from ``generator``, so the search is deterministic given it.
    """
    grid = tuple(check_positive(value, "step_size_grid entry") for value in grid)
    if not grid:
        raise ValueError("step_size_grid must hold at least one positive step size")
    n_pilot_steps = check_count(n_pilot_steps, "n_pilot_steps")
    beta = params.beta
    scores: list[float] = []
    n_grad_evals = 0
    for step_size in grid:
        try:
            pilot = run(
                target, spec, params.replace(step_size=step_size), position.clone(),
                n_steps=1, burn_in=n_pilot_steps - 1, generator=generator, adapt_step_size=False,
                record_energy=False, diagnostics=False, progress=False,
            )
        except DivergenceError:
            scores.append(math.inf)
            # Charged as if the pilot had run to the end (its init's gradients aside).
            n_grad_evals += n_pilot_steps * position.shape[0]
            continue
        n_grad_evals += pilot.n_grad_evals * position.shape[0]
        final = pilot.final_state.position
        with torch.enable_grad():
            value = float(ksd_squared(final, lambda x: target.score(x, beta), unbiased=True))
        scores.append(value if math.isfinite(value) else math.inf)
    if all(math.isinf(value) for value in scores):
        raise ValueError(
            f"every pilot run diverged on the step-size grid {list(grid)}; give smaller step sizes "
            "with step_size_grid=..."
        )
    best = min(range(len(grid)), key=scores.__getitem__)
    return StepSizeSearch(
        grid=grid, ksd_squared=tuple(scores), step_size=grid[best], n_pilot_chains=position.shape[0],
        n_pilot_steps=n_pilot_steps, n_grad_evals=n_grad_evals,
    )
