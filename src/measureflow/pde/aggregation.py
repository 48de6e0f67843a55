r"""The aggregation-diffusion equation on a 1-D grid: a Wasserstein gradient flow with interaction.

.. math::
    \partial_t \mu = \partial_x\Big(\mu\, \partial_x \big(V + W * \mu + \tfrac{1}{\beta} \log \mu\big)\Big),
    \qquad
    F[\mu] = \int V \mu + \frac12 \iint W(x - y)\, \mu(dx)\, \mu(dy) + \frac{1}{\beta} \int \mu \log \mu,

on [lo, hi] with no-flux boundaries (W even), the gradient flow of the free energy F; with W = 0
it is the Fokker-Planck equation of ``FokkerPlanck1D`` with L = V.

Scheme (semi-implicit Scharfetter-Gummel). On n cells (spacing h, centres x_i) the discrete free
energy is F_h(p) = h sum_i V_i p_i + (h^2 / 2) sum_ij W(x_i - x_j) p_i p_j + (h / beta) sum_i p_i log p_i.
A step of size dt freezes the potential Phi^k = V + W * p^k (the convolution a grid sum,
(W * p)_i = h sum_j W(x_i - x_j) p_j, evaluated by FFT) and takes one implicit Euler step of the
linear Fokker-Planck equation with energy Phi^k and Scharfetter-Gummel fluxes:
(I - dt A[Phi^k]) p^{k+1} = p^k. So every step is positive and conserves the mass exactly (an
M-matrix with zero column sums, see ``fokker_planck``).

Dissipation. Let g^k be the discrete Gibbs density of Phi^k and G^k(p) = h sum Phi^k_i p_i +
(h / beta) sum p_i log p_i = KL(p || g^k) / beta + const. (I - dt A)^{-1} is a Markov kernel (on cell
masses) leaving g^k invariant, so the data-processing inequality gives G^k(p^{k+1}) <= G^k(p^k);
convexity of KL sharpens it to G^k(p^{k+1}) - G^k(p^k) <= -(dt / beta) I_h(p^{k+1}) (the discrete
Fisher information of p^{k+1} against g^k). Expanding the quadratic interaction term,

.. math::
    F_h(p^{k+1}) - F_h(p^k) = G^k(p^{k+1}) - G^k(p^k) + \frac{h^2}{2} \delta^T \mathcal{W} \delta,
    \qquad \delta = p^{k+1} - p^k = dt\, A p^{k+1},

so F_h decreases unconditionally when the matrix W(x_i - x_j) is negative semi-definite
(e.g. W = -exp(-z^2 / 2)), and otherwise as soon as dt is small enough for the O(dt) decrease to
beat the O(dt^2) term. The solver checks F_h after every step and replaces a step that would raise
F_h (beyond its rounding error) by two steps of half the size, recursively: the discrete F_h is
non-increasing at every accepted step, by construction.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import scipy.linalg
import torch
from torch import Tensor

from measureflow._core import new_figure, progress_bar, save_figure
from measureflow.pde import _grid

__all__ = ["AggregationDiffusion1D", "AggregationDiffusionSolution"]

# A rejected step is halved at most this many times (a step 2^-40 of max_step) before giving up.
_MAX_HALVINGS = 40
_EPS = float(np.finfo(np.float64).eps)


def _kernel_spectrum(kernel: np.ndarray, n: int) -> np.ndarray:
    """rfft of the circulant embedding of the kernel values W(k h), k = -(n-1)..(n-1) ``(2n - 1,)``."""
    circulant = np.zeros(2 * n)
    circulant[:n] = kernel[n - 1 :]  # W(0), W(h), ..., W((n-1) h)
    circulant[n + 1 :] = kernel[: n - 1]  # W(-(n-1) h), ..., W(-h)
    return np.fft.rfft(circulant)


def _convolve(spectrum: np.ndarray, p: np.ndarray, dx: float) -> np.ndarray:
    """(W * p)_i = dx sum_j W(x_i - x_j) p_j for ``p`` ``(..., n)``, by FFT (O(n log n))."""
    n = p.shape[-1]
    return np.fft.irfft(spectrum * np.fft.rfft(p, 2 * n), 2 * n)[..., :n] * dx


def _free_energy(
    p: np.ndarray, potential: np.ndarray, spectrum: np.ndarray, dx: float, beta: float
) -> np.ndarray:
    entropy = np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0)
    interaction = 0.5 * (p * _convolve(spectrum, p, dx)).sum(-1)
    return dx * ((potential * p).sum(-1) + entropy.sum(-1) / beta) + dx * interaction


@dataclass(frozen=True, eq=False)
class AggregationDiffusionSolution:
    """A grid solution of the aggregation-diffusion equation.

    Fields: ``x`` ``(n,)``, ``dx``, ``times`` ``(T,)``, ``p`` ``(T, n)`` densities, ``beta``,
    ``potential`` V(x_i) ``(n,)``, ``interaction`` the kernel values W(k dx) for
    k = -(n-1)..(n-1) ``(2n - 1,)``, ``n_steps`` accepted steps, ``n_rejected`` steps halved
    because they would have raised the free energy.
    """

    x: Tensor
    dx: float
    times: Tensor
    p: Tensor
    beta: float
    potential: Tensor
    interaction: Tensor
    n_steps: int
    n_rejected: int

    def mass(self) -> Tensor:
        """sum(p_t) dx, ``(T,)``."""
        return self.p.sum(-1) * self.dx

    def free_energy(self) -> Tensor:
        """F_h(p_t) = dx sum V p + (dx^2 / 2) sum_ij W(x_i - x_j) p_i p_j + (dx / beta) sum p log p,
        ``(T,)``."""
        n = self.x.shape[0]
        spectrum = _kernel_spectrum(self.interaction.numpy(), n)
        values = _free_energy(self.p.numpy(), self.potential.numpy(), spectrum, self.dx, self.beta)
        return torch.from_numpy(values)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe fields and the free-energy and mass curves."""
        return {
            "x": self.x.tolist(),
            "dx": self.dx,
            "beta": self.beta,
            "times": self.times.tolist(),
            "p": self.p.tolist(),
            "free_energy": self.free_energy().tolist(),
            "mass": self.mass().tolist(),
            "n_steps": self.n_steps,
            "n_rejected": self.n_rejected,
        }

    def figure(self, path: str | Path, n_panels: int = 4) -> str:
        """Small multiples of p_t and the free-energy curve, written atomically as a PNG."""
        indices = _grid.pick_indices(self.times.shape[0], max(1, int(n_panels)))
        with_curve = self.times.shape[0] > 1
        figure, axes = new_figure(len(indices) + int(with_curve), 1, width=3.6, height=3.0)
        top = 1.05 * float(self.p[indices].max())
        for axis, k in zip(axes[0], indices, strict=False):
            axis.plot(self.x.numpy(), self.p[k].numpy(), color="tab:blue", linewidth=1.3)
            axis.set_ylim(0, top)
            axis.set_title(f"t = {float(self.times[k]):.3g}")
            axis.set_xlabel("x")
        axes[0, 0].set_ylabel("density")
        if with_curve:
            axis = axes[0, -1]
            axis.plot(self.times.numpy(), self.free_energy().numpy(), "k.-", linewidth=1.2)
            axis.set_xlabel("t")
            axis.set_title("free energy F[p_t]")
        figure.suptitle(f"aggregation-diffusion (beta = {self.beta:g})")
        return save_figure(figure, path)


class AggregationDiffusion1D:
    r"""d_t mu = d_x(mu d_x(V + W * mu + (1/beta) log mu)) on n cells of [lo, hi], no flux.

    ``potential`` V and ``interaction`` W: measureflow ``Target``s of dimension 1 or callables
    ``(m, 1) -> (m,)`` (``None`` for zero); W is a function of the difference x - y and must be
    even (checked on the grid's differences k dx, |k| < n). Both are evaluated once in float64.
    See the module docstring for the scheme and why the discrete free energy never increases.

    >>> import torch
    >>> from measureflow.pde import AggregationDiffusion1D
    >>> potential = lambda x: ((x**2 - 1) ** 2).sum(-1)
    >>> interaction = lambda z: 0.5 * (z**2).sum(-1)
    >>> flow = AggregationDiffusion1D(potential, interaction, beta=2.0, lo=-3.0, hi=3.0, n=120)
    >>> p0 = torch.exp(-((flow.x - 1.5) / 0.3) ** 2)
    >>> sol = flow.solve(p0, [0.0, 0.5, 1.0, 2.0], max_step=0.05, progress=False)
    >>> F = sol.free_energy()
    >>> bool((F.diff() <= 0).all()), round(float(sol.mass()[-1]), 12), bool((sol.p >= 0).all())
    (True, 1.0, True)
    """

    def __init__(self, potential: Any, interaction: Any, beta: float, lo: float, hi: float, n: int) -> None:
        self.beta = _grid.check_beta(beta)
        self.lo, self.hi = _grid.check_interval(lo, hi)
        self.n = _grid.check_cells(n)
        self.x, self.dx = _grid.cell_centres(self.lo, self.hi, self.n)
        if potential is None:
            self.potential = torch.zeros(self.n, dtype=_grid.DTYPE)
        else:
            self.potential = _grid.evaluate_energy(potential, self.x[:, None], "potential")
        offsets = torch.arange(-(self.n - 1), self.n, dtype=_grid.DTYPE) * self.dx
        if interaction is None:
            self.interaction = torch.zeros(2 * self.n - 1, dtype=_grid.DTYPE)
        else:
            kernel = _grid.evaluate_energy(interaction, offsets[:, None], "interaction")
            mirrored = kernel.flip(0)
            asymmetry = float((kernel - mirrored).abs().max())
            scale = max(1.0, float(kernel.abs().max()))
            if asymmetry > 1e-10 * scale:
                k = int((kernel - mirrored).abs().argmax())
                raise ValueError(
                    "interaction must be an even function W(z) = W(-z) of the difference z = x - y: "
                    f"W({float(offsets[k]):.4g}) = {float(kernel[k]):.6g} but W({float(-offsets[k]):.4g}) = "
                    f"{float(mirrored[k]):.6g}"
                )
            self.interaction = 0.5 * (kernel + mirrored)  # exactly even: W(x_i - x_j) symmetric
        _grid.check_energy_range(self.potential, self.beta, "potential")
        self._spectrum = _kernel_spectrum(self.interaction.numpy(), self.n)

    def _free_energy(self, p: np.ndarray) -> float:
        return float(_free_energy(p, self.potential.numpy(), self._spectrum, self.dx, self.beta))

    def _rounding(self, p: np.ndarray) -> float:
        """A generous bound on the rounding error of F_h(p): the sums of absolute terms times 1e3 eps."""
        log_p = np.log(np.where(p > 0, p, 1.0))
        absolute = self.dx * (np.abs(self.potential.numpy()) * p + np.abs(log_p) * p / self.beta).sum()
        return 1e3 * _EPS * (absolute + float(np.abs(self.interaction.numpy()).max()) + 1.0)

    def _implicit_step(self, p: np.ndarray, step: float) -> np.ndarray:
        frozen = self.potential.numpy() + _convolve(self._spectrum, p, self.dx)
        jumps = torch.from_numpy(self.beta * np.diff(frozen))
        scale = 1.0 / (self.beta * self.dx**2)
        forward = scale * _grid.bernoulli(jumps).numpy()
        backward = scale * _grid.bernoulli(-jumps).numpy()
        banded = np.zeros((3, self.n))
        banded[0, 1:] = -step * backward
        banded[1] = 1.0
        banded[1, :-1] += step * forward
        banded[1, 1:] += step * backward
        banded[2, :-1] = -step * forward
        # The banded LAPACK solver (scipy: torch has none); column diagonal dominance means no
        # row swaps and a non-negative solution, as in FokkerPlanck1D's implicit method.
        return scipy.linalg.solve_banded((1, 1), banded, p, check_finite=False)

    def _advance(
        self, p: np.ndarray, energy: float, step: float, depth: int, counts: list[int]
    ) -> tuple[np.ndarray, float]:
        proposal = self._implicit_step(p, step)
        proposal_energy = self._free_energy(proposal)
        if proposal_energy <= energy + self._rounding(p):
            counts[0] += 1
            return proposal, proposal_energy
        if depth >= _MAX_HALVINGS:
            raise RuntimeError(
                f"the free energy rose ({energy:.17g} -> {proposal_energy:.17g}) even after halving the step "
                f"{_MAX_HALVINGS} times (to {step:.3g}); the interaction is too stiff for this grid"
            )
        counts[1] += 1
        half = 0.5 * step
        p, energy = self._advance(p, energy, half, depth + 1, counts)
        return self._advance(p, energy, half, depth + 1, counts)

    def solve(
        self, p0: Any, times: Any, *, max_step: float = 1e-2, progress: bool = True
    ) -> AggregationDiffusionSolution:
        """Densities at ``times`` ``(T,)`` from density values ``p0`` ``(n,)`` (normalized).

        Semi-implicit steps of at most ``max_step`` (each output interval split into equal steps,
        as in ``FokkerPlanck1D.solve(method="implicit")``), each halved recursively if it would
        raise the discrete free energy. First order in time.
        """
        max_step = _grid.check_max_step(max_step)
        start = _grid.check_density(p0, (self.n,), self.dx)
        times = _grid.check_times(times)
        plan = _grid.substeps(times, max_step)
        current = start.numpy().copy()
        energy = self._free_energy(current)
        counts = [0, 0]  # accepted, rejected
        out = np.empty((times.shape[0], self.n))
        with progress_bar(sum(count for count, _ in plan), "aggregation-diffusion", progress) as bar:
            for k, (count, step) in enumerate(plan):
                for _ in range(count):
                    current, energy = self._advance(current, energy, step, 0, counts)
                bar.update(count)
                out[k] = current
        return AggregationDiffusionSolution(
            x=self.x, dx=self.dx, times=times, p=torch.from_numpy(out), beta=self.beta,
            potential=self.potential, interaction=self.interaction, n_steps=counts[0], n_rejected=counts[1],
        )
