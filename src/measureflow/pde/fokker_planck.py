r"""The Fokker-Planck equation of gradient Langevin dynamics on a 1-D grid.

Gradient Langevin dynamics dX = -L'(X) dt + sqrt(2 / beta) dB (ULA's step x <- x - h L'(x) +
sqrt(2 h / beta) xi runs it with t = k h) moves its law mu_t by

.. math::
    \partial_t \mu = \frac{1}{\beta} \partial_{xx} \mu + \partial_x(\mu L')
                   = \frac{1}{\beta} \partial_x\big(\pi\, \partial_x (\mu / \pi)\big),
    \qquad \pi = e^{-\beta L} / Z,

here on a box [lo, hi] with no-flux boundaries, so pi (restricted to the box) is stationary.

Scheme. Finite volumes on n equal cells (centres x_i, spacing h = dx); p_i is the density in cell
i. The flux through the face between cells i and i+1 is the Scharfetter-Gummel flux

.. math::
    J_{i+1/2} = \frac{1}{\beta h}\big(B(s_i)\, p_i - B(-s_i)\, p_{i+1}\big),
    \qquad s_i = \beta (L_{i+1} - L_i), \quad B(s) = \frac{s}{e^s - 1},

and J = 0 on the two boundary faces; the semi-discrete equation is
dp_i/dt = -(J_{i+1/2} - J_{i-1/2}) / h, i.e. dp/dt = A p with a tridiagonal generator A whose
off-diagonal entries are >= 0 and whose columns sum to 0. Hence:

- mass sum(p) h is conserved and p stays >= 0 (A is the rate matrix of a Markov chain on cells);
- with g_i = exp(-beta L_i) / sum_j exp(-beta L_j) h (the discrete Gibbs density) and
  f = p / g, B(-s_i) = e^{s_i} B(s_i) gives J_{i+1/2} = -(w_{i+1/2} / (beta h)) (f_{i+1} - f_i)
  with w_{i+1/2} = g_i B(s_i) = g_{i+1} B(-s_i) > 0: the fluxes vanish exactly at f = const,
  so g is an exact stationary state (detailed balance on every face);
- the consistency error is O(h^2) for smooth L (Scharfetter & Gummel 1969; Il'in 1969; for the
  Fokker-Planck use see Chang & Cooper 1970 and Larsen et al. 1985), and the flux is upwinded
  automatically where |s_i| is large, so no cell-Peclet restriction.

Detailed balance makes A self-adjoint in l^2(1 / g): A = G^{1/2} S G^{-1/2}, G = diag(g), with S
symmetric tridiagonal, S_ii = A_ii and S_{i,i+1} = (1 / (beta h^2)) (s_i / 2) / sinh(s_i / 2).
One eigendecomposition S = U diag(lambda) U^T (all lambda <= 0, lambda = 0 once, for sqrt(g))
gives the solution exactly in time at any set of times,

.. math:: p(t) = G^{1/2} U e^{t \Lambda} U^T G^{-1/2} p(0),

and the spectral gap -lambda_2, the asymptotic decay rate of chi^2(p_t || g) and of 2 KL.
The eigenbasis has one weakness: its rounding error is about eps ||p / sqrt(g)|| max sqrt(g), which
is large when p puts mass where the Gibbs density is tiny (a start far up the walls of the box:
measured, a Gaussian at x = 2 in the double well at beta = 3 on [-3, 3] gives O(1) garbage). So
``method="exponential"`` first applies exp(tA) by uniformization (Jensen 1953): with
rate >= max |A_ii| and P = I + A / rate >= 0 (column-stochastic),
exp(tA) p = sum_k Poisson(k; rate t) P^k p, a sum of non-negative terms, accurate to rounding in
every cell; it does so only until the drift has emptied those cells (typically a few hundredths
of a time unit) and the eigenbasis's error bound is below 1e-12 max(p), then switches to the
eigenbasis. Both parts are exact in time; the result agrees with a pure uniformization to about
1e-13 (absolute, for densities of order 1). ``method="implicit"`` takes implicit Euler steps
(I - dt A) p^{k+1} = p^k instead: I - dt A is a column diagonally dominant M-matrix, so each step
keeps p >= 0 and the mass for any dt (first order in time).

Discrete de Bruijn identity. With K(p) = sum_i p_i log(p_i / g_i) h (the discrete KL), summation
by parts on the no-flux grid gives, exactly along the semi-discrete flow,

.. math::
    \frac{dK}{dt} = \sum_i h\, \dot p_i \log f_i
    = \sum_{i} J_{i+1/2}\,(\log f_{i+1} - \log f_i)
    = -\frac{1}{\beta} I_h(p),
    \qquad I_h(p) = \sum_{i} \frac{w_{i+1/2}}{h} (f_{i+1} - f_i)(\log f_{i+1} - \log f_i),

the face discretization of the relative Fisher information I(p || pi) = int pi f' (log f)'
= int p |(log f)'|^2. :meth:`FokkerPlanckSolution.fisher` returns I_h, so d/dt kl() =
-(1/beta) fisher() holds to rounding for the exponential method (up to the time-differencing
error of whatever derivative one takes of the sampled kl()).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import scipy.linalg
import torch
from torch import Tensor

from measureflow._core import new_figure, progress_bar, save_figure
from measureflow.metrics import kl_grid, wasserstein_1d_grid
from measureflow.pde import _grid

__all__ = ["FokkerPlanck1D", "FokkerPlanckSolution"]

_METHODS = ("exponential", "implicit")
_EPS = float(torch.finfo(torch.float64).eps)
# The eigenbasis is used once its error bound (``_eigen_error``) is below this, relative to max p.
_EIGEN_TOLERANCE = 1e-12
# Length of one uniformization chunk, in units of the mean number of jumps (rate * duration).
_UNIFORM_CHUNK = 64.0


@dataclass(frozen=True, eq=False)
class FokkerPlanckSolution:
    """A grid solution of the 1-D Fokker-Planck equation.

    Fields: ``x`` ``(n,)`` cell centres, ``dx`` the spacing, ``times`` ``(T,)``, ``p`` ``(T, n)``
    densities (``sum(p[k]) * dx = 1``), ``gibbs`` ``(n,)`` the discrete Gibbs density
    exp(-beta L_i) / sum_j exp(-beta L_j) dx, ``beta``, and ``method`` ("exponential" or
    "implicit"). All tensors are float64 on the CPU.
    """

    x: Tensor
    dx: float
    times: Tensor
    p: Tensor
    gibbs: Tensor
    beta: float
    method: str = "exponential"

    def _jumps(self) -> Tensor:
        """s_i = beta (L_{i+1} - L_i) = log g_i - log g_{i+1}, ``(n - 1,)``."""
        log_gibbs = self.gibbs.log()
        return log_gibbs[:-1] - log_gibbs[1:]

    def mass(self) -> Tensor:
        """sum(p_t) dx, ``(T,)``: 1 up to rounding."""
        return self.p.sum(-1) * self.dx

    def kl(self) -> Tensor:
        """KL(p_t || gibbs) = sum p log(p / g) dx in nats, ``(T,)`` (``metrics.kl_grid``)."""
        return kl_grid(self.p, self.gibbs, self.dx)

    def current(self) -> Tensor:
        """The Scharfetter-Gummel face fluxes J, ``(T, n + 1)``, positive to the right; the two
        boundary faces carry 0 (no flux), and dp_i/dt = -(J[i + 1] - J[i]) / dx."""
        s = self._jumps()
        interior = (_grid.bernoulli(s) * self.p[:, :-1] - _grid.bernoulli(-s) * self.p[:, 1:]) / (
            self.beta * self.dx
        )
        zeros = torch.zeros_like(self.p[:, :1])
        return torch.cat([zeros, interior, zeros], dim=-1)

    def fisher(self) -> Tensor:
        """The relative Fisher information I(p_t || pi) = int p |d/dx log(p / pi)|^2 on the faces, ``(T,)``.

        I_h = sum_faces (w / dx) (f_{i+1} - f_i)(log f_{i+1} - log f_i), f = p / g, written as
        beta sum_faces J (log f_i - log f_{i+1}); with it d/dt kl() = -(1/beta) fisher() exactly
        along the semi-discrete flow (module docstring). Each face term is >= 0. Cells with
        p = 0 enter the logarithm as 2.2e-308 (see ``_grid.TINY``).
        """
        flux = self.current()[:, 1:-1]
        log_p = self.p.clamp_min(_grid.TINY).log()
        drop = log_p[:, :-1] - log_p[:, 1:] - self._jumps()
        return self.beta * (flux * drop).sum(-1)

    def w2(self) -> Tensor:
        """W_2(p_t, gibbs) between the piecewise-constant densities, by quantiles, ``(T,)``
        (``metrics.wasserstein_1d_grid``)."""
        return wasserstein_1d_grid(self.x, self.p, self.gibbs.expand_as(self.p))

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe fields and the derived curves (kl, fisher, w2, mass)."""
        return {
            "x": self.x.tolist(),
            "dx": self.dx,
            "beta": self.beta,
            "method": self.method,
            "times": self.times.tolist(),
            "p": self.p.tolist(),
            "gibbs": self.gibbs.tolist(),
            "kl": self.kl().tolist(),
            "fisher": self.fisher().tolist(),
            "w2": self.w2().tolist(),
            "mass": self.mass().tolist(),
        }

    def figure(self, path: str | Path, n_panels: int = 4) -> str:
        """Small multiples of p_t over the Gibbs density at up to ``n_panels`` times, and the KL
        curve; written atomically as a PNG at ``path``. Returns the path."""
        indices = _grid.pick_indices(self.times.shape[0], max(1, int(n_panels)))
        with_kl = self.times.shape[0] > 1
        figure, axes = new_figure(len(indices) + int(with_kl), 1, width=3.6, height=3.0)
        x, gibbs = self.x.numpy(), self.gibbs.numpy()
        top = 1.05 * max(float(self.p[indices].max()), float(self.gibbs.max()))
        for axis, k in zip(axes[0], indices, strict=False):
            axis.fill_between(x, gibbs, color="0.85", label="Gibbs exp(-beta L)")
            axis.plot(x, self.p[k].numpy(), color="tab:blue", linewidth=1.3, label="p_t")
            axis.set_ylim(0, top)
            axis.set_title(f"t = {float(self.times[k]):.3g}")
            axis.set_xlabel("x")
        axes[0, 0].set_ylabel("density")
        axes[0, 0].legend(fontsize=7)
        if with_kl:
            _grid.plot_kl_curve(axes[0, -1], self.times, self.kl())
        figure.suptitle(f"Fokker-Planck on the grid (beta = {self.beta:g}, n = {self.x.shape[0]})")
        return save_figure(figure, path)


class FokkerPlanck1D:
    r"""The Fokker-Planck equation d_t mu = (1/beta) mu'' + (mu L')' on n cells of [lo, hi], no flux.

    ``energy`` is a measureflow ``Target`` of dimension 1 or a callable mapping ``(m, 1)`` tensors
    to ``(m,)``; it is evaluated once, in float64, at the cell centres ``x`` ``(n,)``. See the
    module docstring for the Scharfetter-Gummel scheme, its exact Gibbs fixed point and the
    exact-in-time exponential solution.

    Attributes: ``x`` ``(n,)``, ``dx``, ``beta``, ``energy_values`` L(x_i) ``(n,)``, ``gibbs``
    ``(n,)`` the discrete Gibbs density.

    >>> import torch
    >>> from measureflow.pde import FokkerPlanck1D
    >>> from measureflow.targets import DoubleWell
    >>> fp = FokkerPlanck1D(DoubleWell(), beta=2.0, lo=-2.5, hi=2.5, n=200)
    >>> p0 = torch.exp(-((fp.x + 1) / 0.2) ** 2 / 2)  # normalized by solve
    >>> sol = fp.solve(p0, [0.0, 1.0, 50.0], progress=False)
    >>> sol.p.shape, round(float(sol.mass().max()), 12), round(float(sol.kl()[-1]), 9)
    (torch.Size([3, 200]), 1.0, 0.0)
    """

    def __init__(self, energy: Any, beta: float, lo: float, hi: float, n: int) -> None:
        self.beta = _grid.check_beta(beta)
        self.lo, self.hi = _grid.check_interval(lo, hi)
        self.n = _grid.check_cells(n)
        self.x, self.dx = _grid.cell_centres(self.lo, self.hi, self.n)
        self.energy_values = _grid.evaluate_energy(energy, self.x[:, None])
        _grid.check_energy_range(self.energy_values, self.beta)
        self.gibbs = _grid.gibbs_density(self.energy_values, self.beta, self.dx)
        self._jumps = self.beta * torch.diff(self.energy_values)  # s_i, (n - 1,)
        self._scale = 1.0 / (self.beta * self.dx**2)
        self._spectrum: tuple[Tensor, Tensor] | None = None
        self._uniform: tuple[float, np.ndarray, np.ndarray, np.ndarray] | None = None

    # -- the semi-discrete operator -----------------------------------------------------------

    def _bands(self) -> tuple[Tensor, Tensor, Tensor]:
        """(lower, diagonal, upper) of A: lower[i] = A[i+1, i], upper[i] = A[i, i+1]."""
        forward = self._scale * _grid.bernoulli(self._jumps)  # rate of mass from cell i to i + 1
        backward = self._scale * _grid.bernoulli(-self._jumps)  # from cell i + 1 to i
        diagonal = torch.zeros(self.n, dtype=_grid.DTYPE)
        diagonal[:-1] -= forward
        diagonal[1:] -= backward
        return forward, diagonal, backward

    def generator(self) -> Tensor:
        """The tridiagonal generator A ``(n, n)`` of dp/dt = A p (dense, float64).

        Off-diagonal entries are >= 0, every column sums to 0, and A @ gibbs = 0 to rounding.
        """
        lower, diagonal, upper = self._bands()
        return torch.diag(diagonal) + torch.diag(lower, -1) + torch.diag(upper, 1)

    def _eigh(self) -> tuple[Tensor, Tensor]:
        if self._spectrum is None:
            _, diagonal, _ = self._bands()
            off = self._scale * _grid.symmetric_weight(self._jumps)
            # The symmetrized generator is tridiagonal: LAPACK's tridiagonal solver (through scipy;
            # torch has none) is about 2.5x faster than a dense eigh at n = 1024.
            values, vectors = scipy.linalg.eigh_tridiagonal(
                diagonal.numpy(), off.numpy(), lapack_driver="stemr"
            )
            values, vectors = torch.from_numpy(values), torch.from_numpy(vectors)
            # The top eigenpair is known exactly: lambda = 0 with eigenvector sqrt(g) (the
            # Gibbs state). Setting it exactly makes the t -> infinity limit exactly gibbs.
            root = self.gibbs.sqrt()
            root = root / root.norm()
            sign = 1.0 if float(vectors[:, -1] @ root) >= 0 else -1.0
            values = values.clone()
            values[-1] = 0.0
            vectors = vectors.clone()
            vectors[:, -1] = sign * root
            self._spectrum = (values, vectors)
        return self._spectrum

    def spectral_gap(self) -> float:
        """-lambda_2 > 0, the smallest non-zero decay rate of the discretized generator.

        chi^2(p_t || g) and 2 KL(p_t || g) decay like exp(-2 gap t) as t -> infinity.
        """
        values, _ = self._eigh()
        return -float(values[-2])

    # -- solving -------------------------------------------------------------------------------

    def solve(
        self,
        p0: Any,
        times: Any,
        *,
        method: str = "exponential",
        max_step: float = 1e-2,
        progress: bool = True,
    ) -> FokkerPlanckSolution:
        """Densities at ``times`` ``(T,)`` from the initial density values ``p0`` ``(n,)``.

        ``p0`` must be finite, >= 0 with positive mass; it is normalized to sum(p0) dx = 1.
        ``times`` must be finite, >= 0 and sorted. ``method="exponential"`` (default) is exact
        in time (uniformization while p0 sits far up the walls, then the cached
        eigendecomposition; module docstring); cells far in the tails where the density is below
        ~1e-16 sqrt(g_i) hold rounding noise, which is clipped at 0 (the mass, changed by as
        little, is renormalized). ``method="implicit"`` takes implicit Euler steps of at most
        ``max_step`` (each output interval split into equal steps): first order in time, p >= 0
        and mass conserved by construction for any step size; ``progress`` shows a tqdm bar
        for it.
        """
        if method not in _METHODS:
            raise ValueError(f"method must be one of {_METHODS}, got {method!r}")
        max_step = _grid.check_max_step(max_step)
        start = _grid.check_density(p0, (self.n,), self.dx)
        times = _grid.check_times(times)
        if method == "exponential":
            p = self._solve_exponential(start, times)
        else:
            p = self._solve_implicit(start, times, max_step, progress)
        return FokkerPlanckSolution(
            x=self.x, dx=self.dx, times=times, p=p, gibbs=self.gibbs, beta=self.beta, method=method
        )

    def _eigen_error(self, p: Tensor) -> float:
        """The rounding error to expect from the eigenbasis for the density ``p``, relative to max(p).

        The eigenvectors come with absolute errors ~eps, so the coefficients U^T (p / sqrt(g)) carry
        errors ~eps ||p / sqrt(g)||, which G^{1/2} U maps back to at most ~eps ||p / sqrt(g)|| max sqrt(g).
        Measured on double wells this bound exceeds the actual error by about 100x.
        """
        spread = float((p / self.gibbs.sqrt()).norm()) * float(self.gibbs.max().sqrt())
        return _EPS * spread / float(p.max())

    def _uniformization(self) -> tuple[float, np.ndarray, np.ndarray, np.ndarray]:
        """(rate, diagonal, lower, upper) of the uniformized chain P = I + A / rate >= 0."""
        lower, diagonal, upper = self._bands()
        rate = float(-diagonal.min())
        return rate, (1.0 + diagonal / rate).numpy(), (lower / rate).numpy(), (upper / rate).numpy()

    def _advance_uniformized(self, p: np.ndarray, duration: float) -> np.ndarray:
        """exp(duration A) p = sum_k Poisson(k; rate duration) P^k p, every term >= 0 (Jensen 1953).

        No cancellation: each cell's value is accurate to a relative rounding error, however
        small it is. Used in chunks of rate * duration <= 64 so e^{-64} never underflows; the
        Poisson tail beyond x + 10 sqrt(x) + 25 terms is below 1e-17.
        """
        rate, diagonal, lower, upper = self._uniform
        x = rate * duration
        weight = math.exp(-x)
        term = p
        total = weight * term
        for k in range(1, math.ceil(x + 10.0 * math.sqrt(x) + 25.0) + 1):
            following = diagonal * term
            following[1:] += lower * term[:-1]
            following[:-1] += upper * term[1:]
            term = following
            weight *= x / k
            total += weight * term
        return total

    def _solve_exponential(self, start: Tensor, times: Tensor) -> Tensor:
        out = torch.empty(times.shape[0], self.n, dtype=_grid.DTYPE)
        current, now, index = start, 0.0, 0
        if self._eigen_error(current) > _EIGEN_TOLERANCE:
            # p0 puts mass where the Gibbs density is tiny: run the exact uniformized series until
            # the drift has emptied those cells enough for the eigenbasis to be accurate.
            if self._uniform is None:
                self._uniform = self._uniformization()
            chunk = _UNIFORM_CHUNK / self._uniform[0]
            state = current.numpy().copy()
            while index < times.shape[0] and self._eigen_error(torch.from_numpy(state)) > _EIGEN_TOLERANCE:
                target = min(float(times[index]), now + chunk)
                if target > now:
                    state = self._advance_uniformized(state, target - now)
                    state /= state.sum() * self.dx  # the truncated Poisson tail, < 1e-17 per chunk
                    now = target
                while index < times.shape[0] and float(times[index]) <= now:
                    out[index] = torch.from_numpy(state)
                    index += 1
            current = torch.from_numpy(state)
        while index < times.shape[0] and float(times[index]) <= now:
            out[index] = current  # exactly the start (t = 0), not its reconstruction from the eigenbasis
            index += 1
        if index < times.shape[0]:
            values, vectors = self._eigh()
            root = self.gibbs.sqrt()
            coefficients = vectors.T @ (current / root)  # (n,)
            # exp(t lambda) <= 1; (T, n) @ (n, n) evaluates every remaining time at once.
            decay = torch.exp((times[index:, None] - now) * values[None, :])
            out[index:] = ((decay * coefficients) @ vectors.T) * root
        # Rounding can leave values of size ~eps * sqrt(g_i) of either sign where the density is
        # below that; those are clipped at 0 and the mass (changed by as little) renormalized.
        out = out.clamp_min(0.0)
        return out / (out.sum(-1, keepdim=True) * self.dx)

    def _solve_implicit(self, start: Tensor, times: Tensor, max_step: float, progress: bool) -> Tensor:
        lower, diagonal, upper = (band.numpy() for band in self._bands())
        solver = _TridiagonalImplicitEuler(lower, diagonal, upper)
        plan = _grid.substeps(times, max_step)
        current = start.numpy().copy()
        out = np.empty((times.shape[0], self.n))
        with progress_bar(sum(count for count, _ in plan), "Fokker-Planck (implicit Euler)", progress) as bar:
            for k, (count, step) in enumerate(plan):
                for _ in range(count):
                    current = solver.step(current, step)
                bar.update(count)
                out[k] = current
        return torch.from_numpy(out)


class _TridiagonalImplicitEuler:
    """Solves (I - dt A) p_new = p_old for a tridiagonal A, with the banded LAPACK solver.

    scipy rather than torch: torch has no banded or sparse direct solver. I - dt A is column
    diagonally dominant with non-positive off-diagonals, so partial pivoting never swaps rows and
    Gaussian elimination only adds non-negative terms: p_new >= 0 holds in floating point too.
    The LU costs O(n) per solve, so it is simply redone at each step.
    """

    def __init__(self, lower: np.ndarray, diagonal: np.ndarray, upper: np.ndarray) -> None:
        self.lower, self.diagonal, self.upper = lower, diagonal, upper
        self._banded: dict[float, np.ndarray] = {}

    def banded(self, step: float) -> np.ndarray:
        matrix = self._banded.get(step)
        if matrix is None:
            n = self.diagonal.shape[0]
            matrix = np.zeros((3, n))
            matrix[0, 1:] = -step * self.upper
            matrix[1] = 1.0 - step * self.diagonal
            matrix[2, :-1] = -step * self.lower
            self._banded = {step: matrix}  # outputs at even spacing reuse one step size
        return matrix

    def step(self, p: np.ndarray, step: float) -> np.ndarray:
        return scipy.linalg.solve_banded(
            (1, 1), self.banded(step), p, overwrite_b=False, check_finite=False
        )
