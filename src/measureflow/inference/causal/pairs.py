r"""Cause-effect pairs with a known direction: synthetic generators, the Tuebingen pairs, CSV files.

Synthetic pairs. The cause is drawn from a Gaussian mixture with random parameters (1 to 5
components, means N(0, 2^2), standard deviations U(0.3, 1.5), Dirichlet(1) weights) and
standardized; the effect is a random mechanism of it with a noise of relative size ``noise``
(the noise's standard deviation over that of the noiseless effect):

=================  ==========================================================================
``additive``       y = f(x) + e, f a random cubic spline (knots at 5 quantiles of x, values N(0, 1))
``multiplicative`` y = f(x) * exp(e)
``post-nonlinear`` y = g(f(x) + e), g(t) = tanh(a t) + b t (a ~ U(0.5, 2), b ~ U(0.1, 0.5)), increasing
``non-invertible`` y = (x - c)^2 + e, c ~ U(-0.5, 0.5): no function of y gives x back
``gp``             y = f(x) + e, f a Gaussian-process draw (squared-exponential kernel, length-scale
                   U(0.5, 2) in sd units of x) at the observed x
``linear-gaussian`` x ~ N(0, 1), y = a x + e with Gaussian e: the one case that is not identifiable
=================  ==========================================================================

The noise e of every mechanism but ``linear-gaussian`` is non-Gaussian: e = s sign(n) |n|^q with
n ~ N(0, 1) and q ~ U(0.5, 0.8) or U(1.2, 2) (sub- or super-Gaussian tails, as in the LiNGAM
literature), scaled so that its sd is ``noise`` times that of the noiseless effect. Named noise
levels: ``low`` 0.1, ``medium`` 0.3, ``high`` 1.0.

Each pair is then presented with its variables in a random order (direction +1: the first is
the cause, -1: the second is), so that a method with a bias toward "first causes second" scores
50%, and both variables are standardized.

The Tuebingen pairs (Mooij, Peters, Janzing, Zscheischler & Schoelkopf, JMLR 2016) are read from
the copy that the ``cdt`` package ships: the 99 bivariate pairs among the benchmark's pairs 1-104
(the multivariate pairs 52-55 and 71 are not in it), each stored cause first. ``cdt`` numbers
them 1-99; here they carry the benchmark's own numbers (``pair0001`` ... ``pair0104``), so that
``cdt``'s pair k is the benchmark's pair k for k <= 51, k + 4 up to 66 and k + 5 beyond. They are
presented with their variables in a fixed random order, as above. Weights are the benchmark's
(its ``pairmeta.txt``): pairs drawn from one data set share one unit of weight, and the weighted
accuracy is the field's convention. The mapping is checked by the data: pairs that share a
variable (an identical column) always get equal weights.
"""

from __future__ import annotations

import csv
import importlib.util
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy.interpolate import CubicSpline
from torch import Tensor

from measureflow._core import check_count, check_positive
from measureflow.inference.causal.base import check_pair, standardize

__all__ = [
    "MECHANISMS",
    "NOISE_LEVELS",
    "CausePairs",
    "read_pairs_csv",
    "benchmark_number",
    "read_truth_csv",
    "synthetic_pairs",
    "tuebingen_pairs",
]

MECHANISMS = ("additive", "multiplicative", "post-nonlinear", "non-invertible", "gp", "linear-gaussian")
NOISE_LEVELS = {"low": 0.1, "medium": 0.3, "high": 1.0}


@dataclass(frozen=True)
class CausePairs:
    """A collection of pairs: ``x[i]``, ``y[i]`` float64 ``(n_i,)``, a name each, the true
    ``directions`` (+1: x causes y, -1: y causes x; None when unknown) and ``weights`` (summing to
    the number of groups of pairs from one data set; all 1 when each pair stands alone)."""

    names: list[str]
    x: list[Tensor]
    y: list[Tensor]
    directions: list[int] | None
    weights: list[float]

    def __len__(self) -> int:
        return len(self.names)

    def subset(self, indices: Any) -> CausePairs:
        """The pairs at ``indices`` (a list of positions), in that order."""
        indices = [int(i) for i in indices]
        bad = [i for i in indices if not 0 <= i < len(self)]
        if bad:
            raise ValueError(f"pair indices {bad} are out of range for {len(self)} pairs")
        return CausePairs(
            names=[self.names[i] for i in indices], x=[self.x[i] for i in indices],
            y=[self.y[i] for i in indices],
            directions=None if self.directions is None else [self.directions[i] for i in indices],
            weights=[self.weights[i] for i in indices])


def _noise_scale(noise: float | str) -> float:
    if isinstance(noise, str):
        if noise not in NOISE_LEVELS:
            raise ValueError(f"unknown noise level {noise!r}; choose one of {sorted(NOISE_LEVELS)} or a "
                             "number > 0")
        return NOISE_LEVELS[noise]
    return check_positive(noise, "noise")


def _mixture_cause(n: int, rng: np.random.Generator) -> np.ndarray:
    k = int(rng.integers(1, 6))
    weights = rng.dirichlet(np.ones(k))
    means = rng.normal(0.0, 2.0, size=k)
    sds = rng.uniform(0.3, 1.5, size=k)
    component = rng.choice(k, size=n, p=weights)
    x = rng.normal(means[component], sds[component])
    return (x - x.mean()) / x.std()


def _non_gaussian(n: int, rng: np.random.Generator) -> np.ndarray:
    q = rng.uniform(0.5, 0.8) if rng.random() < 0.5 else rng.uniform(1.2, 2.0)
    z = rng.normal(size=n)
    e = np.sign(z) * np.abs(z) ** q
    return (e - e.mean()) / e.std()


def _spline(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    knots = np.quantile(x, np.linspace(0.0, 1.0, 5))
    knots = np.unique(knots)
    values = rng.normal(size=knots.size)
    return CubicSpline(knots, values)(x)


def _gp_draw(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    length = rng.uniform(0.5, 2.0)
    gram = np.exp(-0.5 * (x[:, None] - x[None, :]) ** 2 / length**2)
    # Jitter for the Cholesky factor of a kernel matrix that is numerically singular.
    chol = np.linalg.cholesky(gram + 1e-6 * np.eye(x.size))
    return chol @ rng.normal(size=x.size)


def _scaled(signal: np.ndarray, e: np.ndarray, noise: float) -> np.ndarray:
    """e rescaled to sd noise * sd(signal) (noise alone when the signal is constant)."""
    scale = signal.std() if signal.std() > 0 else 1.0
    return noise * scale * e


def _one_pair(mechanism: str, n: int, noise: float,
              rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    if mechanism == "linear-gaussian":
        x = rng.normal(size=n)
        signal = rng.uniform(0.5, 2.0) * rng.choice([-1.0, 1.0]) * x
        return x, signal + _scaled(signal, rng.normal(size=n), noise)
    x = _mixture_cause(n, rng)
    e = _non_gaussian(n, rng)
    if mechanism == "additive":
        signal = _spline(x, rng)
        return x, signal + _scaled(signal, e, noise)
    if mechanism == "multiplicative":
        signal = _spline(x, rng)
        return x, signal * np.exp(noise * e)
    if mechanism == "post-nonlinear":
        inner = _spline(x, rng)
        a, b = rng.uniform(0.5, 2.0), rng.uniform(0.1, 0.5)
        t = inner + _scaled(inner, e, noise)
        return x, np.tanh(a * t) + b * t
    if mechanism == "non-invertible":
        signal = (x - rng.uniform(-0.5, 0.5)) ** 2
        return x, signal + _scaled(signal, e, noise)
    if mechanism == "gp":
        signal = _gp_draw(x, rng)
        return x, signal + _scaled(signal, e, noise)
    raise ValueError(f"unknown mechanism {mechanism!r}; choose one of {list(MECHANISMS)}")


def synthetic_pairs(mechanism: str, n_pairs: int, n_points: int = 500, *, noise: float | str = "medium",
                    seed: int = 0) -> CausePairs:
    """``n_pairs`` pairs of ``n_points`` observations from one mechanism of the module docstring,
    each with its variables in random order (``directions``: +1 when x is the cause), both
    standardized. The same ``seed`` gives the same pairs."""
    if mechanism not in MECHANISMS:
        raise ValueError(f"unknown mechanism {mechanism!r}; choose one of {list(MECHANISMS)}")
    n_pairs = check_count(n_pairs, "n_pairs")
    n_points = check_count(n_points, "n_points", minimum=10)
    scale = _noise_scale(noise)
    rng = np.random.default_rng(seed)
    names, xs, ys, directions = [], [], [], []
    for index in range(n_pairs):
        cause, effect = _one_pair(mechanism, n_points, scale, rng)
        direction = 1 if rng.random() < 0.5 else -1
        first, second = (cause, effect) if direction == 1 else (effect, cause)
        names.append(f"{mechanism}-{index}")
        xs.append(standardize(torch.from_numpy(first)))
        ys.append(standardize(torch.from_numpy(second)))
        directions.append(direction)
    return CausePairs(names, xs, ys, directions, [1.0] * n_pairs)


def _cdt_resources() -> Path:
    # find_spec locates the package without importing it (cdt's import takes ~10 s and probes for R).
    spec = importlib.util.find_spec("cdt")
    if spec is None or not spec.submodule_search_locations:
        raise ValueError("the Tuebingen pairs are read from the cdt package, which is not installed: "
                         "pip install 'measureflow[causal]' (or pip install cdt)")
    folder = Path(next(iter(spec.submodule_search_locations))) / "data" / "resources"
    if not (folder / "Tuebingen_pairs.csv").is_file():
        raise ValueError(f"the cdt package at {folder.parent.parent} has no "
                         "data/resources/Tuebingen_pairs.csv; "
                         "reinstall it (pip install --force-reinstall cdt)")
    return folder


# The benchmark's weights for its pairs 1-104 (pairmeta.txt, version 1.0; 0 marks the multivariate
# pairs). Facts of the published benchmark, indexed by pair number - 1.
_TUEBINGEN_WEIGHTS = (
    0.166, 0.166, 0.167, 0.166, 0.143, 0.143, 0.143, 0.143, 0.143, 0.143, 0.142, 0.5, 0.25, 0.25, 0.25, 0.25,
    0.5, 1, 1, 0.166, 0.167, 0.333, 0.333, 0.334, 0.125, 0.125, 0.125, 0.125, 0.125, 0.125, 0.125, 0.125,
    0.2, 0.2, 0.2, 0.2, 0.2, 0.25, 0.25, 0.25, 0.25, 0.5, 0.25, 0.25, 0.25, 0.25, 1, 1, 0.333, 0.333, 0.334,
    0, 0, 0, 0, 0.083, 0.083, 0.084, 0.083, 0.083, 0.084, 0.083, 0.083, 0.084, 0.333, 0.333, 0.334, 1, 1,
    1, 0, 1, 0.083, 0.083, 0.084, 1, 0.5, 0.3333, 0.3333, 0.3334, 0.3333, 0.3333, 0.3334, 1, 1, 1, 1, 1,
    0.25, 0.25, 0.25, 0.25, 1, 0.3333, 0.3333, 0.3333, 0.2, 0.2, 1.0, 1.0, 0.5, 0.2, 0.2, 0.2,
)
_MULTIVARIATE = (52, 53, 54, 55, 71)


def benchmark_number(cdt_index: int) -> int:
    """The benchmark's number of ``cdt``'s pair ``cdt_index`` (1-99): the multivariate pairs skipped."""
    number = cdt_index
    for skipped in _MULTIVARIATE:
        if number >= skipped:
            number += 1
    return number


def tuebingen_pairs(*, seed: int = 0, indices: Any = None) -> CausePairs:
    """The 99 bivariate Tuebingen cause-effect pairs (named by the benchmark's numbers, ``pair0001``
    ... ``pair0104``), variables in a random order fixed by ``seed`` (``directions`` gives the truth),
    with the benchmark's weights. ``indices`` keeps those positions only. Values are float64,
    not standardized (methods standardize)."""
    folder = _cdt_resources()
    csv.field_size_limit(1 << 30)
    with open(folder / "Tuebingen_pairs.csv", newline="") as handle:
        rows = list(csv.reader(handle))[1:]
    with open(folder / "Tuebingen_targets.csv", newline="") as handle:
        targets = {name: float(value) for name, value in list(csv.reader(handle))[1:]}
    rng = np.random.default_rng(seed)
    names, xs, ys, directions, weights = [], [], [], [], []
    for name, first, second in rows:
        a = np.array(first.split(), dtype=np.float64)
        b = np.array(second.split(), dtype=np.float64)
        # cdt stores every pair cause first (target 1); -1 would mean the reverse.
        cause, effect = (a, b) if targets[name] > 0 else (b, a)
        direction = 1 if rng.random() < 0.5 else -1
        first_var, second_var = (cause, effect) if direction == 1 else (effect, cause)
        number = benchmark_number(int(name.removeprefix("pair")))
        names.append(f"pair{number:04d}")
        xs.append(torch.from_numpy(first_var))
        ys.append(torch.from_numpy(second_var))
        directions.append(direction)
        weights.append(float(_TUEBINGEN_WEIGHTS[number - 1]))
    pairs = CausePairs(names, xs, ys, directions, weights)
    return pairs if indices is None else pairs.subset(indices)


def _read_rows(path: str | os.PathLike[str], required: tuple[str, ...]) -> list[dict[str, str]]:
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: no such file")
    try:
        with open(path, newline="") as handle:
            reader = csv.DictReader(handle)
            fields = [f.strip() for f in (reader.fieldnames or [])]
            missing = [c for c in required if c not in fields]
            if missing:
                raise ValueError(f"{path}: needs the columns {','.join(required)} in its header line, "
                                 f"missing {','.join(missing)} (found {','.join(fields) or 'no header'})")
            return [{(k or "").strip(): (v or "").strip() for k, v in row.items()} for row in reader]
    except (UnicodeDecodeError, csv.Error) as error:
        raise ValueError(f"{path}: not a readable text CSV file ({error})") from None


def _number(text: str, path: Any, line: int, column: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{path}: line {line}: {column} {text!r} is not a number") from None
    if not math.isfinite(value):
        raise ValueError(f"{path}: line {line}: {column} is {text}; all values must be finite")
    return value


def read_pairs_csv(path: str | os.PathLike[str]) -> CausePairs:
    """Pairs from a long-format CSV with the header ``pair,x,y`` and one row per observation
    (pairs in order of first appearance; no directions, weights 1)."""
    rows = _read_rows(path, ("pair", "x", "y"))
    values: dict[str, tuple[list[float], list[float]]] = {}
    for line, row in enumerate(rows, start=2):
        if not row["pair"]:
            raise ValueError(f"{path}: line {line}: empty pair name")
        xs, ys = values.setdefault(row["pair"], ([], []))
        xs.append(_number(row["x"], path, line, "x"))
        ys.append(_number(row["y"], path, line, "y"))
    if not values:
        raise ValueError(f"{path}: no observations after the header line")
    names, xs, ys = [], [], []
    for name, (x, y) in values.items():
        try:
            x_t, y_t = check_pair(x, y)
        except ValueError as error:
            raise ValueError(f"{path}: pair {name!r}: {error}") from None
        names.append(name)
        xs.append(x_t)
        ys.append(y_t)
    return CausePairs(names, xs, ys, None, [1.0] * len(names))


def read_truth_csv(path: str | os.PathLike[str], pairs: CausePairs) -> CausePairs:
    """``pairs`` with the directions (and optional ``weight`` column) of a CSV ``pair,direction[,weight]``
    (direction 1: x causes y, -1: y causes x); every pair must appear exactly once."""
    rows = _read_rows(path, ("pair", "direction"))
    truth: dict[str, tuple[int, float]] = {}
    for line, row in enumerate(rows, start=2):
        name = row["pair"]
        if name in truth:
            raise ValueError(f"{path}: line {line}: pair {name!r} appears twice")
        direction = _number(row["direction"], path, line, "direction")
        if direction not in (1.0, -1.0):
            raise ValueError(f"{path}: line {line}: direction must be 1 (x causes y) or -1 (y causes x), "
                             f"got {row['direction']}")
        weight = _number(row["weight"], path, line, "weight") if row.get("weight") else 1.0
        if weight < 0:
            raise ValueError(f"{path}: line {line}: weight must be >= 0, got {weight}")
        truth[name] = (int(direction), weight)
    missing = [name for name in pairs.names if name not in truth]
    if missing:
        raise ValueError(f"{path}: no direction for the pairs {', '.join(missing[:5])}"
                         + (f" and {len(missing) - 5} more" if len(missing) > 5 else ""))
    extra = [name for name in truth if name not in set(pairs.names)]
    if extra:
        raise ValueError(f"{path}: pairs {', '.join(extra[:5])} are not in the data")
    return CausePairs(pairs.names, pairs.x, pairs.y, [truth[n][0] for n in pairs.names],
                      [truth[n][1] for n in pairs.names])
