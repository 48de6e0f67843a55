r"""Minimizing a differentiable function over the probability simplex.

The problem is ``p* = argmin F(p)`` over the simplex
``Delta^{n-1} = {p in R^n : p_i >= 0, sum_i p_i = 1}``, batched over leading dimensions: a point is a
tensor of shape ``(..., n)`` and the gradient callable maps ``(..., n) -> (..., n)``.

Optimality. With the Lagrangian ``F(p) - sum_i mu_i p_i + lambda (sum_i p_i - 1)``, the KKT conditions
are ``grad F(p) = mu - lambda 1`` with ``mu_i >= 0`` and ``mu_i p_i = 0``; so ``-lambda = min_i
grad F(p)_i`` and every coordinate carrying mass has the smallest partial derivative. Equivalently,

    p . grad F(p) = min_i grad F(p)_i.                                              (1)

The optimality gap recorded by every method here is the difference of the two sides,

    G(p) = p . grad F(p) - min_i grad F(p)_i = max_{q in Delta} <grad F(p), p - q>   (2)

(a linear function is minimized over the simplex at a vertex, so ``min_q <g, q> = min_i g_i``).
``G(p) >= 0`` (take ``q = p``) and ``G(p) = 0`` exactly when (1) holds. This is the Frank-Wolfe
duality gap (Jaggi 2013, Sec. 2): for convex ``F`` and any ``q``, ``F(q) >= F(p) + <grad F(p), q - p>``;
at ``q = p*`` this gives ``F(p) - F(p*) <= <grad F(p), p - p*> <= G(p)``, so the gap is a computable
upper bound on the primal error without knowing ``F*``.

Methods (each records ``G`` at every iterate):

- :func:`frank_wolfe` (conditional gradient): move toward the vertex minimizing the linearization,
  ``p <- (1 - eta) p + eta onehot(argmin grad F(p))``; projection-free, iterates are sparse mixtures of
  vertices.
- :func:`projected_gradient`: ``p <- Pi(p - h grad F(p))`` with the exact Euclidean projection
  :func:`sparsemax` (Held, Wolfe & Crowder 1974; Duchi et al. 2008; Martins & Astudillo 2016).
- :func:`mirror_descent` (exponentiated gradient): ``p <- p exp(-h grad F(p)) / Z``, mirror descent with
  the negative-entropy mirror map (Nemirovski & Yudin 1983; Beck & Teboulle 2003).

Example objectives with closed-form (or exactly computable) minimizers: :class:`SquaredDistance`
(``||p - x||^2``, minimized by ``sparsemax(x)``), :class:`Quadratic` (``1/2 p^T Q p + c^T p``, exact
minimizer by enumerating KKT supports) and :class:`EntropicLinear` (``<c, p> + eps sum p log p``,
minimized by ``softmax(-c / eps)``).

>>> import torch
>>> objective = SquaredDistance(torch.tensor([0.9, 0.6, -0.5], dtype=torch.float64))
>>> objective.minimizer()
tensor([0.6500, 0.3500, 0.0000], dtype=torch.float64)
>>> p0 = torch.full((3,), 1 / 3, dtype=torch.float64)
>>> result = projected_gradient(objective.grad, p0, step_size=0.25, n_steps=60)
>>> torch.allclose(result.p, objective.minimizer(), atol=1e-12)
True
"""

from __future__ import annotations

import itertools
import math
import numbers
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from measureflow._core.validate import as_tensor, check_count, check_finite, check_positive

__all__ = [
    "EntropicLinear",
    "Quadratic",
    "SimplexResult",
    "SquaredDistance",
    "frank_wolfe",
    "mirror_descent",
    "optimality_gap",
    "project_simplex",
    "projected_gradient",
    "sparsemax",
]

# Largest simplex dimension for which Quadratic.minimizer enumerates the 2^n - 1 supports.
MAX_ENUMERATION_DIM = 14
# p0 must lie on the simplex within this tolerance (coordinates >= -tol, |sum - 1| <= tol).
SIMPLEX_TOLERANCE = 1e-6
_GOLDEN = (math.sqrt(5.0) - 1.0) / 2.0


# ----------------------------------------------------------------------------------------------
# The projection
# ----------------------------------------------------------------------------------------------


def sparsemax(x: Tensor) -> Tensor:
    r"""The Euclidean projection onto the simplex, ``argmin_{p in Delta} ||p - x||^2``, along the last dim.

    The KKT conditions of the projection give ``p_i = relu(x_i - tau)`` with the threshold ``tau`` fixed
    by ``sum_i p_i = 1``. Sorting ``z_(1) >= ... >= z_(n)``, the support has size
    ``k* = max{k : 1 + k z_(k) > sum_{j <= k} z_(j)}`` and ``tau = (sum_{j <= k*} z_(j) - 1) / k*``
    (Held, Wolfe & Crowder 1974; Duchi et al. 2008, Fig. 1; Martins & Astudillo 2016, Alg. 1). Cost
    ``O(n log n)`` per row. The map is differentiable almost everywhere and autograd through this
    function gives its Jacobian ``diag(s) - s s^T / |S|`` (``s`` the support indicator).

    Args:
        x: scores ``(..., n)``, any leading dimensions, floating point and finite.

    Returns:
        ``(..., n)`` points of the simplex, same dtype and device as ``x``.

    >>> import torch
    >>> sparsemax(torch.tensor([[0.9, 0.6, -0.5], [2.0, 0.0, 0.0]], dtype=torch.float64))
    tensor([[0.6500, 0.3500, 0.0000],
            [1.0000, 0.0000, 0.0000]], dtype=torch.float64)
    """
    x = _check_scores(x, "x")
    sorted_x, _ = torch.sort(x, dim=-1, descending=True)
    cumulative = sorted_x.cumsum(dim=-1)
    ranks = torch.arange(1, x.shape[-1] + 1, dtype=x.dtype, device=x.device)
    # The condition holds for k = 1, ..., k* and fails after it (the sorted sequence is monotone),
    # so the support size is the number of ranks where it holds.
    in_support = 1 + ranks * sorted_x > cumulative
    support_size = in_support.sum(dim=-1, keepdim=True)
    tau = (cumulative.gather(-1, support_size - 1) - 1) / support_size.to(x.dtype)
    return torch.clamp(x - tau, min=0)


def project_simplex(x: Tensor) -> Tensor:
    """The Euclidean projection onto the probability simplex; the same map as :func:`sparsemax`.

    >>> import torch
    >>> project_simplex(torch.tensor([0.2, 0.2], dtype=torch.float64))
    tensor([0.5000, 0.5000], dtype=torch.float64)
    """
    return sparsemax(x)


def optimality_gap(p: Tensor, gradient: Tensor) -> Tensor:
    r"""The Frank-Wolfe gap ``G(p) = p . g - min_i g_i = max_{q in Delta} <g, p - q>`` with ``g = grad F(p)``.

    ``G >= 0``, ``G = 0`` exactly at points satisfying the first-order condition ``p . g = min g``,
    and ``F(p) - min F <= G(p)`` for convex ``F`` (see the module docstring). Coordinates with
    ``p_i = 0`` contribute nothing to ``p . g`` even where ``g_i`` is infinite (``0 log 0`` terms:
    the entropy's gradient is ``-inf`` on the boundary, where the gap is then ``+inf``).

    Args:
        p: points ``(..., n)`` of the simplex.
        gradient: ``grad F(p)``, shape ``(..., n)``.

    Returns:
        ``(...)`` gaps.

    >>> import torch
    >>> optimality_gap(torch.tensor([0.5, 0.5, 0.0]), torch.tensor([1.0, 1.0, 3.0]))
    tensor(0.)
    """
    inner = torch.where(p > 0, p * gradient, torch.zeros((), dtype=p.dtype, device=p.device)).sum(-1)
    return inner - gradient.amin(dim=-1)


# ----------------------------------------------------------------------------------------------
# Results
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SimplexResult:
    """The outcome of a simplex method run for ``n_steps`` steps from ``p0`` of shape ``(..., n)``.

    Attributes:
        method: ``"frank_wolfe"``, ``"projected_gradient"`` or ``"mirror_descent"``.
        p: the final iterate ``(..., n)``.
        gap: the optimality gap ``G(p_t)`` of :func:`optimality_gap` at ``t = 0, ..., n_steps``,
            shape ``(n_steps + 1, ...)``.
        values: ``F(p_t)`` at the same times when an objective was given, else ``None``.
        iterates: all iterates ``(n_steps + 1, ..., n)`` when recorded, else ``None``.
        step_sizes: Frank-Wolfe's ``eta_t`` for ``t = 0, ..., n_steps - 1``, shape ``(n_steps, ...)``;
            ``None`` for the other methods (their step is the constant ``step_size``).
    """

    method: str
    p: Tensor
    gap: Tensor
    values: Tensor | None = None
    iterates: Tensor | None = None
    step_sizes: Tensor | None = None

    @property
    def n_steps(self) -> int:
        return self.gap.shape[0] - 1

    @property
    def best_gap(self) -> Tensor:
        """``min_{s <= t} G(p_s)``, shape ``(n_steps + 1, ...)``: the sequence Jaggi's gap bound speaks of."""
        return torch.cummin(self.gap, dim=0).values

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe: tensors become nested lists of floats (``inf`` stays a float)."""

        def listed(tensor: Tensor | None):
            return None if tensor is None else tensor.detach().cpu().double().tolist()

        return {
            "method": self.method,
            "n_steps": self.n_steps,
            "p": listed(self.p),
            "gap": listed(self.gap),
            "values": listed(self.values),
            "iterates": listed(self.iterates),
            "step_sizes": listed(self.step_sizes),
        }


# ----------------------------------------------------------------------------------------------
# Methods
# ----------------------------------------------------------------------------------------------


def frank_wolfe(
    grad: Callable[[Tensor], Tensor],
    p0: Tensor,
    n_steps: int,
    *,
    line_search: Callable[[Tensor], Tensor] | None = None,
    objective: Callable[[Tensor], Tensor] | None = None,
    away_steps: bool = False,
    line_search_tol: float = 1e-10,
    record_iterates: bool = False,
) -> SimplexResult:
    r"""Conditional gradient (Frank-Wolfe) on the simplex, optionally with away steps.

    Each step solves the linearized problem over the simplex, whose solution is a vertex,
    ``s_t = onehot(argmin_i grad F(p_t)_i)``, and moves toward it:

        p_{t+1} = (1 - eta_t) p_t + eta_t s_t,      t = 0, 1, ..., n_steps - 1.

    The progress promised by the linearization is exactly the gap, ``<grad F(p_t), p_t - s_t> = G(p_t)``.

    Step sizes: by default the open-loop ``eta_t = 2 / (t + 2)`` (so ``eta_0 = 1`` and ``p_1`` is a
    vertex); with ``line_search=F`` the exact ``eta_t = argmin_{eta in [0, 1]} F((1 - eta) p_t + eta
    s_t)``: in closed form when ``F`` has an ``exact_step(p, direction)`` method (the quadratics here:
    ``eta = clamp(-<d, grad F> / d^T Q d, 0, 1)`` with ``d = s - p``), otherwise by golden-section
    search vectorized over the batch to ``line_search_tol`` (then compared with the far endpoint).

    Convergence (Jaggi 2013, Theorems 1 and 2, either step rule): for convex ``F`` with curvature
    constant ``C_f = sup 2 (F(y) - F(x) - <grad F(x), y - x>) / eta^2`` over ``x, s in Delta``,
    ``y = x + eta (s - x)`` (``C_f <= L diam^2 = 2 L`` for an ``L``-smooth ``F`` on the simplex),

        F(p_t) - F*  <=  2 C_f / (t + 2)                            for t >= 1,
        min_{1 <= s <= t} G(p_s)  <=  27 C_f / (4 (t + 2))          for t >= 2.

    The second bound is for the best gap so far (:attr:`SimplexResult.best_gap`): the gap of a single
    iterate can jump up after a step. These are worst-case rates. When ``F`` is strongly convex and
    the minimizer lies in the relative interior of a face of dimension >= 1 that is not the whole
    simplex (a sparse minimizer that is not a vertex), line search zig-zags and cannot beat
    ``t^-(1 + delta)`` for any ``delta > 0`` (Canon & Cullum 1968; Wolfe 1970), so its primal error is
    ``1/t`` up to such factors; the open-loop rule is faster there, ``F(p_t) - F* = O(1/t^2)`` (Wirth,
    Kerdreux & Pokutta 2023), and since its step length is ``2 / (t + 2)`` times a distance bounded
    below, ``||p_t - p*||`` and the gap are of order ``1/t``.

    Away steps (``away_steps=True``, needs ``line_search``; Wolfe 1970; Lacoste-Julien & Jaggi 2015,
    Alg. 1): on the simplex the vertex weights of ``p`` are its coordinates, so the away vertex is
    ``a = argmax_{i: p_i > 0} grad F(p)_i`` and the away direction ``p - e_a`` with the largest step
    ``p_a / (1 - p_a)`` (which drops ``a`` from the support). The step taken is the one of the two
    directions with the larger slope ``-<grad F, d>``. For strongly convex ``F`` with a Lipschitz gradient
    this converges linearly, which makes sparse minimizers reachable to high accuracy.

    Objectives whose gradient is unbounded at the boundary (the entropy) have ``C_f = inf``; use
    ``line_search`` for them, which keeps the iterates interior.

    Args:
        grad: ``p -> grad F(p)``, ``(..., n) -> (..., n)``. Entries ``-inf`` are allowed (the entropy on
            the boundary); NaN raises.
        p0: start ``(..., n)`` on the simplex (within 1e-6; it is clamped at 0 and renormalized).
        n_steps: number of steps, ``>= 1``.
        line_search: ``None`` for ``eta_t = 2 / (t + 2)``, or the objective ``F: (..., n) -> (...)`` for
            exact line search.
        objective: ``F`` to record ``values``; defaults to ``line_search`` when that is given.
        away_steps: also consider away steps (requires ``line_search``).
        line_search_tol: final bracket width of the golden-section search (ignored for closed forms).
        record_iterates: keep all iterates in ``iterates``.

    Returns:
        :class:`SimplexResult` with ``p``, ``gap`` ``(n_steps + 1, ...)``, ``values``, ``iterates`` and
        ``step_sizes`` (``eta_t``, or the away step's length on away steps; ``(n_steps, ...)``).

    >>> import torch
    >>> objective = SquaredDistance(torch.tensor([0.9, 0.6, -0.5], dtype=torch.float64))
    >>> p0 = torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64)
    >>> result = frank_wolfe(objective.grad, p0, 200, line_search=objective)
    >>> bool((result.p - objective.minimizer()).abs().max() < 1e-8), bool(result.gap[-1] < 1e-12)
    (True, True)
    """
    grad = _check_callable(grad, "grad")
    p = _check_start(p0)
    n_steps = _check_n_steps(n_steps)
    if line_search is not None and not callable(line_search):
        raise TypeError(
            "line_search must be None (step 2 / (t + 2)) or the objective F: (..., n) -> (...), "
            f"got {type(line_search).__name__}"
        )
    tol = check_positive(line_search_tol, "line_search_tol")
    if objective is None:
        objective = line_search
    objective = _check_objective(objective)
    if not isinstance(away_steps, bool):
        raise TypeError(f"away_steps must be a bool, got {away_steps!r}")
    if away_steps and line_search is None:
        raise ValueError(
            "away_steps=True needs line_search (the objective): an away step's length is capped at "
            "p_a / (1 - p_a), which the open-loop rule 2 / (t + 2) does not respect"
        )

    recorder = _Recorder(objective, record_iterates)
    gradient = _evaluate_grad(grad, p, 0, allow_negative_infinity=True)
    n = p.shape[-1]
    etas = []
    for t in range(n_steps):
        recorder.record(p, gradient)
        vertex = torch.nn.functional.one_hot(gradient.argmin(dim=-1), n).to(p.dtype)
        if line_search is None:
            eta = torch.full(p.shape[:-1], 2.0 / (t + 2.0), dtype=p.dtype, device=p.device)
            # The convex combination written this way keeps every coordinate >= 0 in floating point.
            p = (1 - eta)[..., None] * p + eta[..., None] * vertex
        elif not away_steps:
            eta = _line_search(line_search, p, vertex - p, torch.ones_like(p[..., 0]), tol)
            p = (1 - eta)[..., None] * p + eta[..., None] * vertex
        else:
            p, eta = _away_step(line_search, p, gradient, vertex, tol)
        etas.append(eta)
        gradient = _evaluate_grad(grad, p, t + 1, allow_negative_infinity=True)
    recorder.record(p, gradient)
    return recorder.result("frank_wolfe", p, torch.stack(etas))


def projected_gradient(
    grad: Callable[[Tensor], Tensor],
    p0: Tensor,
    step_size: float,
    n_steps: int,
    *,
    objective: Callable[[Tensor], Tensor] | None = None,
    record_iterates: bool = False,
) -> SimplexResult:
    r"""Projected gradient descent ``p <- sparsemax(p - h grad F(p))`` with the exact simplex projection.

    For convex ``F`` with an ``L``-Lipschitz gradient and ``h <= 1 / L`` the primal error decays like
    ``||p_0 - p*||^2 / (2 h t)``, and linearly when ``F`` is strongly convex (Beck 2017, Thms 10.21 and
    10.29). A fixed point satisfies ``p = Pi(p - h g)``, i.e. ``<h g, q - p> >= 0`` for all ``q``: the
    first-order condition, ``G(p) = 0``.

    Args:
        grad: ``p -> grad F(p)``, ``(..., n) -> (..., n)``, finite on the iterates.
        p0: start ``(..., n)`` on the simplex (within 1e-6).
        step_size: ``h > 0``.
        n_steps: ``>= 1``.
        objective: ``F`` to record ``values``.
        record_iterates: keep all iterates.

    Returns:
        :class:`SimplexResult`.

    >>> import torch
    >>> objective = SquaredDistance(torch.tensor([0.9, 0.6, -0.5], dtype=torch.float64))
    >>> result = projected_gradient(objective.grad, torch.full((3,), 1 / 3, dtype=torch.float64), 0.5, 1)
    >>> result.p  # h = 1/2 on ||p - x||^2 maps any p to Pi(x) in one step
    tensor([0.6500, 0.3500, 0.0000], dtype=torch.float64)
    """
    grad = _check_callable(grad, "grad")
    p = _check_start(p0)
    step = check_positive(step_size, "step_size")
    n_steps = _check_n_steps(n_steps)
    objective = _check_objective(objective)
    recorder = _Recorder(objective, record_iterates)
    for t in range(n_steps):
        gradient = _evaluate_grad(grad, p, t, allow_negative_infinity=False)
        recorder.record(p, gradient)
        p = sparsemax(p - step * gradient)
    recorder.record(p, _evaluate_grad(grad, p, n_steps, allow_negative_infinity=False))
    return recorder.result("projected_gradient", p, None)


def mirror_descent(
    grad: Callable[[Tensor], Tensor],
    p0: Tensor,
    step_size: float,
    n_steps: int,
    *,
    objective: Callable[[Tensor], Tensor] | None = None,
    record_iterates: bool = False,
) -> SimplexResult:
    r"""Mirror descent with the entropy mirror map (exponentiated gradient): ``p <- p exp(-h g) / Z``.

    The step is ``argmin_q <g, q> + KL(q || p) / h`` over the simplex; it is computed in log space,
    ``log p <- log_softmax(log p - h g)``, so no coordinate underflows to zero through repeated
    products. Coordinates where ``p0`` is zero stay zero (the iterates live on the support of
    ``p0``): start in the interior to reach minimizers elsewhere. For convex ``F`` with
    ``||grad F||_inf <= G_inf`` the averaged iterate has error ``<= log(n) / (h t) + h G_inf^2 / 2``
    (Beck & Teboulle 2003), and for ``F`` smooth relative to the entropy the last iterate converges at
    ``O(1/t)`` (Bauschke, Bolte & Teboulle 2017; Lu, Freund & Nesterov 2018). On the entropic objective
    ``<c, p> + eps sum p log p`` the step is exactly linear in log space:
    ``log p_{t+1} = (1 - h eps) log p_t - h c + const``, so ``log p_t - log p*`` (centred) shrinks by
    ``|1 - h eps|`` per step.

    Args:
        grad: ``p -> grad F(p)``, finite on the iterates.
        p0: start ``(..., n)`` on the simplex (within 1e-6).
        step_size: ``h > 0``.
        n_steps: ``>= 1``.
        objective: ``F`` to record ``values``.
        record_iterates: keep all iterates.

    Returns:
        :class:`SimplexResult`.

    >>> import torch
    >>> objective = EntropicLinear(torch.tensor([1.0, 0.0, 2.0], dtype=torch.float64), epsilon=0.5)
    >>> p0 = torch.full((3,), 1 / 3, dtype=torch.float64)
    >>> result = mirror_descent(objective.grad, p0, step_size=2.0, n_steps=1)  # h = 1 / eps: exact
    >>> torch.allclose(result.p, objective.minimizer(), atol=1e-15, rtol=0)
    True
    """
    grad = _check_callable(grad, "grad")
    p = _check_start(p0)
    step = check_positive(step_size, "step_size")
    n_steps = _check_n_steps(n_steps)
    objective = _check_objective(objective)
    recorder = _Recorder(objective, record_iterates)
    log_p = torch.log(p)
    for t in range(n_steps):
        gradient = _evaluate_grad(grad, p, t, allow_negative_infinity=False)
        recorder.record(p, gradient)
        # Outside the support of p0, log p = -inf stays -inf (the where keeps -inf - h g from ever
        # becoming NaN); a coordinate whose p merely underflows to 0 keeps moving in log space.
        log_p = torch.log_softmax(torch.where(torch.isfinite(log_p), log_p - step * gradient, log_p), dim=-1)
        p = log_p.exp()
    recorder.record(p, _evaluate_grad(grad, p, n_steps, allow_negative_infinity=False))
    return recorder.result("mirror_descent", p, None)


# ----------------------------------------------------------------------------------------------
# Example objectives
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SquaredDistance:
    r"""``F(p) = ||p - x||^2`` for a point ``x`` of shape ``(..., n)``; its minimizer is ``sparsemax(x)``.

    ``grad F = 2 (p - x)``; curvature constant ``C_f = max_{i != j} 2 ||e_i - e_j||^2 = 4``. The seed's
    example: condition (1) reads ``p . (p - x) = min_i (p - x)_i``, whence ``p_i = relu(x_i - tau)``.

    >>> import torch
    >>> SquaredDistance(torch.tensor([1.0, 0.0])).value(torch.tensor([0.5, 0.5]))
    tensor(0.5000)
    """

    point: Tensor

    def __post_init__(self) -> None:
        object.__setattr__(self, "point", _check_scores(self.point, "point"))

    def __call__(self, p: Tensor) -> Tensor:
        return self.value(p)

    def value(self, p: Tensor) -> Tensor:
        return (p - self.point).square().sum(-1)

    def grad(self, p: Tensor) -> Tensor:
        return 2 * (p - self.point)

    def exact_step(self, p: Tensor, direction: Tensor) -> Tensor:
        """``argmin_eta F(p + eta d)`` on the real line: ``-<d, grad F(p)> / (2 ||d||^2)`` (1 if d = 0)."""
        slope = (direction * self.grad(p)).sum(-1)
        curvature = 2 * direction.square().sum(-1)
        return torch.where(curvature > 0, -slope / curvature.clamp_min(torch.finfo(p.dtype).tiny),
                           torch.ones_like(slope))

    def curvature_constant(self) -> float:
        return 4.0

    def minimizer(self) -> Tensor:
        return sparsemax(self.point)

    def minimum(self) -> Tensor:
        return self.value(self.minimizer())


@dataclass(frozen=True)
class Quadratic:
    r"""``F(p) = 1/2 p^T Q p + c^T p``, ``Q`` ``(n, n)`` symmetric positive semi-definite, ``c`` ``(..., n)``.

    ``grad F = Q p + c``. Curvature constant ``C_f = max_{i != j} (e_i - e_j)^T Q (e_i - e_j)``: the
    Bregman term of a quadratic is ``eta^2 (s - x)^T Q (s - x) / 2``, a convex function of ``s - x``
    maximized over the polytope ``Delta - Delta`` at a vertex ``e_i - e_j``.

    Exact minimizer (:meth:`minimizer`, ``Q`` positive definite): for a support ``S``, the KKT system
    ``Q_SS p_S + c_S = -lambda 1``, ``1^T p_S = 1`` has the closed-form solution
    ``p_S = Q_SS^{-1} (-lambda 1 - c_S)``, ``lambda = -(1 + 1^T Q_SS^{-1} c_S) / (1^T Q_SS^{-1} 1)``;
    the minimizer is the unique such point with ``p_S >= 0`` and ``grad F_i >= -lambda`` off ``S``.
    All ``2^n - 1`` supports are solved in one batched call (``n <= 14``). :meth:`planted` builds a
    quadratic whose minimizer is a given point, by choosing ``c`` to satisfy the KKT conditions.

    >>> import torch
    >>> Q = torch.tensor([[2.0, 0.5], [0.5, 1.0]], dtype=torch.float64)
    >>> Quadratic(Q, torch.tensor([0.0, 0.3], dtype=torch.float64)).minimizer()
    tensor([0.4000, 0.6000], dtype=torch.float64)
    """

    hessian: Tensor
    linear: Tensor

    def __post_init__(self) -> None:
        hessian = _check_scores(self.hessian, "hessian")
        n = hessian.shape[-1]
        if hessian.ndim != 2 or hessian.shape[0] != n:
            raise ValueError(f"hessian must be a square (n, n) matrix, got shape {tuple(hessian.shape)}")
        asymmetry = float((hessian - hessian.T).abs().max())
        scale = float(hessian.abs().max())
        if asymmetry > 1e-10 * max(scale, 1.0):
            raise ValueError(f"hessian must be symmetric, got max |Q - Q^T| = {asymmetry:.3g}")
        linear = _check_scores(self.linear, "linear").to(hessian.dtype)
        if linear.shape[-1] != n:
            raise ValueError(f"linear must have shape (..., {n}) to match hessian, got {tuple(linear.shape)}")
        object.__setattr__(self, "hessian", 0.5 * (hessian + hessian.T))
        object.__setattr__(self, "linear", linear)

    @classmethod
    def planted(cls, hessian: Tensor, minimizer: Tensor, margin: float | Tensor = 1.0) -> Quadratic:
        """The quadratic ``(Q, c)`` whose minimizer over the simplex is ``minimizer``.

        With ``c = -Q p* + margin * 1[p*_i = 0]`` the gradient at ``p*`` is ``0`` on the support and
        ``margin > 0`` off it, so (1) holds with strict complementarity; for positive definite ``Q`` the
        minimizer is unique.
        """
        hessian = _check_scores(hessian, "hessian")
        point = _check_start(as_tensor(minimizer, "minimizer", dtype=hessian.dtype), name="minimizer")
        margin = as_tensor(margin, "margin", dtype=hessian.dtype)
        if not bool((margin > 0).all()):
            raise ValueError(f"margin must be positive, got {margin}")
        linear = -(point @ hessian.T) + torch.where(point > 0, torch.zeros_like(point), margin)
        return cls(hessian, linear)

    def __call__(self, p: Tensor) -> Tensor:
        return self.value(p)

    def value(self, p: Tensor) -> Tensor:
        return 0.5 * (p * (p @ self.hessian.T)).sum(-1) + (self.linear * p).sum(-1)

    def grad(self, p: Tensor) -> Tensor:
        return p @ self.hessian.T + self.linear

    def exact_step(self, p: Tensor, direction: Tensor) -> Tensor:
        """``argmin_eta F(p + eta d)`` on the real line, ``-<d, grad F(p)> / d^T Q d`` (1 if ``d^T Q d = 0``).

        The caller clamps it to ``[0, 1]``.
        """
        slope = (direction * self.grad(p)).sum(-1)
        curvature = (direction * (direction @ self.hessian.T)).sum(-1)
        # Along a flat direction F is linear and non-increasing toward the vertex (slope = -G <= 0).
        return torch.where(curvature > 0, -slope / curvature.clamp_min(torch.finfo(p.dtype).tiny),
                           torch.ones_like(slope))

    def curvature_constant(self) -> float:
        diagonal = torch.diagonal(self.hessian)
        pairs = diagonal[:, None] + diagonal[None, :] - 2 * self.hessian
        return float(pairs.max())

    def minimizer(self) -> Tensor:
        """The exact minimizer ``(..., n)`` by KKT support enumeration (``Q`` positive definite, n <= 14)."""
        q = self.hessian
        n = q.shape[0]
        if n > MAX_ENUMERATION_DIM:
            raise ValueError(
                f"minimizer enumerates 2^n - 1 supports and allows n <= {MAX_ENUMERATION_DIM}, got n = {n}; "
                "build the objective with Quadratic.planted to know its minimizer"
            )
        if torch.linalg.cholesky_ex(q).info.item() != 0:
            raise ValueError("minimizer needs a positive definite hessian (unique minimizer); Q is not")
        masks = torch.tensor(list(itertools.product((False, True), repeat=n))[1:], device=q.device)
        n_supports = masks.shape[0]
        # One (n + 1) x (n + 1) system per support: rows i in S read (Q p)_i + lambda = -c_i, rows
        # i not in S read p_i = 0, the last row sum_i p_i = 1. Q_SS positive definite makes it regular.
        system = torch.zeros(n_supports, n + 1, n + 1, dtype=q.dtype, device=q.device)
        eye = torch.eye(n, dtype=q.dtype, device=q.device)
        system[:, :n, :n] = torch.where(masks[:, :, None], q, eye)
        system[:, :n, n] = masks.to(q.dtype)
        system[:, n, :n] = 1.0
        batch_shape = self.linear.shape[:-1]
        linear = self.linear.reshape(-1, n)
        rhs = torch.zeros(n_supports, n + 1, linear.shape[0], dtype=q.dtype, device=q.device)
        rhs[:, :n, :] = torch.where(masks[:, :, None], -linear.T, torch.zeros((), dtype=q.dtype))
        rhs[:, n, :] = 1.0
        solution = torch.linalg.solve(system, rhs)  # (supports, n + 1, batch)
        points = solution[:, :n, :].permute(0, 2, 1)  # (supports, batch, n)
        multiplier = solution[:, n, :]  # (supports, batch): lambda = -min_i grad F_i
        gradient = points @ q.T + linear
        scale = 1.0 + float(q.abs().max()) + float(linear.abs().max())
        tol = 1e3 * torch.finfo(q.dtype).eps * scale
        feasible = (points >= -tol).all(-1) & (gradient + multiplier[..., None] >= -tol).all(-1)
        if not bool(feasible.any(0).all()):
            raise ValueError("no support satisfied the KKT conditions; the hessian is badly conditioned")
        first = feasible.to(torch.int8).argmax(0)  # (batch,)
        best = points[first, torch.arange(linear.shape[0], device=q.device)]
        best = best.clamp_min(0)
        return (best / best.sum(-1, keepdim=True)).reshape(*batch_shape, n)

    def minimum(self) -> Tensor:
        return self.value(self.minimizer())


@dataclass(frozen=True)
class EntropicLinear:
    r"""``F(p) = <c, p> + eps sum_i p_i log p_i`` (``0 log 0 = 0``), minimized by ``softmax(-c / eps)``.

    ``grad F = c + eps (1 + log p)``, ``-inf`` where ``p_i = 0``. Condition (1) forces ``grad F_i`` to be
    the same on the support, and the infinite slope at 0 forces full support:
    ``log p_i = -c_i / eps + const``, the Gibbs distribution, with minimum ``-eps logsumexp(-c / eps)``.
    The gradient is not Lipschitz on the simplex (``C_f = inf``); it is ``eps / min_i p_i``-smooth on the
    region where all ``p_i`` stay above ``min_i p_i``.

    >>> import torch
    >>> objective = EntropicLinear(torch.tensor([0.0, 1.0], dtype=torch.float64), epsilon=1.0)
    >>> objective.minimizer()
    tensor([0.7311, 0.2689], dtype=torch.float64)
    """

    cost: Tensor
    epsilon: float

    def __post_init__(self) -> None:
        object.__setattr__(self, "cost", _check_scores(self.cost, "cost"))
        object.__setattr__(self, "epsilon", check_positive(self.epsilon, "epsilon"))

    def __call__(self, p: Tensor) -> Tensor:
        return self.value(p)

    def value(self, p: Tensor) -> Tensor:
        return (self.cost * p).sum(-1) + self.epsilon * torch.special.xlogy(p, p).sum(-1)

    def grad(self, p: Tensor) -> Tensor:
        return self.cost + self.epsilon * (1 + torch.log(p))

    def minimizer(self) -> Tensor:
        return torch.softmax(-self.cost / self.epsilon, dim=-1)

    def minimum(self) -> Tensor:
        return -self.epsilon * torch.logsumexp(-self.cost / self.epsilon, dim=-1)


# ----------------------------------------------------------------------------------------------
# Internals
# ----------------------------------------------------------------------------------------------


class _Recorder:
    """Collects the gap (and values, iterates) at each iterate; builds the result."""

    def __init__(self, objective: Callable[[Tensor], Tensor] | None, record_iterates: bool) -> None:
        self.objective = objective
        self.record_iterates = bool(record_iterates)
        self.gaps: list[Tensor] = []
        self.values: list[Tensor] = []
        self.iterates: list[Tensor] = []

    def record(self, p: Tensor, gradient: Tensor) -> None:
        self.gaps.append(optimality_gap(p, gradient))
        if self.objective is not None:
            value = self.objective(p)
            if not isinstance(value, Tensor) or value.shape != p.shape[:-1]:
                shape = tuple(value.shape) if isinstance(value, Tensor) else type(value).__name__
                raise ValueError(
                    f"objective must map (..., n) -> (...): for p of shape {tuple(p.shape)} it returned "
                    f"{shape}"
                )
            self.values.append(value)
        if self.record_iterates:
            self.iterates.append(p)

    def result(self, method: str, p: Tensor, step_sizes: Tensor | None) -> SimplexResult:
        return SimplexResult(
            method=method,
            p=p,
            gap=torch.stack(self.gaps),
            values=torch.stack(self.values) if self.values else None,
            iterates=torch.stack(self.iterates) if self.iterates else None,
            step_sizes=step_sizes,
        )


def _away_step(
    objective: Callable[[Tensor], Tensor], p: Tensor, gradient: Tensor, vertex: Tensor, tol: float
) -> tuple[Tensor, Tensor]:
    """One away-step Frank-Wolfe step (Lacoste-Julien & Jaggi 2015, Alg. 1) per batch row."""
    n = p.shape[-1]
    support = p > 0
    # The away vertex: the support coordinate with the largest partial derivative.
    away_index = torch.where(support, gradient, torch.full_like(gradient, -math.inf)).argmax(dim=-1)
    away_vertex = torch.nn.functional.one_hot(away_index, n).to(p.dtype)
    forward_slope = optimality_gap(p, gradient)  # -<g, s - p>
    inner = torch.where(support, p * gradient, torch.zeros_like(p)).sum(-1)
    away_slope = (gradient * away_vertex).sum(-1) - inner  # -<g, p - e_a>
    forward = forward_slope >= away_slope
    away_weight = (p * away_vertex).sum(-1)
    # p_a = 1 means p is the vertex e_a and the away slope is 0, so the forward step is taken.
    away_limit = away_weight / (1 - away_weight).clamp_min(torch.finfo(p.dtype).eps)
    direction = torch.where(forward[..., None], vertex - p, p - away_vertex)
    upper = torch.where(forward, torch.ones_like(away_limit), away_limit)
    eta = _line_search(objective, p, direction, upper, tol)
    moved = torch.where(
        forward[..., None],
        (1 - eta)[..., None] * p + eta[..., None] * vertex,
        (1 + eta)[..., None] * p - eta[..., None] * away_vertex,
    )
    # A drop step (the full away step) removes a from the support exactly, not up to rounding.
    dropped = ~forward & (eta >= upper)
    moved = torch.where(dropped[..., None] & (away_vertex > 0), torch.zeros_like(moved), moved).clamp_min(0)
    return moved / moved.sum(-1, keepdim=True), eta


def _line_search(
    objective: Callable[[Tensor], Tensor], p: Tensor, direction: Tensor, upper: Tensor, tol: float
) -> Tensor:
    """``argmin_{eta in [0, upper]} F(p + eta d)`` per batch row: closed form or golden section."""
    exact_step = getattr(objective, "exact_step", None)
    if callable(exact_step):
        return torch.minimum(exact_step(p, direction).clamp_min(0), upper)

    def phi(eta: Tensor) -> Tensor:
        # The clamp only removes rounding below 0 at the far end of an away step.
        return objective((p + eta[..., None] * direction).clamp_min(0))

    # Golden section: exact for unimodal phi (any convex F) up to the final bracket width.
    low = torch.zeros_like(upper)
    high = upper.clone()
    left = high - _GOLDEN * (high - low)
    right = low + _GOLDEN * (high - low)
    f_left, f_right = phi(left), phi(right)
    for _ in range(max(1, math.ceil(math.log(tol) / math.log(_GOLDEN)))):
        # Minimum in [low, right] when f(left) <= f(right) (unimodality), else in [left, high].
        keep_left = f_left <= f_right
        low = torch.where(keep_left, low, left)
        high = torch.where(keep_left, right, high)
        probe = torch.where(keep_left, high - _GOLDEN * (high - low), low + _GOLDEN * (high - low))
        f_probe = phi(probe)
        left, right, f_left, f_right = (
            torch.where(keep_left, probe, right),
            torch.where(keep_left, left, probe),
            torch.where(keep_left, f_probe, f_right),
            torch.where(keep_left, f_left, f_probe),
        )
    eta = 0.5 * (low + high)
    # The bracket never reaches the far endpoint (a vertex, or a drop step): compare it directly.
    return torch.where(phi(upper) < phi(eta), upper, eta)


def _check_scores(x: Any, name: str) -> Tensor:
    tensor = as_tensor(x, name)
    if not tensor.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {tensor.dtype}")
    if tensor.ndim == 0 or tensor.shape[-1] == 0:
        raise ValueError(f"{name} must have shape (..., n) with n >= 1, got shape {tuple(tensor.shape)}")
    return check_finite(tensor, name)


def _check_start(p0: Any, name: str = "p0") -> Tensor:
    """``p0`` as a point of the simplex: coordinates >= -1e-6 and sums within 1e-6 of 1, then clamped."""
    p = _check_scores(p0, name)
    lowest = float(p.min())
    if lowest < -SIMPLEX_TOLERANCE:
        raise ValueError(
            f"{name} must lie on the probability simplex (last dim): found a coordinate {lowest:.3g} < 0 "
            f"(tolerance {SIMPLEX_TOLERANCE:g}); project it first with sparsemax"
        )
    deviation = float((p.sum(-1) - 1).abs().max())
    if deviation > SIMPLEX_TOLERANCE:
        raise ValueError(
            f"{name} must lie on the probability simplex (last dim): a row sums to 1 {deviation:+.3g} off "
            f"(tolerance {SIMPLEX_TOLERANCE:g}); normalize it first"
        )
    p = p.clamp_min(0)
    return p / p.sum(-1, keepdim=True)


def _check_n_steps(n_steps: Any) -> int:
    # A value of the wrong type stays a TypeError, as it always was here; the range check is shared.
    if isinstance(n_steps, bool) or not isinstance(n_steps, numbers.Integral):
        raise TypeError(f"n_steps must be an integer >= 1, got {n_steps!r}")
    return check_count(n_steps, "n_steps")


def _check_callable(function: Any, name: str) -> Callable[[Tensor], Tensor]:
    if not callable(function):
        raise TypeError(
            f"{name} must be callable p -> grad F(p) of shape (..., n), got {type(function).__name__}"
        )
    return function


def _check_objective(objective: Any) -> Callable[[Tensor], Tensor] | None:
    if objective is not None and not callable(objective):
        raise TypeError(f"objective must be callable (..., n) -> (...), got {type(objective).__name__}")
    return objective


def _evaluate_grad(
    grad: Callable[[Tensor], Tensor], p: Tensor, step: int, *, allow_negative_infinity: bool
) -> Tensor:
    gradient = grad(p)
    if not isinstance(gradient, Tensor) or gradient.shape != p.shape:
        shape = tuple(gradient.shape) if isinstance(gradient, Tensor) else type(gradient).__name__
        raise ValueError(f"grad must return the shape of p, {tuple(p.shape)}; got {shape} at step {step}")
    bad = torch.isnan(gradient) | (gradient == math.inf)
    if not allow_negative_infinity:
        bad = bad | torch.isinf(gradient)
    if bool(bad.any()):
        hint = (
            "" if allow_negative_infinity else
            "; an iterate reached the boundary where the gradient is infinite (e.g. the entropy): use "
            "a smaller step_size, mirror_descent, or frank_wolfe with line_search"
        )
        raise ValueError(f"grad returned {int(bad.sum())} non-finite value(s) at step {step}{hint}")
    return gradient
