r"""Losses on function spaces, for Langevin dynamics in a Hilbert space (``"infinite-langevin"``).

Two models of the text (seed 001, infinite-dimensional Langevin dynamics), both finite sums over
the n data points so that minibatch (SGLD) gradients apply:

- :class:`HilbertRegression`: the function g = sum_{k<K} x_k f_k in an orthonormal basis (f_k)
  of L2 on an interval (sines) or on the circle (Fourier modes), and the loss
  L(x) = c sum_i l(y_i, g(t_i)), c = 1/n by default, l the squared loss (y - g)^2 / 2 or the logistic
  loss log(1 + exp(-y g)). With the RKHS penalty (lam / 2) sum_k x_k^2 / mu_k of the sampler the
  squared-loss Gibbs measure is a Gaussian-process posterior, in closed form
  (:meth:`HilbertRegression.gaussian_posterior`).
- :class:`InfiniteWidthNetwork`: f_W(x) = sum_{j<K} a_j sigma(w_j . x) with fixed outer weights
  a_j = s_j (j + 1)^-gamma (signs s_j alternating, gamma > 1/2 so that sum a_j^2 < infinity) and a
  smooth sigma; the state is W flattened ``(K d,)`` and the loss the same finite sum.
  :meth:`InfiniteWidthNetwork.eigenvalues` repeats a per-neuron decay over the d coordinates of
  each w_j, the eigenvalues the sampler's RKHS penalty wants.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from measureflow._core import check_count, check_positive
from measureflow.targets.base import FiniteSumTarget, as_buffer, common_dtype

__all__ = ["BASES", "FUNCTION_LOSSES", "GaussianPosterior", "HilbertRegression", "InfiniteWidthNetwork",
           "basis_functions", "function_values"]

BASES = ("sine", "fourier")
FUNCTION_LOSSES = ("squared", "logistic")


def basis_functions(t: Tensor, n_modes: int, basis: str = "sine") -> Tensor:
    r"""The first K = ``n_modes`` orthonormal basis functions at the points ``t`` ``(n,)``: ``(n, K)``.

    ``"sine"``: f_k(t) = sqrt(2) sin(pi (k + 1) t), orthonormal in L2[0, 1] (the eigenfunctions of
    -d^2/dt^2 with zero boundary values). ``"fourier"``: on the circle t in [0, 2 pi) with the
    uniform law, f_0 = 1, f_{2j-1} = sqrt(2) cos(j t), f_{2j} = sqrt(2) sin(j t).

    >>> basis_functions(torch.tensor([0.25]), 2).round(decimals=4)  # sqrt(2) sin(pi / 4), sqrt(2) sin(pi / 2)
    tensor([[1.0000, 1.4142]])
    """
    if basis not in BASES:
        raise ValueError(f"basis must be one of {', '.join(BASES)}, got {basis!r}")
    n_modes = check_count(n_modes, "n_modes")
    k = torch.arange(n_modes, dtype=t.dtype, device=t.device)
    if basis == "sine":
        return math.sqrt(2) * torch.sin(math.pi * (k + 1) * t[:, None])
    frequency = torch.div(k + 1, 2, rounding_mode="floor")
    # odd k: cosine; even k >= 2: sine (the phase in t's dtype: a float32 pi / 2 costs 4e-8)
    phase = torch.where(k % 2 == 1, torch.zeros_like(k), torch.full_like(k, -math.pi / 2))
    values = math.sqrt(2) * torch.cos(frequency * t[:, None] + phase)
    values[:, 0] = 1.0
    return values


def _loss_parts(loss: str, labels: Tensor, outputs: Tensor) -> tuple[Tensor, Tensor]:
    """l(y, g) and dl/dg for the named loss, elementwise."""
    if loss == "squared":
        residual = outputs - labels
        return 0.5 * residual.square(), residual
    margin = labels * outputs
    return F.softplus(-margin), -labels * torch.sigmoid(-margin)


def _check_labels(loss: str, labels: Tensor) -> None:
    if loss not in FUNCTION_LOSSES:
        raise ValueError(f"loss must be one of {', '.join(FUNCTION_LOSSES)}, got {loss!r}")
    if not bool(torch.isfinite(labels).all()):
        raise ValueError("y must be finite (no NaN or inf)")
    if loss == "logistic" and not bool(((labels == 1) | (labels == -1)).all()):
        raise ValueError("the logistic loss needs labels y = +1 or -1")


def _data(inputs: Any, labels: Any, name: str, rank: int, loss: str) -> tuple[Tensor, Tensor, torch.dtype]:
    """The inputs (rank 1 or 2) and labels as buffers of one dtype, checked: same n >= 1, finite."""
    dtype = common_dtype(inputs, labels)
    points = as_buffer(inputs, name, rank, dtype)
    targets = as_buffer(labels, "y", 1, dtype).to(points.device)
    if targets.shape[0] != points.shape[0] or points.shape[0] == 0:
        raise ValueError(f"{name} and y must hold the same number n >= 1 of points, got {points.shape[0]} "
                         f"and {targets.shape[0]}")
    if not bool(torch.isfinite(points).all()):
        raise ValueError(f"{name} must be finite (no NaN or inf)")
    _check_labels(loss, targets)
    return points, targets, dtype


class GaussianPosterior:
    """N(mean, covariance) over the K coefficients: ``mean`` ``(K,)``, ``covariance`` ``(K, K)``."""

    def __init__(self, mean: Tensor, covariance: Tensor) -> None:
        self.mean = mean
        self.covariance = covariance

    @property
    def variances(self) -> Tensor:
        return torch.diagonal(self.covariance)


class HilbertRegression(FiniteSumTarget):
    r"""L(x) = c sum_i l(y_i, <x, phi(t_i)>) for x ``(K,)``, phi(t) = (f_k(t))_{k<K}
    (:func:`basis_functions`).

    ``t`` ``(n,)`` the inputs (in [0, 1] for ``"sine"``, angles for ``"fourier"``), ``y`` ``(n,)``,
    ``loss`` "squared" or "logistic" (labels +-1), ``scale`` c (default 1/n, the empirical risk;
    1 / sigma^2 gives the Gaussian likelihood of noise variance sigma^2). No prior term: the
    RKHS penalty is the sampler's (``lam``, ``mu``). Gradients are analytic:
    grad L(x) = c sum_i l'(y_i, g_i) phi(t_i).
    """

    name = "hilbert-regression"

    def __init__(self, t: Any, y: Any, n_modes: int, *, basis: str = "sine", loss: str = "squared",
                 scale: float | None = None) -> None:
        inputs, labels, dtype = _data(t, y, "t", 1, loss)
        features = basis_functions(inputs, n_modes, basis)
        super().__init__(n_modes)
        self._anchor = self._anchor.to(device=inputs.device, dtype=dtype)
        self.basis, self.loss = basis, loss
        self.n_terms = inputs.shape[0]
        self.scale = 1 / self.n_terms if scale is None else check_positive(scale, "scale")
        self.register_buffer("t", inputs)
        self.register_buffer("y", labels)
        self.register_buffer("features", features)  # (n, K)

    def functions(self, x: Tensor, t: Tensor) -> Tensor:
        """The functions g_x(t) = sum_k x_k f_k(t) of coefficient vectors x ``(m, K)`` at t ``(p,)``:
        ``(m, p)``."""
        return self._as_input(x) @ basis_functions(t.to(x), self.dim, self.basis).T

    def prior_energy(self, x: Tensor) -> Tensor:
        return x.new_zeros(x.shape[0])

    def data_energy(self, x: Tensor, index: Tensor) -> Tensor:
        features = self.features[index]  # (m, b, K)
        outputs = torch.einsum("mbk,mk->mb", features, self._as_input(x))
        return self.scale * _loss_parts(self.loss, self.y[index], outputs)[0]

    def energy_and_grad(self, x: Tensor) -> tuple[Tensor, Tensor]:
        outputs = self._as_input(x) @ self.features.T  # (m, n)
        values, slopes = _loss_parts(self.loss, self.y, outputs)
        return self.scale * values.sum(-1), self.scale * slopes @ self.features

    def energy(self, x: Tensor) -> Tensor:
        return self.energy_and_grad(x)[0]

    def grad_energy(self, x: Tensor) -> Tensor:
        return self.energy_and_grad(x)[1]

    def minibatch_grad_energy(self, x: Tensor, index: Tensor) -> Tensor:
        features = self.features[index]  # (m, b, K)
        outputs = torch.einsum("mbk,mk->mb", features, self._as_input(x))
        slopes = _loss_parts(self.loss, self.y[index], outputs)[1]
        return (self.n_terms / index.shape[-1]) * self.scale * torch.einsum("mb,mbk->mk", slopes, features)

    def gaussian_posterior(self, lam: float, mu: Tensor, beta: float = 1.0) -> GaussianPosterior:
        r"""The Gibbs measure exp(-beta (L(x) + (lam / 2) sum_k x_k^2 / mu_k)) for the squared loss.

        It is Gaussian with precision P = beta (c Phi^T Phi + lam diag(1 / mu)) and mean
        m = P^-1 beta c Phi^T y (Phi the (n, K) feature matrix): the posterior of a Gaussian
        process with covariance kernel sum_k (mu_k / (beta lam)) f_k(t) f_k(t') given the data.
        """
        if self.loss != "squared":
            raise ValueError("the posterior is Gaussian only for the squared loss")
        lam = check_positive(lam, "lam")
        beta = check_positive(beta, "beta")
        mu = torch.as_tensor(mu).to(self.features)
        if mu.shape != (self.dim,) or not bool((mu > 0).all()):
            raise ValueError(f"mu must hold {self.dim} positive eigenvalues")
        precision = beta * (self.scale * self.features.T @ self.features + torch.diag(lam / mu))
        covariance = torch.linalg.inv(precision)
        covariance = 0.5 * (covariance + covariance.T)
        mean = covariance @ (beta * self.scale * self.features.T @ self.y)
        return GaussianPosterior(mean, covariance)


class InfiniteWidthNetwork(FiniteSumTarget):
    r"""L(W) = c sum_i l(y_i, f_W(x_i)), f_W(x) = sum_{j<K} a_j sigma(w_j . x), a_j = (-1)^j (j + 1)^-gamma.

    ``x`` ``(n, d)``, ``y`` ``(n,)``, ``n_neurons`` K (the truncation of the infinite width),
    ``gamma`` > 1/2, ``activation`` "tanh" (default) or "sigmoid" (smooth, as the analysis
    needs). The state is W flattened row by row, ``(K d,)``. Gradients are analytic:
    dL/dw_j = c sum_i l'(y_i, f_i) a_j sigma'(w_j . x_i) x_i.
    """

    name = "infinite-width-network"

    def __init__(self, x: Any, y: Any, n_neurons: int, *, gamma: float = 1.0, activation: str = "tanh",
                 loss: str = "squared", scale: float | None = None) -> None:
        inputs, labels, dtype = _data(x, y, "x", 2, loss)
        n_neurons = check_count(n_neurons, "n_neurons")
        gamma = check_positive(gamma, "gamma")
        if gamma <= 0.5:
            raise ValueError(f"gamma must exceed 1/2 (so that sum_j a_j^2 is finite), got {gamma}")
        if activation not in ("tanh", "sigmoid"):
            raise ValueError(f"activation must be 'tanh' or 'sigmoid', got {activation!r}")
        super().__init__(n_neurons * inputs.shape[1])
        self._anchor = self._anchor.to(device=inputs.device, dtype=dtype)
        self.n_neurons, self.input_dim = n_neurons, inputs.shape[1]
        self.gamma, self.activation, self.loss = gamma, activation, loss
        self.n_terms = inputs.shape[0]
        self.scale = 1 / self.n_terms if scale is None else check_positive(scale, "scale")
        j = torch.arange(n_neurons, dtype=dtype, device=inputs.device)
        signs = 1 - 2 * (j % 2)
        self.register_buffer("x", inputs)
        self.register_buffer("y", labels)
        self.register_buffer("outer", signs * (j + 1).pow(-gamma))  # a_j

    def eigenvalues(self, decay: float) -> Tensor:
        """mu for the sampler: (j + 1)^-decay for every coordinate of w_j, ``(K d,)``."""
        decay = check_positive(decay, "decay")
        per_neuron = torch.arange(1, self.n_neurons + 1, dtype=self.dtype, device=self.device).pow(-decay)
        return per_neuron.repeat_interleave(self.input_dim)

    def _sigma(self, pre: Tensor) -> tuple[Tensor, Tensor]:
        if self.activation == "tanh":
            value = torch.tanh(pre)
            return value, 1 - value.square()
        value = torch.sigmoid(pre)
        return value, value * (1 - value)

    def outputs(self, w: Tensor, x: Tensor) -> Tensor:
        """f_W(x) for states ``(m, K d)`` at inputs ``(p, d)``: ``(m, p)``."""
        weights = self._as_input(w).reshape(w.shape[0], self.n_neurons, self.input_dim)
        values, _ = self._sigma(torch.einsum("mkd,pd->mpk", weights, x.to(w)))
        return values @ self.outer

    def _parts(self, w: Tensor, inputs: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
        """Loss values ``(m, b)`` and gradient ``(m, K d)`` on the rows ``inputs``: ``(b, d)`` shared by
        every state (the full data: plain matrix products) or ``(m, b, d)`` (a minibatch per state)."""
        weights = self._as_input(w).reshape(w.shape[0], self.n_neurons, self.input_dim)
        if inputs.ndim == 2:
            pre = (weights.reshape(-1, self.input_dim) @ inputs.T).reshape(w.shape[0], self.n_neurons, -1)
            pre = pre.transpose(1, 2)  # (m, b, K)
        else:
            pre = torch.einsum("mkd,mbd->mbk", weights, inputs)
        values, slopes = self._sigma(pre)
        outputs = values @ self.outer
        losses, derivative = _loss_parts(self.loss, labels, outputs)
        coefficient = derivative[:, :, None] * slopes * self.outer  # (m, b, K)
        if inputs.ndim == 2:
            gradient = coefficient.transpose(1, 2) @ inputs  # (m, K, d)
        else:
            gradient = torch.einsum("mbk,mbd->mkd", coefficient, inputs)
        return losses, gradient.reshape(w.shape[0], -1)

    def prior_energy(self, x: Tensor) -> Tensor:
        return x.new_zeros(x.shape[0])

    def data_energy(self, x: Tensor, index: Tensor) -> Tensor:
        return self.scale * self._parts(x, self.x[index], self.y[index])[0]

    def energy_and_grad(self, x: Tensor) -> tuple[Tensor, Tensor]:
        losses, gradient = self._parts(x, self.x, self.y)
        return self.scale * losses.sum(-1), self.scale * gradient

    def energy(self, x: Tensor) -> Tensor:
        return self.energy_and_grad(x)[0]

    def grad_energy(self, x: Tensor) -> Tensor:
        return self.energy_and_grad(x)[1]

    def minibatch_grad_energy(self, x: Tensor, index: Tensor) -> Tensor:
        gradient = self._parts(x, self.x[index], self.y[index])[1]
        return (self.n_terms / index.shape[-1]) * self.scale * gradient


def function_values(target: HilbertRegression | InfiniteWidthNetwork, states: Tensor, n_points: int = 200
                    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    r"""The functions that the states ``(m, dim)`` of a function-space target stand for, on a grid.

    Returns (u ``(p,)``, values ``(m, p)``, u_data ``(n,)``, y ``(n,)``): the abscissa u and the
    data's abscissa. :class:`HilbertRegression`: u = t on [0, 1] (sine basis) or [0, 2 pi)
    (Fourier), values g_x(u). :class:`InfiniteWidthNetwork` with inputs (u, c) (a first coordinate
    and constants, e.g. a bias column): u spans the data's first coordinate, padded by 10%, the
    other coordinates held at the data's mean; values f_W(u, c).
    """
    states = torch.as_tensor(states).to(dtype=target.dtype, device=target.device)
    if isinstance(target, HilbertRegression):
        end = 1.0 if target.basis == "sine" else 2 * math.pi
        grid = torch.linspace(0, end, n_points, dtype=target.dtype, device=target.device)
        return grid, target.functions(states, grid), target.t, target.y
    if isinstance(target, InfiniteWidthNetwork):
        first = target.x[:, 0]
        pad = 0.1 * float(first.max() - first.min()) or 1.0
        grid = torch.linspace(float(first.min()) - pad, float(first.max()) + pad, n_points,
                              dtype=target.dtype, device=target.device)
        inputs = target.x.mean(0).expand(n_points, -1).clone()
        inputs[:, 0] = grid
        return grid, target.outputs(states, inputs), first, target.y
    raise TypeError(f"target must be a HilbertRegression or an InfiniteWidthNetwork, "
                    f"got {type(target).__name__}")
