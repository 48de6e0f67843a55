r"""The Fokker-Planck equation of gradient Langevin dynamics on a 2-D grid.

d_t mu = (1/beta) Laplacian mu + div(mu grad L) on the box [lo_1, hi_1] x [lo_2, hi_2] with no-flux
boundaries, on n_1 x n_2 equal cells (spacings h_1, h_2, cell volume V = h_1 h_2). Each face carries
the Scharfetter-Gummel flux of the 1-D scheme (``fokker_planck`` module docstring) along its
normal: for neighbours a -> b along axis k, J = (B(s) p_a - B(-s) p_b) / (beta h_k),
s = beta (L_b - L_a), B(s) = s / (e^s - 1); V dp_a/dt = -sum over faces of (face area V / h_k) x
outward J. The generator A (dp/dt = A p, a sparse matrix with 5 entries per column) has
non-negative off-diagonal entries and zero column sums, and A g = 0 for the discrete Gibbs
density g_a = exp(-beta L_a) / sum_b exp(-beta L_b) V (detailed balance on every face). The
discrete de Bruijn identity holds as in 1-D: d/dt KL(p || g) = -(1/beta) I_h(p) with

.. math::
    I_h(p) = \beta \sum_{\text{faces } a \to b} \frac{V}{h_k} J_{ab} (\log f_a - \log f_b),
    \qquad f = p / g.

Time stepping: implicit Euler, (I - dt A) p^{k+1} = p^k; I - dt A is a column diagonally dominant
M-matrix, so p stays >= 0 and the mass is conserved for every dt. The sparse LU factorization of
I - dt A is computed once per step size and reused across steps.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse
import scipy.sparse.linalg
import torch
from torch import Tensor

from measureflow._core import new_figure, progress_bar, save_figure
from measureflow.metrics import kl_grid
from measureflow.pde import _grid

__all__ = ["FokkerPlanck2D", "FokkerPlanck2DSolution"]


def _pair(value: Any, name: str) -> tuple[Any, Any]:
    """A scalar used for both axes, or a pair (sequence, array or tensor of length 2)."""
    if isinstance(value, (numbers.Real, np.integer, np.floating)) and not isinstance(value, bool):
        return value, value
    if isinstance(value, Tensor):
        value = value.tolist() if value.ndim > 0 else value.item()
        if not isinstance(value, list):
            return value, value
    if isinstance(value, (list, tuple, np.ndarray)) and len(value) == 2:
        return value[0], value[1]
    raise TypeError(f"{name} must be a number (both axes) or a pair of numbers, got {value!r}")


@dataclass(frozen=True, eq=False)
class FokkerPlanck2DSolution:
    """A grid solution of the 2-D Fokker-Planck equation.

    Fields: ``x1`` ``(n1,)`` and ``x2`` ``(n2,)`` cell centres along the two axes, ``dx`` the pair of
    spacings, ``times`` ``(T,)``, ``p`` ``(T, n1, n2)`` densities (``p[k, i, j]`` at
    ``(x1[i], x2[j])``, ``sum(p[k]) * dx[0] * dx[1] = 1``), ``gibbs`` ``(n1, n2)``, ``beta``.
    """

    x1: Tensor
    x2: Tensor
    dx: tuple[float, float]
    times: Tensor
    p: Tensor
    gibbs: Tensor
    beta: float

    @property
    def volume(self) -> float:
        return self.dx[0] * self.dx[1]

    def mass(self) -> Tensor:
        """sum(p_t) dx1 dx2, ``(T,)``."""
        return self.p.sum((-2, -1)) * self.volume

    def kl(self) -> Tensor:
        """KL(p_t || gibbs) in nats, ``(T,)`` (``metrics.kl_grid``)."""
        return kl_grid(self.p, self.gibbs, self.dx)

    def current(self) -> tuple[Tensor, Tensor]:
        """Face fluxes along axis 1, ``(T, n1 + 1, n2)``, and axis 2, ``(T, n1, n2 + 1)``; boundary
        faces carry 0."""
        log_gibbs = self.gibbs.log()
        fluxes = []
        for axis, spacing in ((1, self.dx[0]), (2, self.dx[1])):
            head = [slice(None)] * 3
            tail = [slice(None)] * 3
            head[axis], tail[axis] = slice(None, -1), slice(1, None)
            jumps = (log_gibbs[tuple(head[1:])] - log_gibbs[tuple(tail[1:])]).unsqueeze(0)
            interior = (
                _grid.bernoulli(jumps) * self.p[tuple(head)] - _grid.bernoulli(-jumps) * self.p[tuple(tail)]
            ) / (self.beta * spacing)
            shape = list(interior.shape)
            shape[axis] = 1
            zeros = interior.new_zeros(shape)
            fluxes.append(torch.cat([zeros, interior, zeros], dim=axis))
        return fluxes[0], fluxes[1]

    def fisher(self) -> Tensor:
        """The relative Fisher information I(p_t || pi) = int p |grad log(p / pi)|^2 on the faces,
        ``(T,)``, consistent with the scheme: d/dt kl() = -(1/beta) fisher() along the
        semi-discrete flow (module docstring). p = 0 enters the logarithm as 2.2e-308."""
        log_f = self.p.clamp_min(_grid.TINY).log() - self.gibbs.log()
        first, second = self.current()
        along_1 = (first[:, 1:-1, :] * (log_f[:, :-1, :] - log_f[:, 1:, :])).sum((-2, -1)) * self.dx[1]
        along_2 = (second[:, :, 1:-1] * (log_f[:, :, :-1] - log_f[:, :, 1:])).sum((-2, -1)) * self.dx[0]
        return self.beta * (along_1 + along_2)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe fields and the derived curves (kl, fisher, mass)."""
        return {
            "x1": self.x1.tolist(),
            "x2": self.x2.tolist(),
            "dx": list(self.dx),
            "beta": self.beta,
            "times": self.times.tolist(),
            "p": self.p.tolist(),
            "gibbs": self.gibbs.tolist(),
            "kl": self.kl().tolist(),
            "fisher": self.fisher().tolist(),
            "mass": self.mass().tolist(),
        }

    def figure(self, path: str | Path, n_panels: int = 3) -> str:
        """Images of p_t at up to ``n_panels`` times with contours of the Gibbs density, and the KL
        curve; written atomically as a PNG at ``path``. Returns the path."""
        indices = _grid.pick_indices(self.times.shape[0], max(1, int(n_panels)))
        with_kl = self.times.shape[0] > 1
        figure, axes = new_figure(len(indices) + int(with_kl), 1, width=3.4, height=3.2)
        extent = (
            float(self.x2[0] - self.dx[1] / 2), float(self.x2[-1] + self.dx[1] / 2),
            float(self.x1[0] - self.dx[0] / 2), float(self.x1[-1] + self.dx[0] / 2),
        )
        for axis, k in zip(axes[0], indices, strict=False):
            axis.imshow(self.p[k].numpy(), origin="lower", extent=extent, aspect="auto", cmap="viridis")
            axis.contour(self.x2.numpy(), self.x1.numpy(), self.gibbs.numpy(), levels=5, colors="white",
                         linewidths=0.6)
            axis.set_title(f"t = {float(self.times[k]):.3g}")
            axis.set_xlabel("x2")
        axes[0, 0].set_ylabel("x1")
        if with_kl:
            _grid.plot_kl_curve(axes[0, -1], self.times, self.kl())
        figure.suptitle(f"Fokker-Planck 2-D (beta = {self.beta:g}); white: Gibbs contours")
        return save_figure(figure, path)


class FokkerPlanck2D:
    r"""The Fokker-Planck equation d_t mu = (1/beta) Laplacian mu + div(mu grad L) on a 2-D box, no flux.

    ``energy``: a measureflow ``Target`` of dimension 2 or a callable ``(m, 2) -> (m,)``, evaluated
    once in float64 at the ``n1 * n2`` cell centres. ``lo`` and ``hi`` are numbers (the same for
    both axes) or pairs; ``n`` is a number of cells per axis or a pair ``(n1, n2)``. See the
    module docstring for the scheme.

    Attributes: ``x1`` ``(n1,)``, ``x2`` ``(n2,)``, ``dx`` (pair), ``energy_values`` and ``gibbs``
    ``(n1, n2)``.

    >>> import torch
    >>> from measureflow.pde import FokkerPlanck2D
    >>> fp = FokkerPlanck2D(lambda z: 0.5 * (z**2).sum(-1), beta=1.0, lo=-5.0, hi=5.0, n=(40, 30))
    >>> p0 = torch.exp(-0.5 * ((fp.x1[:, None] - 1) ** 2 + fp.x2[None, :] ** 2) / 0.25)
    >>> sol = fp.solve(p0, [0.0, 0.5, 1.0], max_step=0.05, progress=False)
    >>> sol.p.shape, round(float(sol.mass()[-1]), 12), bool((sol.p >= 0).all())
    (torch.Size([3, 40, 30]), 1.0, True)
    """

    def __init__(self, energy: Any, beta: float, lo: Any, hi: Any, n: Any) -> None:
        self.beta = _grid.check_beta(beta)
        lo_1, lo_2 = _pair(lo, "lo")
        hi_1, hi_2 = _pair(hi, "hi")
        n_1, n_2 = _pair(n, "n")
        self.lo, self.hi = tuple(zip(
            _grid.check_interval(lo_1, hi_1, ("lo[0]", "hi[0]")),
            _grid.check_interval(lo_2, hi_2, ("lo[1]", "hi[1]")),
            strict=True,
        ))
        self.n = (_grid.check_cells(n_1, "n[0]"), _grid.check_cells(n_2, "n[1]"))
        self.x1, spacing_1 = _grid.cell_centres(self.lo[0], self.hi[0], self.n[0])
        self.x2, spacing_2 = _grid.cell_centres(self.lo[1], self.hi[1], self.n[1])
        self.dx = (spacing_1, spacing_2)
        grid_1, grid_2 = torch.meshgrid(self.x1, self.x2, indexing="ij")
        points = torch.stack([grid_1.reshape(-1), grid_2.reshape(-1)], dim=-1)
        self.energy_values = _grid.evaluate_energy(energy, points).reshape(self.n)
        _grid.check_energy_range(self.energy_values, self.beta)
        self.gibbs = _grid.gibbs_density(self.energy_values, self.beta, spacing_1 * spacing_2)
        self._matrix: scipy.sparse.csc_matrix | None = None
        self._factors: dict[float, Any] = {}

    def _generator(self) -> scipy.sparse.csc_matrix:
        if self._matrix is None:
            n_1, n_2 = self.n
            index = np.arange(n_1 * n_2).reshape(n_1, n_2)
            energy = self.energy_values.numpy()
            rows, cols, values = [], [], []
            diagonal = np.zeros((n_1, n_2))
            for axis, spacing in ((0, self.dx[0]), (1, self.dx[1])):
                scale = 1.0 / (self.beta * spacing**2)
                jumps = torch.from_numpy(self.beta * np.diff(energy, axis=axis))
                forward = scale * _grid.bernoulli(jumps).numpy()  # rate a -> b (b the next cell)
                backward = scale * _grid.bernoulli(-jumps).numpy()  # rate b -> a
                first = index[:-1, :] if axis == 0 else index[:, :-1]
                second = index[1:, :] if axis == 0 else index[:, 1:]
                rows += [second.ravel(), first.ravel()]
                cols += [first.ravel(), second.ravel()]
                values += [forward.ravel(), backward.ravel()]
                if axis == 0:
                    diagonal[:-1, :] -= forward
                    diagonal[1:, :] -= backward
                else:
                    diagonal[:, :-1] -= forward
                    diagonal[:, 1:] -= backward
            rows.append(index.ravel())
            cols.append(index.ravel())
            values.append(diagonal.ravel())
            size = n_1 * n_2
            self._matrix = scipy.sparse.csc_matrix(
                (np.concatenate(values), (np.concatenate(rows), np.concatenate(cols))), shape=(size, size)
            )
        return self._matrix

    def generator(self) -> Tensor:
        """The generator A of dp/dt = A p on the flattened grid (``p.reshape(-1)``, row-major),
        a sparse COO tensor ``(n1 n2, n1 n2)``, float64: off-diagonals >= 0, zero column sums."""
        matrix = self._generator().tocoo()
        indices = torch.from_numpy(np.vstack([matrix.row, matrix.col]).astype(np.int64))
        return torch.sparse_coo_tensor(
            indices, torch.from_numpy(matrix.data), matrix.shape, dtype=_grid.DTYPE, check_invariants=True
        ).coalesce()

    def _factor(self, step: float) -> Any:
        factor = self._factors.get(step)
        if factor is None:
            size = self.n[0] * self.n[1]
            system = (scipy.sparse.identity(size, format="csc") - step * self._generator()).tocsc()
            # scipy's SuperLU rather than torch: torch has no sparse direct solver. A symmetric
            # fill-reducing ordering with diagonal pivots keeps the M-matrix structure, so the
            # triangular solves only add non-negative terms (p >= 0 in floating point).
            factor = scipy.sparse.linalg.splu(
                system, permc_spec="MMD_AT_PLUS_A", diag_pivot_thresh=0.0,
                options={"SymmetricMode": True},
            )
            self._factors = {step: factor}  # evenly spaced outputs reuse one step size
        return factor

    def solve(
        self, p0: Any, times: Any, *, max_step: float = 1e-2, progress: bool = True
    ) -> FokkerPlanck2DSolution:
        """Densities at ``times`` ``(T,)`` from density values ``p0`` ``(n1, n2)`` (normalized).

        Implicit Euler with steps of at most ``max_step`` (each output interval split into equal
        steps, one sparse LU per distinct step size): first order in time, p >= 0 and the mass
        conserved for any step size.
        """
        max_step = _grid.check_max_step(max_step)
        start = _grid.check_density(p0, self.n, self.dx[0] * self.dx[1])
        times = _grid.check_times(times)
        plan = _grid.substeps(times, max_step)
        current = start.reshape(-1).numpy().copy()
        out = np.empty((times.shape[0], self.n[0] * self.n[1]))
        total = sum(count for count, _ in plan)
        with progress_bar(total, "Fokker-Planck 2-D (implicit Euler)", progress) as bar:
            for k, (count, step) in enumerate(plan):
                if count:
                    factor = self._factor(step)
                    for _ in range(count):
                        current = factor.solve(current)
                    bar.update(count)
                out[k] = current
        return FokkerPlanck2DSolution(
            x1=self.x1, x2=self.x2, dx=self.dx, times=times,
            p=torch.from_numpy(out).reshape(times.shape[0], *self.n), gibbs=self.gibbs, beta=self.beta,
        )
