r"""What every cause-effect method shares: the input check, the standardization and the result type.

A method decides between two causal graphs for a pair of scalar variables, X -> Y and Y -> X,
from n joint observations (x_i, y_i). Every method is a function

    method(x, y, *, generator=None, **options) -> DirectionResult

with ``x`` and ``y`` of shape ``(n,)``. Its ``score`` is signed: positive favours X -> Y,
negative Y -> X, and its magnitude is the method's confidence, so that pairs can be ranked by it
(the decision-rate curve). ``direction`` is +1 (X -> Y) or -1 (Y -> X), the sign of the score (+1
on an exact tie, which has probability 0 for continuous data).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from measureflow._core import as_tensor

__all__ = ["DirectionResult", "check_pair", "standardize", "subsample"]

# Below this many points no method here can tell a mechanism from noise.
MIN_POINTS = 10


@dataclass(frozen=True)
class DirectionResult:
    """The decision of ``method`` on one pair: ``direction`` (+1: X -> Y, -1: Y -> X) and the signed
    ``score`` it comes from (positive favours X -> Y). ``details`` holds the method's own numbers
    (JSON-safe: the two fits' MMDs, the two HSIC p-values...); ``fitted`` holds arrays for a figure
    (CGNN's generated joints), left out of :meth:`to_dict`."""

    method: str
    direction: int
    score: float
    details: dict[str, Any] = field(default_factory=dict)
    fitted: dict[str, Tensor] = field(default_factory=dict, repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method, "direction": self.direction, "score": self.score, **self.details}


def direction_of(score: float) -> int:
    """+1 (X -> Y) for a score >= 0, else -1."""
    return 1 if score >= 0 else -1


def check_pair(x: Any, y: Any, *, min_points: int = MIN_POINTS) -> tuple[Tensor, Tensor]:
    """``x`` and ``y`` as float64 CPU tensors ``(n,)`` of the same length, finite and non-constant.

    Accepts ``(n,)`` or ``(n, 1)`` arrays; anything else is an error that says what was expected.
    """
    out = []
    for name, value in (("x", x), ("y", y)):
        tensor = as_tensor(value, name, dtype=torch.float64, device="cpu")
        if tensor.ndim == 2 and tensor.shape[1] == 1:
            tensor = tensor[:, 0]
        if tensor.ndim != 1:
            raise ValueError(f"{name} must be one variable, shape (n,) or (n, 1), got shape "
                             f"{tuple(tensor.shape)}; multivariate pairs are not supported")
        if not bool(torch.isfinite(tensor).all()):
            n_bad = int((~torch.isfinite(tensor)).sum())
            raise ValueError(f"{name} contains {n_bad} NaN or infinite value(s); drop those observations "
                             "first")
        out.append(tensor)
    x, y = out
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"x and y must hold the same number of observations, got {x.shape[0]} and "
                         f"{y.shape[0]}")
    if x.shape[0] < min_points:
        raise ValueError(f"a pair needs at least {min_points} observations, got {x.shape[0]}")
    for name, tensor in (("x", x), ("y", y)):
        if float(tensor.std()) == 0.0:
            raise ValueError(f"{name} is constant, so no direction can be read from it")
    return x, y


def standardize(v: Tensor) -> Tensor:
    """(v - mean) / sd, the sample standard deviation (n - 1)."""
    return (v - v.mean()) / v.std()


def subsample(x: Tensor, y: Tensor, max_points: int | None,
              generator: torch.Generator | None) -> tuple[Tensor, Tensor]:
    """At most ``max_points`` observations, drawn without replacement with ``generator`` (the same
    rows of x and y); all of them when ``max_points`` is None or not smaller than n."""
    n = x.shape[0]
    if max_points is None or n <= max_points:
        return x, y
    device = generator.device if generator is not None else "cpu"
    index = torch.randperm(n, generator=generator, device=device)[:max_points].cpu()
    return x[index], y[index]
