r"""Graduated optimization: gradient descent on Gaussian smoothings L_delta of a decreasing delta.

For a schedule delta_1 > delta_2 > ... > delta_K (often delta_K = 0, a plain polish), stage k runs
``n_steps`` steps of gradient descent x <- x - h_k grad L_{delta_k}(x) from where stage k - 1
ended, L_delta(x) = E L(x + delta u), u ~ N(0, I) (:mod:`measureflow.targets.smoothing`). A wide
smoothing removes the fine local minima (for Rastrigin with amplitude A, L_delta is convex once
4 pi^2 A exp(-2 pi^2 delta^2) < 2), so the first stage goes to the minimum of the coarse shape;
later stages track that minimum as the detail returns (Blake & Zisserman 1987; Wu 1996; Hazan,
Levy & Shalev-Shwartz 2016, who smooth over a ball and prove polynomial rates for sigma-nice
functions). Not a sampler: a deterministic optimizer (random only through Monte Carlo
smoothing), so it is a plain function, outside the sampler registry.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from measureflow._core import check_count, check_particles, check_positive
from measureflow.targets import Target
from measureflow.targets.smoothing import SmoothedTarget

__all__ = ["GraduatedResult", "graduated_descent"]


@dataclass(frozen=True)
class GraduatedResult:
    """A graduated-descent run over ``n_starts`` starts in dimension d and K stages.

    ``position`` ``(n_starts, d)``: the final points; ``stage_positions`` ``(K + 1, n_starts, d)``:
    the starts, then the points at the end of each stage; ``stage_energy`` ``(K + 1, n_starts)``:
    the unsmoothed L there; ``stage_smoothed_energy`` ``(K, n_starts)``: L_{delta_k} at the end of
    stage k (its Monte Carlo estimate where smoothed by Monte Carlo); ``deltas``, ``step_sizes``
    and ``n_steps`` per stage; ``n_grad_evals`` gradients of L per start (a Monte Carlo step
    counts its S draws).
    """

    position: Tensor
    stage_positions: Tensor
    stage_energy: Tensor
    stage_smoothed_energy: Tensor
    deltas: tuple[float, ...]
    step_sizes: tuple[float, ...]
    n_steps: tuple[int, ...]
    n_grad_evals: int


def _per_stage(value, n_stages: int, name: str) -> list:
    if isinstance(value, Sequence) and not isinstance(value, str):
        values = list(value)
        if len(values) != n_stages:
            raise ValueError(f"{name} must be one value or one per stage ({n_stages}), got {len(values)}")
        return values
    return [value] * n_stages


def graduated_descent(target: Target, x0: Tensor, deltas: Sequence[float], step_size: float | Sequence[float],
                      n_steps_per_stage: int | Sequence[int], *, n_samples: int | None = None,
                      generator: torch.Generator | None = None) -> GraduatedResult:
    r"""Gradient descent on L_delta for each delta of ``deltas`` in turn, from the starts ``x0``.

    ``x0`` ``(n_starts, d)``: every start moves at once (one tensor program). ``deltas``: the
    schedule (non-negative, non-increasing; 0 is L itself). ``step_size`` and
    ``n_steps_per_stage``: one value, or one per stage. ``n_samples=None`` smooths in closed form
    (the target must have one, see :data:`measureflow.targets.smoothing.CLOSED_FORMS`); an integer
    S smooths by Monte Carlo with S fresh draws from ``generator`` per stage, the same draws for
    every start and step of that stage (common random numbers: each stage descends one fixed
    function). Raises ``ValueError`` if an iterate becomes non-finite (the step is too large).

    >>> import torch, measureflow as mf
    >>> well = mf.targets.from_energy(lambda x: ((x**2 - 1)**2 + 0.5 * x).sum(-1), dim=1)
    >>> x0 = torch.tensor([[1.0]])                       # the spurious well of the tilted double well
    >>> result = graduated_descent(well, x0, [0.6, 0.0], 0.05, 200, n_samples=256,
    ...                            generator=torch.Generator().manual_seed(0))
    >>> bool(result.position[0, 0] < -0.9)                # ends in the global well near -1.06
    True
    """
    if not isinstance(target, Target):
        raise TypeError(f"target must be a measureflow Target, got {type(target).__name__}")
    x = check_particles(x0, "x0", dim=target.dim).to(device=target.device, dtype=target.dtype)
    schedule = [check_positive(delta, "deltas", allow_zero=True) for delta in deltas]
    if not schedule:
        raise ValueError("deltas must hold at least one smoothing scale")
    if any(later > earlier for earlier, later in zip(schedule, schedule[1:], strict=False)):
        raise ValueError(f"deltas must be non-increasing (coarse to fine), got {schedule}")
    steps = [check_positive(h, "step_size") for h in _per_stage(step_size, len(schedule), "step_size")]
    counts = [check_count(count, "n_steps_per_stage")
              for count in _per_stage(n_steps_per_stage, len(schedule), "n_steps_per_stage")]
    positions, energies, smoothed_energies = [x], [target.energy(x)], []
    n_grad_evals = 0
    for delta, h, count in zip(schedule, steps, counts, strict=True):
        exact = n_samples is None or delta == 0
        stage = SmoothedTarget(target, delta, n_samples=None if exact else n_samples, generator=generator)
        for _ in range(count):
            x = x - h * stage.grad_energy(x)
        if not bool(torch.isfinite(x).all()):
            raise ValueError(f"graduated descent diverged at delta = {delta:g}: step_size {h:g} is too large")
        n_grad_evals += count * (1 if exact else n_samples)
        positions.append(x)
        energies.append(target.energy(x))
        smoothed_energies.append(stage.energy(x))
    return GraduatedResult(
        position=x, stage_positions=torch.stack(positions), stage_energy=torch.stack(energies),
        stage_smoothed_energy=torch.stack(smoothed_energies), deltas=tuple(schedule),
        step_sizes=tuple(steps), n_steps=tuple(int(c) for c in counts), n_grad_evals=n_grad_evals,
    )

