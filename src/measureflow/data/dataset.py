r"""One entry point from a data specification (a toy name, ``"digits"`` or a file) to samples.

``load_dataset`` returns a :class:`Dataset` (the samples ``x`` ``(n, ...)``, their kind, labels
when there are any); :class:`Standardizer` is the per-feature affine map a generative model is
trained behind, stored as JSON-safe lists beside the model so samples can be mapped back to the
data's own units.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from measureflow.data.files import DATA_SUFFIXES, load_array
from measureflow.data.images import digits
from measureflow.data.toys import TOY_NAMES, toy_2d

__all__ = ["DATASET_KINDS", "DATASET_NAMES", "DEFAULT_TOY_SIZE", "Dataset", "Standardizer", "load_dataset"]

DATASET_NAMES = (*TOY_NAMES, "digits")
DATASET_KINDS = ("vector", "image")
DEFAULT_TOY_SIZE = 100_000


@dataclass(frozen=True, eq=False)  # tensors inside: compare fields explicitly
class Standardizer:
    r"""The per-feature affine map z = (x - mean) / std and its inverse x = mean + std z.

    ``mean`` and ``std`` have the event shape of the data (``(d,)`` for vectors) and are kept in
    float64; ``forward``/``inverse`` compute in the dtype and on the device of their input.
    :meth:`fit` uses the population standard deviation and sets std = 1 for a constant feature
    (std at most 1e-10 |mean|, or 0), so such a feature is only centred, never divided by zero.

    >>> x = torch.tensor([[1.0, 5.0], [3.0, 5.0]])
    >>> s = Standardizer.fit(x)
    >>> s.forward(x)
    tensor([[-1.,  0.],
            [ 1.,  0.]])
    >>> torch.equal(Standardizer.from_dict(s.to_dict()).inverse(s.forward(x)), x)
    True
    """

    mean: Tensor
    std: Tensor

    def __post_init__(self) -> None:
        if not isinstance(self.mean, Tensor) or not isinstance(self.std, Tensor):
            raise TypeError("mean and std must be torch tensors")
        if self.mean.shape != self.std.shape:
            raise ValueError(
                f"mean and std must have the same shape, got {tuple(self.mean.shape)} and "
                f"{tuple(self.std.shape)}"
            )
        if not bool(torch.isfinite(self.mean).all()) or not bool((self.std > 0).all()) \
                or not bool(torch.isfinite(self.std).all()):
            raise ValueError("mean must be finite and std finite and positive")

    @classmethod
    def fit(cls, x: Tensor) -> Standardizer:
        """The standardizer of the samples ``x`` ``(n, ...)`` (n >= 1), statistics over dim 0."""
        if not isinstance(x, Tensor) or not x.is_floating_point():
            raise TypeError(f"x must be a floating torch tensor, got {type(x).__name__}")
        if x.ndim < 2 or x.shape[0] < 1:
            raise ValueError(f"x must have shape (n, ...) with n >= 1, got {tuple(x.shape)}")
        if not bool(torch.isfinite(x).all()):
            raise ValueError("x contains NaN or infinite values; cannot standardize")
        wide = x.detach().to(torch.float64)
        mean = wide.mean(0)
        std = wide.std(0, unbiased=False) if x.shape[0] > 1 else torch.zeros_like(mean)
        constant = (std == 0) | (std <= 1e-10 * mean.abs())
        return cls(mean, torch.where(constant, torch.ones_like(std), std))

    def _check(self, x: Tensor, name: str) -> None:
        if not isinstance(x, Tensor) or not x.is_floating_point():
            raise TypeError(f"{name} must be a floating torch tensor, got {type(x).__name__}")
        if tuple(x.shape[1:]) != tuple(self.mean.shape):
            raise ValueError(
                f"{name} must have shape (n, {', '.join(map(str, self.mean.shape))}) to match the "
                f"standardizer, got {tuple(x.shape)}"
            )

    def forward(self, x: Tensor) -> Tensor:
        """(x - mean) / std for ``x`` ``(n, ...)``."""
        self._check(x, "x")
        return (x - self.mean.to(x)) / self.std.to(x)

    def inverse(self, z: Tensor) -> Tensor:
        """mean + std z for ``z`` ``(n, ...)``: back to the data's own units."""
        self._check(z, "z")
        return z * self.std.to(z) + self.mean.to(z)

    def log_abs_det(self) -> float:
        """sum_i log std_i, the log-Jacobian of :meth:`inverse`: a density in data units is
        log p_data(x) = log p_standardized(forward(x)) - log_abs_det()."""
        return float(torch.log(self.std).sum())

    def to_dict(self) -> dict[str, Any]:
        """``{"mean": [...], "std": [...]}`` as (nested) lists of floats."""
        return {"mean": self.mean.tolist(), "std": self.std.tolist()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Standardizer:
        """The inverse of :meth:`to_dict`."""
        if not isinstance(data, dict) or "mean" not in data or "std" not in data:
            raise ValueError("a standardizer is stored as a dict with keys 'mean' and 'std'")
        wide = torch.float64
        return cls(torch.tensor(data["mean"], dtype=wide), torch.tensor(data["std"], dtype=wide))


@dataclass(frozen=True, eq=False)  # tensors inside: compare fields explicitly
class Dataset:
    r"""Samples of one data set: ``x`` ``(n, d)`` for kind ``"vector"``, ``(n, C, H, W)`` for
    ``"image"``; ``labels`` ``(n,)`` (int64) or None; ``name`` says where they came from."""

    name: str
    x: Tensor
    kind: str
    labels: Tensor | None = None

    def __post_init__(self) -> None:
        if self.kind not in DATASET_KINDS:
            raise ValueError(f"kind must be one of {', '.join(DATASET_KINDS)}, got {self.kind!r}")
        expected = 2 if self.kind == "vector" else 4
        if not isinstance(self.x, Tensor) or self.x.ndim != expected or self.x.shape[0] < 1:
            shape = tuple(self.x.shape) if isinstance(self.x, Tensor) else type(self.x).__name__
            form = "(n, d)" if self.kind == "vector" else "(n, C, H, W)"
            raise ValueError(f"x of a {self.kind} data set must have shape {form} with n >= 1, got {shape}")
        if self.labels is not None and tuple(self.labels.shape) != (self.x.shape[0],):
            raise ValueError(f"labels must have shape ({self.x.shape[0]},), got {tuple(self.labels.shape)}")

    @property
    def n(self) -> int:
        """The number of samples."""
        return int(self.x.shape[0])

    @property
    def event_shape(self) -> tuple[int, ...]:
        """The shape of one sample: ``(d,)`` or ``(C, H, W)``."""
        return tuple(int(size) for size in self.x.shape[1:])

    @property
    def dim(self) -> int:
        """The number of coordinates of one sample (C * H * W for images)."""
        return int(torch.Size(self.event_shape).numel())

    def summary(self) -> dict[str, Any]:
        """A JSON-safe description (no data): name, kind, n, event shape, whether labelled."""
        return {"name": self.name, "kind": self.kind, "n": self.n, "event_shape": list(self.event_shape),
                "labelled": self.labels is not None}


def load_dataset(
    spec: str | os.PathLike[str],
    n: int | None = None,
    generator: torch.Generator | None = None,
) -> Dataset:
    r"""The data set named by ``spec``, on the CPU in float32.

    - a toy name (``moons``, ``8gaussians``, ``25gaussians``, ``checkerboard``, ``swissroll``):
      ``n`` fresh draws from :func:`~measureflow.data.toys.toy_2d` with ``generator``
      (``n`` defaults to ``DEFAULT_TOY_SIZE`` = 100,000), kind ``"vector"``;
    - ``"digits"``: the fixed training split of :func:`~measureflow.data.images.digits`
      (1,437 images ``(1, 8, 8)`` in [-1, 1], with labels), kind ``"image"``;
    - a path ending in ``.csv`` or ``.npy``: :func:`~measureflow.data.files.load_array`, kind
      ``"vector"``.

    For digits and files, ``n`` (when given) keeps a random subset of ``n`` rows without
    replacement, drawn with ``generator``; asking for more rows than there are is an error.

    >>> data = load_dataset("moons", n=500, generator=torch.Generator().manual_seed(0))
    >>> data.kind, data.event_shape, data.n
    ('vector', (2,), 500)
    """
    if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
        raise ValueError(f"n must be None or a positive integer, got {n!r}")
    if isinstance(spec, str) and spec in TOY_NAMES:
        x = toy_2d(spec, DEFAULT_TOY_SIZE if n is None else n, generator)
        return Dataset(spec, x, "vector")
    if isinstance(spec, str) and spec == "digits":
        images, labels = digits("train")
        return _subset(Dataset("digits", images, "image", labels), n, generator)
    if isinstance(spec, (str, os.PathLike)) and Path(spec).suffix.lower() in DATA_SUFFIXES:
        x = load_array(spec)
        return _subset(Dataset(str(spec), x, "vector"), n, generator)
    raise ValueError(
        f"unknown data {str(spec)!r}; use one of {', '.join(DATASET_NAMES)} or a path to a file ending "
        f"in {' or '.join(DATA_SUFFIXES)}"
    )


def _subset(data: Dataset, n: int | None, generator: torch.Generator | None) -> Dataset:
    if n is None or n == data.n:
        return data
    if n > data.n:
        raise ValueError(f"n={n} exceeds the {data.n} samples of {data.name!r}; pass n <= {data.n} or none")
    device = generator.device if generator is not None else torch.device("cpu")
    rows = torch.randperm(data.n, generator=generator, device=device)[:n].to(data.x.device)
    labels = data.labels[rows] if data.labels is not None else None
    return Dataset(data.name, data.x[rows], data.kind, labels)
