"""Finding a mode of an energy, for control variates (SGLD-CV) and as an optimization baseline."""

from __future__ import annotations

import torch
from torch import Tensor

from measureflow.targets import Target

__all__ = ["find_mode", "find_mode_counted"]


def find_mode(target: Target, start: Tensor, max_iter: int = 500, tolerance: float = 1e-9) -> Tensor:
    """A local minimizer of L near ``start`` ``(1, d)`` by L-BFGS with a strong-Wolfe line search.

    Uses ``torch.optim.LBFGS``; returns a detached ``(1, d)`` tensor. Raises ``ValueError`` if
    the energy becomes non-finite (the target is not bounded below along the search path).
    """
    return find_mode_counted(target, start, max_iter, tolerance)[0]


def find_mode_counted(
    target: Target, start: Tensor, max_iter: int = 500, tolerance: float = 1e-9
) -> tuple[Tensor, int]:
    """:func:`find_mode` and the number of energy-and-gradient evaluations it spent."""
    evaluations = 0
    point = start.detach().clone().requires_grad_(True)
    optimizer = torch.optim.LBFGS(
        [point],
        max_iter=max_iter,
        tolerance_grad=tolerance,
        tolerance_change=1e-12,
        history_size=20,
        line_search_fn="strong_wolfe",
    )

    def closure() -> Tensor:
        nonlocal evaluations
        evaluations += 1
        optimizer.zero_grad()
        energy, gradient = target.energy_and_grad(point.detach())
        point.grad = gradient
        return energy.sum()

    with torch.enable_grad():
        optimizer.step(closure)
    mode = point.detach()
    if not bool(torch.isfinite(mode).all()) or not bool(torch.isfinite(target.energy(mode)).all()):
        raise ValueError("mode search diverged: the energy is not finite along the L-BFGS path")
    return mode, evaluations
