r"""Supervised toy data for two-layer networks, and the user's own labelled ``.csv``/``.npy`` files.

The networks of :mod:`measureflow.nets` compute f(x) = s(M) sum_j a_j sigma(w_j . x) with **no
bias**, so what a set can teach them depends on its inputs. Each named set is drawn from
coordinates z (what the figures plot against) mapped to network inputs x:

- ``"circle"`` (regression): t ~ U[0, 2 pi), x = (cos t, sin t) on the unit circle, and
  y = sin t + cos(2t) / 2 + sin(4t) / 4 + noise eps (:data:`CIRCLE_MODES`). Inputs on the sphere
  are the setting of the NTK spectral analysis: the kernel depends on x . x' = cos(t - t') only,
  its eigenfunctions are the Fourier modes of t. No constant coordinate, so parity matters:
  relu(u) = u/2 + |u|/2 makes a ReLU (or smooth-ReLU) network's f a linear term plus an even
  function of x, i.e. Fourier modes 0, 1 and even modes only (odd modes >= 3 are out of reach at
  any width); tanh and erf are odd (odd modes only) and sigmoid = 1/2 + tanh(u/2)/2 adds the
  constant. The target uses modes 1, 2 and 4, which ReLU networks reach.
- ``"sine"`` (regression): u ~ U[-1, 1], x = (u, 1), y = sin(pi u) + noise eps. The constant
  second coordinate plays the bias: w_j . x = w_j1 u + w_j2.
- ``"moons"`` (classification): two interleaved half circles, centred: the upper arc
  (cos a, sin a) - (1/2, 1/4) with label +1 and the lower arc (1 - cos a, 1/2 - sin a) - (1/2, 1/4)
  with label -1, a ~ U[0, pi], each arc with probability 1/2; then noise eps added to the point.
  x = (z_1, z_2, 1): without the constant coordinate a ReLU network is positively homogeneous,
  its decision regions would be cones from the origin, and the moons are not separable by cones.
- ``"xor"`` (classification): z ~ U[-1, 1]^2 with label sign(z_1 z_2) (+1 on the axes), then
  noise eps added to the point; x = (z_1, z_2, 1) as for the moons.

eps ~ N(0, noise^2) per entry with ``noise`` defaulting to :data:`DEFAULT_NOISE` (0.1 for every
set): label noise for regression, point noise (after the label is fixed) for classification.
Classification labels are -1.0 and +1.0, as the logistic and exponential losses expect.

:func:`load_supervised` reads a file whose last column is y and the other columns x, used as
they are (give the file a column of ones for the network to have a bias); for
``task="classification"`` the labels must be -1/+1 or 0/1, and 0/1 labels are mapped to -1/+1
(0 -> -1, 1 -> +1). :func:`train_test_split` splits any of them by a random permutation.
"""

from __future__ import annotations

import dataclasses
import math
import os
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from measureflow._core import check_count
from measureflow.data.files import load_array

__all__ = [
    "CIRCLE_MODES",
    "DEFAULT_NOISE",
    "SUPERVISED_NAMES",
    "SUPERVISED_SETS",
    "SUPERVISED_TASKS",
    "SupervisedData",
    "SupervisedSet",
    "load_supervised",
    "supervised_dataset",
    "train_test_split",
]

SUPERVISED_TASKS = ("regression", "classification")
DEFAULT_NOISE = 0.1
CIRCLE_MODES = ((1, "sin", 1.0), (2, "cos", 0.5), (4, "sin", 0.25))
"""The circle's target sum_k c_k trig(k t) as (k, "sin" or "cos", c_k)."""


class SupervisedSet(ABC):
    """A named toy set: coordinates z ``(n, k)`` drawn at random, the inputs x = embed(z) ``(n, d)``
    and the labels. Subclasses define the law; :func:`supervised_dataset` draws from it."""

    name = "set"
    task = "regression"
    description = ""
    coordinate_names: tuple[str, ...] = ()
    coordinate_range: tuple[float, float] | None = None  # the support of a 1-D coordinate

    @abstractmethod
    def draw(self, n: int, noise: float, generator: torch.Generator | None,
             device: torch.device) -> tuple[Tensor, Tensor]:
        """(z ``(n, k)``, y ``(n,)``) in float64 on ``device``."""

    @abstractmethod
    def embed(self, z: Tensor) -> Tensor:
        """The network inputs x ``(m, d)`` of coordinates z ``(m, k)``."""

    def target(self, z: Tensor) -> Tensor | None:
        """The noiseless regression function at z ``(m, k)`` as ``(m,)`` (None for classification)."""
        return None


def _uniform(n: int, k: int, low: float, high: float, generator: torch.Generator | None,
             device: torch.device) -> Tensor:
    return low + (high - low) * torch.rand(n, k, generator=generator, dtype=torch.float64, device=device)


def _normal(shape: tuple[int, ...], generator: torch.Generator | None, device: torch.device) -> Tensor:
    return torch.randn(shape, generator=generator, dtype=torch.float64, device=device)


class _Circle(SupervisedSet):
    name = "circle"
    task = "regression"
    description = ("x = (cos t, sin t) on the unit circle, y = sin t + cos 2t / 2 + sin 4t / 4 + noise "
                   "(no constant coordinate: relu nets reach Fourier modes 0, 1 and even ones, tanh/erf "
                   "odd ones only)")
    coordinate_names = ("t",)
    coordinate_range = (0.0, 2 * math.pi)

    def draw(self, n, noise, generator, device):
        t = _uniform(n, 1, 0.0, 2 * math.pi, generator, device)
        return t, self.target(t) + noise * _normal((n,), generator, device)

    def embed(self, z):
        return torch.cat([torch.cos(z), torch.sin(z)], dim=1)

    def target(self, z):
        t = z[:, 0]
        return sum(c * (torch.sin(k * t) if kind == "sin" else torch.cos(k * t))
                   for k, kind, c in CIRCLE_MODES)


class _Sine(SupervisedSet):
    name = "sine"
    task = "regression"
    description = "x = (u, 1) with u ~ U[-1, 1] (the 1 plays the bias), y = sin(pi u) + noise"
    coordinate_names = ("u",)
    coordinate_range = (-1.0, 1.0)

    def draw(self, n, noise, generator, device):
        u = _uniform(n, 1, -1.0, 1.0, generator, device)
        return u, self.target(u) + noise * _normal((n,), generator, device)

    def embed(self, z):
        return torch.cat([z, torch.ones_like(z)], dim=1)

    def target(self, z):
        return torch.sin(math.pi * z[:, 0])


def _with_constant(z: Tensor) -> Tensor:
    return torch.cat([z, torch.ones_like(z[:, :1])], dim=1)


class _Moons(SupervisedSet):
    name = "moons"
    task = "classification"
    description = "two centred interleaved half circles, labels +1 (upper) / -1 (lower), x = (z1, z2, 1)"
    coordinate_names = ("z1", "z2")

    def draw(self, n, noise, generator, device):
        angle = math.pi * torch.rand(n, generator=generator, dtype=torch.float64, device=device)
        upper = torch.rand(n, generator=generator, dtype=torch.float64, device=device) < 0.5
        arc = torch.stack([torch.cos(angle), torch.sin(angle)], dim=1)
        lower = torch.tensor([1.0, 0.5], dtype=torch.float64, device=device) - arc
        z = torch.where(upper[:, None], arc, lower) - torch.tensor([0.5, 0.25], dtype=torch.float64,
                                                                      device=device)
        y = torch.where(upper, 1.0, -1.0).to(torch.float64)
        return z + noise * _normal((n, 2), generator, device), y

    def embed(self, z):
        return _with_constant(z)


class _Xor(SupervisedSet):
    name = "xor"
    task = "classification"
    description = "z ~ U[-1, 1]^2 with label sign(z1 z2), x = (z1, z2, 1)"
    coordinate_names = ("z1", "z2")

    def draw(self, n, noise, generator, device):
        z = _uniform(n, 2, -1.0, 1.0, generator, device)
        y = torch.where(z[:, 0] * z[:, 1] >= 0, 1.0, -1.0).to(torch.float64)
        return z + noise * _normal((n, 2), generator, device), y

    def embed(self, z):
        return _with_constant(z)


SUPERVISED_SETS: dict[str, SupervisedSet] = {s.name: s for s in (_Circle(), _Sine(), _Moons(), _Xor())}
SUPERVISED_NAMES = tuple(SUPERVISED_SETS)


@dataclass(frozen=True, eq=False)  # tensors inside: compare fields explicitly
class SupervisedData:
    r"""Labelled data: inputs ``x`` ``(n, d)`` and labels ``y`` ``(n,)`` for a network f(x) ~ y.

    ``task`` is "regression" or "classification" (labels -1.0/+1.0). ``coordinates``
    ``(n, k)`` are what a figure plots the data against (t for the circle, u for the sine, the
    2-D point for moons and xor; x itself for a file with one or two input columns; None for
    wider files); :meth:`inputs` maps coordinates to inputs. ``source`` is the named set the
    data were drawn from (None for files) and ``noise`` its noise level.
    """

    name: str
    x: Tensor
    y: Tensor
    task: str
    coordinates: Tensor | None = None
    source: SupervisedSet | None = None
    noise: float | None = None

    def __post_init__(self) -> None:
        if self.task not in SUPERVISED_TASKS:
            raise ValueError(f"task must be one of {', '.join(SUPERVISED_TASKS)}, got {self.task!r}")
        if not isinstance(self.x, Tensor) or self.x.ndim != 2 or self.x.shape[0] < 1:
            raise ValueError(f"x must be a tensor of shape (n, d) with n >= 1, got {_shape(self.x)}")
        if not isinstance(self.y, Tensor) or tuple(self.y.shape) != (self.x.shape[0],):
            raise ValueError(f"y must be a tensor of shape ({self.x.shape[0]},), got {_shape(self.y)}")
        for label, tensor in (("x", self.x), ("y", self.y)):
            if not bool(torch.isfinite(tensor).all()):
                raise ValueError(f"{label} of data {self.name!r} holds NaN or infinite values")
        if self.task == "classification" and not bool(((self.y == 1) | (self.y == -1)).all()):
            raise ValueError(f"classification labels must be -1 or +1, got values {_distinct(self.y)}")
        if self.coordinates is not None and (self.coordinates.ndim != 2
                                             or self.coordinates.shape[0] != self.x.shape[0]):
            raise ValueError(f"coordinates must have shape ({self.x.shape[0]}, k), got "
                             f"{_shape(self.coordinates)}")

    @property
    def n(self) -> int:
        return int(self.x.shape[0])

    @property
    def dim(self) -> int:
        """d, the number of network inputs (constant coordinates included)."""
        return int(self.x.shape[1])

    @property
    def coordinate_names(self) -> tuple[str, ...]:
        if self.source is not None:
            return self.source.coordinate_names
        if self.coordinates is None:
            return ()
        return tuple(f"x{i + 1}" for i in range(self.coordinates.shape[1]))

    @property
    def coordinate_range(self) -> tuple[float, float] | None:
        """The support of a 1-D coordinate for named sets (None for files: use the data's range)."""
        return self.source.coordinate_range if self.source is not None else None

    def inputs(self, coordinates: Tensor) -> Tensor:
        """The network inputs ``(m, d)`` at ``coordinates`` ``(m, k)``, in the dtype and on the
        device of ``x``."""
        if self.coordinates is None:
            raise ValueError(f"data {self.name!r} have no plotting coordinates (more than 2 input columns)")
        z = coordinates.to(self.x)
        if z.ndim != 2 or z.shape[1] != self.coordinates.shape[1]:
            raise ValueError(f"coordinates must have shape (m, {self.coordinates.shape[1]}), got {_shape(z)}")
        return z if self.source is None else self.source.embed(z)

    def target(self, coordinates: Tensor) -> Tensor | None:
        """The noiseless regression function at ``coordinates`` (None for classification and files)."""
        if self.source is None:
            return None
        return self.source.target(coordinates.to(self.x))

    def subset(self, rows: Tensor) -> SupervisedData:
        """The rows ``rows`` (an index tensor) of every per-sample field."""
        rows = rows.to(self.x.device)
        coordinates = None if self.coordinates is None else self.coordinates[rows]
        return dataclasses.replace(self, x=self.x[rows], y=self.y[rows], coordinates=coordinates)

    def summary(self) -> dict[str, Any]:
        """JSON-safe description (no per-sample values)."""
        return {"name": self.name, "task": self.task, "n": self.n, "dim": self.dim, "noise": self.noise,
                "coordinates": list(self.coordinate_names),
                "description": self.source.description if self.source is not None else "user file"}


def _shape(value: Any) -> Any:
    return tuple(value.shape) if isinstance(value, Tensor) else type(value).__name__


def _distinct(y: Tensor, shown: int = 5) -> str:
    values = torch.unique(y.detach().cpu()).tolist()
    text = ", ".join(f"{v:g}" for v in values[:shown])
    return "{" + text + (", ..." if len(values) > shown else "") + "}"


def supervised_dataset(name: str, n: int, generator: torch.Generator | None = None, *,
                       noise: float | None = None, dtype: torch.dtype = torch.float32,
                       device: torch.device | str | None = None) -> SupervisedData:
    r"""``n`` i.i.d. labelled points of the named set (see the module docstring).

    Randomness is drawn in float64 on the generator's device (the default generator on the CPU
    when ``generator`` is None), then cast to ``dtype`` and moved to ``device`` (default: the
    generator's device). ``noise`` (default :data:`DEFAULT_NOISE`) is the standard deviation of
    the label noise (regression) or of the point noise (classification); 0 gives clean data.

    >>> data = supervised_dataset("sine", 100, torch.Generator().manual_seed(0), noise=0.0)
    >>> tuple(data.x.shape), data.task, bool((data.x[:, 1] == 1).all())
    ((100, 2), 'regression', True)
    >>> torch.allclose(data.y, torch.sin(torch.pi * data.x[:, 0]), atol=1e-6)
    True
    >>> sorted(set(supervised_dataset("moons", 50).y.tolist()))
    [-1.0, 1.0]
    """
    if not isinstance(name, str) or name not in SUPERVISED_SETS:
        raise ValueError(f"unknown supervised data set {name!r}; choose one of {', '.join(SUPERVISED_NAMES)}")
    n = check_count(n, "n")
    level = DEFAULT_NOISE if noise is None else float(noise)
    if not math.isfinite(level) or level < 0:
        raise ValueError(f"noise must be finite and >= 0, got {noise!r}")
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise TypeError(f"dtype must be a floating torch dtype, got {dtype!r}")
    source = SUPERVISED_SETS[name]
    draw_device = generator.device if generator is not None else torch.device("cpu")
    z, y = source.draw(n, level, generator, draw_device)
    x = source.embed(z)
    target = torch.device(device) if device is not None else draw_device
    return SupervisedData(name, x.to(dtype=dtype, device=target), y.to(dtype=dtype, device=target),
                          source.task, z.to(dtype=dtype, device=target), source, level)


def load_supervised(path: str | os.PathLike[str], task: str = "regression", *, n: int | None = None,
                    generator: torch.Generator | None = None, dtype: torch.dtype = torch.float32,
                    device: torch.device | str = "cpu") -> SupervisedData:
    r"""Labelled data from a ``.csv``/``.npy`` file: the last column is y, the others are x.

    The file is read by :func:`measureflow.data.load_array` (so every malformed file ends in one
    ``ValueError`` naming it; non-finite values are refused with their row) and needs at least two
    columns and two rows. ``task="classification"`` needs labels in {-1, +1} or in {0, 1}; 0/1
    labels are mapped to -1/+1 (0 -> -1, 1 -> +1). ``n`` keeps a random subset of ``n`` rows
    (without replacement, drawn with ``generator``). Files with one or two input columns keep x
    as their plotting coordinates.

    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "labels.csv"
    >>> _ = path.write_text("x1,x2,label\n0.5,1,0\n-2,0.3,1\n1,1,1\n")
    >>> data = load_supervised(path, "classification")
    >>> data.x.shape, data.y.tolist()
    (torch.Size([3, 2]), [-1.0, 1.0, 1.0])
    """
    if task not in SUPERVISED_TASKS:
        raise ValueError(f"task must be one of {', '.join(SUPERVISED_TASKS)}, got {task!r}")
    values = load_array(path, min_rows=2)
    if values.shape[1] < 2:
        raise ValueError(f"data file {os.fspath(path)!r} has {values.shape[1]} column; it needs the inputs x "
                         "and, in the last column, the labels y")
    if n is not None:
        n = check_count(n, "n")
        if n > values.shape[0]:
            raise ValueError(f"n = {n} rows asked of data file {os.fspath(path)!r}, which has "
                             f"{values.shape[0]}")
        rows = torch.randperm(values.shape[0], generator=generator,
                              device=generator.device if generator is not None else "cpu")[:n]
        values = values[rows.cpu()]
    x, y = values[:, :-1], values[:, -1]
    if task == "classification":
        labels = set(np.unique(y.numpy()).tolist())
        if labels <= {0.0, 1.0}:
            y = 2 * y - 1
        elif not labels <= {-1.0, 1.0}:
            raise ValueError(f"data file {os.fspath(path)!r}: classification labels (the last column) must "
                             f"be -1/+1 or 0/1, got values {_distinct(y)}")
    x = x.to(dtype=dtype, device=device)
    coordinates = x if x.shape[1] <= 2 else None
    return SupervisedData(os.fspath(path), x, y.to(dtype=dtype, device=device), task, coordinates)


def train_test_split(
    data: SupervisedData, test_fraction: float, generator: torch.Generator | None = None,
) -> tuple[SupervisedData, SupervisedData | None]:
    r"""(train, test): a random permutation of the rows (drawn with ``generator``), the first
    round(test_fraction n) of them the test set (None for ``test_fraction=0``; a positive
    fraction must leave at least one test and one training row). For i.i.d. data this is the
    same in law as two independent draws.

    >>> data = supervised_dataset("xor", 40, torch.Generator().manual_seed(0))
    >>> train, test = train_test_split(data, 0.25, torch.Generator().manual_seed(1))
    >>> train.n, test.n
    (30, 10)
    """
    if not isinstance(data, SupervisedData):
        raise TypeError(f"data must be SupervisedData, got {type(data).__name__}")
    fraction = float(test_fraction)
    if not 0 <= fraction < 1:
        raise ValueError(f"test_fraction must lie in [0, 1), got {test_fraction!r}")
    n_test = int(round(fraction * data.n))
    if fraction > 0 and n_test == 0:
        raise ValueError(f"test_fraction = {fraction:g} of {data.n} rows rounds to no test row; use more "
                         "rows, a larger fraction, or 0 for no test set")
    if n_test > data.n - 1:
        raise ValueError(f"test_fraction = {fraction:g} of {data.n} rows leaves no training row")
    device = generator.device if generator is not None else torch.device("cpu")
    order = torch.randperm(data.n, generator=generator, device=device)
    train = data.subset(order[n_test:])
    return train, (data.subset(order[:n_test]) if n_test > 0 else None)
