"""Radial kernels and their blocked sums over all pairs of two samples.

Every kernel here is a function of the squared distance, k(x, y) = phi(||x - y||^2), so one
blocked loop serves them all: the squared distances of a block of pairs come from one matrix
product of augmented points, [-2x, |x|^2, 1] . [y, 1, |y|^2] = |x - y|^2 (for the smooth
Gaussian and IMQ kernels; the Laplace and energy kernels, which take a square root, use direct
differences), and the block is reduced before the next one is formed. Memory is proportional to
the block, never to n * m.

Large sums run a block function compiled by ``torch.compile`` (the matrix product followed by
one fused pass for phi and the sum, two to three times faster than eager torch on CPU); small
problems, the diagonal blocks and any platform where compilation fails use the same arithmetic
eagerly.
"""

from __future__ import annotations

import numbers
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from measureflow._core import check_count, check_positive
from measureflow.metrics._validate import check_sample_pair

__all__ = [
    "EnergyKernel",
    "GaussianKernel",
    "IMQKernel",
    "KERNELS",
    "LaplaceKernel",
    "RadialKernel",
    "kernel_matmul",
    "kernel_matrix",
    "make_kernel",
    "median_bandwidth",
    "pairwise_sum",
]

# Pairs per block: 2^20 floats (4 MiB in float32) keep a block and its products in cache.
DEFAULT_BLOCK = 1024
# Below this many pairs the one-off compile time (about 3 s per kernel) does not pay for itself.
_COMPILE_MIN_PAIRS = 10**8


def _bandwidths(bandwidth: float | Sequence[float]) -> tuple[float, ...]:
    """One bandwidth or several as a tuple of positive floats (numbers, 0-d tensors, lists)."""
    if isinstance(bandwidth, (Tensor, np.ndarray)):
        bandwidth = bandwidth.tolist()
    values = (bandwidth,) if isinstance(bandwidth, numbers.Real) else tuple(bandwidth)
    if not values:
        raise ValueError("bandwidth must be a positive number or a non-empty list of them, got []")
    return tuple(check_positive(h, "bandwidth") for h in values)


@dataclass(frozen=True)
class RadialKernel(ABC):
    """k(x, y) = phi(||x - y||^2); subclasses give phi as ``profile`` on squared distances.

    ``direct_distances``: phi is not smooth at 0 (it goes through |x - y|), so the squared
    distances are taken from direct differences, whose rounding error is relative, instead of
    the matrix-product form, whose error eps |x|^2 the square root would turn into sqrt(eps) |x|.
    """

    direct_distances = False

    @abstractmethod
    def profile(self, sq_dist: Tensor) -> Tensor:
        """phi, elementwise on a tensor of squared distances."""

    def __call__(self, x: Tensor, y: Tensor) -> Tensor:
        """The kernel matrix ``(n, m)`` of ``x`` ``(n, d)`` against ``y`` ``(m, d)``."""
        return kernel_matrix(x, y, self)

    @property
    def at_zero(self) -> float:
        """phi(0) = k(x, x)."""
        return float(self.profile(torch.zeros((), dtype=torch.float64)))


@dataclass(frozen=True)
class GaussianKernel(RadialKernel):
    """k(x, y) = sum_h exp(-||x - y||^2 / (2 h^2)), a sum over the bandwidths h (one or several)."""

    bandwidth: tuple[float, ...]

    def __init__(self, bandwidth: float | Sequence[float]):
        object.__setattr__(self, "bandwidth", _bandwidths(bandwidth))

    def profile(self, sq_dist: Tensor) -> Tensor:
        total = torch.exp(sq_dist * (-0.5 / self.bandwidth[0] ** 2))
        for h in self.bandwidth[1:]:
            total += torch.exp(sq_dist * (-0.5 / h**2))
        return total


@dataclass(frozen=True)
class IMQKernel(RadialKernel):
    """Inverse multiquadric k(x, y) = sum_h (1 + ||x - y||^2 / h^2)^(-1/2).

    Its heavy tails make MMD and the kernel Stein discrepancy detect non-convergence that the
    Gaussian kernel misses (Gorham & Mackey 2017, Theorem 7).
    """

    bandwidth: tuple[float, ...]

    def __init__(self, bandwidth: float | Sequence[float]):
        object.__setattr__(self, "bandwidth", _bandwidths(bandwidth))

    def profile(self, sq_dist: Tensor) -> Tensor:
        total = torch.zeros_like(sq_dist)
        for h in self.bandwidth:
            total += torch.rsqrt(1 + sq_dist / h**2)
        return total


@dataclass(frozen=True)
class LaplaceKernel(RadialKernel):
    """k(x, y) = sum_h exp(-||x - y|| / h), with the Euclidean norm."""

    bandwidth: tuple[float, ...]
    direct_distances = True

    def __init__(self, bandwidth: float | Sequence[float]):
        object.__setattr__(self, "bandwidth", _bandwidths(bandwidth))

    def profile(self, sq_dist: Tensor) -> Tensor:
        dist = sq_dist.sqrt()
        total = torch.zeros_like(sq_dist)
        for h in self.bandwidth:
            total += torch.exp(dist * (-1 / h))
        return total


@dataclass(frozen=True)
class EnergyKernel(RadialKernel):
    """k(x, y) = -||x - y||: with it MMD^2 is the energy distance 2E|X-Y| - E|X-X'| - E|Y-Y'|.

    The kernel is only conditionally positive definite, which is enough: MMD weights sum to
    zero. It has no bandwidth (it is scale-equivariant).
    """

    direct_distances = True

    def profile(self, sq_dist: Tensor) -> Tensor:
        return -sq_dist.sqrt()


#: Kernel names accepted by the metrics, mapped to their classes (the energy kernel takes no bandwidth).
KERNELS: dict[str, type[RadialKernel]] = {
    "gaussian": GaussianKernel,
    "imq": IMQKernel,
    "laplace": LaplaceKernel,
    "energy": EnergyKernel,
}


def median_bandwidth(x: Any, y: Any | None = None, *, max_points: int = 2000,
                     generator: torch.Generator | None = None) -> float:
    """The median heuristic: h = median of ||z_i - z_j|| over distinct pairs of the pooled sample.

    At most ``max_points`` pooled points are used, drawn without replacement with ``generator``
    (a generator seeded 0 when ``None``, so the bandwidth is deterministic given the data).

    >>> x = torch.tensor([[0.0], [1.0], [3.0]])
    >>> median_bandwidth(x)
    2.0
    """
    if y is None:
        x, _ = check_sample_pair(x, x)
        pooled = x
    else:
        x, y = check_sample_pair(x, y)
        pooled = torch.cat([x, y])
    if pooled.shape[0] < 2:
        raise ValueError("the median heuristic needs at least two points in total")
    if pooled.shape[0] > max_points:
        if generator is None:
            generator = torch.Generator(device=pooled.device).manual_seed(0)
        index = torch.randperm(pooled.shape[0], generator=generator, device=generator.device)
        pooled = pooled[index[:max_points].to(pooled.device)]
    dist = torch.pdist(pooled.double())
    median = float(dist.median())
    if median == 0.0:
        # More than half the pairs coincide (discrete data): fall back on the mean distance.
        median = float(dist.mean())
    if median == 0.0:
        raise ValueError("all points coincide, so the median-heuristic bandwidth is zero; "
                         "give a bandwidth explicitly")
    return median


def make_kernel(kernel: str | RadialKernel, bandwidth: float | Sequence[float] | None,
                x: Tensor, y: Tensor | None = None,
                generator: torch.Generator | None = None) -> RadialKernel:
    """Resolve a kernel name and bandwidth (``None``: the median heuristic on x and y)."""
    if isinstance(kernel, RadialKernel):
        if bandwidth is not None:
            raise ValueError("give either a kernel object or a bandwidth, not both")
        return kernel
    if not isinstance(kernel, str) or kernel not in KERNELS:
        raise ValueError(f"unknown kernel {kernel!r}; choose one of {sorted(KERNELS)} "
                         "or pass a RadialKernel")
    cls = KERNELS[kernel]
    if cls is EnergyKernel:
        if bandwidth is not None:
            raise ValueError("the energy kernel has no bandwidth; leave bandwidth=None")
        return EnergyKernel()
    if bandwidth is None:
        bandwidth = median_bandwidth(x, y, generator=generator)
    return cls(bandwidth)


def _augment(kernel: RadialKernel, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    """Points whose inner products are squared distances: xa . ya = ||x - y||^2.

    Kernels with ``direct_distances`` get the points themselves (see ``_block_function``).
    """
    if kernel.direct_distances:
        return x, y
    sq_x = x.square().sum(1, keepdim=True)
    sq_y = y.square().sum(1, keepdim=True)
    xa = torch.cat([-2 * x, sq_x, torch.ones_like(sq_x)], dim=1)
    ya = torch.cat([y, torch.ones_like(sq_y), sq_y], dim=1)
    return xa, ya


def _centre(x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    # The augmented product loses about eps * |x|^2 to cancellation; centring the pooled sample
    # makes |x| as small as the data's spread allows. Radial kernels are translation invariant.
    centre = torch.cat([x, y]).mean(0)
    return x - centre, y - centre


def _block_function(kernel: RadialKernel, mode: str, compiled: bool = False):
    """The arithmetic of one block, as a plain function (run eagerly or handed to torch.compile).

    ``mode``: "sum" (sum of k over the block), "diag" (a block on the diagonal of x against
    itself: the squared distance of a point to itself is set to exactly 0), "offdiag" (the
    same with the diagonal terms dropped), "matmul" (K_block @ v).
    """
    if kernel.direct_distances:
        def squared_distances(a: Tensor, b: Tensor) -> Tensor:
            return torch.cdist(a, b, compute_mode="donot_use_mm_for_euclid_dist").square()
    else:
        def squared_distances(a: Tensor, b: Tensor) -> Tensor:
            return (a @ b.T).clamp(min=0)

    if mode == "matmul":
        def block(xa: Tensor, ya: Tensor, v: Tensor) -> Tensor:
            return kernel.profile(squared_distances(xa, ya)) @ v
        return block

    def block(xa: Tensor, ya: Tensor) -> Tensor:
        sq = squared_distances(xa, ya)
        if mode == "sum":
            return kernel.profile(sq).sum()
        if not compiled:
            # In place: two passes fewer than the masked form below, which torch.compile fuses.
            values = kernel.profile(sq.fill_diagonal_(0.0))
            return (values.fill_diagonal_(0.0) if mode == "offdiag" else values).sum()
        rows = torch.arange(sq.shape[0], device=sq.device)
        on_diagonal = rows[:, None] == rows[None, :]
        values = kernel.profile(torch.where(on_diagonal, 0.0, sq))
        if mode == "offdiag":
            values = torch.where(on_diagonal, 0.0, values)
        return values.sum()

    return block


_EAGER: dict[tuple[RadialKernel, str], Any] = {}
_COMPILED: dict[tuple[RadialKernel, str], Any] = {}
_COMPILE_FAILED: list[bool] = []


def _run_block(kernel: RadialKernel, mode: str, compile: bool, *args: Tensor) -> Tensor:
    """One block, compiled when asked and possible, eagerly otherwise (same arithmetic)."""
    key = (kernel, mode)
    if compile and not _COMPILE_FAILED:
        if key not in _COMPILED:
            # dynamic: one compilation serves every block shape, the ragged edges included.
            _COMPILED[key] = torch.compile(_block_function(kernel, mode, compiled=True), dynamic=True)
        try:
            return _COMPILED[key](*args)
        except Exception:  # noqa: BLE001 - no C compiler or an unsupported backend: stay eager
            _COMPILE_FAILED.append(True)
    if key not in _EAGER:
        _EAGER[key] = _block_function(kernel, mode)
    return _EAGER[key](*args)


def _blocks(n: int, size: int) -> list[tuple[int, int]]:
    """Split range(n) into ceil(n / size) nearly equal blocks (no thin ragged last block)."""
    count = -(-n // size)
    bounds = [round(i * n / count) for i in range(count + 1)]
    return list(zip(bounds[:-1], bounds[1:], strict=True))


def pairwise_sum(x: Any, y: Any | None, kernel: RadialKernel, *, exclude_diagonal: bool = False,
                 block_size: int = DEFAULT_BLOCK, compile: bool | None = None) -> Tensor:
    """sum_{i, j} k(x_i, y_j) over all pairs, in float64, by blocks of ``block_size`` rows and columns.

    ``y=None`` means y = x: then only blocks on or above the diagonal are formed (the sum is
    symmetric), and ``exclude_diagonal`` drops the n terms k(x_i, x_i) (for U-statistics);
    diagonal entries use the exact squared distance 0. ``compile`` (default: from 10^8 pairs
    on) runs the off-diagonal blocks through ``torch.compile``. Memory: O(block_size^2).

    >>> x = torch.tensor([[0.0], [1.0]])
    >>> round(float(pairwise_sum(x, None, GaussianKernel(1.0))), 6)  # 2 + 2 exp(-1/2)
    3.213061
    """
    symmetric = y is None
    x, y = check_sample_pair(x, x if symmetric else y)
    if exclude_diagonal and not symmetric:
        raise ValueError("exclude_diagonal applies to the sum of x against itself (y=None)")
    block_size = check_count(block_size, "block_size")
    if symmetric:
        x = x - x.mean(0)
        y = x
    else:
        x, y = _centre(x, y)
    xa, ya = _augment(kernel, x, y)
    n, m = x.shape[0], y.shape[0]
    if compile is None:
        compile = n * m >= _COMPILE_MIN_PAIRS
    total = torch.zeros((), dtype=torch.float64, device=x.device)
    for i0, i1 in _blocks(n, block_size):
        for j0, j1 in _blocks(m, block_size):
            if symmetric and j0 < i0:
                continue
            if symmetric and j0 == i0:
                mode, weight = ("offdiag" if exclude_diagonal else "diag"), 1
            else:
                # Each off-diagonal block of a symmetric sum stands for itself and its mirror.
                mode, weight = "sum", (2 if symmetric else 1)
            # Blocks sum in the input dtype (pairwise summation), the total in float64.
            total += weight * _run_block(kernel, mode, compile, xa[i0:i1], ya[j0:j1]).double()
    return total


def kernel_matmul(x: Any, y: Any, kernel: RadialKernel, v: Tensor, *,
                  block_size: int = DEFAULT_BLOCK, compile: bool | None = None) -> Tensor:
    """K(x, y) @ v without forming K: ``x`` ``(n, d)``, ``y`` ``(m, d)``, ``v`` ``(m, p)`` -> ``(n, p)``.

    >>> x = torch.tensor([[0.0], [1.0]])
    >>> kernel_matmul(x, x, GaussianKernel(1.0), torch.ones(2, 1)).flatten()  # 1 + exp(-1/2)
    tensor([1.6065, 1.6065])
    """
    x, y = check_sample_pair(x, y)
    block_size = check_count(block_size, "block_size")
    if v.ndim != 2 or v.shape[0] != y.shape[0]:
        raise ValueError(f"v must have shape ({y.shape[0]}, p), got {tuple(v.shape)}")
    v = v.to(dtype=x.dtype, device=x.device)
    x, y = _centre(x, y)
    xa, ya = _augment(kernel, x, y)
    n, m = x.shape[0], y.shape[0]
    if compile is None:
        compile = n * m >= _COMPILE_MIN_PAIRS
    out = torch.zeros(n, v.shape[1], dtype=x.dtype, device=x.device)
    for i0, i1 in _blocks(n, block_size):
        for j0, j1 in _blocks(m, block_size):
            out[i0:i1] += _run_block(kernel, "matmul", compile, xa[i0:i1], ya[j0:j1], v[j0:j1])
    return out


def kernel_matrix(x: Any, y: Any, kernel: RadialKernel) -> Tensor:
    """The full kernel matrix ``(n, m)`` (for small samples; use the blocked functions otherwise).

    >>> kernel_matrix(torch.zeros(1, 2), torch.ones(1, 2), GaussianKernel(1.0))  # exp(-1)
    tensor([[0.3679]])
    """
    x, y = check_sample_pair(x, y)
    # The direct difference (not the matrix-product form) keeps k(x, x) exactly phi(0).
    return kernel.profile(torch.cdist(x, y, compute_mode="donot_use_mm_for_euclid_dist").square())
