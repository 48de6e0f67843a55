"""Argument validation with errors a user can act on: what was wrong, the value seen, what is allowed."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "as_tensor", "check_count", "check_finite", "check_particles", "check_positive", "check_probability",
]


def as_tensor(
    value: Any,
    name: str,
    *,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
) -> Tensor:
    """Convert a tensor, numpy array, list or number to a tensor (float tensors keep their dtype).

    Numpy float64 arrays stay float64; integer and boolean input becomes the default float dtype
    unless ``dtype`` is given.
    """
    if isinstance(value, Tensor):
        tensor = value
    elif isinstance(value, (np.ndarray, list, tuple, int, float, np.floating, np.integer)):
        try:
            tensor = torch.as_tensor(np.asarray(value))
        except (TypeError, ValueError) as error:
            raise TypeError(f"{name} must be numeric, got {type(value).__name__}: {error}") from None
    else:
        raise TypeError(
            f"{name} must be a torch tensor, numpy array or number, got {type(value).__name__}"
        )
    if dtype is None and not tensor.is_floating_point():
        dtype = torch.get_default_dtype()
    return tensor.to(dtype=dtype or tensor.dtype, device=device or tensor.device)


def check_finite(tensor: Tensor, name: str) -> Tensor:
    """Raise ``ValueError`` if ``tensor`` holds NaN or infinite entries."""
    if not bool(torch.isfinite(tensor).all()):
        n_bad = int((~torch.isfinite(tensor)).sum())
        raise ValueError(f"{name} contains {n_bad} NaN or infinite value(s); all must be finite")
    return tensor


def check_particles(value: Any, name: str, *, dim: int | None = None) -> Tensor:
    """Return ``value`` as a finite ``(n, d)`` float tensor; ``dim`` fixes ``d`` when given."""
    tensor = as_tensor(value, name)
    if tensor.ndim != 2:
        raise ValueError(
            f"{name} must have shape (n, d), got shape {tuple(tensor.shape)}"
            + (f"; for one point use shape (1, {dim})" if dim is not None else "")
        )
    if tensor.shape[0] == 0:
        raise ValueError(f"{name} is empty: shape {tuple(tensor.shape)}; need at least one row")
    if dim is not None and tensor.shape[1] != dim:
        raise ValueError(f"{name} must have {dim} columns (the dimension), got {tensor.shape[1]}")
    return check_finite(tensor, name)


def check_count(value: Any, name: str, *, minimum: int = 1) -> int:
    """Return ``value`` as an int after checking it is an integer >= ``minimum`` (booleans refused).

    >>> check_count(3, "n_steps")
    3
    >>> check_count(0, "burn_in", minimum=0)
    0
    """
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        allowed = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
        raise ValueError(f"{name} must be {allowed}, got {value!r}")
    return int(value)


def check_positive(value: Any, name: str, *, allow_zero: bool = False) -> float:
    """Return ``value`` as a float after checking it is finite and positive."""
    if isinstance(value, bool):
        raise TypeError(f"{name} must be a number, got {value!r}")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(number) or number < 0 or (number == 0 and not allow_zero):
        allowed = "non-negative" if allow_zero else "positive"
        raise ValueError(f"{name} must be finite and {allowed}, got {value!r}")
    return number


def check_probability(value: Any, name: str, *, open_interval: bool = True) -> float:
    """Return ``value`` as a float in (0, 1) (or [0, 1] with ``open_interval=False``)."""
    number = float(value)
    ok = 0 < number < 1 if open_interval else 0 <= number <= 1
    if not ok:
        interval = "(0, 1)" if open_interval else "[0, 1]"
        raise ValueError(f"{name} must lie in {interval}, got {value!r}")
    return number
