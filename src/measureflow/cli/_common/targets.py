"""Target names at the command line: the table of built-in targets, and user target files.

``--target`` is a name from :data:`TARGETS` or ``path/to/file.py:function``. In a user file the
named attribute may be a measureflow ``Target`` (instance or class), a zero-argument function
returning one, or an energy function ``(n, d) -> (n,)``; an energy needs ``--dim`` unless the
function carries a ``dim`` attribute.
"""

from __future__ import annotations

import importlib.util
import inspect
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from measureflow import targets
from measureflow.cli._common.base import check_memory
from measureflow.data import breast_cancer
from measureflow.targets import Target

__all__ = ["TARGETS", "BuiltinTarget", "load_user_target", "resolve_target"]


@dataclass(frozen=True)
class BuiltinTarget:
    """A named target: ``build(dim)`` makes it; ``fixed_dim`` targets ignore ``dim`` and
    reject a ``--dim`` that differs from theirs."""

    description: str
    build: Callable[[int], Target]
    default_dim: int
    fixed_dim: bool = False


def _gaussian(dim: int) -> Target:
    return targets.Gaussian(torch.zeros(dim), torch.ones(dim))


def _ring(dim: int) -> Target:
    return targets.GaussianMixture.ring(n_modes=8, radius=4.0, std=0.5)


def _breast_cancer_logistic(dim: int) -> Target:
    # The training split of measureflow.data.breast_cancer (fixed seed, standardized features),
    # so the command samples the same posterior the checks and examples use.
    data = breast_cancer()
    return targets.LogisticRegression(data.X_train, data.y_train, prior_std=1.0)


def _function_data(n: int = 30, noise: float = 0.1) -> tuple[torch.Tensor, torch.Tensor]:
    """n points t on [0, 1] (fixed seed) and y = sin(2 pi t) + N(0, noise^2), float64."""
    generator = torch.Generator().manual_seed(0)
    t = torch.rand(n, generator=generator, dtype=torch.float64)
    return t, torch.sin(2 * torch.pi * t) + noise * torch.randn(n, generator=generator, dtype=torch.float64)


def _check_function_space(n_points: int, dim: int) -> None:
    # The (n, K) feature matrix and a few copies of it while it is built.
    check_memory(4 * 8 * n_points * dim, f"a function-space target with --dim {dim:,}")


def _sine_regression(dim: int) -> Target:
    t, y = _function_data()
    _check_function_space(len(t), dim)
    return targets.HilbertRegression(t, y, dim, basis="sine")


def _circle_regression(dim: int) -> Target:
    t, y = _function_data()
    _check_function_space(len(t), dim)
    return targets.HilbertRegression(2 * torch.pi * t, y, dim, basis="fourier")


def _network_regression(dim: int) -> Target:
    if dim % 2:
        raise ValueError(f"--dim for network-regression is 2 x the number of neurons (inputs (u, 1)); "
                         f"got {dim}")
    t, y = _function_data()
    _check_function_space(len(t), dim)
    inputs = torch.stack([2 * t - 1, torch.ones_like(t)], 1)  # u in [-1, 1] and a bias coordinate
    return targets.InfiniteWidthNetwork(inputs, y, dim // 2, gamma=1.0)


TARGETS: dict[str, BuiltinTarget] = {
    "double-well": BuiltinTarget("L = sum_i (x_i^2 - 1)^2, wells at +-1", targets.DoubleWell, 1),
    "gaussian": BuiltinTarget("standard normal N(0, I_d)", _gaussian, 2),
    "ring": BuiltinTarget("8 Gaussians on a circle of radius 4, std 0.5 (2-D)", _ring, 2,
                          fixed_dim=True),
    "banana": BuiltinTarget("Rosenbrock-type banana (d >= 2)", targets.Banana, 2),
    "funnel": BuiltinTarget("Neal's funnel (d >= 2)", targets.Funnel, 10),
    "rastrigin": BuiltinTarget("Rastrigin, global minimum 0 at the origin", targets.Rastrigin, 2),
    "logistic": BuiltinTarget(
        "Bayesian logistic regression on the breast-cancer training split (31-D)",
        _breast_cancer_logistic, 31, fixed_dim=True,
    ),
    "sine-regression": BuiltinTarget(
        "function space: empirical squared loss of y = sin(2 pi t) + noise (30 points) for "
        "g = sum_k x_k sqrt(2) sin(pi (k+1) t), K = --dim modes (for infinite-langevin)",
        _sine_regression, 100,
    ),
    "circle-regression": BuiltinTarget(
        "function space: the same data on the circle in the Fourier basis, K = --dim modes",
        _circle_regression, 101,
    ),
    "network-regression": BuiltinTarget(
        "function space: the same data fitted by f_W(u) = sum_j a_j tanh(w_j . (u, 1)), "
        "a_j = (-1)^j / (j+1), "
        "W = --dim / 2 neurons x 2",
        _network_regression, 100,
    ),
}


def _takes_no_arguments(function: Callable[..., Any]) -> bool:
    try:
        signature = inspect.signature(function)
    except (TypeError, ValueError):
        return False
    return all(
        parameter.default is not inspect.Parameter.empty
        or parameter.kind in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
        for parameter in signature.parameters.values()
    )


def _import_file(path: Path) -> Any:
    """Execute the file as a fresh module (the importlib recipe for importing a source file)."""
    stem = re.sub(r"\W", "_", path.stem)
    module_name = f"_measureflow_user_{stem}_{abs(hash(str(path.resolve())))}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise ValueError(f"cannot load {str(path)!r} as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    # Like running a script: modules next to the file can be imported from it.
    folder = str(path.resolve().parent)
    if folder not in sys.path:
        sys.path.insert(0, folder)
    try:
        spec.loader.exec_module(module)
    except Exception as error:  # any failure in user code is bad input, reported in one line
        del sys.modules[module_name]
        raise ValueError(
            f"could not load target file {str(path)!r}: {type(error).__name__}: {error}"
        ) from None
    return module


def _as_target(value: Any, label: str, dim: int | None) -> Target:
    if isinstance(value, Target):
        return value
    if isinstance(value, type) and issubclass(value, Target):
        return value() if dim is None else value(dim)
    if not callable(value):
        raise TypeError(
            f"{label} is a {type(value).__name__}; it must be a measureflow Target, a "
            "zero-argument function returning one, or an energy function (n, d) -> (n,)"
        )
    if _takes_no_arguments(value):
        try:
            made = value()
        except Exception as error:  # user code
            raise ValueError(f"{label}() raised {type(error).__name__}: {error}") from None
        if not isinstance(made, Target):
            raise TypeError(
                f"{label}() returned a {type(made).__name__}, not a measureflow Target"
            )
        return made
    dim = dim if dim is not None else getattr(value, "dim", None)
    if dim is None:
        raise ValueError(
            f"{label} is an energy function: give its dimension with --dim "
            f"(or set {label.rpartition(':')[2]}.dim = d in the file)"
        )
    if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
        raise ValueError(f"the dimension of {label} must be a positive integer, got {dim!r}")
    return targets.from_energy(value, dim, name=label.rpartition(":")[2])


def _probe(target: Target, label: str) -> None:
    """Evaluate energy and gradient on two points, so a broken user energy fails here, in one
    line, before anything runs (torch raises RuntimeError for shape mismatches)."""
    generator = torch.Generator(device=target.device).manual_seed(0)
    points = target.initial_positions(2, generator)
    try:
        energy, gradient = target.energy_and_grad(points)
    except (ValueError, TypeError):
        raise
    except Exception as error:  # user code
        raise ValueError(
            f"the energy of {label} failed on a batch of shape (2, {target.dim}): "
            f"{type(error).__name__}: {error}"
        ) from None
    if energy.shape != (2,) or gradient.shape != (2, target.dim):
        raise ValueError(
            f"the energy of {label} must map (n, {target.dim}) to (n,) with gradient "
            f"(n, {target.dim}); got {tuple(energy.shape)} and {tuple(gradient.shape)}"
        )


def load_user_target(spec: str, dim: int | None = None) -> Target:
    """The target named by ``path/to/file.py:function`` (see the module docstring).

    Raises ``FileNotFoundError`` for a missing file and ``ValueError``/``TypeError`` for a file
    that cannot be loaded or an attribute that is missing or not a target.
    """
    path_text, _, attribute = spec.rpartition(":")
    if not path_text or not attribute.isidentifier():
        raise ValueError(
            f"a target file is given as path/to/file.py:function, got {spec!r}"
        )
    path = Path(path_text)
    if not path.is_file():
        raise FileNotFoundError(f"target file {path_text!r} not found")
    module = _import_file(path)
    if not hasattr(module, attribute):
        defined = sorted(
            name for name, value in vars(module).items()
            if not name.startswith("_") and callable(value)
            and getattr(value, "__module__", None) == module.__name__
        )
        raise ValueError(
            f"{path_text!r} has no attribute {attribute!r}"
            + (f"; it defines {', '.join(defined)}" if defined else "")
        )
    label = f"{path.name}:{attribute}"
    target = _as_target(getattr(module, attribute), label, dim)
    _probe(target, label)
    return target


def resolve_target(spec: str, dim: int | None = None) -> tuple[Target, str]:
    """The target for ``--target`` and ``--dim``, and the name to record for it.

    >>> target, name = resolve_target("double-well", dim=2)
    >>> name, target.dim
    ('double-well', 2)
    """
    if dim is not None and dim < 1:
        raise ValueError(f"--dim must be a positive integer, got {dim}")
    entry = TARGETS.get(spec)
    if entry is not None:
        if entry.fixed_dim and dim is not None and dim != entry.default_dim:
            raise ValueError(
                f"target {spec!r} is {entry.default_dim}-dimensional; drop --dim {dim}"
            )
        target = entry.build(entry.default_dim if dim is None else dim)
        return target, spec
    if ":" in spec or spec.endswith(".py"):
        return load_user_target(spec, dim), spec
    raise ValueError(
        f"unknown target {spec!r}; choose one of {', '.join(TARGETS)} "
        "or give path/to/file.py:function"
    )
