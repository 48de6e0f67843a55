r"""Margins of two-layer ReLU networks: the F1 max-margin linear program and the implicit bias of GD.

For a ReLU network without bias, f(x) = s(M) sum_j a_j relu(w_j . x), positive homogeneity gives
a_j relu(w_j . x) = a_j ||w_j|| relu(u_j . x) with u_j = w_j / ||w_j|| on the unit sphere, so f is
the integral of relu(u . x) against the signed measure rho = s(M) sum_j a_j ||w_j|| delta_{u_j}
on directions. Its total variation ||rho||_TV = s(M) sum_j |a_j| ||w_j|| bounds the F1 (variation)
norm of f from above. The F1 max-margin problem (Chizat & Bach 2020, the limit of the mean-field
gradient flow on the logistic or exponential loss)

    gamma_F1 = max_{||rho||_TV <= 1} min_i y_i int relu(u . x_i) d rho(u)                  (1)

is a linear program once rho lives on a grid of K directions u_k: with c = c^+ - c^-,

    maximize gamma   s.t.   y_i sum_k c_k relu(u_k . x_i) >= gamma (i <= n),   sum_k (c_k^+ + c_k^-) <= 1,

solved by :func:`f1_max_margin` with scipy's HiGHS. Its dual is min over probability vectors p on
the data of max_u |sum_i p_i y_i relu(u . x_i)| (:func:`f1_dual_bound`, exact over the circle in
2-D): any p gives an upper bound on (1), and the LP's own p brackets gamma_F1 between the grid
value and this bound. On a uniform grid of the circle (d = 2) the nearest grid direction is
within pi / K of any u, and |relu(u . x) - relu(u' . x)| <= ||u - u'|| ||x||, so the grid loses at most
(pi / K) max_i ||x_i||: gamma_grid <= gamma_F1 <= gamma_grid + (pi / K) max_i ||x_i||; nested grids
give nondecreasing values.

The margin a network reaches is measured by :func:`normalized_margin`: min_i y_i f(x_i) divided
by the total variation above (the F1 normalization; <= gamma_F1 for every network), and by the
parameter norm (s(M) / 2) sum_j (a_j^2 + ||w_j||^2), which is >= the TV (AM-GM) with equality for
balanced neurons |a_j| = ||w_j|| — gradient flow conserves a_j^2 - ||w_j||^2, so a network grown
from a small initialization is balanced and both normalizations agree: for 2-homogeneous
neurons the parameter L2 norm *is* the F1 geometry. The kernel (RKHS, "L2") geometry of the lazy
regime is that of the displacement theta - theta_0: the linearized network
f(x) ~ <grad f_0(x), theta - theta_0> is a linear model whose GD on separable data tends to the
max-margin in ||theta - theta_0||, i.e. the hard-margin SVM of the tangent kernel
(:func:`lazy_margin`, :func:`kernel_max_margin`).

:func:`train_margin` runs gradient descent on the exponential loss, optionally with the step
size divided by the risk (GD on log R: a time change of the same gradient flow, whose
normalized margin then converges far faster; Nacson et al. 2019, Lyu & Li 2020).

>>> x = torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
>>> result = f1_max_margin(x, torch.tensor([1.0, -1.0]), n_directions=8)
>>> round(result.margin, 6), result.support.tolist()
(0.5, [0, 2])
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from scipy.optimize import linprog, nnls
from torch import Tensor

from measureflow._core import as_tensor, check_count, check_positive
from measureflow.nets.activations import ReLU, activation
from measureflow.nets.two_layer import TwoLayer

__all__ = [
    "ActiveNeurons",
    "F1MaxMargin",
    "F1NormBounds",
    "KernelMaxMargin",
    "MarginRun",
    "NormalizedMargin",
    "active_neurons",
    "circle_directions",
    "cluster_directions",
    "f1_dual_bound",
    "f1_max_margin",
    "f1_norm_on_data",
    "kernel_max_margin",
    "lazy_margin",
    "normalized_margin",
    "train_margin",
]


def circle_directions(n_directions: int, offset: float = 0.0, *, dtype: torch.dtype = torch.float64,
                      device: torch.device | str | None = None) -> Tensor:
    """The K unit vectors (cos t_k, sin t_k), t_k = offset + 2 pi k / K: ``(K, 2)``.

    >>> circle_directions(4).round(decimals=6).tolist()
    [[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [-0.0, -1.0]]
    """
    n_directions = check_count(n_directions, "n_directions")
    angles = offset + 2 * math.pi * torch.arange(n_directions, dtype=dtype, device=device) / n_directions
    return torch.stack([angles.cos(), angles.sin()], 1)


def _data(x: Any, y: Any) -> tuple[Tensor, Tensor]:
    inputs = as_tensor(x, "x").to(torch.float64)
    if inputs.ndim != 2 or inputs.shape[0] == 0:
        raise ValueError(f"x must have shape (n, d) with n >= 1, got {tuple(inputs.shape)}")
    labels = torch.as_tensor(y).to(dtype=torch.float64, device=inputs.device).reshape(-1)
    if labels.shape[0] != inputs.shape[0]:
        raise ValueError(f"y must have {inputs.shape[0]} entries (one per row of x), got {labels.shape[0]}")
    if not bool(((labels == 1) | (labels == -1)).all()):
        raise ValueError("y must hold labels +1 or -1")
    return inputs, labels


def _grid(x: Tensor, directions: Any, n_directions: int) -> Tensor:
    if directions is None:
        if x.shape[1] != 2:
            raise ValueError(
                f"a default grid of directions exists only for 2-D inputs (x has {x.shape[1]} columns); "
                "pass directions (K, d) of unit vectors"
            )
        return circle_directions(n_directions, device=x.device)
    grid = as_tensor(directions, "directions").to(dtype=torch.float64, device=x.device)
    if grid.ndim != 2 or grid.shape[1] != x.shape[1]:
        raise ValueError(f"directions must have shape (K, {x.shape[1]}), got {tuple(grid.shape)}")
    return grid


@dataclass(frozen=True)
class F1MaxMargin:
    """The solution of the F1 max-margin LP on a grid of directions.

    ``margin``: gamma_grid; ``weights`` ``(K,)``: the signed masses c_k (sum |c_k| = 1 at the
    optimum); ``directions`` ``(K, d)``; ``support``: indices k with |c_k| > 1e-9; ``dual``
    ``(n,)``: the optimal probability vector p on the data (HiGHS's multipliers of the margin
    constraints); p_i > 0 marks the support vectors.
    """

    margin: float
    weights: Tensor
    directions: Tensor
    support: Tensor
    dual: Tensor

    def to_dict(self) -> dict[str, Any]:
        return {"margin": self.margin, "support": self.support.tolist(),
                "support_weights": self.weights[self.support].tolist(),
                "support_directions": self.directions[self.support].tolist(), "dual": self.dual.tolist()}


def f1_max_margin(x: Any, y: Any, n_directions: int = 720, activation: str = "relu", *,
                  directions: Any = None) -> F1MaxMargin:
    r"""gamma = max_{||c||_1 <= 1} min_i y_i sum_k c_k sigma(u_k . x_i): the LP (1) on a grid.

    ``x`` ``(n, d)``, ``y`` ``(n,)`` labels +-1; ``directions`` ``(K, d)`` unit vectors, default
    :func:`circle_directions` (``n_directions``) for d = 2. For the ReLU this is the F1
    max-margin restricted to the grid; the continuum value exceeds it by at most
    (pi / K) max_i ||x_i|| on the uniform circle grid. Solved in float64 with HiGHS.

    >>> x = torch.tensor([[1.0, 0.0]], dtype=torch.float64)
    >>> round(f1_max_margin(x, torch.tensor([1.0]), n_directions=6).margin, 6)
    1.0
    """
    inputs, labels = _data(x, y)
    sigma = _activation(activation)
    grid = _grid(inputs, directions, n_directions)
    features = (labels[:, None] * sigma(inputs @ grid.T)).cpu().numpy()  # (n, K): y_i sigma(u_k . x_i)
    n, k = features.shape
    cost = np.zeros(2 * k + 1)
    cost[-1] = -1.0
    rows = np.hstack([-features, features, np.ones((n, 1))])
    norm_row = np.concatenate([np.ones(2 * k), [0.0]])[None, :]
    bounds = [(0, None)] * (2 * k) + [(None, None)]
    solution = linprog(cost, A_ub=np.vstack([rows, norm_row]), b_ub=np.concatenate([np.zeros(n), [1.0]]),
                       bounds=bounds, method="highs")
    if solution.status != 0:
        raise RuntimeError(f"the F1 max-margin LP failed: {solution.message}")
    weights = torch.as_tensor(solution.x[:k] - solution.x[k:2 * k], dtype=torch.float64, device=inputs.device)
    dual = torch.as_tensor(-solution.ineqlin.marginals[:n], dtype=torch.float64, device=inputs.device)
    support = torch.nonzero(weights.abs() > 1e-9).reshape(-1)
    return F1MaxMargin(float(solution.x[-1]), weights, grid, support, dual)


def _activation(value: Any) -> Any:
    sigma = activation(value)
    if not isinstance(sigma, ReLU):
        raise ValueError(f"the F1 margin needs a positively homogeneous activation: only 'relu', "
                         f"got {value!r}")
    return sigma


def f1_dual_bound(x: Any, y: Any, weights: Any, directions: Any = None) -> float:
    r"""max_u |sum_i p_i y_i relu(u . x_i)| / sum_i p_i for data weights p = ``weights`` ``(n,)``, p >= 0.

    By weak duality this bounds the F1 max-margin (1) from above for every p, and it equals
    gamma_F1 at the optimal p. With ``directions=None`` and 2-D inputs the maximum is taken
    exactly over the whole circle: between consecutive angles where some u . x_i changes sign,
    g(u) = A . u with A = sum_{active i} p_i y_i x_i, so |g| is maximal at an arc end or at
    u = +-A / ||A|| when that lies inside the arc. With ``directions`` ``(K, d)`` it is the
    maximum over those directions (a bound on the LP over that grid only).

    >>> x = torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    >>> f1_dual_bound(x, torch.tensor([1.0, -1.0]), torch.tensor([0.5, 0.5]))
    0.5
    """
    inputs, labels = _data(x, y)
    p = torch.as_tensor(weights).to(dtype=torch.float64, device=inputs.device).reshape(-1)
    if p.shape[0] != inputs.shape[0] or bool((p < 0).any()) or not bool(p.sum() > 0):
        raise ValueError(f"weights must be {inputs.shape[0]} nonnegative numbers (one per data point), "
                         "not all 0")
    signed = p * labels / p.sum()
    if directions is not None:
        grid = _grid(inputs, directions, 0)
        return float((signed @ torch.relu(inputs @ grid.T)).abs().max())
    return _circle_max(inputs, signed)


def _circle_max(inputs: Tensor, signed: Tensor) -> float:
    """max over unit u in R^2 of |sum_i v_i relu(u . x_i)|, exactly (arcs between sign changes)."""
    if inputs.shape[1] != 2:
        raise ValueError(f"the exact maximum needs 2-D inputs (x has {inputs.shape[1]} columns); "
                         "pass directions")
    phase = torch.atan2(inputs[:, 1], inputs[:, 0])
    boundaries = torch.cat([phase + math.pi / 2, phase - math.pi / 2])
    ends = torch.sort(torch.remainder(boundaries, 2 * math.pi)).values
    starts, stops = ends, torch.cat([ends[1:], ends[:1] + 2 * math.pi])
    middles = (starts + stops) / 2
    middle_units = torch.stack([middles.cos(), middles.sin()], 1)
    active = (middle_units @ inputs.T > 0).to(torch.float64)  # (arcs, n): which x_i are active on each arc
    vectors = (active * signed) @ inputs  # A per arc: (arcs, 2)
    candidates = [starts, stops]
    for shift in (0.0, math.pi):
        peak = torch.atan2(vectors[:, 1], vectors[:, 0]) + shift
        peak = starts + torch.remainder(peak - starts, 2 * math.pi)  # the representative after the start
        candidates.append(torch.where(peak <= stops, peak, starts))
    angles = torch.stack(candidates, 1)  # (arcs, 4)
    values = vectors[:, :1] * angles.cos() + vectors[:, 1:] * angles.sin()
    return float(values.abs().max())


@dataclass(frozen=True)
class F1NormBounds:
    """The F1 norm of values on the data: ``grid`` (the LP over the grid, an upper bound) and
    ``lower`` (a dual certificate valid over the whole circle; NaN unless the inputs are 2-D)."""

    grid: float
    lower: float


def f1_norm_on_data(values: Any, x: Any, n_directions: int = 720, *, directions: Any = None) -> F1NormBounds:
    r"""Bounds on min { |rho|_TV : int relu(u . x_i) d rho(u) = h_i for all i } for ``values`` h ``(n,)``.

    ``grid``: the LP min sum_k |c_k| s.t. sum_k c_k relu(u_k . x_i) = h_i over the grid (``inf``
    when no grid measure fits). Its dual max lambda . h s.t. |sum_i lambda_i relu(u_k . x_i)| <= 1
    gives, after rescaling lambda by the exact maximum over the circle, the certificate
    ``lower`` = lambda . h / max_u |sum_i lambda_i relu(u . x_i)| <= the continuum norm (2-D).
    For any classifier h, min_i y_i h_i / norm is at most gamma_F1, with equality at an F1
    max-margin classifier: it puts a network's outputs and the LP solution in one geometry.

    >>> x = torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    >>> bounds = f1_norm_on_data(torch.tensor([2.0, -1.0]), x, n_directions=8)
    >>> round(bounds.grid, 6), round(bounds.lower, 6)
    (3.0, 3.0)
    """
    inputs = as_tensor(x, "x").to(torch.float64)
    targets = torch.as_tensor(values).to(dtype=torch.float64, device=inputs.device).reshape(-1)
    if inputs.ndim != 2 or targets.shape[0] != inputs.shape[0]:
        raise ValueError(f"values must have one entry per row of x ({inputs.shape[0]}), "
                         f"got {targets.shape[0]}")
    grid = _grid(inputs, directions, n_directions)
    features = torch.relu(inputs @ grid.T).cpu().numpy()
    k = features.shape[1]
    solution = linprog(np.ones(2 * k), A_eq=np.hstack([features, -features]), b_eq=targets.cpu().numpy(),
                       bounds=[(0, None)] * (2 * k), method="highs")
    if solution.status != 0:
        return F1NormBounds(math.inf, math.nan)
    dual = torch.as_tensor(solution.eqlin.marginals, dtype=torch.float64, device=inputs.device)
    lower = math.nan
    if inputs.shape[1] == 2:
        lower = float(dual @ targets) / _circle_max(inputs, dual)
    return F1NormBounds(float(solution.fun), lower)


@dataclass(frozen=True)
class KernelMaxMargin:
    """The hard-margin SVM (no offset) of a kernel: ``margin`` gamma_K, ``coefficients`` beta ``(n,)``
    (h = sum_i beta_i y_i k(x_i, .) / ||h|| is the max-margin classifier), ``values`` h(x_i) ``(n,)``."""

    margin: float
    coefficients: Tensor
    values: Tensor


def kernel_max_margin(kernel: Any, y: Any) -> KernelMaxMargin:
    r"""gamma_K = max_{||h||_K <= 1} min_i y_i h(x_i) for a positive definite Gram matrix ``(n, n)``.

    The hard-margin SVM min ||h||^2 / 2 s.t. y_i h(x_i) >= 1 has dual
    max_{beta >= 0} 1^T beta - beta^T Q beta / 2 with Q = (y y^T) * K; at the optimum
    ||h||^2 = 1^T beta, so gamma_K = (1^T beta)^{-1/2}. With Q = L L^T the dual is the
    nonnegative least-squares problem min_{beta >= 0} ||L^T beta - L^{-1} 1|| (scipy's ``nnls``).
    For a lazily trained network (f_0 = 0) K is its tangent kernel and gamma_K the limit of
    :func:`lazy_margin`.

    >>> K = torch.tensor([[1.0, 0.0], [0.0, 4.0]], dtype=torch.float64)  # linear kernel of (1, 0), (0, 2)
    >>> round(kernel_max_margin(K, torch.tensor([1.0, -1.0])).margin, 6)  # 1 / sqrt(1 + 1/4)
    0.894427
    """
    gram = as_tensor(kernel, "kernel").to(torch.float64)
    labels = torch.as_tensor(y).to(dtype=torch.float64, device=gram.device).reshape(-1)
    if gram.ndim != 2 or gram.shape != (labels.shape[0], labels.shape[0]):
        size = labels.shape[0]
        raise ValueError(f"kernel must be ({size}, {size}) for {size} labels, got {tuple(gram.shape)}")
    q = (labels[:, None] * labels[None, :] * gram).cpu().numpy()
    try:
        lower = np.linalg.cholesky(0.5 * (q + q.T))
    except np.linalg.LinAlgError:
        raise ValueError("kernel must be positive definite (distinct inputs, a strictly PD kernel)") from None
    beta, _ = nnls(lower.T, np.linalg.solve(lower, np.ones(len(q))), maxiter=50 * len(q))
    norm_squared = float(beta.sum())
    coefficients = torch.as_tensor(beta, dtype=torch.float64, device=gram.device)
    values = gram @ (coefficients * labels) / math.sqrt(norm_squared)
    return KernelMaxMargin(1 / math.sqrt(norm_squared), coefficients, values)


@dataclass(frozen=True)
class NormalizedMargin:
    r"""Margins of a ReLU :class:`TwoLayer` f = s(M) sum_j a_j relu(w_j . x) on data.

    ``margin`` = min_i y_i f(x_i); ``f1_norm`` = s(M) sum_j |a_j| ||w_j|| (the total variation of
    the network's measure on directions, >= its F1 norm); ``f1_margin`` = margin / f1_norm
    (<= gamma_F1); ``parameter_norm`` = (s(M) / 2) sum_j (a_j^2 + ||w_j||^2) >= f1_norm;
    ``parameter_margin`` = margin / parameter_norm (<= f1_margin, equal for balanced neurons).
    """

    margin: float
    f1_norm: float
    f1_margin: float
    parameter_norm: float
    parameter_margin: float

    def to_dict(self) -> dict[str, float]:
        return dict(self.__dict__)


def _relu_net(model: Any) -> TwoLayer:
    if not isinstance(model, TwoLayer):
        raise TypeError(f"model must be a measureflow.nets.TwoLayer, got {type(model).__name__}")
    _activation(model.activation)
    return model


@torch.no_grad()
def normalized_margin(model: TwoLayer, x: Any, y: Any) -> NormalizedMargin:
    """The margin of a ReLU TwoLayer on ``x`` ``(n, d)``, ``y`` ``(n,)`` under the F1 and the
    parameter normalizations (see :class:`NormalizedMargin`).

    >>> from measureflow.nets import set_neurons
    >>> net = set_neurons(TwoLayer(2, 1, scaling="mean-field"), torch.tensor([[2.0, 0.5, 0.0]]))
    >>> margins = normalized_margin(net, torch.tensor([[1.0, 0.0]]), torch.tensor([1.0]))  # f = relu(x_1)
    >>> margins.margin, margins.f1_norm, margins.parameter_norm, round(margins.parameter_margin, 6)
    (1.0, 1.0, 2.125, 0.470588)
    """
    net = _relu_net(model)
    inputs, labels = _data(x, y)
    a, w = net.a.detach().to(torch.float64), net.w.detach().to(torch.float64)
    outputs = net.scale * (torch.relu(inputs.to(w.device) @ w.T) @ a)
    margin = float((labels.to(w.device) * outputs).min())
    f1_norm = float(net.scale * (a.abs() * w.norm(dim=1)).sum())
    parameter_norm = float(net.scale * (a.square() + w.square().sum(1)).sum() / 2)
    return NormalizedMargin(margin, f1_norm, margin / f1_norm, parameter_norm, margin / parameter_norm)


@torch.no_grad()
def lazy_margin(model: TwoLayer, initial: TwoLayer, x: Any, y: Any) -> float:
    r"""min_i y_i f(x_i) / ||theta - theta_0||: the margin in the geometry of the linearized network.

    ``initial`` is the network at initialization (same trained layers). With f_0 = 0
    (:func:`~measureflow.nets.symmetrize`) and lazy training it tends to :func:`kernel_max_margin`
    of the tangent kernel at initialization (:func:`measureflow.nets.empirical_ntk`).
    """
    if not isinstance(initial, TwoLayer) or initial.trained != model.trained:
        raise TypeError("initial must be a TwoLayer with the same trained layers as model")
    inputs, labels = _data(x, y)
    outputs = model(inputs.to(dtype=model.w.dtype, device=model.w.device)).to(torch.float64)
    displacement = (model.parameters_vector() - initial.parameters_vector()).to(torch.float64).norm()
    return float((labels.to(outputs.device) * outputs).min() / displacement)


@dataclass(frozen=True)
class ActiveNeurons:
    """The neurons carrying a fraction ``mass_fraction`` of the mass |a_j| ||w_j||, clustered by
    direction and sign: ``n_active`` neurons in ``n_clusters`` clusters with unit ``directions``
    ``(C, d)``, ``masses`` ``(C,)`` (fractions of the total) and ``signs`` ``(C,)``."""

    n_active: int
    n_clusters: int
    directions: Tensor
    masses: Tensor
    signs: Tensor

    def to_dict(self) -> dict[str, Any]:
        return {"n_active": self.n_active, "n_clusters": self.n_clusters,
                "directions": self.directions.tolist(), "masses": self.masses.tolist(),
                "signs": self.signs.tolist()}


def cluster_directions(directions: Tensor, masses: Tensor, signs: Tensor, angle: float) -> ActiveNeurons:
    """Greedy clustering: atoms in decreasing mass join the first cluster of the same sign whose
    (first, heaviest) direction lies within ``angle`` radians, else open a new one.

    >>> u = circle_directions(8)
    >>> cluster_directions(u[[0, 1, 4]], torch.tensor([0.5, 0.3, 0.2]), torch.ones(3), 0.8).n_clusters
    2
    """
    check_positive(angle, "angle")
    units = torch.nn.functional.normalize(directions.to(torch.float64), dim=1)
    order = torch.argsort(masses, descending=True)
    heads: list[int] = []
    totals: list[float] = []
    cosine = math.cos(angle)
    for index in order.tolist():
        for c, head in enumerate(heads):
            if signs[head] == signs[index] and float(units[head] @ units[index]) >= cosine:
                totals[c] += float(masses[index])
                break
        else:
            heads.append(index)
            totals.append(float(masses[index]))
    total = float(masses.sum())
    return ActiveNeurons(len(order), len(heads), units[heads],
                         torch.tensor(totals, dtype=torch.float64) / total, signs[heads].to(torch.float64))


@torch.no_grad()
def active_neurons(model: TwoLayer, mass_fraction: float = 0.99, angle: float = 0.1) -> ActiveNeurons:
    """The fewest neurons carrying ``mass_fraction`` of sum_j |a_j| ||w_j||, clustered within ``angle``."""
    net = _relu_net(model)
    if not 0 < mass_fraction <= 1:
        raise ValueError(f"mass_fraction must lie in (0, 1], got {mass_fraction!r}")
    a, w = net.a.detach().to(torch.float64), net.w.detach().to(torch.float64)
    masses = a.abs() * w.norm(dim=1)
    order = torch.argsort(masses, descending=True)
    cumulative = torch.cumsum(masses[order], 0) / masses.sum()
    keep = order[: int((cumulative < mass_fraction).sum()) + 1]
    clusters = cluster_directions(w[keep], masses[keep], a[keep].sign(), angle)
    return ActiveNeurons(len(keep), clusters.n_clusters, clusters.directions,
                         clusters.masses * float(masses[keep].sum() / masses.sum()), clusters.signs)


@dataclass(frozen=True)
class MarginRun:
    """A :func:`train_margin` run: the trained ``model`` and, at the recorded ``steps`` ``(T,)``,
    ``log_risk`` log((1/n) sum_i exp(-y_i f(x_i))) and the :class:`NormalizedMargin` fields
    ``margin``, ``f1_margin``, ``parameter_margin`` ``(T,)`` (NaN for a non-ReLU model)."""

    model: TwoLayer
    steps: Tensor
    log_risk: Tensor
    margin: Tensor
    f1_margin: Tensor
    parameter_margin: Tensor


def train_margin(model: TwoLayer, x: Any, y: Any, *, lr: float, n_steps: int, normalized: bool = True,
                 decay_steps: float | None = None, record_every: int | None = None) -> MarginRun:
    r"""Full-batch gradient descent on the exponential risk R = (1/n) sum_i exp(-y_i f(x_i)).

    ``normalized=False``: theta <- theta - lr grad R. ``normalized=True``: the step is divided by
    R, theta <- theta - lr grad log R = theta + lr sum_i p_i y_i grad f(x_i) with
    p = softmax(-y f): the same gradient flow in the time dt = ds / R (so the same path in the
    small-step limit), reached in far fewer steps once R is small. Computed through the softmax
    it never over- or underflows. ``decay_steps`` k_0: once the data are separated (all
    y_i f(x_i) > 0, first at step k_s), step k is divided by 1 + (k - k_s) / k_0; the steps still
    sum to infinity, so the flow runs to infinite time, while the O(lr) oscillation of the
    normalized margin (the directions jump across the kinks of the ReLU) dies out. For a
    mean-field network use lr = h M. ``model`` is trained in
    place (its dtype and device; x, y are moved there); records every ``record_every`` steps
    (default about 100 records), step 0 and the last step.

    >>> net = TwoLayer(2, 20, scaling="mean-field", generator=torch.Generator().manual_seed(0))
    >>> x = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    >>> run = train_margin(net, x, torch.tensor([1.0, -1.0]), lr=0.05 * 20, n_steps=300)
    >>> bool(run.f1_margin[-1] > 0.45)
    True
    """
    if not isinstance(model, TwoLayer):
        raise TypeError(f"model must be a measureflow.nets.TwoLayer, got {type(model).__name__}")
    lr = check_positive(lr, "lr")
    if decay_steps is not None:
        check_positive(decay_steps, "decay_steps")
    n_steps = check_count(n_steps, "n_steps")
    record_every = record_every or max(1, n_steps // 100)
    inputs, labels = _data(x, y)
    inputs = inputs.to(dtype=model.w.dtype, device=model.w.device)
    labels = labels.to(dtype=model.w.dtype, device=model.w.device)
    parameters = [p for p in model.parameters() if p.requires_grad]
    relu = isinstance(model.activation, ReLU)
    records: dict[str, list[float]] = {key: [] for key in ("steps", "log_risk", "margin", "f1", "parameter")}

    def record(step: int, outputs: Tensor) -> None:
        exponents = -labels * outputs.detach()
        records["steps"].append(step)
        records["log_risk"].append(float(torch.logsumexp(exponents, 0) - math.log(len(labels))))
        margins = normalized_margin(model, inputs, labels) if relu else None
        records["margin"].append(float(-exponents.max()))
        records["f1"].append(margins.f1_margin if margins else math.nan)
        records["parameter"].append(margins.parameter_margin if margins else math.nan)

    separated_at: int | None = None
    for step in range(n_steps + 1):
        outputs = model(inputs)
        if step % record_every == 0 or step == n_steps:
            record(step, outputs)
        if step == n_steps:
            break
        exponents = (-labels * outputs).detach()
        if separated_at is None and bool((exponents < 0).all()):
            separated_at = step
        weights = torch.softmax(exponents, 0) if normalized else exponents.exp() / len(labels)
        gradients = torch.autograd.grad((weights * labels * outputs).sum(), parameters)
        step_size = lr
        if decay_steps and separated_at is not None:
            step_size = lr / (1 + (step - separated_at) / decay_steps)
        with torch.no_grad():
            for parameter, gradient in zip(parameters, gradients, strict=True):
                parameter.add_(gradient, alpha=step_size)
    as_tensor_ = lambda key: torch.tensor(records[key], dtype=torch.float64)  # noqa: E731
    return MarginRun(model, torch.tensor(records["steps"]), as_tensor_("log_risk"), as_tensor_("margin"),
                     as_tensor_("f1"), as_tensor_("parameter"))
